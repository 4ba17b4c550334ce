package jwtverify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestNewRejectsBadConfig(t *testing.T) {
	keys := staticKeys(t, newTestKey(t, "ES256", "k1"))
	valid := func() Config {
		return Config{Issuer: testIssuer, Audiences: []string{testAudience}, Keys: keys}
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no issuer", func(c *Config) { c.Issuer = "" }, "issuer is required"},
		{"no audience", func(c *Config) { c.Audiences = nil }, "at least one audience"},
		{"empty audience", func(c *Config) { c.Audiences = []string{""} }, "audiences: empty value"},
		{"alg none", func(c *Config) { c.Algorithms = []string{"none"} }, `"none" can never be allowed`},
		{"alg NONE", func(c *Config) { c.Algorithms = []string{"NONE"} }, `"NONE" can never be allowed`},
		{"alg HS256", func(c *Config) { c.Algorithms = []string{"ES256", "HS256"} }, `"HS256" can never be allowed`},
		{"alg hs512", func(c *Config) { c.Algorithms = []string{"hs512"} }, `"hs512" can never be allowed`},
		{"alg unknown", func(c *Config) { c.Algorithms = []string{"ES256K"} }, "unknown algorithm"},
		{"alg wrong case", func(c *Config) { c.Algorithms = []string{"es256"} }, "unknown algorithm"},
		{"leeway too large", func(c *Config) { c.Leeway = 6 * time.Minute }, "exceeds the maximum"},
		{"negative leeway", func(c *Config) { c.Leeway = -time.Second }, "leeway must not be negative"},
		{"negative size", func(c *Config) { c.MaxTokenBytes = -1 }, "max token bytes"},
		{"negative lifetime", func(c *Config) { c.MaxLifetime = -1 }, "max lifetime"},
		{"empty required claim", func(c *Config) { c.RequiredClaims = []string{""} }, "required claims"},
		{"no keys", func(c *Config) { c.Keys = nil }, "key source is required"},
		{"negative cache", func(c *Config) { c.CacheSize = -1 }, "cache size"},
		{"negative cache ttl", func(c *Config) { c.CacheTTL = -1 }, "cache TTL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.change(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	t.Run("all problems at once", func(t *testing.T) {
		_, err := New(Config{Algorithms: []string{"none"}})
		for _, want := range []string{"issuer", "audience", "none", "key source"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("New error = %v, want it to mention %q", err, want)
			}
		}
	})
	t.Run("valid", func(t *testing.T) {
		if _, err := New(valid()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestVerifyAcceptsEveryAllowedAlgorithm(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"} {
		t.Run(alg, func(t *testing.T) {
			k := newTestKey(t, alg, "kid-"+alg)
			v := newTestVerifier(t, staticKeys(t, k), func(c *Config) { c.Algorithms = []string{alg} })
			claims := baseClaims(testNow)
			// go-jose's signer: an implementation independent of ours.
			got, err := v.Verify(t.Context(), k.mintJOSE(t, claims, "at+jwt"))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := &Claims{
				Issuer: testIssuer, Subject: "alice", ID: "jti-1", ClientID: "orders-app",
				Audience:  []string{testAudience},
				Expiry:    testNow.Add(5 * time.Minute),
				NotBefore: testNow,
				IssuedAt:  testNow,
				Scopes:    []string{"orders:read", "orders:write"},
				KeyID:     "kid-" + alg, Algorithm: alg, Type: "at+jwt",
			}
			if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Claims{}, "Raw")); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			if got.Raw["exp"] != json.Number(strconv.FormatInt(testNow.Add(5*time.Minute).Unix(), 10)) {
				t.Errorf("Raw exp = %#v, want a json.Number", got.Raw["exp"])
			}
			// Our own hand-built token too.
			if _, err := v.Verify(t.Context(), k.mint(t, k.defaultHeader(), claims)); err != nil {
				t.Fatalf("Verify hand-built token: %v", err)
			}
		})
	}
}

func TestVerifyAcceptsVariants(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	keys := staticKeys(t, k)
	claims := baseClaims(testNow)
	tests := []struct {
		name   string
		token  func() string
		change func(*Config)
	}{
		{"typ application/at+jwt", func() string { return k.mint(t, with(k.defaultHeader(), "typ", "application/at+jwt"), claims) }, nil},
		{"typ upper case", func() string { return k.mint(t, with(k.defaultHeader(), "typ", "AT+JWT"), claims) }, nil},
		{"typ missing when allowed", func() string { return k.mint(t, with(k.defaultHeader(), "typ", nil), claims) },
			func(c *Config) { c.Types = []string{""} }},
		{"typ JWT when configured as application/jwt", func() string { return k.mint(t, with(k.defaultHeader(), "typ", "JWT"), claims) },
			func(c *Config) { c.Types = []string{"application/JWT"} }},
		{"aud array with ours", func() string {
			return k.mint(t, k.defaultHeader(), with(claims, "aud", []string{"other", testAudience}))
		}, nil},
		{"second configured audience", func() string { return k.mint(t, k.defaultHeader(), with(claims, "aud", "second")) },
			func(c *Config) { c.Audiences = []string{testAudience, "second"} }},
		{"expired within leeway", func() string {
			return k.mint(t, k.defaultHeader(), with(claims, "exp", testNow.Add(-29*time.Second).Unix()))
		}, nil},
		{"nbf within leeway", func() string {
			return k.mint(t, k.defaultHeader(), with(claims, "nbf", testNow.Add(29*time.Second).Unix()))
		}, nil},
		{"iat within leeway", func() string {
			return k.mint(t, k.defaultHeader(), with(claims, "iat", testNow.Add(29*time.Second).Unix()))
		}, nil},
		{"fractional dates", func() string {
			return k.mint(t, k.defaultHeader(), with(claims, "exp", float64(testNow.Unix())+60.5, "iat", float64(testNow.Unix())-0.25))
		}, nil},
		{"no nbf, no iat", func() string { return k.mint(t, k.defaultHeader(), with(claims, "nbf", nil, "iat", nil)) }, nil},
		{"lifetime at the limit", func() string { return k.mint(t, k.defaultHeader(), claims) },
			func(c *Config) { c.MaxLifetime = 5 * time.Minute }},
		{"required claims present", func() string { return k.mint(t, k.defaultHeader(), claims) },
			func(c *Config) { c.RequiredClaims = []string{"jti", "sub", "iat"} }},
		{"no kid", func() string { return k.mint(t, with(k.defaultHeader(), "kid", nil), claims) }, nil},
		{"x5c ignored", func() string {
			return k.mint(t, with(k.defaultHeader(), "x5c", []string{selfSignedCert(t)}), claims)
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, keys, tc.change)
			if _, err := v.Verify(t.Context(), tc.token()); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

// TestVerifyAttacks is the attack table: each case is a token that must be refused with a
// specific error. A case fails if the attack succeeds or is stopped by the wrong check.
func TestVerifyAttacks(t *testing.T) {
	legit := newTestKey(t, "ES256", "legit")
	attacker := newTestKey(t, "ES256", "legit") // same kid, different key
	rsaLegit := newTestKey(t, "RS256", "rsa-legit")
	claims := baseClaims(testNow)
	hdr := legit.defaultHeader()
	good := legit.mint(t, hdr, claims)
	parts := strings.Split(good, ".")

	// The attacker serves their own JWKS; a verifier that followed jku/x5u would fetch it.
	var attackerHits atomic.Int64
	attackerSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwksJSON(t, attacker))
	}))
	t.Cleanup(attackerSrv.Close)

	attackerJWK, err := json.Marshal(attacker.pub)
	if err != nil {
		t.Fatal(err)
	}
	var embedded map[string]any
	if err := json.Unmarshal(attackerJWK, &embedded); err != nil {
		t.Fatal(err)
	}
	attackerNoKid := newTestKey(t, "ES256", "attacker-own")

	// HS256 "signed" with the verification key's public bytes (algorithm confusion).
	pubDER, err := x509.MarshalPKIXPublicKey(legit.pub.Key)
	if err != nil {
		t.Fatal(err)
	}
	hmacToken := func(secret []byte) string {
		input := encodeSegment(t, with(hdr, "alg", "HS256")) + "." + encodeSegment(t, claims)
		mac := hmac.New(sha256.New, secret)
		mac.Write([]byte(input))
		return input + "." + b64(mac.Sum(nil))
	}

	n := elliptic.P256().Params().N.FillBytes(make([]byte, 32))
	sigWith := func(r, s []byte) string {
		return parts[0] + "." + parts[1] + "." + b64(append(append([]byte{}, r...), s...))
	}
	zero32 := make([]byte, 32)

	derSig := func() string { // a valid ES256 signature, ASN.1 DER encoded instead of r‖s
		input := []byte(parts[0] + "." + parts[1])
		d := sha256.Sum256(input)
		der, err := ecdsa.SignASN1(rand.Reader, legit.priv.(*ecdsa.PrivateKey), d[:])
		if err != nil {
			t.Fatal(err)
		}
		return parts[0] + "." + parts[1] + "." + b64(der)
	}

	// PS256 with a salt other than the hash size: RFC 7518 §3.5 fixes it, go-jose's own check
	// would accept it.
	psKey := newTestKey(t, "PS256", "ps")
	pssSalt20 := func() string {
		input := encodeSegment(t, psKey.defaultHeader()) + "." + encodeSegment(t, claims)
		d := sha256.Sum256([]byte(input))
		sig, err := rsa.SignPSS(rand.Reader, psKey.priv.(*rsa.PrivateKey), crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: 20})
		if err != nil {
			t.Fatal(err)
		}
		return input + "." + b64(sig)
	}

	tests := []struct {
		name   string
		token  string
		change func(*Config)
		keys   KeySource
		want   error
	}{
		// Algorithm attacks.
		{name: "alg none", token: encodeSegment(t, with(hdr, "alg", "none")) + "." + parts[1] + ".", want: ErrAlgorithm},
		{name: "alg None", token: encodeSegment(t, with(hdr, "alg", "None")) + "." + parts[1] + ".", want: ErrAlgorithm},
		{name: "alg none with the original signature", token: encodeSegment(t, with(hdr, "alg", "none")) + "." + parts[1] + "." + parts[2], want: ErrAlgorithm},
		{name: "alg missing", token: encodeSegment(t, with(hdr, "alg", nil)) + "." + parts[1] + "." + parts[2], want: ErrAlgorithm},
		{name: "HS256 keyed with the public key DER", token: hmacToken(pubDER), want: ErrAlgorithm},
		{name: "HS256 keyed with the public JWK", token: hmacToken(attackerJWK), want: ErrAlgorithm},
		{name: "alg not in allow-list", token: newTestKey(t, "ES384", "legit").mint(t, with(hdr, "alg", "ES384"), claims),
			change: func(c *Config) { c.Algorithms = []string{"ES256"} }, want: ErrAlgorithm},
		{name: "ES256 kid pointing at an RSA key", token: legit.mint(t, with(hdr, "kid", "rsa-legit"), claims),
			keys: staticKeys(t, legit, rsaLegit), want: ErrAlgorithm},
		{name: "key declares another alg", token: rsaLegit.mint(t, with(rsaLegit.defaultHeader(), "alg", "PS256"), claims),
			keys: staticKeys(t, rsaLegit), want: ErrAlgorithm},

		// Key-selection attacks: header parameters naming or carrying keys are never used.
		{name: "embedded jwk with the legit kid", token: attacker.mint(t, with(hdr, "jwk", embedded), claims), want: ErrSignature},
		{name: "embedded jwk without kid", token: attacker.mint(t, with(hdr, "jwk", embedded, "kid", nil), claims), want: ErrSignature},
		{name: "embedded jwk with its own kid", token: attackerNoKid.mint(t, with(hdr, "jwk", embedded, "kid", "attacker-own"), claims), want: ErrKeyNotFound},
		{name: "jku to the attacker's JWKS", token: attacker.mint(t, with(hdr, "jku", attackerSrv.URL, "kid", "attacker-kid"), claims), want: ErrKeyNotFound},
		{name: "jku with the legit kid", token: attacker.mint(t, with(hdr, "jku", attackerSrv.URL), claims), want: ErrSignature},
		{name: "x5u to the attacker", token: attacker.mint(t, with(hdr, "x5u", attackerSrv.URL, "kid", "attacker-kid"), claims), want: ErrKeyNotFound},
		{name: "x5c of the attacker", token: attacker.mint(t, with(hdr, "x5c", []string{selfSignedCertFor(t, attacker)}), claims), want: ErrSignature},
		{name: "kid path traversal", token: legit.mint(t, with(hdr, "kid", "../../../../etc/passwd"), claims), want: ErrKeyNotFound},
		{name: "kid SQL injection", token: legit.mint(t, with(hdr, "kid", "' OR 1=1--"), claims), want: ErrKeyNotFound},
		{name: "kid with NUL and newline", token: legit.mint(t, with(hdr, "kid", "legit\x00\n"), claims), want: ErrKeyNotFound},
		{name: "kid not a string", token: legit.mint(t, with(hdr, "kid", 7), claims), want: ErrMalformed},

		// Signature attacks.
		{name: "ECDSA r=s=0 (psychic signature)", token: sigWith(zero32, zero32), want: ErrSignature},
		{name: "ECDSA r=s=n", token: sigWith(n, n), want: ErrSignature},
		{name: "ECDSA r=0 s=1", token: sigWith(zero32, append(make([]byte, 31), 1)), want: ErrSignature},
		{name: "ES256 signature of 63 bytes", token: parts[0] + "." + parts[1] + "." + b64(mustB64(t, parts[2])[:63]), want: ErrSignature},
		{name: "ES256 signature of 65 bytes", token: parts[0] + "." + parts[1] + "." + b64(append(mustB64(t, parts[2]), 0)), want: ErrSignature},
		{name: "ES256 signature DER encoded", token: derSig(), want: ErrSignature},
		{name: "signature from another key", token: attacker.mint(t, hdr, claims), want: ErrSignature},
		{name: "PS256 with a 20-byte salt", token: pssSalt20(), keys: staticKeys(t, psKey), want: ErrSignature},
		{name: "payload changed under the signature", token: parts[0] + "." + encodeSegment(t, with(claims, "sub", "admin")) + "." + parts[2], want: ErrSignature},
		{name: "header changed under the signature", token: encodeSegment(t, with(hdr, "x", 1)) + "." + parts[1] + "." + parts[2], want: ErrSignature},
		{name: "signature stripped", token: parts[0] + "." + parts[1] + ".", want: ErrSignature},
		{name: "signature and dot stripped", token: parts[0] + "." + parts[1], want: ErrMalformed},

		// Structure.
		{name: "empty", token: "", want: ErrMalformed},
		{name: "four segments", token: good + ".", want: ErrMalformed},
		{name: "padding", token: parts[0] + "=." + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "whitespace", token: parts[0] + ".\n" + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "standard base64 alphabet", token: strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+", want: ErrMalformed},
		{name: "non-canonical trailing bits", token: parts[0] + "." + parts[1] + "." + nonCanonical(parts[2]), want: ErrMalformed},
		{name: "JWS JSON serialization", token: `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, want: ErrMalformed},
		{name: "JWS JSON with two signatures", token: `{"payload":"` + parts[1] + `","signatures":[{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"},{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"}]}`, want: ErrMalformed},
		{name: "header not JSON", token: b64([]byte("not json")) + "." + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "1 MB token", token: strings.Repeat("a", 1<<20), want: ErrTooLarge},
		{name: "token one byte over the limit", token: good, change: func(c *Config) { c.MaxTokenBytes = len(good) - 1 }, want: ErrTooLarge},

		// Header parameters.
		{name: "crit", token: legit.mint(t, with(hdr, "crit", []string{"exp"}, "exp", 1), claims), want: ErrCritical},
		{name: "crit empty", token: legit.mint(t, with(hdr, "crit", []string{}), claims), want: ErrCritical},
		{name: "b64 false", token: legit.mint(t, with(hdr, "b64", false), claims), want: ErrCritical},
		{name: "wrong typ", token: legit.mint(t, with(hdr, "typ", "dpop+jwt"), claims), want: ErrType},
		{name: "typ not a string", token: legit.mint(t, with(hdr, "typ", 1), claims), want: ErrType},
		{name: "id_token (typ JWT) as access token", token: legit.mint(t, with(hdr, "typ", "JWT"), with(claims, "nonce", "n")), want: ErrType},
		{name: "id_token (no typ) as access token", token: legit.mint(t, with(hdr, "typ", nil), with(claims, "nonce", "n")), want: ErrType},

		// Claims.
		{name: "wrong iss", token: legit.mint(t, hdr, with(claims, "iss", "https://evil.test")), want: ErrIssuer},
		{name: "iss with trailing slash", token: legit.mint(t, hdr, with(claims, "iss", testIssuer+"/")), want: ErrIssuer},
		{name: "iss missing", token: legit.mint(t, hdr, with(claims, "iss", nil)), want: ErrIssuer},
		{name: "wrong aud", token: legit.mint(t, hdr, with(claims, "aud", "https://other.test")), want: ErrAudience},
		{name: "aud missing", token: legit.mint(t, hdr, with(claims, "aud", nil)), want: ErrAudience},
		{name: "aud empty array", token: legit.mint(t, hdr, with(claims, "aud", []string{})), want: ErrAudience},
		{name: "aud not a string", token: legit.mint(t, hdr, with(claims, "aud", 5)), want: ErrMalformed},
		{name: "expired", token: legit.mint(t, hdr, with(claims, "exp", testNow.Add(-31*time.Second).Unix())), want: ErrExpired},
		{name: "exp missing", token: legit.mint(t, hdr, with(claims, "exp", nil)), want: ErrMissingClaim},
		{name: "exp a string", token: legit.mint(t, hdr, with(claims, "exp", "tomorrow")), want: ErrMalformed},
		{name: "exp far beyond year 9999", token: legit.mint(t, hdr, with(claims, "exp", 1e300)), want: ErrMalformed},
		{name: "not yet valid", token: legit.mint(t, hdr, with(claims, "nbf", testNow.Add(31*time.Second).Unix())), want: ErrNotYetValid},
		{name: "issued in the future", token: legit.mint(t, hdr, with(claims, "iat", testNow.Add(31*time.Second).Unix())), want: ErrIssuedInFuture},
		{name: "lifetime too long", token: legit.mint(t, hdr, claims), change: func(c *Config) { c.MaxLifetime = 4 * time.Minute }, want: ErrLifetime},
		{name: "lifetime bound without iat", token: legit.mint(t, hdr, with(claims, "iat", nil)), change: func(c *Config) { c.MaxLifetime = time.Hour }, want: ErrMissingClaim},
		{name: "required jti missing", token: legit.mint(t, hdr, with(claims, "jti", nil)), change: func(c *Config) { c.RequiredClaims = []string{"jti"} }, want: ErrMissingClaim},
		{name: "payload not an object", token: legit.mint(t, hdr, "[1,2]"), want: ErrMalformed},
		{name: "payload not JSON", token: legit.mint(t, hdr, "hello"), want: ErrMalformed},
		{name: "payload with trailing data", token: legit.mint(t, hdr, `{"iss":"x"} {}`), want: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys := tc.keys
			if keys == nil {
				keys = staticKeys(t, legit)
			}
			v := newTestVerifier(t, keys, tc.change)
			claims, err := v.Verify(t.Context(), tc.token)
			if err == nil {
				t.Fatalf("attack succeeded: Verify accepted the token (claims %+v)", claims)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
		})
	}
	if hits := attackerHits.Load(); hits != 0 {
		t.Errorf("the attacker's server was fetched %d times; jku/x5u must never be followed", hits)
	}
}

// TestVerifyKidIsOnlyALookupKey checks that kid reaches the key source verbatim and is used for
// nothing else.
func TestVerifyKidIsOnlyALookupKey(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	src := &countingKeys{src: staticKeys(t, k)}
	v := newTestVerifier(t, src, nil)
	for _, kid := range []string{"../../etc/passwd", "' OR 1=1--", "http://169.254.169.254/", "k1\x00"} {
		_, err := v.Verify(t.Context(), k.mint(t, with(k.defaultHeader(), "kid", kid), baseClaims(testNow)))
		if !errors.Is(err, ErrKeyNotFound) {
			t.Errorf("kid %q: error %v, want ErrKeyNotFound", kid, err)
		}
	}
	want := []string{"../../etc/passwd", "' OR 1=1--", "http://169.254.169.254/", "k1\x00"}
	if diff := cmp.Diff(want, src.kids); diff != "" {
		t.Errorf("kids passed to the key source (-want +got):\n%s", diff)
	}
}

// TestVerifyOrder checks that the first failing check in the documented order wins.
func TestVerifyOrder(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	other := newTestKey(t, "ES256", "k1")
	v := newTestVerifier(t, staticKeys(t, k), func(c *Config) { c.RequiredClaims = []string{"jti"} })
	claims := baseClaims(testNow)
	expired := testNow.Add(-time.Hour).Unix()
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"size before structure", strings.Repeat(".", 9000), ErrTooLarge},
		{"structure before header", "!!." + encodeSegment(t, with(k.defaultHeader(), "alg", "none")) + ".", ErrMalformed},
		{"alg before typ", encodeSegment(t, with(k.defaultHeader(), "alg", "HS256", "typ", "JWT")) + "." + encodeSegment(t, claims) + ".AAAA", ErrAlgorithm},
		{"typ before crit", k.mint(t, with(k.defaultHeader(), "typ", "JWT", "crit", []string{"x"}), claims), ErrType},
		{"crit before key", k.mint(t, with(k.defaultHeader(), "kid", "unknown", "crit", []string{"x"}), claims), ErrCritical},
		{"key before signature", other.mint(t, with(k.defaultHeader(), "kid", "unknown"), claims), ErrKeyNotFound},
		{"signature before issuer", other.mint(t, k.defaultHeader(), with(claims, "iss", "evil")), ErrSignature},
		{"issuer before audience", k.mint(t, k.defaultHeader(), with(claims, "iss", "evil", "aud", "evil")), ErrIssuer},
		{"audience before time", k.mint(t, k.defaultHeader(), with(claims, "aud", "evil", "exp", expired)), ErrAudience},
		{"exp before nbf", k.mint(t, k.defaultHeader(), with(claims, "exp", expired, "nbf", testNow.Add(time.Hour).Unix())), ErrExpired},
		{"nbf before iat", k.mint(t, k.defaultHeader(), with(claims, "nbf", testNow.Add(time.Hour).Unix(), "iat", testNow.Add(time.Hour).Unix())), ErrNotYetValid},
		{"time before required claims", k.mint(t, k.defaultHeader(), with(claims, "exp", expired, "jti", nil)), ErrExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyWithoutKidTriesAtMostEightKeys(t *testing.T) {
	var keys []*testKey
	for i := range 10 {
		keys = append(keys, newTestKey(t, "ES256", string(rune('a'+i))))
	}
	v := newTestVerifier(t, staticKeys(t, keys...), nil)
	claims := baseClaims(testNow)
	noKid := func(k *testKey) string { return k.mint(t, with(k.defaultHeader(), "kid", nil), claims) }
	if _, err := v.Verify(t.Context(), noKid(keys[7])); err != nil {
		t.Errorf("8th key: %v", err)
	}
	if _, err := v.Verify(t.Context(), noKid(keys[9])); !errors.Is(err, ErrSignature) {
		t.Errorf("10th key: error %v, want ErrSignature (only 8 keys are tried)", err)
	}
	// Only keys whose type fits count: an EdDSA token ignores the ECDSA keys.
	ed := newTestKey(t, "EdDSA", "")
	v2 := newTestVerifier(t, staticKeys(t, append(keys, ed)...), nil)
	if _, err := v2.Verify(t.Context(), noKid(ed)); err != nil {
		t.Errorf("EdDSA among ECDSA keys: %v", err)
	}
}

func TestKeyFuncSource(t *testing.T) {
	k := newTestKey(t, "EdDSA", "ed1")
	claims := baseClaims(testNow)
	tests := []struct {
		name string
		fn   KeyFunc
		want error
	}{
		{"public key", func(context.Context, string) ([]jose.JSONWebKey, error) { return []jose.JSONWebKey{k.pub}, nil }, nil},
		{"private key: public half used", func(context.Context, string) ([]jose.JSONWebKey, error) {
			return []jose.JSONWebKey{{Key: k.priv, KeyID: "ed1"}}, nil
		}, nil},
		{"nothing found", func(context.Context, string) ([]jose.JSONWebKey, error) { return nil, nil }, ErrKeyNotFound},
		{"other kid returned", func(context.Context, string) ([]jose.JSONWebKey, error) {
			return []jose.JSONWebKey{{Key: k.pub.Key, KeyID: "someone-else"}}, nil
		}, ErrKeyNotFound},
		{"use enc", func(context.Context, string) ([]jose.JSONWebKey, error) {
			return []jose.JSONWebKey{{Key: k.pub.Key, KeyID: "ed1", Use: "enc"}}, nil
		}, ErrKeyNotFound},
		{"symmetric key", func(context.Context, string) ([]jose.JSONWebKey, error) {
			return []jose.JSONWebKey{{Key: []byte("secretsecretsecretsecretsecret!!"), KeyID: "ed1"}}, nil
		}, ErrKeyNotFound},
		{"RSA 1024", func(context.Context, string) ([]jose.JSONWebKey, error) {
			return []jose.JSONWebKey{{Key: rsaKey(t, 1024).Public(), KeyID: "ed1"}}, nil
		}, ErrKeyNotFound},
		{"source fails", func(context.Context, string) ([]jose.JSONWebKey, error) { return nil, errors.New("db down") }, ErrKeysUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, tc.fn, nil)
			_, err := v.Verify(t.Context(), k.mint(t, k.defaultHeader(), claims))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrKeyNotFound) {
				t.Fatalf("Verify error = %v, want %v (and ErrKeyNotFound)", err, tc.want)
			}
		})
	}
}

func TestDefaultsAllowOnlyES256AtJWT(t *testing.T) {
	es := newTestKey(t, "ES256", "es")
	ed := newTestKey(t, "EdDSA", "ed")
	v, err := New(Config{Issuer: testIssuer, Audiences: []string{testAudience}, Keys: staticKeys(t, es, ed), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	claims := baseClaims(testNow)
	if _, err := v.Verify(t.Context(), es.mint(t, es.defaultHeader(), claims)); err != nil {
		t.Errorf("ES256 at+jwt: %v", err)
	}
	if _, err := v.Verify(t.Context(), ed.mint(t, ed.defaultHeader(), claims)); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("EdDSA with default algorithms: %v, want ErrAlgorithm", err)
	}
	if _, err := v.Verify(t.Context(), es.mint(t, with(es.defaultHeader(), "typ", nil), claims)); !errors.Is(err, ErrType) {
		t.Errorf("no typ with default types: %v, want ErrType", err)
	}
	if _, err := v.Verify(t.Context(), es.mint(t, es.defaultHeader(), with(claims, "exp", testNow.Add(-31*time.Second).Unix()))); !errors.Is(err, ErrExpired) {
		t.Errorf("default leeway 30s: %v, want ErrExpired", err)
	}
}

func TestClaimsHelpers(t *testing.T) {
	c := &Claims{Scopes: []string{"a", "b"}, Raw: map[string]any{"customer_id": "acme", "n": json.Number("1")}}
	if !c.HasScope("b") || c.HasScope("c") || c.HasScope("") {
		t.Error("HasScope")
	}
	if s, ok := c.String("customer_id"); !ok || s != "acme" {
		t.Errorf("String(customer_id) = %q, %v", s, ok)
	}
	if _, ok := c.String("n"); ok {
		t.Error("String of a number reported ok")
	}
	if _, ok := c.String("missing"); ok {
		t.Error("String of a missing claim reported ok")
	}
}

func TestCanonicalBase64URL(t *testing.T) {
	tests := map[string]bool{
		"": true, "QQ": true, "QR": false, "QUI": true, "QUJ": false, "QUJD": true, "Q": false,
		"QQ=": false, "Q Q": false, "Q+": false, "Q/": false, "_-8": true,
	}
	for in, want := range tests {
		if got := canonicalBase64URL(in); got != want {
			t.Errorf("canonicalBase64URL(%q) = %v, want %v", in, got, want)
		}
		if want && in != "" { // canonical means it round-trips through the strict decoder
			b, err := base64.RawURLEncoding.Strict().DecodeString(in)
			if err != nil || b64(b) != in {
				t.Errorf("%q: strict decode %v, re-encoded %q", in, err, b64(b))
			}
		}
	}
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nonCanonical flips the unused low bits of the last character of an unpadded segment whose
// length is not a multiple of 4, keeping the decoded bytes unchanged.
func nonCanonical(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := base64URLValue(seg[len(seg)-1])
	var flip int
	switch len(seg) % 4 {
	case 2:
		flip = 0x01
	case 3:
		flip = 0x01
	default:
		panic("segment length is a multiple of 4")
	}
	return seg[:len(seg)-1] + string(alphabet[last|flip])
}

func selfSignedCert(t testing.TB) string {
	return selfSignedCertFor(t, newTestKey(t, "ES256", ""))
}

// selfSignedCertFor returns a base64 (standard, as x5c wants) self-signed certificate for k.
func selfSignedCertFor(t testing.TB, k *testKey) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "attacker"},
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.priv.Public(), k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// TestTypeComparesInASCIIOnly: media types are case-insensitive in ASCII only; Unicode case
// folding would let "ſ" (U+017F) pass for "s" and the Kelvin sign (U+212A) for "k".
func TestTypeComparesInASCIIOnly(t *testing.T) {
	k := newTestKey(t, "ES256", "k1")
	v := newTestVerifier(t, staticKeys(t, k), func(c *Config) { c.Types = []string{"token-introspection+jwt"} })
	for typ, want := range map[string]error{
		"token-introspection+jwt":             nil,
		"Token-Introspection+JWT":             nil,
		"application/token-introspection+jwt": nil,
		"token-introſpection+jwt":             ErrType,
		"to\u212aen-introspection+jwt":        ErrType,
	} {
		_, err := v.Verify(t.Context(), k.mint(t, with(k.defaultHeader(), "typ", typ), baseClaims(testNow)))
		if !errors.Is(err, want) && (want != nil || err != nil) {
			t.Errorf("typ %q: %v, want %v", typ, err, want)
		}
	}
}
