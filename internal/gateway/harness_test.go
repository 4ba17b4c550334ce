package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/tokencheck"
	"github.com/portcullis/portcullis/internal/tokencheck/tokenchecktest"
	"github.com/portcullis/portcullis/jwtverify"
)

// clock is a settable time source shared by the stand-in issuer and the gateway.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// seenRequest is what the upstream received.
type seenRequest struct {
	Method, Path, Query string
	Header              http.Header
	Body                []byte
	Claims              *jwtverify.Claims // the verified bearer JWT, if one came
	VerifyErr           error
}

// syncBuffer is a goroutine-safe bytes.Buffer for the access log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t       *testing.T
	dir     string
	ca      *testCA
	is      *tokenchecktest.Issuer
	clk     *clock
	bus     events.Bus
	up      *httptest.Server
	seen    chan seenRequest
	handler atomic.Pointer[http.HandlerFunc] // overrides the upstream's answer
	cfg     *config.Config
	gw      *Gateway
	srv     *http.Server
	addr    string
	url     string
	client  *http.Client
	reg     *prometheus.Registry
	log     *syncBuffer
	shared  tokencheck.SharedStore
	limiter ratelimit.Limiter // nil: the gateway's own in memory
	det     *abuse.Detector   // nil: the gateway's own in memory
	audit   *auditLog
}

type harnessOpt func(*harness)

func withBus(b events.Bus) harnessOpt { return func(h *harness) { h.bus = b } }

var withConfig = func(f func(*config.Config, *harness)) harnessOpt {
	return func(h *harness) { f(h.cfg, h) }
}

// newHarness starts a stand-in issuer, a TLS upstream and the gateway in front of it, all on
// loopback with a per-test CA.
func newHarness(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clk: newClock(), seen: make(chan seenRequest, 256), reg: prometheus.NewRegistry(), log: &syncBuffer{}, audit: &auditLog{}}
	h.bus = &events.Memory{}
	h.ca = newTestCA(t, h.dir)
	h.is = tokenchecktest.New(t, tokenchecktest.WithNow(h.clk.Now))
	h.startUpstream()

	gwCert, gwCertFile, gwKeyFile := h.ca.issue("gateway", []net.IP{net.IPv4(127, 0, 0, 1)}, nil, false)
	_ = gwCert
	secretFile := filepath.Join(h.dir, "gateway.secret")
	if err := os.WriteFile(secretFile, []byte(tokenchecktest.GatewayClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	up := config.Upstream{URL: h.up.URL, CA: h.ca.file}
	h.cfg = &config.Config{
		Dir: h.dir,
		Gateway: &config.Gateway{
			Listen:          "127.0.0.1:0",
			TLS:             config.TLS{Cert: gwCertFile, Key: gwKeyFile, ClientCA: h.ca.file},
			Issuer:          h.is.URL,
			IssuerCA:        h.is.CAFile(),
			IdentityHeaders: []string{"X-User", "X-Customer-Id"},
			Introspection:   config.GatewayIntrospection{ClientID: tokenchecktest.GatewayClientID, SecretFile: secretFile},
			JWT:             config.GatewayJWT{Audience: []string{"reports"}},
			Routes: []config.Route{
				{
					Name: "orders", Match: config.RouteMatch{PathPrefix: "/api/orders", Methods: []string{"GET", "POST"}},
					Upstream: up,
					Auth:     config.RouteAuth{Method: "oauth", Scopes: []string{"orders:read"}, MethodScopes: map[string][]string{"POST": {"orders:write"}}},
					CORS:     &config.CORS{AllowOrigins: []string{"https://app.example"}, AllowCredentials: true, ExposeHeaders: []string{"X-Upstream"}, MaxAge: time.Minute},
				},
				{Name: "whoami", Match: config.RouteMatch{Path: "/api/whoami"}, Upstream: up, Auth: config.RouteAuth{Method: "oauth"}},
				{
					Name: "customers", Match: config.RouteMatch{Path: "/api/customers/{id}", Methods: []string{"GET"}}, Upstream: up,
					Auth:     config.RouteAuth{Method: "oauth"},
					Policies: []string{`claims.customer_id == request.params.id`},
				},
				{Name: "reports", Match: config.RouteMatch{PathPrefix: "/internal/reports"}, Upstream: up, Auth: config.RouteAuth{Method: "jwt", Scopes: []string{"reports:read"}}},
				{Name: "svc", Match: config.RouteMatch{PathPrefix: "/svc"}, Upstream: up, Auth: config.RouteAuth{Method: "mtls", AllowedSubjects: []string{"spiffe://test/reporter"}}},
				{Name: "public", Match: config.RouteMatch{PathPrefix: "/public"}, Upstream: up, Auth: config.RouteAuth{Method: "public"}, MaxBody: 1024},
				{
					Name: "things", Match: config.RouteMatch{PathPrefix: "/v1/things"},
					Upstream: config.Upstream{URL: h.up.URL + "/base", CA: h.ca.file, StripPrefix: "/v1", AddPrefix: "/internal-api"},
					Auth:     config.RouteAuth{Method: "public"},
				},
			},
		},
	}
	for _, o := range opts {
		o(h)
	}
	h.cfg.Default()
	h.start()
	return h
}

func (h *harness) startUpstream() {
	_, certFile, keyFile := h.ca.issue("upstream", []net.IP{net.IPv4(127, 0, 0, 1)}, nil, false)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		h.t.Fatal(err)
	}
	verifier, err := jwtverify.New(jwtverify.Config{
		Issuer: h.is.URL, Audiences: []string{h.is.Audience, "reports"}, Keys: h.is.PublicKeys(), Now: h.clk.Now,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.up = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s := seenRequest{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			s.Claims, s.VerifyErr = verifier.Verify(r.Context(), strings.TrimPrefix(a, "Bearer "))
		}
		select {
		case h.seen <- s:
		default:
		}
		if f := h.handler.Load(); f != nil {
			(*f)(w, r)
			return
		}
		w.Header().Set("Server", "upstream/1.0")
		w.Header().Set("X-Powered-By", "PHP/5.6")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("X-Upstream", "yes")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Content-Type", "application/json")
		sub := ""
		if s.Claims != nil {
			sub = s.Claims.Subject
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"path": s.Path, "sub": sub, "body_bytes": len(body)})
	}))
	h.up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	h.up.EnableHTTP2 = true
	h.up.StartTLS()
	h.t.Cleanup(h.up.Close)
}

func (h *harness) start() {
	t := h.t
	gw, err := New(t.Context(), Options{
		Config: h.cfg, Events: h.bus, Metrics: h.reg, AccessLog: h.log, Now: h.clk.Now, SharedCache: h.shared,
		Limiter: h.limiter, Abuse: h.det, Audit: h.audit,
	})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	h.gw = gw
	srv, err := gw.Server()
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.url = "https://" + h.addr
	go func() { _ = srv.Serve(gw.Listener(ln)) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = gw.Close()
	})
	h.client = h.newClient(nil)
}

// newClient returns a client trusting the test CA, presenting cert when given.
func (h *harness) newClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: h.ca.pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// h1client speaks only HTTP/1.1 (to send hop-by-hop headers HTTP/2 forbids).
func (h *harness) h1client() *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.ca.pool}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// do sends a request with an optional bearer token and returns the response and its body.
func (h *harness) do(method, path, token string, hdr http.Header, body io.Reader) (*http.Response, []byte) {
	h.t.Helper()
	return h.doWith(h.client, method, path, token, hdr, body)
}

func (h *harness) doWith(c *http.Client, method, path, token string, hdr http.Header, body io.Reader) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.url+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, b
}

// lastSeen returns the upstream's last request, or fails.
func (h *harness) lastSeen() seenRequest {
	h.t.Helper()
	select {
	case s := <-h.seen:
		return s
	case <-time.After(5 * time.Second):
		h.t.Fatal("the upstream saw no request")
	}
	return seenRequest{}
}

// noneSeen fails if the upstream received a request.
func (h *harness) noneSeen() {
	h.t.Helper()
	select {
	case s := <-h.seen:
		h.t.Fatalf("the upstream saw %s %s", s.Method, s.Path)
	default:
	}
}

// opaque mints an opaque token with scopes for alice.
func (h *harness) opaque(scopes ...string) string {
	return h.is.Opaque(tokenchecktest.Grant{Subject: "alice", ClientID: "orders-app", Scopes: scopes, Claims: map[string]any{"customer_id": "c-42"}})
}

// rawRequest writes raw bytes over a fresh TLS (HTTP/1.1) connection and returns the status
// code of the first response (0 when the connection closed without one).
func (h *harness) rawRequest(raw string) (int, string) {
	h.t.Helper()
	conn, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.ca.pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// auditLog keeps the audit events the gateway records.
type auditLog struct {
	mu     sync.Mutex
	events []store.AuditEvent
}

func (a *auditLog) Record(_ context.Context, e store.AuditEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
}

// of returns the events of one type.
func (a *auditLog) of(typ string) []store.AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []store.AuditEvent
	for _, e := range a.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// metric returns the value of one counter series (name{labels} as labels() prints it), or 0.
func (h *harness) metric(series string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			if mf.GetName()+labels(m) == series && m.Counter != nil {
				return m.Counter.GetValue()
			}
		}
	}
	return 0
}
