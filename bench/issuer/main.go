// Command issuer is the issuer's load harness: it starts the real Portcullis issuer
// (`portcullis demo`: SQLite store, HTTPS under the demo's local CA, audit trail and access
// log on) and measures, with N concurrent workers on keep-alive connections for a fixed time
// each, client_credentials issuances of opaque and at+jwt tokens and introspections (RFC 7662
// JSON and RFC 9701 JWT), then prints a table.
//
//	go run ./bench/issuer                       # in-process server, 32 workers, 10s per row
//	go run ./bench/issuer -bin /tmp/portcullis  # the server in its own process
//	go run ./bench/issuer -cpuprofile cpu.out   # profile (in-process: server and load together)
//
// The load generator shares the machine with the server, as issue 2's targets assume.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/portcullis/portcullis/internal/app"
)

// demoInfo is the part of demo.json the harness reads.
type demoInfo struct {
	Issuer  string `json:"issuer"`
	CAFile  string `json:"ca_file"`
	Clients []struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	} `json:"clients"`
}

func (d demoInfo) secret(id string) string {
	for _, c := range d.Clients {
		if c.ClientID == id {
			return c.ClientSecret
		}
	}
	return ""
}

// scenario is one row of the table: a request that must answer 200.
type scenario struct {
	name   string
	target string // issue 2's figure, for the table
	next   func(i uint64) (*http.Request, error)
	check  func(body []byte) error
}

type result struct {
	name     string
	target   string
	requests uint64
	errors   uint64
	firstErr string
	elapsed  time.Duration
	lat      []time.Duration
	cpu      time.Duration // CPU time of server and load generator together during the run
}

func main() {
	os.Exit(run())
}

func run() int {
	duration := flag.Duration("duration", 10*time.Second, "how long each scenario runs")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured load before each scenario")
	workers := flag.Int("workers", 32, "concurrent workers (each on its own keep-alive connection)")
	only := flag.String("only", "", "comma-separated scenarios to run (default all): opaque, jwt, introspect, introspect-jwt")
	bin := flag.String("bin", "", "run this portcullis binary as the server instead of the in-process one")
	h2 := flag.Bool("h2", false, "use HTTP/2 (default HTTP/1.1 with keep-alive)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured runs to this file")
	dir := flag.String("dir", "", "demo directory (default: a new temporary one, removed afterwards)")
	flag.Parse()

	if *dir == "" {
		d, err := os.MkdirTemp("", "portcullis-bench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, err := startServer(ctx, *bin, *dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start server:", err)
		return 1
	}
	defer stop()
	info, err := readDemo(filepath.Join(*dir, "demo.json"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	client, err := newClient(info.CAFile, *workers, *h2)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	scenarios, err := buildScenarios(ctx, client, info)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if *only != "" {
		want := strings.Split(*only, ",")
		scenarios = slices.DeleteFunc(scenarios, func(s scenario) bool { return !slices.Contains(want, s.name) })
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	proto := "HTTP/1.1 keep-alive"
	if *h2 {
		proto = "HTTP/2"
	}
	where := "in-process"
	if *bin != "" {
		where = "separate process " + *bin
	}
	fmt.Printf("issuer %s (%s), SQLite, HTTPS %s, %d workers, %v per scenario, GOMAXPROCS %d, %d CPUs\n\n",
		info.Issuer, where, proto, *workers, *duration, runtime.GOMAXPROCS(0), runtime.NumCPU())
	var results []result
	for _, s := range scenarios {
		if *warmup > 0 {
			load(ctx, client, s, *workers, *warmup)
		}
		results = append(results, load(ctx, client, s, *workers, *duration))
	}
	printTable(os.Stdout, results)
	for _, r := range results {
		if r.errors > 0 {
			return 1
		}
	}
	return 0
}

// startServer runs `portcullis demo --dir dir --ports auto` in process or as bin, and waits
// for demo.json. stop ends it.
func startServer(ctx context.Context, bin, dir string) (stop func(), err error) {
	_ = os.Remove(filepath.Join(dir, "demo.json"))
	args := []string{"demo", "--dir", dir, "--ports", "auto"}
	var done chan struct{}
	var cancel context.CancelFunc
	if bin == "" {
		var sctx context.Context
		sctx, cancel = context.WithCancel(ctx)
		done = make(chan struct{})
		go func() {
			defer close(done)
			if code := app.Main(sctx, args, strings.NewReader(""), io.Discard, os.Stderr); code != 0 {
				fmt.Fprintf(os.Stderr, "portcullis demo exited %d\n", code)
			}
		}()
		stop = func() { cancel(); <-done }
	} else {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		serverPID = cmd.Process.Pid
		done = make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		stop = func() { _ = cmd.Process.Signal(os.Interrupt); <-done }
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "demo.json")); err == nil {
			return stop, nil
		}
		select {
		case <-done:
			return nil, errors.New("the server exited before it was ready")
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, errors.New("the server was not ready within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readDemo(path string) (demoInfo, error) {
	var d demoInfo
	b, err := os.ReadFile(path)
	if err != nil {
		return d, err
	}
	return d, json.Unmarshal(b, &d)
}

func newClient(caFile string, workers int, h2 bool) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no CA certificate in " + caFile)
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        workers * 2,
		MaxIdleConnsPerHost: workers * 2,
		MaxConnsPerHost:     workers,
		IdleConnTimeout:     time.Minute,
		ForceAttemptHTTP2:   h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func formRequest(u, auth, body, accept string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", auth)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return req, nil
}

func buildScenarios(ctx context.Context, c *http.Client, d demoInfo) ([]scenario, error) {
	acme := basic("acme-app", d.secret("acme-app"))
	reports := basic("reports-svc", d.secret("reports-svc"))
	gateway := basic("gateway", d.secret("gateway"))
	tokenURL, introURL := d.Issuer+"/token", d.Issuer+"/introspect"

	// A pool of live opaque tokens to introspect, so lookups are not all for one row.
	var pool []string
	for range 256 {
		req, err := formRequest(tokenURL, acme, "grant_type=client_credentials&scope=orders:read", "")
		if err != nil {
			return nil, err
		}
		body, err := do(ctx, c, req)
		if err != nil {
			return nil, fmt.Errorf("seed tokens: %w", err)
		}
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
			return nil, fmt.Errorf("seed tokens: %s", body)
		}
		pool = append(pool, "token="+url.QueryEscape(tr.AccessToken))
	}
	hasToken := func(prefix string) func([]byte) error {
		return func(b []byte) error {
			var tr struct {
				AccessToken string `json:"access_token"`
			}
			if err := json.Unmarshal(b, &tr); err != nil || !strings.HasPrefix(tr.AccessToken, prefix) {
				return fmt.Errorf("unexpected token response %.80s", b)
			}
			return nil
		}
	}
	active := func(b []byte) error {
		if !bytes.HasPrefix(b, []byte(`{"active":true`)) {
			return fmt.Errorf("not active: %.80s", b)
		}
		return nil
	}
	jwtAnswer := func(b []byte) error {
		if bytes.Count(b, []byte(".")) != 2 {
			return fmt.Errorf("not a JWT: %.80s", b)
		}
		return nil
	}
	return []scenario{
		{name: "opaque", target: ">= 5000/s", check: hasToken("pcat_"), next: func(uint64) (*http.Request, error) {
			return formRequest(tokenURL, acme, "grant_type=client_credentials&scope=orders:read", "")
		}},
		{name: "jwt", target: ">= 4000/s", check: hasToken("ey"), next: func(uint64) (*http.Request, error) {
			return formRequest(tokenURL, reports, "grant_type=client_credentials", "")
		}},
		{name: "introspect", target: ">= 10000/s", check: active, next: func(i uint64) (*http.Request, error) {
			return formRequest(introURL, gateway, pool[i%uint64(len(pool))], "")
		}},
		{name: "introspect-jwt", target: "-", check: jwtAnswer, next: func(i uint64) (*http.Request, error) {
			return formRequest(introURL, gateway, pool[i%uint64(len(pool))], "application/token-introspection+jwt")
		}},
	}, nil
}

func do(ctx context.Context, c *http.Client, req *http.Request) ([]byte, error) {
	resp, err := c.Do(req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("status %d: %.120s", resp.StatusCode, body)
	}
	return body, nil
}

// load runs s with workers for d and collects counts and latencies.
func load(ctx context.Context, c *http.Client, s scenario, workers int, d time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var seq, nerr atomic.Uint64
	var firstErr atomic.Value
	lats := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	cpu0 := cpuTime()
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				req, err := s.next(seq.Add(1))
				if err != nil {
					panic(err) // a bug in the harness, not in the server
				}
				t0 := time.Now()
				body, err := do(context.Background(), c, req)
				if err == nil {
					err = s.check(body)
				}
				local = append(local, time.Since(t0))
				if err != nil {
					nerr.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
			lats[w] = local
		}()
	}
	wg.Wait()
	r := result{name: s.name, target: s.target, elapsed: time.Since(start), errors: nerr.Load(), cpu: cpuTime() - cpu0}
	for _, l := range lats {
		r.lat = append(r.lat, l...)
	}
	r.requests = uint64(len(r.lat))
	if e, ok := firstErr.Load().(string); ok {
		r.firstErr = e
	}
	slices.Sort(r.lat)
	return r
}

// serverPID is the separate server process (-bin), whose CPU time counts too.
var serverPID int

// cpuTime is the user+system CPU time of this process and of the server process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	d := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if serverPID != 0 {
		d += procCPU(serverPID)
	}
	return d
}

// procCPU reads utime+stime of pid from /proc (Linux), in clock ticks of 10ms.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(fields[11], &ut)
	fmt.Sscan(fields[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func pct(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, int(float64(len(l))*p))].Round(10 * time.Microsecond)
}

func printTable(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trequests\terrors\treq/s\tp50\tp90\tp99\tCPUs used\tCPU/req\treq/s at 2 CPUs\ttarget\t")
	for _, r := range rs {
		rate := float64(r.requests-r.errors) / r.elapsed.Seconds()
		perReq := r.cpu / time.Duration(max(r.requests, 1))
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%v\t%v\t%v\t%.2f\t%v\t%.0f\t%s\t\n", r.name, r.requests, r.errors, rate,
			pct(r.lat, 0.5), pct(r.lat, 0.9), pct(r.lat, 0.99), r.cpu.Seconds()/r.elapsed.Seconds(),
			perReq.Round(time.Microsecond), 2/perReq.Seconds(), r.target)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nCPUs used is how many cores the run got (of 2; the rest went to other processes).")
	fmt.Fprintln(w, "CPU/req is the CPU time of the server and the load generator together per request;")
	fmt.Fprintln(w, "\"req/s at 2 CPUs\" is the rate that cost allows on two otherwise idle cores (other load on")
	fmt.Fprintln(w, "a shared machine lowers req/s but not CPU/req).")
	for _, r := range rs {
		if r.firstErr != "" {
			fmt.Fprintf(w, "%s: first error: %s\n", r.name, r.firstErr)
		}
	}
}
