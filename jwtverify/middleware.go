package jwtverify

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

type claimsKey struct{}

// Middleware authenticates every request with a bearer token (RFC 6750 §2.1: the Authorization
// header only, never a query parameter or a cookie) and passes the verified claims to next in
// the request context (see ClaimsFromContext).
//
// Without a bearer token the answer is 401 with `WWW-Authenticate: Bearer`; with a token that
// fails verification, 401 with `Bearer error="invalid_token"` and no hint of why (the reason
// goes to Config.Logger at Debug level); with several Authorization headers or an empty bearer
// token, 400 `Bearer error="invalid_request"`. When the key source is unavailable
// (ErrKeysUnavailable) the answer is 503: the token may well be good.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, status := bearerToken(r)
		switch status {
		case http.StatusUnauthorized:
			challenge(w, http.StatusUnauthorized, "Bearer")
			return
		case http.StatusBadRequest:
			challenge(w, http.StatusBadRequest, `Bearer error="invalid_request"`)
			return
		}
		claims, err := v.Verify(r.Context(), token)
		if err != nil {
			if errors.Is(err, ErrKeysUnavailable) {
				v.log.Warn("bearer token not verifiable: key source unavailable", "err", err, "method", r.Method, "path", r.URL.Path)
				w.Header().Set("Cache-Control", "no-store")
				http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
				return
			}
			v.log.Debug("bearer token rejected", "err", err, "method", r.Method, "path", r.URL.Path)
			challenge(w, http.StatusUnauthorized, `Bearer error="invalid_token"`)
			return
		}
		next.ServeHTTP(w, r.WithContext(ContextWithClaims(r.Context(), claims)))
	})
}

// bearerToken extracts the token of an "Authorization: Bearer" header. The status is 0 when a
// token was found, 401 when there is no bearer credential, 400 when the header is ambiguous.
func bearerToken(r *http.Request) (string, int) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", http.StatusUnauthorized
	case 1:
	default:
		return "", http.StatusBadRequest
	}
	scheme, token, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", http.StatusUnauthorized // another scheme: no bearer credential
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", http.StatusBadRequest
	}
	return token, 0
}

// challenge writes an RFC 6750 error response.
func challenge(w http.ResponseWriter, status int, wwwAuthenticate string) {
	h := w.Header()
	h.Set("WWW-Authenticate", wwwAuthenticate)
	h.Set("Cache-Control", "no-store")
	http.Error(w, http.StatusText(status), status)
}

// ContextWithClaims returns a copy of ctx carrying claims (as Middleware does).
func ContextWithClaims(ctx context.Context, claims *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, claims)
}

// ClaimsFromContext returns the claims Middleware put in the request context.
func ClaimsFromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}

// RequireScopes lets a request through only if its verified token (from Middleware, which must
// run first) grants every one of scopes. Otherwise: 403 with
// `Bearer error="insufficient_scope", scope="..."` (RFC 6750 §3.1), or 401 `Bearer` when the
// request carries no verified claims at all.
func RequireScopes(next http.Handler, scopes ...string) http.Handler {
	header := `Bearer error="insufficient_scope"`
	if validScopeTokens(scopes) {
		header += `, scope="` + strings.Join(scopes, " ") + `"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := ClaimsFromContext(r.Context())
		if !ok {
			challenge(w, http.StatusUnauthorized, "Bearer")
			return
		}
		for _, s := range scopes {
			if !c.HasScope(s) {
				challenge(w, http.StatusForbidden, header)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// validScopeTokens reports whether every scope is an RFC 6749 scope-token (NQCHAR), so it can be
// quoted in a header without escaping.
func validScopeTokens(scopes []string) bool {
	if len(scopes) == 0 {
		return false
	}
	for _, s := range scopes {
		if s == "" {
			return false
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
				return false
			}
		}
	}
	return true
}

// PolicyMiddleware lets a request through only if set allows it, evaluated with the verified
// claims (Middleware must run first), the request (RequestInputFrom(r): path parameters come from
// the mux pattern that matched, if any) and no resource. Deny by default: 403 on deny or on an
// evaluation error; 401 `Bearer` when the request carries no verified claims. For per-object
// decisions, call PolicySet.Allow from the handler with the object's attributes as Resource.
func PolicyMiddleware(set PolicySet, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := ClaimsFromContext(r.Context())
		if !ok {
			challenge(w, http.StatusUnauthorized, "Bearer")
			return
		}
		allowed, _ := set.Allow(r.Context(), PolicyInput{Claims: c, Request: RequestInputFrom(r)})
		if !allowed {
			http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
