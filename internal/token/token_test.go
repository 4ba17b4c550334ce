package token

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/store"
)

// memTokens is an in-memory store.TokenStore with just enough behaviour for the minter.
type memTokens struct {
	mu   sync.Mutex
	m    map[string]store.Token
	fail error
}

func (s *memTokens) CreateToken(_ context.Context, t store.Token) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if s.m == nil {
		s.m = map[string]store.Token{}
	}
	if _, dup := s.m[t.Hash]; dup {
		return store.ErrDuplicate
	}
	s.m[t.Hash] = t
	return nil
}

func (s *memTokens) GetToken(_ context.Context, hash string) (store.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[hash]
	if !ok {
		return store.Token{}, store.ErrNotFound
	}
	return t, nil
}

func (s *memTokens) RevokeToken(context.Context, string, time.Time) error {
	return errors.ErrUnsupported
}
func (s *memTokens) RevokeFamily(context.Context, string, time.Time) ([]string, error) {
	return nil, errors.ErrUnsupported
}
func (s *memTokens) ConsumeToken(context.Context, string, time.Time, []store.Token) (store.Token, error) {
	return store.Token{}, errors.ErrUnsupported
}
func (s *memTokens) DeleteExpiredTokens(context.Context, time.Time) (int, error) {
	return 0, errors.ErrUnsupported
}

// recordingSigner remembers what it was asked to sign.
type recordingSigner struct {
	typ    string
	claims map[string]any
}

func (r *recordingSigner) Sign(typ string, claims any) (string, error) {
	r.typ, r.claims = typ, claims.(map[string]any)
	return "eyJhbGciOiJFUzI1NiJ9.e30." + NewOpaque(""), nil
}

func TestNewOpaque(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tok := NewOpaque(AccessPrefix)
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, AccessPrefix))
		if !strings.HasPrefix(tok, "pcat_") || err != nil || len(raw) != 32 {
			t.Fatalf("%q: %d random bytes (%v), want the pcat_ prefix and 32", tok, len(raw), err)
		}
		if seen[tok] {
			t.Fatal("repeated token")
		}
		seen[tok] = true
	}
}

func TestHashIsSHA256(t *testing.T) {
	tok := NewOpaque(AccessPrefix)
	sum := sha256.Sum256([]byte(tok))
	if got, want := Hash(tok), base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("Hash = %q, want %q", got, want)
	}
}

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, time.UTC)

func newMinter(s *memTokens, sig Signer) *Minter {
	return &Minter{Issuer: "https://issuer.test", AccessTTL: 5 * time.Minute, Signer: sig, Store: s, Now: func() time.Time { return testNow }}
}

func TestAccessOpaque(t *testing.T) {
	st := &memTokens{}
	sig := &recordingSigner{}
	m := newMinter(st, sig)
	req := AccessRequest{
		Client:   store.Client{ID: "app", TokenFormat: FormatOpaque},
		Subject:  "app",
		Scopes:   []string{"orders:read"},
		Audience: []string{"https://api.test"},
		Claims:   map[string]any{"customer_id": "acme"},
	}
	acc, err := m.Access(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(acc.Token, AccessPrefix) || acc.ExpiresIn != 5*time.Minute {
		t.Fatalf("access = %+v", acc)
	}
	if sig.typ != "" {
		t.Error("an opaque token was signed")
	}
	rec, err := st.GetToken(t.Context(), Hash(acc.Token))
	if err != nil {
		t.Fatalf("stored under its hash: %v", err)
	}
	issued := testNow.Truncate(time.Second)
	want := store.Token{
		Hash: Hash(acc.Token), Kind: store.KindAccess, Format: FormatOpaque, ClientID: "app", Subject: "app",
		Scopes: []string{"orders:read"}, Audience: []string{"https://api.test"}, Claims: map[string]any{"customer_id": "acme"},
		IssuedAt: issued, ExpiresAt: issued.Add(5 * time.Minute),
	}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, acc.Record); diff != "" {
		t.Errorf("returned record (-want +got):\n%s", diff)
	}
	for h := range st.m {
		if h == acc.Token || strings.Contains(h, strings.TrimPrefix(acc.Token, AccessPrefix)) {
			t.Error("the store holds the token itself")
		}
	}
}

func TestAccessJWT(t *testing.T) {
	tests := []struct {
		name    string
		client  store.Client
		wantJWT bool
	}{
		{"internal client asking for jwt", store.Client{ID: "svc", TokenFormat: FormatJWT, Internal: true}, true},
		{"external client asking for jwt gets opaque", store.Client{ID: "ext", TokenFormat: FormatJWT}, false},
		{"internal client asking for opaque", store.Client{ID: "svc", TokenFormat: FormatOpaque, Internal: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &memTokens{}
			sig := &recordingSigner{}
			acc, err := newMinter(st, sig).Access(t.Context(), AccessRequest{Client: tt.client, Subject: tt.client.ID,
				Scopes: []string{"reports:read"}, Audience: []string{"https://issuer.test"}})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(acc.Token, ".") == 2; got != tt.wantJWT {
				t.Fatalf("JWT = %v, want %v (%q)", got, tt.wantJWT, acc.Token)
			}
			if !tt.wantJWT {
				return
			}
			if sig.typ != TypeAccessJWT {
				t.Errorf("typ = %q, want at+jwt", sig.typ)
			}
			if acc.Record.Format != FormatJWT || acc.Record.Hash != Hash(acc.Token) {
				t.Errorf("record = %+v", acc.Record)
			}
			issued := testNow.Truncate(time.Second)
			jti, _ := sig.claims["jti"].(string)
			if raw, err := base64.RawURLEncoding.DecodeString(jti); err != nil || len(raw) < 16 {
				t.Errorf("jti %q is not 128 random bits", jti)
			}
			want := map[string]any{"iss": "https://issuer.test", "sub": "svc", "aud": "https://issuer.test", "client_id": "svc",
				"scope": "reports:read", "iat": issued.Unix(), "exp": issued.Add(5 * time.Minute).Unix(), "jti": jti}
			if diff := cmp.Diff(want, sig.claims); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAccessStoreFailure(t *testing.T) {
	st := &memTokens{fail: store.ErrUnavailable}
	_, err := newMinter(st, &recordingSigner{}).Access(t.Context(), AccessRequest{Client: store.Client{ID: "app"}})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want it to wrap store.ErrUnavailable", err)
	}
}

// TestClaimsRegisteredWin: configured claims can never override the registered ones.
func TestClaimsRegisteredWin(t *testing.T) {
	rec := store.Token{
		ClientID: "app", Subject: "app", Scopes: []string{"a", "b"}, Audience: []string{"x", "y"},
		IssuedAt: testNow, ExpiresAt: testNow.Add(time.Minute),
		Claims: map[string]any{"iss": "https://evil", "sub": "admin", "aud": "everything", "exp": 1 << 40,
			"scope": "admin", "client_id": "root", "jti": "fixed", "customer_id": "acme"},
		Extra: map[string]any{"auth_time": int64(12345), "nonce": "not a claim"},
	}
	got := Claims("https://issuer.test", rec, "jti-1")
	want := map[string]any{"iss": "https://issuer.test", "sub": "app", "aud": []string{"x", "y"}, "exp": testNow.Add(time.Minute).Unix(),
		"iat": testNow.Unix(), "jti": "jti-1", "client_id": "app", "scope": "a b", "customer_id": "acme", "auth_time": int64(12345)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	noScope := Claims("https://issuer.test", store.Token{Audience: []string{"x"}}, "j")
	if _, ok := noScope["scope"]; ok || noScope["aud"] != "x" {
		t.Errorf("without scopes: %v", noScope)
	}
}

// TestPhantomMarker: the phantom JWT of an opaque token (jti = the record's hash, as the
// issuer's introspection signs it) carries PhantomClaim, so jwt routes can refuse it; an
// access JWT never does, whatever claims are configured.
func TestPhantomMarker(t *testing.T) {
	rec := store.Token{
		Hash: Hash("pcat_x"), Format: FormatOpaque, ClientID: "app", Subject: "alice",
		IssuedAt: testNow, ExpiresAt: testNow.Add(time.Minute), Claims: map[string]any{PhantomClaim: false},
	}
	tests := []struct {
		name    string
		sign    func(m *Minter) error
		phantom any // nil: absent
	}{
		{"phantom of an opaque token", func(m *Minter) error { _, err := m.Sign(rec, rec.Hash); return err }, true},
		{"another jti", func(m *Minter) error { _, err := m.Sign(rec, "jti-1"); return err }, nil},
		{"access jwt with a configured claim of that name", func(m *Minter) error {
			_, err := m.Access(t.Context(), AccessRequest{Client: store.Client{ID: "svc", TokenFormat: FormatJWT, Internal: true},
				Subject: "svc", Claims: map[string]any{PhantomClaim: true}})
			return err
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := &recordingSigner{}
			if err := tt.sign(newMinter(&memTokens{}, sig)); err != nil {
				t.Fatal(err)
			}
			if got := sig.claims[PhantomClaim]; got != tt.phantom {
				t.Errorf("%s = %v, want %v", PhantomClaim, got, tt.phantom)
			}
		})
	}
}

func BenchmarkAccessOpaque(b *testing.B) {
	m := newMinter(&memTokens{}, &recordingSigner{})
	req := AccessRequest{Client: store.Client{ID: "app"}, Subject: "app", Scopes: []string{"orders:read"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Access(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}
