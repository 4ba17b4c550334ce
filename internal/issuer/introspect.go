package issuer

import (
	"encoding/json"
	"errors"
	"maps"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/token"
	"github.com/portcullis/portcullis/internal/web"
)

// Media type and JWT typ of RFC 9701 introspection responses.
const (
	MediaIntrospectionJWT = "application/token-introspection+jwt"
	TypeIntrospectionJWT  = "token-introspection+jwt"
)

// maxTokenLen bounds what we hash and look up; nothing we issue is longer.
const maxTokenLen = 4096

// serveIntrospect is RFC 7662 with RFC 9701's signed response. The caller must authenticate.
// A client allowed to introspect (introspect: true: resource servers, the gateway) may ask
// about any access token; any other client only about its own. Everything that is not an
// active access token the caller may see answers exactly {"active":false}: unknown, expired,
// revoked, a refresh token, an authorization code, someone else's token.
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	info := web.RequestInfo(r.Context())
	f, err := oauth.ParseForm(w, r, int64(s.cfg.Limits.MaxBodyBytes))
	if err != nil {
		s.metrics.introspect.WithLabelValues("error", "json").Inc()
		oauth.WriteError(w, err)
		return
	}
	caller, err := s.authenticate(r, f, false)
	if err != nil {
		s.metrics.introspect.WithLabelValues("error", "json").Inc()
		oauth.WriteError(w, err)
		return
	}
	info.ClientID = caller.ID
	tok := f.Get("token")
	if tok == "" {
		s.metrics.introspect.WithLabelValues("error", "json").Inc()
		oauth.WriteError(w, oauth.InvalidRequest("token is required"))
		return
	}
	wantJWT := acceptsIntrospectionJWT(r.Header.Get("Accept"))
	format := "json"
	if wantJWT {
		format = "jwt"
	}
	rec, active, err := s.lookupActive(r, caller, tok)
	if err != nil {
		s.metrics.introspect.WithLabelValues("error", format).Inc()
		oauth.WriteError(w, err)
		return
	}
	resp := map[string]any{"active": false}
	if active {
		resp = s.introspectionClaims(rec)
		info.Subject = rec.Subject
		s.metrics.introspect.WithLabelValues("active", format).Inc()
	} else {
		s.metrics.introspect.WithLabelValues("inactive", format).Inc()
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if !wantJWT {
		// Marshal, not Encoder: RFC 7662 inactive answers are exactly {"active":false}, with
		// no trailing newline that would set them apart from other servers' answers.
		body, err := json.Marshal(resp)
		if err != nil {
			oauth.WriteError(w, oauth.ServerError(err))
			return
		}
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
		return
	}
	if active && caller.Introspect {
		// The phantom token: the same grant as an issuer-signed at+jwt, for the gateway to
		// forward upstream in place of the opaque token.
		phantom, err := s.minter.Sign(rec, rec.Hash)
		if err != nil {
			oauth.WriteError(w, oauth.ServerError(err))
			return
		}
		resp["phantom_jwt"] = phantom
	}
	now := s.o.Now().Unix()
	jwt, err := s.o.Keys.Sign(TypeIntrospectionJWT, map[string]any{
		"iss":                 s.cfg.URL,
		"aud":                 caller.ID,
		"iat":                 now,
		"exp":                 now + int64(s.cfg.Tokens.IntrospectionTTL.Seconds()),
		"token_introspection": resp,
	})
	if err != nil {
		oauth.WriteError(w, oauth.ServerError(err))
		return
	}
	h.Set("Content-Type", MediaIntrospectionJWT)
	_, _ = w.Write([]byte(jwt))
}

// lookupActive finds the record of tok and reports whether caller may learn it is active.
func (s *Server) lookupActive(r *http.Request, caller store.Client, tok string) (store.Token, bool, error) {
	if len(tok) > maxTokenLen {
		return store.Token{}, false, nil
	}
	rec, err := s.o.Store.GetToken(r.Context(), token.Hash(tok))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Token{}, false, nil
	case errors.Is(err, store.ErrUnavailable):
		return store.Token{}, false, oauth.Unavailable(err)
	case err != nil:
		return store.Token{}, false, oauth.ServerError(err)
	}
	if rec.Kind != store.KindAccess || !rec.Active(s.o.Now()) {
		return rec, false, nil
	}
	if !caller.Introspect && rec.ClientID != caller.ID {
		return rec, false, nil
	}
	return rec, true, nil
}

// introspectionClaims is the RFC 7662 §2.2 body of an active token.
func (s *Server) introspectionClaims(rec store.Token) map[string]any {
	c := token.Claims(s.cfg.URL, rec, rec.Hash)
	out := make(map[string]any, len(c)+2)
	maps.Copy(out, c)
	out["active"] = true
	out["token_type"] = "Bearer"
	return out
}

// acceptsIntrospectionJWT reports whether the Accept header asks for RFC 9701's response.
func acceptsIntrospectionJWT(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == MediaIntrospectionJWT {
			return true
		}
	}
	return false
}

// authenticate parses and checks the client credentials of an introspection, revocation
// or pushed authorization request, auditing failures. A public client (auth_method none)
// proves nothing about itself: it is accepted only where publicOK says so (/revoke for its
// own tokens, /par where PKCE protects the flow), never at /introspect.
func (s *Server) authenticate(r *http.Request, f oauth.Form, publicOK bool) (store.Client, error) {
	creds, err := oauth.ParseClientCredentials(r, f)
	if err == nil && !publicOK && creds.Method == oauth.AuthNone {
		err = oauth.InvalidClient(errors.New("a public client (auth_method none) cannot authenticate here"))
	}
	if err == nil {
		var cl store.Client
		cl, err = s.auth.Authenticate(r.Context(), creds)
		if err == nil {
			return cl, nil
		}
	}
	oe := oauth.AsError(err)
	web.RequestInfo(r.Context()).Reason = oe.Error()
	if oe.Code == oauth.CodeInvalidClient {
		s.recordAudit(r, store.AuditEvent{Type: "client.auth_failed", Outcome: audit.Failure, ClientID: creds.ClientID, Reason: causeText(oe), Details: map[string]string{"endpoint": r.URL.Path}})
		s.authFailed(r, oe)
	}
	return store.Client{}, oe
}

func (s *Server) recordAudit(r *http.Request, e store.AuditEvent) {
	if s.o.Audit == nil {
		return
	}
	e.RequestID = web.RequestID(r.Context())
	e.RemoteIP = r.RemoteAddr
	s.o.Audit.Record(r.Context(), e)
}

func causeText(e *oauth.Error) string {
	if e.Cause != nil {
		return e.Cause.Error()
	}
	return e.Description
}
