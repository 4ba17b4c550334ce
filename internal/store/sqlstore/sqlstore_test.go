package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver for the test's admin connection
	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
	"github.com/portcullis/portcullis/internal/store/storetest"
)

const postgresEnv = "PORTCULLIS_TEST_POSTGRES"

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openSQLite(t, filepath.Join(t.TempDir(), "store.db"))
	})
}

func TestSQLiteInMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return mustOpen(t, sqlstore.Options{Driver: "sqlite", DSN: ":memory:", AutoMigrate: true})
	})
}

func TestPostgres(t *testing.T) {
	dsn := postgresDSN(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		return mustOpen(t, postgresOptions(t, dsn))
	})
}

func openSQLite(t testing.TB, path string) *sqlstore.DB {
	return mustOpen(t, sqlstore.Options{Driver: "sqlite", DSN: "file:" + path, AutoMigrate: true})
}

func mustOpen(t testing.TB, o sqlstore.Options) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// postgresDSN returns the test server's URL or skips.
func postgresDSN(t testing.TB) string {
	dsn := os.Getenv(postgresEnv)
	if dsn == "" {
		t.Skipf("%s is not set: skipping the PostgreSQL backend (e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", postgresEnv, postgresEnv)
	}
	return dsn
}

// postgresOptions gives the test its own schema, dropped when it ends.
func postgresOptions(t testing.TB, dsn string) sqlstore.Options {
	t.Helper()
	schema := "pc_test_" + randomHex(6)
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Errorf("drop schema: %v", err)
			return
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return sqlstore.Options{Driver: "postgres", DSN: dsn, Schema: schema, AutoMigrate: true, MaxOpenConns: 8}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
