package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
	_ "modernc.org/sqlite"
)

// backends gives each migration test a fresh, unmigrated database per backend, plus a way
// to run raw SQL against it.
func backends(t *testing.T) map[string]func(t *testing.T) (sqlstore.Options, *sql.DB) {
	return map[string]func(t *testing.T) (sqlstore.Options, *sql.DB){
		"sqlite": func(t *testing.T) (sqlstore.Options, *sql.DB) {
			path := filepath.Join(t.TempDir(), "m.db")
			raw, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { raw.Close() })
			return sqlstore.Options{Driver: "sqlite", DSN: "file:" + path}, raw
		},
		"postgres": func(t *testing.T) (sqlstore.Options, *sql.DB) {
			o := postgresOptions(t, postgresDSN(t))
			o.AutoMigrate = false
			raw, err := sql.Open("pgx", o.DSN)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { raw.Close() })
			return o, raw
		},
	}
}

func TestMigrate(t *testing.T) {
	for name, fresh := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("open_unmigrated_fails_with_hint", func(t *testing.T) {
				o, _ := fresh(t)
				_, err := sqlstore.Open(t.Context(), o)
				if err == nil || !strings.Contains(err.Error(), "portcullis migrate") {
					t.Fatalf("open without migrations: got %v, want an error that says to run `portcullis migrate`", err)
				}
			})
			t.Run("fresh_then_noop", func(t *testing.T) {
				o, _ := fresh(t)
				applied, err := sqlstore.Migrate(t.Context(), o)
				if err != nil {
					t.Fatalf("migrate: %v", err)
				}
				if len(applied) == 0 || applied[0] != 1 || !slices.IsSorted(applied) {
					t.Fatalf("fresh database applied %v, want 1, 2, ... in order", applied)
				}
				again, err := sqlstore.Migrate(t.Context(), o)
				if err != nil || len(again) != 0 {
					t.Fatalf("second migrate: applied %v, err %v; want nothing", again, err)
				}
				db := mustOpen(t, o) // AutoMigrate off: must open now
				cur, pending, err := db.MigrationStatus(t.Context())
				if err != nil || cur != applied[len(applied)-1] || pending != 0 {
					t.Fatalf("status: version %d, %d pending, err %v; want %d, 0", cur, pending, err, applied[len(applied)-1])
				}
				o.AutoMigrate = true
				mustOpen(t, o) // re-open with AutoMigrate is a no-op
			})
			t.Run("auto_migrate", func(t *testing.T) {
				o, _ := fresh(t)
				o.AutoMigrate = true
				db := mustOpen(t, o)
				if err := db.Ping(t.Context()); err != nil {
					t.Fatal(err)
				}
				if _, pending, err := db.MigrationStatus(t.Context()); err != nil || pending != 0 {
					t.Fatalf("after auto migrate: %d pending, %v", pending, err)
				}
			})
			t.Run("schema_newer_than_binary_refused", func(t *testing.T) {
				o, raw := fresh(t)
				if _, err := sqlstore.Migrate(t.Context(), o); err != nil {
					t.Fatal(err)
				}
				table := "portcullis_migrations"
				if o.Schema != "" {
					table = pgx.Identifier{o.Schema, table}.Sanitize()
				}
				if _, err := raw.ExecContext(t.Context(), "INSERT INTO "+table+" (version_id, is_applied) VALUES (9999, true)"); err != nil {
					t.Fatal(err)
				}
				_, err := sqlstore.Open(t.Context(), o)
				if err == nil || !strings.Contains(err.Error(), "newer") {
					t.Fatalf("open of a newer schema: got %v, want a refusal", err)
				}
			})
			t.Run("concurrent_migrations_apply_once", func(t *testing.T) {
				o, _ := fresh(t)
				if o.Driver == "sqlite" {
					t.Skip("replicas share a database only on PostgreSQL")
				}
				var (
					mu  sync.Mutex
					all []int64
					wg  sync.WaitGroup
				)
				errs := make([]error, 3)
				for i := range errs {
					wg.Go(func() {
						applied, err := sqlstore.Migrate(context.Background(), o)
						errs[i] = err
						mu.Lock()
						all = append(all, applied...)
						mu.Unlock()
					})
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					t.Fatal(err)
				}
				slices.Sort(all)
				if d := cmp.Diff(slices.Compact(slices.Clone(all)), all); d != "" || len(all) == 0 {
					t.Fatalf("three concurrent migrations applied %v: some version twice or none", all)
				}
			})
		})
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	for name, o := range map[string]sqlstore.Options{
		"unknown_driver":    {Driver: "mysql", DSN: "x"},
		"empty_dsn":         {Driver: "sqlite"},
		"schema_for_sqlite": {Driver: "sqlite", DSN: "file:x.db", Schema: "s"},
		"schema_injection":  {Driver: "postgres", DSN: "postgres://127.0.0.1:1/x", Schema: `x"; DROP TABLE t; --`},
		"bad_postgres_dsn":  {Driver: "postgres", DSN: "postgres://[::1"},
	} {
		t.Run(name, func(t *testing.T) {
			if db, err := sqlstore.Open(t.Context(), o); err == nil {
				db.Close()
				t.Fatal("open succeeded")
			}
		})
	}
}
