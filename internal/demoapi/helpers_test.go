package demoapi

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/portcullis/portcullis/jwtverify"
)

const (
	testIssuer   = "https://issuer.demo.test"
	testAudience = "https://api.demo.test"
)

// testNow is the API's clock in every test.
var testNow = time.Date(2026, time.January, 15, 12, 0, 0, 0, time.UTC)

// fixture is a demo API served over real TLS, trusting one freshly generated ES256 key.
type fixture struct {
	t      *testing.T
	key    *ecdsa.PrivateKey
	kid    string
	api    *API
	srv    *httptest.Server
	client *http.Client
}

func newFixture(t *testing.T, edit ...func(*Options)) *fixture {
	t.Helper()
	key := newES256(t)
	f := &fixture{t: t, key: key, kid: "k1"}
	keys, err := jwtverify.StaticKeys(jose.JSONWebKey{Key: &key.PublicKey, KeyID: f.kid, Algorithm: "ES256", Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Issuer:   testIssuer,
		Audience: []string{testAudience},
		Keys:     keys,
		Now:      func() time.Time { return testNow },
	}
	for _, e := range edit {
		e(&o)
	}
	f.api, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(f.api.Handler())
	// Connections the client pool dialled but never used end in handshake errors at Close:
	// keep them in the test's own log.
	lw := &testLogWriter{t: t}
	t.Cleanup(lw.stop) // runs after Close: nothing logs once the test is over
	f.srv.Config.ErrorLog = log.New(lw, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	f.client = f.srv.Client()
	return f
}

func newES256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// accessClaims are the claims the issuer puts into a phantom token for a client.
func accessClaims(clientID, customer, scope string) map[string]any {
	c := map[string]any{
		"iss":       testIssuer,
		"sub":       clientID,
		"aud":       testAudience,
		"exp":       testNow.Add(5 * time.Minute).Unix(),
		"iat":       testNow.Unix(),
		"jti":       "jti-" + clientID,
		"client_id": clientID,
	}
	if scope != "" {
		c["scope"] = scope
	}
	if customer != "" {
		c["customer_id"] = customer
	}
	return c
}

// with returns a copy of claims with changes; a nil value deletes the claim.
func with(claims map[string]any, kv ...any) map[string]any {
	out := maps.Clone(claims)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// signJWT signs claims with go-jose as the issuer does (keys.Manager): alg and kid from the
// key, typ in the protected header ("" leaves it out).
func signJWT(t testing.TB, key any, alg jose.SignatureAlgorithm, kid, typ string, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(alg)}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// token signs claims with the fixture's issuer key as an at+jwt.
func (f *fixture) token(claims map[string]any) string {
	return signJWT(f.t, f.key, jose.ES256, f.kid, "at+jwt", claims)
}

// Tokens of the demo clients.
func (f *fixture) acme() string {
	return f.token(accessClaims("acme-app", "acme", "orders:read orders:write"))
}
func (f *fixture) globex() string {
	return f.token(accessClaims("globex-app", "globex", "orders:read"))
}

// testLogWriter sends a server's log lines to t.Log until stopped.
type testLogWriter struct {
	t       *testing.T
	mu      sync.Mutex
	stopped bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// response is a read response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; token "" sends no Authorization header. hdr are extra header pairs.
func (f *fixture) do(method, path, token string, body []byte, hdr ...string) response {
	f.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(f.t.Context(), method, f.srv.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return f.send(req)
}

func (f *fixture) send(req *http.Request) response {
	f.t.Helper()
	res, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// postOrder posts a JSON body.
func (f *fixture) postOrder(token, body string) response {
	f.t.Helper()
	return f.do(http.MethodPost, "/api/orders", token, []byte(body), "Content-Type", "application/json")
}

// problem is an RFC 9457 body as the API writes it.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
}

// problemOf decodes a problem+json response, failing the test when it is not one.
func problemOf(t *testing.T, r response) problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, r.body)
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	if p.Status != r.status {
		t.Errorf("problem status %d, response status %d", p.Status, r.status)
	}
	if p.RequestID == "" || p.RequestID != r.header.Get("X-Request-Id") {
		t.Errorf("problem request_id %q, X-Request-Id %q", p.RequestID, r.header.Get("X-Request-Id"))
	}
	return p
}

// jsonOf decodes a JSON response into v, failing when it is not one.
func jsonOf(t *testing.T, r response, v any) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json; status %d body %s", ct, r.status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
}

// keysOf returns the sorted top-level keys of a JSON object.
func keysOf(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not an object: %s", b)
	}
	return slices.Sorted(maps.Keys(m))
}
