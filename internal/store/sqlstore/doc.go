// Package sqlstore implements every interface of internal/store for SQLite (modernc.org/sqlite,
// pure Go, the embedded default) and PostgreSQL (pgx through database/sql) in one code path.
//
// The flow of a call:
//
//	method → validate input (store.ErrInvalid, nothing written)
//	       → context with Options.QueryTimeout
//	       → reader pool (reads) or writer (writes, write transactions)
//	       → driver error mapped to a store sentinel (wrapped with %w, cause kept)
//
// The differences between the two databases live in a small dialect table (dialect.go):
// placeholders, how a transaction is serialised, which driver errors mean "duplicate" or
// "unavailable". Queries are written once, with ? placeholders, and rebound for PostgreSQL.
//
// SQLite runs in WAL mode with one writer connection (every write and every write transaction,
// BEGIN IMMEDIATE) and a separate query-only reader pool, so readers never wait for a writer
// and never see SQLITE_BUSY. The hot single-statement writes (tokens, audit events, replay
// keys) that arrive together share one transaction (group commit, batch.go).
//
// PostgreSQL runs at READ COMMITTED; the operations whose contract demands serialisation
// take a row lock (SELECT ... FOR UPDATE), an advisory transaction lock, or are a single
// conditional statement.
//
// Replay keys and ephemeral values are judged expired by Options.Now; expired rows are
// ignored by every read and removed by PurgeExpired, which the application schedules (the
// store contract has no such method yet), as it schedules DeleteExpiredTokens.
//
// Schema changes are embedded, forward-only, versioned migrations run with goose's Provider
// API (migrate.go). Times are stored as BIGINT Unix microseconds in UTC (NULL for the zero
// time), slices and maps as JSON text, the same in both dialects.
package sqlstore
