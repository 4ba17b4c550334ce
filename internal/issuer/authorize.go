package issuer

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/issuer/grant"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/web"
)

// PathAuthorize is the authorization endpoint.
const PathAuthorize = "/authorize"

// requestURIPrefix starts every request_uri this server hands out at /par (RFC 9126 §2.2).
const requestURIPrefix = "urn:ietf:params:oauth:request_uri:"

// parTTL is the lifetime of a pushed authorization request: single use, 60 seconds.
const parTTL = 60 * time.Second

// pushedRequest is what /par stores under a request_uri.
type pushedRequest struct {
	ClientID string      `json:"client_id"`
	Request  AuthRequest `json:"req"`
}

// serveAuthorize is the authorization endpoint (RFC 6749 §4.1, OpenID Connect Core §3.1.2,
// RFC 7636, RFC 9126, RFC 9207). In order:
//
//  1. parse strictly (a malformed request is an error page: nothing in it is trusted);
//  2. resolve a pushed request (request_uri: single use, 60 s, same client);
//  3. find the client and match redirect_uri exactly against its registered list; until
//     both hold, every error is a page, never a redirect (no open redirector);
//  4. validate the rest (response_type=code, PKCE S256, scopes, prompt, max_age); from here
//     errors go back to the client with error, state and iss;
//  5. sign in, second factor and consent as needed, each on its own page; then the code.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	raw, ok := s.authorizeParams(w, r)
	if !ok {
		return
	}
	req, err := ParseAuthorizeRequest(raw)
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The application sent an invalid sign-in request.", err)
		return
	}
	if req.ClientID == "" {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The application sent a sign-in request without its client id.", errors.New("client_id missing"))
		return
	}
	cl, err := s.clients.GetClient(r.Context(), req.ClientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.errorPage(w, r, http.StatusBadRequest, "Unknown application", "The application that sent you here is not registered.", errors.New("unknown client_id"))
		return
	case err != nil:
		s.serverError(w, r, err)
		return
	case cl.Disabled:
		s.errorPage(w, r, http.StatusBadRequest, "Unknown application", "The application that sent you here is not registered.", errors.New("client disabled"))
		return
	}
	web.RequestInfo(r.Context()).ClientID = cl.ID
	pushed := false
	if req.RequestURI != "" {
		if req, ok = s.takePushed(w, r, req, cl); !ok {
			return
		}
		pushed = true
	}
	if req.RedirectURI == "" || !slices.Contains(cl.RedirectURIs, req.RedirectURI) {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid redirect", "The application asked to return you to an address it has not registered. You have not been sent there.", errors.New("redirect_uri missing or not registered (exact match)"))
		return
	}
	// The redirect_uri is now one the client registered: errors may go back to it.
	if cl.RequirePAR && !pushed {
		s.redirectError(w, r, req, oauth.InvalidRequest("this client must use pushed authorization requests (PAR)"))
		return
	}
	scopes, err := req.Validate(cl, s.scopes)
	if err != nil {
		s.redirectError(w, r, req, err)
		return
	}
	sess, err := s.currentSession(r)
	if err != nil {
		s.serverError(w, r, err)
		return
	}
	now := s.o.Now()
	prompts := req.Prompts()
	needLogin := !sess.ok || slices.Contains(prompts, "login") || slices.Contains(prompts, "select_account")
	if maxAge := req.MaxAgeSeconds(); sess.ok && maxAge >= 0 && now.Sub(sess.s.AuthTime) > time.Duration(maxAge)*time.Second {
		needLogin = true
	}
	tx := &transaction{Request: req, Scopes: scopes, PAR: pushed, CSRF: secret.Random(32), Expires: now.Add(s.login.TransactionTTL)}
	if slices.Contains(prompts, "none") {
		if needLogin {
			s.redirectError(w, r, req, &oauth.Error{Code: oauth.CodeLoginRequired, Status: http.StatusBadRequest, Description: "the user is not signed in"})
			return
		}
		need, err := s.askConsent(r, cl, req.RedirectURI, sess.s.UserID, scopes, prompts)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		if need {
			s.redirectError(w, r, req, &oauth.Error{Code: oauth.CodeConsentRequired, Status: http.StatusBadRequest, Description: "the user has not consented"})
			return
		}
		tx.User = sess.s.UserID
		s.issueCode(w, r, tx, sess)
		return
	}
	next := PathLogin
	if !needLogin {
		tx.User = sess.s.UserID
		need, err := s.askConsent(r, cl, req.RedirectURI, tx.User, scopes, prompts)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		if !need {
			s.issueCode(w, r, tx, sess)
			return
		}
		next = PathConsent
	}
	// A page follows: the transaction is stored, so it counts against the address.
	retry, ok, err := s.admitTransaction(r, cl.ID)
	switch {
	case err != nil:
		w.Header().Set("Retry-After", "1")
		s.errorPage(w, r, http.StatusServiceUnavailable, "Try again later", "The service is busy or unavailable. Please try again in a moment.", err)
		return
	case !ok:
		w.Header().Set("Retry-After", strconv.FormatInt(ratelimit.RetryAfterSeconds(retry), 10))
		s.errorPage(w, r, http.StatusTooManyRequests, "Too many sign-ins", "Too many sign-ins were started from your network. Wait a minute and try again.", nil)
		return
	}
	tx.Bind = hashBind(s.browserBinding(w, r))
	id := secret.Random(32)
	if err := s.saveTx(r.Context(), kindAuthzTx, id, tx, tx.Expires); err != nil {
		s.serverError(w, r, err)
		return
	}
	http.Redirect(w, r, next+"?tx="+id, http.StatusSeeOther)
}

// txLimitName names the limit on the sign-in transactions one address may start.
const txLimitName = config.ReservedLimitPrefix + "authorize.ip"

// newTxLimit builds that limit from issuer.login.throttle.starts_per_ip (validated at load):
// /authorize answers anyone and stores a transaction for every request that goes on to a
// page, kept until issuer.login.transaction_ttl. The default, thirty a minute and all at
// once if need be, is far beyond what people behind one address start by hand and keeps a
// script from filling the store. It counts on the sign-in throttle's backends (Redis when
// configured, shared by replicas).
func newTxLimit(rate string) (ratelimit.Limit, error) {
	n, per, err := ratelimit.ParseRate(rate)
	if err != nil {
		return ratelimit.Limit{}, err
	}
	return ratelimit.NewRate(txLimitName, n, per, n)
}

// admitTransaction counts one new sign-in transaction (or pushed request of a public
// client) against the request's address. Over the limit ok is false and retry says how long
// to wait; the first refusal of an address per minute and endpoint is audited. An error
// means the count could not be made: the caller refuses (fail closed).
func (s *Server) admitTransaction(r *http.Request, clientID string) (retry time.Duration, ok bool, err error) {
	ip, now := s.clientIP(r), s.o.Now()
	key := ratelimit.IPKey(ip)
	d, err := ratelimit.Allow(r.Context(), s.txLimiter, s.txLimit, key, now)
	if err != nil {
		s.metrics.throttled.WithLabelValues(r.URL.Path, "unavailable").Inc()
		return 0, false, fmt.Errorf("sign-in transaction limit: %w", err)
	}
	if d.Allowed {
		return 0, true, nil
	}
	s.metrics.throttled.WithLabelValues(r.URL.Path, "limited").Inc()
	const reason = "too many sign-in transactions from this address"
	web.RequestInfo(r.Context()).Reason = reason
	if s.txRefused.first(r.URL.Path+" "+key, now, s.txLimit.Per) {
		s.recordAudit(r, store.AuditEvent{Type: "authorization.throttled", Outcome: audit.Denied, ClientID: clientID, Reason: reason,
			Details: map[string]string{"ip": ip.String(), "endpoint": r.URL.Path, "limit": s.txLimit.String()}})
	}
	return d.RetryAfter, false, nil
}

// authorizeParams returns the raw parameters: the query of a GET, the urlencoded body of a
// POST (OpenID Connect Core §3.1.2.1 allows both).
func (s *Server) authorizeParams(w http.ResponseWriter, r *http.Request) (string, bool) {
	if r.Method == http.MethodGet {
		return r.URL.RawQuery, true
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" || r.URL.RawQuery != "" {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The application sent an invalid sign-in request.", errors.New("POST /authorize must be a urlencoded form without a query"))
		return "", false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAuthorizeQuery))
	if err != nil {
		s.errorPage(w, r, http.StatusRequestEntityTooLarge, "Invalid request", "The sign-in request is too large.", err)
		return "", false
	}
	return string(body), true
}

// takePushed resolves a request_uri (RFC 9126 §4): it must be one of ours, unexpired, unused
// and pushed by this client; the pushed parameters replace the front-channel ones.
func (s *Server) takePushed(w http.ResponseWriter, r *http.Request, req AuthRequest, cl store.Client) (AuthRequest, bool) {
	fail := func(cause string) (AuthRequest, bool) {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The sign-in request has expired or was already used. Return to the application and start again.", errors.New(cause))
		return AuthRequest{}, false
	}
	key, ok := strings.CutPrefix(req.RequestURI, requestURIPrefix)
	if !ok {
		return fail("request_uri not issued by this server")
	}
	var p pushedRequest
	if err := s.loadTx(r.Context(), kindPAR, key, true, &p); err != nil {
		if errors.Is(err, errNoTx) {
			return fail("request_uri unknown, expired or already used")
		}
		s.serverError(w, r, err)
		return AuthRequest{}, false
	}
	if p.ClientID != cl.ID {
		return fail("request_uri pushed by another client")
	}
	return p.Request, true
}

// askConsent reports whether a signed-in person must see the consent page before a code is
// issued from their session: always when the redirect is claimable (no code reaches another
// app on the device without a page the person sees), else as consentNeeded says.
func (s *Server) askConsent(r *http.Request, cl store.Client, redirect, userID string, scopes, prompts []string) (bool, error) {
	if claimableRedirect(cl, redirect) {
		return true, nil
	}
	return s.consentNeeded(r, userID, cl.ID, scopes, prompts)
}

// claimableRedirect reports whether a code sent to redirect for cl could be taken by another
// app on the person's device: cl is public, so nothing at /token proves which app redeems
// the code (PKCE proves only that it started the request, which any app can do), and
// redirect is not https — a loopback http port any app can listen on, or a private-use
// scheme any app can register (RFC 8252 §8.6). An https redirect belongs to its domain.
func claimableRedirect(cl store.Client, redirect string) bool {
	if cl.AuthMethod != "none" {
		return false
	}
	u, err := url.Parse(redirect)
	return err != nil || !strings.EqualFold(u.Scheme, "https")
}

// consentNeeded reports whether the user must be asked: prompt=consent, or a scope not yet
// granted to this client.
func (s *Server) consentNeeded(r *http.Request, userID, clientID string, scopes, prompts []string) (bool, error) {
	if slices.Contains(prompts, "consent") {
		return true, nil
	}
	c, err := s.o.Store.GetConsent(r.Context(), userID, clientID)
	if errors.Is(err, store.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, sc := range scopes {
		if !slices.Contains(c.Scopes, sc) {
			return true, nil
		}
	}
	return false, nil
}

// issueCode ends a transaction: a fresh authorization code, bound to the client, the
// redirect_uri and the PKCE challenge, sent back with state and iss.
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, tx *transaction, sess sessionRef) {
	req := tx.Request
	amr, acr := sess.s.AMR, sess.s.ACR
	code, rec := grant.NewCode(grant.CodeGrant{
		ClientID: req.ClientID, UserID: tx.User, Scopes: tx.Scopes, RedirectURI: req.RedirectURI,
		CodeChallenge: req.CodeChallenge, Nonce: req.Nonce, AuthTime: sess.s.AuthTime, AMR: amr, ACR: acr,
	}, s.o.Now())
	if err := s.o.Store.CreateToken(r.Context(), rec); err != nil {
		s.serverError(w, r, err)
		return
	}
	web.RequestInfo(r.Context()).Subject = tx.User
	s.recordAudit(r, store.AuditEvent{Type: "authorization.granted", Outcome: audit.Success, ClientID: req.ClientID, Subject: tx.User,
		Details: map[string]string{"scope": strings.Join(tx.Scopes, " "), "par": boolText(tx.PAR)}})
	s.redirect(w, r, req.RedirectURI, url.Values{"code": {code}, "state": {req.State}})
}

// redirectError sends an error to the client's (already matched) redirect_uri.
func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, req AuthRequest, err error) {
	oe := oauth.AsError(err)
	web.RequestInfo(r.Context()).Reason = oe.Error()
	s.recordAudit(r, store.AuditEvent{Type: "authorization.refused", Outcome: audit.Denied, ClientID: req.ClientID, Reason: oe.Code + ": " + causeText(oe)})
	v := url.Values{"error": {oe.Code}, "state": {req.State}}
	if oe.Status < 500 && oe.Description != "" {
		v.Set("error_description", oe.Description)
	}
	s.redirect(w, r, req.RedirectURI, v)
}

// redirect sends the browser to a registered redirect URI with params, state only when the
// client sent one, and always iss (RFC 9207), keeping the URI's own query.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values) {
	u, err := url.Parse(redirectURI)
	if err != nil { // registered URIs were validated: a wiring bug
		s.serverError(w, r, err)
		return
	}
	q := u.Query()
	for k, vs := range params {
		if len(vs) == 1 && vs[0] != "" {
			q.Set(k, vs[0])
		}
	}
	q.Set("iss", s.cfg.URL)
	u.RawQuery = q.Encode()
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusSeeOther)
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
