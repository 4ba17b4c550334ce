package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the test counts token records itself
	goredis "github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/jwtverify"
)

// queryTimeout is storage.query_timeout of the replicas: no request may wait on an
// unreachable PostgreSQL much longer.
const queryTimeout = 2 * time.Second

// revocationBound is gateway.introspection.revocation_bound of the replicas, set long so
// that a revocation seen within a second can only have come through the event bus.
const revocationBound = 30 * time.Second

// TestReplicas runs three `portcullis serve` processes, A, B and C, from one config file
// (ports from the environment), sharing PostgreSQL — through a proxy the test controls — and
// Redis, behind a round-robin balancer that is the issuer URL. The upstream API is in the
// test process and verifies every phantom JWT it gets.
func TestReplicas(t *testing.T) {
	pgURL, redisURL := os.Getenv("PORTCULLIS_TEST_POSTGRES"), os.Getenv("PORTCULLIS_TEST_REDIS")
	if pgURL == "" || redisURL == "" {
		t.Skip("needs PORTCULLIS_TEST_POSTGRES and PORTCULLIS_TEST_REDIS (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable and redis://127.0.0.1:6379/0): skipping the three-replica test")
	}
	c := startCluster(t, pgURL, redisURL)
	t.Run("issue on A, use through B, revoke on C", c.testRevocation)
	t.Run("shared rate limit", c.testSharedLimit)
	t.Run("postgres unreachable", c.testPostgresOutage)
}

type cluster struct {
	dir       string
	config    string
	env       []string // common environment of every replica and command
	http      *http.Client
	issuerURL string // the balancer
	pgProxy   *tcpProxy
	redis     *goredis.Client
	prefix    string
	db        *sql.DB // PostgreSQL directly, not through the proxy
	schema    string
	replicas  []*replica
	acme      string // acme-app's secret
	gwSecret  string // the gateway's introspection secret

	mu     sync.Mutex
	issued []string // every access token handed out with a 200
}

type replica struct {
	name                   string
	issuer, gateway, admin string // base URLs
	env                    []string
	cmd                    *exec.Cmd
	out                    *syncBuffer
	done                   chan struct{}
}

func startCluster(t *testing.T, pgURL, redisURL string) *cluster {
	t.Helper()
	c := &cluster{dir: t.TempDir()}
	caPEM, leaf := writePKI(t, c.dir)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c.http = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}

	// PostgreSQL: a schema of the test's own, reached through the proxy.
	schema := "pc_e2e_" + randomHex(6)
	db, err := sql.Open("pgx", pgURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("PORTCULLIS_TEST_POSTGRES: %v", err)
	}
	t.Cleanup(func() { _, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE") })
	c.db, c.schema = db, schema
	pu, err := url.Parse(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	c.pgProxy = newTCPProxy(t, pu.Host)
	pu.Host = c.pgProxy.addr
	q := pu.Query()
	q.Set("search_path", schema)
	pu.RawQuery = q.Encode()

	// Redis: a prefix of the test's own, deleted at the end.
	prefix := "portcullis-e2e:" + randomHex(6) + ":"
	t.Cleanup(func() { deleteRedisPrefix(t, redisURL, prefix) })
	ropt, err := goredis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	c.redis, c.prefix = goredis.NewClient(ropt), prefix
	t.Cleanup(func() { c.redis.Close() })

	ports := freePorts(t, 9)
	var issuers []string
	for i := range 3 {
		issuers = append(issuers, fmt.Sprintf("127.0.0.1:%d", ports[3*i]))
	}
	front := newTCPProxy(t, issuers...)
	c.issuerURL = "https://" + front.addr

	upstream, startUpstream := phantomUpstream(t, c.issuerURL, c.http, leaf)
	if err := os.WriteFile(filepath.Join(c.dir, "upstream-ca.pem"), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	c.config = filepath.Join(c.dir, "portcullis.yaml")
	cfg := fmt.Sprintf(`# one file for every replica: only the ports differ, from the environment
issuer:
  url: %s
  listen: 127.0.0.1:${ISSUER_PORT}
  tls: { cert: tls.pem, key: tls-key.pem }
  keys: { algorithm: ES256, master_key_file: master.key }
  tokens: { access_ttl: 5m, audience: [orders-api] }
  scopes:
    orders:read: { description: "See orders" }
gateway:
  listen: 127.0.0.1:${GATEWAY_PORT}
  tls: { cert: tls.pem, key: tls-key.pem }
  issuer_ca: ca.pem
  introspection: { client_id: gateway, secret_env: GATEWAY_SECRET, revocation_bound: %s }
  routes:
    - name: orders
      match: { path_prefix: /api/orders, methods: [GET] }
      upstream: { url: %q, ca: upstream-ca.pem }
      auth: { method: oauth, scopes: [orders:read] }
    - name: limited
      match: { path_prefix: /api/limited, methods: [GET] }
      upstream: { url: %[3]q, ca: upstream-ca.pem }
      auth: { method: oauth, scopes: [orders:read] }
      rate_limit: { per: client, rate: 1/h, burst: %[8]d }
storage: { driver: postgres, dsn: %[4]q, query_timeout: %[5]s }
cache: { driver: redis, url: %[6]q, prefix: %[7]q }
admin: { listen: "127.0.0.1:${ADMIN_PORT}" }
log: { level: info, format: json }
`, c.issuerURL, revocationBound, upstream, pu.String(), queryTimeout, redisURL, prefix, sharedBurst)
	if err := os.WriteFile(c.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"A", "B", "C"} {
		r := &replica{
			name:    name,
			issuer:  fmt.Sprintf("https://127.0.0.1:%d", ports[3*i]),
			gateway: fmt.Sprintf("https://127.0.0.1:%d", ports[3*i+1]),
			admin:   fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+2]),
			env:     []string{fmt.Sprintf("ISSUER_PORT=%d", ports[3*i]), fmt.Sprintf("GATEWAY_PORT=%d", ports[3*i+1]), fmt.Sprintf("ADMIN_PORT=%d", ports[3*i+2])},
		}
		c.replicas = append(c.replicas, r)
	}

	// The schema first, then the clients, which live in PostgreSQL and so are shared.
	c.env = []string{"GATEWAY_SECRET=not-yet"}
	c.run(t, "migrate", "--config", c.config)
	c.acme = secretOf(t, c.run(t, "clients", "add", "--config", c.config, "--id", "acme-app", "--scopes", "orders:read"))
	c.gwSecret = secretOf(t, c.run(t, "clients", "add", "--config", c.config, "--id", "gateway", "--scopes", "orders:read", "--grant-types", "", "--introspect"))
	c.env = []string{"GATEWAY_SECRET=" + c.gwSecret}

	// One after another: started at the same moment, a replica can exit with "migration
	// status: ... context deadline exceeded" (the start-up schema check waits for the
	// migration lock, polled once a second, under storage.query_timeout).
	for _, r := range c.replicas {
		c.start(t, r)
		c.waitReady(t, r, 60*time.Second)
	}
	if n := c.count(t, "SELECT count(*) FROM "+c.schema+".signing_keys"); n != 1 {
		t.Errorf("three replicas made %d signing keys, want 1", n)
	}
	startUpstream()
	// A gateway looks up its issuer (through the balancer) at start-up and, after a failure,
	// at most once a second; A's first look-up ran before any issuer listened. Wait until
	// every gateway checks tokens.
	probe := c.mustToken(t, c.replicas[0])
	for _, r := range c.replicas {
		deadline := time.Now().Add(10 * time.Second)
		for {
			status, body, _, _ := c.api(t, r, probe)
			if status == http.StatusOK {
				break
			}
			if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("%s's gateway does not check tokens: %d %s", r.name, status, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

// run runs the binary with the environment of replica A and returns its stdout.
func (c *cluster) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(append(os.Environ(), c.env...), c.replicas[0].env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("portcullis %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

func secretOf(t *testing.T, out string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "client_secret: "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no client_secret in %q", out)
	return ""
}

func (c *cluster) start(t *testing.T, r *replica) {
	t.Helper()
	r.out, r.done = &syncBuffer{}, make(chan struct{})
	r.cmd = exec.Command(binary, "serve", "--config", c.config)
	r.cmd.Env = append(append(os.Environ(), c.env...), r.env...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(os.Interrupt)
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.done
			t.Errorf("replica %s did not stop within 20s", r.name)
		}
		if t.Failed() {
			t.Logf("replica %s output (last 4000 bytes):\n%s", r.name, tail(r.out.String(), 4000))
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// waitReady waits until the replica's /readyz answers 200.
func (c *cluster) waitReady(t *testing.T, r *replica, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		select {
		case <-r.done:
			t.Fatalf("replica %s exited: %v\n%s", r.name, r.cmd.ProcessState, r.out)
		default:
		}
		if status, _, _, _ := c.do(t, http.MethodGet, r.admin+"/readyz", "", "", nil); status == http.StatusOK {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("replica %s not ready within %v\n%s", r.name, d, tail(r.out.String(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// do sends one request and returns the status (0 if it failed), the body, the content
// type and how long it took. user/pass set Basic credentials; a bearer goes in form["bearer"].
func (c *cluster) do(t *testing.T, method, u, user, pass string, form url.Values) (int, []byte, string, time.Duration) {
	t.Helper()
	var body io.Reader
	bearer := form.Get("bearer")
	if method == http.MethodPost {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, []byte(err.Error()), "", time.Since(start)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return resp.StatusCode, b, ct, time.Since(start)
}

// token asks r's issuer for an access token for acme-app. A token handed out is recorded.
func (c *cluster) token(t *testing.T, r *replica) (status int, tok string, body []byte, d time.Duration) {
	t.Helper()
	status, body, _, d = c.do(t, http.MethodPost, r.issuer+"/token", "acme-app", c.acme, url.Values{"grant_type": {"client_credentials"}})
	if status == http.StatusOK {
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
			t.Fatalf("token from %s: 200 with %s", r.name, body)
		}
		tok = tr.AccessToken
		c.mu.Lock()
		c.issued = append(c.issued, tok)
		c.mu.Unlock()
	}
	return status, tok, body, d
}

func (c *cluster) mustToken(t *testing.T, r *replica) string {
	t.Helper()
	status, tok, body, _ := c.token(t, r)
	if status != http.StatusOK {
		t.Fatalf("token from %s: %d %s", r.name, status, body)
	}
	return tok
}

// api calls the orders route through r's gateway with tok.
func (c *cluster) api(t *testing.T, r *replica, tok string) (int, []byte, string, time.Duration) {
	t.Helper()
	return c.do(t, http.MethodGet, r.gateway+"/api/orders", "", "", url.Values{"bearer": {tok}})
}

func (c *cluster) introspect(t *testing.T, r *replica, tok string) (int, []byte, string, time.Duration) {
	t.Helper()
	return c.do(t, http.MethodPost, r.issuer+"/introspect", "gateway", c.gwSecret, url.Values{"token": {tok}})
}

// metric returns the value of a metric line (name with labels, as exposed) on r, or 0.
func (c *cluster) metric(t *testing.T, r *replica, series string) float64 {
	t.Helper()
	_, body, _, _ := c.do(t, http.MethodGet, r.admin+"/metrics", "", "", nil)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

func (c *cluster) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var n int
	if err := c.db.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (c *cluster) testRevocation(t *testing.T) {
	a, b, cc := c.replicas[0], c.replicas[1], c.replicas[2]
	tok := c.mustToken(t, a)
	status, body, _, _ := c.api(t, b, tok)
	if status != http.StatusOK {
		t.Fatalf("token from A through B's gateway: %d %s", status, body)
	}
	var seen struct {
		Subject  string `json:"sub"`
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal(body, &seen); err != nil || seen.ClientID != "acme-app" {
		t.Errorf("the upstream saw %s, want a verified phantom JWT for acme-app", body)
	}
	// Every gateway now holds the answer in its cache (a revocation must evict it).
	for _, r := range []*replica{a, b, cc, b} {
		if status, body, _, _ := c.api(t, r, tok); status != http.StatusOK {
			t.Fatalf("through %s: %d %s", r.name, status, body)
		}
	}
	if hits := c.metric(t, b, `portcullis_gateway_introspection_cache_total{result="hit"}`); hits < 1 {
		t.Errorf("B's gateway never answered from its cache (hits %v): the revocation test would prove nothing", hits)
	}
	before := map[string]float64{}
	for _, r := range []*replica{a, b} {
		before[r.name] = c.metric(t, r, `portcullis_events_received_total{kind="token.revoked"}`)
	}

	status, body, _, _ = c.do(t, http.MethodPost, cc.issuer+"/revoke", "acme-app", c.acme, url.Values{"token": {tok}})
	if status != http.StatusOK {
		t.Fatalf("revoke on C: %d %s", status, body)
	}
	revoked := time.Now()
	for _, r := range []*replica{a, b, cc} {
		for {
			status, body, _, _ := c.api(t, r, tok)
			if status == http.StatusUnauthorized {
				t.Logf("refused at %s's gateway %v after the revocation", r.name, time.Since(revoked).Round(time.Millisecond))
				break
			}
			if status != http.StatusOK {
				t.Fatalf("through %s after revocation: %d %s", r.name, status, body)
			}
			// The event bus is live: at once, give or take delivery. Without it the cached
			// answer would stand for up to revocationBound.
			if time.Since(revoked) > 1500*time.Millisecond {
				t.Fatalf("%s's gateway still accepts the token %v after its revocation on C", r.name, time.Since(revoked))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, r := range []*replica{a, b} {
		if got := c.metric(t, r, `portcullis_events_received_total{kind="token.revoked"}`); got <= before[r.name] {
			t.Errorf("%s received no token.revoked event through Redis (%v before, %v after)", r.name, before[r.name], got)
		}
	}
	// If the gateways share introspection answers through Redis, the revoked token's is gone.
	if n := c.redis.Exists(t.Context(), c.prefix+"ic:{"+events.TokenHash(tok)+"}").Val(); n != 0 {
		t.Error("the shared introspection cache still holds the revoked token's answer")
	}
	if status, body, _, _ := c.introspect(t, a, tok); status != http.StatusOK || !strings.Contains(string(body), `"active":false`) {
		t.Errorf("introspection on A after revocation on C: %d %s", status, body)
	}
}

// sharedBurst is the burst of the limited route: with a rate of one an hour, what the three
// replicas together may admit during the test.
const sharedBurst = 300

// testSharedLimit sends twice the limited route's burst through all three gateways at once,
// with one client's token: together they admit the burst (±1 %), because they count in one
// place, Redis, atomically.
func (c *cluster) testSharedLimit(t *testing.T) {
	tok := c.mustToken(t, c.replicas[0])
	const workers = 4 // per replica
	var admitted, refused, other atomic.Int64
	var wg sync.WaitGroup
	for _, r := range c.replicas {
		for range workers {
			wg.Go(func() {
				for range 2 * sharedBurst / (3 * workers) {
					req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.gateway+"/api/limited", nil)
					if err != nil {
						t.Error(err)
						return
					}
					req.Header.Set("Authorization", "Bearer "+tok)
					resp, err := c.http.Do(req)
					if err != nil {
						other.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					switch {
					case resp.StatusCode == http.StatusOK && resp.Header.Get("RateLimit-Policy") == `"limited.client";q=1;w=3600`:
						admitted.Add(1)
					case resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "":
						refused.Add(1)
					default:
						other.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	t.Logf("three replicas admitted %d and refused %d of %d requests (burst %d)", admitted.Load(), refused.Load(), 2*sharedBurst, sharedBurst)
	if other.Load() != 0 {
		t.Errorf("%d requests failed or were answered without the limit's headers", other.Load())
	}
	if got := admitted.Load(); got < sharedBurst*99/100 || got > sharedBurst*101/100 {
		t.Errorf("admitted %d, want %d ±1%%", got, sharedBurst)
	}
	var denied float64
	for _, r := range c.replicas {
		denied += c.metric(t, r, `portcullis_ratelimit_decisions_total{policy="limited.client",result="denied"}`)
	}
	if denied != float64(refused.Load()) {
		t.Errorf("the replicas counted %v denials, the clients saw %d", denied, refused.Load())
	}
}

func (c *cluster) testPostgresOutage(t *testing.T) {
	a, b, cc := c.replicas[0], c.replicas[1], c.replicas[2]
	limit := queryTimeout + time.Second // what "fast" means: the query timeout and some slack

	unused := c.mustToken(t, a) // never shown to a gateway before the outage
	cached := c.mustToken(t, b)
	if status, body, _, _ := c.api(t, a, cached); status != http.StatusOK {
		t.Fatalf("before the outage: %d %s", status, body)
	}

	t.Run("cut", func(t *testing.T) {
		c.pgProxy.set(cut)
		for _, r := range c.replicas {
			c.expectUnavailable(t, r, unused, limit)
		}
		// What the gateway already knew stands, within its bounds: the documented fallback.
		if status, body, _, _ := c.api(t, a, cached); status != http.StatusOK {
			t.Errorf("a cached token through A during the outage: %d %s", status, body)
		}
		c.heal(t)
		// Nothing reached PostgreSQL while it was cut: the records are exactly the tokens
		// handed out.
		c.checkRecords(t, 0)
	})

	t.Run("blackhole", func(t *testing.T) {
		c.pgProxy.set(blackhole)
		c.expectUnavailable(t, b, unused, limit)
		c.heal(t)
		// A request that timed out in the blackhole may still reach PostgreSQL when the link
		// heals (its bytes were in flight) and leave a token record nobody holds: harmless,
		// and at most one per request sent (two /token requests above).
		c.checkRecords(t, 2)
	})

	t.Run("flapping under load", func(t *testing.T) {
		const workers = 4
		var wg sync.WaitGroup
		var mu sync.Mutex
		counts := map[int]int{}
		stop := time.Now().Add(4 * time.Second)
		for w := range workers {
			wg.Go(func() {
				for i := 0; time.Now().Before(stop); i++ {
					r := c.replicas[(w+i)%len(c.replicas)]
					status, _, body, d := c.token(t, r)
					mu.Lock()
					counts[status]++
					mu.Unlock()
					switch {
					case d > limit:
						t.Errorf("a token request to %s took %v (query timeout %v)", r.name, d, queryTimeout)
					case status != http.StatusOK && status != http.StatusServiceUnavailable:
						t.Errorf("a token request to %s during the outage: %d %s", r.name, status, body)
					}
				}
			})
		}
		time.Sleep(time.Second)
		c.pgProxy.set(cut)
		time.Sleep(time.Second)
		c.pgProxy.set(forward)
		wg.Wait()
		t.Logf("token responses while PostgreSQL flapped: %v", counts)
		if counts[http.StatusOK] == 0 || counts[http.StatusServiceUnavailable] == 0 {
			t.Errorf("expected both successes and 503s, got %v", counts)
		}
		c.heal(t)
		// A commit whose answer was lost in the cut leaves a record nobody holds; at most
		// one per worker in flight at that moment, plus the blackhole's.
		c.checkRecords(t, 2+workers)
	})
	_ = cc
}

// expectUnavailable checks that every store-backed path of r fails fast and cleanly while
// PostgreSQL is unreachable.
func (c *cluster) expectUnavailable(t *testing.T, r *replica, unused string, limit time.Duration) {
	t.Helper()
	status, _, body, tokenTook := c.token(t, r)
	if status != http.StatusServiceUnavailable || !strings.Contains(string(body), `"error":"temporarily_unavailable"`) || tokenTook > limit {
		t.Errorf("POST /token at %s: %d in %v: %s; want 503 temporarily_unavailable within %v", r.name, status, tokenTook, body, limit)
	}
	status, body, ct, d := c.introspect(t, r, unused)
	if status != http.StatusServiceUnavailable || ct != "application/json" || d > limit {
		t.Errorf("POST /introspect at %s: %d %s in %v: %s; want a 503 RFC 6749 error within %v", r.name, status, ct, d, body, limit)
	}
	status, body, ct, d = c.api(t, r, unused)
	if status != http.StatusServiceUnavailable || ct != "application/problem+json" || d > limit {
		t.Errorf("gateway at %s with an uncached token: %d %s in %v: %s; want 503 problem+json within %v", r.name, status, ct, d, body, limit)
	}
	status, body, _, d = c.do(t, http.MethodGet, r.admin+"/readyz", "", "", nil)
	if status != http.StatusServiceUnavailable || d > limit {
		t.Errorf("/readyz at %s: %d in %v: %s; want 503 within %v", r.name, status, d, body, limit)
	}
	t.Logf("%s unavailable: /token answered 503 in %v; /introspect, the gateway and /readyz 503 within %v", r.name, tokenTook.Round(time.Millisecond), limit)
}

// heal restores PostgreSQL and waits for every replica to issue tokens again by itself.
func (c *cluster) heal(t *testing.T) {
	t.Helper()
	c.pgProxy.set(forward)
	start := time.Now()
	for _, r := range c.replicas {
		for {
			status, _, body, _ := c.token(t, r)
			if status == http.StatusOK {
				break
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("%s did not recover within 30s of PostgreSQL coming back: %d %s", r.name, status, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.waitReady(t, r, 30*time.Second)
	}
	t.Logf("every replica issues and is ready again %v after PostgreSQL came back", time.Since(start).Round(time.Millisecond))
}

// checkRecords checks that every token handed out has exactly one record, and that at most
// orphans records exist for requests that failed.
func (c *cluster) checkRecords(t *testing.T, orphans int) {
	t.Helper()
	c.mu.Lock()
	issued := append([]string(nil), c.issued...)
	c.mu.Unlock()
	for _, tok := range issued {
		if n := c.count(t, "SELECT count(*) FROM "+c.schema+".tokens WHERE hash = $1", events.TokenHash(tok)); n != 1 {
			t.Errorf("a token handed out has %d records, want 1", n)
		}
	}
	total := c.count(t, "SELECT count(*) FROM "+c.schema+".tokens WHERE client_id = 'acme-app'")
	extra := total - len(issued)
	t.Logf("%d tokens handed out, %d records", len(issued), total)
	if extra < 0 || extra > orphans {
		t.Errorf("%d token records for %d tokens handed out: %d extra, at most %d allowed", total, len(issued), extra, orphans)
	}
}

// phantomUpstream is the API behind the gateways: it answers only requests that carry a
// phantom JWT the issuer signed for it, and echoes who they are for. Call the returned
// function once the issuer answers: it fetches the issuer's keys from then on.
func phantomUpstream(t *testing.T, issuerURL string, client *http.Client, cert tls.Certificate) (string, func()) {
	t.Helper()
	var v atomic.Pointer[jwtverify.Verifier]
	start := func() {
		keys, err := jwtverify.NewRemoteJWKS(issuerURL+"/jwks", jwtverify.RemoteOptions{HTTPClient: client})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(keys.Close)
		vv, err := jwtverify.New(jwtverify.Config{Issuer: issuerURL, Audiences: []string{"orders-api"}, Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		v.Store(vv)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vv := v.Load()
		if vv == nil {
			http.Error(w, "not started", http.StatusServiceUnavailable)
			return
		}
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		claims, err := vv.Verify(r.Context(), raw)
		if !ok || err != nil {
			http.Error(w, fmt.Sprintf("no valid phantom token: %v", err), http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"sub": claims.Subject, "client_id": claims.ClientID})
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, start
}

// writePKI writes a CA (ca.pem), one server certificate for 127.0.0.1 that every listener
// uses (tls.pem, tls-key.pem) and a master key into dir.
func writePKI(t *testing.T, dir string) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e replicas CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	mk := make([]byte, 32)
	rand.Read(mk)
	for name, b := range map[string][]byte{
		"ca.pem": caPEM, "tls.pem": certPEM, "tls-key.pem": keyPEM,
		"master.key": []byte(base64.StdEncoding.EncodeToString(mk) + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return caPEM, cert
}

// freePorts returns n ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func deleteRedisPrefix(t *testing.T, redisURL, prefix string) {
	opt, err := goredis.ParseURL(redisURL)
	if err != nil {
		t.Error(err)
		return
	}
	rc := goredis.NewClient(opt)
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	iter := rc.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if len(keys) > 0 {
		rc.Del(ctx, keys...)
	}
}
