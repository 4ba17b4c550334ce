package sqlstore

import (
	"bytes"
	"context"
	"database/sql"

	"github.com/portcullis/portcullis/internal/store"
)

const keyCols = `id, algorithm, public_jwk, private_sealed, created_at, sign_from, retire_at, remove_at`

// ListKeys returns the key set in the order UpdateKeys last stored it.
func (db *DB) ListKeys(ctx context.Context) ([]store.SigningKey, error) {
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	ks, err := listKeys(ctx, db.r)
	return ks, db.wrap("list keys", err)
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func listKeys(ctx context.Context, q querier) ([]store.SigningKey, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+keyCols+` FROM signing_keys ORDER BY pos`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ks []store.SigningKey
	for rows.Next() {
		var (
			k                                 store.SigningKey
			created, signFrom, retire, remove sql.NullInt64
		)
		if err := rows.Scan(&k.ID, &k.Algorithm, &k.PublicJWK, &k.PrivateSealed, &created, &signFrom, &retire, &remove); err != nil {
			return nil, err
		}
		k.PublicJWK, k.PrivateSealed = bytesOrNil(k.PublicJWK), bytesOrNil(k.PrivateSealed)
		k.CreatedAt, k.SignFrom = fromMicros(created), fromMicros(signFrom)
		k.RetireAt, k.RemoveAt = fromMicros(retire), fromMicros(remove)
		ks = append(ks, k)
	}
	return ks, rows.Err()
}

func normKey(k store.SigningKey) store.SigningKey {
	k.CreatedAt, k.SignFrom, k.RetireAt, k.RemoveAt = norm(k.CreatedAt), norm(k.SignFrom), norm(k.RetireAt), norm(k.RemoveAt)
	k.PublicJWK, k.PrivateSealed = bytesOrNil(k.PublicJWK), bytesOrNil(k.PrivateSealed)
	return k
}

func sameKeys(a, b []store.SigningKey) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := normKey(a[i]), normKey(b[i])
		if x.ID != y.ID || x.Algorithm != y.Algorithm || !bytes.Equal(x.PublicJWK, y.PublicJWK) ||
			!bytes.Equal(x.PrivateSealed, y.PrivateSealed) || !x.CreatedAt.Equal(y.CreatedAt) ||
			!x.SignFrom.Equal(y.SignFrom) || !x.RetireAt.Equal(y.RetireAt) || !x.RemoveAt.Equal(y.RemoveAt) {
			return false
		}
	}
	return true
}

// UpdateKeys replaces the key set with fn's result inside one transaction that is serialised
// with every other UpdateKeys (SQLite's single writer; an advisory lock on PostgreSQL), so each
// fn sees the result of the one before. An error from fn aborts with nothing written; a result
// equal to the current set writes nothing. fn must not call the store.
func (db *DB) UpdateKeys(ctx context.Context, fn func([]store.SigningKey) ([]store.SigningKey, error)) ([]store.SigningKey, error) {
	var out []store.SigningKey
	err := db.tx(ctx, "update keys", func(ctx context.Context, tx *sql.Tx) error {
		if err := db.lock(ctx, tx, "signing-keys"); err != nil {
			return err
		}
		old, err := listKeys(ctx, tx)
		if err != nil {
			return err
		}
		ks, err := fn(old)
		if err != nil {
			return err
		}
		seen := make(map[string]bool, len(ks))
		for _, k := range ks {
			if err := checkKey("key id", k.ID); err != nil {
				return err
			}
			if err := checkKey("key algorithm", k.Algorithm); err != nil {
				return err
			}
			if seen[k.ID] {
				return invalid("key id %q repeated", k.ID)
			}
			seen[k.ID] = true
		}
		out = nil
		for _, k := range ks {
			out = append(out, normKey(k))
		}
		if sameKeys(old, ks) {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM signing_keys`); err != nil {
			return err
		}
		ins := db.d.rebind(`INSERT INTO signing_keys (pos, ` + keyCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		for i, k := range ks {
			if _, err := tx.ExecContext(ctx, ins, i, k.ID, k.Algorithm, blob(k.PublicJWK), blob(k.PrivateSealed),
				micros(k.CreatedAt), micros(k.SignFrom), micros(k.RetireAt), micros(k.RemoveAt)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
