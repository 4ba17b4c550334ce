package tokencheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/tokencheck/tokenchecktest"
)

// memStore is a SharedStore in memory, on the test's clock, with Redis's semantics
// (expiring values, tombstones that refuse Puts). A test can corrupt it at will, as an
// attacker with write access to Redis could.
type memStore struct {
	now func() time.Time

	mu      sync.Mutex
	vals    map[string]memVal
	tombs   map[string]time.Time
	lastTTL time.Duration
	gets    int
	err     error // every call fails with it while set
}

type memVal struct {
	v       []byte
	expires time.Time
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{now: now, vals: map[string]memVal{}, tombs: map[string]time.Time{}}
}

func (m *memStore) Get(_ context.Context, hash string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	if m.err != nil {
		return nil, m.err
	}
	v, ok := m.vals[hash]
	if !ok || !m.now().Before(v.expires) {
		return nil, nil
	}
	return v.v, nil
}

func (m *memStore) Put(_ context.Context, hash string, value []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if until, ok := m.tombs[hash]; ok && m.now().Before(until) {
		return nil
	}
	m.lastTTL = ttl
	m.vals[hash] = memVal{v: value, expires: m.now().Add(ttl)}
	return nil
}

func (m *memStore) Revoke(_ context.Context, hash string, tombstone time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.tombs[hash] = m.now().Add(tombstone)
	delete(m.vals, hash)
	return nil
}

func (m *memStore) get(hash string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vals[hash]
	return v.v, ok
}

func (m *memStore) set(hash string, v []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vals[hash] = memVal{v: v, expires: m.now().Add(time.Hour)}
}

func (m *memStore) fail(err error) { m.mu.Lock(); m.err = err; m.mu.Unlock() }

func (m *memStore) calls() int { m.mu.Lock(); defer m.mu.Unlock(); return m.gets }

// replicas are gateway Checkers sharing one issuer, one store and one clock, each with its
// own bus and local cache.
type replicas struct {
	is     *tokenchecktest.Issuer
	clk    *clock
	store  *memStore
	checks []*Checker
	buses  []*switchBus
	reg    *prometheus.Registry
}

func newReplicas(t *testing.T, n int) *replicas {
	t.Helper()
	clk := newClock()
	r := &replicas{clk: clk, is: tokenchecktest.New(t, tokenchecktest.WithNow(clk.Now)), store: newMemStore(clk.Now), reg: prometheus.NewRegistry()}
	m, err := NewMetrics(r.reg) // one registry: the counters add up over the replicas
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		bus := &switchBus{}
		bus.live.Store(true)
		c, err := New(Config{
			Issuer:       r.is.URL,
			HTTPClient:   r.is.HTTPClient(),
			ClientID:     tokenchecktest.GatewayClientID,
			ClientSecret: tokenchecktest.GatewayClientSecret,
			Bus:          bus,
			Now:          clk.Now,
			Cache:        CacheConfig{MaxTTL: time.Minute, RevocationBound: 5 * time.Second, NegativeTTL: 2 * time.Second},
			Shared:       r.store,
			Metrics:      m,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		r.checks = append(r.checks, c)
		r.buses = append(r.buses, bus)
	}
	return r
}

// publish delivers e to every replica, as the shared bus would.
func (r *replicas) publish(t *testing.T, e events.Event) {
	for _, b := range r.buses {
		if err := b.Publish(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *replicas) lookups(result string) float64 {
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "portcullis_gateway_shared_cache_lookups_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// waitRevoked waits for the revocation queue to reach the store.
func waitRevoked(t *testing.T, s *memStore, hash string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		_, tomb := s.tombs[hash]
		s.mu.Unlock()
		if tomb {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the revocation never reached the shared store")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSharedCacheServesOtherReplicas(t *testing.T) {
	r := newReplicas(t, 2)
	exp := r.clk.Now().Add(10 * time.Minute).Truncate(time.Second)
	tok := r.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "orders-app", Scopes: []string{"orders:read"}, Expiry: exp})
	pa, err := r.checks[0].Opaque(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := r.checks[1].Opaque(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.is.Introspections(); n != 1 {
		t.Errorf("introspections = %d, want 1: the second replica should use the shared answer", n)
	}
	type view struct {
		Sub, Client, Token string
		Scopes             []string
		Exp                time.Time
	}
	if diff := cmp.Diff(view{pa.Subject(), pa.ClientID(), pa.Token, pa.Claims.Scopes, pa.Claims.Expiry}, view{pb.Subject(), pb.ClientID(), pb.Token, pb.Claims.Scopes, pb.Claims.Expiry}); diff != "" {
		t.Errorf("the replicas disagree (-a +b):\n%s", diff)
	}
	if r.lookups("hit") != 1 {
		t.Errorf("shared hits = %v, want 1", r.lookups("hit"))
	}
	// What the store holds is sealed: neither the phantom JWT nor the subject is readable.
	v, ok := r.store.get(events.TokenHash(tok))
	if !ok {
		t.Fatal("nothing stored")
	}
	for _, secret := range []string{pa.Token, "alice", "orders-app"} {
		if containsBytes(v, secret) {
			t.Errorf("the stored value shows %q in clear", secret)
		}
	}
	// Unknown tokens are shared too, briefly.
	if _, err := r.checks[0].Opaque(t.Context(), "pcat_unknown"); !errors.Is(err, ErrInvalidToken) {
		t.Fatal(err)
	}
	if _, err := r.checks[1].Opaque(t.Context(), "pcat_unknown"); !errors.Is(err, ErrInvalidToken) {
		t.Fatal(err)
	}
	if n := r.is.Introspections(); n != 2 {
		t.Errorf("introspections = %d, want 2 (the negative answer shared)", n)
	}
}

func containsBytes(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return true
		}
	}
	return false
}

func TestSharedCacheTTL(t *testing.T) {
	r := newReplicas(t, 1)
	c := r.checks[0]
	long := r.clk.Now().Add(time.Hour)
	for _, tc := range []struct {
		name   string
		live   bool
		expiry time.Time
		want   time.Duration
	}{
		// The stand-in's signed answers live 1m (exp in whole seconds): nothing is kept
		// beyond that.
		{"live bus: the signed answer's life", true, long, -1},
		{"bus not live: revocation bound", false, long, 5 * time.Second},
		{"token expires first", true, r.clk.Now().Add(30 * time.Second).Truncate(time.Second), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.buses[0].live.Store(tc.live)
			tok := r.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app", Expiry: tc.expiry})
			if _, err := c.Opaque(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			want := tc.want
			switch want {
			case 0:
				want = tc.expiry.Sub(r.clk.Now())
			case -1:
				want = time.Unix(r.clk.Now().Add(time.Minute).Unix(), 0).Sub(r.clk.Now())
			}
			if r.store.lastTTL != want {
				t.Errorf("ttl = %v, want %v", r.store.lastTTL, want)
			}
		})
	}
}

func TestSharedCacheRevocation(t *testing.T) {
	r := newReplicas(t, 2)
	tok := r.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	hash := events.TokenHash(tok)
	for _, c := range r.checks {
		if _, err := c.Opaque(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
	}
	r.is.Revoke(tok)
	r.publish(t, events.Event{Kind: events.TokenRevoked, TokenHash: hash})
	waitRevoked(t, r.store, hash)
	if _, ok := r.store.get(hash); ok {
		t.Error("the revoked token's answer is still in the shared store")
	}
	for i, c := range r.checks {
		if _, err := c.Opaque(t.Context(), tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("replica %d after revocation: err = %v, want ErrInvalidToken", i, err)
		}
	}
}

// A replica that revoked a token never reads it from the shared store, even before its
// deletion there lands (or if another replica wrote it back).
func TestSharedCacheNotReadForLocallyRevoked(t *testing.T) {
	r := newReplicas(t, 1)
	tok := r.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	hash := events.TokenHash(tok)
	if _, err := r.checks[0].Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	stale, _ := r.store.get(hash)
	r.is.Revoke(tok)
	r.publish(t, events.Event{Kind: events.TokenRevoked, TokenHash: hash})
	waitRevoked(t, r.store, hash)
	r.store.set(hash, stale) // an old answer comes back (a lagging writer, or an attacker)
	if _, err := r.checks[0].Opaque(t.Context(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken", err)
	}
}

// An introspection that started before a revocation must not store its (now stale)
// answer after the revocation reached the store.
func TestSharedCachePutAfterRevocationDoesNotLand(t *testing.T) {
	r := newReplicas(t, 2)
	tok := r.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	hash := events.TokenHash(tok)
	if _, err := r.checks[0].Metadata(t.Context()); err != nil {
		t.Fatal(err)
	}
	release := r.is.Hold()
	done := make(chan error, 1)
	go func() { _, err := r.checks[0].Opaque(context.Background(), tok); done <- err }()
	for r.is.Introspections() == 0 {
		time.Sleep(time.Millisecond)
	}
	// Another replica hears of the revocation and applies it to the store; replica 0 has
	// not heard of it yet.
	r.checks[1].onEvent(events.Event{Kind: events.TokenRevoked, TokenHash: hash})
	waitRevoked(t, r.store, hash)
	release()
	if err := <-done; err != nil {
		t.Fatal(err) // the answer it got was true when given
	}
	if _, ok := r.store.get(hash); ok {
		t.Error("an answer fetched before the revocation was stored after it")
	}
}

func TestSharedCacheAgeBounds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		live    bool
		advance time.Duration
		shared  bool // the second replica uses the shared answer
	}{
		{"live, young", true, 4 * time.Second, true},
		{"not live, within revocation bound", false, 4 * time.Second, true},
		{"not live, past revocation bound", false, 6 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newReplicas(t, 2)
			tok := r.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app", Expiry: r.clk.Now().Add(time.Hour)})
			if _, err := r.checks[0].Opaque(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			r.buses[1].live.Store(tc.live)
			r.clk.Advance(tc.advance)
			if _, err := r.checks[1].Opaque(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			if got := r.is.Introspections() == 1; got != tc.shared {
				t.Errorf("used the shared answer = %v, want %v (introspections %d)", got, tc.shared, r.is.Introspections())
			}
		})
	}
}

// After a Resync (events may have been lost), answers given before it are not trusted.
func TestSharedCacheResync(t *testing.T) {
	r := newReplicas(t, 2)
	tok := r.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	if _, err := r.checks[0].Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(time.Second) // answers carry iat in whole seconds
	r.publish(t, events.Event{Kind: events.Resync})
	r.clk.Advance(time.Second)
	if _, err := r.checks[1].Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if n := r.is.Introspections(); n != 2 {
		t.Errorf("introspections = %d, want 2: an answer from before the resync was used", n)
	}
	if r.lookups("stale") != 1 {
		t.Errorf("stale lookups = %v, want 1", r.lookups("stale"))
	}
	// The fresh answer is shared again.
	if _, err := r.checks[0].Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if n := r.is.Introspections(); n != 2 {
		t.Errorf("introspections = %d, want 2: the post-resync answer should be shared", n)
	}
}

// Someone who can write to the shared store must not be able to make a token work that
// the issuer never vouched for.
func TestSharedCacheRefusesForgedEntries(t *testing.T) {
	r := newReplicas(t, 1)
	c := r.checks[0]
	victim := r.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "orders-app", Scopes: []string{"orders:write"}})
	if _, err := c.Opaque(t.Context(), victim); err != nil {
		t.Fatal(err)
	}
	victimSealed, _ := r.store.get(events.TokenHash(victim))
	victimAnswer, ok := unseal(victim, events.TokenHash(victim), victimSealed)
	if !ok {
		t.Fatal("cannot open the victim's entry with the victim's token")
	}
	rogue, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The attacker's token: a string of their choosing, unknown to the issuer.
	const mine = "pcat_attacker-chosen-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hash := events.TokenHash(mine)
	forgedClaims := func() map[string]any {
		return map[string]any{
			"iss": r.is.URL, "aud": tokenchecktest.GatewayClientID, "iat": r.clk.Now().Unix(), "exp": r.clk.Now().Add(time.Minute).Unix(),
			"token_introspection": map[string]any{
				"active": true, "sub": "alice", "client_id": "orders-app", "scope": "orders:write", "jti": hash,
				"exp": r.clk.Now().Add(time.Hour).Unix(), "phantom_jwt": "a.b.c",
			},
		}
	}
	sealFor := func(answer []byte) []byte {
		v, err := seal(mine, hash, answer)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name  string
		value []byte
	}{
		{"the victim's entry moved to my hash", victimSealed},
		{"the victim's signed answer, lifted and sealed for my token", sealFor(victimAnswer)},
		{"bare claims sealed for my token", sealFor(mustJSON(t, forgedClaims()["token_introspection"]))},
		{"an answer signed by another key", sealFor([]byte(signES256(t, rogue, forgedClaims())))},
		{"garbage", []byte("\x01 definitely not sealed")},
		{"unsealed signed-looking text", []byte(signES256(t, rogue, forgedClaims()))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.lookups("rejected")
			r.store.set(hash, tc.value)
			_, err := c.Opaque(t.Context(), mine)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("err = %v, want ErrInvalidToken (the issuer does not know this token)", err)
			}
			if r.lookups("rejected") != before+1 {
				t.Errorf("rejected lookups did not increase")
			}
			r.clk.Advance(3 * time.Second) // past the negative TTL, for the next case
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signES256(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("token-introspection+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(mustJSON(t, claims))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A shared store that fails costs one attempt, then is skipped for a second; requests are
// answered by the issuer meanwhile.
func TestSharedCacheOutage(t *testing.T) {
	r := newReplicas(t, 1)
	c := r.checks[0]
	r.store.fail(errors.New("connection refused"))
	for i := range 3 {
		tok := r.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
		if _, err := c.Opaque(t.Context(), tok); err != nil {
			t.Fatalf("request %d during the outage: %v", i, err)
		}
	}
	if got := r.store.calls(); got != 1 {
		t.Errorf("store calls during the outage = %d, want 1 (then skipped)", got)
	}
	if r.lookups("skipped") != 2 || r.lookups("error") != 1 {
		t.Errorf("lookups error=%v skipped=%v, want 1 and 2", r.lookups("error"), r.lookups("skipped"))
	}
	r.store.fail(nil)
	r.clk.Advance(sharedBackoff)
	tok := r.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	if _, err := c.Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.store.get(events.TokenHash(tok)); !ok {
		t.Error("the store is not used again after the outage")
	}
}

func TestSealRoundTripAndTamper(t *testing.T) {
	const tok = "pcat_some-token"
	hash := events.TokenHash(tok)
	answer := []byte("eyJhbGciOiJFUzI1NiJ9.e30.sig")
	v, err := seal(tok, hash, answer)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := unseal(tok, hash, v)
	if !ok || string(got) != string(answer) {
		t.Fatalf("unseal(seal(x)) = %q, %v", got, ok)
	}
	for i := range v {
		w := append([]byte(nil), v...)
		w[i] ^= 0x01
		if _, ok := unseal(tok, hash, w); ok {
			t.Fatalf("a value with byte %d flipped opened", i)
		}
	}
	if _, ok := unseal("pcat_other", hash, v); ok {
		t.Error("opened under another token")
	}
	if _, ok := unseal(tok, events.TokenHash("pcat_other"), v); ok {
		t.Error("opened under another hash")
	}
}

// FuzzUnseal: no input panics or opens without the token's key; sealed values round-trip.
func FuzzUnseal(f *testing.F) {
	f.Add("pcat_token", []byte("\x01garbage"), []byte("answer"))
	f.Fuzz(func(t *testing.T, token string, value, answer []byte) {
		hash := events.TokenHash(token)
		if _, ok := unseal(token, hash, value); ok {
			// Only a value sealed under this token's key opens; random bytes never do.
			t.Fatalf("random value %q opened", value)
		}
		if len(answer) > maxIntrospectionBytes {
			return
		}
		v, err := seal(token, hash, answer)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := unseal(token, hash, v)
		if !ok || string(got) != string(answer) {
			t.Fatalf("round trip failed")
		}
	})
}

// A shared entry that cannot be verified because the issuer's keys cannot be fetched is not
// taken for a forgery, and the request fails as unavailable, never as a pass.
func TestSharedCacheIssuerKeysUnavailable(t *testing.T) {
	r := newReplicas(t, 2)
	tok := r.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	if _, err := r.checks[0].Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	r.is.SetDown(true) // replica 1 has never fetched the issuer's keys
	if _, err := r.checks[1].Opaque(t.Context(), tok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if r.lookups("unverifiable") != 1 || r.lookups("rejected") != 0 {
		t.Errorf("lookups unverifiable=%v rejected=%v, want 1 and 0", r.lookups("unverifiable"), r.lookups("rejected"))
	}
}
