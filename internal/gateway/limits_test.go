package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portcullis/portcullis/internal/abuse"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/ratelimit"
	"github.com/portcullis/portcullis/internal/tokencheck/tokenchecktest"
)

// routeNamed returns the harness config's route called name.
func routeNamed(t *testing.T, c *config.Config, name string) *config.Route {
	t.Helper()
	for i := range c.Gateway.Routes {
		if c.Gateway.Routes[i].Name == name {
			return &c.Gateway.Routes[i]
		}
	}
	t.Fatalf("no route %q", name)
	return nil
}

func withLimiter(l ratelimit.Limiter) harnessOpt { return func(h *harness) { h.limiter = l } }

func withLimits(route string, ls ...config.RateLimit) harnessOpt {
	return func(h *harness) { routeNamed(h.t, h.cfg, route).RateLimit = ls }
}

// tokenFor mints an opaque token for another client.
func (h *harness) tokenFor(client string, scopes ...string) string {
	return h.is.Opaque(tokenchecktest.Grant{Subject: "user-of-" + client, ClientID: client, Scopes: scopes})
}

// status sends a request and returns its status, headers and body.
func (h *harness) status(path, token string, hdr http.Header) (int, http.Header, []byte) {
	h.t.Helper()
	resp, body := h.do("GET", path, token, hdr, nil)
	return resp.StatusCode, resp.Header, body
}

func TestRateLimitFiresWithHeaders(t *testing.T) {
	h := newHarness(t, withLimits("orders", config.RateLimit{Per: "client", Rate: "5/m", Burst: 3}))
	// The upstream sends RateLimit headers of its own: they never reach the client.
	f := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("RateLimit", `"upstream";r=99;t=1`)
		w.Header().Set("RateLimit-Policy", `"upstream";q=99;w=1`)
		w.Write([]byte(`{}`))
	})
	h.handler.Store(&f)
	tok := h.opaque("orders:read")
	for i, wantR := range []int{2, 1, 0} {
		code, hdr, body := h.status("/api/orders", tok, nil)
		if code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, code, body)
		}
		if got := hdr.Values("RateLimit-Policy"); !cmp.Equal(got, []string{`"orders.client";q=5;w=60`}) {
			t.Errorf("request %d: RateLimit-Policy %q", i+1, got)
		}
		// GCRA: each request pushes the bucket's refill 12s further out.
		if got, want := hdr.Values("RateLimit"), []string{fmt.Sprintf(`"orders.client";r=%d;t=%d`, wantR, 12*(i+1))}; !cmp.Equal(got, want) {
			t.Errorf("request %d: RateLimit %q, want %q", i+1, got, want)
		}
		if hdr.Get("Retry-After") != "" {
			t.Errorf("request %d: Retry-After on a 200", i+1)
		}
		h.lastSeen()
	}
	code, hdr, body := h.status("/api/orders", tok, nil)
	if code != http.StatusTooManyRequests {
		t.Fatalf("4th request: %d %s", code, body)
	}
	resp := &http.Response{StatusCode: code, Header: hdr}
	p := decodeProblem(t, resp, body)
	if p.Status != 429 || strings.Contains(string(body), "orders-app") || strings.Contains(string(body), "orders.client") {
		t.Errorf("429 problem: %s", body)
	}
	if hdr.Get("Retry-After") != "12" || hdr.Get("RateLimit") != `"orders.client";r=0;t=36` {
		t.Errorf("429 headers: Retry-After %q RateLimit %q", hdr.Get("Retry-After"), hdr.Get("RateLimit"))
	}
	h.noneSeen()
	// Another client has its own budget.
	if code, _, body := h.status("/api/orders", h.tokenFor("globex", "orders:read"), nil); code != http.StatusOK {
		t.Fatalf("another client: %d %s", code, body)
	}
	h.lastSeen()
	// A flood of 429s is one audit event, and every one a metric.
	for range 5 {
		if code, _, _ := h.status("/api/orders", tok, nil); code != 429 {
			t.Fatalf("flood: %d", code)
		}
	}
	evs := h.audit.of("ratelimit.denied")
	if len(evs) != 1 {
		t.Fatalf("%d ratelimit.denied events for one client's flood, want 1: %+v", len(evs), evs)
	}
	e := evs[0]
	if e.ClientID != "orders-app" || e.RemoteIP != "127.0.0.1" || e.Reason != "orders.client" || e.Details["route"] != "orders" || e.Outcome != "denied" {
		t.Errorf("audit event %+v", e)
	}
	for series, want := range map[string]float64{
		`portcullis_gateway_limit_refusals_total{reason="rate_limited",route="orders"}`: 6,
		`portcullis_ratelimit_decisions_total{policy="orders.client",result="denied"}`:  6,
		`portcullis_ratelimit_decisions_total{policy="orders.client",result="allowed"}`: 4,
		`portcullis_gateway_audit_suppressed_total`:                                     5,
	} {
		if got := h.metric(series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// After Retry-After, one more passes.
	h.clk.Advance(12 * time.Second)
	if code, _, body := h.status("/api/orders", tok, nil); code != http.StatusOK {
		t.Fatalf("after Retry-After: %d %s", code, body)
	}
	// A reload keeps the counts: the limit's state lives in the limiter, not the config.
	if err := h.gw.Reload(h.cfg); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := h.status("/api/orders", tok, nil); code != http.StatusTooManyRequests {
		t.Errorf("after a reload: %d, want 429", code)
	}
}

func TestQuotaRollsOver(t *testing.T) {
	h := newHarness(t, withLimits("orders",
		config.RateLimit{Per: "client", Quota: "3/day"},
		config.RateLimit{Per: "client", Rate: "100/s"}))
	h.clk.ns.Store(time.Date(2026, 3, 14, 23, 59, 58, 0, time.UTC).UnixNano())
	tok := h.opaque("orders:read")
	for i := range 3 {
		code, hdr, body := h.status("/api/orders", tok, nil)
		if code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i+1, code, body)
		}
		if !strings.Contains(hdr.Get("RateLimit"), fmt.Sprintf(`"orders.client.day";r=%d;t=2`, 2-i)) {
			t.Errorf("request %d: RateLimit %q", i+1, hdr.Get("RateLimit"))
		}
		if want := `"orders.client.day";q=3;w=86400, "orders.client";q=100;w=1`; hdr.Get("RateLimit-Policy") != want {
			t.Errorf("RateLimit-Policy %q, want %q", hdr.Get("RateLimit-Policy"), want)
		}
	}
	code, hdr, _ := h.status("/api/orders", tok, nil)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") != "2" {
		t.Fatalf("over the quota: %d, Retry-After %q", code, hdr.Get("Retry-After"))
	}
	// Refused requests do not eat into the quota or the rate: the next day has all of it.
	h.clk.Advance(2 * time.Second)
	tok = h.opaque("orders:read") // the old one was minted yesterday; tokens live 5 minutes here anyway
	code, hdr, body := h.status("/api/orders", tok, nil)
	if code != http.StatusOK || !strings.Contains(hdr.Get("RateLimit"), `"orders.client.day";r=2;t=86400`) {
		t.Fatalf("after midnight UTC: %d %q %s", code, hdr.Get("RateLimit"), body)
	}
}

// forbiddenBody is a 403 problem's whole body without its request id.
func forbiddenBody(t *testing.T, code int, hdr http.Header, body []byte) map[string]any {
	t.Helper()
	if code != http.StatusForbidden {
		t.Fatalf("status %d, want 403: %s", code, body)
	}
	decodeProblem(t, &http.Response{StatusCode: code, Header: hdr}, body)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "request_id")
	return m
}

func TestIPFilters(t *testing.T) {
	h := newHarness(t, withConfig(func(c *config.Config, h *harness) {
		c.Gateway.TrustedProxies = []string{"127.0.0.1"}
		c.Gateway.IPFilter = config.IPFilter{Deny: []string{"203.0.113.0/24", "2001:db8::/64"}}
		routeNamed(t, c, "public").IPFilter = config.IPFilter{Allow: []string{"10.0.0.0/8", "2001:db8::/32"}, Deny: []string{"10.9.0.0/16"}}
	}))
	pc, ph, pb := h.status("/api/customers/c-43", h.opaque(), nil)
	policyDenied := forbiddenBody(t, pc, ph, pb)
	tests := []struct {
		name, from, path string
		want             int
		reason           string
	}{
		{"global deny", "203.0.113.7", "/api/whoami", 403, reasonIPDenied},
		{"global deny, IPv6 /64", "2001:db8::beef", "/public/x", 403, reasonIPDenied},
		{"IPv4-mapped IPv6 is IPv4", "::ffff:203.0.113.9", "/api/whoami", 403, reasonIPDenied},
		{"outside the deny list", "198.51.100.1", "/api/whoami", 200, ""},
		{"route allow list", "10.1.2.3", "/public/x", 200, ""},
		{"route allow list, IPv6", "2001:db8:0:1::5", "/public/x", 200, ""},
		{"not in the route allow list", "198.51.100.1", "/public/x", 403, reasonIPNotAllowed},
		{"route deny wins over its allow", "10.9.1.1", "/public/x", 403, reasonIPDenied},
	}
	tok := h.opaque()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{"X-Forwarded-For": {tt.from}}
			code, rh, body := h.status(tt.path, tok, hdr)
			if code != tt.want {
				t.Fatalf("status %d, want %d: %s", code, tt.want, body)
			}
			if tt.want == 200 {
				h.lastSeen()
				return
			}
			h.noneSeen()
			if diff := cmp.Diff(policyDenied, forbiddenBody(t, code, rh, body)); diff != "" {
				t.Errorf("the 403 differs from any other 403 (-policy +filter):\n%s", diff)
			}
		})
	}
	if err := h.gw.Close(); err != nil { // flush the access log
		t.Fatal(err)
	}
	for _, tt := range tests {
		if tt.reason != "" && !strings.Contains(h.log.String(), `"reason":"`+tt.reason+`"`) {
			t.Errorf("no access line with reason %s", tt.reason)
		}
	}
	evs := h.audit.of("ip.blocked")
	if len(evs) != 5 {
		t.Errorf("%d ip.blocked events, want 5 (one per address and reason): %+v", len(evs), evs)
	}
	if got := h.metric(`portcullis_gateway_limit_refusals_total{reason="ip_deny_list",route="-"}`); got != 3 {
		t.Errorf("global deny refusals counted %v, want 3", got)
	}
}

// An untrusted peer cannot pick its own per-IP key with X-Forwarded-For; behind a trusted
// proxy, each client has its own, and an IPv6 client counts by its /64.
func TestPerIPLimitKeysOnTheRealPeer(t *testing.T) {
	limit := config.RateLimit{Per: "ip", Rate: "1/h", Burst: 2}
	t.Run("untrusted peer", func(t *testing.T) {
		h := newHarness(t, withLimits("public", limit))
		for i, want := range []int{200, 200, 429, 429} {
			hdr := http.Header{"X-Forwarded-For": {fmt.Sprintf("198.51.100.%d", i+1)}}
			if code, _, body := h.status("/public/x", "", hdr); code != want {
				t.Fatalf("request %d with a spoofed X-Forwarded-For: %d, want %d: %s", i+1, code, want, body)
			}
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		h := newHarness(t, withLimits("public", limit), withConfig(func(c *config.Config, h *harness) {
			c.Gateway.TrustedProxies = []string{"127.0.0.1"}
		}))
		for i, tt := range []struct {
			from string
			want int
		}{
			{"198.51.100.1", 200}, {"198.51.100.2", 200}, {"198.51.100.1", 200}, {"198.51.100.1", 429},
			{"2001:db8::1", 200}, {"2001:db8::2", 200}, {"2001:db8::3", 429}, {"2001:db8:0:1::1", 200},
		} {
			hdr := http.Header{"X-Forwarded-For": {tt.from}}
			if code, _, body := h.status("/public/x", "", hdr); code != tt.want {
				t.Fatalf("request %d from %s: %d, want %d: %s", i+1, tt.from, code, tt.want, body)
			}
		}
	})
}

// Per-IP limits apply before authentication: a flood of bad tokens is limited without
// asking the issuer about each.
func TestUnauthenticatedFloodIsLimited(t *testing.T) {
	h := newHarness(t, withLimits("orders", config.RateLimit{Per: "ip", Rate: "1/h", Burst: 3}, config.RateLimit{Per: "client", Rate: "100/s"}),
		withConfig(func(c *config.Config, _ *harness) { c.Gateway.Abuse.AuthFailures.Action = "off" }))
	before := h.is.Introspections()
	for i, want := range []int{401, 401, 401, 429, 429, 429} {
		code, hdr, body := h.status("/api/orders", fmt.Sprintf("bogus-%d", i), nil)
		if code != want {
			t.Fatalf("request %d: %d, want %d: %s", i+1, code, want, body)
		}
		if hdr.Get("RateLimit-Policy") != `"orders.ip";q=1;w=3600` {
			t.Errorf("request %d: RateLimit-Policy %q", i+1, hdr.Get("RateLimit-Policy"))
		}
	}
	if n := h.is.Introspections() - before; n != 3 {
		t.Errorf("%d introspections, want 3: the refused flood must not reach the issuer", n)
	}
}

func TestHeaderLimit(t *testing.T) {
	rec := &recordingLimiter{next: ratelimit.NewMemory(0)}
	h := newHarness(t, withLimits("public", config.RateLimit{Per: "header:X-Api-Key", Rate: "1/h", Burst: 2}), withLimiter(rec))
	send := func(key string) int {
		hdr := http.Header{}
		if key != "" {
			hdr.Set("X-Api-Key", key)
		}
		code, _, _ := h.status("/public/x", "", hdr)
		return code
	}
	for i, tt := range []struct {
		key  string
		want int
	}{{"key-A", 200}, {"key-A", 200}, {"key-A", 429}, {"key-B", 200}, {"", 200}, {"", 200}, {"", 429}} {
		if got := send(tt.key); got != tt.want {
			t.Fatalf("request %d with %q: %d, want %d", i+1, tt.key, got, tt.want)
		}
	}
	for _, k := range rec.keys() {
		if strings.Contains(k, "key-") {
			t.Errorf("the limiter saw the header value itself as a key: %q", k)
		}
	}
}

// recordingLimiter remembers the keys it was asked about.
type recordingLimiter struct {
	next ratelimit.Limiter
	mu   sync.Mutex
	seen []string
}

func (l *recordingLimiter) Allow(ctx context.Context, checks []ratelimit.Check, now time.Time) (ratelimit.Result, error) {
	l.mu.Lock()
	for _, c := range checks {
		l.seen = append(l.seen, c.Key)
	}
	l.mu.Unlock()
	return l.next.Allow(ctx, checks, now)
}

func (l *recordingLimiter) keys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen...)
}

func TestBruteForceBlocksTheAddress(t *testing.T) {
	h := newHarness(t, withConfig(func(c *config.Config, _ *harness) {
		c.Gateway.Abuse.AuthFailures = config.AbuseRule{Threshold: 3, Window: time.Minute, Action: "block", For: 15 * time.Minute}
	}))
	good := h.opaque("orders:read")
	t.Run("normal traffic does not fire", func(t *testing.T) {
		// Two failures a minute, for five minutes, between successes.
		for i := range 10 {
			if code, _, _ := h.status("/api/orders", "wrong-"+strconv.Itoa(i), nil); code != 401 {
				t.Fatalf("failure %d: %d", i, code)
			}
			if code, _, body := h.status("/api/orders", good, nil); code != 200 {
				t.Fatalf("success after failure %d: %d %s", i, code, body)
			}
			h.lastSeen()
			h.clk.Advance(31 * time.Second)
		}
		if n := len(h.audit.of("abuse.fired")); n != 0 {
			t.Fatalf("the detector fired %d times on normal traffic", n)
		}
	})
	h.clk.Advance(2 * time.Minute)
	t.Run("a scripted brute force is blocked", func(t *testing.T) {
		for i := range 3 {
			if code, _, _ := h.status("/api/orders", "guess-"+strconv.Itoa(i), nil); code != 401 {
				t.Fatalf("guess %d: %d", i, code)
			}
		}
		// Blocked now, even with a good token and on every route.
		for _, path := range []string{"/api/orders", "/public/x", "/nowhere"} {
			code, hdr, body := h.status(path, good, nil)
			forbiddenBody(t, code, hdr, body)
		}
		h.noneSeen()
		fired := h.audit.of("abuse.fired")
		if len(fired) != 1 || fired[0].Reason != ruleAuthFailures || fired[0].Details["action"] != "block" || fired[0].RemoteIP != "127.0.0.1" {
			t.Fatalf("abuse.fired events: %+v", fired)
		}
		if got := h.metric(`portcullis_abuse_fired_total{action="block",rule="gateway_auth_failures",surface="gateway"}`); got != 1 {
			t.Errorf("portcullis_abuse_fired_total = %v", got)
		}
		if len(h.audit.of("ip.blocked")) != 1 {
			t.Errorf("ip.blocked events: %+v", h.audit.of("ip.blocked"))
		}
		b, ok, err := h.gw.det.Blocks().Blocked(t.Context(), abuse.IPSubject(netip.MustParseAddr("127.0.0.1")), h.clk.Now())
		if err != nil || !ok || b.Reason != ruleAuthFailures {
			t.Errorf("the block list holds %+v %v %v", b, ok, err)
		}
	})
	t.Run("the block expires", func(t *testing.T) {
		h.clk.Advance(15 * time.Minute)
		good = h.opaque("orders:read") // tokens live 5 minutes
		if code, _, body := h.status("/api/orders", good, nil); code != 200 {
			t.Fatalf("after the block: %d %s", code, body)
		}
		h.lastSeen()
	})
	t.Run("a block imposed elsewhere holds within a second", func(t *testing.T) {
		now := h.clk.Now()
		if _, err := h.gw.det.Blocks().Block(t.Context(), abuse.IPSubject(netip.MustParseAddr("127.0.0.1")), now.Add(time.Hour), "operator", now); err != nil {
			t.Fatal(err)
		}
		h.clk.Advance(statusTTL)
		code, hdr, body := h.status("/api/orders", good, nil)
		forbiddenBody(t, code, hdr, body)
		if err := h.gw.det.Blocks().Unblock(t.Context(), abuse.IPSubject(netip.MustParseAddr("127.0.0.1"))); err != nil {
			t.Fatal(err)
		}
		h.clk.Advance(statusTTL)
		if code, _, _ := h.status("/api/orders", good, nil); code != 200 {
			t.Errorf("after the unblock: %d", code)
		}
		h.lastSeen()
	})
}

func TestEnumerationDetectors(t *testing.T) {
	h := newHarness(t, withConfig(func(c *config.Config, _ *harness) {
		c.Gateway.Abuse.EnumerationIDs = config.AbuseRule{Threshold: 10, Window: time.Minute, Action: "throttle", For: 10 * time.Minute}
		c.Gateway.Abuse.EnumerationErrors = config.AbuseRule{Threshold: 5, Window: time.Minute, Action: "block", For: 10 * time.Minute}
		c.Gateway.Abuse.ThrottleRate = "1/m"
		up := routeNamed(t, c, "orders").Upstream
		c.Gateway.Routes = append(c.Gateway.Routes, config.Route{
			Name: "items", Match: config.RouteMatch{Path: "/api/items/{id}", Methods: []string{"GET"}}, Upstream: up,
			Auth: config.RouteAuth{Method: "oauth"}, Enumeration: &config.Enumeration{IDParam: "id"},
		})
	}))
	// Items above 100 do not exist.
	f := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/api/items/")); n > 100 {
			http.Error(w, "{}", http.StatusNotFound)
			return
		}
		w.Write([]byte(`{}`))
	})
	h.handler.Store(&f)
	get := func(tok string, id int) int {
		code, _, _ := h.status("/api/items/"+strconv.Itoa(id), tok, nil)
		return code
	}
	t.Run("normal traffic does not fire", func(t *testing.T) {
		tok := h.tokenFor("normal-app")
		for i := range 60 {
			if code := get(tok, 1+i%5); code != 200 { // a few objects, over and over
				t.Fatalf("request %d: %d", i+1, code)
			}
		}
		for range 4 { // a few misses
			if code := get(tok, 500); code != 404 {
				t.Fatalf("miss: %d", code)
			}
		}
		if n := len(h.audit.of("abuse.fired")); n != 0 {
			t.Fatalf("fired %d times on normal traffic: %+v", n, h.audit.of("abuse.fired"))
		}
	})
	t.Run("many distinct ids throttle the client", func(t *testing.T) {
		tok := h.tokenFor("scraper-app")
		for id := 1; id <= 10; id++ {
			if code := get(tok, id); code != 200 {
				t.Fatalf("id %d: %d", id, code)
			}
		}
		fired := h.audit.of("abuse.fired")
		if len(fired) != 1 || fired[0].Reason != ruleEnumerationIDs || fired[0].ClientID != "scraper-app" || fired[0].Details["action"] != "throttle" {
			t.Fatalf("abuse.fired: %+v", fired)
		}
		// Throttled: one request a minute, on every route.
		if code := get(tok, 11); code != 200 {
			t.Fatalf("first throttled request: %d", code)
		}
		code, hdr, _ := h.status("/api/items/12", tok, nil)
		if code != 429 || !strings.Contains(hdr.Get("RateLimit-Policy"), `"abuse.throttle";q=1;w=60`) {
			t.Fatalf("second throttled request: %d %q", code, hdr.Get("RateLimit-Policy"))
		}
		if code, _, _ := h.status("/api/whoami", tok, nil); code != 429 {
			t.Errorf("throttled on another route: %d", code)
		}
		if code := get(h.tokenFor("normal-app"), 3); code != 200 {
			t.Errorf("another client is throttled too: %d", code)
		}
	})
	t.Run("many 404s block the client", func(t *testing.T) {
		tok := h.tokenFor("prober-app")
		for i := range 5 {
			if code := get(tok, 1000+i%2); code != 404 {
				t.Fatalf("probe %d: %d", i, code)
			}
		}
		code, hdr, body := h.status("/api/items/1", tok, nil)
		forbiddenBody(t, code, hdr, body)
		if code, _, _ := h.status("/api/whoami", tok, nil); code != 403 {
			t.Errorf("blocked client on another route: %d", code)
		}
		if len(h.audit.of("client.blocked")) != 1 {
			t.Errorf("client.blocked events: %+v", h.audit.of("client.blocked"))
		}
		if code := get(h.tokenFor("normal-app"), 4); code != 200 {
			t.Errorf("another client is blocked too: %d", code)
		}
		h.clk.Advance(10 * time.Minute)
		if code := get(h.tokenFor("prober-app"), 1); code != 200 {
			t.Errorf("after the block: %d", code)
		}
	})
}

// unavailableLimiter cannot decide, like a shared backend that is down with fail: closed.
type unavailableLimiter struct{}

func (unavailableLimiter) Allow(context.Context, []ratelimit.Check, time.Time) (ratelimit.Result, error) {
	return ratelimit.Result{}, fmt.Errorf("%w: test", ratelimit.ErrUnavailable)
}

func TestLimitsUnavailableFailClosed(t *testing.T) {
	h := newHarness(t, withLimits("orders", config.RateLimit{Per: "client", Rate: "10/s"}), withLimiter(unavailableLimiter{}))
	code, hdr, body := h.status("/api/orders", h.opaque("orders:read"), nil)
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") != "1" {
		t.Fatalf("%d Retry-After %q: %s", code, hdr.Get("Retry-After"), body)
	}
	decodeProblem(t, &http.Response{StatusCode: code, Header: hdr}, body)
	h.noneSeen()
	// Routes without limits are not affected.
	if code, _, _ := h.status("/api/whoami", h.opaque(), nil); code != 200 {
		t.Errorf("a route without limits: %d", code)
	}
}

// A route without limits, filters or enumeration allocates nothing for the limits stage,
// even while the address block list is consulted.
func TestUnlimitedRouteAllocatesNothingForLimits(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are noisy under the race detector (it drops pooled objects)")
	}
	allocs := func(action string) float64 {
		g, _ := benchGatewayWith(t, func(c *config.Config) { c.Gateway.Abuse.AuthFailures.Action = action })
		fixed := time.Now()
		g.opts.Now = func() time.Time { return fixed } // no cache expiry during the runs
		req := httptest.NewRequest("GET", "/healthz", nil)
		w := &discardWriter{h: http.Header{}}
		g.ServeHTTP(w, req)
		return testing.AllocsPerRun(200, func() {
			clear(w.h)
			g.ServeHTTP(w, req)
		})
	}
	off, on := allocs("off"), allocs("block")
	if on > off {
		t.Errorf("%v allocations per request with the block list on, %v without", on, off)
	}
}

// The gateway writes the limit headers itself (in two allocations); they are exactly
// ratelimit's.
func TestLimitHeadersAreRatelimits(t *testing.T) {
	rate, _ := ratelimit.NewRate("orders.client", 20, time.Second, 20)
	slow, _ := ratelimit.NewRate("orders.ip", 5, time.Minute, 3)
	day, _ := ratelimit.NewQuota("orders.client.day", 1000, ratelimit.Day)
	month, _ := ratelimit.NewQuota("api.month", 100000, ratelimit.Month)
	odd := ratelimit.Limit{Name: `we"ird\name` + "\x01", Rate: 1, Per: time.Second, Burst: 1}
	now := time.Date(2026, 2, 10, 13, 0, 0, 0, time.UTC)
	results := []ratelimit.Result{
		{Allowed: true, Decisions: []ratelimit.Decision{{Limit: rate, Allowed: true, Remaining: 19, ResetAfter: 50 * time.Millisecond}}},
		{Decisions: []ratelimit.Decision{
			{Limit: rate, Allowed: true, Remaining: 3, ResetAfter: 1500 * time.Millisecond},
			{Limit: slow, Remaining: 0, RetryAfter: 11 * time.Second, ResetAfter: 36 * time.Second},
			{Limit: day, Allowed: true, Remaining: 998, ResetAfter: 11 * time.Hour},
			{Limit: month, Allowed: true, Remaining: 5, ResetAfter: 400 * time.Hour},
			{Limit: odd, Allowed: true},
		}},
	}
	for i, res := range results {
		want := http.Header{}
		res.SetHeaders(want, now)
		got := http.Header{}
		setLimitHeaders(got, res.Decisions, now)
		if !res.Allowed {
			got["Retry-After"] = []string{strconv.FormatInt(ratelimit.RetryAfterSeconds(res.RetryAfter()), 10)}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("result %d (-ratelimit +gateway):\n%s", i, diff)
		}
	}
}

// param (used for enumeration ids, allocation-free) agrees with params on every path a
// pattern matches, and an id after a prefix is one segment.
func FuzzPathParam(f *testing.F) {
	for _, s := range [][2]string{
		{"/api/orders/{id}", "/api/orders/7"},
		{"/a/{x}/b/{y}", "/a/1/b/2"},
		{"/files/{rest...}", "/files/a/b/c"},
		{"/files/{rest...}", "/files/"},
		{"/api/orders", "/api/orders/A-1001/items"},
		{"/", "/x/y"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		if p, err := NormalizePath(path); err != nil || p != path {
			return
		}
		prefix := !strings.Contains(pattern, "{")
		spec, err := compilePath(pattern, prefix)
		if err != nil || !spec.match(path) {
			return
		}
		if prefix {
			rt := &route{path: spec, enum: &enumeration{afterPrefix: true}}
			if id := rt.objectID(path); strings.Contains(id, "/") {
				t.Fatalf("%q under %q: id %q spans segments", path, pattern, id)
			}
			return
		}
		for name, want := range spec.params(path) {
			if got := spec.param(path, name); got != want {
				t.Fatalf("%q on %q: param(%q) = %q, params says %q", pattern, path, name, got, want)
			}
		}
		if got := spec.param(path, "no-such-param"); got != "" {
			t.Fatalf("an unknown parameter has a value: %q", got)
		}
	})
}
