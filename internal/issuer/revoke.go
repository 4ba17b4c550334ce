package issuer

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/token"
	"github.com/portcullis/portcullis/internal/web"
)

// serveRevoke is RFC 7009. The caller must authenticate and may revoke only tokens issued to
// itself. An unknown token and another client's token get the same empty 200 as a successful
// revocation, so the endpoint cannot be used to learn which tokens exist (the refused attempt
// is audited). Revoking a refresh token revokes its whole family, access tokens included.
// Revocations are announced on the event bus so gateways drop cached results at once.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	f, err := oauth.ParseForm(w, r, int64(s.cfg.Limits.MaxBodyBytes))
	if err != nil {
		s.metrics.revoked.WithLabelValues("error").Inc()
		oauth.WriteError(w, err)
		return
	}
	caller, err := s.authenticate(r, f, true)
	if err != nil {
		s.metrics.revoked.WithLabelValues("error").Inc()
		oauth.WriteError(w, err)
		return
	}
	web.RequestInfo(r.Context()).ClientID = caller.ID
	tok := f.Get("token")
	if tok == "" {
		s.metrics.revoked.WithLabelValues("error").Inc()
		oauth.WriteError(w, oauth.InvalidRequest("token is required"))
		return
	}
	if hint := f.Get("token_type_hint"); hint != "" && hint != "access_token" && hint != "refresh_token" {
		s.metrics.revoked.WithLabelValues("error").Inc()
		oauth.WriteError(w, &oauth.Error{Code: oauth.CodeUnsupportedTokenType, Status: http.StatusBadRequest, Description: "unsupported token_type_hint"})
		return
	}
	result, err := s.revoke(r, caller, tok)
	if err != nil {
		s.metrics.revoked.WithLabelValues("error").Inc()
		oauth.WriteError(w, err)
		return
	}
	s.metrics.revoked.WithLabelValues(result).Inc()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// revoke does the work and returns a result label: revoked, unknown or refused.
func (s *Server) revoke(r *http.Request, caller store.Client, tok string) (string, error) {
	if len(tok) > maxTokenLen {
		return "unknown", nil
	}
	hash := token.Hash(tok)
	ctx := r.Context()
	rec, err := s.o.Store.GetToken(ctx, hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "unknown", nil
	case errors.Is(err, store.ErrUnavailable):
		return "", oauth.Unavailable(err)
	case err != nil:
		return "", oauth.ServerError(err)
	}
	if rec.ClientID != caller.ID || rec.Kind == store.KindCode {
		s.recordAudit(r, store.AuditEvent{Type: "token.revoke_refused", Outcome: audit.Denied, ClientID: caller.ID, Subject: rec.Subject, Reason: "token belongs to another client"})
		return "refused", nil
	}
	now := s.o.Now()
	if err := s.o.Store.RevokeToken(ctx, hash, now); err != nil && !errors.Is(err, store.ErrNotFound) {
		if errors.Is(err, store.ErrUnavailable) {
			return "", oauth.Unavailable(err)
		}
		return "", oauth.ServerError(err)
	}
	// Announce only what this call revoked: every announcement makes each gateway drop cache
	// state, so re-revoking a revoked token must not be a way to keep their caches empty.
	var revoked []string
	if rec.RevokedAt.IsZero() {
		revoked = append(revoked, hash)
	}
	if rec.Kind == store.KindRefresh && rec.FamilyID != "" {
		family, err := s.o.Store.RevokeFamily(ctx, rec.FamilyID, now)
		if err != nil {
			return "", oauth.ServerError(err)
		}
		revoked = append(revoked, family...) // only the tokens it revoked now
	}
	s.announceRevoked(ctx, revoked, now)
	s.recordAudit(r, store.AuditEvent{Type: "token.revoked", Outcome: audit.Success, ClientID: caller.ID, Subject: rec.Subject, Details: map[string]string{"kind": rec.Kind}})
	return "revoked", nil
}

// announceRevoked tells every cache (gateways in this process, and other replicas through a
// shared bus) that these tokens stopped working.
func (s *Server) announceRevoked(ctx context.Context, hashes []string, now time.Time) {
	for _, h := range hashes {
		if err := s.o.Events.Publish(ctx, events.Event{Kind: events.TokenRevoked, TokenHash: h, At: now}); err != nil {
			s.log.Warn("revocation not announced; caches expire it within their bound", "err", err)
			return
		}
	}
}
