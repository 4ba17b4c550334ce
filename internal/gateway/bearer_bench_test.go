package gateway

import (
	"strings"
	"testing"
)

func BenchmarkBearerToken(b *testing.B) {
	v := "Bearer " + strings.Repeat("eyJhbGciOiJFUzI1NiJ9", 35) + "." + strings.Repeat("a", 40) + "." + strings.Repeat("s", 86)
	b.ReportAllocs()
	for b.Loop() {
		if tok, ok := bearerToken(v); tok == "" || !ok {
			b.Fatal("refused")
		}
	}
}
