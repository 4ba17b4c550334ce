// Command gateway is the gateway's load harness. It measures the same small HTTPS upstream
// (bench/gateway/upstream, its own process) four ways, with the same load generator, in the
// same run:
//
//	direct         the upstream itself
//	bare proxy     a bare httputil.ReverseProxy in front (bench/gateway/bareproxy, its own
//	               process, the gateway's TLS and transport settings), carrying the opaque
//	               token, and again ("bare proxy, jwt") carrying the JWT the jwt case sends
//	gateway oauth  the real portcullis binary (issuer + gateway, from a demo-generated
//	               config) on an oauth route with a warm cache: one opaque token,
//	               introspected once, then served from the cache
//	gateway jwt    the same gateway on a jwt route: an internal client's at+jwt, verified
//	               once, then cached by hash
//	gateway oauth, limits
//	               the oauth route with a per-client and a per-address rate limit (memory
//	               backend, never reached): the cost of limiting, against the oauth case
//
// The load is closed-loop HTTP/1.1 keep-alive over TLS: -conns connections per case, each
// sending its next request when the last answer arrived. After a warm-up, the cases take
// turns in half-second slices until each had -duration measured, so load from elsewhere on
// the machine falls on all of them alike. Then an "equal load" run sends a fixed rate (-load
// times the bare proxy's throughput, open loop, latency measured from each request's
// scheduled time) to compare p99 at the same load. CPU per request comes from /proc/PID/stat
// (utime+stime) over the measured slices.
//
//	go run ./bench/gateway                                  # builds the binaries, 10s per case
//	go run ./bench/gateway -duration 10s -conns 32 -rounds 3
//	go run ./bench/gateway -bin /tmp/portcullis             # an already built portcullis
//
// Everything shares the machine, as issue 3's targets assume: compare the ratios, and note
// the load average printed with each round.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

func main() {
	os.Exit(run())
}

type options struct {
	duration, warmup time.Duration
	conns, rounds    int
	load             float64
	bin, dir         string
	keep             bool
	barePprof        string
	only             string
	noRequestID      bool
}

func run() int {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each case")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each case")
	flag.IntVar(&o.conns, "conns", 32, "keep-alive connections (closed loop: one request in flight each)")
	flag.IntVar(&o.rounds, "rounds", 1, "rounds of the four cases (interleaved, to spread machine noise)")
	flag.Float64Var(&o.load, "load", 0.6, "equal-load rate as a fraction of the bare proxy's throughput (0: skip)")
	flag.StringVar(&o.bin, "bin", "", "portcullis binary to run (default: go build ./cmd/portcullis)")
	flag.StringVar(&o.dir, "dir", "", "working directory (default: a new temporary one)")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (config, logs)")
	flag.StringVar(&o.only, "only", "", "comma-separated cases to run (direct, bare, bare-jwt, oauth, jwt, oauth-limit); the bare proxy cases they compare with always run")
	flag.BoolVar(&o.noRequestID, "no-request-id", false, "run the gateway with forward_request_id: false (upstreams get no X-Request-Id, as from the bare proxy)")
	flag.StringVar(&o.barePprof, "bare-pprof", "", "let the bare proxy serve net/http/pprof on this address (to profile the reference)")
	flag.Parse()
	if err := bench(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/gateway:", err)
		return 1
	}
	return 0
}

func bench(o options) error {
	if o.dir == "" {
		d, err := os.MkdirTemp("", "portcullis-gwbench-")
		if err != nil {
			return err
		}
		o.dir = d
	}
	if !o.keep {
		defer os.RemoveAll(o.dir)
	} else {
		fmt.Println("working directory:", o.dir)
	}
	bins, err := buildBinaries(o)
	if err != nil {
		return err
	}
	procs := &processes{}
	defer procs.stopAll()

	demoDir := filepath.Join(o.dir, "demo")
	info, err := prepareDemo(bins.portcullis, demoDir)
	if err != nil {
		return err
	}
	up, err := procs.startListener("upstream", bins.upstream, demoDir,
		"-cert", filepath.Join(demoDir, "upstream.pem"), "-key", filepath.Join(demoDir, "upstream-key.pem"))
	if err != nil {
		return err
	}
	cfgPath, err := writeBenchConfig(demoDir, "https://"+up.addr, !o.noRequestID)
	if err != nil {
		return err
	}
	gw, err := procs.start("portcullis", bins.portcullis, demoDir, "serve", "--config", cfgPath)
	if err != nil {
		return err
	}
	bare, err := procs.startListener("bareproxy", bins.bareproxy, demoDir,
		"-cert", filepath.Join(demoDir, "gateway.pem"), "-key", filepath.Join(demoDir, "gateway-key.pem"),
		"-target", "https://"+up.addr, "-ca", info.CAFile, "-pprof", o.barePprof)
	if err != nil {
		return err
	}
	roots, err := loadPool(info.CAFile)
	if err != nil {
		return err
	}
	api := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	if err := waitReady(api, info, gw); err != nil {
		return err
	}
	gwAddr := hostOf(info.Gateway)
	// Every case sends a bearer token, as a client of the API would: the bare proxy and the
	// upstream pass it on untouched; the gateway checks it and forwards its own JWT.
	cases := []*benchCase{
		{id: "direct", name: "direct", addr: up.addr, path: "/api/orders/A-1001", token: "opaque", ref: 1},
		{id: "bare", name: "bare proxy", addr: bare.addr, proc: bare, path: "/api/orders/A-1001", token: "opaque", ref: 1},
		{id: "bare-jwt", name: "bare proxy, jwt", addr: bare.addr, proc: bare, path: "/api/orders/A-1001", token: "jwt", ref: 1},
		{id: "oauth", name: "gateway oauth", addr: gwAddr, proc: gw, path: "/bench/oauth/A-1001", token: "opaque", metric: "portcullis_gateway_introspections_total", ref: 1},
		{id: "jwt", name: "gateway jwt", addr: gwAddr, proc: gw, path: "/bench/jwt/A-1001", token: "jwt", ref: 2},
		{id: "oauth-limit", name: "gateway oauth, limits", addr: gwAddr, proc: gw, path: "/bench/limited/A-1001", token: "opaque", ref: 1},
	}
	if o.only != "" {
		cases = selectCases(cases, strings.Split(o.only, ","))
	}
	tlsCfg := &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}, ClientSessionCache: tls.NewLRUClientSessionCache(256)}
	for _, c := range cases {
		c.tls = tlsCfg
	}
	// fresh gets new tokens (access tokens live 5 minutes) and sends each case's request once:
	// the opaque token is introspected and the JWT verified here, before anything is measured.
	fresh := func() error {
		tokens := map[string]string{}
		for kind, client := range map[string]string{"opaque": "acme-app", "jwt": "reports-svc"} {
			t, err := token(api, info, client)
			if err != nil {
				return err
			}
			tokens[kind] = t
		}
		for _, c := range cases {
			c.req = request(c.path, tokens[c.token])
			// The gateway may not have the issuer's metadata yet (it asks before the issuer
			// listens, and retries after a pause).
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				err := c.once()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s: %w", c.name, err)
				}
			}
		}
		return nil
	}

	fmt.Printf("gateway benchmark: %d connections, HTTP/1.1 keep-alive over TLS, %v warm-up + %v per case, %d CPUs\n",
		o.conns, o.warmup, o.duration, numCPU())
	var all [][]result
	for round := 1; round <= o.rounds; round++ {
		if err := fresh(); err != nil {
			return err
		}
		la := loadavg()
		before := make([]float64, len(cases))
		for i, c := range cases {
			before[i] = scrape(api, info.Admin, c.metric)
		}
		rs, err := interleaved(cases, o, up, func(c *benchCase, pool []*conn, d time.Duration, acc *accum) {
			closedSlice(c, pool, d, acc)
		})
		if err != nil {
			return err
		}
		for i, c := range cases {
			rs[i].checks = scrape(api, info.Admin, c.metric) - before[i]
		}
		all = append(all, rs)
		fmt.Printf("\nround %d (load average before %s, after %s)\n", round, la, loadavg())
		printClosed(rs)
	}
	if o.rounds > 1 {
		printSummary(all)
	}
	if o.load > 0 {
		bareRate := median(all, slices.IndexFunc(cases, func(c *benchCase) bool { return c.id == "bare" }), func(r result) float64 { return r.rps })
		rate := o.load * bareRate
		if err := fresh(); err != nil {
			return err
		}
		la := loadavg()
		lo := o
		lo.conns = max(4*o.conns, 64) // enough in flight that the generator never lags the schedule
		rs, err := interleaved(cases, lo, up, func(c *benchCase, pool []*conn, d time.Duration, acc *accum) {
			openSlice(c, pool, rate, d, acc)
		})
		if err != nil {
			return err
		}
		fmt.Printf("\nequal load: %.0f req/s to every case (%.0f%% of the bare proxy's throughput), open loop over %d connections, latency from the scheduled send time (load average before %s, after %s)\n",
			rate, 100*o.load, lo.conns, la, loadavg())
		printOpen(rs, rate)
	}
	return nil
}

// binaries are the programs the harness runs.
type binaries struct{ portcullis, upstream, bareproxy string }

func buildBinaries(o options) (binaries, error) {
	root, err := moduleRoot()
	if err != nil {
		return binaries{}, err
	}
	binDir := filepath.Join(o.dir, "bin")
	b := binaries{
		portcullis: o.bin,
		upstream:   filepath.Join(binDir, "upstream"),
		bareproxy:  filepath.Join(binDir, "bareproxy"),
	}
	pkgs := map[string]string{b.upstream: "./bench/gateway/upstream", b.bareproxy: "./bench/gateway/bareproxy"}
	if b.portcullis == "" {
		b.portcullis = filepath.Join(binDir, "portcullis")
		pkgs[b.portcullis] = "./cmd/portcullis"
	}
	for out, pkg := range pkgs {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return b, fmt.Errorf("go build %s: %w", pkg, err)
		}
	}
	return b, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the portcullis module")
	}
	return filepath.Dir(mod), nil
}

// demoInfo is the part of demo.json the harness reads.
type demoInfo struct {
	Issuer  string `json:"issuer"`
	Gateway string `json:"gateway"`
	Admin   string `json:"admin"`
	CAFile  string `json:"ca_file"`
	Clients []struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	} `json:"clients"`
}

// prepareDemo lets `portcullis demo --ports auto` write a config, keys, a CA, certificates
// and client secrets into dir, then stops it: the harness runs `portcullis serve` on a
// variant of that config.
func prepareDemo(bin, dir string) (demoInfo, error) {
	var info demoInfo
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return info, err
	}
	logf, err := os.Create(filepath.Join(dir, "..", "demo.log"))
	if err != nil {
		return info, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "demo", "--dir", dir, "--ports", "auto")
	cmd.Stdout, cmd.Stderr = io.Discard, logf
	if err := cmd.Start(); err != nil {
		return info, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	path := filepath.Join(dir, "demo.json")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &info) == nil {
			break
		}
		select {
		case err := <-done:
			return info, fmt.Errorf("portcullis demo exited: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return info, errors.New("portcullis demo was not ready within 60s")
		}
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	return info, nil
}

// writeBenchConfig replaces the demo config's routes with the two measured ones, both to
// the benchmark's upstream, and returns the new file's path.
func writeBenchConfig(dir, upstream string, forwardRequestID bool) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "portcullis.yaml"))
	if err != nil {
		return "", err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return "", err
	}
	gw, ok := cfg["gateway"].(map[string]any)
	if !ok {
		return "", errors.New("the demo config has no gateway section")
	}
	gw["forward_request_id"] = forwardRequestID
	up := map[string]any{"url": upstream, "ca": "ca.pem"}
	gw["routes"] = []any{
		map[string]any{
			"name": "bench-oauth", "match": map[string]any{"path_prefix": "/bench/oauth", "methods": []string{"GET"}},
			"upstream": up, "auth": map[string]any{"method": "oauth", "scopes": []string{"orders:read"}},
		},
		map[string]any{
			"name": "bench-jwt", "match": map[string]any{"path_prefix": "/bench/jwt", "methods": []string{"GET"}},
			"upstream": up, "auth": map[string]any{"method": "jwt", "scopes": []string{"reports:read"}},
		},
		// The oauth route again with a per-client and a per-address limit (memory backend)
		// set high enough never to refuse: what checking limits costs.
		map[string]any{
			"name": "bench-limited", "match": map[string]any{"path_prefix": "/bench/limited", "methods": []string{"GET"}},
			"upstream": up, "auth": map[string]any{"method": "oauth", "scopes": []string{"orders:read"}},
			"rate_limit": []any{
				map[string]any{"per": "client", "rate": "1000000/s"},
				map[string]any{"per": "ip", "rate": "1000000/s"},
			},
		},
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "bench.yaml")
	return path, os.WriteFile(path, out, 0o600)
}

// process is a child the harness started.
type process struct {
	name string
	cmd  *exec.Cmd
	addr string // for listeners: the address they printed
	done chan struct{}
}

type processes struct{ list []*process }

func (ps *processes) start(name, bin, dir string, args ...string) (*process, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	ps.list = append(ps.list, p)
	return p, nil
}

// startListener starts a program that prints "listening ADDR" and waits for that line.
func (ps *processes) startListener(name, bin, dir string, args ...string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stderr = dir, os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	ps.list = append(ps.list, p)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	select {
	case l := <-lines:
		addr, ok := strings.CutPrefix(l, "listening ")
		if !ok {
			return nil, fmt.Errorf("%s said %q", name, l)
		}
		p.addr = addr
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited", name)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%s did not start", name)
	}
}

func (ps *processes) stopAll() {
	for _, p := range ps.list {
		_ = p.cmd.Process.Signal(os.Interrupt)
	}
	for _, p := range ps.list {
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// cpu returns the process's user+system CPU time so far (from /proc/PID/stat, in USER_HZ
// ticks of 10ms).
func (p *process) cpu() time.Duration {
	if p == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name may contain spaces; the fields we want come after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificates in %s", file)
	}
	return pool, nil
}

// waitReady waits for the admin listener's /readyz and the gateway's port.
func waitReady(c *http.Client, info demoInfo, gw *process) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := c.Get(info.Admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if conn, err := net.DialTimeout("tcp", hostOf(info.Gateway), time.Second); err == nil {
					conn.Close()
					return nil
				}
			}
		}
		select {
		case <-gw.done:
			return errors.New("portcullis serve exited; see its log in the working directory (-keep)")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("portcullis serve was not ready within 60s")
		}
	}
}

// token gets an access token for a demo client (client_credentials).
func token(c *http.Client, info demoInfo, clientID string) (string, error) {
	secret := ""
	for _, cl := range info.Clients {
		if cl.ClientID == clientID {
			secret = cl.ClientSecret
		}
	}
	req, err := http.NewRequest("POST", info.Issuer+"/token", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		return "", fmt.Errorf("token for %s: status %d", clientID, resp.StatusCode)
	}
	return out.AccessToken, nil
}

// scrape sums a counter family from the admin listener's /metrics (0 when name is "").
func scrape(c *http.Client, admin, name string) float64 {
	if name == "" {
		return 0
	}
	resp, err := c.Get(admin + "/metrics")
	if err != nil {
		return math.NaN()
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			sum += v
		}
	}
	return sum
}

func hostOf(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Host
}

// request is the raw HTTP/1.1 request a case sends, over and over.
func request(path, bearer string) []byte {
	var b strings.Builder
	b.WriteString("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: portcullis-bench\r\nAccept: application/json\r\n")
	if bearer != "" {
		b.WriteString("Authorization: Bearer " + bearer + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// selectCases keeps the named cases and the bare proxy cases they are compared with, in
// their order, and renumbers the references.
func selectCases(all []*benchCase, ids []string) []*benchCase {
	keep := map[string]bool{"bare": true}
	for _, id := range ids {
		keep[strings.TrimSpace(id)] = true
		if strings.TrimSpace(id) == "jwt" {
			keep["bare-jwt"] = true
		}
	}
	var out []*benchCase
	index := map[int]int{}
	for i, c := range all {
		if keep[c.id] {
			index[i] = len(out)
			out = append(out, c)
		}
	}
	for _, c := range out {
		c.ref = index[c.ref]
	}
	return out
}

// benchCase is one column of the comparison.
type benchCase struct {
	id     string
	name   string
	addr   string
	path   string
	token  string // which token it sends: opaque or jwt
	req    []byte
	proc   *process // the proxy whose CPU is reported (nil: direct)
	metric string   // a counter that must not move during the run (the opaque token was introspected once)
	ref    int      // the case the ratios compare with: the bare proxy carrying the same token
	tls    *tls.Config
}

// conn is one keep-alive HTTP/1.1 connection of the load generator.
type conn struct {
	c  *benchCase
	tc *tls.Conn
	br *bufio.Reader
}

func (c *benchCase) dial() (*conn, error) {
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", c.addr, c.tls)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, tc: tc, br: bufio.NewReaderSize(tc, 16<<10)}, nil
}

// roundTrip sends the case's request and reads the whole answer, which must be 200.
func (k *conn) roundTrip() error {
	_ = k.tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := k.tc.Write(k.c.req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	if resp.Close {
		return errors.New("the server closed the connection")
	}
	return nil
}

func (k *conn) close() { _ = k.tc.Close() }

func (c *benchCase) once() error {
	k, err := c.dial()
	if err != nil {
		return err
	}
	defer k.close()
	return k.roundTrip()
}

// result is one case's measurement.
type result struct {
	name        string
	requests    int
	errors      int
	firstErr    string
	elapsed     time.Duration
	rps         float64
	p50, p99    time.Duration
	p999        time.Duration
	proxyCPU    time.Duration // of the proxy process (0 for direct)
	upCPU       time.Duration
	loadCPU     time.Duration
	checks      float64 // introspection calls during the run (must be 0: the cache is warm)
	targetRate  float64
	hasProxyCPU bool
	ref         int
}

// accum collects one case's measurements over all of its slices.
type accum struct {
	mu       sync.Mutex
	lat      []time.Duration
	errors   int
	firstErr string
	elapsed  time.Duration
	proxyCPU time.Duration
	upCPU    time.Duration
	loadCPU  time.Duration
}

func (a *accum) add(lat []time.Duration, errs int, first string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lat = append(a.lat, lat...)
	a.errors += errs
	if a.firstErr == "" {
		a.firstErr = first
	}
}

// sliceLen is how long one case runs before the next case takes over. The cases take turns
// in short slices for the whole run, so a burst of load from elsewhere on the machine falls
// on all of them alike rather than on whichever case happened to be running.
const sliceLen = 500 * time.Millisecond

// interleaved opens o.conns keep-alive connections per case, warms every case up, then runs
// the cases in turns of sliceLen until each had o.duration, measuring only inside slices.
func interleaved(cases []*benchCase, o options, up *process, run func(*benchCase, []*conn, time.Duration, *accum)) ([]result, error) {
	pools := make([][]*conn, len(cases))
	defer func() {
		for _, pool := range pools {
			for _, k := range pool {
				if k != nil {
					k.close()
				}
			}
		}
	}()
	for i, c := range cases {
		for range o.conns {
			k, err := c.dial()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			pools[i] = append(pools[i], k)
		}
		run(c, pools[i], o.warmup, &accum{})
	}
	accs := make([]*accum, len(cases))
	for i := range accs {
		accs[i] = &accum{}
	}
	turns := int((o.duration + sliceLen - 1) / sliceLen)
	for range turns {
		for i, c := range cases {
			acc := accs[i]
			cpu0, up0, self0 := c.proc.cpu(), up.cpu(), selfCPU()
			t0 := time.Now()
			run(c, pools[i], sliceLen, acc)
			acc.elapsed += time.Since(t0)
			acc.proxyCPU += c.proc.cpu() - cpu0
			acc.upCPU += up.cpu() - up0
			acc.loadCPU += selfCPU() - self0
		}
	}
	out := make([]result, len(cases))
	for i, c := range cases {
		out[i] = summarize(c, accs[i])
	}
	return out, nil
}

// closedSlice runs every connection of pool for d, each sending its next request as soon as
// the last answer arrived. A connection that fails is replaced.
func closedSlice(c *benchCase, pool []*conn, d time.Duration, acc *accum) {
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range pool {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			errs, first := 0, ""
			for time.Now().Before(end) {
				if pool[i] == nil {
					k, err := c.dial()
					if err != nil {
						errs, first = errs+1, firstOf(first, err)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					pool[i] = k
				}
				start := time.Now()
				if err := pool[i].roundTrip(); err != nil {
					pool[i].close()
					pool[i] = nil
					errs, first = errs+1, firstOf(first, err)
					continue
				}
				lat = append(lat, time.Since(start))
			}
			acc.add(lat, errs, first)
		}()
	}
	wg.Wait()
}

// openSlice sends rate requests per second for d over the connections of pool, whether or
// not earlier answers came back; each latency counts from when the request was due, so a
// backlog shows (no coordinated omission).
func openSlice(c *benchCase, pool []*conn, rate float64, d time.Duration, acc *accum) {
	interval := time.Duration(float64(time.Second) / rate)
	total := int64(d / interval)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for i := range pool {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			errs, first := 0, ""
			for {
				n := next.Add(1) - 1
				if n >= total {
					break
				}
				due := start.Add(time.Duration(n) * interval)
				if w := time.Until(due); w > 0 {
					time.Sleep(w)
				}
				if pool[i] == nil {
					k, err := c.dial()
					if err != nil {
						errs, first = errs+1, firstOf(first, err)
						continue
					}
					pool[i] = k
				}
				if err := pool[i].roundTrip(); err != nil {
					pool[i].close()
					pool[i] = nil
					errs, first = errs+1, firstOf(first, err)
					continue
				}
				lat = append(lat, time.Since(due))
			}
			acc.add(lat, errs, first)
		}()
	}
	wg.Wait()
}

func firstOf(first string, err error) string {
	if first != "" {
		return first
	}
	return err.Error()
}

func summarize(c *benchCase, a *accum) result {
	slices.Sort(a.lat)
	r := result{
		name: c.name, requests: len(a.lat), errors: a.errors, firstErr: a.firstErr, elapsed: a.elapsed,
		proxyCPU: a.proxyCPU, upCPU: a.upCPU, loadCPU: a.loadCPU, hasProxyCPU: c.proc != nil, ref: c.ref,
	}
	if n := len(a.lat); n > 0 {
		r.rps = float64(n) / a.elapsed.Seconds()
		r.p50 = a.lat[n/2]
		r.p99 = a.lat[min(n-1, n*99/100)]
		r.p999 = a.lat[min(n-1, n*999/1000)]
	}
	return r
}

func perReq(d time.Duration, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return float64(d.Microseconds()) / float64(n)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func printClosed(rs []result) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\treq/s\t×bare\tp50 ms\t×bare\tp99 ms\t×bare\tproxy CPU µs/req\t×bare\tupstream µs/req\tloadgen µs/req\terrors\tintrospections\t")
	for _, r := range rs {
		bare := rs[r.ref]
		cpu, cpuRatio := "-", "-"
		if r.hasProxyCPU {
			cpu = fmt.Sprintf("%.0f", perReq(r.proxyCPU, r.requests))
			cpuRatio = fmt.Sprintf("%.2f", perReq(r.proxyCPU, r.requests)/perReq(bare.proxyCPU, bare.requests))
		}
		checks := "-"
		if r.name == "gateway oauth" {
			checks = fmt.Sprintf("%.0f", r.checks)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%.0f\t%.0f\t%d\t%s\t\n",
			r.name, r.rps, r.rps/bare.rps, ms(r.p50), ms(r.p50)/ms(bare.p50), ms(r.p99), ms(r.p99)/ms(bare.p99),
			cpu, cpuRatio, perReq(r.upCPU, r.requests), perReq(r.loadCPU, r.requests), r.errors, checks)
	}
	_ = tw.Flush()
	for _, r := range rs {
		if r.firstErr != "" {
			fmt.Printf("  %s: first error: %s\n", r.name, r.firstErr)
		}
	}
}

func printOpen(rs []result, rate float64) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\treq/s\tp50 ms\tp99 ms\tp99.9 ms\tp99 − bare ms\tproxy CPU µs/req\terrors\t\t")
	saturated := false
	for _, r := range rs {
		bare := rs[r.ref]
		cpu := "-"
		if r.hasProxyCPU {
			cpu = fmt.Sprintf("%.0f", perReq(r.proxyCPU, r.requests))
		}
		note := ""
		if r.rps < 0.97*rate {
			note, saturated = "saturated", true
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%+.2f\t%s\t%d\t%s\t\n",
			r.name, r.rps, ms(r.p50), ms(r.p99), ms(r.p999), ms(r.p99)-ms(bare.p99), cpu, r.errors, note)
	}
	_ = tw.Flush()
	if saturated {
		fmt.Println("  a saturated case did not keep up with the rate: its latencies measure a queue, not the proxy; rerun with a lower -load")
	}
	for _, r := range rs {
		if r.firstErr != "" {
			fmt.Printf("  %s: first error: %s\n", r.name, r.firstErr)
		}
	}
}

// median returns the median over rounds of f applied to case i.
func median(all [][]result, i int, f func(result) float64) float64 {
	var v []float64
	for _, rs := range all {
		v = append(v, f(rs[i]))
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func printSummary(all [][]result) {
	fmt.Printf("\nmedian over %d rounds (ratios to the bare proxy of the same round)\n", len(all))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\treq/s\t×bare\tp50 ×bare\tp99 ×bare\tproxy CPU µs/req\t×bare\t")
	for i, r := range all[0] {
		cpu, cpuRatio := "-", "-"
		if r.hasProxyCPU {
			cpu = fmt.Sprintf("%.0f", median(all, i, func(r result) float64 { return perReq(r.proxyCPU, r.requests) }))
			cpuRatio = fmt.Sprintf("%.2f", medianRatio(all, i, func(r result) float64 { return perReq(r.proxyCPU, r.requests) }))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n", r.name,
			median(all, i, func(r result) float64 { return r.rps }),
			medianRatio(all, i, func(r result) float64 { return r.rps }),
			medianRatio(all, i, func(r result) float64 { return ms(r.p50) }),
			medianRatio(all, i, func(r result) float64 { return ms(r.p99) }),
			cpu, cpuRatio)
	}
	_ = tw.Flush()
}

func medianRatio(all [][]result, i int, f func(result) float64) float64 {
	var v []float64
	for _, rs := range all {
		v = append(v, f(rs[i])/f(rs[rs[i].ref]))
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func numCPU() int { return runtime.NumCPU() }
