package demoapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/portcullis/portcullis/jwtverify"
)

// benchGet measures one authenticated GET through the whole handler chain, without network or
// TLS: the work the upstream adds behind the gateway.
func benchGet(b *testing.B, cacheSize int, path string) {
	key := newES256(b)
	keys, err := jwtverify.StaticKeys(jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"})
	if err != nil {
		b.Fatal(err)
	}
	api, err := New(Options{
		Issuer: testIssuer, Audience: []string{testAudience}, Keys: keys,
		Now: func() time.Time { return testNow }, TokenCacheSize: cacheSize,
	})
	if err != nil {
		b.Fatal(err)
	}
	tok := signJWT(b, key, jose.ES256, "k1", "at+jwt", accessClaims("acme-app", "acme", "orders:read"))
	h := api.Handler()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

func BenchmarkGetOrder(b *testing.B) {
	b.Run("token cache", func(b *testing.B) { benchGet(b, 0, "/api/orders/A-1001") })
	b.Run("no token cache", func(b *testing.B) { benchGet(b, -1, "/api/orders/A-1001") })
}

func BenchmarkListOrders(b *testing.B) { benchGet(b, 0, "/api/orders") }

func BenchmarkDecodeOrder(b *testing.B) {
	body := []byte(`{"item":"rocket skates","quantity":2}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeOrder(body); err != nil {
			b.Fatal(err)
		}
	}
}
