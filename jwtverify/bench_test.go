package jwtverify

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkVerify measures a full verification and a verified-token cache hit per algorithm.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA", "PS256", "RS256"} {
		for _, mode := range []string{"nocache", "cache"} {
			b.Run(alg+"/"+mode, func(b *testing.B) {
				k := newTestKey(b, alg, "k1")
				v := newTestVerifier(b, staticKeys(b, k), func(c *Config) {
					if mode == "cache" {
						c.CacheSize = 10_000
					}
				})
				tok := k.mintJOSE(b, baseClaims(testNow), "at+jwt")
				ctx := context.Background()
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify(ctx, tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkVerifyCacheHitParallel: the gateway's hot path under concurrency (distinct tokens).
func BenchmarkVerifyCacheHitParallel(b *testing.B) {
	k := newTestKey(b, "ES256", "k1")
	v := newTestVerifier(b, staticKeys(b, k), func(c *Config) { c.CacheSize = 10_000 })
	tokens := make([]string, 256)
	for i := range tokens {
		tokens[i] = k.mint(b, k.defaultHeader(), with(baseClaims(testNow), "jti", fmt.Sprint(i)))
		if _, err := v.Verify(context.Background(), tokens[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := v.Verify(context.Background(), tokens[i%len(tokens)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkRejectMalformed: the cost of refusing garbage (what an attacker can make us spend).
func BenchmarkRejectMalformed(b *testing.B) {
	k := newTestKey(b, "ES256", "k1")
	v := newTestVerifier(b, staticKeys(b, k), func(c *Config) { c.CacheSize = 10_000 })
	tok := k.mint(b, k.defaultHeader(), baseClaims(testNow))
	bad := tok[:len(tok)-2] + "AA" // wrong signature
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), bad); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkRemoteJWKSKeysHit(b *testing.B) {
	srv := newJWKSServer(b, newTestKey(b, "ES256", "k1"))
	r := newRemote(b, srv, RemoteOptions{})
	ctx := context.Background()
	if _, err := r.Keys(ctx, "k1"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Keys(ctx, "k1"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPolicyAllow(b *testing.B) {
	claims := &Claims{Raw: decodeRaw(b, `{"sub":"alice","customer_id":"acme","scope":"orders:read orders:write","exp":1760000300}`)}
	in := PolicyInput{
		Claims:   claims,
		Request:  RequestInput{Method: "GET", Path: "/api/orders/42", Params: map[string]string{"id": "42"}},
		Resource: map[string]any{"customer": "acme"},
	}
	for _, tc := range []struct{ name, expr string }{
		{"owner", `resource.customer == claims.customer_id`},
		{"owner+method+scope", `request.method == "GET" && resource.customer == claims.customer_id && "orders:read" in claims.scope.split(" ")`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := mustPolicy(b, tc.expr)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				ok, err := p.Allow(ctx, in)
				if err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
