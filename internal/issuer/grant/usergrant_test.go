package grant

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/store"
)

// TestCheckPKCE uses RFC 7636 Appendix B's example.
func TestCheckPKCE(t *testing.T) {
	const verifier, challenge = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	tests := []struct {
		name, verifier, challenge, want string
	}{
		{"RFC 7636 example", verifier, challenge, ""},
		{"plain (verifier = challenge)", challenge, challenge, oauth.CodeInvalidGrant},
		{"missing", "", challenge, oauth.CodeInvalidRequest},
		{"too short", verifier[:42], challenge, oauth.CodeInvalidGrant},
		{"illegal character", verifier[:42] + "+", challenge, oauth.CodeInvalidGrant},
		{"no challenge stored", verifier, "", oauth.CodeInvalidGrant},
		{"other verifier", "A" + verifier[1:], challenge, oauth.CodeInvalidGrant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := code(checkPKCE(tt.verifier, tt.challenge)); got != tt.want {
				t.Errorf("%q, want %q", got, tt.want)
			}
		})
	}
}

// TestAtHash uses the example of OpenID Connect Core Appendix A.3.
func TestAtHash(t *testing.T) {
	got, err := leftHalfHash("RS256", "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y")
	if err != nil || got != "77QmUPtjPfzWtF2AnpK9RQ" {
		t.Errorf("at_hash %q %v", got, err)
	}
	if _, err := leftHalfHash("HS256", "x"); err == nil {
		t.Error("an unknown algorithm hashed")
	}
	ed, _ := leftHalfHash("EdDSA", "x")
	es, _ := leftHalfHash("ES256", "x")
	if len(ed) != 43 || len(es) != 22 {
		t.Errorf("lengths %d %d (SHA-512 and SHA-256 halves)", len(ed), len(es))
	}
}

// esSigner signs like keys.Manager: ES256 with a typ header.
type esSigner struct{ key *ecdsa.PrivateKey }

func (s esSigner) Sign(typ string, claims any) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.key}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := sig.Sign(b)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func TestIDTokenClaims(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := now.Add(-time.Minute)
	it := &IDTokens{Issuer: issuerURL, TTL: 5 * time.Minute, Signer: esSigner{key}, Algorithm: func() string { return "ES256" }, Now: func() time.Time { return now }}
	tok, err := it.Mint(IDTokenRequest{ClientID: "web", Subject: "u_1", Nonce: "n-1", AccessToken: "pcat_x", AuthTime: auth, AMR: []string{"pwd", "otp"}, ACR: ACRTwoFactor})
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if typ := jws.Signatures[0].Header.ExtraHeaders["typ"]; typ != "JWT" {
		t.Errorf("typ %v", typ)
	}
	payload, err := jws.Verify(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(payload, &got); err != nil {
		t.Fatal(err)
	}
	atHash, _ := leftHalfHash("ES256", "pcat_x")
	want := map[string]any{"iss": issuerURL, "sub": "u_1", "aud": "web", "azp": "web", "nonce": "n-1",
		"iat": float64(now.Unix()), "exp": float64(now.Add(5 * time.Minute).Unix()), "auth_time": float64(auth.Unix()),
		"amr": []any{"pwd", "otp"}, "acr": "aal2", "at_hash": atHash}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

// TestNewCode: a code record is kept by hash, lives 60 s, starts a family and holds what
// the exchange checks.
func TestNewCode(t *testing.T) {
	c, rec := NewCode(CodeGrant{ClientID: "web", UserID: "u_1", Scopes: []string{"openid"}, RedirectURI: "https://w/cb", CodeChallenge: "ch", Nonce: "n", AuthTime: now, AMR: []string{"pwd"}, ACR: ACRPassword}, now)
	if len(c) != 48 || c[:5] != "pcac_" || rec.Hash == c || rec.Kind != store.KindCode || rec.FamilyID == "" || !rec.ExpiresAt.Equal(now.Add(CodeTTL)) {
		t.Errorf("code %q record %+v", c, rec)
	}
	if extraString(rec.Extra, "redirect_uri") != "https://w/cb" || extraString(rec.Extra, "code_challenge") != "ch" || !extraTime(rec.Extra, "auth_time").Equal(now) {
		t.Errorf("extra %v", rec.Extra)
	}
	// As it comes back from a JSON store.
	b, _ := json.Marshal(rec.Extra)
	var back map[string]any
	_ = json.Unmarshal(b, &back)
	if !extraTime(back, "auth_time").Equal(now) || !cmp.Equal(extraStrings(back, "amr"), []string{"pwd"}) {
		t.Errorf("after JSON: %v", back)
	}
}
