package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
)

// A write transaction in progress must not hold up readers: they read the last committed
// state from their own connections (WAL), without SQLITE_BUSY and without waiting.
func TestSQLiteReadsDoNotWaitForWrites(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "s.db"))
	c := store.Client{ID: "c1", Source: "cli", Scopes: []string{"old"}}
	if err := db.CreateClient(t.Context(), c, 0); err != nil {
		t.Fatal(err)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := db.UpdateClient(context.Background(), "c1", func(c store.Client) (store.Client, error) {
			close(inside)
			<-release
			c.Scopes = []string{"new"}
			return c, nil
		})
		done <- err
	}()
	<-inside
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			got, err := db.GetClient(ctx, "c1")
			if err != nil || len(got.Scopes) != 1 || got.Scopes[0] != "old" {
				t.Errorf("read during a write: %v %v; want the committed client at once", got.Scopes, err)
			}
		})
	}
	wg.Wait()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := db.GetClient(t.Context(), "c1")
	if err != nil || got.Scopes[0] != "new" {
		t.Fatalf("after commit: %v %v", got.Scopes, err)
	}
}

// Two processes on one file (portcullis serve and portcullis clients add) both write;
// BEGIN IMMEDIATE and busy_timeout make them take turns instead of failing.
func TestSQLiteTwoHandlesOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	a, b := openSQLite(t, path), openSQLite(t, path)
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			db := a
			if i%2 == 1 {
				db = b
			}
			if err := db.CreateToken(t.Context(), token(fmt.Sprint("h", i))); err != nil {
				t.Errorf("create %d: %v", i, err)
			}
			_, err := db.UpdateKeys(t.Context(), func(ks []store.SigningKey) ([]store.SigningKey, error) {
				return append(ks, store.SigningKey{ID: fmt.Sprint("k", i), Algorithm: "ES256"}), nil
			})
			if err != nil {
				t.Errorf("update keys %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if _, err := b.GetToken(t.Context(), fmt.Sprint("h", i)); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
	}
	ks, err := a.ListKeys(t.Context())
	if err != nil || len(ks) != n {
		t.Fatalf("%d keys after %d serialised appends (%v)", len(ks), n, err)
	}
}

func TestSQLiteReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	db := openSQLite(t, path)
	if err := db.CreateToken(t.Context(), token("h1")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = mustOpen(t, sqlstore.Options{Driver: "sqlite", DSN: "file:" + path}) // migrated: opens without AutoMigrate
	if _, err := db.GetToken(t.Context(), "h1"); err != nil {
		t.Fatal(err)
	}
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "s.db"))
	db.Close()
	for name, call := range map[string]func() error{
		"get_token":    func() error { _, err := db.GetToken(t.Context(), "h1"); return err },
		"create_token": func() error { return db.CreateToken(t.Context(), token("h1")) },
		"ping":         func() error { return db.Ping(t.Context()) },
		"update_keys": func() error {
			_, err := db.UpdateKeys(t.Context(), func(ks []store.SigningKey) ([]store.SigningKey, error) { return ks, nil })
			return err
		},
	} {
		if err := call(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after close: %v, want store.ErrUnavailable", name, err)
		}
	}
}

func TestUsernamesUsePRECIS(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "s.db"))
	if err := db.CreateUser(t.Context(), store.User{ID: "u1", Username: "Émile"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"émile", "ÉMILE", "E\u0301mile", "Ｅ\u0301ｍｉｌｅ"} { // case, decomposed, full width
		u, err := db.GetUserByName(t.Context(), name)
		if err != nil || u.ID != "u1" {
			t.Errorf("get %q: %v %v; want u1", name, u.ID, err)
		}
	}
	if err := db.CreateUser(t.Context(), store.User{ID: "u2", Username: "ｅ\u0301MILE"}); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("look-alike of a taken name: %v, want store.ErrDuplicate", err)
	}
	for _, name := range []string{"ali ce", "alice\u200b", "al\tice"} {
		if err := db.CreateUser(t.Context(), store.User{ID: "u3", Username: name}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("create %q: %v, want store.ErrInvalid", name, err)
		}
		if _, err := db.GetUserByName(t.Context(), name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("get %q: %v, want store.ErrNotFound", name, err)
		}
	}
}

func TestSyncConfigClientsSetsSource(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "s.db"))
	if err := db.SyncConfigClients(t.Context(), []store.Client{{ID: "a"}}); err != nil {
		t.Fatal(err)
	}
	c, err := db.GetClient(t.Context(), "a")
	if err != nil || c.Source != "config" {
		t.Fatalf("client synced without source: %q, %v; want source config", c.Source, err)
	}
}

func TestPurgeExpired(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	db := mustOpen(t, sqlstore.Options{Driver: "sqlite", DSN: "file:" + filepath.Join(t.TempDir(), "s.db"),
		AutoMigrate: true, Now: func() time.Time { return clock }})
	ctx := t.Context()
	mark := func(key string, exp time.Time) bool {
		ok, err := db.MarkUsed(ctx, key, exp)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	mark("old", now.Add(time.Minute))
	mark("new", now.Add(time.Hour))
	if err := db.PutEphemeral(ctx, "par", "old", []byte("v"), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := db.PutEphemeral(ctx, "par", "new", []byte("v"), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(2 * time.Minute) // the injected clock decides expiry
	if _, err := db.GetEphemeral(ctx, "par", "old"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired value readable: %v", err)
	}
	n, err := db.PurgeExpired(ctx, clock)
	if err != nil || n != 2 {
		t.Fatalf("purge: %d, %v; want 2", n, err)
	}
	if mark("new", now.Add(time.Hour)) {
		t.Fatal("purge removed a live replay key")
	}
	if _, err := db.GetEphemeral(ctx, "par", "new"); err != nil {
		t.Fatalf("purge removed a live value: %v", err)
	}
}
