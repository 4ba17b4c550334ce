package issuer

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/issuer/grant"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/oauth"
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
}

// Metrics are the issuer's counters.
type Metrics struct {
	issued     *prometheus.CounterVec
	introspect *prometheus.CounterVec
	revoked    *prometheus.CounterVec
}

// NewMetrics creates the issuer's metrics and registers them on reg (when not nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		issued:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_issuer_token_requests_total", Help: "Token requests by grant type and outcome (ok or the OAuth error code)."}, []string{"grant_type", "outcome"}),
		introspect: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_issuer_introspections_total", Help: "Introspection requests by result (active, inactive, error) and format (json, jwt)."}, []string{"result", "format"}),
		revoked:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_issuer_revocations_total", Help: "Revocation requests by result."}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.issued, m.introspect, m.revoked} {
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
	s := &Server{o: o, cfg: cfg, log: o.Logger.With("component", "issuer")}
	s.metrics = o.Metrics
	if s.metrics == nil {
		s.metrics, _ = NewMetrics(nil) // unregistered: nothing can collide
	}
	s.minter = &token.Minter{Issuer: cfg.URL, AccessTTL: cfg.Tokens.AccessTTL, Signer: o.Keys, Store: o.Store, Now: o.Now}
	s.auth = &grant.Authenticator{
		Clients:              o.Store,
		Secrets:              o.Secrets,
		Replay:               o.Store,
		Issuer:               cfg.URL,
		TokenEndpoint:        cfg.URL + PathToken,
		MaxAssertionLifetime: cfg.Assertions.MaxLifetime,
		HTTPClient:           o.HTTPClient,
		Now:                  o.Now,
	}
	s.dispatch = &grant.Dispatcher{
		Auth:            s.auth,
		Grants:          []grant.Grant{grant.ClientCredentials{Minter: s.minter, Scopes: cfg.Scopes}},
		Scopes:          cfg.Scopes,
		DefaultAudience: cfg.Tokens.Audience,
		MaxBodyBytes:    int64(cfg.Limits.MaxBodyBytes),
		Audit:           o.Audit,
		Logger:          s.log,
		Now:             o.Now,
		Issued:          s.metrics.issued,
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
	mux.Handle("POST "+PathToken, s.dispatch)
	mux.HandleFunc("POST "+PathIntrospect, s.serveIntrospect)
	mux.HandleFunc("POST "+PathRevoke, s.serveRevoke)
	for _, p := range []string{PathToken, PathIntrospect, PathRevoke} {
		mux.HandleFunc(p, oauthMethodNotAllowed("POST"))
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
