package issuer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/web"
)

// Browser pages: the authorization endpoint and the sign-in, second-factor, consent, logout
// and error pages. They live on their own mux with their own middleware (pageHeaders),
// apart from the JSON and form API endpoints:
//
//   - server-rendered from embedded html/template files; the only asset is one stylesheet
//     the issuer serves itself;
//   - CSP default-src 'none', frame-ancestors 'none', base-uri 'none', form-action 'self'
//     plus, on pages whose form may end in a redirect to the client, that redirect's origin
//     (Chromium checks form-action on the redirect that follows a form post);
//   - every form post must come from the issuer's own origin (Origin header), carry the
//     transaction's CSRF token (compared in constant time) and the browser-binding cookie
//     of the browser that started the transaction: a sign-in cannot be completed, or
//     forced onto a victim, from another site or another browser;
//   - cookies are __Host- prefixed, Secure, HttpOnly, SameSite=Lax, Path=/; the session
//     cookie holds only an opaque id of a session kept in the store.

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets/portcullis.css
var stylesheet []byte

var pageTemplates = template.Must(template.New("pages").ParseFS(templateFS, "templates/*.html"))

// Page paths.
const (
	PathLogin    = "/login"
	PathLoginOTP = "/login/otp"
	PathConsent  = "/consent"
	PathLogout   = "/logout"
	PathAssets   = "/assets/portcullis.css"
)

// maxPageForm bounds a page's form post.
const maxPageForm = 16 << 10

// Ephemeral kinds.
const (
	kindAuthzTx  = "authz-tx"
	kindLogoutTx = "logout-tx"
	kindPAR      = "par"
)

// cookies are the issuer's cookie names: __Host- prefixed (Secure, Path=/, no Domain) over
// HTTPS; plain names only when insecure_http is set, since browsers refuse Secure cookies
// over plain HTTP.
type cookies struct {
	secure        bool
	session, bind string
}

func newCookies(secure bool) cookies {
	if secure {
		return cookies{secure: true, session: "__Host-portcullis-session", bind: "__Host-portcullis-bind"}
	}
	return cookies{session: "portcullis-session", bind: "portcullis-bind"}
}

func (c cookies) set(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, Secure: c.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func (c cookies) clear(w http.ResponseWriter, name string) { c.set(w, name, "", -1) }

// pagesHandler is the pages' own mux and middleware.
func (s *Server) pagesHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathAuthorize, s.serveAuthorize)
	mux.HandleFunc("POST "+PathAuthorize, s.serveAuthorize)
	mux.HandleFunc("GET "+PathLogin, s.serveLoginPage)
	mux.HandleFunc("POST "+PathLogin, s.serveLoginPost)
	mux.HandleFunc("GET "+PathLoginOTP, s.serveOTPPage)
	mux.HandleFunc("POST "+PathLoginOTP, s.serveOTPPost)
	mux.HandleFunc("GET "+PathConsent, s.serveConsentPage)
	mux.HandleFunc("POST "+PathConsent, s.serveConsentPost)
	mux.HandleFunc("GET "+PathLogout, s.serveLogoutPage)
	mux.HandleFunc("POST "+PathLogout, s.serveLogoutPost)
	mux.HandleFunc("GET "+PathAssets, serveStylesheet)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, POST")
		s.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", "This page only answers GET and POST.", nil)
	})
	return s.pageHeaders(mux)
}

// pagePaths are registered on the server's mux and handed to pagesHandler.
var pagePaths = []string{PathAuthorize, PathLogin, PathLoginOTP, PathConsent, PathLogout, PathAssets}

// pageHeaders sets the headers every page carries. Handlers whose form may redirect to a
// client widen form-action with setCSP.
func (s *Server) pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP(""))
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form
		// posts, and the Origin check needs the real one. No Referer leaves for other sites.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		h.Set("Pragma", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// pageCSP is the pages' Content-Security-Policy; extra is a source added to form-action.
func pageCSP(extra string) string {
	fa := "'self'"
	if extra != "" {
		fa += " " + extra
	}
	return "default-src 'none'; style-src 'self'; img-src 'self'; form-action " + fa + "; frame-ancestors 'none'; base-uri 'none'"
}

var cspSource = regexp.MustCompile(`^(https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?|[a-z][a-z0-9+.\-]*:)$`)

// formActionFor returns the CSP source of a registered redirect URI's origin, or "" when it
// cannot be expressed safely (the form then cannot redirect there, which fails closed).
func formActionFor(redirect string) string {
	u, err := url.Parse(redirect)
	if err != nil || u.Scheme == "" {
		return ""
	}
	src := strings.ToLower(u.Scheme) + ":"
	if u.Scheme == "https" || u.Scheme == "http" {
		src = u.Scheme + "://" + u.Host
	}
	if !cspSource.MatchString(src) {
		return ""
	}
	return src
}

func setCSP(w http.ResponseWriter, redirect string) {
	w.Header().Set("Content-Security-Policy", pageCSP(formActionFor(redirect)))
}

func serveStylesheet(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/css; charset=utf-8")
	h.Set("Cache-Control", "public, max-age=86400")
	h.Set("Content-Length", strconv.Itoa(len(stylesheet)))
	_, _ = w.Write(stylesheet)
}

// pageData is what every template gets.
type pageData struct {
	Title     string
	Message   string // an error or notice shown above the form
	TxID      string
	CSRF      string
	ClientID  string
	Username  string
	Scopes    []scopeLine
	RequestID string
	Signed    bool // logout: a session exists
}

type scopeLine struct{ Name, Description string }

// render writes a page; a template failure is a 500 (logged), never a half page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, d pageData) {
	d.RequestID = web.RequestID(r.Context())
	var buf bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&buf, name, d); err != nil {
		s.log.Error("page template failed", "template", name, "request_id", d.RequestID, "err", err)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "Internal error. Request id: "+d.RequestID+"\n")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorPage shows an error that must not be redirected to a client (unknown client, bad
// redirect_uri, an expired sign-in). The cause goes to the log with the request id.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, status int, title, message string, cause error) {
	info := web.RequestInfo(r.Context())
	if cause != nil {
		info.Reason = cause.Error()
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		s.log.Log(r.Context(), level, "page refused", "request_id", web.RequestID(r.Context()), "path", r.URL.Path, "status", status, "cause", cause.Error())
	}
	w.Header().Set("Content-Security-Policy", pageCSP(""))
	s.render(w, r, status, "error.html", pageData{Title: title, Message: message})
}

// serverError is the error page of a technical failure: a store that does not answer is a
// 503, anything else a 500.
func (s *Server) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, secret.ErrBusy) {
		w.Header().Set("Retry-After", "1")
		s.errorPage(w, r, http.StatusServiceUnavailable, "Try again later", "The service is busy or unavailable. Please try again in a moment.", err)
		return
	}
	s.errorPage(w, r, http.StatusInternalServerError, "Something went wrong", "The request could not be completed.", err)
}

// transaction is one authorization request in progress: created by /authorize, advanced by
// the sign-in, second-factor and consent pages, consumed when the code is issued.
type transaction struct {
	Request AuthRequest `json:"req"`
	Scopes  []string    `json:"scopes"`
	PAR     bool        `json:"par,omitempty"`
	CSRF    string      `json:"csrf"`
	Bind    string      `json:"bind"` // SHA-256 of the browser-binding cookie
	// Pending is the user whose password was right and whose second factor is awaited.
	Pending  string `json:"pending,omitempty"`
	Username string `json:"username,omitempty"`
	OTPFails int    `json:"otp_fails,omitempty"`
	// User is the signed-in user the consent and the code are for.
	User    string    `json:"user,omitempty"`
	Expires time.Time `json:"exp"`
}

// maxOTPFails ends a transaction after this many wrong codes.
const maxOTPFails = 5

func hashBind(v string) string {
	sum := sha256.Sum256([]byte("portcullis browser binding\x00" + v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// browserBinding returns the browser's binding value: the one its cookie holds (so
// transactions in several tabs all work), or a fresh one. The cookie is set again either
// way, so it outlives the newest transaction.
func (s *Server) browserBinding(w http.ResponseWriter, r *http.Request) string {
	v := secret.Random(32)
	if c, err := r.Cookie(s.cookies.bind); err == nil && len(c.Value) == 43 {
		v = c.Value
	}
	s.cookies.set(w, s.cookies.bind, v, int(s.login.TransactionTTL.Seconds())+60)
	return v
}

func (s *Server) saveTx(ctx context.Context, kind, id string, tx any, exp time.Time) error {
	b, err := json.Marshal(tx)
	if err != nil {
		return err
	}
	return s.o.Store.PutEphemeral(ctx, kind, id, b, exp)
}

// errNoTx is an unknown, expired or finished transaction.
var errNoTx = errors.New("no such sign-in transaction")

func (s *Server) loadTx(ctx context.Context, kind, id string, take bool, into any) error {
	if len(id) != 43 {
		return errNoTx
	}
	var b []byte
	var err error
	if take {
		b, err = s.o.Store.TakeEphemeral(ctx, kind, id)
	} else {
		b, err = s.o.Store.GetEphemeral(ctx, kind, id)
	}
	if errors.Is(err, store.ErrNotFound) {
		return errNoTx
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("transaction record: %w", err)
	}
	return nil
}

// txFromRequest loads the authorization transaction named by the tx parameter and checks
// that this browser started it. For posts, checkPost has already checked the origin and
// parsed the form.
func (s *Server) txFromRequest(w http.ResponseWriter, r *http.Request, id string) (*transaction, bool) {
	var tx transaction
	if err := s.loadTx(r.Context(), kindAuthzTx, id, false, &tx); err != nil {
		if errors.Is(err, errNoTx) {
			s.expired(w, r, err)
		} else {
			s.serverError(w, r, err)
		}
		return nil, false
	}
	if !s.boundToBrowser(r, tx.Bind) {
		s.errorPage(w, r, http.StatusForbidden, "Sign-in started elsewhere", "This sign-in was started in another browser. Return to the application and start again.", errors.New("transaction binding cookie missing or different"))
		return nil, false
	}
	return &tx, true
}

func (s *Server) boundToBrowser(r *http.Request, want string) bool {
	c, err := r.Cookie(s.cookies.bind)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(hashBind(c.Value)), []byte(want)) == 1
}

func (s *Server) expired(w http.ResponseWriter, r *http.Request, cause error) {
	s.errorPage(w, r, http.StatusBadRequest, "Sign-in expired", "This sign-in has expired or was already completed. Return to the application and start again.", cause)
}

// checkPost is the CSRF defence of every page form: the post must come from the issuer's
// own origin, be a small urlencoded form without repeated fields, and carry the CSRF token
// of its transaction (checked by checkCSRF once the transaction is loaded).
func (s *Server) checkPost(w http.ResponseWriter, r *http.Request) (oauth.Form, bool) {
	if !s.sameOrigin(r) {
		s.errorPage(w, r, http.StatusForbidden, "Request refused", "This form was not sent from this site.", errors.New("form post from a foreign or unknown origin"))
		return nil, false
	}
	if r.URL.RawQuery != "" {
		s.errorPage(w, r, http.StatusBadRequest, "Request refused", "The form could not be read.", errors.New("form post with a query string"))
		return nil, false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		s.errorPage(w, r, http.StatusUnsupportedMediaType, "Request refused", "The form could not be read.", errors.New("form post of another content type"))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPageForm))
	if err != nil {
		s.errorPage(w, r, http.StatusRequestEntityTooLarge, "Request refused", "The form is too large.", err)
		return nil, false
	}
	f, err := oauth.ParseFormBody(string(body))
	if err != nil {
		s.errorPage(w, r, http.StatusBadRequest, "Request refused", "The form could not be read.", err)
		return nil, false
	}
	return f, true
}

// checkCSRF compares the form's CSRF token with the transaction's, in constant time.
func (s *Server) checkCSRF(w http.ResponseWriter, r *http.Request, f oauth.Form, want string) bool {
	got := f.Get("csrf")
	if got == "" || want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		s.recordAudit(r, store.AuditEvent{Type: "csrf.refused", Outcome: audit.Denied, Reason: "form post without the transaction's CSRF token", Details: map[string]string{"path": r.URL.Path}})
		s.errorPage(w, r, http.StatusForbidden, "Request refused", "This form has expired or was not sent from this site. Go back, reload the page and try again.", errors.New("csrf token missing or wrong"))
		return false
	}
	return true
}

// sameOrigin reports whether a post names the issuer's origin: in Origin, which browsers
// send on every form post, or else in Referer.
func (s *Server) sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		return o == s.origin
	}
	ref, err := url.Parse(r.Header.Get("Referer"))
	if err != nil || ref.Host == "" {
		return false
	}
	return ref.Scheme+"://"+ref.Host == s.origin
}

// currentSession returns the browser's session when it is valid, its user still active and
// their credentials unchanged since it signed in.
func (s *Server) currentSession(r *http.Request) (sessionRef, error) {
	c, err := r.Cookie(s.cookies.session)
	if err != nil {
		return sessionRef{}, nil
	}
	sess, ok, err := s.sessions.Get(r.Context(), c.Value)
	if err != nil || !ok {
		return sessionRef{id: c.Value}, err
	}
	_, current, err := s.users.SessionUser(r.Context(), sess)
	if err != nil || !current {
		return sessionRef{id: c.Value}, err
	}
	return sessionRef{id: c.Value, s: sess, ok: true}, nil
}

// sessionRef is the browser's session cookie and, when ok, the valid session it names.
type sessionRef struct {
	id string
	s  login.Session
	ok bool
}
