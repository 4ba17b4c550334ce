package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/audit"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/gateway"
	"github.com/portcullis/portcullis/internal/issuer"
	"github.com/portcullis/portcullis/internal/keys"
	"github.com/portcullis/portcullis/internal/login"
	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/web"
	"github.com/prometheus/client_golang/prometheus"
)

// Roles name listeners.
const (
	RoleIssuer  = "issuer"
	RoleGateway = "gateway"
	RoleAdmin   = "admin"
)

// Options tune Run.
type Options struct {
	Logger *slog.Logger
	// Listeners are already-bound sockets by role (the demo binds free ports first); roles
	// without one listen on their configured address.
	Listeners map[string]net.Listener
	// Ready, if set, is called once every listener accepts connections.
	Ready func()
	// Reload, if set, delivers replacement configs (SIGHUP, --watch). A bad one is logged
	// and the running config stays.
	Reload <-chan *config.Config
	// Grace bounds how long in-flight requests may take at shutdown (default 10s).
	Grace time.Duration
	// AccessLog receives the gateway's access lines (buffered JSON); default: Logger's output
	// through slog, slower.
	AccessLog io.Writer
}

// App is a running Portcullis: the parts a config asks for, wired together.
type App struct {
	cfg      *config.Config
	log      *slog.Logger
	store    store.Store
	bus      events.Bus
	cache    *cacheBackends
	limits   *limitBackends
	audit    *audit.Recorder
	keys     *keys.Manager
	secrets  *secret.Hasher
	totp     *login.TOTP
	issuer   *issuer.Server
	gateway  *gateway.Gateway
	registry *prometheus.Registry
	imetrics *issuer.Metrics
	handlers map[string]*swapHandler
}

// OpenStore opens the configured store. SQLite always migrates (it is embedded);
// PostgreSQL migrates only with storage.auto_migrate.
func OpenStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (*sqlstore.DB, error) {
	o := storeOptions(cfg)
	o.AutoMigrate = cfg.Storage.Driver == "sqlite" || cfg.Storage.AutoMigrate
	o.Logger = log
	return sqlstore.Open(ctx, o)
}

// storeOptions translates the storage section (without migration policy or logger).
func storeOptions(cfg *config.Config) sqlstore.Options {
	s := cfg.Storage
	dsn := s.DSN
	if s.Driver == "sqlite" {
		dsn = sqliteDSN(cfg, dsn)
	}
	return sqlstore.Options{
		Driver:       s.Driver,
		DSN:          dsn,
		Schema:       s.Schema,
		QueryTimeout: s.QueryTimeout,
		MaxOpenConns: s.MaxOpenConns,
	}
}

// sqliteDSN resolves a relative file: path against the config file's directory.
func sqliteDSN(cfg *config.Config, dsn string) string {
	rest := strings.TrimPrefix(dsn, "file:")
	path, query, hasQuery := strings.Cut(rest, "?")
	out := "file:" + cfg.Path(path)
	if hasQuery {
		out += "?" + query
	}
	return out
}

// Run starts everything cfg configures and blocks until ctx is done, then shuts down
// gracefully: listeners stop accepting, in-flight requests finish (up to Grace), the audit
// trail is flushed and the store closed.
func Run(ctx context.Context, cfg *config.Config, o Options) (err error) {
	if o.Logger == nil {
		o.Logger = telemetry.Discard()
	}
	if o.Grace == 0 {
		o.Grace = 10 * time.Second
	}
	a := &App{cfg: cfg, log: o.Logger, registry: telemetry.NewRegistry(), handlers: map[string]*swapHandler{}}
	defer a.close()
	if err := a.build(ctx, o); err != nil {
		return err
	}
	servers, err := a.listen(o)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(servers))
	for _, s := range servers {
		// Logged before Serve starts: serving TLS configures s.srv.TLSConfig (HTTP/2), so
		// reading it afterwards from here would race.
		a.log.Info("listening", "role", s.role, "addr", s.ln.Addr().String(), "tls", s.tls)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := web.Serve(ctx, s.srv, s.ln, o.Grace); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s listener: %w", s.role, err)
				cancel()
			}
		}()
	}
	if a.keys != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.keys.Run(ctx, 30*time.Second) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); a.janitor(ctx, 5*time.Minute) }()
	wg.Add(1)
	go func() { defer wg.Done(); a.limits.sweepEvery(ctx, time.Minute, a.log) }()
	if o.Reload != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.watchReloads(ctx, o.Reload) }()
	}
	if o.Ready != nil {
		o.Ready()
	}
	<-ctx.Done()
	a.log.Info("shutting down")
	wg.Wait()
	// Shutdown gave in-flight requests Grace to finish; cut any that outlived it, so no
	// handler still runs when the deferred close shuts the audit trail and the store.
	for _, s := range servers {
		_ = s.srv.Close()
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// build opens the store and constructs the configured surfaces.
func (a *App) build(ctx context.Context, o Options) error {
	cfg := a.cfg
	db, err := OpenStore(ctx, cfg, a.log.With("component", "store"))
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	a.store = db
	a.log.Info("backends", "storage", cfg.Storage.Driver, "cache", cfg.Cache.Driver)
	if a.cache, err = openCache(cfg, a.registry, a.log); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	a.bus = a.cache.Bus
	if a.limits, err = openLimits(cfg, a.cache, a.registry, a.log); err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	a.audit = audit.NewRecorder(db, a.log)
	if cfg.Issuer != nil {
		if err := a.buildIssuer(ctx, cfg); err != nil {
			return err
		}
	}
	if cfg.Gateway != nil {
		gw, err := gateway.New(ctx, gateway.Options{
			Config: cfg, Logger: a.log, AccessLog: o.AccessLog, Metrics: a.registry, Events: a.bus,
			SharedCache: a.cache.Shared, Limiter: a.limits.Limiter, Abuse: a.limits.Gateway, Audit: a.audit,
		})
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		a.gateway = gw
	}
	return nil
}

func (a *App) buildIssuer(ctx context.Context, cfg *config.Config) error {
	ic := cfg.Issuer
	mk, err := keys.LoadMasterKey(cfg.Path(ic.Keys.MasterKeyFile), ic.Keys.MasterKeyEnv)
	if err != nil {
		return fmt.Errorf("master key: %w", err)
	}
	if a.keys, err = NewKeyManager(ctx, cfg, mk, a.store, a.bus, a.log); err != nil {
		return err
	}
	if a.secrets, err = NewHasher(ic, mk); err != nil {
		return err
	}
	if a.totp, err = login.NewTOTP(mk.Derive(keys.PurposeTOTP)); err != nil {
		return err
	}
	if err := SyncClients(ctx, a.store, ic); err != nil {
		return fmt.Errorf("sync clients: %w", err)
	}
	if a.imetrics, err = issuer.NewMetrics(a.registry); err != nil {
		return err
	}
	srv, err := issuer.New(issuer.Options{
		Config: ic, Store: a.store, Keys: a.keys, Secrets: a.secrets, Events: a.bus,
		Audit: a.audit, Logger: a.log, Metrics: a.imetrics, TOTP: a.totp, Abuse: a.limits.Issuer, LoginBackends: a.limits.Login,
	})
	if err != nil {
		return err
	}
	a.issuer = srv
	a.handlers[RoleIssuer] = newSwapHandler(srv.Handler())
	return nil
}

// NewKeyManager builds the signing-key manager of cfg.
func NewKeyManager(ctx context.Context, cfg *config.Config, mk keys.MasterKey, st store.KeyStore, bus events.Bus, log *slog.Logger) (*keys.Manager, error) {
	ic := cfg.Issuer
	sealer, err := keys.NewSealer(mk.Derive(keys.PurposeKeySealing))
	if err != nil {
		return nil, err
	}
	maxTTL := max(ic.Tokens.AccessTTL, ic.Tokens.IntrospectionTTL)
	m, err := keys.New(ctx, keys.Options{
		Store: st, Sealer: sealer, Algorithm: ic.Keys.Algorithm,
		RotateEvery: ic.Keys.RotateEvery, PublishAhead: ic.Keys.PublishAhead, Overlap: ic.Keys.Overlap,
		MaxTokenTTL: maxTTL, Events: bus, Logger: log.With("component", "keys"),
	})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	return m, nil
}

// NewHasher builds the client-secret hasher of the issuer config.
func NewHasher(ic *config.Issuer, mk keys.MasterKey) (*secret.Hasher, error) {
	return secret.NewHasher(mk.Derive(keys.PurposeSecretPepper), secret.HasherOptions{CacheTTL: ic.SecretCache.TTL, CacheSize: ic.SecretCache.MaxSize})
}

// SyncClients makes the store's config-sourced clients equal to the file's.
func SyncClients(ctx context.Context, st store.ClientStore, ic *config.Issuer) error {
	cs := make([]store.Client, 0, len(ic.Clients))
	for _, c := range ic.Clients {
		cs = append(cs, store.Client{
			ID: c.ID, Owner: c.Owner, Source: "config", SecretHash: c.SecretHash, AuthMethod: c.AuthMethod,
			JWKS: string(c.JWKS), JWKSURI: c.JWKSURI, GrantTypes: c.GrantTypes, Scopes: c.Scopes,
			Audience: c.Audience, Claims: c.Claims, TokenFormat: c.TokenFormat, Internal: c.Internal,
			Introspect: c.Introspect, RedirectURIs: c.RedirectURIs, PostLogoutRedirectURIs: c.PostLogoutRedirectURIs,
			RequirePAR: c.RequirePAR,
		})
	}
	return st.SyncConfigClients(ctx, cs)
}

type server struct {
	role string
	srv  *http.Server
	ln   net.Listener
	tls  bool // for the log: the gateway's listener does TLS itself, so srv.TLSConfig is nil
}

// listen builds an http.Server per role and binds its socket.
func (a *App) listen(o Options) ([]server, error) {
	cfg := a.cfg
	var out []server
	add := func(role, addr string, tlsCfg config.TLS, insecure bool, h http.Handler, t web.Timeouts, maxHeader int) error {
		s := web.ServerOptions{Addr: addr, Handler: h, Timeouts: t, MaxHeaderBytes: maxHeader, Logger: a.log.With("component", role)}
		if !insecure || tlsCfg.Cert != "" {
			tc, err := web.ServerTLS(cfg.Path(tlsCfg.Cert), cfg.Path(tlsCfg.Key), optionalPath(cfg, tlsCfg.ClientCA))
			if err != nil {
				return fmt.Errorf("%s tls: %w", role, err)
			}
			s.TLS = tc
		}
		ln := o.Listeners[role]
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", addr); err != nil {
				return fmt.Errorf("%s listen: %w", role, err)
			}
		}
		out = append(out, server{role: role, srv: web.NewServer(s), ln: ln, tls: s.TLS != nil})
		return nil
	}
	if is := cfg.Issuer; is != nil {
		if err := add(RoleIssuer, is.Listen, is.TLS, is.InsecureHTTP, a.handlers[RoleIssuer], web.Timeouts{}, 0); err != nil {
			return closeAll(out, err)
		}
	}
	if cfg.Gateway != nil {
		srv, err := a.gateway.Server()
		if err != nil {
			return closeAll(out, err)
		}
		ln := o.Listeners[RoleGateway]
		if ln == nil {
			if ln, err = net.Listen("tcp", cfg.Gateway.Listen); err != nil {
				return closeAll(out, fmt.Errorf("gateway listen: %w", err))
			}
		}
		// The gateway's listener does TLS itself and checks HTTP/1 framing before net/http
		// parses a request, so smuggling attempts are refused rather than normalised.
		out = append(out, server{role: RoleGateway, srv: srv, ln: a.gateway.Listener(ln), tls: !cfg.Gateway.InsecureHTTP})
	}
	if ad := cfg.Admin; ad != nil {
		if err := add(RoleAdmin, ad.Listen, ad.TLS, ad.TLS.Cert == "", a.adminHandler(), web.Timeouts{}, 0); err != nil {
			return closeAll(out, err)
		}
	}
	return out, nil
}

func optionalPath(cfg *config.Config, p string) string {
	if p == "" {
		return ""
	}
	return cfg.Path(p)
}

func closeAll(ss []server, err error) ([]server, error) {
	for _, s := range ss {
		s.ln.Close()
	}
	return nil, err
}

// adminHandler serves metrics, liveness and readiness.
func (a *App) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", telemetry.MetricsHandler(a.registry))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.ready(ctx); err != nil {
			a.log.Warn("not ready", "err", err)
			web.Error(w, r, http.StatusServiceUnavailable, "not ready")
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ready\n"))
	})
	return web.WithRequestID(web.Recover(a.log, mux))
}

// janitor reclaims space every interval: token records a day past their expiry (kept that long
// for investigations), and expired replay keys and ephemeral values.
func (a *App) janitor(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := a.store.DeleteExpiredTokens(ctx, now.Add(-24*time.Hour))
			if err == nil {
				var m int
				m, err = a.store.PurgeExpired(ctx, now)
				n += m
			}
			if err != nil && ctx.Err() == nil {
				a.log.Warn("cleanup of expired records failed", "err", err)
			} else if n > 0 {
				a.log.Debug("expired records removed", "count", n)
			}
		}
	}
}

// ready reports why the process should not receive traffic, or nil.
func (a *App) ready(ctx context.Context) error {
	if err := a.store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if a.keys != nil && a.keys.SigningKeyID() == "" {
		return errors.New("no signing key loaded")
	}
	return nil
}

// watchReloads applies replacement configs until ctx is done.
func (a *App) watchReloads(ctx context.Context, ch <-chan *config.Config) {
	for {
		select {
		case <-ctx.Done():
			return
		case cfg := <-ch:
			if err := a.reload(ctx, cfg); err != nil {
				a.log.Error("config reload failed; the running config stays", "err", err)
				continue
			}
			a.log.Info("config reloaded")
		}
	}
}

// reload swaps in what can change without new sockets: clients, scopes, token policy, routes.
func (a *App) reload(ctx context.Context, cfg *config.Config) error {
	if (cfg.Issuer == nil) != (a.cfg.Issuer == nil) || (cfg.Gateway == nil) != (a.cfg.Gateway == nil) {
		return errors.New("adding or removing a role needs a restart")
	}
	// The gateway first: its reload compiles and checks everything before swapping, so a
	// refusal leaves both roles on the old config.
	if cfg.Gateway != nil {
		if err := a.gateway.Reload(cfg); err != nil {
			return err
		}
	}
	if cfg.Issuer != nil {
		if err := SyncClients(ctx, a.store, cfg.Issuer); err != nil {
			return fmt.Errorf("sync clients: %w", err)
		}
		srv, err := issuer.New(issuer.Options{
			Config: cfg.Issuer, Store: a.store, Keys: a.keys, Secrets: a.secrets, Events: a.bus,
			Audit: a.audit, Logger: a.log, Metrics: a.imetrics, TOTP: a.totp, Abuse: a.limits.Issuer, LoginBackends: a.limits.Login,
		})
		if err != nil {
			return err
		}
		old := a.issuer
		a.issuer = srv
		a.handlers[RoleIssuer].swap(srv.Handler())
		old.Close()
	}
	a.cfg = cfg
	return nil
}

func (a *App) close() {
	if a.gateway != nil {
		if err := a.gateway.Close(); err != nil {
			a.log.Error("closing gateway", "err", err)
		}
	}
	if a.issuer != nil {
		a.issuer.Close()
	}
	if a.limits != nil {
		a.limits.close()
	}
	if a.cache != nil {
		a.cache.close()
	}
	if a.audit != nil {
		a.audit.Close()
	}
	if a.store != nil {
		if err := a.store.Close(); err != nil {
			a.log.Error("closing store", "err", err)
		}
	}
}
