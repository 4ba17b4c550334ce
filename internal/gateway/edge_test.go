package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/portcullis/portcullis/internal/config"
)

// rawConn is one HTTP/1.1 connection to the gateway on which raw bytes are written.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (h *harness) dialRaw(cert *tls.Certificate) *rawConn {
	h.t.Helper()
	cfg := &tls.Config{RootCAs: h.ca.pool, NextProtos: []string{"http/1.1"}}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := tls.Dial("tcp", h.addr, cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: h.t, conn: conn, br: bufio.NewReader(conn)}
}

func (c *rawConn) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads the next response and its body.
func (c *rawConn) response() (*http.Response, []byte) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatalf("reading a response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, b
}

// closed reports whether the gateway closed the connection (nothing more to read).
func (c *rawConn) closed() bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.br.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || err != nil && !isTimeout(err)
}

// TestSmugglingRefused sends each framing attack over TLS HTTP/1.1 followed by a request
// it might smuggle: the gateway answers 400 problem+json (431 for a head too large) with
// Connection: close, closes the connection, and the upstream sees nothing.
func TestSmugglingRefused(t *testing.T) {
	h := newHarness(t)
	const smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name   string
		raw    string
		status int
		reason string
	}{
		{"cl and te", "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "cl_and_te"},
		{"te and cl", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n2c\r\n" + smuggled + "\r\n0\r\n\r\n", 400, "cl_and_te"},
		{"duplicate identical cl", "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + smuggled, 400, "duplicate_content_length"},
		{"duplicate different cl", "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello" + smuggled, 400, "duplicate_content_length"},
		{"obs-fold in a header", "GET /public/x HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" + smuggled, 400, "obs_fold"},
		{"obs-fold in cl", "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n 0\r\n\r\nhello" + smuggled, 400, "obs_fold"},
		{"obs-fold in te", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "bad_transfer_encoding"},
		{"obs-fold after te", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n x\r\n\r\n0\r\n\r\n" + smuggled, 400, "obs_fold"},
		{"te chunked, identity", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, 400, "bad_transfer_encoding"},
		{"te xchunked", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "bad_transfer_encoding"},
		{"two te lines", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled, 400, "bad_transfer_encoding"},
		{"te on http/1.0", "POST /public/x HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, "bad_transfer_encoding"},
		{"chunk size not hex", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + smuggled, 400, "bad_chunk"},
		{"chunk size with space", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n" + smuggled, 400, "bad_chunk"},
		{"chunk size too long", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n" + smuggled, 400, "bad_chunk"},
		{"chunk data longer than its size", "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n" + smuggled, 400, "bad_chunk"},
		{"space before colon", "GET /public/x HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello" + smuggled, 400, "space_before_colon"},
		{"lf only", "GET /public/x HTTP/1.1\nHost: x\n\n" + smuggled, 400, "bare_lf"},
		{"bare cr", "GET /public/x HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n" + smuggled, 400, "bare_cr"},
		{"bad content-length", "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello" + smuggled, 400, "bad_content_length"},
		{"http/2 preface on http/1.1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + smuggled, 400, "bad_request_line"},
		{"head too large", "GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 48<<10) + "\r\n\r\n" + smuggled, 431, "head_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for len(h.seen) > 0 {
				<-h.seen
			}
			c := h.dialRaw(nil)
			c.write(tt.raw)
			resp, body := c.response()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			decodeProblem(t, resp, body)
			if !resp.Close {
				t.Error("the response does not say Connection: close")
			}
			if !c.closed() {
				t.Error("the connection stayed open after the refusal")
			}
			// The connection is closed, so the handler has returned: anything sent upstream
			// would already be in h.seen.
			h.noneSeen()
			if got := counterValue(h.gw.metrics.framing[reasonFlag(t, tt.reason)]); got < 1 {
				t.Errorf("framing refusals{reason=%q} = %v", tt.reason, got)
			}
		})
	}
	if err := h.gw.Close(); err != nil { // flush the access log
		t.Fatal(err)
	}
	for _, tt := range tests {
		if !strings.Contains(h.log.String(), `"reason":"bad_framing:`+tt.reason+`"`) {
			t.Errorf("no access log line with reason bad_framing:%s", tt.reason)
		}
	}
}

func reasonFlag(t *testing.T, reason string) framingFlag {
	for f, s := range framingReasons {
		if s == reason {
			return framingFlag(f)
		}
	}
	t.Fatalf("no framing reason %q", reason)
	return 0
}

// TestPipelinedRequests: clean pipelined requests (Content-Length, chunked with extensions
// and trailers, the CRLF old clients send after a POST) are all served in order, and one
// refused later in the pipeline ends the connection without reaching the upstream.
func TestPipelinedRequests(t *testing.T) {
	h := newHarness(t)
	c := h.dialRaw(nil)
	c.write("GET /public/one HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /public/two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\r\n" +
		"POST /public/three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n" +
		"GET /public/four HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" +
		"GET /public/five HTTP/1.1\r\nHost: x\r\n\r\n")
	type got struct {
		Path   string
		Status int
		Body   string
	}
	var gots []got
	for range 3 {
		resp, _ := c.response()
		s := h.lastSeen()
		gots = append(gots, got{s.Path, resp.StatusCode, string(s.Body)})
	}
	want := []got{{"/public/one", 200, ""}, {"/public/two", 200, "hello"}, {"/public/three", 200, "abcde"}}
	if diff := cmp.Diff(want, gots); diff != "" {
		t.Errorf("pipelined requests (-want +got):\n%s", diff)
	}
	resp, body := c.response()
	if resp.StatusCode != 400 {
		t.Fatalf("the folded request: %d %s", resp.StatusCode, body)
	}
	if !c.closed() {
		t.Error("the connection stayed open")
	}
	h.noneSeen()
}

// TestChunkRefusedWhileForwarding: a bad chunk that arrives after the request went upstream
// ends the forwarded body with an error (the upstream never gets a complete request) and
// the client gets 400.
func TestChunkRefusedWhileForwarding(t *testing.T) {
	entered := make(chan struct{}, 1)
	got := make(chan error, 1)
	h := newHarness(t, withConfig(func(c *config.Config, h *harness) {
		_, certFile, keyFile := h.ca.issue("upstream2", []net.IP{net.IPv4(127, 0, 0, 1)}, nil, false)
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			_, err := io.ReadAll(r.Body)
			got <- err
		}))
		up.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
		up.EnableHTTP2 = true
		up.StartTLS()
		t.Cleanup(up.Close)
		c.Gateway.Routes[5].Upstream.URL = up.URL
	}))
	c := h.dialRaw(nil)
	c.write("POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	select {
	case <-entered: // the upstream has the request and is reading its body
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the upstream")
	}
	c.write("zz\r\nGET /public/smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("the upstream read a complete body")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream's body read did not end")
	}
	resp, body := c.response()
	if resp.StatusCode != 400 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if !c.closed() {
		t.Error("the connection stayed open")
	}
	select {
	case <-entered:
		t.Error("the smuggled request reached the upstream")
	default:
	}
}

// TestTLSStateReachesTheGateway: behind the validating listener, HTTP/1.1 and HTTP/2 alike
// see the TLS connection: HSTS, X-Forwarded-Proto https, and client certificates on mtls
// routes (and their refusal on bearer routes).
func TestTLSStateReachesTheGateway(t *testing.T) {
	h := newHarness(t)
	clientCert, _, _ := h.ca.issue("reporter", nil, []string{"spiffe://test/reporter"}, true)
	otherCert, _, _ := h.ca.issue("stranger", nil, []string{"spiffe://test/stranger"}, true)
	h1 := func(cert *tls.Certificate) *http.Client {
		cfg := &tls.Config{RootCAs: h.ca.pool}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tr := &http.Transport{TLSClientConfig: cfg, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	clients := map[string]map[string]*http.Client{
		"HTTP/1.1": {"none": h1(nil), "allowed": h1(&clientCert), "other": h1(&otherCert)},
		"HTTP/2.0": {"none": h.client, "allowed": h.newClient(&clientCert), "other": h.newClient(&otherCert)},
	}
	for proto, cs := range clients {
		t.Run(proto, func(t *testing.T) {
			resp, _ := h.doWith(cs["none"], "GET", "/public/x", "", nil, nil)
			if resp.Proto != proto || resp.StatusCode != 200 {
				t.Fatalf("%s %d", resp.Proto, resp.StatusCode)
			}
			if resp.Header.Get("Strict-Transport-Security") == "" {
				t.Error("no HSTS")
			}
			if got := h.lastSeen().Header.Get("X-Forwarded-Proto"); got != "https" {
				t.Errorf("X-Forwarded-Proto = %q", got)
			}
			statuses := map[string]int{}
			for _, who := range []string{"none", "allowed", "other"} {
				resp, _ := h.doWith(cs[who], "GET", "/svc/x", "", nil, nil)
				statuses[who] = resp.StatusCode
			}
			resp, _ = h.doWith(cs["allowed"], "GET", "/api/orders", h.opaque("orders:read"), nil, nil)
			statuses["cert on oauth route"] = resp.StatusCode
			want := map[string]int{"none": 403, "allowed": 200, "other": 403, "cert on oauth route": 400}
			if diff := cmp.Diff(want, statuses); diff != "" {
				t.Errorf("mtls statuses (-want +got):\n%s", diff)
			}
			for len(h.seen) > 0 {
				<-h.seen
			}
		})
	}
}

// TestPlainListenerValidates: an insecure_http listener gets the same validator.
func TestPlainListenerValidates(t *testing.T) {
	h := newHarness(t, withConfig(func(c *config.Config, _ *harness) {
		c.Gateway.InsecureHTTP = true
		c.Gateway.TLS = config.TLS{}
		c.Gateway.Routes = c.Gateway.Routes[5:6] // the public route
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.srv.Serve(h.gw.Listener(ln)) }()
	dial := func() *rawConn {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		return &rawConn{t: t, conn: conn, br: bufio.NewReader(conn)}
	}
	c := dial()
	c.write("GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.response(); resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") != "" {
		t.Fatalf("clean request: %d HSTS %q %s", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"), body)
	}
	if got := h.lastSeen().Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q", got)
	}
	c.write("POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	if resp, body := c.response(); resp.StatusCode != 400 {
		t.Fatalf("cl and te: %d %s", resp.StatusCode, body)
	}
	if !c.closed() {
		t.Error("the connection stayed open")
	}
	h.noneSeen()
}

// TestServerRefusesUncheckedConnections: the gateway's server on some other listener
// (here a bare TLS listener, without the validator) refuses HTTP/1.x requests with 500
// rather than serve them unchecked; HTTP/2 needs no validator.
func TestServerRefusesUncheckedConnections(t *testing.T) {
	h := newHarness(t)
	srv, err := h.gw.Server()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, h.gw.edge.tls)) }()
	t.Cleanup(func() { _ = srv.Close() })
	h.url = "https://" + ln.Addr().String()
	if resp, body := h.doWith(h.h1client(), "GET", "/public/x", "", nil, nil); resp.StatusCode != 500 {
		t.Fatalf("HTTP/1.1: %d %s", resp.StatusCode, body)
	}
	h.noneSeen()
	if resp, body := h.do("GET", "/public/x", "", nil, nil); resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("HTTP/2: %s %d %s", resp.Proto, resp.StatusCode, body)
	}
}

// TestListenerHandshakes: plain HTTP on the TLS port gets a plain 400; a client that never
// finishes its handshake is cut off at the handshake timeout; failures are counted; closing
// the listener ends Accept.
func TestListenerHandshakes(t *testing.T) {
	h := newHarness(t, withConfig(func(c *config.Config, _ *harness) {
		c.Gateway.Limits.ReadHeaderTimeout = 300 * time.Millisecond
	}))
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(conn)
	_ = conn.Close()
	if !strings.HasPrefix(string(b), "HTTP/1.0 400 Bad Request") {
		t.Errorf("plain HTTP on the TLS port: %q", b)
	}

	silent, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_ = silent.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := silent.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("a silent client was not cut off: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cut off after %v", d)
	}
	// The server counts a failure after closing the connection: the client may see the close
	// first.
	for deadline := time.Now().Add(2 * time.Second); counterValue(h.gw.metrics.handshakeFailures) < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := counterValue(h.gw.metrics.handshakeFailures); got < 2 {
		t.Errorf("handshake failures = %v, want 2", got)
	}

	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := h.gw.Listener(raw)
	accepted := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-accepted:
		if err == nil {
			t.Error("Accept after Close returned a connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

// TestFramingRefusalProblem checks the refusal's body: a problem with the request id and
// nothing about the request.
func TestFramingRefusalProblem(t *testing.T) {
	h := newHarness(t)
	c := h.dialRaw(nil)
	c.write("POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx")
	resp, body := c.response()
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"title": "Bad Request", "status": float64(400), "detail": "The request's framing is ambiguous or malformed.", "request_id": resp.Header.Get("X-Request-Id")}
	delete(p, "type")
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("problem (-want +got):\n%s", diff)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestSlowHeadIsCutOff: heads are held back until complete, so the listener applies the
// header timeout itself from a head's first byte (as net/http would); a head trickling in
// within it is served.
func TestSlowHeadIsCutOff(t *testing.T) {
	h := newHarness(t, withConfig(func(c *config.Config, _ *harness) {
		c.Gateway.Limits.ReadHeaderTimeout = 400 * time.Millisecond
		c.Gateway.Limits.IdleTimeout = 30 * time.Second
	}))
	c := h.dialRaw(nil)
	for _, part := range []string{"GET /public/x HT", "TP/1.1\r\nHo", "st: x\r\n\r\n"} {
		c.write(part)
		time.Sleep(50 * time.Millisecond)
	}
	if resp, body := c.response(); resp.StatusCode != 200 {
		t.Fatalf("a head sent in pieces: %d %s", resp.StatusCode, body)
	}
	// The next head starts on the kept-alive connection and never ends.
	c.write("GET /public/y HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	if !c.closed() {
		t.Fatal("the connection stayed open")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v, want about the header timeout", d)
	}
}
