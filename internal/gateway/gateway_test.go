package gateway

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/events"
	"github.com/portcullis/portcullis/internal/tokencheck/tokenchecktest"
)

// problem is the RFC 9457 body the gateway writes.
type problem struct {
	Type, Title, Detail string
	Status              int
	RequestID           string `json:"request_id"`
}

func decodeProblem(t *testing.T, resp *http.Response, body []byte) problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, body)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, body)
	}
	if p.Status != resp.StatusCode {
		t.Errorf("problem status %d, response %d", p.Status, resp.StatusCode)
	}
	if p.RequestID == "" || p.RequestID != resp.Header.Get("X-Request-Id") {
		t.Errorf("problem request_id %q, header %q", p.RequestID, resp.Header.Get("X-Request-Id"))
	}
	return p
}

func TestPhantomToken(t *testing.T) {
	h := newHarness(t)
	tok := h.opaque("orders:read")
	resp, body := h.do("GET", "/api/orders/7?expand=items", tok, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	seen := h.lastSeen()
	if seen.VerifyErr != nil || seen.Claims == nil {
		t.Fatalf("the upstream did not get a verifiable JWT: %v", seen.VerifyErr)
	}
	if seen.Claims.Subject != "alice" || !seen.Claims.HasScope("orders:read") || seen.Claims.Raw["customer_id"] != "c-42" {
		t.Errorf("phantom claims = %+v", seen.Claims)
	}
	jwt := strings.TrimPrefix(seen.Header.Get("Authorization"), "Bearer ")
	for name, values := range seen.Header {
		for _, v := range values {
			if strings.Contains(v, tok) {
				t.Errorf("the opaque token reached the upstream in %s", name)
			}
		}
	}
	if seen.Path != "/api/orders/7" || seen.Query != "expand=items" {
		t.Errorf("upstream path %q query %q", seen.Path, seen.Query)
	}
	// The client never sees the JWT, nor the upstream's banners and CORS headers.
	var hdrs bytes.Buffer
	_ = resp.Header.Write(&hdrs)
	if strings.Contains(hdrs.String()+string(body), jwt) {
		t.Error("the phantom JWT reached the client")
	}
	want := map[string]string{
		"Server": "", "X-Powered-By": "", "Access-Control-Allow-Origin": "",
		"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "X-Upstream": "yes",
		"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
	}
	got := map[string]string{}
	for k := range want {
		got[k] = resp.Header.Get(k)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("response headers (-want +got):\n%s", diff)
	}
	if len(resp.Header.Values("X-Content-Type-Options")) != 1 {
		t.Errorf("nosniff appears %d times", len(resp.Header.Values("X-Content-Type-Options")))
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", resp.Proto)
	}
}

func TestStatuses(t *testing.T) {
	h := newHarness(t)
	read := h.opaque("orders:read")
	write := h.opaque("orders:write")
	jwt := h.is.JWT(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Scopes: []string{"reports:read"}, Audience: []string{"reports"}})
	basic := http.Header{"Authorization": {"Basic Z2F0ZXdheTpzZWNyZXQ="}}
	twoAuth := http.Header{"Authorization": {"Bearer " + read, "Bearer " + read}}
	clientCert, _, _ := h.ca.issue("reporter", nil, []string{"spiffe://test/reporter"}, true)
	certClient := h.newClient(&clientCert)

	tests := []struct {
		name      string
		client    *http.Client
		method    string
		path      string
		token     string
		header    http.Header
		status    int
		challenge string // WWW-Authenticate, exactly ("-" for absent)
		allow     string
	}{
		{"no token", nil, "GET", "/api/orders", "", nil, 401, `Bearer`, ""},
		{"unknown token", nil, "GET", "/api/orders", "pcat_" + strings.Repeat("x", 43), nil, 401, `Bearer error="invalid_token"`, ""},
		{"malformed token", nil, "GET", "/api/orders", "", http.Header{"Authorization": {"Bearer a b"}}, 401, `Bearer error="invalid_token"`, ""},
		{"scope missing", nil, "GET", "/api/orders", write, nil, 403, `Bearer error="insufficient_scope", scope="orders:read"`, ""},
		{"method scope missing", nil, "POST", "/api/orders", read, nil, 403, `Bearer error="insufficient_scope", scope="orders:write"`, ""},
		{"method scope present", nil, "POST", "/api/orders", write, nil, 200, "-", ""},
		{"no route", nil, "GET", "/nowhere", read, nil, 404, "-", ""},
		{"prefix is on segments", nil, "GET", "/api/ordersX", read, nil, 404, "-", ""},
		{"wrong method", nil, "DELETE", "/api/orders/1", read, nil, 405, "-", "GET, HEAD, POST"},
		{"ambiguous path", nil, "GET", "/api/orders/%2e%2e/admin", read, nil, 400, "-", ""},
		{"basic auth on oauth route", nil, "GET", "/api/orders", "", basic, 401, `Bearer`, ""},
		{"jwt on oauth route", nil, "GET", "/api/orders", jwt, nil, 401, `Bearer error="invalid_token"`, ""},
		{"opaque on jwt route", nil, "GET", "/internal/reports", read, nil, 401, `Bearer error="invalid_token"`, ""},
		{"jwt on jwt route", nil, "GET", "/internal/reports", jwt, nil, 200, "-", ""},
		{"token in query", nil, "GET", "/api/orders?access_token=" + read, "", nil, 400, `Bearer error="invalid_request"`, ""},
		{"two authorization headers", nil, "GET", "/api/orders", "", twoAuth, 400, `Bearer error="invalid_request"`, ""},
		{"client cert on oauth route", certClient, "GET", "/api/orders", read, nil, 400, `Bearer error="invalid_request"`, ""},
		{"bearer on mtls route", certClient, "GET", "/svc/x", read, nil, 400, "-", ""},
		{"no cert on mtls route", nil, "GET", "/svc/x", "", nil, 403, "-", ""},
		{"cert on mtls route", certClient, "GET", "/svc/x", "", nil, 200, "-", ""},
		{"policy allows", nil, "GET", "/api/customers/c-42", read, nil, 200, "-", ""},
		{"policy denies", nil, "GET", "/api/customers/c-43", read, nil, 403, "-", ""},
		{"public", nil, "GET", "/public/x", "", nil, 200, "-", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.client
			if c == nil {
				c = h.client
			}
			resp, body := h.doWith(c, tt.method, tt.path, tt.token, tt.header, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); (tt.challenge == "-" && got != "") || (tt.challenge != "-" && got != tt.challenge) {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if got := resp.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
			if tt.status >= 400 {
				p := decodeProblem(t, resp, body)
				if strings.Contains(p.Detail, "127.0.0.1") || strings.Contains(string(body), tokenchecktest.GatewayClientID) {
					t.Errorf("the problem leaks internals: %s", body)
				}
				if resp.Header.Get("Cache-Control") != "no-store" {
					t.Errorf("error Cache-Control = %q", resp.Header.Get("Cache-Control"))
				}
			}
		})
	}
	// Refused requests never reached the upstream: count what it saw.
	n := len(h.seen)
	if n != 5 {
		t.Errorf("the upstream saw %d requests, want 5 (the allowed ones)", n)
	}
}

func TestIssuerDownIs503(t *testing.T) {
	h := newHarness(t)
	tok := h.opaque("orders:read")
	h.is.SetDown(true)
	resp, body := h.do("GET", "/api/orders", tok, nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	decodeProblem(t, resp, body)
	h.noneSeen()
	// A bad signature on the introspection answer is no better.
	h.is.SetDown(false)
	h.is.SetBadSignature(true)
	time.Sleep(time.Second) // the metadata retry interval after the outage
	resp, body = h.do("GET", "/api/orders", h.opaque("orders:read"), nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("forged answer: status %d: %s", resp.StatusCode, body)
	}
	h.noneSeen()
}

func TestRevokedTokenStopsAtOnce(t *testing.T) {
	bus := &events.Memory{}
	h := newHarness(t, withBus(bus))
	tok := h.opaque("orders:read")
	if resp, body := h.do("GET", "/api/orders", tok, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	h.is.Revoke(tok)
	_ = bus.Publish(t.Context(), events.Event{Kind: events.TokenRevoked, TokenHash: events.TokenHash(tok)})
	if resp, body := h.do("GET", "/api/orders", tok, nil, nil); resp.StatusCode != 401 {
		t.Fatalf("after revocation: status %d: %s", resp.StatusCode, body)
	}
}

// downBus is a feed that is not live: events do not arrive.
type downBus struct{ events.Memory }

func (*downBus) Live() bool { return false }

func TestRevokedTokenStopsWithinBound(t *testing.T) {
	h := newHarness(t, withBus(&downBus{}))
	tok := h.opaque("orders:read")
	if resp, _ := h.do("GET", "/api/orders", tok, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h.is.Revoke(tok) // no event reaches the gateway
	h.clk.Advance(4 * time.Second)
	if resp, _ := h.do("GET", "/api/orders", tok, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("within the bound: status %d", resp.StatusCode)
	}
	h.clk.Advance(time.Second + time.Millisecond) // past revocation_bound (5s)
	if resp, _ := h.do("GET", "/api/orders", tok, nil, nil); resp.StatusCode != 401 {
		t.Fatalf("past the bound: status %d", resp.StatusCode)
	}
}

func TestSpoofedHeadersNeverReachUpstream(t *testing.T) {
	h := newHarness(t)
	tok := h.opaque("orders:read")
	spoof := http.Header{
		"X-Forwarded-For":   {"6.6.6.6"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Forwarded-Proto": {"http"},
		"Forwarded":         {"for=6.6.6.6;proto=http"},
		"X-Real-Ip":         {"6.6.6.6"},
		"X-User":            {"admin"},
		"X-Customer-Id":     {"c-1"},
		"X-Request-Id":      {"forged-id"},
		"X-Original-Url":    {"/admin"},
		"Connection":        {"X-Secret"},
		"X-Secret":          {"hop"},
	}
	resp, body := h.doWith(h.h1client(), "GET", "/api/orders", tok, spoof, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	seen := h.lastSeen()
	got := map[string][]string{}
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-Ip", "X-User", "X-Customer-Id", "X-Request-Id", "X-Original-Url", "X-Secret"} {
		got[k] = seen.Header.Values(k)
	}
	want := map[string][]string{
		"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Host": {h.addr}, "X-Forwarded-Proto": {"https"},
		"Forwarded": nil, "X-Real-Ip": nil, "X-User": nil, "X-Customer-Id": nil,
		"X-Request-Id": {resp.Header.Get("X-Request-Id")}, "X-Original-Url": nil, "X-Secret": nil,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("headers at the upstream (-want +got):\n%s", diff)
	}
}

// TestRequestIDNotForwarded: with gateway.forward_request_id: false the upstream sees no
// X-Request-Id, neither the gateway's nor one the client sent; the client still gets its id.
func TestRequestIDNotForwarded(t *testing.T) {
	off := false
	h := newHarness(t, withConfig(func(c *config.Config, _ *harness) { c.Gateway.ForwardRequestID = &off }))
	resp, body := h.do("GET", "/api/orders", h.opaque("orders:read"), http.Header{"X-Request-Id": {"forged-id"}}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := h.lastSeen().Header.Values("X-Request-Id"); len(got) != 0 {
		t.Errorf("the upstream saw X-Request-Id %q", got)
	}
	if id := resp.Header.Get("X-Request-Id"); id == "" || id == "forged-id" {
		t.Errorf("the client got request id %q", id)
	}
}

// TestUnderscoreHeadersDropped: CGI, WSGI and Rack servers read X_User_Id and X-User-Id as the
// same variable (HTTP_X_USER_ID), so a name with an underscore could smuggle an identity or
// forwarding header past the stripping, which compares canonical names. Every such header is
// dropped, over HTTP/1.1 and HTTP/2.
func TestUnderscoreHeadersDropped(t *testing.T) {
	h := newHarness(t)
	tok := h.opaque("orders:read")
	spoof := http.Header{
		"X_User":           {"admin"},
		"X_customer_id":    {"c-1"},
		"X_Forwarded_For":  {"6.6.6.6"},
		"X_Forwarded_Host": {"evil.example"},
		"X_Real_Ip":        {"6.6.6.6"},
		"Authorization_":   {"Bearer forged"},
		"X-Trace":          {"kept"},
	}
	for _, tc := range []struct {
		name   string
		client *http.Client
	}{{"HTTP/1.1", h.h1client()}, {"HTTP/2", h.client}} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.doWith(tc.client, "GET", "/api/orders", tok, spoof, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			seen := h.lastSeen()
			var underscored []string
			for k := range seen.Header {
				if strings.Contains(k, "_") {
					underscored = append(underscored, k)
				}
			}
			if len(underscored) > 0 {
				t.Errorf("headers with underscores reached the upstream: %q", underscored)
			}
			got := map[string]string{"X-Trace": seen.Header.Get("X-Trace"), "X-Forwarded-For": seen.Header.Get("X-Forwarded-For"), "X-Forwarded-Host": seen.Header.Get("X-Forwarded-Host")}
			want := map[string]string{"X-Trace": "kept", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": h.addr}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("headers at the upstream (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTrustedProxyView(t *testing.T) {
	h := newHarness(t, withConfig(func(c *config.Config, _ *harness) {
		c.Gateway.TrustedProxies = []string{"127.0.0.1/32"}
	}))
	resp, _ := h.do("GET", "/public/x", "", http.Header{"X-Forwarded-For": {"198.51.100.9, 6.6.6.6"}, "X-Forwarded-Proto": {"http"}}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	seen := h.lastSeen()
	// Only the hop the trusted proxy (127.0.0.1) reported is believed; what the client wrote
	// before it is not.
	if got := seen.Header.Values("X-Forwarded-For"); !cmp.Equal(got, []string{"6.6.6.6"}) {
		t.Errorf("X-Forwarded-For = %q, want the address the trusted proxy saw", got)
	}
	if got := seen.Header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("X-Forwarded-Proto = %q, want the trusted proxy's", got)
	}
}

func TestRewritePrefixes(t *testing.T) {
	h := newHarness(t)
	if resp, _ := h.do("GET", "/v1/things/a%20b", "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := h.lastSeen().Path; got != "/base/internal-api/things/a%20b" {
		t.Errorf("upstream path = %q", got)
	}
	// Public routes forward no credentials.
	if resp, _ := h.do("GET", "/public/x", h.opaque("orders:read"), nil, nil); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := h.lastSeen().Header.Get("Authorization"); got != "" {
		t.Errorf("a public route forwarded Authorization %q", got)
	}
}

func TestCORS(t *testing.T) {
	h := newHarness(t)
	pre := func(origin, method, headers string) *http.Response {
		hdr := http.Header{"Origin": {origin}, "Access-Control-Request-Method": {method}}
		if headers != "" {
			hdr["Access-Control-Request-Headers"] = []string{headers}
		}
		resp, _ := h.do("OPTIONS", "/api/orders", "", hdr, nil)
		return resp
	}
	resp := pre("https://app.example", "POST", "authorization, content-type")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "true" || resp.Header.Get("Access-Control-Max-Age") != "60" {
		t.Errorf("allowed preflight: %d %v", resp.StatusCode, resp.Header)
	}
	for name, r := range map[string]*http.Response{
		"other origin":   pre("https://evil.example", "GET", ""),
		"other method":   pre("https://app.example", "DELETE", ""),
		"other header":   pre("https://app.example", "GET", "x-secret"),
		"null origin":    pre("null", "GET", ""),
		"origin variant": pre("https://app.example.evil", "GET", ""),
	} {
		if r.StatusCode != 403 || r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: %d, ACAO %q", name, r.StatusCode, r.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	h.noneSeen()
	resp, _ = h.do("GET", "/api/orders", h.opaque("orders:read"), http.Header{"Origin": {"https://app.example"}}, nil)
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || resp.Header.Get("Access-Control-Expose-Headers") != "X-Upstream" {
		t.Errorf("actual request CORS headers: %v", resp.Header)
	}
	resp, _ = h.do("GET", "/api/orders", "", http.Header{"Origin": {"https://app.example"}}, nil)
	if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("a refusal should be readable by the allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestBodyLimits(t *testing.T) {
	h := newHarness(t)
	small := strings.Repeat("a", 1000)
	big := strings.Repeat("a", 4000)
	if resp, _ := h.do("POST", "/public/x", "", nil, strings.NewReader(small)); resp.StatusCode != 200 {
		t.Fatalf("small body: %d", resp.StatusCode)
	}
	if got := h.lastSeen().Body; len(got) != len(small) {
		t.Fatalf("upstream got %d bytes", len(got))
	}
	resp, body := h.do("POST", "/public/x", "", nil, strings.NewReader(big))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared big body: %d %s", resp.StatusCode, body)
	}
	decodeProblem(t, resp, body)
	h.noneSeen()
	// A chunked body carries no length: the limit holds while it streams.
	resp, body = h.do("POST", "/public/x", "", nil, io.MultiReader(strings.NewReader(big))) // unknown length
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("streamed big body: %d %s", resp.StatusCode, body)
	}
	code, _ := h.rawRequest("POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfa0\r\n" + big + "\r\n0\r\n\r\n")
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("raw chunked big body: %d", code)
	}
	// Header limit: net/http refuses before the gateway.
	code, _ = h.rawRequest("GET /public/x HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 40<<10) + "\r\n\r\n")
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("big header: %d", code)
	}
}

func TestAmbiguousPathsRefused(t *testing.T) {
	h := newHarness(t)
	paths := []string{
		"/api/orders/../admin", "/api/orders/./x", "/api/orders/%2e%2e/admin", "/api/orders/%2E/x",
		"/api/%2forders", "/api/%2Forders", "/api//orders", "/api/orders\\x", "/api/orders/%5cx",
		"/api/orders/%00", "/api/orders/%ff", "/api/orders/%c0%ae%c0%ae/x", "/api/orders;jsessionid=1",
		"/api/orders/%3bx", "/api/orders/%252e%252e", "/api/orders/x%", "/api/orders/x%g1", "/api/orders/\xff",
		"/api/orders/%0d%0aX-Injected:%201", "*", "api/orders", "/api/orders#frag",
	}
	for _, p := range paths {
		t.Run("path "+p, func(t *testing.T) {
			method := "GET"
			if p == "*" {
				method = "OPTIONS"
			}
			code, body := h.rawRequest(method + " " + p + " HTTP/1.1\r\nHost: x\r\n\r\n")
			if code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", code, body)
			}
		})
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "https://" + ln.Addr().String()
		_ = ln.Close()
		h := newHarness(t, withConfig(func(c *config.Config, _ *harness) {
			c.Gateway.Routes[5].Upstream.URL = dead
		}))
		resp, body := h.do("GET", "/public/x", "", nil, nil)
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		decodeProblem(t, resp, body)
		if strings.Contains(string(body), ln.Addr().String()) || strings.Contains(string(body), "dial") {
			t.Errorf("the problem leaks upstream details: %s", body)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		h := newHarness(t, withConfig(func(c *config.Config, _ *harness) {
			c.Gateway.Routes[5].Upstream.Timeout = 100 * time.Millisecond
		}))
		release := make(chan struct{})
		defer close(release)
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		h.handler.Store(&slow)
		resp, body := h.do("GET", "/public/x", "", nil, nil)
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		decodeProblem(t, resp, body)
	})
	t.Run("untrusted upstream certificate", func(t *testing.T) {
		h := newHarness(t, withConfig(func(c *config.Config, h *harness) {
			c.Gateway.Routes[5].Upstream.CA = h.is.CAFile() // a CA that did not sign the upstream
		}))
		resp, body := h.do("GET", "/public/x", "", nil, nil)
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		h.noneSeen()
	})
}

func TestReloadKeepsInFlightAndRefusesBadConfig(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/public/slow" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "done")
	})
	h.handler.Store(&slow)
	type result struct {
		code int
		body string
	}
	inflight := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", h.url+"/public/slow", nil)
		resp, err := h.client.Do(req)
		if err != nil {
			inflight <- result{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- result{resp.StatusCode, string(b)}
	}()
	<-entered

	// A bad configuration is refused and changes nothing.
	bad := *h.cfg
	badGW := *h.cfg.Gateway
	badGW.Routes = append([]config.Route{}, h.cfg.Gateway.Routes...)
	badGW.Routes[2].Policies = []string{`claims.customer_id ==`}
	bad.Gateway = &badGW
	err := h.gw.Reload(&bad)
	if err == nil || !strings.Contains(err.Error(), `"customers"`) {
		t.Fatalf("Reload of a bad policy: %v (want an error naming the route)", err)
	}
	if resp, _ := h.do("GET", "/public/x", "", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("after a refused reload: %d", resp.StatusCode)
	}

	// A good one without the public route takes effect at once for new requests.
	good := *h.cfg
	goodGW := *h.cfg.Gateway
	goodGW.Routes = append([]config.Route{}, h.cfg.Gateway.Routes[:5]...)
	good.Gateway = &goodGW
	if err := h.gw.Reload(&good); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if resp, _ := h.do("GET", "/public/x", "", nil, nil); resp.StatusCode != 404 {
		t.Fatalf("the removed route still answers: %d", resp.StatusCode)
	}
	// The request that started before the reload finishes on its own configuration.
	close(release)
	if r := <-inflight; r.code != 200 || r.body != "done" {
		t.Fatalf("in-flight request: %d %q", r.code, r.body)
	}
	// The token cache survived the reload (same issuer settings).
	tok := h.opaque("orders:read")
	h.do("GET", "/api/orders", tok, nil, nil)
	before := h.is.Introspections()
	cfg3 := *h.cfg
	if err := h.gw.Reload(&cfg3); err != nil {
		t.Fatal(err)
	}
	h.do("GET", "/api/orders", tok, nil, nil)
	if h.is.Introspections() != before {
		t.Errorf("a reload with the same issuer settings dropped the introspection cache")
	}
}

func TestConcurrentRequestsOneIntrospection(t *testing.T) {
	h := newHarness(t)
	if resp, _ := h.do("GET", "/api/orders", h.opaque("orders:read"), nil, nil); resp.StatusCode != 200 {
		t.Fatal("warm-up failed")
	}
	before := h.is.Introspections()
	tok := h.opaque("orders:read")
	release := h.is.Hold()
	const n = 32
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", h.url+"/api/orders", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := h.client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
			}
		})
	}
	for h.is.Introspections() == before {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let every request reach the gateway
	release()
	wg.Wait()
	if ok.Load() != n {
		t.Fatalf("%d of %d requests succeeded", ok.Load(), n)
	}
	if got := h.is.Introspections() - before; got != 1 {
		t.Errorf("%d introspection calls for %d concurrent requests with one token, want 1", got, n)
	}
}

func TestAccessLogAndMetrics(t *testing.T) {
	h := newHarness(t)
	tok := h.opaque("orders:read")
	h.do("GET", "/api/orders?secret=query", tok, nil, nil)
	h.do("GET", "/api/orders", "", nil, nil)
	h.do("GET", "/nowhere", "", nil, nil)
	_ = h.gw.Close() // flushes the access log
	logs := h.log.String()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d access log lines:\n%s", len(lines), logs)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	for k, want := range map[string]any{"route": "orders", "status": float64(200), "client_id": "orders-app", "sub": "alice", "path": "/api/orders", "method": "GET"} {
		if first[k] != want {
			t.Errorf("log %s = %v, want %v", k, first[k], want)
		}
	}
	for _, k := range []string{"request_id", "latency_ms", "bytes", "time"} {
		if _, ok := first[k]; !ok {
			t.Errorf("log lacks %s", k)
		}
	}
	if strings.Contains(logs, tok) || strings.Contains(logs, "secret=query") || strings.Contains(logs, "eyJ") {
		t.Errorf("the access log holds a token or the query:\n%s", logs)
	}
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			key := mf.GetName() + labels(m)
			switch {
			case m.Counter != nil:
				got[key] = m.Counter.GetValue()
			case m.Histogram != nil:
				got[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	for k, want := range map[string]float64{
		`portcullis_gateway_requests_total{code="200",route="orders"}`:                    1,
		`portcullis_gateway_requests_total{code="401",route="orders"}`:                    1,
		`portcullis_gateway_requests_total{code="404",route="-"}`:                         1,
		`portcullis_gateway_auth_failures_total{reason="missing_token",route="orders"}`:   1,
		`portcullis_gateway_request_duration_seconds{route="orders"}`:                     2,
		`portcullis_gateway_introspection_cache_total{result="miss"}`:                     1,
		`portcullis_gateway_introspections_total{outcome="active"}`:                       1,
		`portcullis_gateway_upstream_errors_total{kind="timeout",route="orders"}`:         0,
		`portcullis_gateway_auth_failures_total{reason="insufficient_scope",route="svc"}`: 0,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

func labels(m *dto.Metric) string {
	if len(m.Label) == 0 {
		return ""
	}
	var parts []string
	for _, l := range m.Label {
		parts = append(parts, l.GetName()+`="`+l.GetValue()+`"`)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestBadConfigDoesNotLoad(t *testing.T) {
	base := func(h *harness) *config.Config {
		c := *h.cfg
		gw := *h.cfg.Gateway
		gw.Routes = append([]config.Route{}, h.cfg.Gateway.Routes...)
		c.Gateway = &gw
		return &c
	}
	h := newHarness(t)
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		want   string
	}{
		{"bad policy names the route", func(c *config.Config) { c.Gateway.Routes[0].Policies = []string{"claims.x +"} }, `route "orders"`},
		{"policy of the wrong type", func(c *config.Config) { c.Gateway.Routes[0].Policies = []string{`claims.sub`} }, `route "orders"`},
		{"no auth method", func(c *config.Config) { c.Gateway.Routes[0].Auth.Method = "" }, "auth.method"},
		{"two auth methods", func(c *config.Config) { c.Gateway.Routes[0].Auth.Method = "oauth jwt" }, "auth.method"},
		{"plain http upstream", func(c *config.Config) { c.Gateway.Routes[0].Upstream.URL = "http://127.0.0.1:1" }, "insecure_http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base(h)
			tt.mutate(c)
			_, err := New(t.Context(), Options{Config: c})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
			if err := h.gw.Reload(c); err == nil {
				t.Fatal("Reload accepted it")
			}
		})
	}
}

func TestInsecureHTTPUpstreamWhenAllowed(t *testing.T) {
	plain := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "plain") })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = plain.Serve(ln) }()
	t.Cleanup(func() { _ = plain.Close() })
	h := newHarness(t, withConfig(func(c *config.Config, _ *harness) {
		c.Gateway.Routes[5].Upstream = config.Upstream{URL: "http://" + ln.Addr().String(), InsecureHTTP: true}
	}))
	resp, body := h.do("GET", "/public/x", "", nil, nil)
	if resp.StatusCode != 200 || string(body) != "plain" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestJWTRouteForwardsTheSameToken(t *testing.T) {
	h := newHarness(t)
	jwt := h.is.JWT(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Scopes: []string{"reports:read"}, Audience: []string{"reports"}})
	resp, body := h.do("GET", "/internal/reports/q1", jwt, nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	seen := h.lastSeen()
	if seen.Header.Get("Authorization") != "Bearer "+jwt || seen.VerifyErr != nil || seen.Claims.Subject != "svc" {
		t.Errorf("upstream Authorization %q, verify %v", seen.Header.Get("Authorization"), seen.VerifyErr)
	}
	noScope := h.is.JWT(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Audience: []string{"reports"}})
	if resp, _ := h.do("GET", "/internal/reports/q1", noScope, nil, nil); resp.StatusCode != 403 ||
		resp.Header.Get("WWW-Authenticate") != `Bearer error="insufficient_scope", scope="reports:read"` {
		t.Errorf("jwt without the scope: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// TestPhantomRefusedOnJWTRoute: the phantom JWT an upstream receives is not a credential for
// jwt routes, even with the right audience and scope: if it leaks from an upstream it must
// not open other APIs, and revoking the opaque token would not stop it there.
func TestPhantomRefusedOnJWTRoute(t *testing.T) {
	bus := &events.Memory{}
	h := newHarness(t, withBus(bus))
	opaque := h.is.Opaque(tokenchecktest.Grant{Subject: "svc", ClientID: "reporter", Scopes: []string{"reports:read"}, Audience: []string{"reports"}})
	if resp, body := h.do("GET", "/api/whoami", opaque, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("oauth route: status %d: %s", resp.StatusCode, body)
	}
	phantom := strings.TrimPrefix(h.lastSeen().Header.Get("Authorization"), "Bearer ")
	if strings.Count(phantom, ".") != 2 {
		t.Fatalf("the upstream got no phantom JWT: %q", phantom)
	}
	for _, step := range []string{"while the token is active", "after its revocation"} {
		if step == "after its revocation" {
			h.is.Revoke(opaque)
			_ = bus.Publish(t.Context(), events.Event{Kind: events.TokenRevoked, TokenHash: events.TokenHash(opaque)})
		}
		resp, body := h.do("GET", "/internal/reports/q1", phantom, nil, nil)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("phantom on a jwt route %s: %d %q: %s", step, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
		h.noneSeen()
	}
}

func TestUpstreamClientCertificate(t *testing.T) {
	var h *harness
	var mtlsUp *httptest.Server
	var peer atomic.Value
	h = newHarness(t, withConfig(func(c *config.Config, hh *harness) {
		_, certFile, keyFile := hh.ca.issue("upstream-mtls", []net.IP{net.IPv4(127, 0, 0, 1)}, nil, false)
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		mtlsUp = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			peer.Store(r.TLS.PeerCertificates[0].Subject.CommonName)
			_, _ = io.WriteString(w, "ok")
		}))
		mtlsUp.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: hh.ca.pool, ClientAuth: tls.RequireAndVerifyClientCert}
		mtlsUp.StartTLS()
		t.Cleanup(mtlsUp.Close)
		_, gwCert, gwKey := hh.ca.issue("gateway-client", nil, nil, true)
		c.Gateway.Routes[5].Upstream = config.Upstream{URL: mtlsUp.URL, CA: hh.ca.file, ClientCert: gwCert, ClientKey: gwKey}
		c.Gateway.Routes[6].Upstream = config.Upstream{URL: mtlsUp.URL, CA: hh.ca.file} // no client certificate
	}))
	if resp, body := h.do("GET", "/public/x", "", nil, nil); resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("with a client certificate: %d %s", resp.StatusCode, body)
	}
	if peer.Load() != "gateway-client" {
		t.Errorf("the upstream saw client %v", peer.Load())
	}
	if resp, _ := h.do("GET", "/v1/things", "", nil, nil); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("without a client certificate: %d", resp.StatusCode)
	}
}

func TestServerSettings(t *testing.T) {
	h := newHarness(t, withConfig(func(c *config.Config, _ *harness) {
		c.Gateway.Limits.MaxConcurrentStreams = 17
		c.Gateway.Limits.MaxHeaderBytes = 8 << 10
		c.Gateway.Limits.ReadHeaderTimeout = 3 * time.Second
	}))
	s, err := h.gw.Server() // a server of its own: h.srv is serving (and configuring itself)
	if err != nil {
		t.Fatal(err)
	}
	e := h.gw.edge
	got := []any{s.HTTP2.MaxConcurrentStreams, s.MaxHeaderBytes, s.ReadHeaderTimeout, s.DisableGeneralOptionsHandler, s.TLSConfig == nil, e.tls.ClientAuth, e.tls.MinVersion, e.handshakeTimeout, e.maxHead}
	want := []any{17, 8 << 10, 3 * time.Second, true, true, tls.VerifyClientCertIfGiven, uint16(tls.VersionTLS12), 3 * time.Second, 16 << 10}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("server settings (-want +got):\n%s", diff)
	}
	if s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 {
		t.Errorf("a zero timeout: %v %v %v", s.ReadTimeout, s.WriteTimeout, s.IdleTimeout)
	}
}

// TestInterimResponses: an upstream's 1xx (100 Continue, 103 Early Hints) reaches the client
// cleaned like a final response (no banner, no credentials, no upstream CORS), and the final
// response after it still carries the gateway's own headers: ReverseProxy clears the header
// map after forwarding a 1xx.
func TestInterimResponses(t *testing.T) {
	h := newHarness(t, withConfig(func(c *config.Config, _ *harness) {
		c.Gateway.Routes[0].RateLimit = config.RateLimits{{Per: "client", Rate: "100/s"}}
	}))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Link", "</app.css>; rel=preload; as=style")
		hd.Set("Server", "upstream/1.0")
		hd.Set("Authorization", "Bearer leaked")
		hd.Set("Access-Control-Allow-Origin", "*")
		hd.Set("X-Request-Id", "upstream-id")
		w.WriteHeader(http.StatusEarlyHints)
		clear(hd)
		_, _ = io.ReadAll(r.Body) // with Expect: 100-continue, this sends 100 Continue
		hd.Set("Server", "upstream/1.0")
		hd.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	h.handler.Store(&handler)
	for _, tc := range []struct {
		name   string
		client *http.Client
	}{{"HTTP/1.1", h.h1client()}, {"HTTP/2", h.client}} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var interim []textproto.MIMEHeader
			var codes []int
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
				mu.Lock()
				defer mu.Unlock()
				codes = append(codes, code)
				interim = append(interim, hdr)
				return nil
			}}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "POST", h.url+"/api/orders", strings.NewReader(`{"item":1}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+h.opaque("orders:read", "orders:write"))
			req.Header.Set("Origin", "https://app.example")
			req.Header.Set("Expect", "100-continue")
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			h.lastSeen()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			mu.Lock()
			defer mu.Unlock()
			early := -1
			for i, c := range codes {
				if c == http.StatusEarlyHints {
					early = i
				}
			}
			if early < 0 {
				t.Fatalf("no 103 reached the client (1xx codes %v)", codes)
			}
			for i, hdr := range interim {
				for _, name := range []string{"Server", "Authorization", "Access-Control-Allow-Origin", "X-Request-Id"} {
					if v := hdr.Get(name); v == "upstream/1.0" || v == "Bearer leaked" || v == "*" || v == "upstream-id" {
						t.Errorf("the %d response carried the upstream's %s: %q", codes[i], name, v)
					}
				}
			}
			if got := interim[early].Get("Link"); got != "</app.css>; rel=preload; as=style" {
				t.Errorf("103 Link = %q, want the upstream's hint", got)
			}
			want := map[string]bool{
				"Strict-Transport-Security": true, "X-Content-Type-Options": true, "X-Request-Id": true,
				"Ratelimit": true, "Ratelimit-Policy": true, "Access-Control-Allow-Origin": true, "Server": false,
			}
			got := map[string]bool{}
			for k := range want {
				got[k] = resp.Header.Get(k) != ""
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("final headers present (-want +got):\n%s", diff)
			}
			if n := len(resp.Header.Values("X-Request-Id")); n != 1 {
				t.Errorf("X-Request-Id appears %d times", n)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
				t.Errorf("Access-Control-Allow-Origin = %q", got)
			}
		})
	}
}
