package oauth

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Client authentication methods (RFC 7591 names).
const (
	AuthSecretBasic = "client_secret_basic"
	AuthSecretPost  = "client_secret_post"
	AuthPrivateKey  = "private_key_jwt"
	AuthNone        = "none"
)

// AssertionTypeJWT is the client_assertion_type of RFC 7523.
const AssertionTypeJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// ClientCredentials is what a request presented to authenticate its client: exactly one
// method. Nothing in it has been checked yet.
type ClientCredentials struct {
	Method    string
	ClientID  string
	Secret    string // client_secret_basic / client_secret_post
	Assertion string // private_key_jwt
}

// LogValue keeps the secret and the assertion out of logs.
func (c ClientCredentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("method", c.Method), slog.String("client_id", c.ClientID))
}

// ParseClientCredentials finds the one client authentication method in r and f. Two methods
// at once (Basic and a body secret, a secret and an assertion) are refused, as is a request
// with none: a client that authenticates two ways could be authenticated by the weaker one.
func ParseClientCredentials(r *http.Request, f Form) (ClientCredentials, error) {
	var c ClientCredentials
	methods := 0
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, rest, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return c, InvalidClient(errors.New("authorization scheme is not Basic"))
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
		if err != nil {
			return c, InvalidClient(errors.New("malformed basic credentials"))
		}
		id, secret, ok := strings.Cut(string(raw), ":")
		if !ok {
			return c, InvalidClient(errors.New("malformed basic credentials"))
		}
		// RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
		if id, err = url.QueryUnescape(id); err != nil {
			return c, InvalidClient(errors.New("malformed basic client id"))
		}
		if secret, err = url.QueryUnescape(secret); err != nil {
			return c, InvalidClient(errors.New("malformed basic secret"))
		}
		c = ClientCredentials{Method: AuthSecretBasic, ClientID: id, Secret: secret}
		methods++
	}
	if f.Get("client_secret") != "" {
		c.Method, c.Secret = AuthSecretPost, f.Get("client_secret")
		c.ClientID = f.Get("client_id")
		methods++
	}
	if f.Get("client_assertion") != "" || f.Get("client_assertion_type") != "" {
		if f.Get("client_assertion_type") != AssertionTypeJWT {
			return c, InvalidClient(errors.New("unsupported client_assertion_type"))
		}
		if f.Get("client_assertion") == "" {
			return c, InvalidClient(errors.New("client_assertion missing"))
		}
		c.Method, c.Assertion = AuthPrivateKey, f.Get("client_assertion")
		c.ClientID = f.Get("client_id")
		if c.ClientID == "" {
			id, err := assertionIssuer(c.Assertion)
			if err != nil {
				return c, InvalidClient(err)
			}
			c.ClientID = id
		}
		methods++
	}
	switch {
	case methods > 1:
		return ClientCredentials{}, InvalidRequest("use exactly one client authentication method")
	case methods == 1:
		if id := f.Get("client_id"); id != "" && id != c.ClientID {
			return ClientCredentials{}, InvalidClient(errors.New("client_id parameter differs from the authenticated client"))
		}
		if c.ClientID == "" {
			return ClientCredentials{}, InvalidClient(errors.New("no client id"))
		}
		return c, nil
	case f.Get("client_id") != "":
		return ClientCredentials{Method: AuthNone, ClientID: f.Get("client_id")}, nil
	}
	return ClientCredentials{}, InvalidClient(errors.New("no client authentication"))
}

// assertionAlgs are the algorithms a client assertion may be parsed with. The signature is
// verified later by jwtverify with the client's own keys; here we only learn which client it
// claims to be, so we know whose keys to use.
var assertionAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.PS256, jose.RS256}

// assertionIssuer reads the unverified iss of an assertion, only to pick the client whose
// keys will verify it. A forged iss just selects keys that will not verify the signature.
func assertionIssuer(assertion string) (string, error) {
	if len(assertion) > 8192 {
		return "", errors.New("client assertion too large")
	}
	tok, err := jwt.ParseSigned(assertion, assertionAlgs)
	if err != nil {
		return "", errors.New("malformed client assertion")
	}
	var cl jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&cl); err != nil {
		return "", errors.New("malformed client assertion claims")
	}
	if cl.Issuer == "" {
		return "", errors.New("client assertion without iss")
	}
	return cl.Issuer, nil
}
