// Command gateway is the gateway's load harness. It measures the same small HTTPS upstream
// (bench/gateway/upstream, its own process) four ways, with the same load generator, in the
// same run:
//
//	direct         the upstream itself
//	bare proxy     a bare httputil.ReverseProxy in front (bench/gateway/bareproxy, its own
//	               process, the gateway's TLS and transport settings)
//	gateway oauth  the real portcullis binary (issuer + gateway, from a demo-generated
//	               config) on an oauth route with a warm cache: one opaque token,
//	               introspected once, then served from the cache
//	gateway jwt    the same gateway on a jwt route: an internal client's at+jwt, verified
//	               once, then cached by hash
//
// The load is closed-loop HTTP/1.1 keep-alive over TLS: -conns connections, each sending its
// next request when the last answer arrived, a warm-up, then -duration measured. Then an
// "equal load" run sends a fixed rate (-load times the bare proxy's throughput, open loop,
// latency measured from each request's scheduled time) to compare p99 at the same load.
// CPU per request comes from /proc/PID/stat (utime+stime) over the measured window.
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
}

func run() int {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each case")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured load before each case")
	flag.IntVar(&o.conns, "conns", 32, "keep-alive connections (closed loop: one request in flight each)")
	flag.IntVar(&o.rounds, "rounds", 1, "rounds of the four cases (interleaved, to spread machine noise)")
	flag.Float64Var(&o.load, "load", 0.7, "equal-load rate as a fraction of the bare proxy's throughput (0: skip)")
	flag.StringVar(&o.bin, "bin", "", "portcullis binary to run (default: go build ./cmd/portcullis)")
	flag.StringVar(&o.dir, "dir", "", "working directory (default: a new temporary one)")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (config, logs)")
	flag.StringVar(&o.only, "only", "", "comma-separated cases to run (direct, bare, bare-jwt, oauth, jwt); the bare proxy cases they compare with always run")
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
	cfgPath, err := writeBenchConfig(demoDir, "https://"+up.addr)
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
	opaque, err := token(api, info, "acme-app")
	if err != nil {
		return err
	}
	jwt, err := token(api, info, "reports-svc")
	if err != nil {
		return err
	}
	gwAddr := hostOf(info.Gateway)
	// Every case sends a bearer token, as a client of the API would: the bare proxy and the
	// upstream pass it on untouched; the gateway checks it and forwards its own JWT.
	cases := []*benchCase{
		{id: "direct", name: "direct", addr: up.addr, req: request("/api/orders/A-1001", opaque), ref: 1},
		{id: "bare", name: "bare proxy", addr: bare.addr, proc: bare, req: request("/api/orders/A-1001", opaque), ref: 1},
		{id: "bare-jwt", name: "bare proxy, jwt", addr: bare.addr, proc: bare, req: request("/api/orders/A-1001", jwt), ref: 1},
		{id: "oauth", name: "gateway oauth", addr: gwAddr, proc: gw, req: request("/bench/oauth/A-1001", opaque), metric: "portcullis_gateway_introspections_total", ref: 1},
		{id: "jwt", name: "gateway jwt", addr: gwAddr, proc: gw, req: request("/bench/jwt/A-1001", jwt), ref: 2},
	}
	if o.only != "" {
		cases = selectCases(cases, strings.Split(o.only, ","))
	}
	tlsCfg := &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}, ClientSessionCache: tls.NewLRUClientSessionCache(256)}
	for _, c := range cases {
		c.tls = tlsCfg
		// The token is checked (introspected, verified) here. The gateway may not have the
		// issuer's metadata yet (it asks before the issuer listens, and retries after a pause).
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

	fmt.Printf("gateway benchmark: %d connections, HTTP/1.1 keep-alive over TLS, %v warm-up + %v per case, %d CPUs\n",
		o.conns, o.warmup, o.duration, numCPU())
	var all [][]result
	for round := 1; round <= o.rounds; round++ {
		la := loadavg()
		var rs []result
		for _, c := range cases {
			before := scrape(api, info.Admin, c.metric)
			r := closedLoop(c, o.conns, o.warmup, o.duration, up)
			r.checks = scrape(api, info.Admin, c.metric) - before
			rs = append(rs, r)
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
		la := loadavg()
		var rs []result
		for _, c := range cases {
			rs = append(rs, openLoop(c, o.conns, rate, o.duration, up))
		}
		fmt.Printf("\nequal load: %.0f req/s to every case (%.0f%% of the bare proxy's throughput), open loop, latency from the scheduled send time (load average before %s, after %s)\n",
			rate, 100*o.load, la, loadavg())
		printOpen(rs)
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
	cmd := exec.Command(bin, "demo", "--dir", dir, "--ports", "auto")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
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
func writeBenchConfig(dir, upstream string) (string, error) {
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

// worker state shared by the load loops.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errors   int
	firstErr string
}

func (r *recorder) add(lat []time.Duration, errs int, first string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat = append(r.lat, lat...)
	r.errors += errs
	if r.firstErr == "" {
		r.firstErr = first
	}
}

const (
	phaseWarm int32 = iota
	phaseMeasure
	phaseStop
)

// closedLoop runs conns connections that each send a request as soon as the last answer
// arrived: warm-up, then the measured window.
func closedLoop(c *benchCase, conns int, warmup, dur time.Duration, up *process) result {
	var phase atomic.Int32
	rec := &recorder{}
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			errs, first := 0, ""
			var k *conn
			for phase.Load() != phaseStop {
				if k == nil {
					var err error
					if k, err = c.dial(); err != nil {
						errs, first = errs+1, firstOf(first, err)
						time.Sleep(10 * time.Millisecond)
						continue
					}
				}
				start := time.Now()
				err := k.roundTrip()
				measuring := phase.Load() == phaseMeasure
				if err != nil {
					k.close()
					k = nil
					if measuring {
						errs, first = errs+1, firstOf(first, err)
					}
					continue
				}
				if measuring {
					lat = append(lat, time.Since(start))
				}
			}
			if k != nil {
				k.close()
			}
			rec.add(lat, errs, first)
		}()
	}
	time.Sleep(warmup)
	cpu0, up0, self0 := c.proc.cpu(), up.cpu(), selfCPU()
	t0 := time.Now()
	phase.Store(phaseMeasure)
	time.Sleep(dur)
	phase.Store(phaseStop)
	elapsed := time.Since(t0)
	cpu1, up1, self1 := c.proc.cpu(), up.cpu(), selfCPU()
	wg.Wait()
	return summarize(c, rec, elapsed, cpu1-cpu0, up1-up0, self1-self0)
}

// openLoop sends rate requests per second for dur over conns connections; each request's
// latency counts from when it was due, so a backlog shows (no coordinated omission).
func openLoop(c *benchCase, conns int, rate float64, dur time.Duration, up *process) result {
	interval := time.Duration(float64(time.Second) / rate)
	warm := min(time.Second, dur/5)
	total := int64((warm + dur) / interval)
	warmN := int64(warm / interval)
	var next atomic.Int64
	rec := &recorder{}
	var wg sync.WaitGroup
	var cpu0, up0, self0 time.Duration
	var t0 time.Time
	var mark sync.Once
	start := time.Now().Add(50 * time.Millisecond)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			errs, first := 0, ""
			k, err := c.dial()
			if err != nil {
				rec.add(nil, 1, err.Error())
				return
			}
			for {
				i := next.Add(1) - 1
				if i >= total {
					break
				}
				due := start.Add(time.Duration(i) * interval)
				if i == warmN {
					mark.Do(func() { cpu0, up0, self0, t0 = c.proc.cpu(), up.cpu(), selfCPU(), time.Now() })
				}
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				if k == nil {
					if k, err = c.dial(); err != nil {
						errs, first = errs+1, firstOf(first, err)
						continue
					}
				}
				err := k.roundTrip()
				if err != nil {
					k.close()
					k = nil
				}
				if i < warmN {
					continue
				}
				if err != nil {
					errs, first = errs+1, firstOf(first, err)
					continue
				}
				lat = append(lat, time.Since(due))
			}
			if k != nil {
				k.close()
			}
			rec.add(lat, errs, first)
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	r := summarize(c, rec, elapsed, c.proc.cpu()-cpu0, up.cpu()-up0, selfCPU()-self0)
	r.targetRate = rate
	return r
}

func firstOf(first string, err error) string {
	if first != "" {
		return first
	}
	return err.Error()
}

func summarize(c *benchCase, rec *recorder, elapsed, proxyCPU, upCPU, loadCPU time.Duration) result {
	slices.Sort(rec.lat)
	r := result{
		name: c.name, requests: len(rec.lat), errors: rec.errors, firstErr: rec.firstErr, elapsed: elapsed,
		proxyCPU: proxyCPU, upCPU: upCPU, loadCPU: loadCPU, hasProxyCPU: c.proc != nil, ref: c.ref,
	}
	if n := len(rec.lat); n > 0 {
		r.rps = float64(n) / elapsed.Seconds()
		r.p50 = rec.lat[n/2]
		r.p99 = rec.lat[min(n-1, n*99/100)]
		r.p999 = rec.lat[min(n-1, n*999/1000)]
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

func printOpen(rs []result) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\treq/s\tp50 ms\tp99 ms\tp99.9 ms\tp99 − bare ms\tproxy CPU µs/req\terrors\t")
	for _, r := range rs {
		bare := rs[r.ref]
		cpu := "-"
		if r.hasProxyCPU {
			cpu = fmt.Sprintf("%.0f", perReq(r.proxyCPU, r.requests))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%+.2f\t%s\t%d\t\n",
			r.name, r.rps, ms(r.p50), ms(r.p99), ms(r.p999), ms(r.p99)-ms(bare.p99), cpu, r.errors)
	}
	_ = tw.Flush()
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
