package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/portcullis/portcullis/internal/store"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Options configures Open and Migrate.
type Options struct {
	// Driver is "sqlite" or "postgres".
	Driver string
	// DSN locates the database. SQLite: "file:path.db" (query parameters are kept; the store
	// adds its own pragmas), or ":memory:" for a private in-memory database (tests; reads and
	// writes then share one connection). PostgreSQL: a postgres:// URL or key=value string.
	DSN string
	// Schema (PostgreSQL only) is used through search_path and created if missing. Empty
	// means the server's default (public). Letters, digits and _ only.
	Schema string
	// AutoMigrate runs pending migrations at Open. Without it Open fails when the schema is
	// behind, telling the operator to run `portcullis migrate`.
	AutoMigrate bool
	// QueryTimeout bounds every call (connection wait, query, transaction). Default 5s.
	QueryTimeout time.Duration
	// MaxOpenConns sizes the PostgreSQL pool (default 20) and the SQLite reader pool
	// (default GOMAXPROCS, at least 2). SQLite always has exactly one writer connection.
	MaxOpenConns int
	// Logger receives migration and lifecycle messages. Nil discards them.
	Logger *slog.Logger
	// Now is the clock used to decide whether replay keys and ephemeral values have expired.
	// Nil means time.Now. Tests inject a clock here instead of sleeping.
	Now func() time.Time
}

// DB is a store.Store on SQLite or PostgreSQL. It is safe for concurrent use; the zero value
// is not usable (use Open). Every call is bounded by Options.QueryTimeout.
type DB struct {
	d       *dialect
	w       *sql.DB // writes: SQLite's single writer connection, PostgreSQL's pool
	r       *sql.DB // reads: SQLite's query-only reader pool (w for :memory:), PostgreSQL's pool
	schema  string
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
	st      stmts

	// SQLite group commit (batch.go); nil on PostgreSQL.
	wq          chan *writeReq
	quit        chan struct{}
	batcherDone chan struct{}

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*DB)(nil)

var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func (o *Options) withDefaults() (Options, *dialect, error) {
	c := *o
	d, ok := dialects[c.Driver]
	if !ok {
		return c, nil, fmt.Errorf("sqlstore: unknown driver %q (want sqlite or postgres)", c.Driver)
	}
	if c.DSN == "" {
		return c, nil, errors.New("sqlstore: empty dsn")
	}
	if c.Schema != "" {
		if c.Driver != "postgres" {
			return c, nil, errors.New("sqlstore: schema is for postgres only")
		}
		if !schemaName.MatchString(c.Schema) {
			return c, nil, fmt.Errorf("sqlstore: schema %q: letters, digits and _ only, at most 63", c.Schema)
		}
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 5 * time.Second
	}
	if c.MaxOpenConns <= 0 {
		if c.Driver == "postgres" {
			c.MaxOpenConns = 20
		} else {
			c.MaxOpenConns = max(2, runtime.GOMAXPROCS(0))
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, d, nil
}

// Open connects to the database described by o, applies pending migrations when
// o.AutoMigrate is set (otherwise fails if any are pending), and prepares the hot statements.
func Open(ctx context.Context, o Options) (*DB, error) {
	db, err := connect(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := db.ensureSchema(ctx, o.AutoMigrate); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.prepare(ctx); err != nil {
		db.Close()
		return nil, db.wrap("prepare statements", err)
	}
	return db, nil
}

// connect opens the pools without touching the schema.
func connect(ctx context.Context, o Options) (*DB, error) {
	o, d, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	db := &DB{d: d, schema: o.Schema, timeout: o.QueryTimeout, now: o.Now,
		log: o.Logger.With("component", "store", "driver", d.name)}
	switch d.name {
	case "sqlite":
		err = db.connectSQLite(ctx, o)
	case "postgres":
		err = db.connectPostgres(ctx, o)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func (db *DB) connectSQLite(ctx context.Context, o Options) error {
	busy := fmt.Sprintf("_pragma=busy_timeout(%d)", o.QueryTimeout.Milliseconds())
	mem := o.DSN == ":memory:" || strings.HasPrefix(o.DSN, "file::memory:") || strings.Contains(o.DSN, "mode=memory")
	wparams := []string{busy, "_pragma=foreign_keys(1)", "_pragma=synchronous(NORMAL)", "_txlock=immediate"}
	if !mem {
		wparams = append(wparams, "_pragma=journal_mode(WAL)")
	}
	path, isFile := sqliteFile(o.DSN)
	if isFile && !mem {
		if err := db.createPrivate(path); err != nil {
			return err
		}
	}
	w, err := sql.Open("sqlite", withParams(o.DSN, wparams...))
	if err != nil {
		return fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	db.w = w
	// One writer: SQLite has one write lock anyway, and queueing writers in database/sql
	// (bounded by the caller's context) is cheaper and fairer than busy-waiting on it.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := db.ping(ctx, w); err != nil { // creates the file and switches it to WAL
		return fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	if isFile && !mem {
		if err := privateSidecars(path); err != nil {
			return err
		}
	}
	db.startBatcher()
	if mem {
		db.r = w // a private in-memory database exists only on its one connection
		return nil
	}
	r, err := sql.Open("sqlite", withParams(o.DSN, busy, "_pragma=query_only(1)"))
	if err != nil {
		return fmt.Errorf("sqlstore: open sqlite readers: %w", err)
	}
	db.r = r
	r.SetMaxOpenConns(o.MaxOpenConns)
	r.SetMaxIdleConns(o.MaxOpenConns)
	r.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.ping(ctx, r); err != nil {
		return fmt.Errorf("sqlstore: open sqlite readers: %w", err)
	}
	return nil
}

// The database holds token hashes, sealed keys and the audit trail: nobody but its owner
// reads it. SQLite would create the file 0644 (less the umask), and its -wal and -shm with the
// file's mode whenever it recreates them, so a new file is created here first, 0600 whatever
// the umask. An existing file keeps the owner and group access its operator gave it, but
// never access for every other user (a warning says when that was taken away).

// createPrivate creates the database file 0600 when it does not exist yet, and takes access
// for others off an existing one.
func (db *DB) createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm()&0o007 == 0 {
			return nil // SQLite reports a file it cannot open
		}
		perm := fi.Mode().Perm()
		if err := os.Chmod(path, perm&^0o007); err != nil {
			return fmt.Errorf("sqlstore: the sqlite file is open to every user and cannot be restricted: %w", err)
		}
		db.log.Warn("the database file was open to every user; it holds token hashes, sealed keys and audit events, so their access was taken away", "path", path, "mode", perm.String(), "now", (perm &^ 0o007).String())
		return nil
	}
	if err != nil {
		return fmt.Errorf("sqlstore: create sqlite file: %w", err)
	}
	err = f.Chmod(0o600) // the umask may have removed the owner's bits, never added others'
	return errors.Join(err, f.Close())
}

// privateSidecars takes every access for others off -wal and -shm files left from before,
// and any access the database file itself does not give.
func privateSidecars(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("sqlstore: sqlite file: %w", err)
	}
	allowed := fi.Mode().Perm() &^ 0o007
	for _, suffix := range []string{"-wal", "-shm"} {
		si, err := os.Stat(path + suffix)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sqlstore: sqlite file: %w", err)
		}
		if perm := si.Mode().Perm(); perm&^allowed != 0 {
			if err := os.Chmod(path+suffix, perm&allowed); err != nil {
				return fmt.Errorf("sqlstore: sqlite file: %w", err)
			}
		}
	}
	return nil
}

// sqliteFile returns the file a SQLite DSN names, as SQLite resolves it: a plain path (the
// driver drops its query), or a file: URI (an empty or "localhost" authority, the path up to
// '?' or '#', percent-escapes decoded). ok is false where SQLite must not create the file or
// the name is not plainly a file: in-memory names, a mode other than rwc, another vfs, a URI
// it cannot read (SQLite then reports the problem itself).
func sqliteFile(dsn string) (path string, ok bool) {
	rest, isURI := strings.CutPrefix(dsn, "file:")
	if !isURI {
		path, _, _ = strings.Cut(dsn, "?")
		if path == "" || path == ":memory:" {
			return "", false
		}
		return path, true
	}
	rest, _, _ = strings.Cut(rest, "#")
	rest, query, _ := strings.Cut(rest, "?")
	if q, err := url.ParseQuery(query); err != nil || q.Has("vfs") || (q.Has("mode") && q.Get("mode") != "rwc") {
		return "", false
	}
	if after, ok := strings.CutPrefix(rest, "//"); ok {
		auth, p, _ := strings.Cut(after, "/")
		if auth != "" && auth != "localhost" {
			return "", false
		}
		rest = "/" + p
	}
	path, err := url.PathUnescape(rest)
	if err != nil || path == "" || path == ":memory:" || strings.ContainsRune(path, 0) {
		return "", false
	}
	return path, true
}

// withParams appends query parameters to a SQLite DSN.
func withParams(dsn string, params ...string) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + strings.Join(params, "&")
}

func (db *DB) connectPostgres(ctx context.Context, o Options) error {
	cfg, err := pgx.ParseConfig(o.DSN)
	if err != nil {
		return fmt.Errorf("sqlstore: postgres dsn: %w", err) // pgconn redacts the password
	}
	if cfg.ConnectTimeout <= 0 || cfg.ConnectTimeout > o.QueryTimeout {
		cfg.ConnectTimeout = o.QueryTimeout
	}
	if o.Schema != "" {
		cfg.RuntimeParams["search_path"] = pgx.Identifier{o.Schema}.Sanitize()
	}
	// A replica cut off mid-transaction must not hold its row or advisory locks until TCP
	// notices: the server ends a transaction left idle for twice the query timeout.
	if _, set := cfg.RuntimeParams["idle_in_transaction_session_timeout"]; !set {
		cfg.RuntimeParams["idle_in_transaction_session_timeout"] = fmt.Sprint(max(time.Second, 2*o.QueryTimeout).Milliseconds())
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "portcullis"
	}
	p := stdlib.OpenDB(*cfg)
	db.w, db.r = p, p
	p.SetMaxOpenConns(o.MaxOpenConns)
	p.SetMaxIdleConns(o.MaxOpenConns)
	p.SetConnMaxLifetime(30 * time.Minute)
	p.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.ping(ctx, p); err != nil {
		return db.wrap("connect postgres", err)
	}
	if o.Schema != "" {
		ctx, cancel := db.ctx(ctx)
		defer cancel()
		_, err := p.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{o.Schema}.Sanitize())
		// Two processes creating it at once can race inside PostgreSQL; the loser's
		// unique violation means the schema is there, which is all we wanted.
		if err != nil && !errors.Is(db.d.classify(err), store.ErrDuplicate) {
			return db.wrap("create schema", err)
		}
	}
	return nil
}

// ctx bounds one call by the query timeout.
func (db *DB) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, db.timeout)
}

func (db *DB) ping(ctx context.Context, p *sql.DB) error {
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	return p.PingContext(ctx)
}

// Ping reports whether the database answers a query within the timeout.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	var one int
	if err := db.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return db.wrap("ping", err)
	}
	if db.w != db.r {
		if err := db.w.PingContext(ctx); err != nil {
			return db.wrap("ping writer", err)
		}
	}
	return nil
}

// Close releases every connection. Later calls fail with store.ErrUnavailable. Closing twice
// is harmless.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		if db.quit != nil {
			close(db.quit)
			<-db.batcherDone // the batch in progress finishes first
		}
		errs := []error{db.st.close()}
		if db.r != nil && db.r != db.w {
			errs = append(errs, db.r.Close())
		}
		if db.w != nil {
			errs = append(errs, db.w.Close())
		}
		db.closeErr = errors.Join(errs...)
	})
	return db.closeErr
}
