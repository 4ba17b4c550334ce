package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/portcullis/portcullis/internal/store"
)

// Both dialects must carry the same migration versions, or one backend's schema would drift.
func TestMigrationsMatchAcrossDialects(t *testing.T) {
	names := map[string][]string{}
	for d := range dialects {
		entries, err := fs.ReadDir(migrations, "migrations/"+d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			names[d] = append(names[d], e.Name())
		}
	}
	if len(names["sqlite"]) == 0 {
		t.Fatal("no migrations embedded")
	}
	if d := cmp.Diff(names["sqlite"], names["postgres"]); d != "" {
		t.Fatalf("migration files differ between dialects (-sqlite +postgres):\n%s", d)
	}
}

func TestSQLiteReadersAreQueryOnly(t *testing.T) {
	db, err := Open(t.Context(), Options{Driver: "sqlite", DSN: "file:" + filepath.Join(t.TempDir(), "s.db"), AutoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.r == db.w {
		t.Fatal("a file database shares its writer with readers")
	}
	if _, err := db.r.ExecContext(t.Context(), `DELETE FROM tokens`); err == nil {
		t.Fatal("a reader connection could write")
	}
	if got := db.w.Stats().MaxOpenConnections; got != 1 {
		t.Fatalf("writer pool allows %d connections, want 1", got)
	}
	var mode string
	if err := db.r.QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		t.Fatalf("journal mode %q (%v), want wal", mode, err)
	}
}

func TestRebind(t *testing.T) {
	for name, tc := range map[string]struct{ d, in, want string }{
		"sqlite_unchanged": {"sqlite", "a = ? AND b = ?", "a = ? AND b = ?"},
		"postgres":         {"postgres", "a = ? AND b IN (?, ?)", "a = $1 AND b IN ($2, $3)"},
		"postgres_many":    {"postgres", strings.Repeat("?,", 11), "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := dialects[tc.d].rebind(tc.in); got != tc.want {
				t.Fatalf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// No query of this package may contain a literal ?, which rebind would misread.
func TestQueriesHaveNoLiteralQuestionMarks(t *testing.T) {
	for _, q := range []string{qGetClient, qInsertClient, qReplaceClient, qGetToken, qCreateToken, qConsumeToken, qMarkUsed, qAppendAudit} {
		if strings.Contains(q, "'?") || strings.Contains(q, "?'") {
			t.Fatalf("query has a quoted ?: %s", q)
		}
	}
}

func TestWrapKeepsSentinelAndCause(t *testing.T) {
	for _, d := range []string{"sqlite", "postgres"} {
		db := &DB{d: dialects[d]}
		for name, tc := range map[string]struct {
			err  error
			want error
		}{
			"deadline":     {context.DeadlineExceeded, store.ErrUnavailable},
			"conn_refused": {&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, store.ErrUnavailable},
			"no_rows":      {sql.ErrNoRows, store.ErrNotFound},
			"sentinel":     {store.ErrConflict, store.ErrConflict},
		} {
			t.Run(d+"/"+name, func(t *testing.T) {
				got := db.wrap("op", tc.err)
				if !errors.Is(got, tc.want) || !errors.Is(got, tc.err) {
					t.Fatalf("wrap(%v) = %v: want errors.Is for %v and for the cause", tc.err, got, tc.want)
				}
			})
		}
		if err := db.wrap("op", errors.New("syntax error")); isSentinel(err) {
			t.Fatalf("%s: an unknown error became a sentinel: %v", d, err)
		}
	}
}

func TestPostgresSessionSettings(t *testing.T) {
	dsn := os.Getenv("PORTCULLIS_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("PORTCULLIS_TEST_POSTGRES is not set")
	}
	db, err := connect(t.Context(), Options{Driver: "postgres", DSN: dsn, QueryTimeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.r.QueryRowContext(t.Context(), "SHOW idle_in_transaction_session_timeout").Scan(&v); err != nil || v != "3s" {
		t.Fatalf("idle_in_transaction_session_timeout = %q (%v), want 3s", v, err)
	}
}
