package jwtverify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "https://api.test"
)

// testNow is the fixed clock of most tests.
var testNow = time.Unix(1_760_000_000, 0)

// testKey is a freshly generated signing key and its public JWK.
type testKey struct {
	alg  string
	priv crypto.Signer
	pub  jose.JSONWebKey
}

// rsaKeys caches generated RSA keys by size: generating them dominates test time on small machines.
var rsaKeys sync.Map

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	if k, ok := rsaKeys.Load(bits); ok {
		return k.(*rsa.PrivateKey)
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	actual, _ := rsaKeys.LoadOrStore(bits, k)
	return actual.(*rsa.PrivateKey)
}

// newTestKey generates a key for alg. RSA keys are generated once per size and test binary;
// every other key is new for each call.
func newTestKey(t testing.TB, alg, kid string) *testKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		priv = rsaKey(t, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{alg: alg, priv: priv, pub: jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Use: "sig", Algorithm: alg}}
}

// freshRSAKey generates a distinct RSA key (for "another key" tests).
func freshRSAKey(t testing.TB, alg, kid string) *testKey {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{alg: alg, priv: priv, pub: jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Use: "sig", Algorithm: alg}}
}

// baseClaims are claims every default test verifier accepts at testNow.
func baseClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss":       testIssuer,
		"aud":       testAudience,
		"sub":       "alice",
		"client_id": "orders-app",
		"jti":       "jti-1",
		"scope":     "orders:read orders:write",
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(5 * time.Minute).Unix(),
	}
}

// with returns a copy of m with the given changes; a nil value deletes the key.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// mintJOSE signs claims with go-jose's own signer (an implementation independent of ours).
func (k *testKey) mintJOSE(t testing.TB, claims map[string]any, typ string) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", k.pub.KeyID)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.alg), Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// defaultHeader is {"alg": k.alg, "kid": k.kid, "typ": "at+jwt"}.
func (k *testKey) defaultHeader() map[string]any {
	return map[string]any{"alg": k.alg, "kid": k.pub.KeyID, "typ": "at+jwt"}
}

// mint builds a compact JWS by hand (any header, any payload) and signs it with k.
func (k *testKey) mint(t testing.TB, header map[string]any, claims any) string {
	t.Helper()
	input := encodeSegment(t, header) + "." + encodeSegment(t, claims)
	return input + "." + b64(k.signRaw(t, header["alg"].(string), []byte(input)))
}

// signRaw signs input for alg with the standard library.
func (k *testKey) signRaw(t testing.TB, alg string, input []byte) []byte {
	t.Helper()
	switch priv := k.priv.(type) {
	case *ecdsa.PrivateKey:
		size := (priv.Curve.Params().BitSize + 7) / 8
		var d []byte
		switch size {
		case 32:
			h := sha256.Sum256(input)
			d = h[:]
		case 48:
			h := sha512.Sum384(input)
			d = h[:]
		default:
			h := sha512.Sum512(input)
			d = h[:]
		}
		r, s, err := ecdsa.Sign(rand.Reader, priv, d)
		if err != nil {
			t.Fatal(err)
		}
		sig := make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
		return sig
	case ed25519.PrivateKey:
		return ed25519.Sign(priv, input)
	case *rsa.PrivateKey:
		h := rsaHash(alg)
		d := digest(h, input)
		var sig []byte
		var err error
		if strings.HasPrefix(alg, "PS") {
			sig, err = rsa.SignPSS(rand.Reader, priv, h, d, &rsa.PSSOptions{SaltLength: h.Size(), Hash: h})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, priv, h, d)
		}
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	t.Fatalf("unsupported key %T", k.priv)
	return nil
}

func encodeSegment(t testing.TB, v any) string {
	t.Helper()
	if s, ok := v.(string); ok { // raw payload text
		return b64([]byte(s))
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(data)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// newTestVerifier builds a verifier for keys with the test issuer, audience and clock; change
// applies test-specific settings.
func newTestVerifier(t testing.TB, keys KeySource, change func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{
		Issuer:     testIssuer,
		Audiences:  []string{testAudience},
		Algorithms: []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"},
		Keys:       keys,
		Now:        func() time.Time { return testNow },
	}
	if change != nil {
		change(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func staticKeys(t testing.TB, keys ...*testKey) *StaticKeySet {
	t.Helper()
	var jwks []jose.JSONWebKey
	for _, k := range keys {
		jwks = append(jwks, k.pub)
	}
	s, err := StaticKeys(jwks...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jwksJSON serializes public keys as a JWKS document.
func jwksJSON(t testing.TB, keys ...*testKey) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.pub)
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// countingKeys wraps a KeySource and counts calls.
type countingKeys struct {
	mu    sync.Mutex
	src   KeySource
	calls int
	kids  []string
}

func (c *countingKeys) Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	c.mu.Lock()
	c.calls++
	c.kids = append(c.kids, kid)
	c.mu.Unlock()
	return c.src.Keys(ctx, kid)
}

func (c *countingKeys) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(t time.Time) *clock { return &clock{now: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
