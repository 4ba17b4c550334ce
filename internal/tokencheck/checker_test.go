package tokencheck

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/token"
	"github.com/portcullis/portcullis/internal/tokencheck/tokenchecktest"
	"github.com/portcullis/portcullis/jwtverify"
)

// clock is a settable time source shared by the issuer and the checker.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// switchBus is a Bus whose liveness a test sets.
type switchBus struct {
	events.Memory
	live atomic.Bool
}

func (b *switchBus) Live() bool { return b.live.Load() }

type fixture struct {
	is    *tokenchecktest.Issuer
	clk   *clock
	check *Checker
}

func newFixture(t *testing.T, bus events.Bus, mutate ...func(*Config)) *fixture {
	t.Helper()
	clk := newClock()
	is := tokenchecktest.New(t, tokenchecktest.WithNow(clk.Now))
	cfg := Config{
		Issuer:       is.URL,
		HTTPClient:   is.HTTPClient(),
		ClientID:     tokenchecktest.GatewayClientID,
		ClientSecret: tokenchecktest.GatewayClientSecret,
		Bus:          bus,
		Now:          clk.Now,
		Cache:        CacheConfig{MaxTTL: time.Minute, RevocationBound: 5 * time.Second, NegativeTTL: 2 * time.Second},
	}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &fixture{is: is, clk: clk, check: c}
}

func TestOpaqueActive(t *testing.T) {
	f := newFixture(t, &events.Memory{})
	exp := f.clk.Now().Add(3 * time.Minute).Truncate(time.Second)
	tok := f.is.Opaque(tokenchecktest.Grant{
		Subject: "alice", ClientID: "orders-app", Scopes: []string{"orders:read", "orders:write"},
		Expiry: exp, Claims: map[string]any{"customer_id": "c-42"},
	})
	p, err := f.check.Opaque(t.Context(), tok)
	if err != nil {
		t.Fatalf("Opaque: %v", err)
	}
	if p.Token == tok || strings.Count(p.Token, ".") != 2 {
		t.Fatalf("principal token is not a JWT distinct from the opaque token")
	}
	got := struct {
		Sub, Client, Customer string
		Scopes                []string
		Exp                   time.Time
	}{p.Subject(), p.ClientID(), p.Claims.Raw["customer_id"].(string), p.Claims.Scopes, p.Claims.Expiry}
	want := struct {
		Sub, Client, Customer string
		Scopes                []string
		Exp                   time.Time
	}{"alice", "orders-app", "c-42", []string{"orders:read", "orders:write"}, exp}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("principal (-want +got):\n%s", diff)
	}
	if p.Authorization() != "Bearer "+p.Token {
		t.Errorf("Authorization = %q", p.Authorization())
	}
	if _, ok := p.Claims.Raw["phantom_jwt"]; ok {
		t.Error("claims expose the phantom JWT")
	}
	// The phantom JWT is a real at+jwt from the issuer, with the same subject.
	v, err := jwtverify.New(jwtverify.Config{Issuer: f.is.URL, Audiences: []string{f.is.Audience}, Keys: f.is.PublicKeys(), Now: f.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := v.Verify(t.Context(), p.Token)
	if err != nil {
		t.Fatalf("phantom JWT does not verify: %v", err)
	}
	if pc.Subject != "alice" || !pc.HasScope("orders:write") {
		t.Errorf("phantom claims = %+v", pc)
	}
	// Cached: a second use does not ask the issuer.
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if n := f.is.Introspections(); n != 1 {
		t.Errorf("introspections = %d, want 1", n)
	}
}

func TestOpaqueInactiveIsCachedBriefly(t *testing.T) {
	f := newFixture(t, &events.Memory{})
	for range 3 {
		if _, err := f.check.Opaque(t.Context(), "pcat_unknown"); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("err = %v, want ErrInvalidToken", err)
		}
	}
	if n := f.is.Introspections(); n != 1 {
		t.Errorf("introspections = %d, want 1 (negative cache)", n)
	}
	f.clk.Advance(2*time.Second + time.Millisecond)
	if _, err := f.check.Opaque(t.Context(), "pcat_unknown"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v", err)
	}
	if n := f.is.Introspections(); n != 2 {
		t.Errorf("introspections = %d, want 2 after negative_ttl", n)
	}
}

func TestOpaqueFailuresAreUnavailable(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fixture)
		mutate func(*Config)
	}{
		{"issuer down", func(f *fixture) { f.is.SetDown(true) }, nil},
		{"answer signed by an unknown key", func(f *fixture) { f.is.SetBadSignature(true) }, nil},
		{"answer for another client", func(f *fixture) { f.is.Tamper = func(c map[string]any) { c["aud"] = "someone-else" } }, nil},
		{"answer from another issuer", func(f *fixture) { f.is.Tamper = func(c map[string]any) { c["iss"] = "https://evil.example" } }, nil},
		{"answer expired", func(f *fixture) {
			f.is.Tamper = func(c map[string]any) { c["exp"] = f.clk.Now().Add(-time.Hour).Unix() }
		}, nil},
		{"active without phantom", func(f *fixture) {
			f.is.Tamper = func(c map[string]any) { delete(c["token_introspection"].(map[string]any), "phantom_jwt") }
		}, nil},
		{"active without exp", func(f *fixture) {
			f.is.Tamper = func(c map[string]any) { delete(c["token_introspection"].(map[string]any), "exp") }
		}, nil},
		{"inner issuer differs", func(f *fixture) {
			f.is.Tamper = func(c map[string]any) { c["token_introspection"].(map[string]any)["iss"] = "https://evil.example" }
		}, nil},
		{"wrong secret", nil, func(c *Config) { c.ClientSecret = "wrong" }},
		{"metadata issuer mismatch", nil, func(c *Config) { c.Issuer += "/" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mut []func(*Config)
			if tt.mutate != nil {
				mut = append(mut, tt.mutate)
			}
			f := newFixture(t, &events.Memory{}, mut...)
			tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
			if tt.setup != nil {
				tt.setup(f)
			}
			_, err := f.check.Opaque(t.Context(), tok)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestOpaqueRecoversAfterOutage(t *testing.T) {
	f := newFixture(t, &events.Memory{})
	tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	f.is.SetDown(true)
	if _, err := f.check.Opaque(t.Context(), tok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	f.is.SetDown(false)
	time.Sleep(discoveryRetry) // metadata discovery waits this long after a failure
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

// TestCanceledCallerIsNoOutage: the first discovery runs on a request's context; a client
// that disconnects during it must not make every request of the next second fail as if the
// issuer were down.
func TestCanceledCallerIsNoOutage(t *testing.T) {
	f := newFixture(t, &events.Memory{})
	v, err := f.check.NewJWTVerifier([]string{"reports"})
	if err != nil {
		t.Fatal(err)
	}
	tok := f.is.JWT(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Audience: []string{"reports"}})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := v.Verify(ctx, tok); err == nil {
		t.Fatal("a canceled caller got an answer")
	}
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("the next caller: %v (the canceled one was counted as an outage)", err)
	}
}

func TestRevocationEvictsAtOnce(t *testing.T) {
	bus := &events.Memory{}
	f := newFixture(t, bus)
	tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	f.is.Revoke(tok)
	if err := bus.Publish(t.Context(), events.Event{Kind: events.TokenRevoked, TokenHash: events.TokenHash(tok)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.check.Opaque(t.Context(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("after revocation err = %v, want ErrInvalidToken", err)
	}
}

func TestRevocationBoundWithoutLiveFeed(t *testing.T) {
	bus := &switchBus{}
	f := newFixture(t, bus)
	tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app", Expiry: f.clk.Now().Add(time.Hour)})
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	f.is.Revoke(tok) // the event is lost: the feed is down
	f.clk.Advance(4 * time.Second)
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatalf("within the bound the cached answer stands: %v", err)
	}
	f.clk.Advance(time.Second + time.Millisecond)
	if _, err := f.check.Opaque(t.Context(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("past revocation_bound err = %v, want ErrInvalidToken", err)
	}
}

func TestLiveFeedCachesUpToMaxTTL(t *testing.T) {
	bus := &switchBus{}
	bus.live.Store(true)
	f := newFixture(t, bus)
	tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app", Expiry: f.clk.Now().Add(time.Hour)})
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(30 * time.Second)
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if n := f.is.Introspections(); n != 1 {
		t.Errorf("introspections = %d, want 1 while the feed is live", n)
	}
	// The feed drops: the entry is now bounded by revocation_bound from its insertion.
	bus.live.Store(false)
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if n := f.is.Introspections(); n != 2 {
		t.Errorf("introspections = %d, want 2 once the feed is not live", n)
	}
	bus.live.Store(true)
	f.clk.Advance(time.Minute + time.Millisecond) // past cache_max_ttl
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	if n := f.is.Introspections(); n != 3 {
		t.Errorf("introspections = %d, want 3 after cache_max_ttl", n)
	}
}

func TestEntryEndsAtTokenExpiry(t *testing.T) {
	f := newFixture(t, &events.Memory{})
	tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app", Expiry: f.clk.Now().Add(20 * time.Second)})
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(21 * time.Second)
	if _, err := f.check.Opaque(t.Context(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken after exp", err)
	}
}

func TestResyncFlushes(t *testing.T) {
	bus := &events.Memory{}
	f := newFixture(t, bus)
	tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	f.is.Revoke(tok)
	_ = bus.Publish(t.Context(), events.Event{Kind: events.Resync})
	if f.check.cache.len() != 0 {
		t.Fatalf("cache holds %d entries after resync", f.check.cache.len())
	}
	if _, err := f.check.Opaque(t.Context(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v, want ErrInvalidToken", err)
	}
}

func TestConcurrentMissesShareOneCall(t *testing.T) {
	f := newFixture(t, &events.Memory{})
	tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	if _, err := f.check.Metadata(t.Context()); err != nil { // discovery is not what is measured
		t.Fatal(err)
	}
	release := f.is.Hold()
	const n = 64
	var wg sync.WaitGroup
	results := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			p, err := f.check.Opaque(t.Context(), tok)
			results[i], errs[i] = p.Token, err
		})
	}
	// Let every goroutine reach the flight before the issuer answers.
	for f.is.Introspections() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil || results[i] != results[0] || results[i] == "" {
			t.Fatalf("caller %d: %q, %v", i, results[i], errs[i])
		}
	}
	if got := f.is.Introspections(); got != 1 {
		t.Errorf("introspections = %d, want exactly 1 for %d concurrent misses", got, n)
	}
}

func TestRevocationDuringFlightIsNotCached(t *testing.T) {
	bus := &events.Memory{}
	f := newFixture(t, bus)
	tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	if _, err := f.check.Metadata(t.Context()); err != nil {
		t.Fatal(err)
	}
	release := f.is.Hold()
	done := make(chan error, 1)
	go func() {
		_, err := f.check.Opaque(context.Background(), tok)
		done <- err
	}()
	for f.is.Introspections() == 0 {
		time.Sleep(time.Millisecond)
	}
	// The issuer already read the token as active; now it is revoked.
	f.is.Revoke(tok)
	_ = bus.Publish(t.Context(), events.Event{Kind: events.TokenRevoked, TokenHash: events.TokenHash(tok)})
	release()
	<-done
	if _, err := f.check.Opaque(t.Context(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v: an answer from before the revocation was cached", err)
	}
}

// TestRevocationOfAnotherTokenKeepsCaching: a revocation stops only the caching of answers
// about the token it names. Any client can revoke its own tokens, so if every revocation
// stopped every flight in progress from being cached, revoking in a loop would send other
// clients' requests to the issuer again and again.
func TestRevocationOfAnotherTokenKeepsCaching(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sameShard bool
	}{{"another shard", false}, {"the same shard", true}} {
		t.Run(tc.name, func(t *testing.T) {
			bus := &events.Memory{}
			f := newFixture(t, bus)
			tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
			other := otherToken(hashToken(tok)[0]%cacheShards, tc.sameShard)
			if _, err := f.check.Metadata(t.Context()); err != nil {
				t.Fatal(err)
			}
			release := f.is.Hold()
			done := make(chan error, 1)
			go func() {
				_, err := f.check.Opaque(context.Background(), tok)
				done <- err
			}()
			for f.is.Introspections() == 0 {
				time.Sleep(time.Millisecond)
			}
			for range 100 {
				_ = bus.Publish(t.Context(), events.Event{Kind: events.TokenRevoked, TokenHash: events.TokenHash(other)})
			}
			release()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if _, err := f.check.Opaque(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			if n := f.is.Introspections(); n != 1 {
				t.Errorf("introspections = %d, want 1: revoking another token kept the answer out of the cache", n)
			}
		})
	}
}

// otherToken returns a token whose cache shard is shard (same) or is not.
func otherToken(shard byte, same bool) string {
	for i := 0; ; i++ {
		tok := fmt.Sprintf("pcat_other%d", i)
		if (hashToken(tok)[0]%cacheShards == shard) == same {
			return tok
		}
	}
}

func TestCallerLeavesOnContextCancel(t *testing.T) {
	f := newFixture(t, &events.Memory{})
	tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	release := f.is.Hold()
	defer release()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.check.Opaque(ctx, tok); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's error", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	c := newCache(CacheConfig{Size: 128}, nil, time.Now, discardMetrics())
	exp := time.Now().Add(time.Hour)
	fetch := func(context.Context, string) (Principal, bool, error) {
		return Principal{Claims: &jwtverify.Claims{Expiry: exp}, Token: "a.b.c"}, true, nil
	}
	for i := range 5000 {
		if _, err := c.get(t.Context(), "pcat_"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String(), fetch); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.len(); n > 128 {
		t.Errorf("cache holds %d entries, bound 128", n)
	}
}

func TestOpaqueRefusesOversizedToken(t *testing.T) {
	f := newFixture(t, &events.Memory{})
	if _, err := f.check.Opaque(t.Context(), strings.Repeat("a", MaxOpaqueTokenBytes+1)); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("err = %v", err)
	}
	if n := f.is.Introspections(); n != 0 {
		t.Errorf("an oversized token was sent to the issuer")
	}
}

func TestJWTVerifier(t *testing.T) {
	bus := &events.Memory{}
	f := newFixture(t, bus)
	v, err := f.check.NewJWTVerifier([]string{"reports"})
	if err != nil {
		t.Fatal(err)
	}
	good := f.is.JWT(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Scopes: []string{"reports:read"}, Audience: []string{"reports"}})
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"valid", good, nil},
		{"other audience", f.is.JWT(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Audience: []string{"orders"}}), ErrInvalidToken},
		{"expired", f.is.JWT(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Audience: []string{"reports"}, Expiry: f.clk.Now().Add(-time.Hour)}), ErrInvalidToken},
		{"opaque token", f.is.Opaque(tokenchecktest.Grant{Subject: "svc"}), ErrInvalidToken},
		{"tampered", good[:len(good)-4] + "AAAA", ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(t.Context(), tt.token)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && (p.Token != tt.token || p.Subject() != "svc" || !p.HasScope("reports:read")) {
				t.Errorf("principal = %+v", p)
			}
		})
	}
	t.Run("revoked", func(t *testing.T) {
		_ = bus.Publish(t.Context(), events.Event{Kind: events.TokenRevoked, TokenHash: events.TokenHash(good)})
		if _, err := v.Verify(t.Context(), good); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("err = %v, want ErrInvalidToken for a revoked JWT", err)
		}
	})
}

// TestJWTVerifierRefusesPhantom: a phantom JWT (the issuer's JWT form of an opaque token,
// meant for the upstream behind an oauth route) is not an access token for jwt routes: its
// revocation names the opaque token, so a leaked phantom would work there until exp.
func TestJWTVerifierRefusesPhantom(t *testing.T) {
	f := newFixture(t, &events.Memory{})
	v, err := f.check.NewJWTVerifier([]string{"reports"})
	if err != nil {
		t.Fatal(err)
	}
	opaque := f.is.Opaque(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Scopes: []string{"reports:read"}, Audience: []string{"reports"}})
	p, err := f.check.Opaque(t.Context(), opaque)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Claims.Raw[phantomClaim]; ok {
		t.Errorf("the introspected claims carry %s; only the phantom JWT should", phantomClaim)
	}
	if _, err := v.Verify(t.Context(), p.Token); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("phantom on a jwt route: err = %v, want ErrInvalidToken", err)
	}
	names := []string{phantomClaim, token.PhantomClaim, tokenchecktest.PhantomClaim}
	if names[0] != names[1] || names[0] != names[2] {
		t.Errorf("marker %q, the issuer's %q, the stand-in's %q", names[0], names[1], names[2])
	}
}

// TestJWTRevokedByJTI: a revocation names a token by its hash; a JWT whose jti is that hash
// (the phantom form of the revoked token) is refused too.
func TestJWTRevokedByJTI(t *testing.T) {
	bus := &events.Memory{}
	f := newFixture(t, bus)
	v, err := f.check.NewJWTVerifier([]string{"reports"})
	if err != nil {
		t.Fatal(err)
	}
	opaque := "pcat_" + strings.Repeat("q", 43)
	g := tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Audience: []string{"reports"}, JTI: events.TokenHash(opaque)}
	tok := f.is.JWT(g)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	_ = bus.Publish(t.Context(), events.Event{Kind: events.TokenRevoked, TokenHash: events.TokenHash(opaque)})
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("after its jti was revoked: err = %v, want ErrInvalidToken", err)
	}
	other := f.is.JWT(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Audience: []string{"reports"}})
	if _, err := v.Verify(t.Context(), other); err != nil {
		t.Errorf("an unrelated JWT: %v", err)
	}
}

// TestJWTRevocationsBounded: the list of revocations is bounded; when full it forgets the
// oldest (expired ones first), never a recent one, and expired ones leave as new ones come.
func TestJWTRevocationsBounded(t *testing.T) {
	f := newFixture(t, nil)
	const max = 16
	f.check.revokedMax = max
	revoke := func(i int) string {
		h := events.TokenHash(fmt.Sprintf("pcat_%d", i))
		f.check.onEvent(events.Event{Kind: events.TokenRevoked, TokenHash: h})
		return h
	}
	var hashes []string
	for i := range 3 * max {
		hashes = append(hashes, revoke(i))
		f.clk.Advance(time.Second)
	}
	revoked := func(h string) bool { return f.check.hashRevoked(h) }
	for i, h := range hashes {
		if want := i >= 2*max; revoked(h) != want {
			t.Errorf("revocation %d of %d: kept = %v, want %v (the newest %d)", i, len(hashes), revoked(h), want, max)
		}
	}
	// A day later they have all expired: one new revocation drops them all.
	f.clk.Advance(jwtRevocationTTL)
	last := revoke(-1)
	if n := f.check.nRevoked.Load(); n != 1 || !revoked(last) {
		t.Errorf("after expiry: %d kept, the new one kept = %v; want 1, true", n, revoked(last))
	}
	// Expired ones leave also while the list is far from full.
	for i := range 3 {
		revoke(100 + i)
	}
	f.clk.Advance(jwtRevocationTTL + time.Second)
	last = revoke(-2)
	if n := f.check.nRevoked.Load(); n != 1 || !revoked(last) {
		t.Errorf("not full, after expiry: %d kept, the new one kept = %v; want 1, true", n, revoked(last))
	}
}

func TestJWTVerifierIssuerDown(t *testing.T) {
	f := newFixture(t, nil)
	f.is.SetDown(true)
	v, err := f.check.NewJWTVerifier([]string{"reports"})
	if err != nil {
		t.Fatal(err)
	}
	tok := f.is.JWT(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Audience: []string{"reports"}})
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestNewRefusesPlainHTTPIssuer(t *testing.T) {
	if _, err := New(Config{Issuer: "http://issuer.example"}); err == nil {
		t.Fatal("an http issuer was accepted without InsecureAllowHTTP")
	}
	if _, err := New(Config{Issuer: "https://issuer.example", ClientID: "gw"}); err == nil {
		t.Fatal("introspection without a secret was accepted")
	}
}

func BenchmarkOpaqueCacheHit(b *testing.B) {
	c := newCache(CacheConfig{}, &events.Memory{}, time.Now, discardMetrics())
	exp := time.Now().Add(time.Hour)
	fetch := func(context.Context, string) (Principal, bool, error) {
		return Principal{Claims: &jwtverify.Claims{Expiry: exp}, Token: "a.b.c"}, true, nil
	}
	tok := "pcat_" + strings.Repeat("A", 43)
	if _, err := c.get(context.Background(), tok, fetch); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.get(context.Background(), tok, fetch); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMalformedRevocationIsIgnored: a TokenRevoked event whose hash is not the events.TokenHash
// form (too long, too short, not base64url) neither panics nor evicts anything.
func TestMalformedRevocationIsIgnored(t *testing.T) {
	bus := &events.Memory{}
	f := newFixture(t, bus)
	tok := f.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app"})
	if _, err := f.check.Opaque(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	good := events.TokenHash(tok)
	for _, hash := range []string{good + "A", good + good, strings.Repeat("A", 1000), good[:42], "", "!" + good[1:]} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("revocation event with hash %q panicked: %v", hash, r)
				}
			}()
			_ = bus.Publish(t.Context(), events.Event{Kind: events.TokenRevoked, TokenHash: hash})
		}()
	}
	if got := f.check.cache.len(); got != 1 {
		t.Fatalf("cache holds %d entries after malformed revocations, want 1", got)
	}
}
