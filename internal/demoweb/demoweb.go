package demoweb

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
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/jwtverify"
)

//go:embed templates/*.html templates/style.css
var files embed.FS

var pages = template.Must(template.New("demoweb").ParseFS(files, "templates/*.html"))

// Scopes the demo asks for.
var Scopes = []string{"openid", "profile", "email", "orders:read", "offline_access"}

// Options configure the application. Issuer, ClientID, BaseURL, HTTPClient and Keys are
// required.
type Options struct {
	Issuer   string // the issuer URL (its discovery document names the endpoints)
	ClientID string
	// BaseURL is this application's own origin, https://host:port; pages live under /app/.
	BaseURL string
	// Gateway is the gateway URL the orders are read through ("" shows no orders).
	Gateway string
	// HTTPClient talks to the issuer and the gateway (it trusts the demo CA).
	HTTPClient *http.Client
	// Keys are the issuer's public keys (its JWKS).
	Keys   jwtverify.KeySource
	Logger *slog.Logger
	Now    func() time.Time
}

// App is the demo web application. Build it with New.
type App struct {
	o        Options
	verifier *jwtverify.Verifier
	redirect string
	home     string

	mu       sync.Mutex
	meta     *metadata
	flows    map[string]flow     // by state
	sessions map[string]*session // by cookie value
}

type flow struct {
	verifier, nonce string
	expires         time.Time
}

type session struct {
	mu           sync.Mutex
	sub          string
	name         string
	username     string
	email        string
	customer     string
	amr          string
	acr          string
	idToken      string
	accessToken  string
	refreshToken string
	accessExp    time.Time
	csrf         string
	expires      time.Time
}

type metadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	UserinfoEndpoint      string `json:"userinfo_endpoint"`
	EndSessionEndpoint    string `json:"end_session_endpoint"`
}

// Bounds of the in-memory state.
const (
	maxFlows    = 1000
	maxSessions = 1000
	flowTTL     = 10 * time.Minute
	sessionTTL  = 8 * time.Hour
)

// Cookie names: distinct from the issuer's, which the browser also sends here when both run
// on one host (cookies ignore ports).
const (
	cookieFlow    = "__Host-demoweb-flow"
	cookieSession = "__Host-demoweb-session"
)

// New checks o and builds the application.
func New(o Options) (*App, error) {
	if o.Issuer == "" || o.ClientID == "" || o.BaseURL == "" || o.HTTPClient == nil || o.Keys == nil {
		return nil, errors.New("demoweb: issuer, client id, base URL, HTTP client and keys are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	v, err := jwtverify.New(jwtverify.Config{
		Issuer: o.Issuer, Audiences: []string{o.ClientID}, Algorithms: []string{"ES256", "EdDSA", "PS256"},
		Types: []string{"", "JWT"}, RequiredClaims: []string{"sub", "iat", "nonce"}, Keys: o.Keys, Now: o.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("demoweb: %w", err)
	}
	return &App{
		o: o, verifier: v, redirect: o.BaseURL + "/app/callback", home: o.BaseURL + "/app/",
		flows: map[string]flow{}, sessions: map[string]*session{},
	}, nil
}

// RedirectURIs are the URIs to register for the client: the callback alone. The page the
// issuer returns to after signing out, /app/, is a post_logout_redirect_uri, not one of these.
func RedirectURIs(baseURL string) []string {
	return []string{baseURL + "/app/callback"}
}

// Handler serves /app/.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /app/{$}", a.serveHome)
	mux.HandleFunc("GET /app/login", a.serveLogin)
	mux.HandleFunc("GET /app/callback", a.serveCallback)
	mux.HandleFunc("POST /app/logout", a.serveLogout)
	mux.HandleFunc("GET /app/style.css", serveCSS)
	mux.HandleFunc("/app/", func(w http.ResponseWriter, r *http.Request) {
		a.page(w, r, http.StatusNotFound, view{Title: "Not found", Error: "There is no such page."})
	})
	// The sign-out form ends in a redirect to the issuer: form-action names its origin.
	csp := "default-src 'none'; style-src 'self'; form-action 'self'"
	if u, err := url.Parse(a.o.Issuer); err == nil && u.Host != "" && !strings.ContainsAny(u.Host, " ;,'") {
		csp += " " + u.Scheme + "://" + u.Host
	}
	csp += "; frame-ancestors 'none'; base-uri 'none'"
	return headers(csp, mux)
}

func headers(csp string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func serveCSS(w http.ResponseWriter, _ *http.Request) {
	b, _ := files.ReadFile("templates/style.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(b)
}

// view is what the page template shows.
type view struct {
	Title    string
	Error    string
	Signed   bool
	Name     string
	Username string
	Email    string
	Customer string
	Subject  string
	AMR      string
	ACR      string
	CSRF     string
	Orders   []order
	OrdersOK bool
	Note     string
}

type order struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Item     string `json:"item"`
	Quantity int    `json:"quantity"`
	Total    string `json:"total"`
	Currency string `json:"currency"`
	Status   string `json:"status"`
}

func (a *App) page(w http.ResponseWriter, r *http.Request, status int, v view) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, "page.html", v); err != nil {
		a.o.Logger.Error("demo web template", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (a *App) serveHome(w http.ResponseWriter, r *http.Request) {
	s := a.session(r)
	if s == nil {
		a.page(w, r, http.StatusOK, view{Title: "Portcullis demo"})
		return
	}
	v := view{Title: "Portcullis demo", Signed: true}
	orders, note := a.orders(r.Context(), s)
	s.mu.Lock()
	v.Name, v.Username, v.Email, v.Customer, v.Subject, v.AMR, v.ACR, v.CSRF = s.name, s.username, s.email, s.customer, s.sub, s.amr, s.acr, s.csrf
	s.mu.Unlock()
	v.Orders, v.OrdersOK, v.Note = orders, note == "", note
	a.page(w, r, http.StatusOK, v)
}

// serveLogin starts the code flow: a fresh state (also in a cookie, binding the flow to this
// browser), nonce and PKCE verifier, kept server-side.
func (a *App) serveLogin(w http.ResponseWriter, r *http.Request) {
	m, err := a.metadata(r.Context())
	if err != nil {
		a.fail(w, r, http.StatusBadGateway, "The sign-in service is not reachable.", err)
		return
	}
	state, nonce, verifier := secret.Random(32), secret.Random(32), secret.Random(32)
	a.mu.Lock()
	a.pruneLocked()
	if len(a.flows) >= maxFlows {
		a.mu.Unlock()
		a.fail(w, r, http.StatusServiceUnavailable, "Too many sign-ins in progress; try again in a minute.", errors.New("flow table full"))
		return
	}
	a.flows[state] = flow{verifier: verifier, nonce: nonce, expires: a.o.Now().Add(flowTTL)}
	a.mu.Unlock()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {a.o.ClientID}, "redirect_uri": {a.redirect},
		"scope": {strings.Join(Scopes, " ")}, "state": {state}, "nonce": {nonce},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	http.SetCookie(w, &http.Cookie{Name: cookieFlow, Value: state, Path: "/", MaxAge: int(flowTTL.Seconds()), Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, m.AuthorizationEndpoint+"?"+q.Encode(), http.StatusSeeOther)
}

// serveCallback finishes the code flow.
func (a *App) serveCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("iss") != a.o.Issuer {
		a.fail(w, r, http.StatusBadRequest, "The answer did not come from the expected sign-in service.", errors.New("iss missing or wrong (RFC 9207)"))
		return
	}
	c, err := r.Cookie(cookieFlow)
	state := q.Get("state")
	if err != nil || state == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) != 1 {
		a.fail(w, r, http.StatusBadRequest, "This sign-in was not started in this browser. Start again.", errors.New("state does not match the flow cookie"))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieFlow, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	a.mu.Lock()
	f, ok := a.flows[state]
	delete(a.flows, state)
	a.mu.Unlock()
	if !ok || a.o.Now().After(f.expires) {
		a.fail(w, r, http.StatusBadRequest, "This sign-in has expired. Start again.", errors.New("unknown or expired state"))
		return
	}
	if e := q.Get("error"); e != "" {
		a.fail(w, r, http.StatusForbidden, "Sign-in did not complete: "+clip(e, 40)+".", errors.New("authorization error "+clip(e, 40)))
		return
	}
	tok, err := a.exchange(r.Context(), url.Values{
		"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {a.redirect},
		"client_id": {a.o.ClientID}, "code_verifier": {f.verifier},
	})
	if err != nil {
		a.fail(w, r, http.StatusBadGateway, "The sign-in could not be completed.", err)
		return
	}
	claims, err := a.verifier.Verify(r.Context(), tok.IDToken)
	if err != nil {
		a.fail(w, r, http.StatusBadGateway, "The sign-in service sent an invalid identity.", fmt.Errorf("id token: %w", err))
		return
	}
	nonce, _ := claims.String("nonce")
	if subtle.ConstantTimeCompare([]byte(nonce), []byte(f.nonce)) != 1 {
		a.fail(w, r, http.StatusBadGateway, "The sign-in service sent an invalid identity.", errors.New("id token nonce differs"))
		return
	}
	if azp, ok := claims.String("azp"); ok && azp != a.o.ClientID {
		a.fail(w, r, http.StatusBadGateway, "The sign-in service sent an invalid identity.", errors.New("id token azp is another client"))
		return
	}
	info, err := a.userinfo(r.Context(), tok.AccessToken)
	if err != nil {
		a.fail(w, r, http.StatusBadGateway, "Your profile could not be read.", err)
		return
	}
	if info["sub"] != claims.Subject {
		a.fail(w, r, http.StatusBadGateway, "The sign-in service sent an invalid identity.", errors.New("userinfo sub differs from the id token's"))
		return
	}
	s := &session{
		sub: claims.Subject, idToken: tok.IDToken, accessToken: tok.AccessToken, refreshToken: tok.RefreshToken,
		accessExp: a.o.Now().Add(time.Duration(tok.ExpiresIn) * time.Second), csrf: secret.Random(32), expires: a.o.Now().Add(sessionTTL),
		name: str(info["name"]), username: str(info["preferred_username"]), email: str(info["email"]), customer: str(info["customer_id"]),
	}
	if amr, ok := claims.Raw["amr"].([]any); ok {
		var parts []string
		for _, x := range amr {
			parts = append(parts, str(x))
		}
		s.amr = strings.Join(parts, "+")
	}
	s.acr, _ = claims.String("acr")
	id := secret.Random(32)
	a.mu.Lock()
	a.pruneLocked()
	if len(a.sessions) >= maxSessions {
		a.mu.Unlock()
		a.fail(w, r, http.StatusServiceUnavailable, "Too many people are signed in; try again later.", errors.New("session table full"))
		return
	}
	a.sessions[id] = s
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieSession, Value: id, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/app/", http.StatusSeeOther)
}

// serveLogout ends the local session and sends the browser to the issuer to sign out there
// too (RP-initiated logout, with the ID token as hint and a registered return address).
func (a *App) serveLogout(w http.ResponseWriter, r *http.Request) {
	s := a.session(r)
	if err := r.ParseForm(); err != nil || s == nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.csrf)) != 1 || r.Header.Get("Origin") != a.o.BaseURL {
		a.fail(w, r, http.StatusForbidden, "Sign-out refused.", errors.New("logout without session, csrf token or same origin"))
		return
	}
	c, _ := r.Cookie(cookieSession)
	a.mu.Lock()
	delete(a.sessions, c.Value)
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieSession, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	m, err := a.metadata(r.Context())
	if err != nil || m.EndSessionEndpoint == "" {
		http.Redirect(w, r, "/app/", http.StatusSeeOther)
		return
	}
	s.mu.Lock()
	hint := s.idToken
	s.mu.Unlock()
	q := url.Values{"id_token_hint": {hint}, "client_id": {a.o.ClientID}, "post_logout_redirect_uri": {a.home}}
	http.Redirect(w, r, m.EndSessionEndpoint+"?"+q.Encode(), http.StatusSeeOther)
}

func (a *App) session(r *http.Request) *session {
	c, err := r.Cookie(cookieSession)
	if err != nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sessions[c.Value]
	if s == nil || a.o.Now().After(s.expires) {
		return nil
	}
	return s
}

// pruneLocked drops expired flows and sessions.
func (a *App) pruneLocked() {
	now := a.o.Now()
	for k, f := range a.flows {
		if now.After(f.expires) {
			delete(a.flows, k)
		}
	}
	for k, s := range a.sessions {
		if now.After(s.expires) {
			delete(a.sessions, k)
		}
	}
}

func (a *App) fail(w http.ResponseWriter, r *http.Request, status int, msg string, cause error) {
	a.o.Logger.Info("demo web refused", "path", r.URL.Path, "status", status, "cause", cause.Error())
	a.page(w, r, status, view{Title: "Portcullis demo", Error: msg})
}

// metadata fetches the issuer's discovery document once.
func (a *App) metadata(ctx context.Context) (*metadata, error) {
	a.mu.Lock()
	m := a.meta
	a.mu.Unlock()
	if m != nil {
		return m, nil
	}
	var got metadata
	if err := a.getJSON(ctx, a.o.Issuer+"/.well-known/openid-configuration", "", &got); err != nil {
		return nil, err
	}
	if got.Issuer != a.o.Issuer || got.AuthorizationEndpoint == "" || got.TokenEndpoint == "" {
		return nil, errors.New("discovery document does not describe the expected issuer")
	}
	a.mu.Lock()
	a.meta = &got
	a.mu.Unlock()
	return &got, nil
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
}

// exchange posts to the token endpoint (a public client: client_id in the body, no secret).
func (a *App) exchange(ctx context.Context, form url.Values) (tokenResponse, error) {
	m, err := a.metadata(ctx)
	if err != nil {
		return tokenResponse{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return tokenResponse{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := a.o.HTTPClient.Do(req)
	if err != nil {
		return tokenResponse{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return tokenResponse{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return tokenResponse{}, fmt.Errorf("token endpoint: %d %s", resp.StatusCode, clip(string(body), 200))
	}
	var t tokenResponse
	if err := json.Unmarshal(body, &t); err != nil || t.AccessToken == "" || !strings.EqualFold(t.TokenType, "Bearer") {
		return tokenResponse{}, errors.New("token endpoint: malformed response")
	}
	return t, nil
}

func (a *App) userinfo(ctx context.Context, accessToken string) (map[string]any, error) {
	m, err := a.metadata(ctx)
	if err != nil {
		return nil, err
	}
	var info map[string]any
	if err := a.getJSON(ctx, m.UserinfoEndpoint, accessToken, &info); err != nil {
		return nil, fmt.Errorf("userinfo: %w", err)
	}
	return info, nil
}

// orders reads the signed-in user's orders through the gateway with her access token,
// refreshing it (rotation) when it has expired.
func (a *App) orders(ctx context.Context, s *session) ([]order, string) {
	if a.o.Gateway == "" {
		return nil, "No gateway configured."
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !a.o.Now().Before(s.accessExp.Add(-10 * time.Second)) {
		if s.refreshToken == "" {
			return nil, "The access token expired; sign in again."
		}
		t, err := a.exchange(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {s.refreshToken}, "client_id": {a.o.ClientID}})
		if err != nil {
			a.o.Logger.Info("demo web refresh failed", "err", err)
			s.refreshToken = ""
			return nil, "The access token expired and could not be refreshed; sign in again."
		}
		s.accessToken, s.accessExp = t.AccessToken, a.o.Now().Add(time.Duration(t.ExpiresIn)*time.Second)
		if t.RefreshToken != "" {
			s.refreshToken = t.RefreshToken
		}
	}
	var out struct {
		Orders []order `json:"orders"`
	}
	if err := a.getJSON(ctx, a.o.Gateway+"/api/orders", s.accessToken, &out); err != nil {
		a.o.Logger.Info("demo web orders", "err", err)
		return nil, "The orders could not be read through the gateway."
	}
	return out.Orders, ""
}

func (a *App) getJSON(ctx context.Context, u, bearer string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := a.o.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", u, resp.StatusCode)
	}
	return json.Unmarshal(body, into)
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
