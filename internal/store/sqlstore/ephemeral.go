package sqlstore

import (
	"context"
	"database/sql"
	"time"
)

// PutEphemeral stores value under (kind, key) until expires, replacing any value there.
func (db *DB) PutEphemeral(ctx context.Context, kind, key string, value []byte, expires time.Time) error {
	if err := checkKey("ephemeral kind", kind); err != nil {
		return err
	}
	if err := checkKey("ephemeral key", key); err != nil {
		return err
	}
	if expires.IsZero() {
		return invalid("ephemeral value: zero expiry")
	}
	_, err := db.exec(ctx, "put ephemeral", `INSERT INTO ephemeral (kind, id, value, expires_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (kind, id)
		DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
		kind, key, blob(value), micros(expires))
	return err
}

// GetEphemeral returns the value under (kind, key) if it has not expired at Options.Now,
// else store.ErrNotFound. An empty value comes back nil.
func (db *DB) GetEphemeral(ctx context.Context, kind, key string) ([]byte, error) {
	if !validKey(kind) || !validKey(key) {
		return nil, notFound("get ephemeral")
	}
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	var v []byte
	err := db.r.QueryRowContext(ctx, db.d.rebind(`SELECT value FROM ephemeral
		WHERE kind = ? AND id = ? AND expires_at > ?`), kind, key, micros(db.now())).Scan(&v)
	if err != nil {
		return nil, db.wrap("get ephemeral", err)
	}
	return bytesOrNil(v), nil
}

// TakeEphemeral deletes the value under (kind, key) and returns it if it had not expired. The
// delete is one statement (DELETE ... RETURNING), so of concurrent callers exactly one gets
// the row; the others, and every caller of an expired value, get store.ErrNotFound.
func (db *DB) TakeEphemeral(ctx context.Context, kind, key string) ([]byte, error) {
	if !validKey(kind) || !validKey(key) {
		return nil, notFound("take ephemeral")
	}
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	var (
		v   []byte
		exp sql.NullInt64
	)
	err := db.w.QueryRowContext(ctx, db.d.rebind(`DELETE FROM ephemeral WHERE kind = ? AND id = ?
		RETURNING value, expires_at`), kind, key).Scan(&v, &exp)
	if err != nil {
		return nil, db.wrap("take ephemeral", err)
	}
	if !db.now().Before(fromMicros(exp)) {
		return nil, notFound("take ephemeral: expired")
	}
	return bytesOrNil(v), nil
}

// DeleteEphemeral removes the value under (kind, key); deleting an absent value succeeds
// (values expire and are taken, so absence is not an error), an empty key does not.
func (db *DB) DeleteEphemeral(ctx context.Context, kind, key string) error {
	if err := checkKey("ephemeral kind", kind); err != nil {
		return err
	}
	if err := checkKey("ephemeral key", key); err != nil {
		return err
	}
	_, err := db.exec(ctx, "delete ephemeral", `DELETE FROM ephemeral WHERE kind = ? AND id = ?`, kind, key)
	return err
}
