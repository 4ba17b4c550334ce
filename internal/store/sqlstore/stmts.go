package sqlstore

import (
	"context"
	"database/sql"
	"errors"
)

// stmts are the statements on the hot paths, prepared once at Open. database/sql re-prepares
// them transparently on each pooled connection (and inside transactions via Tx.StmtContext).
type stmts struct {
	getToken    *sql.Stmt // reader
	getClient   *sql.Stmt // reader
	createToken *sql.Stmt // writer
	appendAudit *sql.Stmt // writer, one event
	markUsed    *sql.Stmt // writer
}

func (db *DB) prepare(ctx context.Context) error {
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	var err error
	prep := func(p *sql.DB, q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var s *sql.Stmt
		s, err = p.PrepareContext(ctx, db.d.rebind(q))
		return s
	}
	db.st.getToken = prep(db.r, qGetToken)
	db.st.getClient = prep(db.r, qGetClient)
	db.st.createToken = prep(db.w, qCreateToken)
	db.st.appendAudit = prep(db.w, qAppendAudit)
	db.st.markUsed = prep(db.w, qMarkUsed)
	return err
}

func (s *stmts) close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.getToken, s.getClient, s.createToken, s.appendAudit, s.markUsed} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	return errors.Join(errs...)
}

// tx runs fn in one write transaction bounded by the query timeout. On SQLite that is the
// single writer connection with BEGIN IMMEDIATE, so write transactions are serialised; on
// PostgreSQL it is READ COMMITTED and fn takes the row or advisory locks it needs. An error
// from fn rolls everything back and is returned as is.
func (db *DB) tx(ctx context.Context, op string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return db.wrap(op, err)
	}
	if err := fn(ctx, tx); err != nil {
		_ = tx.Rollback()
		return db.wrap(op, err)
	}
	if err := tx.Commit(); err != nil {
		return db.wrap(op, err)
	}
	return nil
}

// exec runs one write statement and returns the number of rows it changed.
func (db *DB) exec(ctx context.Context, op, q string, args ...any) (int64, error) {
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	res, err := db.w.ExecContext(ctx, db.d.rebind(q), args...)
	if err != nil {
		return 0, db.wrap(op, err)
	}
	n, err := res.RowsAffected()
	return n, db.wrap(op, err)
}

func execTx(ctx context.Context, tx *sql.Tx, db *DB, q string, args ...any) (int64, error) {
	res, err := tx.ExecContext(ctx, db.d.rebind(q), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
