package issuer

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/internal/issuer/grant"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/token"
	"github.com/portcullis/portcullis/internal/web"
)

// PathUserinfo is the OpenID Connect UserInfo endpoint.
const PathUserinfo = "/userinfo"

// serveUserinfo is OpenID Connect Core §5.3: GET or POST with a Bearer access token that
// was issued to a signed-in user with the openid scope. The answer is sub plus the claims
// the token's scopes assert in the central claims config (issuer.scopes, with defaults for
// profile and email), valued from the user's attributes as they are now.
func (s *Server) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	tok, ok := bearer(r)
	if !ok {
		// RFC 6750 §3.1: no error code when the request carried no token at all.
		writeBearerError(w, http.StatusUnauthorized, `Bearer realm="userinfo"`, oauth.CodeInvalidRequest, "a Bearer access token is required")
		return
	}
	invalid := func(cause string) {
		web.RequestInfo(r.Context()).Reason = cause
		writeBearerError(w, http.StatusUnauthorized, `Bearer realm="userinfo", error="invalid_token"`, oauth.CodeInvalidToken, "the access token is invalid or expired")
	}
	if len(tok) > maxTokenLen {
		invalid("token too long")
		return
	}
	rec, err := s.o.Store.GetToken(r.Context(), token.Hash(tok))
	switch {
	case errors.Is(err, store.ErrNotFound):
		invalid("unknown token")
		return
	case err != nil:
		oauth.WriteError(w, storeOAuthError(err))
		return
	}
	if rec.Kind != store.KindAccess || !rec.Active(s.o.Now()) {
		invalid("not an active access token")
		return
	}
	if _, isUser := rec.Extra["auth_time"]; !isUser {
		invalid("token of a client, not of a signed-in user")
		return
	}
	if !slices.Contains(rec.Scopes, "openid") {
		writeBearerError(w, http.StatusForbidden, `Bearer realm="userinfo", error="insufficient_scope", scope="openid"`, oauth.CodeInsufficientScope, "the access token lacks the openid scope")
		return
	}
	u, active, err := s.users.ActiveUser(r.Context(), rec.Subject)
	if err != nil {
		oauth.WriteError(w, storeOAuthError(err))
		return
	}
	if !active {
		invalid("user gone or disabled")
		return
	}
	claims := grant.AssertClaims(rec.Scopes, s.scopes, grant.UserClaimValues(u))
	if claims == nil {
		claims = map[string]any{}
	}
	claims["sub"] = u.ID
	web.RequestInfo(r.Context()).ClientID = rec.ClientID
	web.RequestInfo(r.Context()).Subject = u.ID
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	_ = json.NewEncoder(w).Encode(claims)
}

// writeBearerError is an RFC 6750 §3 error: the challenge in WWW-Authenticate, the code in
// a JSON body.
func writeBearerError(w http.ResponseWriter, status int, challenge, code, desc string) {
	h := w.Header()
	h.Set("WWW-Authenticate", challenge)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// bearer returns the token of an "Authorization: Bearer" header (RFC 6750 §2.1).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func storeOAuthError(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return oauth.Unavailable(err)
	}
	return oauth.ServerError(err)
}
