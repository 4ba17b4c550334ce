package issuer_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/token"
)

// The handler benchmarks run the complete issuer handler (middleware, form parsing, client
// authentication, the SQLite store, signing, audit) in process through httptest.NewRecorder,
// so they measure ns and allocations per request without TLS or sockets. bench/issuer
// measures the same endpoints over HTTPS.

func benchRequest(b *testing.B, h http.Handler, path, body string, hdr map[string]string, want int) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
	}
}

func BenchmarkTokenOpaque(b *testing.B) {
	h := newHarness(b)
	benchRequest(b, h.issuer.Handler(), "/token", "grant_type=client_credentials&scope=orders:read", h.basic(basicApp), 200)
}

func BenchmarkTokenJWT(b *testing.B) {
	h := newHarness(b)
	benchRequest(b, h.issuer.Handler(), "/token", "grant_type=client_credentials", h.basic(internalSvc), 200)
}

func BenchmarkIntrospectJSON(b *testing.B) {
	h := newHarness(b)
	tok := h.token(b, basicApp, "orders:read")
	benchRequest(b, h.issuer.Handler(), "/introspect", url.Values{"token": {tok}}.Encode(), h.basic(resource), 200)
}

func BenchmarkIntrospectJWT(b *testing.B) {
	h := newHarness(b)
	tok := h.token(b, basicApp, "orders:read")
	hdr := h.basic(resource)
	hdr["Accept"] = mediaIntrospectionJWT
	benchRequest(b, h.issuer.Handler(), "/introspect", url.Values{"token": {tok}}.Encode(), hdr, 200)
}

func BenchmarkIntrospectInactive(b *testing.B) {
	h := newHarness(b)
	benchRequest(b, h.issuer.Handler(), "/introspect", "token=pcat_unknown", h.basic(resource), 200)
}

// BenchmarkRevoke revokes tokens of a pool created directly in the store, round robin: the
// first pass revokes, later passes find them revoked (the same reads and the same write).
func BenchmarkRevoke(b *testing.B) {
	h := newHarness(b)
	now := time.Now()
	const pool = 2000
	bodies := make([]string, pool)
	for i := range bodies {
		tok := token.NewOpaque(token.AccessPrefix)
		err := h.db.CreateToken(b.Context(), store.Token{Hash: token.Hash(tok), Kind: store.KindAccess, Format: "opaque",
			ClientID: basicApp, Subject: basicApp, IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = "token=" + tok
	}
	handler := h.issuer.Handler()
	hdr := h.basic(basicApp)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/revoke", strings.NewReader(bodies[i%pool]))
		i++
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", hdr["Authorization"])
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}
