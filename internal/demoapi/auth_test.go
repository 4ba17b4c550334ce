package demoapi

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/portcullis/portcullis/jwtverify"
)

// every route, and a path that is no route: all of them verify the token first.
var allRoutes = []struct{ method, path string }{
	{http.MethodGet, "/api/orders"},
	{http.MethodPost, "/api/orders"},
	{http.MethodGet, "/api/orders/A-1001"},
	{http.MethodGet, "/api/whoami"},
	{http.MethodGet, "/internal/reports"},
	{http.MethodGet, "/no/such/route"},
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestRejectsBadTokens: every token that must not pass is refused with 401 on every route,
// with the same public answer whatever the reason.
func TestRejectsBadTokens(t *testing.T) {
	f := newFixture(t)
	good := accessClaims("acme-app", "acme", "orders:read orders:write reports:read")
	otherKey := newES256(t)
	pub, err := x509.MarshalPKIXPublicKey(&f.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	valid := f.token(good)
	parts := strings.Split(valid, ".")
	globexPayload := strings.Split(f.token(accessClaims("globex-app", "acme", "orders:read")), ".")[1]

	tests := []struct {
		name  string
		token string
	}{
		{"alg none", b64(`{"alg":"none","typ":"at+jwt","kid":"k1"}`) + "." + parts[1] + "."},
		{"alg none with the original signature", b64(`{"alg":"none","typ":"at+jwt","kid":"k1"}`) + "." + parts[1] + "." + parts[2]},
		{"HS256 keyed with the public key", signJWT(t, pub, jose.HS256, "k1", "at+jwt", good)},
		{"another key under the issuer's kid", signJWT(t, otherKey, jose.ES256, "k1", "at+jwt", good)},
		{"unknown kid", signJWT(t, otherKey, jose.ES256, "k2", "at+jwt", good)},
		{"kid with path traversal", signJWT(t, otherKey, jose.ES256, "../../keys/k1", "at+jwt", good)},
		{"payload swapped under the signature", parts[0] + "." + globexPayload + "." + parts[2]},
		{"signature stripped", parts[0] + "." + parts[1] + "."},
		{"psychic signature r=s=0", parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))},
		{"typ JWT (an id_token)", signJWT(t, f.key, jose.ES256, f.kid, "JWT", with(good, "nonce", "n-1", "aud", "acme-app"))},
		{"no typ", signJWT(t, f.key, jose.ES256, f.kid, "", good)},
		{"expired", f.token(with(good, "exp", testNow.Add(-time.Hour).Unix(), "iat", testNow.Add(-2*time.Hour).Unix()))},
		{"not yet valid", f.token(with(good, "nbf", testNow.Add(time.Hour).Unix()))},
		{"issued in the future", f.token(with(good, "iat", testNow.Add(time.Hour).Unix(), "exp", testNow.Add(2*time.Hour).Unix()))},
		{"no exp", f.token(with(good, "exp", nil))},
		{"wrong issuer", f.token(with(good, "iss", "https://evil.test"))},
		{"wrong audience", f.token(with(good, "aud", "https://other-api.test"))},
		{"no audience", f.token(with(good, "aud", nil))},
		{"no sub", f.token(with(good, "sub", nil))},
		{"no client_id", f.token(with(good, "client_id", nil))},
		{"no jti", f.token(with(good, "jti", nil))},
		{"no iat", f.token(with(good, "iat", nil))},
		{"oversized", f.token(with(good, "pad", strings.Repeat("x", 9000)))},
		{"not a JWT", "pcat_opaque-token-the-gateway-should-have-exchanged"},
		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`},
	}
	var first *problem
	for _, tc := range tests {
		for _, rt := range allRoutes {
			t.Run(tc.name+"/"+rt.method+rt.path, func(t *testing.T) {
				r := f.do(rt.method, rt.path, tc.token, nil, "Content-Type", "application/json")
				if r.status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401; body %s", r.status, r.body)
				}
				if got := r.header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
					t.Errorf("WWW-Authenticate %q", got)
				}
				p := problemOf(t, r)
				p.RequestID = ""
				if first == nil {
					first = &p
				} else if diff := cmp.Diff(*first, p); diff != "" {
					t.Errorf("the answer tells reasons apart (-first +this):\n%s", diff)
				}
			})
		}
	}
	// The valid token itself passes, so the table above proves the checks, not a broken setup.
	if r := f.do(http.MethodGet, "/api/whoami", valid, nil); r.status != http.StatusOK {
		t.Fatalf("valid token: status %d body %s", r.status, r.body)
	}
}

func TestCredentialForms(t *testing.T) {
	f := newFixture(t)
	tok := f.acme()
	tests := []struct {
		name      string
		header    []string // Authorization values
		query     string
		status    int
		challenge string
	}{
		{name: "no credentials", status: 401, challenge: "Bearer"},
		{name: "basic credentials", header: []string{"Basic " + b64("acme-app:secret")}, status: 401, challenge: "Bearer"},
		{name: "token in the query only", query: "?access_token=" + tok, status: 401, challenge: "Bearer"},
		{name: "empty bearer", header: []string{"Bearer "}, status: 400, challenge: `Bearer error="invalid_request"`},
		{name: "two authorization headers", header: []string{"Bearer " + tok, "Bearer " + tok}, status: 400, challenge: `Bearer error="invalid_request"`},
		{name: "lower-case scheme", header: []string{"bearer " + tok}, status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, f.srv.URL+"/api/whoami"+tc.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range tc.header {
				req.Header.Add("Authorization", h)
			}
			r := f.send(req)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.status, r.body)
			}
			if tc.status == 200 {
				return
			}
			if got := r.header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			problemOf(t, r)
		})
	}
}

// TestKeysUnavailable: when the issuer's keys cannot be had, the answer is 503, not 401 (the
// token may be fine) and certainly not 200.
func TestKeysUnavailable(t *testing.T) {
	good := newFixture(t)
	f := newFixture(t, func(o *Options) {
		o.Keys = jwtverify.KeyFunc(func(context.Context, string) ([]jose.JSONWebKey, error) {
			return nil, errors.New("issuer down")
		})
	})
	f.key, f.kid = good.key, good.kid
	r := f.do(http.MethodGet, "/api/whoami", f.acme(), nil)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503; body %s", r.status, r.body)
	}
	if p := problemOf(t, r); strings.Contains(p.Detail, "issuer down") {
		t.Errorf("detail leaks the cause: %q", p.Detail)
	}
}

// TestRemoteJWKS wires the API as the demo does: the issuer's JWKS over HTTPS.
func TestRemoteJWKS(t *testing.T) {
	key := newES256(t)
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "rk", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	issuer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(issuer.Close)
	remote, err := jwtverify.NewRemoteJWKS(issuer.URL+"/jwks", jwtverify.RemoteOptions{HTTPClient: issuer.Client()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remote.Close)
	f := newFixture(t, func(o *Options) { o.Keys = remote })
	f.key, f.kid = key, "rk"
	r := f.do(http.MethodGet, "/api/orders", f.acme(), nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d; body %s", r.status, r.body)
	}
	// A key the JWKS does not publish still fails.
	f.key = newES256(t)
	if r := f.do(http.MethodGet, "/api/orders", f.acme(), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("unpublished key: status %d; body %s", r.status, r.body)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	keys := jwtverify.KeyFunc(func(context.Context, string) ([]jose.JSONWebKey, error) { return nil, nil })
	tests := []struct {
		name string
		o    Options
	}{
		{"no issuer", Options{Audience: []string{testAudience}, Keys: keys}},
		{"no audience", Options{Issuer: testIssuer, Keys: keys}},
		{"no keys", Options{Issuer: testIssuer, Audience: []string{testAudience}}},
		{"HS256", Options{Issuer: testIssuer, Audience: []string{testAudience}, Keys: keys, Algorithms: []string{"HS256"}}},
		{"none", Options{Issuer: testIssuer, Audience: []string{testAudience}, Keys: keys, Algorithms: []string{"none"}}},
		{"negative limit", Options{Issuer: testIssuer, Audience: []string{testAudience}, Keys: keys, MaxOrders: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.o); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

// TestSecurityHeaders: successes and errors alike carry the headers.
func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t)
	tok := f.acme()
	tests := []struct {
		name         string
		method, path string
		token        string
		status       int
	}{
		{"ok", http.MethodGet, "/api/orders", tok, 200},
		{"unauthenticated", http.MethodGet, "/api/orders", "", 401},
		{"not found", http.MethodGet, "/nope", tok, 404},
		{"method", http.MethodDelete, "/api/orders", tok, 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(tc.method, tc.path, tc.token, nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
			want := map[string]string{
				"X-Content-Type-Options": "nosniff",
				"Cache-Control":          "no-store",
			}
			for k, v := range want {
				if got := r.header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
			if r.header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
		})
	}
}

func TestRouting(t *testing.T) {
	f := newFixture(t)
	tok := f.token(accessClaims("acme-app", "acme", "orders:read orders:write reports:read"))
	tests := []struct {
		name         string
		method, path string
		status       int
		allow        string
	}{
		{"unknown path", http.MethodGet, "/api/customers", 404, ""},
		{"root", http.MethodGet, "/", 404, ""},
		{"trailing slash", http.MethodGet, "/api/orders/", 404, ""},
		{"below an order", http.MethodGet, "/api/orders/A-1001/items", 404, ""},
		{"delete orders", http.MethodDelete, "/api/orders", 405, "GET, POST"},
		{"put an order", http.MethodPut, "/api/orders/A-1001", 405, "GET"},
		{"post whoami", http.MethodPost, "/api/whoami", 405, "GET"},
		{"post reports", http.MethodPost, "/internal/reports", 405, "GET"},
		{"dot segment", http.MethodGet, "/api/./orders", 400, ""},
		{"dot-dot segment", http.MethodGet, "/api/orders/../whoami", 400, ""},
		{"double slash", http.MethodGet, "/api//orders", 400, ""},
		{"backslash", http.MethodGet, "/api/orders\\A-1001", 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(tc.method, tc.path, tok, nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.status, r.body)
			}
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			problemOf(t, r)
		})
	}
}
