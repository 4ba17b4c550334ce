// Command scaleout measures the issuer on its storage backends and replica counts, in one
// run with one load generator: client_credentials issuance of opaque tokens and RFC 7662
// introspection (JSON, and RFC 9701 JWT as the gateway asks for it), per second, on
//
//	sqlite ×1      one process, the embedded default
//	postgres ×1    one process on PostgreSQL (cache: redis)
//	postgres ×3    three processes on one PostgreSQL and Redis, load spread round-robin
//
// SQLite has no ×3 row: it is one process's embedded database; replicas need PostgreSQL.
// Every server is the real binary (`portcullis serve`, built first), over HTTPS with
// keep-alive connections (HTTP/1.1), logging at info as by default. The load generator
// runs on the same machine as the servers, so the figures compare rows with each other,
// not with another machine; the load average before and after each row is printed.
//
//	PORTCULLIS_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	PORTCULLIS_TEST_REDIS=redis://127.0.0.1:6379/0 go run ./bench/scaleout
//
// Flags: -duration (per measurement, default 5s), -workers (default 32), -bin (a built
// binary instead of building one), -only (sqlite1,postgres1,postgres3).
package main

import (
	"bytes"
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
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

func main() { os.Exit(run()) }

type options struct {
	duration, warmup time.Duration
	workers          int
	bin              string
	pg, redis        string
}

func run() int {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "how long each measurement runs")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each measurement")
	flag.IntVar(&o.workers, "workers", 32, "concurrent workers")
	flag.StringVar(&o.bin, "bin", "", "portcullis binary to run (default: build ./cmd/portcullis)")
	only := flag.String("only", "sqlite1,postgres1,postgres3", "rows to run")
	flag.Parse()
	o.pg, o.redis = os.Getenv("PORTCULLIS_TEST_POSTGRES"), os.Getenv("PORTCULLIS_TEST_REDIS")

	work, err := os.MkdirTemp("", "portcullis-scaleout-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(work)
	if o.bin == "" {
		o.bin = filepath.Join(work, "portcullis")
		build := exec.Command("go", "build", "-o", o.bin, "./cmd/portcullis")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fail(fmt.Errorf("build (run from the repository root): %w", err))
		}
	}
	var rows []row
	for _, sc := range []struct {
		name     string
		driver   string
		replicas int
	}{{"sqlite1", "sqlite", 1}, {"postgres1", "postgres", 1}, {"postgres3", "postgres", 3}} {
		if !slices.Contains(strings.Split(*only, ","), sc.name) {
			continue
		}
		if sc.driver == "postgres" && (o.pg == "" || o.redis == "") {
			fmt.Fprintf(os.Stderr, "skipping %s: PORTCULLIS_TEST_POSTGRES and PORTCULLIS_TEST_REDIS must be set\n", sc.name)
			continue
		}
		fmt.Fprintf(os.Stderr, "running %s...\n", sc.name)
		r, err := runScenario(o, filepath.Join(work, sc.name), sc.driver, sc.replicas)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", sc.name, err))
		}
		rows = append(rows, r)
	}
	printTable(o, rows)
	return 0
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "scaleout:", err)
	return 1
}

// row is one line of the table.
type row struct {
	name                 string
	issue, intro, introJ measurement
	loadBefore           string
	loadAfter            string
}

type measurement struct {
	n, errs  int
	firstErr string
	elapsed  time.Duration
	lat      []time.Duration
	cpu      time.Duration // CPU time of the server processes during the run
}

func (m measurement) rate() float64 { return float64(m.n) / m.elapsed.Seconds() }

func (m measurement) pct(p float64) time.Duration {
	if len(m.lat) == 0 {
		return 0
	}
	return m.lat[min(len(m.lat)-1, int(p*float64(len(m.lat))))]
}

// cluster is the replicas of one row.
type cluster struct {
	dir      string
	config   string
	bin      string
	issuers  []string
	admins   []string
	envs     [][]string
	procs    []*exec.Cmd
	client   *http.Client
	acme     string
	gateway  string
	cleanups []func()
}

func runScenario(o options, dir, driver string, replicas int) (row, error) {
	r := row{name: fmt.Sprintf("%s ×%d", driver, replicas)}
	c, err := startCluster(o, dir, driver, replicas)
	if err != nil {
		return r, err
	}
	defer c.stop()
	r.loadBefore = loadavg()

	var mu sync.Mutex
	var tokens []string
	issue := func(i int) (*http.Request, func([]byte) error) {
		req := c.post(c.issuers[i%len(c.issuers)]+"/token", url.Values{"grant_type": {"client_credentials"}}, "acme-app", c.acme)
		return req, func(body []byte) error {
			var tr struct {
				AccessToken string `json:"access_token"`
			}
			if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
				return fmt.Errorf("no access token in %.100s", body)
			}
			mu.Lock()
			if len(tokens) < 20000 {
				tokens = append(tokens, tr.AccessToken)
			}
			mu.Unlock()
			return nil
		}
	}
	c.load(o, o.warmup, issue)
	r.issue = c.load(o, o.duration, issue)
	if len(tokens) == 0 {
		return r, fmt.Errorf("no token issued: %s", r.issue.firstErr)
	}
	introspect := func(accept string) func(i int) (*http.Request, func([]byte) error) {
		return func(i int) (*http.Request, func([]byte) error) {
			req := c.post(c.issuers[i%len(c.issuers)]+"/introspect", url.Values{"token": {tokens[i%len(tokens)]}}, "gateway", c.gateway)
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			return req, func(body []byte) error {
				if accept == "" && !bytes.Contains(body, []byte(`"active":true`)) {
					return fmt.Errorf("not active: %.100s", body)
				}
				if accept != "" && bytes.Count(body, []byte(".")) != 2 {
					return fmt.Errorf("not a JWT: %.100s", body)
				}
				return nil
			}
		}
	}
	c.load(o, o.warmup, introspect(""))
	r.intro = c.load(o, o.duration, introspect(""))
	r.introJ = c.load(o, o.duration, introspect("application/token-introspection+jwt"))
	r.loadAfter = loadavg()
	return r, nil
}

// load runs o.workers workers for d, each sending the requests next makes, spread over
// the replicas round-robin.
func (c *cluster) load(o options, d time.Duration, next func(i int) (*http.Request, func([]byte) error)) measurement {
	var m measurement
	var mu sync.Mutex
	var seq atomic.Int64
	cpu0 := c.cpu()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range o.workers {
		wg.Go(func() {
			var lat []time.Duration
			var n, errs int
			var first string
			for time.Now().Before(deadline) {
				req, check := next(int(seq.Add(1)))
				t0 := time.Now()
				resp, err := c.client.Do(req)
				if err == nil {
					var body []byte
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d: %.100s", resp.StatusCode, body)
					}
					if err == nil {
						err = check(body)
					}
				}
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
					continue
				}
				n++
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			m.n += n
			m.errs += errs
			m.lat = append(m.lat, lat...)
			if m.firstErr == "" {
				m.firstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	m.elapsed = time.Since(start)
	m.cpu = c.cpu() - cpu0
	slices.Sort(m.lat)
	return m
}

func (c *cluster) post(u string, form url.Values, user, pass string) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode())) // fixed, valid inputs
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	return req
}

// cpu returns the CPU time the server processes have used (Linux /proc).
func (c *cluster) cpu() time.Duration {
	var total time.Duration
	for _, p := range c.procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which is in parentheses): utime and stime are the
		// 12th and 13th, in clock ticks (100 per second).
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 12 {
			u, _ := strconv.Atoi(f[11])
			k, _ := strconv.Atoi(f[12])
			total += time.Duration(u+k) * 10 * time.Millisecond
		}
	}
	return total
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

func startCluster(o options, dir, driver string, replicas int) (*cluster, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, config: filepath.Join(dir, "portcullis.yaml"), bin: o.bin}
	pool, err := writePKI(dir)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        4 * o.workers,
		MaxIdleConnsPerHost: o.workers,
		IdleConnTimeout:     time.Minute,
	}
	c.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}

	storage := `{ driver: sqlite, dsn: "file:portcullis.db" }`
	cache := `{ driver: memory }`
	if driver == "postgres" {
		schema := "pc_bench_" + randomHex(6)
		db, err := sql.Open("pgx", o.pg)
		if err != nil {
			return nil, err
		}
		if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
			db.Close()
			return nil, err
		}
		c.cleanups = append(c.cleanups, func() { _, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE"); db.Close() })
		u, err := url.Parse(o.pg)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		storage = fmt.Sprintf(`{ driver: postgres, dsn: %q }`, u.String())
		cache = fmt.Sprintf(`{ driver: redis, url: %q, prefix: %q }`, o.redis, "portcullis-bench:"+randomHex(6)+":")
	}
	ports, err := freePorts(2 * replicas)
	if err != nil {
		return nil, err
	}
	for i := range replicas {
		c.issuers = append(c.issuers, fmt.Sprintf("https://127.0.0.1:%d", ports[2*i]))
		c.admins = append(c.admins, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]))
		c.envs = append(c.envs, []string{fmt.Sprintf("ISSUER_PORT=%d", ports[2*i]), fmt.Sprintf("ADMIN_PORT=%d", ports[2*i+1])})
	}
	cfg := fmt.Sprintf(`issuer:
  url: %s
  listen: 127.0.0.1:${ISSUER_PORT}
  tls: { cert: tls.pem, key: tls-key.pem }
  keys: { algorithm: ES256, master_key_file: master.key }
  tokens: { access_ttl: 5m }
  scopes:
    orders:read: { description: "See orders" }
storage: %s
cache: %s
admin: { listen: "127.0.0.1:${ADMIN_PORT}" }
log: { level: info, format: json }
`, c.issuers[0], storage, cache)
	if err := os.WriteFile(c.config, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if driver == "postgres" {
		if _, err := c.cli("migrate", "--config", c.config); err != nil {
			return nil, err
		}
	}
	out, err := c.cli("clients", "add", "--config", c.config, "--id", "acme-app", "--scopes", "orders:read")
	if err != nil {
		return nil, err
	}
	if c.acme, err = secretOf(out); err != nil {
		return nil, err
	}
	out, err = c.cli("clients", "add", "--config", c.config, "--id", "gateway", "--scopes", "orders:read", "--grant-types", "", "--introspect")
	if err != nil {
		return nil, err
	}
	if c.gateway, err = secretOf(out); err != nil {
		return nil, err
	}
	for i := range replicas {
		logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("replica%d.log", i)))
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(c.bin, "serve", "--config", c.config)
		cmd.Env = append(os.Environ(), c.envs[i]...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			return nil, err
		}
		c.procs = append(c.procs, cmd)
		c.cleanups = append(c.cleanups, func() { logf.Close() })
		// One at a time: replicas started at the same instant can trip over the migration
		// lock at start-up (see the e2e test).
		if err := c.waitReady(i, 60*time.Second); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), c.envs[0]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("portcullis %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func secretOf(out string) (string, error) {
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "client_secret: "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no client_secret in %q", out)
}

func (c *cluster) waitReady(i int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := http.Get(c.admins[i] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("replica %d not ready within %v (see %s)", i, d, c.dir)
}

func (c *cluster) stop() {
	for _, p := range c.procs {
		_ = p.Process.Signal(syscall.SIGINT)
	}
	for _, p := range c.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	c.procs = nil
	for _, f := range slices.Backward(c.cleanups) {
		f()
	}
	c.cleanups = nil
}

func printTable(o options, rows []row) {
	fmt.Printf("\nportcullis issuer: %d workers, HTTPS keep-alive (HTTP/1.1), %v per measurement, load generator on the same %d-core machine\n\n", o.workers, o.duration, numCPU())
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "backend\tissue/s\tp50\tp99\tcpu/req\tintrospect/s\tp50\tp99\tcpu/req\tintrospect jwt/s\tp50\tp99\terrors\tload before\tload after\t")
	for _, r := range rows {
		errs := r.issue.errs + r.intro.errs + r.introJ.errs
		fmt.Fprintf(w, "%s\t%.0f\t%v\t%v\t%v\t%.0f\t%v\t%v\t%v\t%.0f\t%v\t%v\t%d\t%s\t%s\t\n", r.name,
			r.issue.rate(), ms(r.issue.pct(.5)), ms(r.issue.pct(.99)), perReq(r.issue),
			r.intro.rate(), ms(r.intro.pct(.5)), ms(r.intro.pct(.99)), perReq(r.intro),
			r.introJ.rate(), ms(r.introJ.pct(.5)), ms(r.introJ.pct(.99)), errs, r.loadBefore, r.loadAfter)
	}
	w.Flush()
	for _, r := range rows {
		for _, m := range []measurement{r.issue, r.intro, r.introJ} {
			if m.firstErr != "" {
				fmt.Printf("%s: first error: %s\n", r.name, m.firstErr)
			}
		}
	}
	fmt.Println("\ncpu/req: CPU time of the server processes per request (the load generator excluded).")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func perReq(m measurement) string {
	if m.n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fµs", float64(m.cpu)/float64(m.n)/float64(time.Microsecond))
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("\nprocessor")) + 1
}

// writePKI writes a CA, a server certificate for 127.0.0.1 (tls.pem, tls-key.pem) and a
// master key into dir, and returns a pool trusting the CA.
func writePKI(dir string) (*x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scaleout bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	mk := make([]byte, 32)
	_, _ = rand.Read(mk)
	for name, b := range map[string][]byte{
		"tls.pem":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		"tls-key.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		"master.key":  []byte(base64.StdEncoding.EncodeToString(mk) + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}

func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
