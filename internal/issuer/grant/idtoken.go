package grant

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"hash"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/portcullis/portcullis/internal/token"
)

// TypeIDToken is the typ header of ID tokens: plain JWT, so that no ID token can pass where
// an at+jwt access token is expected, and the other way round.
const TypeIDToken = "JWT"

// IDTokens mints OpenID Connect ID tokens, signed with the issuer's current key.
type IDTokens struct {
	Issuer string
	TTL    time.Duration
	Signer token.Signer
	// Algorithm returns the algorithm of the key that signs now, for at_hash.
	Algorithm func() string
	Now       func() time.Time
}

// IDTokenRequest is what an ID token says.
type IDTokenRequest struct {
	ClientID    string
	Subject     string
	Nonce       string // "" when the authorization request had none (and on refresh)
	AccessToken string // for at_hash
	AuthTime    time.Time
	AMR         []string
	ACR         string
}

// Mint returns a signed ID token: iss, sub, aud (the client), azp, exp, iat, auth_time,
// nonce, acr, amr and at_hash (OpenID Connect Core §2, §3.1.3.6). Claims about the person
// (name, email) come from the UserInfo endpoint, as Core §5.4 asks for the code flow.
func (t *IDTokens) Mint(r IDTokenRequest) (string, error) {
	now := t.Now().UTC().Truncate(time.Second)
	c := map[string]any{
		"iss": t.Issuer, "sub": r.Subject, "aud": r.ClientID, "azp": r.ClientID,
		"iat": now.Unix(), "exp": now.Add(t.TTL).Unix(), "auth_time": r.AuthTime.Unix(),
	}
	if r.Nonce != "" {
		c["nonce"] = r.Nonce
	}
	if len(r.AMR) > 0 {
		c["amr"] = r.AMR
	}
	if r.ACR != "" {
		c["acr"] = r.ACR
	}
	alg := t.Algorithm()
	// The key could change between choosing the hash and signing (a rotation to another
	// algorithm): check the header and redo once.
	for range 2 {
		if r.AccessToken != "" {
			h, err := leftHalfHash(alg, r.AccessToken)
			if err != nil {
				return "", err
			}
			c["at_hash"] = h
		}
		tok, err := t.Signer.Sign(TypeIDToken, c)
		if err != nil {
			return "", fmt.Errorf("sign id token: %w", err)
		}
		got, err := headerAlg(tok)
		if err != nil {
			return "", err
		}
		if got == alg || r.AccessToken == "" {
			return tok, nil
		}
		alg = got
	}
	return "", fmt.Errorf("sign id token: signing algorithm keeps changing")
}

// leftHalfHash is at_hash: the left half of the hash of the token's ASCII, base64url, with the
// hash of the signing algorithm (SHA-512 for Ed25519, per the OpenID Connect errata).
func leftHalfHash(alg, tok string) (string, error) {
	var h hash.Hash
	switch alg {
	case "ES256", "PS256", "RS256":
		h = sha256.New()
	case "ES384", "PS384", "RS384":
		h = sha512.New384()
	case "ES512", "PS512", "RS512", "EdDSA":
		h = sha512.New()
	default:
		return "", fmt.Errorf("at_hash: unknown algorithm %q", alg)
	}
	h.Write([]byte(tok))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2]), nil
}

var ourAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.PS256}

// headerAlg reads the alg of a JWS we just signed.
func headerAlg(tok string) (string, error) {
	jws, err := jose.ParseSigned(tok, ourAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return "", fmt.Errorf("id token: own signature unreadable: %v", err)
	}
	return jws.Signatures[0].Header.Algorithm, nil
}
