package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// binary is the portcullis binary built once for this test run.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portcullis-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "portcullis")
	build := exec.Command("go", "build", "-o", binary, "github.com/portcullis/portcullis/cmd/portcullis")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building portcullis:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output safely.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// demoInfo is demo.json.
type demoInfo struct {
	Issuer   string `json:"issuer"`
	Gateway  string `json:"gateway"`
	Upstream string `json:"upstream"`
	Admin    string `json:"admin"`
	CAFile   string `json:"ca_file"`
	Clients  []struct {
		ClientID     string   `json:"client_id"`
		ClientSecret string   `json:"client_secret"`
		Scopes       []string `json:"scopes"`
		TokenFormat  string   `json:"token_format"`
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

// demo is a running `portcullis demo`.
type demo struct {
	info   demoInfo
	dir    string
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	http   *http.Client
}

// startDemo runs `portcullis demo --dir dir --ports auto` and waits until it has printed its
// walkthrough. The process is interrupted when the test ends, if it is still running.
func startDemo(t *testing.T, dir string) *demo {
	t.Helper()
	// demo.json is not removed first: a second run reuses the secrets it lists. Readiness is
	// the printed walkthrough, which the demo prints after writing demo.json.
	d := &demo{dir: dir, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(binary, "demo", "--dir", dir, "--ports", "auto")
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		if d.running() {
			d.stop(t, os.Interrupt)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(d.stdout.String(), "Press Ctrl-C to stop.") {
		if !d.running() {
			t.Fatalf("demo exited early (%v)\nstdout:\n%s\nstderr:\n%s", d.cmd.ProcessState, d.stdout, d.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo not ready in 60s\nstdout:\n%s\nstderr:\n%s", d.stdout, d.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(dir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d.info); err != nil {
		t.Fatalf("demo.json: %v", err)
	}
	d.http = httpClient(t, d.info.CAFile)
	return d
}

func (d *demo) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop sends sig and waits for the process to exit; it returns the exit code.
func (d *demo) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		t.Errorf("demo did not stop within 30s of %v\nstderr:\n%s", sig, d.stderr)
	}
	return d.cmd.ProcessState.ExitCode()
}

// httpClient trusts only the demo's CA.
func httpClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in the CA file")
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// postForm posts form to u with basic credentials and returns status and body.
func postForm(t *testing.T, c *http.Client, u, id, secret string, form url.Values, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// token gets an access token for a demo client.
func (d *demo) token(t *testing.T, id string) string {
	t.Helper()
	status, body := postForm(t, d.http, d.info.Issuer+"/token", id, d.info.secret(id), url.Values{"grant_type": {"client_credentials"}}, nil)
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if status != 200 || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		t.Fatalf("token for %s: %d %s", id, status, body)
	}
	return tr.AccessToken
}

// runCLI runs the binary with args and stdin and returns its exit code and output.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
	default:
		t.Fatalf("run %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}
