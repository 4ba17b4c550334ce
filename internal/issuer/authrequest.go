package issuer

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/store"
)

// maxAuthorizeQuery bounds the raw query (or PAR body) of an authorization request.
const maxAuthorizeQuery = 8192

// Bounds on the parameters a sign-in transaction (or a pushed request) stores as sent: an
// unauthenticated request must not be able to make each stored record large. They are
// well above what clients send (a state is usually a 128-bit random value, a nonce too).
const (
	maxState     = 1024
	maxNonce     = 256
	maxLoginHint = 256
	maxScope     = 1024
	maxPrompt    = 64 // "login consent select_account" fits twice over
)

// AuthRequest is an authorization request (RFC 6749 §4.1.1, OpenID Connect Core §3.1.2.1,
// RFC 7636, RFC 9126) as sent: every field is the raw parameter, "" when absent.
// ParseAuthorizeRequest checks only its form; Validate checks its meaning against a client.
type AuthRequest struct {
	ResponseType        string `json:"response_type,omitempty"`
	ClientID            string `json:"client_id,omitempty"`
	RedirectURI         string `json:"redirect_uri,omitempty"`
	Scope               string `json:"scope,omitempty"`
	State               string `json:"state,omitempty"`
	Nonce               string `json:"nonce,omitempty"`
	CodeChallenge       string `json:"code_challenge,omitempty"`
	CodeChallengeMethod string `json:"code_challenge_method,omitempty"`
	ResponseMode        string `json:"response_mode,omitempty"`
	Prompt              string `json:"prompt,omitempty"`
	MaxAge              string `json:"max_age,omitempty"`
	LoginHint           string `json:"login_hint,omitempty"`
	RequestURI          string `json:"request_uri,omitempty"`
}

// params maps each parameter name to its field.
func (a *AuthRequest) params() []struct {
	name string
	v    *string
} {
	return []struct {
		name string
		v    *string
	}{
		{"response_type", &a.ResponseType}, {"client_id", &a.ClientID}, {"redirect_uri", &a.RedirectURI},
		{"scope", &a.Scope}, {"state", &a.State}, {"nonce", &a.Nonce}, {"code_challenge", &a.CodeChallenge},
		{"code_challenge_method", &a.CodeChallengeMethod}, {"response_mode", &a.ResponseMode},
		{"prompt", &a.Prompt}, {"max_age", &a.MaxAge}, {"login_hint", &a.LoginHint}, {"request_uri", &a.RequestURI},
	}
}

// ErrMalformedRequest is the error of ParseAuthorizeRequest: the request cannot be read
// reliably, so nothing in it (not even its redirect_uri) is trusted.
var ErrMalformedRequest = errors.New("malformed authorization request")

// ParseAuthorizeRequest reads the urlencoded parameters of an authorization request (the
// query of GET /authorize, the body of POST /authorize or /par). It refuses, with an error
// wrapping ErrMalformedRequest: more than 8 KiB, malformed encoding, any parameter given
// twice (RFC 6749 §3.1), invalid UTF-8 or control characters, and the request object
// parameter "request" (not supported). Unknown parameters are ignored (RFC 6749 §3.1).
// Parameters without a value count as absent.
func ParseAuthorizeRequest(raw string) (AuthRequest, error) {
	var a AuthRequest
	if len(raw) > maxAuthorizeQuery {
		return a, malformed("request too large")
	}
	values, err := url.ParseQuery(raw)
	if err != nil {
		return a, malformed("malformed parameter encoding")
	}
	for k, vs := range values {
		if len(vs) > 1 {
			return a, malformed("parameter " + strconv.Quote(clip(k, 40)) + " is repeated")
		}
		if !utf8.ValidString(k) || !utf8.ValidString(vs[0]) || hasControl(vs[0]) {
			return a, malformed("parameter " + strconv.Quote(clip(k, 40)) + " is not valid text")
		}
	}
	if values.Get("request") != "" {
		return a, &malformedError{msg: "request objects are not supported", code: "request_not_supported"}
	}
	for _, p := range a.params() {
		*p.v = values.Get(p.name)
	}
	return a, nil
}

// malformedError is a parse error: public text, and the OAuth code it would carry.
type malformedError struct {
	msg  string
	code string
}

func (e *malformedError) Error() string        { return e.msg }
func (e *malformedError) Is(target error) bool { return target == ErrMalformedRequest }

func malformed(msg string) error { return &malformedError{msg: msg, code: oauth.CodeInvalidRequest} }

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Values returns the request's parameters; ParseAuthorizeRequest(a.Values().Encode())
// returns a again.
func (a AuthRequest) Values() url.Values {
	v := url.Values{}
	for _, p := range a.params() {
		if *p.v != "" {
			v.Set(p.name, *p.v)
		}
	}
	return v
}

// Prompts returns the prompt values (OpenID Connect Core §3.1.2.1).
func (a AuthRequest) Prompts() []string { return strings.Fields(a.Prompt) }

// MaxAgeSeconds returns max_age, or -1 when absent.
func (a AuthRequest) MaxAgeSeconds() int64 {
	n, err := strconv.ParseInt(a.MaxAge, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// Validate checks the request's meaning for cl, whose redirect_uri the caller has already
// matched: what is wrong here may be reported to the client by redirect. It returns the
// scopes to ask consent for.
func (a AuthRequest) Validate(cl store.Client, scopes map[string]config.Scope) ([]string, error) {
	switch {
	case a.ResponseType == "":
		return nil, oauth.InvalidRequest("response_type is required")
	case a.ResponseType != "code":
		return nil, &oauth.Error{Code: oauth.CodeUnsupportedResponseType, Status: http.StatusBadRequest, Description: "only response_type=code is supported"}
	case !slices.Contains(cl.GrantTypes, "authorization_code"):
		return nil, oauth.UnauthorizedClient("the client is not registered for the authorization code flow")
	case a.ResponseMode != "" && a.ResponseMode != "query":
		return nil, oauth.InvalidRequest("only response_mode=query is supported")
	case a.CodeChallenge == "":
		return nil, oauth.InvalidRequest("code_challenge is required (PKCE with S256)")
	case a.CodeChallengeMethod != "S256":
		return nil, oauth.InvalidRequest("code_challenge_method must be S256")
	case !validChallenge(a.CodeChallenge):
		return nil, oauth.InvalidRequest("code_challenge must be 43 base64url characters (S256)")
	case len(a.State) > maxState:
		return nil, oauth.InvalidRequest("state is too long")
	case len(a.Nonce) > maxNonce:
		return nil, oauth.InvalidRequest("nonce is too long")
	case len(a.LoginHint) > maxLoginHint:
		return nil, oauth.InvalidRequest("login_hint is too long")
	case len(a.Scope) > maxScope:
		return nil, oauth.InvalidScope("scope is too long")
	case len(a.Prompt) > maxPrompt:
		return nil, oauth.InvalidRequest("prompt is too long")
	}
	if a.MaxAge != "" {
		if n, err := strconv.ParseInt(a.MaxAge, 10, 64); err != nil || n < 0 || n > 10*365*86400 {
			return nil, oauth.InvalidRequest("max_age must be a number of seconds")
		}
	}
	ps := a.Prompts()
	for _, p := range ps {
		if !slices.Contains([]string{"none", "login", "consent", "select_account"}, p) {
			return nil, oauth.InvalidRequest("unsupported prompt value")
		}
	}
	if slices.Contains(ps, "none") && len(ps) > 1 {
		return nil, oauth.InvalidRequest("prompt=none cannot be combined with other values")
	}
	return requestedScopes(cl, a.Scope, scopes)
}

// requestedScopes parses scope: each must be well-formed, known and registered for the
// client. Absent, the client's registered scopes apply (RFC 6749 §3.3 lets the server
// document a default).
func requestedScopes(cl store.Client, param string, scopes map[string]config.Scope) ([]string, error) {
	if param == "" {
		if len(cl.Scopes) == 0 {
			return nil, oauth.InvalidScope("no scope requested and none registered")
		}
		return slices.Clone(cl.Scopes), nil
	}
	var out []string
	for _, s := range strings.Split(param, " ") {
		switch {
		case s == "" || !config.ValidScope(s):
			return nil, oauth.InvalidScope("malformed scope parameter")
		case !isKnownScope(s, scopes):
			return nil, oauth.InvalidScope("unknown scope")
		case !slices.Contains(cl.Scopes, s):
			return nil, oauth.InvalidScope("scope not allowed for this client")
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func isKnownScope(s string, scopes map[string]config.Scope) bool {
	_, ok := scopes[s]
	return ok
}

// validChallenge reports whether c is an S256 code_challenge: base64url of 32 bytes.
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		if !(b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}
