package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
)

func batchDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(t.Context(), Options{Driver: "sqlite", DSN: "file:" + filepath.Join(t.TempDir(), "b.db"), AutoMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func tokenReq(t *testing.T, db *DB, ctx context.Context, hash string) *writeReq {
	t.Helper()
	now := time.Now()
	args, err := tokenArgs(store.Token{Hash: hash, Kind: store.KindAccess, ClientID: "c1", IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return &writeReq{ctx: ctx, stmt: db.st.createToken, args: args, done: make(chan writeRes, 1)}
}

// runGroup stops db's batcher and runs one group by hand: batch[0] first, the rest already
// waiting in the queue, as concurrent callers would be. It returns how many groups (commits)
// that took.
func runGroup(db *DB, batch []*writeReq) int {
	close(db.quit)
	<-db.batcherDone
	db.quit = nil
	db.wq = make(chan *writeReq, len(batch))
	for _, r := range batch[1:] {
		db.wq <- r
	}
	db.runGroup(batch[0])
	groups := 1
	for len(db.wq) > 0 { // what the group left behind forms the next groups
		db.runGroup(<-db.wq)
		groups++
	}
	return groups
}

func results(batch []*writeReq) []error {
	errs := make([]error, len(batch))
	for i, r := range batch {
		errs[i] = (<-r.done).err
	}
	return errs
}

func exists(t *testing.T, db *DB, hash string) bool {
	t.Helper()
	_, err := db.GetToken(t.Context(), hash)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func TestGroupCommitDuplicateFailsAlone(t *testing.T) {
	db := batchDB(t)
	if err := db.CreateToken(t.Context(), store.Token{Hash: "taken", Kind: store.KindAccess, ClientID: "c1", IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	batch := []*writeReq{tokenReq(t, db, t.Context(), "a"), tokenReq(t, db, t.Context(), "taken"), tokenReq(t, db, t.Context(), "b"), tokenReq(t, db, t.Context(), "a")}
	runGroup(db, batch)
	errs := results(batch)
	for i, wantDup := range []bool{false, true, false, true} {
		if got := db.wrap("x", errs[i]); errors.Is(got, store.ErrDuplicate) != wantDup || (!wantDup && errs[i] != nil) {
			t.Errorf("write %d: %v, want duplicate=%v", i, errs[i], wantDup)
		}
	}
	if !exists(t, db, "a") || !exists(t, db, "b") {
		t.Fatal("writes batched with a duplicate were lost")
	}
}

func TestGroupCommitFailureWritesNothing(t *testing.T) {
	db := batchDB(t)
	broken := &writeReq{ctx: t.Context(), q: "INSERT INTO no_such_table VALUES (1)", done: make(chan writeRes, 1)}
	batch := []*writeReq{tokenReq(t, db, t.Context(), "a"), tokenReq(t, db, t.Context(), "b"), broken, tokenReq(t, db, t.Context(), "c")}
	runGroup(db, batch)
	errs := results(batch)
	for i := range 3 {
		if errs[i] == nil {
			t.Errorf("write %d succeeded in a failed group", i)
		}
	}
	if exists(t, db, "a") || exists(t, db, "b") {
		t.Fatal("a failed group left records")
	}
	if errs[3] != nil || !exists(t, db, "c") {
		t.Fatalf("the write after a failed group: %v", errs[3])
	}
}

func TestGroupCommitSkipsEndedCallers(t *testing.T) {
	db := batchDB(t)
	done, cancel := context.WithCancel(t.Context())
	cancel()
	batch := []*writeReq{tokenReq(t, db, t.Context(), "kept"), tokenReq(t, db, done, "gone")}
	runGroup(db, batch)
	errs := results(batch)
	if errs[0] != nil || !errors.Is(errs[1], context.Canceled) {
		t.Fatalf("results %v, want [nil, canceled]", errs)
	}
	if exists(t, db, "gone") || !exists(t, db, "kept") {
		t.Fatal("a caller that had gone was written, or the other was not")
	}
}

func TestGroupCommitWholeGroupIsOneTransaction(t *testing.T) {
	db := batchDB(t)
	var batch []*writeReq
	for i := range 5 {
		batch = append(batch, tokenReq(t, db, t.Context(), string(rune('a'+i))))
	}
	if n := runGroup(db, batch); n != 1 {
		t.Fatalf("5 waiting writes took %d commits, want 1", n)
	}
	for i, err := range results(batch) {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	for i := range 5 {
		if !exists(t, db, string(rune('a'+i))) {
			t.Fatalf("write %d missing", i)
		}
	}
}

// BenchmarkGroupCommit compares concurrent token writes on SQLite with and without group
// commit, in one run.
func BenchmarkGroupCommit(b *testing.B) {
	for _, on := range []bool{true, false} {
		b.Run(map[bool]string{true: "on", false: "off"}[on], func(b *testing.B) {
			db, err := Open(b.Context(), Options{Driver: "sqlite", DSN: "file:" + filepath.Join(b.TempDir(), "b.db"), AutoMigrate: true})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if !on {
				close(db.quit)
				<-db.batcherDone
				db.quit, db.wq = nil, nil
			}
			var n atomic.Int64
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					now := time.Now()
					tok := store.Token{Hash: fmt.Sprint("h", n.Add(1)), Kind: store.KindAccess, ClientID: "c1",
						Scopes: []string{"orders:read"}, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
					if err := db.CreateToken(b.Context(), tok); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
