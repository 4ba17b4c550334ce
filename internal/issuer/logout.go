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
	"github.com/portcullis/portcullis/jwtverify"
)

// logoutTx is a sign-out in progress: the confirmation form's CSRF token and where to go
// afterwards.
type logoutTx struct {
	CSRF     string    `json:"csrf"`
	Bind     string    `json:"bind"`
	Redirect string    `json:"redirect,omitempty"` // a registered post_logout_redirect_uri
	State    string    `json:"state,omitempty"`
	Expires  time.Time `json:"exp"`
}

// serveLogoutPage is the end_session_endpoint (OpenID Connect RP-Initiated Logout 1.0).
// post_logout_redirect_uri must exactly match one of the client's registered redirect URIs
// (client_id, or the aud of id_token_hint, names the client); an unregistered one is an
// error page, never a redirect. The person confirms with a CSRF-protected form, unless a
// valid id_token_hint shows that the client asking is one the signed-in user signed in to.
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
	sess, err := s.currentSession(r)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	hintSub, hintAud := s.verifyHint(r, hint, clientID)
	if clientID == "" {
		clientID = hintAud
	} else if hintAud != "" && hintAud != clientID {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The sign-out request is inconsistent.", errors.New("client_id differs from the id_token_hint audience"))
		return
	}
	if redirect != "" {
		ok, err := s.registeredRedirect(r, clientID, redirect)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		if !ok {
			s.errorPage(w, r, http.StatusBadRequest, "Invalid redirect", "The application asked to send you to an address it has not registered. You have not been sent there.", errors.New("post_logout_redirect_uri not registered for the client"))
			return
		}
	}
	tx := logoutTx{CSRF: secret.Random(32), Bind: hashBind(s.browserBinding(w, r)), Redirect: redirect, State: q.Get("state"), Expires: s.o.Now().Add(s.login.TransactionTTL)}
	if !sess.ok {
		s.signedOut(w, r, tx)
		return
	}
	if hintSub != "" && hintSub == sess.s.UserID {
		s.endSession(w, r, sess, clientID)
		s.signedOut(w, r, tx)
		return
	}
	id := secret.Random(32)
	if err := s.saveTx(r.Context(), kindLogoutTx, id, tx, tx.Expires); err != nil {
		s.serverError(w, r, err)
		return
	}
	setCSP(w, redirect)
	s.render(w, r, http.StatusOK, "logout.html", pageData{Title: "Sign out", TxID: id, CSRF: tx.CSRF, ClientID: clientID, Signed: true})
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
	if sess.ok {
		s.endSession(w, r, sess, "")
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

// registeredRedirect reports whether redirect is one of the client's registered URIs.
func (s *Server) registeredRedirect(r *http.Request, clientID, redirect string) (bool, error) {
	if clientID == "" {
		return false, nil
	}
	cl, err := s.clients.GetClient(r.Context(), clientID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !cl.Disabled && slices.Contains(cl.RedirectURIs, redirect), nil
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
