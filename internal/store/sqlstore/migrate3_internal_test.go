package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestClientsKeepWorkingAcrossPostLogoutMigration: a client written at schema version 2 reads
// back after version 3 as it was, with no post-logout redirect URIs (so logout redirects
// nowhere until some are registered), on both backends.
func TestClientsKeepWorkingAcrossPostLogoutMigration(t *testing.T) {
	backends := map[string]func(t *testing.T) Options{
		"sqlite": func(t *testing.T) Options {
			return Options{Driver: "sqlite", DSN: "file:" + filepath.Join(t.TempDir(), "v2.db")}
		},
		"postgres": func(t *testing.T) Options {
			dsn := os.Getenv("PORTCULLIS_TEST_POSTGRES")
			if dsn == "" {
				t.Skip("PORTCULLIS_TEST_POSTGRES is not set")
			}
			b := make([]byte, 6)
			rand.Read(b)
			schema := "pc_test_" + hex.EncodeToString(b)
			t.Cleanup(func() {
				db, err := connect(context.Background(), Options{Driver: "postgres", DSN: dsn})
				if err != nil {
					t.Errorf("drop schema: %v", err)
					return
				}
				defer db.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := db.w.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
					t.Errorf("drop schema %s: %v", schema, err)
				}
			})
			return Options{Driver: "postgres", DSN: dsn, Schema: schema}
		},
	}
	for name, options := range backends {
		t.Run(name, func(t *testing.T) {
			o := options(t)
			old, err := connect(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			p, err := old.provider()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.UpTo(t.Context(), 2); err != nil {
				t.Fatal(err)
			}
			_, err = old.w.ExecContext(t.Context(), old.d.rebind(`INSERT INTO clients (id, owner, source,
				secret_hash, auth_method, jwks, jwks_uri, grant_types, scopes, audience, claims,
				token_format, internal, introspect, redirect_uris, require_par, disabled, created_at,
				updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
				"web", "config", "config", "", "none", "", "", `["authorization_code"]`, `["openid"]`,
				`null`, `null`, "opaque", false, false, `["https://web.example/cb"]`, false, false, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			old.Close()

			o.AutoMigrate = true
			db, err := Open(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			c, err := db.GetClient(t.Context(), "web")
			if err != nil {
				t.Fatal(err)
			}
			if c.PostLogoutRedirectURIs != nil || !slices.Equal(c.RedirectURIs, []string{"https://web.example/cb"}) || c.AuthMethod != "none" {
				t.Fatalf("after the migration: %+v", c)
			}
		})
	}
}
