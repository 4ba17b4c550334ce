package web

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestClientIP(t *testing.T) {
	trusted, err := ParsePrefixes([]string{"10.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"no proxies: the peer, whatever headers say", "203.0.113.7:5000", []string{"6.6.6.6"}, nil, "203.0.113.7"},
		{"untrusted peer: its header is ignored", "203.0.113.7:5000", []string{"6.6.6.6"}, trusted, "203.0.113.7"},
		{"trusted peer: the hop before it", "10.1.2.3:5000", []string{"198.51.100.9"}, trusted, "198.51.100.9"},
		{"spoofed left entries are skipped", "10.1.2.3:5000", []string{"6.6.6.6, 198.51.100.9"}, trusted, "198.51.100.9"},
		{"chain of trusted proxies", "10.1.2.3:5000", []string{"198.51.100.9, 10.9.9.9"}, trusted, "198.51.100.9"},
		{"several header lines", "10.1.2.3:5000", []string{"6.6.6.6", "198.51.100.9"}, trusted, "198.51.100.9"},
		{"garbage stops at the last trusted hop", "10.1.2.3:5000", []string{"not-an-ip"}, trusted, "10.1.2.3"},
		{"ipv6 trusted loopback", "[::1]:5000", []string{"2001:db8::1"}, trusted, "2001:db8::1"},
		{"mapped ipv4 is plain ipv4", "[::ffff:203.0.113.7]:5000", nil, nil, "203.0.113.7"},
		{"all trusted: the leftmost", "10.1.2.3:5000", []string{"10.2.2.2"}, trusted, "10.2.2.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := ClientIP(r, tt.trusted).String(); got != tt.want {
				t.Fatalf("ClientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParsePrefixesRefusesGarbage(t *testing.T) {
	if _, err := ParsePrefixes([]string{"10.0.0.0/8", "nope"}); err == nil {
		t.Fatal("garbage accepted")
	}
	ps, err := ParsePrefixes([]string{"10.1.2.3/8"})
	if err != nil || ps[0].String() != "10.0.0.0/8" {
		t.Fatalf("host bits not masked: %v %v", ps, err)
	}
}

func TestProblemCarriesRequestIDAndNothingElse(t *testing.T) {
	h := WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Error(w, r, http.StatusForbidden, "")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 403 || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	id := rec.Header().Get("X-Request-Id")
	if id == "" || p.RequestID != id || p.Title != "Forbidden" || p.Status != 403 || p.Detail != "" {
		t.Fatalf("problem %+v, header id %q", p, id)
	}
}

func TestRequestIDsAreFreshAndNotFromTheClient(t *testing.T) {
	seen := map[string]bool{}
	h := WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for range 100 {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-Request-Id", "forged")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		id := rec.Header().Get("X-Request-Id")
		if id == "forged" || len(id) != 16 || seen[id] {
			t.Fatalf("request id %q (forged, wrong length or repeated)", id)
		}
		seen[id] = true
	}
}

func TestRecoverHidesThePanic(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	h := WithRequestID(Recover(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("secret internal detail in /src/file.go")
	})))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 500 {
		t.Fatalf("status %d", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "secret") || strings.Contains(rec.Body.String(), ".go") {
		t.Fatalf("panic leaked to the client: %s", rec.Body)
	}
	if !strings.Contains(logs.String(), "secret internal detail") {
		t.Fatal("the log lost the panic")
	}
}

func TestSecurityHeaders(t *testing.T) {
	for _, hsts := range []bool{true, false} {
		rec := httptest.NewRecorder()
		SecurityHeaders(hsts, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		h := rec.Header()
		if h.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Fatalf("headers %v", h)
		}
		if (h.Get("Strict-Transport-Security") != "") != hsts {
			t.Fatalf("hsts=%v but header %q", hsts, h.Get("Strict-Transport-Security"))
		}
	}
}

func TestAccessLogNeverLogsTheQuery(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	h := WithRequestID(AccessLog(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(204)
	})))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/cb?code=pcac_secret&state=x", nil))
	if strings.Contains(logs.String(), "pcac_secret") {
		t.Fatalf("query logged: %s", logs.String())
	}
	if !strings.Contains(logs.String(), `"status":204`) || !strings.Contains(logs.String(), `"path":"/cb"`) {
		t.Fatalf("line lacks status or path: %s", logs.String())
	}
}
