package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/events"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/tokencheck"
	"github.com/portcullis/portcullis/jwtverify"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		in     string
		tok    string
		scheme bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  a-b.c_d~e+f/g==", "a-b.c_d~e+f/g==", true},
		{"Bearer ", "", true},
		{"Bearer a b", "", true},
		{"Bearer a=b", "", true},
		{"Bearer a\x00", "", true},
		{"Bearer " + strings.Repeat("a", 16<<10+1), "", true},
		{"Basic Zm9vOmJhcg==", "", false},
		{"DPoP abc", "", false},
		{"Bearerabc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		tok, scheme := bearerToken(tt.in)
		if tok != tt.tok || scheme != tt.scheme {
			t.Errorf("bearerToken(%.40q) = %q, %v; want %q, %v", tt.in, tok, scheme, tt.tok, tt.scheme)
		}
	}
}

// FuzzBearerToken: an accepted token is RFC 6750 b64token syntax and parses back to itself.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b.c", "Bearer a==", "Basic x", "Bearer a b", "Bearer =a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		tok, _ := bearerToken(in)
		if tok == "" {
			return
		}
		body := strings.TrimRight(tok, "=")
		for i := 0; i < len(body); i++ {
			c := body[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
				t.Fatalf("token %q holds %q", tok, c)
			}
		}
		if again, ok := bearerToken("Bearer " + tok); !ok || again != tok {
			t.Fatalf("%q does not parse back: %q", tok, again)
		}
	})
}

// FuzzAppendJSONString: whatever a client puts in a path, the access log line stays one valid
// JSON line that decodes to the value (invalid UTF-8 replaced).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"/a", "/a\"b", "/a\nb", "\xff", "/\u2028", "</script>", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		if strings.ContainsAny(string(b), "\n\r") {
			t.Fatalf("line break in %q", b)
		}
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q → %q: %v", s, b, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); got != want && utf8.ValidString(s) {
			t.Fatalf("%q decodes to %q", s, got)
		}
	})
}

func TestLogLineIsJSON(t *testing.T) {
	l := logLine{time: time.Unix(1700000000, 123), requestID: "ID", method: "GET", path: "/a\"\n\xff", route: "r",
		status: 200, bytes: 5, latency: 1500 * time.Microsecond, clientIP: "127.0.0.1", clientID: "c", subject: "s", reason: "x"}
	b := l.appendJSON(nil)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if m["latency_ms"] != 1.5 || m["path"] != "/a\"\n\ufffd" || m["sub"] != "s" {
		t.Errorf("decoded %v", m)
	}
}

func TestHostOnly(t *testing.T) {
	for in, want := range map[string]string{
		"a.example": "a.example", "a.example:8443": "a.example", "[::1]:443": "[::1]", "[::1]": "[::1]", "": "",
	} {
		if got := hostOnly(in); got != want {
			t.Errorf("hostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScopeRequirements(t *testing.T) {
	p := func(scopes ...string) *tokencheck.Principal {
		return &tokencheck.Principal{Claims: &jwtverify.Claims{Scopes: scopes}}
	}
	tests := []struct {
		name   string
		req    *scopeReq
		holder *tokencheck.Principal
		want   bool
	}{
		{"all: has all", newScopeReq([]string{"a", "b"}, "all"), p("b", "a", "c"), true},
		{"all: lacks one", newScopeReq([]string{"a", "b"}, "all"), p("a"), false},
		{"default mode is all", newScopeReq([]string{"a", "b"}, ""), p("a"), false},
		{"any: has one", newScopeReq([]string{"a", "b"}, "any"), p("b"), true},
		{"any: has none", newScopeReq([]string{"a", "b"}, "any"), p("c"), false},
		{"any: no scopes at all", newScopeReq([]string{"a"}, "any"), p(), false},
		{"prefix is not a scope", newScopeReq([]string{"orders:read"}, "all"), p("orders:read:all", "orders"), false},
	}
	for _, tt := range tests {
		if got := tt.req.satisfied(tt.holder); got != tt.want {
			t.Errorf("%s: satisfied = %v", tt.name, got)
		}
	}
	if newScopeReq(nil, "all") != nil {
		t.Error("no scopes must mean no requirement")
	}
	if got := newScopeReq([]string{"a", "b"}, "any").challenge[0]; got != `Bearer error="insufficient_scope", scope="a b"` {
		t.Errorf("challenge %q", got)
	}
}

// TestMTLSWithoutSubjectsWarns: an mtls route that lists no allowed subjects loads (any
// certificate from the client CA may call it) but `portcullis check` warns about it.
func TestMTLSWithoutSubjectsWarns(t *testing.T) {
	h := newHarness(t)
	warned := func() bool {
		for _, w := range h.cfg.Warnings() {
			if w.Path == "gateway.routes[4].auth.allowed_subjects" {
				return true
			}
		}
		return false
	}
	if warned() {
		t.Error("a warning although the route lists its subjects")
	}
	h.cfg.Gateway.Routes[4].Auth.AllowedSubjects = nil
	if !warned() {
		t.Error("no warning for an mtls route without allowed_subjects")
	}
	if err := h.gw.Reload(h.cfg); err != nil {
		t.Fatalf("the route must still load: %v", err)
	}
}

// stuckWriter blocks every Write until released, like a full pipe or a disk in writeback.
type stuckWriter struct {
	release chan struct{}
	mu      sync.Mutex
	b       bytes.Buffer
}

func (w *stuckWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestAccessLogNeverBlocks: a stuck log destination never holds up a request; once the
// buffer is full, lines are dropped, counted and reported when writing resumes.
func TestAccessLogNeverBlocks(t *testing.T) {
	w := &stuckWriter{release: make(chan struct{})}
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "dropped"})
	a := newAccessLog(w, dropped)
	line := (&logLine{time: time.Now(), requestID: "R", method: "GET", path: "/x", route: "r", status: 200}).appendJSON(nil)
	n := 2 * accessLogMaxBuffer / len(line)
	done := make(chan struct{})
	go func() {
		for range n {
			a.write(line)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writing access log lines blocked on a stuck destination")
	}
	if got := counterValue(dropped); got < float64(n/3) {
		t.Errorf("dropped = %v of %d", got, n)
	}
	close(w.release)
	a.close()
	lines := strings.Split(strings.TrimSuffix(w.b.String(), "\n"), "\n")
	if len(lines) >= n || len(lines) < n/3 {
		t.Errorf("%d lines written of %d", len(lines), n)
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("not a JSON line: %.100q", l)
		}
	}
	if !strings.Contains(w.b.String(), `"msg":"access log lines dropped`) {
		t.Error("no line reports the drops")
	}
}

// memShared is an in-memory tokencheck.SharedStore, as Redis is for replicas.
type memShared struct {
	mu   sync.Mutex
	vals map[string][]byte
}

func (m *memShared) Get(_ context.Context, hash string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vals[hash], nil
}

func (m *memShared) Put(_ context.Context, hash string, value []byte, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vals[hash] = value
	return nil
}

func (m *memShared) Revoke(_ context.Context, hash string, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.vals, hash)
	return nil
}

// TestSharedCacheBetweenReplicas: with Options.SharedCache, a second gateway serves a token
// the first one introspected without asking the issuer again.
func TestSharedCacheBetweenReplicas(t *testing.T) {
	store := &memShared{vals: map[string][]byte{}}
	h := newHarness(t, func(h *harness) { h.shared = store })
	tok := h.opaque("orders:read")
	if resp, body := h.do("GET", "/api/orders", tok, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("first gateway: %d %s", resp.StatusCode, body)
	}
	if len(store.vals) != 1 {
		t.Fatalf("the shared store holds %d answers, want 1", len(store.vals))
	}
	before := h.is.Introspections()
	replica, err := New(t.Context(), Options{Config: h.cfg, Events: &events.Memory{}, Now: h.clk.Now, SharedCache: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replica.Close() })
	req := httptest.NewRequestWithContext(t.Context(), "GET", "https://gateway.example/api/orders", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	replica.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("replica: %d %s", rec.Code, rec.Body)
	}
	if n := h.is.Introspections() - before; n != 0 {
		t.Errorf("the replica asked the issuer %d times", n)
	}
}
