package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/abuse/ipfilter"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tokencheck"
	"github.com/portcullis/portcullis/internal/web"
)

// Options configures New.
type Options struct {
	// Config is the whole configuration; its gateway section must be set. It is validated.
	Config *config.Config
	// Logger receives operational events (upstream failures, reloads, the issuer being
	// unreachable). Never a token. Default: discard.
	Logger *slog.Logger
	// AccessLog receives one JSON line per request, buffered (flushed every 200ms and on
	// Close) and never waited for: while it is stuck, lines beyond 8 MiB are dropped and
	// counted. Nil: access lines go through Logger instead, unbuffered and slower.
	AccessLog io.Writer
	// Metrics is where the gateway registers its collectors (once, in New). Nil: not exported.
	Metrics prometheus.Registerer
	// Events carries token revocations and resyncs from the issuer. Nil: no feed, so cached
	// introspection results last at most gateway.introspection.revocation_bound.
	Events events.Bus
	// SharedCache is a second-level introspection cache that replicas share (Redis, from
	// tokencheck/rediscache); nil: each gateway keeps only its own.
	SharedCache tokencheck.SharedStore
	// HTTPClient talks to the issuer. Default: built from gateway.issuer_ca.
	HTTPClient *http.Client
	// Now is the clock of token checks, rate limits, quotas and abuse windows (tests).
	// Default time.Now.
	Now func() time.Time
	// Limiter decides the routes' rate limits and quotas. Nil: an in-memory limiter of this
	// process. The app passes one shared through Redis (behind a ratelimit.Failover with
	// cache.fail) so that replicas share limits; it outlives reloads, so a reload keeps the
	// counts.
	Limiter ratelimit.Limiter
	// Abuse holds the sliding windows of the abuse detectors and the block and throttle
	// lists of addresses and clients. Nil: in memory, this process only.
	Abuse *abuse.Detector
	// Audit records the limits' security decisions: ratelimit.denied, ip.blocked,
	// client.blocked, abuse.fired (each at most once per key and minute). Nil: none.
	Audit Auditor
}

// Auditor records audit events; *audit.Recorder is one.
type Auditor interface {
	Record(ctx context.Context, e store.AuditEvent)
}

// Gateway is the edge proxy. It is an http.Handler; serve it with the *http.Server that
// Server returns. Safe for concurrent use; Reload may run while requests are served.
type Gateway struct {
	log       *slog.Logger
	errorLog  *log.Logger
	access    *accessLog
	metrics   *metrics
	tcMetrics *tokencheck.Metrics
	opts      Options

	state    atomic.Pointer[state]
	reloadMu sync.Mutex    // serialises Reload and Close
	retired  []*retirement // cleanups of replaced configurations, run late or at Close
	closed   bool
	noRoute  *routeMetrics
	edge     edgeSettings // listener settings, fixed at New

	// Limits, fixed at New and kept across reloads.
	limiter      ratelimit.Limiter
	det          *abuse.Detector
	rlMetrics    *ratelimit.Metrics
	ipStatus     *statusCache[netip.Prefix]
	clientStatus *statusCache[string]
	auditGate    *auditGate
}

// state is one compiled configuration. It is immutable once published.
type state struct {
	cfg        *config.Config
	table      *table
	routes     []*route
	checker    *tokencheck.Checker
	authKey    string
	verifiers  map[string]*tokencheck.JWTVerifier
	transports map[string]*http.Transport
	trusted    []netip.Prefix
	strip      map[string]bool  // canonical request header names never forwarded as sent
	forwardID  bool             // gateway.forward_request_id
	filter     *ipfilter.Filter // gateway.ip_filter; nil when it filters nothing
	abuse      abuseSettings
}

// New compiles the configuration and returns a Gateway. ctx bounds nothing but a background
// warm-up of the issuer's metadata and keys.
func New(ctx context.Context, opts Options) (*Gateway, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	lg := opts.Logger.With("component", "gateway")
	m, err := newMetrics(opts.Metrics)
	if err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	tcm, err := tokencheck.NewMetrics(opts.Metrics)
	if err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	g := &Gateway{
		log:       lg,
		errorLog:  slog.NewLogLogger(lg.Handler(), slog.LevelWarn),
		metrics:   m,
		tcMetrics: tcm,
		opts:      opts,
	}
	g.noRoute = m.forRoute(noRoute)
	if err := g.initLimits(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	st, err := g.build(opts.Config, nil)
	if err != nil {
		return nil, err
	}
	g.state.Store(st)
	if g.edge, err = newEdgeSettings(opts.Config); err != nil {
		_ = g.Close()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if opts.AccessLog != nil {
		g.access = newAccessLog(opts.AccessLog, m.accessLogDropped)
	}
	if st.checker != nil {
		go func() { _, _ = st.checker.Metadata(ctx) }() // warm-up; failures are retried on use
	}
	return g, nil
}

// initLimits sets up the limiter and the abuse detector (the options' or in-memory ones)
// and their metrics.
func (g *Gateway) initLimits() error {
	reg := g.opts.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry() // counted, not exported
	}
	g.limiter = g.opts.Limiter
	if g.limiter == nil {
		mem := ratelimit.NewMemory(0)
		if err := ratelimit.RegisterMemory(reg, mem); err != nil {
			return err
		}
		g.limiter = mem
	}
	g.det = g.opts.Abuse
	if g.det == nil {
		det, err := abuse.NewDetector(abuse.DetectorOptions{
			Windows: abuse.NewMemoryWindow(0), Blocks: abuse.NewMemoryBlockList(0), Throttles: abuse.NewMemoryBlockList(0),
			Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"surface": "gateway"}, reg),
		})
		if err != nil {
			return err
		}
		g.det = det
	}
	var err error
	if g.rlMetrics, err = ratelimit.NewMetrics(reg); err != nil {
		return err
	}
	g.ipStatus = newStatusCache[netip.Prefix]()
	g.clientStatus = newStatusCache[string]()
	g.auditGate = newAuditGate(g.metrics.auditSuppressed)
	return nil
}

// Reload validates and compiles cfg and then swaps it in atomically. On error nothing
// changes: the old configuration keeps serving. Requests in flight finish on the
// configuration they started with. Listener settings (address, TLS, server limits) take
// effect only on restart.
func (g *Gateway) Reload(cfg *config.Config) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.closed {
		return errors.New("gateway: closed")
	}
	old := g.state.Load()
	st, err := g.build(cfg, old)
	if err != nil {
		g.log.Error("reload refused; the previous configuration keeps serving", "error", err)
		return err
	}
	g.state.Store(st)
	g.retire(old, st)
	g.log.Info("configuration reloaded", "routes", len(st.routes))
	return nil
}

// retire releases what old held and st does not, after in-flight requests had time to end.
func (g *Gateway) retire(old, st *state) {
	names := map[string]bool{}
	for _, r := range st.routes {
		names[r.name] = true
	}
	for _, r := range old.routes {
		if !names[r.name] {
			g.metrics.forget(r.name)
		}
	}
	var trs []*http.Transport
	for k, tr := range old.transports {
		if st.transports[k] != tr {
			trs = append(trs, tr)
		}
	}
	var checker *tokencheck.Checker
	if old.checker != nil && old.checker != st.checker {
		checker = old.checker
	}
	cleanup := func() {
		for _, tr := range trs {
			tr.CloseIdleConnections()
		}
		if checker != nil {
			checker.Close()
		}
	}
	grace := old.cfg.Gateway.Limits.WriteTimeout
	if grace <= 0 {
		grace = time.Minute
	}
	rt := &retirement{f: cleanup}
	time.AfterFunc(grace, rt.run)
	pending := g.retired[:0]
	for _, p := range g.retired {
		if !p.done.Load() {
			pending = append(pending, p)
		}
	}
	g.retired = append(pending, rt)
}

// retirement is the cleanup of a replaced configuration; it runs once, after a grace period
// or at Close, whichever comes first.
type retirement struct {
	once sync.Once
	done atomic.Bool
	f    func()
}

func (r *retirement) run() {
	r.once.Do(func() {
		r.f()
		r.done.Store(true)
	})
}

// Close flushes the access log and releases connections and the issuer client. Serve no
// more requests after Close.
func (g *Gateway) Close() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	for _, r := range g.retired {
		r.run()
	}
	st := g.state.Load()
	for _, tr := range st.transports {
		tr.CloseIdleConnections()
	}
	if st.checker != nil {
		st.checker.Close()
	}
	if g.access != nil {
		g.access.close()
	}
	return nil
}

// Server returns the *http.Server of the gateway's listener: the configured timeouts and
// header limit, HTTP/2 with a stream limit, no built-in "OPTIONS *" answer, and a handler
// that refuses HTTP/1.x requests whose framing the connection's validator flagged. Serve it
// on Listener(ln) only: its TLSConfig is nil because the listener performs the TLS
// handshake (with client certificates requested when gateway.tls.client_ca is set), so
// web.Serve does not wrap the listener again. An HTTP/1.x request that did not come through
// Listener is refused with 500 rather than served unchecked.
func (g *Gateway) Server() (*http.Server, error) {
	l := g.state.Load().cfg.Gateway.Limits
	srv := web.NewServer(web.ServerOptions{
		Addr:    g.state.Load().cfg.Gateway.Listen,
		Handler: http.HandlerFunc(g.serveEdge),
		Timeouts: web.Timeouts{
			ReadHeader: l.ReadHeaderTimeout,
			Read:       l.ReadTimeout,
			Write:      l.WriteTimeout,
			Idle:       l.IdleTimeout,
		},
		MaxHeaderBytes: int(l.MaxHeaderBytes),
		Logger:         g.log,
	})
	streams := l.MaxConcurrentStreams
	if streams <= 0 {
		streams = 100
	}
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: streams}
	srv.DisableGeneralOptionsHandler = true // "OPTIONS *" reaches the gateway, which refuses it
	srv.ConnContext = connContext
	return srv, nil
}

// builder compiles one configuration.
type builder struct {
	g             *Gateway
	cfg           *config.Config
	checker       *tokencheck.Checker
	newChecker    bool
	verifiers     map[string]*tokencheck.JWTVerifier
	transports    map[string]*http.Transport
	oldTransports map[string]*http.Transport
	digests       map[string]string
}

func (g *Gateway) build(cfg *config.Config, old *state) (st *state, err error) {
	if cfg == nil || cfg.Gateway == nil {
		return nil, errors.New("gateway: the configuration has no gateway section")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: invalid configuration:\n%w", err)
	}
	gw := cfg.Gateway
	b := &builder{g: g, cfg: cfg, transports: map[string]*http.Transport{}, digests: map[string]string{}, verifiers: map[string]*tokencheck.JWTVerifier{}}
	if old != nil {
		b.oldTransports = old.transports
	}
	defer func() {
		if err == nil {
			return
		}
		if b.newChecker {
			b.checker.Close()
		}
		for k, tr := range b.transports {
			if b.oldTransports[k] != tr {
				tr.CloseIdleConnections()
			}
		}
	}()
	st = &state{cfg: cfg, transports: b.transports}
	if gw.UsesAuth("oauth") || gw.UsesAuth("jwt") {
		key, secret, err := b.authKey()
		if err != nil {
			return nil, err
		}
		st.authKey = key
		if old != nil && old.checker != nil && old.authKey == key {
			b.checker = old.checker
			for k, v := range old.verifiers {
				b.verifiers[k] = v
			}
		} else if b.checker, err = b.buildChecker(secret); err != nil {
			return nil, err
		} else {
			b.newChecker = true
		}
	}
	st.checker = b.checker
	st.verifiers = b.verifiers

	var errs []error
	for i := range gw.Routes {
		rt, err := b.compileRoute(&gw.Routes[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.routes = append(st.routes, rt)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if st.table, err = newTable(st.routes); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if st.trusted, err = web.ParsePrefixes(gw.TrustedProxies); err != nil {
		return nil, fmt.Errorf("gateway: trusted_proxies: %w", err)
	}
	if err := b.compileAbuse(st); err != nil {
		return nil, err
	}
	st.forwardID = gw.ForwardsRequestID()
	st.strip = map[string]bool{}
	for _, h := range alwaysStripped {
		st.strip[h] = true
	}
	for _, h := range gw.IdentityHeaders {
		st.strip[http.CanonicalHeaderKey(h)] = true
	}
	return st, nil
}

// alwaysStripped are request headers never forwarded as the client sent them: credentials
// (replaced by the route's own), the request id (ours), and headers that some servers and
// frameworks believe about the client or the original URL.
var alwaysStripped = []string{
	"Authorization", "X-Request-Id", "X-Real-Ip", "X-Client-Ip", "True-Client-Ip",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Server",
	"X-Forwarded-Scheme", "X-Original-Forwarded-For", "X-Original-Url", "X-Original-Uri",
	"X-Rewrite-Url", "X-Cluster-Client-Ip", "Client-Ip", "Cf-Connecting-Ip", "Fastly-Client-Ip",
}

// authKey identifies the settings of the token checker, so that a reload that does not change
// them keeps its warm cache.
func (b *builder) authKey() (key, secret string, err error) {
	gw := b.cfg.Gateway
	if gw.UsesAuth("oauth") {
		if secret, err = b.cfg.IntrospectionSecret(); err != nil {
			return "", "", fmt.Errorf("gateway: %w", err)
		}
	}
	sum := sha256.Sum256([]byte(secret))
	in := gw.Introspection
	key = strings.Join([]string{
		gw.Issuer, b.fileDigest(gw.IssuerCA), in.ClientID, hex.EncodeToString(sum[:]),
		in.RevocationBound.String(), in.CacheMaxTTL.String(), in.NegativeTTL.String(), strconv.Itoa(in.CacheSize),
		strings.Join(gw.JWT.Algorithms, ","), strconv.Itoa(gw.JWT.CacheSize),
	}, "\x00")
	return key, secret, nil
}

func (b *builder) buildChecker(secret string) (*tokencheck.Checker, error) {
	gw := b.cfg.Gateway
	client := b.g.opts.HTTPClient
	if client == nil {
		ca := ""
		if gw.IssuerCA != "" {
			ca = b.cfg.Path(gw.IssuerCA)
		}
		tlsCfg, err := web.ClientTLS(ca)
		if err != nil {
			return nil, fmt.Errorf("gateway: issuer_ca: %w", err)
		}
		client = &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig:     tlsCfg,
				ForceAttemptHTTP2:   true,
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: 5 * time.Second,
			},
		}
	}
	cfg := tokencheck.Config{
		Issuer:            gw.Issuer,
		HTTPClient:        client,
		InsecureAllowHTTP: strings.HasPrefix(gw.Issuer, "http://"), // validation allowed it only for an insecure issuer in the same file
		Algorithms:        gw.JWT.Algorithms,
		Cache: tokencheck.CacheConfig{
			Size:            gw.Introspection.CacheSize,
			MaxTTL:          gw.Introspection.CacheMaxTTL,
			RevocationBound: gw.Introspection.RevocationBound,
			NegativeTTL:     gw.Introspection.NegativeTTL,
		},
		JWTCacheSize: gw.JWT.CacheSize,
		Bus:          b.g.opts.Events,
		Shared:       b.g.opts.SharedCache,
		Metrics:      b.g.tcMetrics,
		Logger:       b.g.opts.Logger,
		Now:          b.g.opts.Now,
	}
	if gw.UsesAuth("oauth") {
		cfg.ClientID = gw.Introspection.ClientID
		cfg.ClientSecret = secret
	}
	c, err := tokencheck.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return c, nil
}

// jwtVerifier returns the verifier for an audience list, shared by routes that require the
// same audiences (and so sharing its cache).
func (b *builder) jwtVerifier(auds []string) (*tokencheck.JWTVerifier, error) {
	key := strings.Join(auds, "\x00")
	if v, ok := b.verifiers[key]; ok {
		return v, nil
	}
	v, err := b.checker.NewJWTVerifier(auds)
	if err != nil {
		return nil, err
	}
	b.verifiers[key] = v
	return v, nil
}

// fileDigest returns a digest of a configured file's contents ("" for no file), so changed
// certificates are noticed on reload.
func (b *builder) fileDigest(name string) string {
	if name == "" {
		return ""
	}
	p := b.cfg.Path(name)
	if d, ok := b.digests[p]; ok {
		return d
	}
	data, err := os.ReadFile(p)
	d := p + ":unreadable"
	if err == nil {
		sum := sha256.Sum256(data)
		d = p + ":" + hex.EncodeToString(sum[:])
	}
	b.digests[p] = d
	return d
}
