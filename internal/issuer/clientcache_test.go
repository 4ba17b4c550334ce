package issuer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
)

func TestClientCache(t *testing.T) {
	db, err := sqlstore.Open(t.Context(), sqlstore.Options{Driver: "sqlite", DSN: "file:" + t.TempDir() + "/c.db", AutoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Unix(1_700_000_000, 0)
	c := newClientCache(db, func() time.Time { return now })
	ctx := context.Background()

	if _, err := c.GetClient(ctx, "app"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown client: %v, want ErrNotFound", err)
	}
	// Registered a moment after a miss: found at once (misses are never cached).
	if err := db.CreateClient(ctx, store.Client{ID: "app", Source: "cli", AuthMethod: "client_secret_basic", SecretHash: "$hmac-sha256$x"}, 0); err != nil {
		t.Fatal(err)
	}
	if cl, err := c.GetClient(ctx, "app"); err != nil || cl.Disabled {
		t.Fatalf("new client: %+v, %v", cl, err)
	}
	if _, err := db.UpdateClient(ctx, "app", func(cl store.Client) (store.Client, error) { cl.Disabled = true; return cl, nil }); err != nil {
		t.Fatal(err)
	}
	// Within the bound the cached copy may still be served ...
	now = now.Add(clientCacheTTL - time.Millisecond)
	if cl, _ := c.GetClient(ctx, "app"); cl.Disabled {
		t.Fatal("cache read through before its time: the test no longer shows the cache works")
	}
	// ... and never after it.
	now = now.Add(2 * time.Millisecond)
	if cl, err := c.GetClient(ctx, "app"); err != nil || !cl.Disabled {
		t.Fatalf("after %v the disabled client is still served from the cache: %+v, %v", clientCacheTTL, cl, err)
	}
}
