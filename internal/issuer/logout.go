package issuer

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/issuer/grant"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/web"
	"github.com/portcullis/portcullis/jwtverify"
)

// logoutTx is a sign-out in progress: the confirmation form's CSRF token and where to go
// afterwards.
type logoutTx struct {
	CSRF     string    `json:"csrf"`
	Bind     string    `json:"bind"`
	ClientID string    `json:"client,omitempty"`   // a registered, enabled client
	Redirect string    `json:"redirect,omitempty"` // one of its post_logout_redirect_uris
	State    string    `json:"state,omitempty"`    // only with Redirect
	Expires  time.Time `json:"exp"`
}

// errUnknownLogoutClient: the client a sign-out request names does not exist or is disabled.
var errUnknownLogoutClient = errors.New("logout names an unknown or disabled client")

// serveLogoutPage is the end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0).
// The client (client_id, or the aud of a valid id_token_hint) is looked up before anything
// else: an unknown or disabled one gets a generic error page that shows nothing the request
// carried. The browser goes back only to one of the client's post_logout_redirect_uris
// (exact match; its sign-in redirect_uris never serve), and state is echoed only then; any
// other post_logout_redirect_uri is not followed (audited as logout.redirect_refused) and the
// person ends on the signed-out page. They confirm with a CSRF-protected form, unless a valid
// id_token_hint shows that the client asking is one the signed-in user signed in to.
func (s *Server) serveLogoutPage(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.RawQuery
	if len(raw) > maxAuthorizeQuery {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The sign-out request is too large.", errors.New("logout query too large"))
		return
	}
	q, err := url.ParseQuery(raw)
	if err == nil {
		for _, vs := range q {
			if len(vs) > 1 {
				err = errors.New("repeated parameter")
			}
		}
	}
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The sign-out request could not be read.", err)
		return
	}
	hint, clientID, redirect := q.Get("id_token_hint"), q.Get("client_id"), q.Get("post_logout_redirect_uri")
	hintSub, hintAud := s.verifyHint(r, hint, clientID)
	if clientID == "" {
		clientID = hintAud
	} else if hintAud != "" && hintAud != clientID {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The sign-out request is inconsistent.", errors.New("client_id differs from the id_token_hint audience"))
		return
	}
	cl, err := s.logoutClient(r, clientID)
	if errors.Is(err, errUnknownLogoutClient) {
		s.recordAudit(r, store.AuditEvent{Type: "logout.refused", Outcome: audit.Denied, Reason: err.Error()})
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The application that sent you here is not known. You have not been signed out.", err)
		return
	}
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	sess, err := s.currentSession(r)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	tx := logoutTx{CSRF: secret.Random(32), Bind: hashBind(s.browserBinding(w, r)), ClientID: cl.ID, Expires: s.o.Now().Add(s.login.TransactionTTL)}
	if redirect != "" {
		if cl.ID != "" && slices.Contains(cl.PostLogoutRedirectURIs, redirect) {
			tx.Redirect, tx.State = redirect, q.Get("state")
		} else {
			s.refuseLogoutRedirect(r, cl.ID)
		}
	}
	if !sess.ok {
		s.signedOut(w, r, tx)
		return
	}
	if hintSub != "" && hintSub == sess.s.UserID {
		s.endSession(w, r, sess, cl.ID)
		s.signedOut(w, r, tx)
		return
	}
	id := secret.Random(32)
	if err := s.saveTx(r.Context(), kindLogoutTx, id, tx, tx.Expires); err != nil {
		s.serverError(w, r, err)
		return
	}
	setCSP(w, tx.Redirect)
	s.render(w, r, http.StatusOK, "logout.html", pageData{Title: "Sign out", TxID: id, CSRF: tx.CSRF, ClientID: cl.ID, Signed: true})
}

// logoutClient returns the enabled client id names (the zero Client for ""), or
// errUnknownLogoutClient.
func (s *Server) logoutClient(r *http.Request, id string) (store.Client, error) {
	if id == "" {
		return store.Client{}, nil
	}
	cl, err := s.clients.GetClient(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Client{}, errUnknownLogoutClient
	case err != nil:
		return store.Client{}, err
	case cl.Disabled:
		return store.Client{}, errUnknownLogoutClient
	}
	return cl, nil
}

// refuseLogoutRedirect records a post_logout_redirect_uri that is not followed.
func (s *Server) refuseLogoutRedirect(r *http.Request, clientID string) {
	reason := "post_logout_redirect_uri is not one of the client's post_logout_redirect_uris"
	if clientID == "" {
		reason = "post_logout_redirect_uri without a client (client_id or a valid id_token_hint)"
	}
	s.log.Info("post-logout redirect refused", "request_id", web.RequestID(r.Context()), "client_id", clientID, "reason", reason)
	s.recordAudit(r, store.AuditEvent{Type: "logout.redirect_refused", Outcome: audit.Denied, ClientID: clientID, Reason: reason})
}

// serveLogoutPost ends the session after the person confirmed.
func (s *Server) serveLogoutPost(w http.ResponseWriter, r *http.Request) {
	f, ok := s.checkPost(w, r)
	if !ok {
		return
	}
	var tx logoutTx
	if err := s.loadTx(r.Context(), kindLogoutTx, f.Get("tx"), true, &tx); err != nil {
		if errors.Is(err, errNoTx) {
			s.errorPage(w, r, http.StatusBadRequest, "Sign-out expired", "This sign-out form has expired. Reload the page to try again.", err)
			return
		}
		s.serverError(w, r, err)
		return
	}
	if !s.boundToBrowser(r, tx.Bind) {
		s.errorPage(w, r, http.StatusForbidden, "Request refused", "This form was not sent from this browser.", errors.New("logout binding cookie missing or different"))
		return
	}
	if !s.checkCSRF(w, r, f, tx.CSRF) {
		return
	}
	sess, err := s.currentSession(r)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if tx.Redirect != "" {
		// The client may have been disabled, or the address unregistered, since the page.
		cl, err := s.logoutClient(r, tx.ClientID)
		if err != nil && !errors.Is(err, errUnknownLogoutClient) {
			s.serverError(w, r, err)
			return
		}
		if cl.ID == "" || !slices.Contains(cl.PostLogoutRedirectURIs, tx.Redirect) {
			s.refuseLogoutRedirect(r, cl.ID)
			tx.Redirect, tx.State = "", ""
		}
	}
	if sess.ok {
		s.endSession(w, r, sess, tx.ClientID)
	}
	s.signedOut(w, r, tx)
}

func (s *Server) endSession(w http.ResponseWriter, r *http.Request, sess sessionRef, clientID string) {
	if err := s.sessions.Delete(r.Context(), sess.id); err != nil {
		s.log.Warn("session not deleted; it expires on its own", "err", err)
	}
	s.cookies.clear(w, s.cookies.session)
	s.recordAudit(r, store.AuditEvent{Type: "logout", Outcome: audit.Success, ClientID: clientID, Subject: sess.s.UserID})
}

// signedOut redirects to the registered post-logout URI (with state), or shows a page.
func (s *Server) signedOut(w http.ResponseWriter, r *http.Request, tx logoutTx) {
	if tx.Redirect != "" {
		u, err := url.Parse(tx.Redirect)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		if tx.State != "" {
			q := u.Query()
			q.Set("state", tx.State)
			u.RawQuery = q.Encode()
		}
		w.Header().Set("Location", u.String())
		w.WriteHeader(http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "signedout.html", pageData{Title: "Signed out"})
}

// verifyHint returns the subject and audience of an id_token_hint this issuer signed for
// clientID (or, without one, for the audience the hint names) and that has not expired; ""
// when absent or not valid, and the person then confirms. The unverified audience only picks
// which audience to require: a forged one cannot verify.
func (s *Server) verifyHint(r *http.Request, hint, clientID string) (sub, aud string) {
	if hint == "" || len(hint) > 8192 {
		return "", ""
	}
	want := clientID
	if want == "" {
		tok, err := jwt.ParseSigned(hint, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.PS256})
		if err != nil {
			return "", ""
		}
		var c jwt.Claims
		if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil || len(c.Audience) != 1 {
			return "", ""
		}
		want = c.Audience[0]
	}
	v, err := jwtverify.New(jwtverify.Config{
		Issuer: s.cfg.URL, Audiences: []string{want}, Algorithms: []string{"ES256", "EdDSA", "PS256"},
		Types: []string{grant.TypeIDToken}, RequiredClaims: []string{"sub"}, Keys: jwtverify.KeyFunc(s.o.Keys.Keys), Now: s.o.Now,
	})
	if err != nil {
		return "", ""
	}
	c, err := v.Verify(r.Context(), hint)
	if err != nil {
		return "", ""
	}
	return c.Subject, want
}
