package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Group commit for SQLite.
//
// SQLite has one writer, and on this kind of machine a commit costs far more than the insert
// it commits (WAL frame writes and lock syscalls). The hot single-statement writes — token
// records, audit events, replay keys — therefore go to one goroutine that runs every write
// waiting at that moment in one transaction. Under load that turns N commits into one; a lone
// write runs on its own without a transaction. PostgreSQL has many connections and its own
// group commit, so there the writes run directly.
//
// Each write keeps its own outcome: a constraint violation (a duplicate) rolls back only that
// statement, as SQLite does inside a transaction, and the others commit. Any other failure,
// or a failed commit, fails the whole batch, so a caller that sees an error had nothing
// written. The batch runs under the earliest deadline of its callers.

// maxBatch bounds one group commit.
const maxBatch = 256

type writeReq struct {
	ctx  context.Context
	stmt *sql.Stmt // prepared on the writer; or
	q    string    // a query in the dialect's placeholders
	args []any
	done chan writeRes // buffered: the batcher never blocks on a caller
}

type writeRes struct {
	n   int64
	err error
}

// errClosed is what a write waiting for the batcher gets when the store closes.
var errClosed = errors.New("store closed")

func (db *DB) startBatcher() {
	db.wq = make(chan *writeReq)
	db.quit = make(chan struct{})
	db.batcherDone = make(chan struct{})
	go db.batchLoop()
}

// write runs one statement on the writer and returns how many rows it changed; ctx already
// carries the query timeout.
func (db *DB) write(ctx context.Context, stmt *sql.Stmt, q string, args ...any) (int64, error) {
	if db.wq == nil {
		return execOne(ctx, db.w, stmt, q, args)
	}
	r := &writeReq{ctx: ctx, stmt: stmt, q: q, args: args, done: make(chan writeRes, 1)}
	select {
	case db.wq <- r:
	case <-ctx.Done():
		return 0, ctx.Err() // never handed over: nothing written
	case <-db.quit:
		return 0, errClosed
	}
	res := <-r.done // once handed over, the outcome is known only when the batch ends
	return res.n, res.err
}

func (db *DB) batchLoop() {
	defer close(db.batcherDone)
	for {
		select {
		case r := <-db.wq:
			db.runGroup(r)
		case <-db.quit:
			return
		}
	}
}

// runGroup runs first alone when no other write is waiting; otherwise it opens a
// transaction and keeps adding the writes that arrive while it runs, until none is waiting
// (or maxBatch), then commits them together.
func (db *DB) runGroup(first *writeReq) {
	runtime.Gosched() // let callers that were just woken reach the queue
	var second *writeReq
	select {
	case second = <-db.wq:
	default:
	}
	if second == nil {
		if err := first.ctx.Err(); err != nil {
			first.done <- writeRes{err: err}
			return
		}
		n, err := execOne(first.ctx, db.w, first.stmt, first.q, first.args)
		first.done <- writeRes{n: n, err: err}
		return
	}

	deadline, ok := first.ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(db.timeout)
	}
	// The first caller has waited longest, so its deadline is the group's.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var (
		group []*writeReq
		res   []writeRes
	)
	fail := func(err error, rest ...*writeReq) {
		for _, r := range append(group, rest...) {
			r.done <- writeRes{err: err}
		}
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		fail(err, first, second)
		return
	}
	queue := []*writeReq{first, second}
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		if err := r.ctx.Err(); err != nil {
			r.done <- writeRes{err: err} // gone while waiting: not written
		} else {
			group = append(group, r)
			n, err := execOne(ctx, tx, r.stmt, r.q, r.args)
			if err != nil && !isConstraint(err) {
				_ = tx.Rollback()
				fail(fmt.Errorf("group commit: %w", err), queue...)
				return
			}
			res = append(res, writeRes{n: n, err: err})
		}
		if len(queue) == 0 && len(group) < maxBatch {
			runtime.Gosched()
			select {
			case r := <-db.wq:
				queue = append(queue, r)
			default:
			}
		}
	}
	if err := tx.Commit(); err != nil {
		fail(fmt.Errorf("group commit: %w", err))
		return
	}
	for i, r := range group {
		r.done <- res[i]
	}
}

// execOne runs a prepared statement (moved into tx if x is one) or a query.
func execOne(ctx context.Context, x execer, stmt *sql.Stmt, q string, args []any) (int64, error) {
	var (
		res sql.Result
		err error
	)
	switch {
	case stmt != nil:
		if tx, ok := x.(*sql.Tx); ok {
			stmt = tx.StmtContext(ctx, stmt)
		}
		res, err = stmt.ExecContext(ctx, args...)
	default:
		res, err = x.ExecContext(ctx, q, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// isConstraint reports whether err is an SQLite constraint violation, which undoes only the
// statement that caused it.
func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}
