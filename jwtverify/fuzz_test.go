package jwtverify

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var sentinels = []error{
	ErrTooLarge, ErrMalformed, ErrAlgorithm, ErrType, ErrCritical, ErrKeyNotFound, ErrSignature,
	ErrIssuer, ErrAudience, ErrExpired, ErrNotYetValid, ErrIssuedInFuture, ErrLifetime, ErrMissingClaim,
}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// fuzzKeys are generated once per fuzzing process; nobody outside it holds the private keys, so
// no fuzzer input can carry a valid signature.
func fuzzVerifiers(f *testing.F) (keys []*testKey, plain, cached *Verifier) {
	for _, alg := range []string{"ES256", "EdDSA", "PS256", "RS256"} {
		keys = append(keys, newTestKey(f, alg, "fuzz-"+alg))
	}
	keys = append(keys, newTestKey(f, "ES384", "")) // a key without kid
	src := staticKeys(f, keys...)
	change := func(c *Config) {
		c.Types = []string{"at+jwt", ""}
		c.Leeway = time.Minute
	}
	plain = newTestVerifier(f, src, change)
	cached = newTestVerifier(f, src, func(c *Config) { change(c); c.CacheSize = 64 })
	return keys, plain, cached
}

// FuzzVerify: arbitrary token strings never panic, never verify, and always fail with one of the
// sentinel errors.
func FuzzVerify(f *testing.F) {
	keys, plain, cached := fuzzVerifiers(f)
	// Structurally valid tokens signed by keys the verifiers do not trust.
	for _, k := range keys {
		stranger := newTestKey(f, k.alg, k.pub.KeyID)
		if k.alg[0] == 'R' || k.alg[0] == 'P' {
			stranger = freshRSAKey(f, k.alg, k.pub.KeyID) // newTestKey reuses RSA keys
		}
		f.Add(stranger.mint(f, stranger.defaultHeader(), baseClaims(testNow)))
	}
	f.Fuzz(func(t *testing.T, token string) {
		for _, v := range []*Verifier{plain, cached} {
			c, err := v.Verify(context.Background(), token)
			if err == nil {
				t.Fatalf("a token nobody could sign verified: %q (claims %+v)", token, c)
			}
			if c != nil {
				t.Fatalf("claims returned with an error: %v", err)
			}
			if !isSentinel(err) {
				t.Fatalf("error without a sentinel: %v", err)
			}
		}
	})
}

// FuzzVerifySigned signs arbitrary header and payload bytes with a trusted ES256 key, so that the
// fuzzer reaches header and claims handling: success implies the header really says ES256 with
// our kid and the claims equal the payload's JSON; failure is always a sentinel error.
func FuzzVerifySigned(f *testing.F) {
	k := newTestKey(f, "ES256", "fuzz")
	v := newTestVerifier(f, staticKeys(f, k), func(c *Config) { c.Types = []string{"at+jwt", ""} })
	f.Add([]byte(`{"alg":"ES256","kid":"fuzz","typ":"at+jwt"}`), []byte(mustJSON(f, baseClaims(testNow))))
	f.Add([]byte(`{"alg":"ES256"}`), []byte(`{"iss":"https://issuer.test","aud":["https://api.test"],"exp":1760000060.5}`))
	f.Add([]byte(`{"alg":"EdDSA","kid":"fuzz"}`), []byte(`{}`))
	f.Add([]byte(`{"alg":"ES256","kid":"fuzz","crit":["b64"],"b64":false}`), []byte(`{"exp":1}`))
	f.Fuzz(func(t *testing.T, header, payload []byte) {
		input := b64(header) + "." + b64(payload)
		token := input + "." + b64(k.signRaw(t, "ES256", []byte(input)))
		c, err := v.Verify(context.Background(), token)
		if err != nil {
			if c != nil || !isSentinel(err) {
				t.Fatalf("claims %v, error %v", c, err)
			}
			return
		}
		var h map[string]any
		if json.Unmarshal(header, &h) != nil || h["alg"] != "ES256" {
			t.Fatalf("verified with header %q", header)
		}
		if kid, ok := h["kid"]; ok && kid != "fuzz" {
			t.Fatalf("verified with kid %v", kid)
		}
		if c.Issuer != testIssuer || !slices.Contains(c.Audience, testAudience) || c.Expiry.IsZero() {
			t.Fatalf("verified with issuer %q, audience %q, exp %v", c.Issuer, c.Audience, c.Expiry)
		}
		again, err := parseClaims(payload)
		if err != nil || !reflect.DeepEqual(again.Raw, c.Raw) {
			t.Fatalf("claims do not round-trip: %v", err)
		}
	})
}

// FuzzParseJWKS: parsing never panics; every key kept is a usable public key; and the kept keys
// survive a serialize-and-parse round trip unchanged.
func FuzzParseJWKS(f *testing.F) {
	k := newTestKey(f, "ES256", "k1")
	f.Add(jwksJSON(f, k, newTestKey(f, "EdDSA", "k2"), newTestKey(f, "PS256", "k3")))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, _, err := parseJWKS(data)
		if _, serr := NewStaticKeySet(data); (serr == nil) != (err == nil && len(keys) > 0) {
			t.Fatalf("NewStaticKeySet disagrees with parseJWKS: %v / %v, %d keys", serr, err, len(keys))
		}
		if err != nil || len(keys) == 0 {
			return
		}
		for i := range keys {
			if !keys[i].IsPublic() || !usablePublicKey(&keys[i]) {
				t.Fatalf("key %d (%q) is not a usable public key", i, keys[i].KeyID)
			}
		}
		out, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
		if err != nil {
			t.Fatalf("re-serializing: %v", err)
		}
		again, skipped, err := parseJWKS(out)
		if err != nil || skipped != 0 || len(again) != len(keys) {
			t.Fatalf("round trip: %d keys, %d skipped, %v; want %d keys", len(again), skipped, err, len(keys))
		}
		for i := range keys {
			a, err1 := keys[i].Thumbprint(crypto.SHA256)
			b, err2 := again[i].Thumbprint(crypto.SHA256)
			if err1 != nil || err2 != nil || string(a) != string(b) || keys[i].KeyID != again[i].KeyID ||
				keys[i].Algorithm != again[i].Algorithm || keys[i].Use != again[i].Use {
				t.Fatalf("key %d changed in the round trip", i)
			}
		}
	})
}
