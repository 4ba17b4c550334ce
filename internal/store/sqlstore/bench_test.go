package sqlstore_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
)

// benchStores opens each available backend for a benchmark: SQLite always, PostgreSQL when
// PORTCULLIS_TEST_POSTGRES is set.
func benchStores(b *testing.B, run func(b *testing.B, db *sqlstore.DB)) {
	b.Run("sqlite", func(b *testing.B) {
		run(b, openSQLite(b, filepath.Join(b.TempDir(), "bench.db")))
	})
	b.Run("postgres", func(b *testing.B) {
		dsn := os.Getenv(postgresEnv)
		if dsn == "" {
			b.Skipf("%s is not set", postgresEnv)
		}
		run(b, mustOpen(b, postgresOptions(b, dsn)))
	})
}

// benchHash is what the issuer stores: the hex SHA-256 of a token.
func benchHash(i int64) string {
	h := sha256.Sum256([]byte("token-" + strconv.FormatInt(i, 10)))
	return hex.EncodeToString(h[:])
}

func benchToken(i int64) store.Token {
	t := token(benchHash(i))
	t.Kind, t.Scopes = store.KindAccess, []string{"orders:read", "orders:write"}
	t.Audience = []string{"https://api.example"}
	t.Claims = map[string]any{"customer_id": "acme"}
	t.ExpiresAt = time.Now().Add(time.Hour)
	return t
}

func BenchmarkCreateToken(b *testing.B) {
	benchStores(b, func(b *testing.B, db *sqlstore.DB) {
		var i int64
		b.ReportAllocs()
		for b.Loop() {
			i++
			if err := db.CreateToken(b.Context(), benchToken(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCreateTokenParallel is issuance under load: 8×GOMAXPROCS writers at once, which
// SQLite's group commit coalesces.
func BenchmarkCreateTokenParallel(b *testing.B) {
	benchStores(b, func(b *testing.B, db *sqlstore.DB) {
		var n atomic.Int64
		b.SetParallelism(8)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := db.CreateToken(b.Context(), benchToken(n.Add(1))); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// seedTokens stores n tokens for the lookup benchmarks.
func seedTokens(b *testing.B, db *sqlstore.DB, n int64) {
	b.Helper()
	for i := range n {
		if err := db.CreateToken(b.Context(), benchToken(i)); err != nil {
			b.Fatal(err)
		}
	}
}

const seeded = 5000

func BenchmarkGetToken(b *testing.B) {
	benchStores(b, func(b *testing.B, db *sqlstore.DB) {
		seedTokens(b, db, seeded)
		var i int64
		b.ReportAllocs()
		for b.Loop() {
			i++
			if _, err := db.GetToken(b.Context(), benchHash(i%seeded)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGetTokenParallel is introspection under load: GOMAXPROCS readers at once.
func BenchmarkGetTokenParallel(b *testing.B) {
	benchStores(b, func(b *testing.B, db *sqlstore.DB) {
		seedTokens(b, db, seeded)
		var n atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := db.GetToken(b.Context(), benchHash(n.Add(1)%seeded)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkMarkUsed(b *testing.B) {
	benchStores(b, func(b *testing.B, db *sqlstore.DB) {
		exp := time.Now().Add(time.Hour)
		var i int64
		b.ReportAllocs()
		for b.Loop() {
			i++
			ok, err := db.MarkUsed(b.Context(), "client-1:jti-"+strconv.FormatInt(i, 10), exp)
			if err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
}

func BenchmarkAppendAudit(b *testing.B) {
	benchStores(b, func(b *testing.B, db *sqlstore.DB) {
		e := store.AuditEvent{Time: time.Now(), Type: "token.issued", Outcome: "success", ClientID: "c1",
			Subject: "c1", RequestID: "req-1", RemoteIP: "192.0.2.1", Details: map[string]string{"grant_type": "client_credentials"}}
		b.ReportAllocs()
		for b.Loop() {
			if err := db.AppendAudit(b.Context(), e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendAuditBatch100 is the per-call cost of appending 100 events at once.
func BenchmarkAppendAuditBatch100(b *testing.B) {
	benchStores(b, func(b *testing.B, db *sqlstore.DB) {
		es := make([]store.AuditEvent, 100)
		for i := range es {
			es[i] = store.AuditEvent{Time: time.Now(), Type: "token.issued", Outcome: "success", ClientID: "c1"}
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := db.AppendAudit(b.Context(), es...); err != nil {
				b.Fatal(err)
			}
		}
	})
}
