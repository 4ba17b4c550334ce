package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/ratelimit"
	rlredis "github.com/portcullis/portcullis/internal/ratelimit/redis"
	"github.com/portcullis/portcullis/internal/tokencheck/tokenchecktest"
)

// stubTransport answers every round trip at once with a small JSON body: the benchmarks
// measure the gateway's own work, not a network.
type stubTransport struct{}

func (stubTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	return &http.Response{
		StatusCode:    200,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}, "Server": {"stub"}},
		Body:          io.NopCloser(strings.NewReader(`{"ok":true}`)),
		ContentLength: 11,
		Request:       r,
	}, nil
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(c int)           { w.code = c }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

func benchGateway(b *testing.B) (*Gateway, *tokenchecktest.Issuer) {
	b.Helper()
	return benchGatewayWith(b, nil)
}

// benchGatewayWith is benchGateway with the config changed by mutate (when not nil) before
// the gateway is built.
func benchGatewayWith(b testing.TB, mutate func(*config.Config)) (*Gateway, *tokenchecktest.Issuer) {
	b.Helper()
	return benchGatewayWithOptions(b, mutate, nil)
}

// benchGatewayWithOptions also changes the gateway's options (when not nil).
func benchGatewayWithOptions(b testing.TB, mutate func(*config.Config), opts func(*Options)) (*Gateway, *tokenchecktest.Issuer) {
	b.Helper()
	is := tokenchecktest.New(b)
	dir := b.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(tokenchecktest.GatewayClientSecret), 0o600); err != nil {
		b.Fatal(err)
	}
	up := config.Upstream{URL: "https://upstream.invalid"}
	cfg := &config.Config{Dir: dir, Gateway: &config.Gateway{
		Listen: "127.0.0.1:0", InsecureHTTP: true, Issuer: is.URL, IssuerCA: is.CAFile(),
		Introspection: config.GatewayIntrospection{ClientID: tokenchecktest.GatewayClientID, SecretFile: secret},
		JWT:           config.GatewayJWT{Audience: []string{"reports"}},
		Routes: []config.Route{
			{Name: "orders", Match: config.RouteMatch{PathPrefix: "/api/orders", Methods: []string{"GET", "POST"}}, Upstream: up,
				Auth: config.RouteAuth{Method: "oauth", Scopes: []string{"orders:read"}, MethodScopes: map[string][]string{"POST": {"orders:write"}}}},
			{Name: "reports", Match: config.RouteMatch{PathPrefix: "/internal/reports"}, Upstream: up, Auth: config.RouteAuth{Method: "jwt", Scopes: []string{"reports:read"}}},
			{Name: "health", Match: config.RouteMatch{Path: "/healthz"}, Upstream: up, Auth: config.RouteAuth{Method: "public"}},
			{Name: "a", Match: config.RouteMatch{PathPrefix: "/a"}, Upstream: up, Auth: config.RouteAuth{Method: "public"}},
			{Name: "b", Match: config.RouteMatch{Path: "/b/{id}/c"}, Upstream: up, Auth: config.RouteAuth{Method: "public"}},
		},
	}}
	cfg.Default()
	if mutate != nil {
		mutate(cfg)
	}
	o := Options{Config: cfg, Events: &events.Memory{}, AccessLog: io.Discard}
	if opts != nil {
		opts(&o)
	}
	g, err := New(b.Context(), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = g.Close() })
	for _, rt := range g.state.Load().routes {
		rt.proxy.Transport = stubTransport{}
	}
	return g, is
}

func benchServe(b *testing.B, h http.Handler, req *http.Request) {
	b.Helper()
	w := &discardWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	if w.code != 0 && w.code != 200 {
		b.Fatalf("status %d", w.code)
	}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, req)
	}
	if w.code != 0 && w.code != 200 {
		b.Fatalf("status %d", w.code)
	}
}

// BenchmarkBareProxy is the reference: httputil.ReverseProxy alone, same stub upstream.
func BenchmarkBareProxy(b *testing.B) {
	target, _ := url.Parse("https://upstream.invalid")
	p := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport:  stubTransport{},
		BufferPool: proxyBuffers,
	}
	req := httptest.NewRequest("GET", "/api/orders/7", nil)
	benchServe(b, p, req)
}

// BenchmarkGatewayOAuth is an oauth route with a warm introspection cache: path
// normalisation, match, cache hit, scopes, rewrite, proxy, access log and metrics.
func BenchmarkGatewayOAuth(b *testing.B) {
	g, is := benchGateway(b)
	tok := is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app", Scopes: []string{"orders:read"}})
	req := httptest.NewRequest("GET", "/api/orders/7", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	benchServe(b, g, req)
}

// BenchmarkGatewayOAuthLimit is BenchmarkGatewayOAuth with a per-client and a per-IP limit
// on the route, high enough never to fire, decided in memory: compare the two for the cost
// of the limits stage.
func BenchmarkGatewayOAuthLimit(b *testing.B) {
	g, is := benchGatewayWith(b, func(c *config.Config) {
		c.Gateway.Routes[0].RateLimit = limitBench
	})
	tok := is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app", Scopes: []string{"orders:read"}})
	req := httptest.NewRequest("GET", "/api/orders/7", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	benchServe(b, g, req)
}

// benchServeParallel is benchServe from many goroutines at once (for limiters whose cost is
// a round trip: throughput, not latency).
func benchServeParallel(b *testing.B, h http.Handler, req *http.Request) {
	b.Helper()
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		r := req.Clone(req.Context())
		for pb.Next() {
			clear(w.h)
			w.code = 0
			h.ServeHTTP(w, r)
			if w.code != 0 && w.code != 200 {
				b.Errorf("status %d", w.code)
				return
			}
		}
	})
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "req/s")
	}
}

// limitBench are the limits of the limited benchmarks: a per-client and a per-IP limit,
// high enough never to fire.
var limitBench = config.RateLimits{
	{Per: "client", Rate: "1000000/s", Burst: 1000000},
	{Per: "ip", Rate: "1000000/s", Burst: 1000000},
}

// BenchmarkGatewayOAuthParallel, ...LimitParallel and ...LimitRedisParallel compare the
// throughput of the oauth route without limits, with them in memory, and with them in
// Redis (PORTCULLIS_TEST_REDIS; a ratelimit.Failover as the app builds it).
func BenchmarkGatewayOAuthParallel(b *testing.B) {
	benchOAuthParallel(b, nil, nil)
}

func BenchmarkGatewayOAuthLimitParallel(b *testing.B) {
	benchOAuthParallel(b, limitBench, nil)
}

func BenchmarkGatewayOAuthLimitRedisParallel(b *testing.B) {
	benchOAuthParallel(b, limitBench, benchRedisLimiter(b))
}

// BenchmarkGatewayOAuthClientLimitRedisParallel has the per-client limit only: one Redis
// round trip per request instead of two (per-ip limits are decided before authentication,
// per-client ones after it).
func BenchmarkGatewayOAuthClientLimitRedisParallel(b *testing.B) {
	benchOAuthParallel(b, limitBench[:1], benchRedisLimiter(b))
}

func benchRedisLimiter(b *testing.B) ratelimit.Limiter {
	url := os.Getenv("PORTCULLIS_TEST_REDIS")
	if url == "" {
		b.Skip("PORTCULLIS_TEST_REDIS is not set")
	}
	c, err := rlredis.NewClient(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	health, err := ratelimit.NewHealth(func(ctx context.Context) error { return c.Ping(ctx).Err() }, ratelimit.HealthOptions{})
	if err != nil {
		b.Fatal(err)
	}
	prefix := fmt.Sprintf("portcullis-bench:%d:", time.Now().UnixNano())
	b.Cleanup(func() {
		ctx := context.Background()
		for _, k := range c.Keys(ctx, prefix+"*").Val() {
			c.Del(ctx, k)
		}
	})
	lim, err := ratelimit.NewFailover(rlredis.NewLimiter(c, rlredis.Options{Prefix: prefix}), nil, ratelimit.FailClosed, health, nil)
	if err != nil {
		b.Fatal(err)
	}
	return lim
}

func benchOAuthParallel(b *testing.B, limits config.RateLimits, lim ratelimit.Limiter) {
	g, is := benchGatewayWithOptions(b, func(c *config.Config) { c.Gateway.Routes[0].RateLimit = limits }, func(o *Options) { o.Limiter = lim })
	tok := is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "app", Scopes: []string{"orders:read"}})
	req := httptest.NewRequest("GET", "/api/orders/7", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	benchServeParallel(b, g, req)
}

// BenchmarkGatewayJWT is a jwt route with the verified token cached by hash.
func BenchmarkGatewayJWT(b *testing.B) {
	g, is := benchGateway(b)
	tok := is.JWT(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Scopes: []string{"reports:read"}, Audience: []string{"reports"}})
	req := httptest.NewRequest("GET", "/internal/reports/1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	benchServe(b, g, req)
}

// BenchmarkGatewayPublic is a public route: the gateway's fixed cost without a token.
func BenchmarkGatewayPublic(b *testing.B) {
	g, _ := benchGateway(b)
	benchServe(b, g, httptest.NewRequest("GET", "/healthz", nil))
}

func BenchmarkNormalizePath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NormalizePath("/api/orders/12345/items"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	tbl := compileTestRoutes(b, matchRoutes)
	b.ReportAllocs()
	for b.Loop() {
		if g := tbl.lookup("x", "/api/orders/7/items/3"); g == nil {
			b.Fatal("no match")
		}
	}
}
