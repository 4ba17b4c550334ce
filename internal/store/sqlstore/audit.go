package sqlstore

import (
	"context"
	"database/sql"
	"strings"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/store"
)

const (
	auditInsertCols = `occurred_at, event_type, outcome, client_id, subject, request_id, remote_ip, reason, details`
	auditRow        = `(?, ?, ?, ?, ?, ?, ?, ?, ?)`
	auditArgs       = 9
	qAppendAudit    = `INSERT INTO audit_events (` + auditInsertCols + `) VALUES ` + auditRow
	// auditChunk rows per INSERT keep the placeholders well under both databases' limits
	// (SQLite 32766, PostgreSQL 65535).
	auditChunk = 500
	// auditMaxLimit is the default and largest page of ListAudit.
	auditMaxLimit = 1000
)

// AppendAudit appends events in one statement (in one transaction when there are more than
// auditChunk). The store assigns IDs; the events' own ID fields are ignored. Type and Time
// are required (store.ErrInvalid, nothing appended). Text that a backend cannot hold or that
// is too long to index is repaired rather than refused, because audit text often carries
// what an attacker sent and the event must not be lost: invalid UTF-8 and NUL become U+FFFD,
// and the indexed type and client id are cut to 1024 bytes.
func (db *DB) AppendAudit(ctx context.Context, events ...store.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	args := make([]any, 0, len(events)*auditArgs)
	for _, e := range events {
		if e.Type == "" {
			return invalid("audit event without type")
		}
		if e.Time.IsZero() {
			return invalid("audit event without time")
		}
		details, err := encJSON("audit details", e.Details)
		if err != nil {
			return err
		}
		args = append(args, micros(e.Time), clip(clean(e.Type)), clean(e.Outcome), clip(clean(e.ClientID)),
			clean(e.Subject), clean(e.RequestID), clean(e.RemoteIP), clean(e.Reason), details)
	}
	multi := func(n int) string {
		return db.d.rebind(`INSERT INTO audit_events (` + auditInsertCols + `) VALUES ` +
			strings.TrimSuffix(strings.Repeat(auditRow+", ", n), ", "))
	}
	if len(events) <= auditChunk {
		ctx, cancel := db.ctx(ctx)
		defer cancel()
		var err error
		if len(events) == 1 {
			_, err = db.write(ctx, db.st.appendAudit, "", args...)
		} else {
			_, err = db.write(ctx, nil, multi(len(events)), args...)
		}
		return db.wrap("append audit", err)
	}
	return db.tx(ctx, "append audit", func(ctx context.Context, tx *sql.Tx) error {
		for len(args) > 0 {
			n := min(len(args), auditChunk*auditArgs)
			if _, err := tx.ExecContext(ctx, multi(n/auditArgs), args[:n]...); err != nil {
				return err
			}
			args = args[n:]
		}
		return nil
	})
}

type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}

// clean makes s storable in both backends.
func clean(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// clip cuts s to maxKey bytes on a rune boundary.
func clip(s string) string {
	if len(s) <= maxKey {
		return s
	}
	i := maxKey
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// ListAudit returns the events matching f, oldest first (by time, then id), at most f.Limit
// (default and maximum 1000).
func (db *DB) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	var (
		where []string
		args  []any
	)
	if f.Type != "" {
		where = append(where, "event_type = ?")
		args = append(args, f.Type)
	}
	if f.ClientID != "" {
		where = append(where, "client_id = ?")
		args = append(args, f.ClientID)
	}
	if !f.Since.IsZero() {
		where = append(where, "occurred_at >= ?")
		args = append(args, micros(f.Since))
	}
	for _, a := range args {
		if s, ok := a.(string); ok && !validKey(s) {
			return nil, nil // a filter value that could not be stored matches nothing
		}
	}
	limit := f.Limit
	if limit <= 0 || limit > auditMaxLimit {
		limit = auditMaxLimit
	}
	q := `SELECT id, ` + auditInsertCols + ` FROM audit_events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY occurred_at, id LIMIT ?`
	args = append(args, limit)

	ctx, cancel := db.ctx(ctx)
	defer cancel()
	rows, err := db.r.QueryContext(ctx, db.d.rebind(q), args...)
	if err != nil {
		return nil, db.wrap("list audit", err)
	}
	defer rows.Close()
	var out []store.AuditEvent
	for rows.Next() {
		var (
			e       store.AuditEvent
			at      sql.NullInt64
			details []byte
		)
		if err := rows.Scan(&e.ID, &at, &e.Type, &e.Outcome, &e.ClientID, &e.Subject, &e.RequestID,
			&e.RemoteIP, &e.Reason, &details); err != nil {
			return nil, db.wrap("list audit", err)
		}
		e.Time = fromMicros(at)
		if err := decJSON("audit details", details, &e.Details); err != nil {
			return nil, db.wrap("list audit", err)
		}
		out = append(out, e)
	}
	return out, db.wrap("list audit", rows.Err())
}
