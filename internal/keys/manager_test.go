package keys

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
	"github.com/portcullis/portcullis/jwtverify"
)

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *testClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

const (
	rotateEvery  = 720 * time.Hour
	publishAhead = 15 * time.Minute
	overlap      = 24 * time.Hour
	maxTokenTTL  = 5 * time.Minute
)

// env is a key manager on a real SQLite store.
type env struct {
	path   string
	db     *sqlstore.DB
	clock  *testClock
	mk     MasterKey
	sealer *Sealer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.db")
	e := &env{path: path, clock: &testClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}, mk: NewMasterKey()}
	e.db = openDB(t, path)
	var err error
	if e.sealer, err = NewSealer(e.mk.Derive(PurposeKeySealing)); err != nil {
		t.Fatal(err)
	}
	return e
}

func openDB(t *testing.T, path string) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: "file:" + path, AutoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func (e *env) options(alg string) Options {
	return Options{
		Store: e.db, Sealer: e.sealer, Algorithm: alg, RotateEvery: rotateEvery, PublishAhead: publishAhead,
		Overlap: overlap, MaxTokenTTL: maxTokenTTL, Now: e.clock.Now,
	}
}

func (e *env) manager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(t.Context(), e.options("ES256"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func publishedKIDs(m *Manager) []string {
	body, _ := m.JWKS()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		panic(err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// verify checks tok with jwtverify against the manager's published keys.
func verify(t *testing.T, m *Manager, now func() time.Time, alg, tok string) error {
	t.Helper()
	v, err := jwtverify.New(jwtverify.Config{Issuer: "https://issuer.test", Audiences: []string{"api"}, Algorithms: []string{alg},
		Keys: jwtverify.KeyFunc(m.Keys), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(t.Context(), tok)
	return err
}

func (e *env) sign(t *testing.T, m *Manager) string {
	t.Helper()
	now := e.clock.Now()
	tok, err := m.Sign("at+jwt", map[string]any{"iss": "https://issuer.test", "aud": "api", "sub": "s",
		"iat": now.Unix(), "exp": now.Add(maxTokenTTL).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	p, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.PS256})
	if err != nil {
		t.Fatal(err)
	}
	return p.Signatures[0].Header.KeyID
}

func TestAlgorithms(t *testing.T) {
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t)
			m, err := New(t.Context(), e.options(alg))
			if err != nil {
				t.Fatal(err)
			}
			tok := e.sign(t, m)
			p, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatalf("token is not %s: %v", alg, err)
			}
			hdr := p.Signatures[0].Header
			if hdr.Algorithm != alg || hdr.ExtraHeaders["typ"] != "at+jwt" || hdr.KeyID != m.SigningKeyID() {
				t.Errorf("header = alg %s typ %v kid %s", hdr.Algorithm, hdr.ExtraHeaders["typ"], hdr.KeyID)
			}
			if err := verify(t, m, e.clock.Now, alg, tok); err != nil {
				t.Fatalf("does not verify: %v", err)
			}
			// The kid is the RFC 7638 thumbprint of the public key.
			keys, err := m.Keys(t.Context(), hdr.KeyID)
			if err != nil || len(keys) != 1 {
				t.Fatalf("Keys(%s) = %v, %v", hdr.KeyID, keys, err)
			}
			if !keys[0].IsPublic() || keys[0].Algorithm != alg || keys[0].Use != "sig" {
				t.Errorf("published key = %+v", keys[0])
			}
		})
	}
	if _, err := New(t.Context(), newEnv(t).options("HS256")); err == nil {
		t.Error("HS256 accepted")
	}
}

// TestScheduledRotation walks one key lifecycle with an injected clock: the successor is
// published publish_ahead before it signs, and the old key stays published until its last
// token has expired plus the overlap.
func TestScheduledRotation(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	ctx := t.Context()
	start := e.clock.Now()
	first := m.SigningKeyID()
	if first == "" || len(publishedKIDs(m)) != 1 {
		t.Fatalf("first key: %q, published %v", first, publishedKIDs(m))
	}

	// Just before the rotation is due nothing happens.
	e.clock.Set(start.Add(rotateEvery - publishAhead - time.Second))
	if err := m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if got := publishedKIDs(m); len(got) != 1 {
		t.Fatalf("rotated early: %v", got)
	}

	// Due: a successor appears in the JWKS but does not sign yet.
	e.clock.Set(start.Add(rotateEvery - publishAhead))
	if err := m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	kids := publishedKIDs(m)
	if len(kids) != 2 {
		t.Fatalf("after Maintain: published %v, want two keys", kids)
	}
	second := kids[0]
	if second == first {
		second = kids[1]
	}
	if got := kidOf(t, e.sign(t, m)); got != first {
		t.Fatalf("the successor signs before publish_ahead passed")
	}

	// At its sign_from the successor signs; the old key is still published.
	signFrom := start.Add(rotateEvery)
	e.clock.Set(signFrom.Add(-time.Nanosecond))
	if got := m.SigningKeyID(); got != first {
		t.Fatalf("signing key just before sign_from = %s", got)
	}
	e.clock.Set(signFrom)
	if got := kidOf(t, e.sign(t, m)); got != second {
		t.Fatalf("at sign_from the token is signed by %s, want %s", got, second)
	}
	if err := m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := publishedKIDs(m); !slices.Equal(diff, sorted(first, second)) {
		t.Fatalf("published %v", diff)
	}
	// A token the old key signed just before the switch still verifies.
	e.clock.Set(signFrom.Add(-time.Second))
	lastOld := e.sign(t, m)
	e.clock.Set(signFrom.Add(maxTokenTTL - 2*time.Second))
	if err := verify(t, m, e.clock.Now, "ES256", lastOld); err != nil {
		t.Fatalf("a token of the retired key does not verify: %v", err)
	}

	// The stored schedule: retire at the successor's sign_from, remove after TTL + overlap.
	recs := m.Published()
	var old store.SigningKey
	for _, r := range recs {
		if r.ID == first {
			old = r
		}
		if r.PrivateSealed != nil {
			t.Error("Published leaks sealed private keys")
		}
	}
	if !old.RetireAt.Equal(signFrom) || !old.RemoveAt.Equal(signFrom.Add(maxTokenTTL+overlap)) {
		t.Fatalf("old key retire/remove = %v / %v, want %v / %v", old.RetireAt, old.RemoveAt, signFrom, signFrom.Add(maxTokenTTL+overlap))
	}

	// Still published one instant before removal, gone at removal.
	e.clock.Set(old.RemoveAt.Add(-time.Second))
	if err := m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if got := publishedKIDs(m); len(got) != 2 {
		t.Fatalf("old key removed early: %v", got)
	}
	e.clock.Set(old.RemoveAt)
	if err := m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if got := publishedKIDs(m); !slices.Equal(got, []string{second}) {
		t.Fatalf("after remove_at published %v, want only %s", got, second)
	}
	if ks, err := m.Keys(ctx, first); err == nil && len(ks) > 0 {
		t.Errorf("Keys still finds the removed key: %+v", ks)
	}
	stored, err := e.db.ListKeys(ctx)
	if err != nil || len(stored) != 1 {
		t.Fatalf("store holds %d keys (%v)", len(stored), err)
	}
}

func TestRotateOnDemand(t *testing.T) {
	t.Run("published first, then signs", func(t *testing.T) {
		e := newEnv(t)
		m := e.manager(t)
		old := m.SigningKeyID()
		nk, err := m.Rotate(t.Context(), RotateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !nk.SignFrom.Equal(e.clock.Now().Add(publishAhead)) {
			t.Errorf("sign_from = %v", nk.SignFrom)
		}
		if !slices.Contains(publishedKIDs(m), nk.ID) || m.SigningKeyID() != old {
			t.Fatalf("after Rotate: published %v, signing %s", publishedKIDs(m), m.SigningKeyID())
		}
		if _, err := m.Rotate(t.Context(), RotateOptions{}); !errors.Is(err, ErrRotationPending) {
			t.Fatalf("second Rotate: %v, want ErrRotationPending", err)
		}
		e.clock.Advance(publishAhead)
		if m.SigningKeyID() != nk.ID {
			t.Fatalf("signing %s after publish_ahead", m.SigningKeyID())
		}
	})
	t.Run("immediate keeps the old key published", func(t *testing.T) {
		e := newEnv(t)
		m := e.manager(t)
		old := m.SigningKeyID()
		oldTok := e.sign(t, m)
		nk, err := m.Rotate(t.Context(), RotateOptions{Immediate: true})
		if err != nil {
			t.Fatal(err)
		}
		if m.SigningKeyID() != nk.ID || kidOf(t, e.sign(t, m)) != nk.ID {
			t.Fatal("immediate rotation does not sign with the new key")
		}
		if !slices.Equal(publishedKIDs(m), sorted(old, nk.ID)) {
			t.Fatalf("published %v", publishedKIDs(m))
		}
		if err := verify(t, m, e.clock.Now, "ES256", oldTok); err != nil {
			t.Fatalf("old token: %v", err)
		}
	})
	t.Run("compromised: retire old keys now", func(t *testing.T) {
		e := newEnv(t)
		m := e.manager(t)
		oldTok := e.sign(t, m)
		nk, err := m.Rotate(t.Context(), RotateOptions{Immediate: true, RetireOldNow: true})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(publishedKIDs(m), []string{nk.ID}) {
			t.Fatalf("published %v, want only the new key", publishedKIDs(m))
		}
		if err := verify(t, m, e.clock.Now, "ES256", oldTok); err == nil {
			t.Fatal("a token of the compromised key still verifies")
		}
	})
}

// TestConcurrentRotationOneWinner: two managers (two replicas, two connections to one
// database) rotating at once create exactly one successor.
func TestConcurrentRotationOneWinner(t *testing.T) {
	for _, mode := range []string{"Maintain", "Rotate"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			a := e.manager(t)
			other := openDB(t, e.path)
			bo := e.options("ES256")
			bo.Store = other
			b, err := New(t.Context(), bo)
			if err != nil {
				t.Fatal(err)
			}
			if a.SigningKeyID() != b.SigningKeyID() {
				t.Fatal("replicas disagree on the first key")
			}
			e.clock.Advance(rotateEvery - publishAhead)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var wins, pending int
			for i := range 8 {
				m := a
				if i%2 == 1 {
					m = b
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					var err error
					if mode == "Maintain" {
						err = m.Maintain(t.Context())
					} else {
						_, err = m.Rotate(t.Context(), RotateOptions{})
					}
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						wins++
					case errors.Is(err, ErrRotationPending):
						pending++
					default:
						t.Errorf("%s: %v", mode, err)
					}
				}()
			}
			wg.Wait()
			ks, err := e.db.ListKeys(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(ks) != 2 {
				t.Fatalf("%d keys after concurrent %s, want 2 (one successor)", len(ks), mode)
			}
			if mode == "Rotate" && (wins != 1 || pending != 7) {
				t.Errorf("Rotate: %d won, %d pending; want 1 and 7", wins, pending)
			}
			for _, m := range []*Manager{a, b} {
				if err := m.Load(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(publishedKIDs(a), publishedKIDs(b)) {
				t.Errorf("replicas publish %v and %v", publishedKIDs(a), publishedKIDs(b))
			}
		})
	}
}

// TestKeysChangedEvent: a rotation is announced on the bus, and a replica running Run on the
// same bus reloads and publishes the new key.
func TestKeysChangedEvent(t *testing.T) {
	e := newEnv(t)
	bus := &events.Memory{}
	o := e.options("ES256")
	o.Events = bus
	a, err := New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan events.Event, 16)
	cancel := bus.Subscribe(func(ev events.Event) {
		select {
		case got <- ev:
		default:
		}
	})
	defer cancel()
	ctx, stop := context.WithCancel(t.Context())
	runDone := make(chan struct{})
	go func() { defer close(runDone); b.Run(ctx, time.Hour) }()
	defer func() { stop(); <-runDone }()

	nk, err := a.Rotate(t.Context(), RotateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.Kind != events.KeysChanged {
			t.Errorf("event %v, want %v", ev.Kind, events.KeysChanged)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("rotation not announced")
	}
	// b's Run subscribes in its own goroutine, possibly after that event: announce again
	// until it has reloaded.
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(publishedKIDs(b), nk.ID) {
		if time.Now().After(deadline) {
			t.Fatal("replica did not reload on KeysChanged")
		}
		_ = bus.Publish(t.Context(), events.Event{Kind: events.KeysChanged})
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPrivateKeysSealedAtRest: the database never holds a private key in the clear, and a
// different master key cannot open it.
func TestPrivateKeysSealedAtRest(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	if _, err := m.Rotate(t.Context(), RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ders [][]byte
	for _, lk := range m.state.Load().keys {
		der, err := x509.MarshalPKCS8PrivateKey(lk.priv)
		if err != nil {
			t.Fatal(err)
		}
		ders = append(ders, der)
		if ec, ok := lk.priv.(*ecdsa.PrivateKey); ok {
			d, err := ec.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			ders = append(ders, d) // the bare scalar too
		}
	}
	if len(ders) != 4 {
		t.Fatalf("%d secrets to look for, want 4", len(ders))
	}
	// The column itself, read with plain SQL ...
	raw, err := sql.Open("sqlite", "file:"+e.path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.QueryContext(t.Context(), "SELECT private_sealed FROM signing_keys")
	if err != nil {
		t.Fatal(err)
	}
	var cols [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, b)
	}
	rows.Close()
	if len(cols) != 2 {
		t.Fatalf("%d sealed keys in the table", len(cols))
	}
	// ... and every byte of the database files.
	var files []byte
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(e.path + suffix)
		if err == nil {
			files = append(files, b...)
		}
	}
	for i, der := range ders {
		for _, c := range cols {
			if bytes.Contains(c, der) {
				t.Errorf("secret %d is in the private_sealed column in the clear", i)
			}
		}
		if bytes.Contains(files, der) {
			t.Errorf("secret %d is in the database files in the clear", i)
		}
	}

	// Another master key cannot load the keys: the manager refuses to start.
	wrong, err := NewSealer(NewMasterKey().Derive(PurposeKeySealing))
	if err != nil {
		t.Fatal(err)
	}
	o := e.options("ES256")
	o.Sealer = wrong
	if _, err := New(t.Context(), o); err == nil {
		t.Fatal("a manager with the wrong master key loaded the keys")
	}
	// The right one still can (nothing was damaged by the failed attempt).
	if _, err := New(t.Context(), e.options("ES256")); err != nil {
		t.Fatalf("right master key after a wrong one: %v", err)
	}
}

// TestSealedKeyBoundToKID: a sealed private key moved to another key id does not open.
func TestSealedKeyBoundToKID(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	if _, err := m.Rotate(t.Context(), RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := e.db.UpdateKeys(t.Context(), func(old []store.SigningKey) ([]store.SigningKey, error) {
		ks := slices.Clone(old) // the store compares the result with what it passed in
		ks[0].PrivateSealed, ks[1].PrivateSealed = ks[1].PrivateSealed, ks[0].PrivateSealed
		return ks, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(t.Context(), e.options("ES256")); err == nil {
		t.Fatal("swapped sealed keys were accepted")
	}
}

func TestJWKSETag(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	body1, etag1 := m.JWKS()
	if etag1 == "" || len(body1) == 0 {
		t.Fatal("empty JWKS or ETag")
	}
	if err := m.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, again := m.JWKS(); again != etag1 {
		t.Error("ETag changed without a key change")
	}
	if _, err := m.Rotate(t.Context(), RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	body2, etag2 := m.JWKS()
	if etag2 == etag1 || bytes.Equal(body1, body2) {
		t.Error("ETag or body unchanged after rotation")
	}
	if bytes.Contains(body2, []byte(`"d"`)) {
		t.Error("JWKS holds private material")
	}
}

// TestRestartKeepsKeys: a new manager on the same store signs with the same key.
func TestRestartKeepsKeys(t *testing.T) {
	e := newEnv(t)
	m := e.manager(t)
	tok := e.sign(t, m)
	m2 := e.manager(t)
	if m2.SigningKeyID() != m.SigningKeyID() {
		t.Fatalf("after restart the key is %s, was %s", m2.SigningKeyID(), m.SigningKeyID())
	}
	if err := verify(t, m2, e.clock.Now, "ES256", tok); err != nil {
		t.Fatalf("token from before the restart: %v", err)
	}
}

// TestPublicHalfMustMatchPrivateKey: a store row whose public JWK was replaced (another
// key under the same kid, another row's key, another alg) is refused at load, so the JWKS
// can never advertise a key other than the one that signs. A running manager keeps the set
// it verified; a new one refuses to start, and the log names the key.
func TestPublicHalfMustMatchPrivateKey(t *testing.T) {
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tamper func(t *testing.T, ks []store.SigningKey)
	}{
		{"another key under the same kid", func(t *testing.T, ks []store.SigningKey) {
			j, err := jose.JSONWebKey{Key: attacker.Public(), KeyID: ks[0].ID, Algorithm: "ES256", Use: "sig"}.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			ks[0].PublicJWK = j
		}},
		{"public halves of two rows swapped", func(t *testing.T, ks []store.SigningKey) {
			ks[0].PublicJWK, ks[1].PublicJWK = ks[1].PublicJWK, ks[0].PublicJWK
		}},
		{"another alg", func(t *testing.T, ks []store.SigningKey) {
			var j map[string]any
			if err := json.Unmarshal(ks[0].PublicJWK, &j); err != nil {
				t.Fatal(err)
			}
			j["alg"] = "ES384"
			ks[0].PublicJWK, _ = json.Marshal(j)
		}},
		{"a private key in the public column", func(t *testing.T, ks []store.SigningKey) {
			j, err := jose.JSONWebKey{Key: attacker, KeyID: ks[0].ID, Algorithm: "ES256", Use: "sig"}.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			ks[0].PublicJWK = j
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.manager(t)
			if _, err := m.Rotate(t.Context(), RotateOptions{}); err != nil {
				t.Fatal(err)
			}
			before, _ := m.JWKS()
			_, err := e.db.UpdateKeys(t.Context(), func(old []store.SigningKey) ([]store.SigningKey, error) {
				ks := slices.Clone(old) // the store compares the result with what it passed in
				for i := range ks {
					ks[i].PublicJWK = slices.Clone(ks[i].PublicJWK)
				}
				tt.tamper(t, ks)
				return ks, nil
			})
			if err != nil {
				t.Fatal(err)
			}

			if err := m.Load(t.Context()); !errors.Is(err, ErrKeyMismatch) {
				t.Errorf("reload of a tampered row: %v, want ErrKeyMismatch", err)
			}
			if after, _ := m.JWKS(); !bytes.Equal(after, before) {
				t.Errorf("the running manager now publishes\n%s\nwas\n%s", after, before)
			}
			if err := verify(t, m, e.clock.Now, "ES256", e.sign(t, m)); err != nil {
				t.Errorf("the running manager's tokens no longer verify against its own JWKS: %v", err)
			}

			var log bytes.Buffer
			o := e.options("ES256")
			o.Logger = slog.New(slog.NewTextHandler(&log, nil))
			if _, err := New(t.Context(), o); !errors.Is(err, ErrKeyMismatch) {
				t.Fatalf("a manager loaded a tampered key set: %v", err)
			}
			if !strings.Contains(log.String(), "level=ERROR") || !strings.Contains(log.String(), "kid=") {
				t.Errorf("log: %s", log.String())
			}
		})
	}
}
