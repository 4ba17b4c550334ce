package sqlstore

import (
	"context"
	"time"
)

// qMarkUsed inserts the key, or takes over a row whose expiry has passed; a live row is left
// alone and the statement changes nothing. One statement, so concurrent callers race inside
// the database, where exactly one of them changes a row.
const qMarkUsed = `INSERT INTO replay (id, expires_at) VALUES (?, ?)
	ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at
	WHERE replay.expires_at <= ?`

// MarkUsed records key until expires and reports whether it was new (absent, or present but
// expired at Options.Now). Of concurrent calls with one key exactly one reports true.
func (db *DB) MarkUsed(ctx context.Context, key string, expires time.Time) (bool, error) {
	if err := checkKey("replay key", key); err != nil {
		return false, err
	}
	if expires.IsZero() {
		return false, invalid("replay key: zero expiry")
	}
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	n, err := db.write(ctx, db.st.markUsed, "", key, micros(expires), micros(db.now()))
	if err != nil {
		return false, db.wrap("mark used", err)
	}
	return n == 1, nil
}

// PurgeExpired deletes replay keys and ephemeral values that expired before before and
// returns how many rows it deleted. The application calls it periodically (expired rows are
// already ignored by every read).
func (db *DB) PurgeExpired(ctx context.Context, before time.Time) (int, error) {
	if before.IsZero() {
		return 0, invalid("purge expired: zero time")
	}
	total := 0
	for _, q := range []string{
		`DELETE FROM replay WHERE id IN (SELECT id FROM replay WHERE expires_at < ? LIMIT ?)`,
		`DELETE FROM ephemeral WHERE (kind, id) IN (SELECT kind, id FROM ephemeral WHERE expires_at < ? LIMIT ?)`,
	} {
		for {
			n, err := db.exec(ctx, "purge expired", q, micros(before), deleteBatch)
			total += int(n)
			if err != nil {
				return total, err
			}
			if n < deleteBatch {
				break
			}
		}
	}
	return total, nil
}
