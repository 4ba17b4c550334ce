package issuer

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/issuer/grant"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/oauth"
	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/token"
	"github.com/portcullis/portcullis/internal/web"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are the issuer's dependencies; app wires them.
type Options struct {
	Config  *config.Issuer
	Store   store.Store
	Keys    *keys.Manager
	Secrets *secret.Hasher
	Events  events.Bus
	Audit   *audit.Recorder
	Logger  *slog.Logger
	Metrics *Metrics // optional; built once per process so a reload keeps counting
	// HTTPClient fetches clients' jwks_uri; default has timeouts and TLS 1.2+.
	HTTPClient *http.Client
	Now        func() time.Time
	// TOTP opens users' sealed second-factor secrets (login.NewTOTP with the key derived
	// from the master key for keys.PurposeTOTP). Without it users who have a second factor
	// cannot sign in: they are refused, never let in on the password alone.
	TOTP *login.TOTP
	// LoginThrottle bounds sign-in guessing; nil builds one from issuer.login.throttle on
	// LoginBackends (in memory where those are nil).
	LoginThrottle *login.Throttle
	// LoginBackends hold the throttle's counts: shared (Redis) backends make replicas agree,
	// and since they outlive the Server a reload does not forget the counts.
	LoginBackends login.ThrottleOptions
	// Abuse counts invalid_client answers per client address at /token, /introspect,
	// /revoke and /par (issuer.abuse.auth_failures) and refuses an address it blocked with
	// 429 there. Nil: no such detection. Pass one on shared backends for replicas, with a
	// block list of the issuer's own, and keep it across reloads.
	Abuse *abuse.Detector
}

// Server is the authorization server surface.
type Server struct {
	o        Options
	cfg      *config.Issuer
	minter   *token.Minter
	auth     *grant.Authenticator
	dispatch *grant.Dispatcher
	meta     oauth.Metadata
	metaJSON []byte
	log      *slog.Logger
	metrics  *Metrics
	clients  *clientCache

	// User sign-in.
	scopes   map[string]config.Scope // issuer.scopes plus the built-in OpenID Connect scopes
	login    config.Login            // effective (defaults applied)
	users    *login.Users
	sessions *login.Sessions
	throttle *login.Throttle
	cookies  cookies
	origin   string // scheme://host of the issuer URL: the only origin page forms may come from
	trusted  []netip.Prefix
	pages    http.Handler

	abuseRule *abuse.Rule // issuer.abuse.auth_failures; nil: off
	reported  onceGate    // subjects a report-only rule was audited for

	txLimiter ratelimit.Limiter // counts new sign-in transactions per address (txLimit)
	txLimit   ratelimit.Limit   // issuer.login.throttle.starts_per_ip
	txRefused onceGate          // addresses a refusal of txLimit was audited for
}

// Metrics are the issuer's counters.
type Metrics struct {
	issued     *prometheus.CounterVec
	introspect *prometheus.CounterVec
	revoked    *prometheus.CounterVec
	logins     *prometheus.CounterVec
	blocked    *prometheus.CounterVec
	throttled  *prometheus.CounterVec
}

// NewMetrics creates the issuer's metrics and registers them on reg (when not nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		issued:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_issuer_token_requests_total", Help: "Token requests by grant type and outcome (ok or the OAuth error code)."}, []string{"grant_type", "outcome"}),
		introspect: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_issuer_introspections_total", Help: "Introspection requests by result (active, inactive, error) and format (json, jwt)."}, []string{"result", "format"}),
		revoked:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_issuer_revocations_total", Help: "Revocation requests by result."}, []string{"result"}),
		logins:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_issuer_logins_total", Help: "Sign-in attempts (password or code) by outcome: success, failure, locked, throttled, busy (no password check could run: try again)."}, []string{"outcome"}),
		blocked:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_issuer_blocked_requests_total", Help: "Requests to the OAuth endpoints refused (429) because their address is blocked after client-authentication failures, by endpoint."}, []string{"endpoint"}),
		throttled:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_issuer_transactions_refused_total", Help: "Sign-in transactions (/authorize, and public clients' /par pushes) refused by endpoint and reason: limited (429, the address started too many) or unavailable (503, the limit could not be counted)."}, []string{"endpoint", "reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.issued, m.introspect, m.revoked, m.logins, m.blocked, m.throttled} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// Endpoint paths below the issuer URL.
const (
	PathToken      = "/token"
	PathIntrospect = "/introspect"
	PathRevoke     = "/revoke"
	PathJWKS       = "/jwks"
)

// New builds the server.
func New(o Options) (*Server, error) {
	if o.Config == nil || o.Store == nil || o.Keys == nil || o.Secrets == nil {
		return nil, errors.New("issuer: config, store, keys and secrets are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Events == nil {
		o.Events = &events.Memory{}
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	cfg := o.Config
	s := &Server{o: o, cfg: cfg, log: o.Logger.With("component", "issuer"), clients: newClientCache(o.Store, o.Now)}
	s.metrics = o.Metrics
	if s.metrics == nil {
		s.metrics, _ = NewMetrics(nil) // unregistered: nothing can collide
	}
	s.minter = &token.Minter{Issuer: cfg.URL, AccessTTL: cfg.Tokens.AccessTTL, Signer: o.Keys, Store: o.Store, Now: o.Now}
	s.auth = &grant.Authenticator{
		Clients:              s.clients,
		Secrets:              o.Secrets,
		Replay:               o.Store,
		Issuer:               cfg.URL,
		TokenEndpoint:        cfg.URL + PathToken,
		MaxAssertionLifetime: cfg.Assertions.MaxLifetime,
		HTTPClient:           o.HTTPClient,
		Now:                  o.Now,
	}
	s.auth.BeforeArgon2id = s.beforeArgon2id
	if err := s.buildSignIn(); err != nil {
		return nil, err
	}
	var err error
	if s.abuseRule, err = abuseRule(cfg.Abuse.AuthFailures); err != nil {
		return nil, fmt.Errorf("issuer: abuse.auth_failures: %w", err)
	}
	userTokens := &grant.UserTokens{
		Minter: s.minter, Tokens: o.Store, Users: o.Store, Consents: o.Store, Scopes: s.scopes,
		RefreshTTL: cfg.Tokens.RefreshTTL, Revoked: s.announceRevoked,
		IDTokens: &grant.IDTokens{Issuer: cfg.URL, TTL: cfg.Tokens.AccessTTL, Signer: o.Keys, Algorithm: s.signingAlgorithm, Now: o.Now},
	}
	s.dispatch = &grant.Dispatcher{
		Auth: s.auth,
		Grants: []grant.Grant{
			grant.ClientCredentials{Minter: s.minter, Scopes: cfg.Scopes},
			grant.AuthorizationCode{UserTokens: userTokens},
			grant.RefreshToken{UserTokens: userTokens},
		},
		Scopes:          cfg.Scopes,
		DefaultAudience: cfg.Tokens.Audience,
		MaxBodyBytes:    int64(cfg.Limits.MaxBodyBytes),
		Audit:           o.Audit,
		Logger:          s.log,
		Now:             o.Now,
		Issued:          s.metrics.issued,
		OnAuthFailure:   s.authFailed,
	}
	s.buildMetadata()
	return s, nil
}

// Routes registers every endpoint. Each path also gets a catch-all so a wrong method is a
// 405 in the endpoint's own error format, not the mux's plain text.
func (s *Server) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.serveMetadata)
	mux.HandleFunc("GET /.well-known/openid-configuration", s.serveMetadata)
	mux.HandleFunc("GET "+PathJWKS, s.serveJWKS)
	mux.Handle("POST "+PathToken, s.guardAbuse(s.dispatch))
	mux.Handle("POST "+PathIntrospect, s.guardAbuse(http.HandlerFunc(s.serveIntrospect)))
	mux.Handle("POST "+PathRevoke, s.guardAbuse(http.HandlerFunc(s.serveRevoke)))
	mux.Handle("POST "+PathPAR, s.guardAbuse(http.HandlerFunc(s.servePAR)))
	mux.HandleFunc("GET "+PathUserinfo, s.serveUserinfo)
	mux.HandleFunc("POST "+PathUserinfo, s.serveUserinfo)
	for _, p := range []string{PathToken, PathIntrospect, PathRevoke, PathPAR} {
		mux.HandleFunc(p, oauthMethodNotAllowed("POST"))
	}
	mux.HandleFunc(PathUserinfo, oauthMethodNotAllowed("GET, POST"))
	// The browser pages have their own mux and middleware (pages.go).
	for _, p := range pagePaths {
		mux.Handle(p, s.pages)
	}
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration", PathJWKS} {
		mux.HandleFunc(p, problemMethodNotAllowed("GET, HEAD"))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		web.Error(w, r, http.StatusNotFound, "")
	})
}

// Handler is the issuer's complete HTTP handler with the shared middleware.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Routes(mux)
	hsts := !s.cfg.InsecureHTTP
	return web.WithRequestID(web.Recover(s.log, web.AccessLog(s.log, web.SecurityHeaders(hsts, mux))))
}

// buildSignIn sets up what user sign-in needs: the effective scopes and login settings,
// password and TOTP checks, sessions, throttling and the pages.
func (s *Server) buildSignIn() error {
	s.scopes = s.cfg.EffectiveScopes()
	s.login = s.cfg.Login.Effective()
	s.trusted = s.login.TrustedProxyPrefixes()
	s.users = &login.Users{Store: s.o.Store, Hasher: s.o.Secrets, TOTP: s.o.TOTP}
	s.sessions = &login.Sessions{Store: s.o.Store, TTL: s.login.SessionTTL, Now: s.o.Now}
	s.throttle = s.o.LoginThrottle
	if s.throttle == nil {
		t, err := login.NewThrottle(s.login.Throttle, s.o.LoginBackends)
		if err != nil {
			return fmt.Errorf("issuer: %w", err)
		}
		s.throttle = t
	}
	txLimit, err := newTxLimit(s.login.Throttle.StartsPerIP)
	if err != nil {
		return fmt.Errorf("issuer: login.throttle.starts_per_ip: %w", err)
	}
	s.txLimit = txLimit
	s.txLimiter = s.o.LoginBackends.Limiter
	if s.txLimiter == nil {
		s.txLimiter = ratelimit.NewMemory(1 << 14)
	}
	u, err := url.Parse(s.cfg.URL)
	if err != nil {
		return fmt.Errorf("issuer: url: %w", err)
	}
	s.origin = u.Scheme + "://" + u.Host
	s.cookies = newCookies(!s.cfg.InsecureHTTP)
	s.pages = s.pagesHandler()
	return nil
}

// signingAlgorithm is the algorithm of the key that signs now.
func (s *Server) signingAlgorithm() string {
	kid := s.o.Keys.SigningKeyID()
	for _, k := range s.o.Keys.Published() {
		if k.ID == kid {
			return k.Algorithm
		}
	}
	return s.cfg.Keys.Algorithm
}

// clientIP is the address sign-in throttling counts by.
func (s *Server) clientIP(r *http.Request) netip.Addr { return web.ClientIP(r, s.trusted) }

// Close releases background resources (remote client JWKS refreshers).
func (s *Server) Close() { s.auth.Close() }

func oauthMethodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		oauth.WriteError(w, &oauth.Error{Code: oauth.CodeInvalidRequest, Status: http.StatusMethodNotAllowed, Description: "method not allowed"})
	}
}

func problemMethodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		web.Error(w, r, http.StatusMethodNotAllowed, "")
	}
}
