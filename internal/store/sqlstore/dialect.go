package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"hash/fnv"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/portcullis/portcullis/internal/store"
	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect is everything that differs between SQLite and PostgreSQL once the schema exists.
// Upserts (INSERT ... ON CONFLICT ... DO UPDATE), RETURNING and partial indexes are spelled
// the same in both, so they are not here.
type dialect struct {
	name  string
	goose goose.Dialect
	// forUpdate is appended to a SELECT that reads a row a write transaction will change.
	// SQLite needs none: BEGIN IMMEDIATE on the single writer already serialises writers.
	forUpdate string
	// numbered placeholders ($1, $2, ...) instead of ?.
	numbered bool
	// advisoryLocks: serialise a transaction on a named lock with pg_advisory_xact_lock.
	advisoryLocks bool
	// classify maps a driver error to a store sentinel, or nil when it is none of them.
	classify func(error) error
}

var dialects = map[string]*dialect{
	"sqlite": {
		name:     "sqlite",
		goose:    goose.DialectSQLite3,
		classify: classifySQLite,
	},
	"postgres": {
		name:          "postgres",
		goose:         goose.DialectPostgres,
		forUpdate:     " FOR UPDATE",
		numbered:      true,
		advisoryLocks: true,
		classify:      classifyPostgres,
	},
}

// rebind turns the ? placeholders of q into the dialect's. Queries never hold a literal ?
// (no string literals with question marks), so a plain scan is exact.
func (d *dialect) rebind(q string) string {
	if !d.numbered {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// lock serialises the current transaction with every other transaction that takes the lock
// of the same name, until it ends. On SQLite it does nothing: a write transaction there
// already holds the database's only write lock (BEGIN IMMEDIATE).
func (db *DB) lock(ctx context.Context, tx *sql.Tx, name string) error {
	if !db.d.advisoryLocks {
		return nil
	}
	h := fnv.New64a()
	// The schema is part of the key so that two deployments in one database do not wait
	// for each other; a hash collision only costs some needless waiting, never correctness.
	h.Write([]byte(db.schema))
	h.Write([]byte{0})
	h.Write([]byte(name))
	_, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(h.Sum64()))
	return err
}

// classifySQLite maps SQLite result codes.
func classifySQLite(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return classifyCommon(err)
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return store.ErrDuplicate
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_INTERRUPT,
		sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN:
		return store.ErrUnavailable
	}
	return nil
}

// classifyPostgres maps SQLSTATE codes and the ways a connection fails.
func classifyPostgres(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505": // unique_violation
			return store.ErrDuplicate
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			strings.HasPrefix(pe.Code, "53"),       // insufficient resources (too many connections, disk full)
			strings.HasPrefix(pe.Code, "57"),       // operator intervention: shutdown, query_canceled
			pe.Code == "40001", pe.Code == "40P01": // serialization failure, deadlock: retryable, nothing written
			return store.ErrUnavailable
		}
		return nil
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) || pgconn.Timeout(err) || errors.Is(err, pgconn.ErrConnClosed) {
		return store.ErrUnavailable
	}
	return classifyCommon(err)
}

// classifyCommon recognises failures that do not come from the database itself.
func classifyCommon(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, driver.ErrBadConn),
		errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne):
		return store.ErrUnavailable
	}
	return nil
}
