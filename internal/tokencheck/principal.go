package tokencheck

import (
	"errors"
	"time"

	"github.com/portcullis/portcullis/jwtverify"
)

// Errors of Check methods. Callers branch on them with errors.Is; the wrapped detail is for
// logs only.
var (
	// ErrInvalidToken: the token is unknown, inactive, expired, revoked, malformed or not
	// meant for this route. The caller gets 401 invalid_token.
	ErrInvalidToken = errors.New("tokencheck: invalid token")
	// ErrUnavailable: the issuer (introspection, metadata or JWKS) could not be consulted or
	// gave an answer that does not verify. The caller gets 503; the request never passes.
	ErrUnavailable = errors.New("tokencheck: issuer unavailable")
)

// Principal is who a verified bearer is. Its zero value is "nobody".
type Principal struct {
	// Claims are the verified claims, shared and read-only.
	Claims *jwtverify.Claims
	// Token is the JWT to forward upstream: the phantom JWT of an opaque token, or the
	// at+jwt itself.
	Token string
	// authorization caches "Bearer " + Token for tokens that are served many times.
	authorization string
	// decided is when the issuer gave the answer, if it came from the shared cache: a cached
	// copy ages from then, not from when this process read it.
	decided time.Time
}

// Authorization returns the Authorization header value that carries Token upstream.
func (p *Principal) Authorization() string {
	if p.authorization != "" {
		return p.authorization
	}
	return "Bearer " + p.Token
}

// Subject returns the "sub" claim, or "".
func (p *Principal) Subject() string {
	if p.Claims == nil {
		return ""
	}
	return p.Claims.Subject
}

// ClientID returns the "client_id" claim, or "".
func (p *Principal) ClientID() string {
	if p.Claims == nil {
		return ""
	}
	return p.Claims.ClientID
}

// HasScope reports whether the token grants scope s.
func (p *Principal) HasScope(s string) bool {
	return p.Claims != nil && p.Claims.HasScope(s)
}
