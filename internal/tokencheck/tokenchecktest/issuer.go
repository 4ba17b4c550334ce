// Package tokenchecktest is a stand-in issuer for tests of the gateway and tokencheck: an
// httptest TLS server that publishes RFC 8414 metadata and a JWKS, mints opaque and at+jwt
// access tokens, and answers introspection with real RFC 9701 signed JWTs (ES256, go-jose)
// that carry a phantom JWT. It follows the issuer's contract so that end-to-end tests can
// later swap it for the real issuer.
package tokenchecktest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/jwtverify"
)

// Gateway credentials the stand-in issuer accepts for introspection by default.
const (
	GatewayClientID     = "gateway"
	GatewayClientSecret = "gateway-secret-for-tests"
)

// Grant is what a token stands for.
type Grant struct {
	Subject  string
	ClientID string
	Scopes   []string
	Audience []string  // default: the issuer's default audience
	Expiry   time.Time // default: now + 5m
	Claims   map[string]any
	// JTI is the jti of a JWT minted by Issuer.JWT (default: random).
	JTI string
}

// PhantomClaim marks the phantom JWT, as token.PhantomClaim does in the issuer's.
const PhantomClaim = "phantom"

// Issuer is the stand-in issuer. Its fields are read-only after New.
type Issuer struct {
	// URL is the issuer identifier (the server's base URL).
	URL string
	// Audience is the default audience of the tokens it mints.
	Audience string
	Server   *httptest.Server

	key    *ecdsa.PrivateKey
	kid    string
	rogue  *ecdsa.PrivateKey // signs answers when BadSignature is set
	now    func() time.Time
	caFile string

	mu     sync.Mutex
	grants map[string]*grantState

	calls        atomic.Int64
	metaCalls    atomic.Int64
	down         atomic.Bool
	badSignature atomic.Bool
	gate         atomic.Pointer[chan struct{}]
	// Tamper, when set before requests arrive, may change the claims of every introspection
	// answer just before it is signed.
	Tamper func(claims map[string]any)
}

type grantState struct {
	g       Grant
	revoked bool
}

// Option configures New.
type Option func(*Issuer)

// WithNow sets the issuer's clock (token iat/exp and answer iat/exp).
func WithNow(now func() time.Time) Option { return func(is *Issuer) { is.now = now } }

// New starts the stand-in issuer; it stops when the test ends.
func New(t testing.TB, opts ...Option) *Issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &Issuer{key: key, rogue: rogue, kid: randomString(8), now: time.Now, grants: map[string]*grantState{}}
	for _, o := range opts {
		o(is)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", is.metadata)
	mux.HandleFunc("GET /jwks", is.jwks)
	mux.HandleFunc("POST /introspect", is.introspect)
	is.Server = httptest.NewTLSServer(mux)
	t.Cleanup(is.Server.Close)
	is.URL = is.Server.URL
	is.Audience = is.URL + "/api"

	is.caFile = filepath.Join(t.TempDir(), "issuer-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.Server.Certificate().Raw})
	if err := os.WriteFile(is.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return is
}

// CAFile is a PEM file holding the certificate that the issuer's TLS server presents.
func (is *Issuer) CAFile() string { return is.caFile }

// HTTPClient trusts the issuer's certificate.
func (is *Issuer) HTTPClient() *http.Client { return is.Server.Client() }

// PublicKeys is the issuer's key set, as an upstream verifying phantom JWTs would hold it.
func (is *Issuer) PublicKeys() *jwtverify.StaticKeySet {
	ks, err := jwtverify.StaticKeys(jose.JSONWebKey{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: "ES256", Use: "sig"})
	if err != nil {
		panic(err) // a freshly generated P-256 key is always usable
	}
	return ks
}

// Opaque mints an opaque access token (pcat_ + 43 base64url characters) for g.
func (is *Issuer) Opaque(g Grant) string {
	tok := "pcat_" + randomString(32)
	is.mu.Lock()
	is.grants[tok] = &grantState{g: is.fill(g)}
	is.mu.Unlock()
	return tok
}

// JWT mints an RFC 9068 at+jwt access token for g, as an internal client would get it.
func (is *Issuer) JWT(g Grant) string {
	return is.sign(is.accessClaims(is.fill(g)), "at+jwt", is.key)
}

// Revoke makes the issuer answer "inactive" for token from now on (it does not publish an
// event: tests do that on their bus, as the real issuer would).
func (is *Issuer) Revoke(token string) {
	is.mu.Lock()
	if g := is.grants[token]; g != nil {
		g.revoked = true
	}
	is.mu.Unlock()
}

// Introspections counts introspection requests received.
func (is *Issuer) Introspections() int64 { return is.calls.Load() }

// MetadataRequests counts metadata requests received.
func (is *Issuer) MetadataRequests() int64 { return is.metaCalls.Load() }

// SetDown makes every endpoint answer 503 (down == true) or work again.
func (is *Issuer) SetDown(down bool) { is.down.Store(down) }

// SetBadSignature makes introspection answers be signed by a key that is not in the JWKS.
func (is *Issuer) SetBadSignature(bad bool) { is.badSignature.Store(bad) }

// Hold makes introspection requests wait until release is called.
func (is *Issuer) Hold() (release func()) {
	ch := make(chan struct{})
	is.gate.Store(&ch)
	var once sync.Once
	return func() {
		once.Do(func() {
			is.gate.Store(nil)
			close(ch)
		})
	}
}

func (is *Issuer) fill(g Grant) Grant {
	if len(g.Audience) == 0 {
		g.Audience = []string{is.Audience}
	}
	if g.Expiry.IsZero() {
		g.Expiry = is.now().Add(5 * time.Minute)
	}
	return g
}

func (is *Issuer) accessClaims(g Grant) map[string]any {
	c := map[string]any{}
	for k, v := range g.Claims {
		c[k] = v
	}
	c["iss"] = is.URL
	c["sub"] = g.Subject
	c["client_id"] = g.ClientID
	c["aud"] = g.Audience
	c["exp"] = g.Expiry.Unix()
	c["iat"] = is.now().Unix()
	c["jti"] = g.JTI
	if g.JTI == "" {
		c["jti"] = randomString(12)
	}
	c["scope"] = strings.Join(g.Scopes, " ")
	return c
}

func (is *Issuer) sign(claims map[string]any, typ string, key *ecdsa.PrivateKey) string {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: is.kid}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)),
	)
	if err != nil {
		panic(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		panic(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return s
}

func (is *Issuer) metadata(w http.ResponseWriter, _ *http.Request) {
	is.metaCalls.Add(1)
	if is.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"issuer":                 is.URL,
		"jwks_uri":               is.URL + "/jwks",
		"introspection_endpoint": is.URL + "/introspect",
		"token_endpoint":         is.URL + "/token",
		"revocation_endpoint":    is.URL + "/revoke",
	})
}

func (is *Issuer) jwks(w http.ResponseWriter, _ *http.Request) {
	if is.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: "ES256", Use: "sig"}}}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_ = json.NewEncoder(w).Encode(set)
}

func (is *Issuer) introspect(w http.ResponseWriter, r *http.Request) {
	is.calls.Add(1)
	if g := is.gate.Load(); g != nil {
		select {
		case <-*g:
		case <-r.Context().Done():
			return
		}
	}
	if is.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
	if !ok || id != GatewayClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(GatewayClientSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="issuer"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/token-introspection+jwt") {
		http.Error(w, "this stand-in answers only RFC 9701", http.StatusNotAcceptable)
		return
	}
	token := r.PostFormValue("token")
	is.mu.Lock()
	st := is.grants[token]
	var g Grant
	active := st != nil && !st.revoked
	if active {
		g = st.g
	}
	is.mu.Unlock()
	now := is.now()
	if active && !now.Before(g.Expiry) {
		active = false
	}
	ti := map[string]any{"active": false}
	if active {
		access := is.accessClaims(g)
		// As the issuer does: the phantom token's jti is the opaque token's hash, which binds
		// the answer to the token it is about.
		access["jti"] = events.TokenHash(token)
		ti = map[string]any{}
		for k, v := range access {
			ti[k] = v
		}
		ti["active"] = true
		ti["token_type"] = "Bearer"
		access[PhantomClaim] = true // only in the phantom JWT, not in the answer's claims
		ti["phantom_jwt"] = is.sign(access, "at+jwt", is.key)
	}
	claims := map[string]any{
		"iss":                 is.URL,
		"aud":                 GatewayClientID,
		"iat":                 now.Unix(),
		"exp":                 now.Add(time.Minute).Unix(),
		"token_introspection": ti,
	}
	if is.Tamper != nil {
		is.Tamper(claims)
	}
	key := is.key
	if is.badSignature.Load() {
		key = is.rogue
	}
	w.Header().Set("Content-Type", "application/token-introspection+jwt")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(is.sign(claims, "token-introspection+jwt", key)))
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
