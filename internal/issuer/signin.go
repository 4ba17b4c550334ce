package issuer

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/issuer/grant"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/web"
)

// Messages of the sign-in pages. A wrong password, an unknown user, a disabled account and
// a locked one all get badCredentials: the page never tells them apart.
const (
	badCredentials = "Wrong username or password."
	badCode        = "Wrong or expired code. Enter the current code from your authenticator app."
	slowDown       = "Too many attempts. Wait a few minutes and try again."
	busy           = "The service is busy. Try again in a moment."
)

// serveLoginPage shows the sign-in form of a transaction.
func (s *Server) serveLoginPage(w http.ResponseWriter, r *http.Request) {
	tx, ok := s.txFromRequest(w, r, r.URL.Query().Get("tx"))
	if !ok {
		return
	}
	s.renderLogin(w, r, http.StatusOK, r.URL.Query().Get("tx"), tx, tx.Request.LoginHint, "")
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, id string, tx *transaction, username, msg string) {
	setCSP(w, tx.Request.RedirectURI) // the post may end in the redirect to the client
	s.render(w, r, status, "login.html", pageData{Title: "Sign in", Message: msg, TxID: id, CSRF: tx.CSRF, ClientID: tx.Request.ClientID, Username: username})
}

// serveLoginPost checks a username and password.
func (s *Server) serveLoginPost(w http.ResponseWriter, r *http.Request) {
	f, ok := s.checkPost(w, r)
	if !ok {
		return
	}
	id := f.Get("tx")
	tx, ok := s.txFromRequest(w, r, id)
	if !ok || !s.checkCSRF(w, r, f, tx.CSRF) {
		return
	}
	username, password := strings.TrimSpace(f.Get("username")), f.Get("password")
	ctx, now, ip := r.Context(), s.o.Now(), s.clientIP(r)
	verdict, err := s.throttle.Admit(ctx, ip, username, now)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if verdict.RateLimited || verdict.AddressBlocked {
		s.loginFailed(r, tx.Request.ClientID, "", username, verdict.Reason(), "throttled")
		if verdict.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(verdict.RetryAfter.Seconds())+1))
		}
		s.renderLogin(w, r, http.StatusTooManyRequests, id, tx, username, slowDown)
		return
	}
	// The password is checked even for a locked account, so the answer takes as long and
	// reads the same as for a wrong password.
	u, err := s.users.CheckPassword(ctx, username, password)
	var fail *login.Failure
	switch {
	case errors.As(err, &fail):
		s.failure(r, ip, username, tx.Request.ClientID, fail.UserID, fail.Reason)
		s.renderLogin(w, r, http.StatusOK, id, tx, username, badCredentials)
		return
	case errors.Is(err, secret.ErrBusy):
		// Too many password checks at once (or the browser gave up): nothing was checked,
		// so nothing counts as a failure; the person tries again.
		s.metrics.logins.WithLabelValues("busy").Inc()
		web.RequestInfo(ctx).Reason = err.Error()
		w.Header().Set("Retry-After", "1")
		s.renderLogin(w, r, http.StatusServiceUnavailable, id, tx, username, busy)
		return
	case err != nil:
		s.serverError(w, r, err)
		return
	case verdict.AccountLocked:
		s.loginFailed(r, tx.Request.ClientID, u.ID, username, verdict.Reason(), "locked")
		s.renderLogin(w, r, http.StatusOK, id, tx, username, badCredentials)
		return
	}
	if u.TOTPSealed != nil {
		tx.Pending, tx.Username = u.ID, u.Username
		if err := s.saveTx(ctx, kindAuthzTx, id, tx, tx.Expires); err != nil {
			s.serverError(w, r, err)
			return
		}
		http.Redirect(w, r, PathLoginOTP+"?tx="+id, http.StatusSeeOther)
		return
	}
	s.signedIn(w, r, id, tx, u, []string{grant.AMRPassword}, grant.ACRPassword)
}

// failure counts a failed attempt against the address and the account and audits it, with
// the sanctions it triggered.
func (s *Server) failure(r *http.Request, ip netip.Addr, account, clientID, userID, reason string) {
	s.loginFailed(r, clientID, userID, account, reason, "failure")
	fired, err := s.throttle.Failure(r.Context(), ip, account, s.o.Now())
	if err != nil {
		s.log.Warn("sign-in failure not counted", "request_id", web.RequestID(r.Context()), "err", err)
	}
	for _, v := range fired {
		s.recordAudit(r, store.AuditEvent{Type: "login.sanction", Outcome: audit.Denied, ClientID: clientID, Subject: userID, Reason: v.Rule,
			Details: map[string]string{"subject": v.Subject, "action": v.Action.String(), "until": v.Until.UTC().Format(time.RFC3339)}})
	}
}

func (s *Server) loginFailed(r *http.Request, clientID, userID, username, reason, outcome string) {
	s.metrics.logins.WithLabelValues(outcome).Inc()
	web.RequestInfo(r.Context()).Reason = reason
	s.recordAudit(r, store.AuditEvent{Type: "login.failed", Outcome: audit.Failure, ClientID: clientID, Subject: userID, Reason: reason,
		Details: map[string]string{"username": clip(username, 64), "ip": s.clientIP(r).String()}})
}

// serveOTPPage shows the second-factor form.
func (s *Server) serveOTPPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("tx")
	tx, ok := s.txFromRequest(w, r, id)
	if !ok {
		return
	}
	if tx.Pending == "" {
		s.expired(w, r, errors.New("second-factor page without a pending user"))
		return
	}
	s.renderOTP(w, r, http.StatusOK, id, tx, "")
}

func (s *Server) renderOTP(w http.ResponseWriter, r *http.Request, status int, id string, tx *transaction, msg string) {
	setCSP(w, tx.Request.RedirectURI)
	s.render(w, r, status, "otp.html", pageData{Title: "Enter your code", Message: msg, TxID: id, CSRF: tx.CSRF, ClientID: tx.Request.ClientID, Username: tx.Username})
}

// serveOTPPost checks a TOTP code.
func (s *Server) serveOTPPost(w http.ResponseWriter, r *http.Request) {
	f, ok := s.checkPost(w, r)
	if !ok {
		return
	}
	id := f.Get("tx")
	tx, ok := s.txFromRequest(w, r, id)
	if !ok || !s.checkCSRF(w, r, f, tx.CSRF) {
		return
	}
	if tx.Pending == "" {
		s.expired(w, r, errors.New("code posted without a pending user"))
		return
	}
	ctx, now, ip := r.Context(), s.o.Now(), s.clientIP(r)
	verdict, err := s.throttle.Admit(ctx, ip, tx.Username, now)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if verdict.RateLimited || verdict.AddressBlocked {
		s.loginFailed(r, tx.Request.ClientID, tx.Pending, tx.Username, verdict.Reason(), "throttled")
		s.renderOTP(w, r, http.StatusTooManyRequests, id, tx, slowDown)
		return
	}
	u, active, err := s.users.ActiveUser(ctx, tx.Pending)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if !active {
		s.loginFailed(r, tx.Request.ClientID, tx.Pending, tx.Username, "account disabled during sign-in", "failure")
		_ = s.o.Store.DeleteEphemeral(ctx, kindAuthzTx, id)
		s.expired(w, r, errors.New("user disabled during sign-in"))
		return
	}
	err = s.users.CheckTOTP(ctx, u, f.Get("code"), now)
	var fail *login.Failure
	switch {
	case errors.As(err, &fail) || (err == nil && verdict.AccountLocked):
		reason := verdict.Reason()
		if fail != nil {
			reason = fail.Reason
		}
		s.failure(r, ip, tx.Username, tx.Request.ClientID, u.ID, reason)
		tx.OTPFails++
		if tx.OTPFails >= maxOTPFails {
			_ = s.o.Store.DeleteEphemeral(ctx, kindAuthzTx, id)
			s.errorPage(w, r, http.StatusForbidden, "Too many wrong codes", "Return to the application and sign in again.", errors.New("too many wrong codes in one transaction"))
			return
		}
		if err := s.saveTx(ctx, kindAuthzTx, id, tx, tx.Expires); err != nil {
			s.serverError(w, r, err)
			return
		}
		s.renderOTP(w, r, http.StatusOK, id, tx, badCode)
		return
	case err != nil:
		s.serverError(w, r, err)
		return
	}
	s.signedIn(w, r, id, tx, u, []string{grant.AMRPassword, grant.AMROTP}, grant.ACRTwoFactor)
}

// signedIn starts a fresh session for u (a new id: one planted before sign-in never becomes
// a session; the browser's previous session ends), then asks for consent or issues the code.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request, id string, tx *transaction, u store.User, amr []string, acr string) {
	ctx := r.Context()
	if old, err := r.Cookie(s.cookies.session); err == nil {
		_ = s.sessions.Delete(ctx, old.Value)
	}
	sid, sess, err := s.sessions.Create(ctx, login.Session{UserID: u.ID, AuthTime: s.o.Now().UTC().Truncate(time.Second), AMR: amr, ACR: acr})
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	s.cookies.set(w, s.cookies.session, sid, 0)
	s.metrics.logins.WithLabelValues("success").Inc()
	web.RequestInfo(ctx).Subject = u.ID
	s.recordAudit(r, store.AuditEvent{Type: "login.succeeded", Outcome: audit.Success, ClientID: tx.Request.ClientID, Subject: u.ID,
		Details: map[string]string{"amr": strings.Join(amr, " "), "ip": s.clientIP(r).String()}})
	tx.Pending, tx.OTPFails, tx.User = "", 0, u.ID
	need, err := s.consentNeeded(r, u.ID, tx.Request.ClientID, tx.Scopes, tx.Request.Prompts())
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	if need {
		if err := s.saveTx(ctx, kindAuthzTx, id, tx, tx.Expires); err != nil {
			s.serverError(w, r, err)
			return
		}
		http.Redirect(w, r, PathConsent+"?tx="+id, http.StatusSeeOther)
		return
	}
	s.finish(w, r, id, tx, sessionRef{id: sid, s: sess, ok: true})
}

// finish claims the transaction (exactly one code per transaction, however often the form
// is posted) and issues the code.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, id string, tx *transaction, sess sessionRef) {
	var claimed transaction
	if err := s.loadTx(r.Context(), kindAuthzTx, id, true, &claimed); err != nil {
		if errors.Is(err, errNoTx) {
			s.expired(w, r, errors.New("transaction finished concurrently"))
			return
		}
		s.serverError(w, r, err)
		return
	}
	s.issueCode(w, r, tx, sess)
}

// serveConsentPage lists the scopes the client asks for, in plain words.
func (s *Server) serveConsentPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("tx")
	tx, ok := s.txFromRequest(w, r, id)
	if !ok {
		return
	}
	if _, ok := s.consentSession(w, r, tx); !ok {
		return
	}
	setCSP(w, tx.Request.RedirectURI)
	lines := make([]scopeLine, 0, len(tx.Scopes))
	for _, sc := range tx.Scopes {
		lines = append(lines, scopeLine{Name: sc, Description: s.describeScope(sc)})
	}
	s.render(w, r, http.StatusOK, "consent.html", pageData{Title: "Allow access", TxID: id, CSRF: tx.CSRF, ClientID: tx.Request.ClientID, Scopes: lines})
}

// consentSession returns the session of the transaction's user; anything else (signed out
// meanwhile, another user signed in in another tab) sends the person back to sign in.
func (s *Server) consentSession(w http.ResponseWriter, r *http.Request, tx *transaction) (sessionRef, bool) {
	sess, err := s.currentSession(r)
	if err != nil {
		s.serverError(w, r, err)
		return sessionRef{}, false
	}
	if tx.User == "" || !sess.ok || sess.s.UserID != tx.User {
		s.expired(w, r, errors.New("consent without the session of the transaction's user"))
		return sessionRef{}, false
	}
	return sess, true
}

// serveConsentPost records the person's answer: allow remembers the consent for this client
// until revoked and issues the code; deny returns access_denied to the client.
func (s *Server) serveConsentPost(w http.ResponseWriter, r *http.Request) {
	f, ok := s.checkPost(w, r)
	if !ok {
		return
	}
	id := f.Get("tx")
	tx, ok := s.txFromRequest(w, r, id)
	if !ok || !s.checkCSRF(w, r, f, tx.CSRF) {
		return
	}
	sess, ok := s.consentSession(w, r, tx)
	if !ok {
		return
	}
	ctx := r.Context()
	switch f.Get("decision") {
	case "allow":
		old, err := s.o.Store.GetConsent(ctx, tx.User, tx.Request.ClientID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.serverError(w, r, err)
			return
		}
		granted := slices.Clone(old.Scopes)
		for _, sc := range tx.Scopes {
			if !slices.Contains(granted, sc) {
				granted = append(granted, sc)
			}
		}
		if err := s.o.Store.SaveConsent(ctx, store.Consent{Subject: tx.User, ClientID: tx.Request.ClientID, Scopes: granted, GrantedAt: s.o.Now().UTC()}); err != nil {
			s.serverError(w, r, err)
			return
		}
		s.recordAudit(r, store.AuditEvent{Type: "consent.granted", Outcome: audit.Success, ClientID: tx.Request.ClientID, Subject: tx.User, Details: map[string]string{"scope": strings.Join(tx.Scopes, " ")}})
		s.finish(w, r, id, tx, sess)
	case "deny":
		var claimed transaction
		if err := s.loadTx(ctx, kindAuthzTx, id, true, &claimed); err != nil {
			s.expired(w, r, err)
			return
		}
		s.recordAudit(r, store.AuditEvent{Type: "consent.denied", Outcome: audit.Denied, ClientID: tx.Request.ClientID, Subject: tx.User})
		s.redirectError(w, r, tx.Request, &oauth.Error{Code: oauth.CodeAccessDenied, Status: http.StatusForbidden, Description: "the user denied the request"})
	default:
		s.errorPage(w, r, http.StatusBadRequest, "Request refused", "The form could not be read.", errors.New("consent decision missing"))
	}
}

// builtinScopeWords describe the OpenID Connect scopes; issuer.scopes.*.description
// describes the rest (and may override these).
var builtinScopeWords = map[string]string{
	"openid":         "Sign you in and see your user id",
	"profile":        "See your name and basic profile",
	"email":          "See your email address",
	"offline_access": "Keep access while you are not using it (until you revoke it)",
}

func (s *Server) describeScope(sc string) string {
	if d := s.cfg.Scopes[sc].Description; d != "" {
		return d
	}
	if d, ok := builtinScopeWords[sc]; ok {
		return d
	}
	return "Use the permission “" + sc + "”"
}
