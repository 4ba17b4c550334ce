package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/internal/store"
)

const tokenCols = `hash, kind, format, client_id, subject, scopes, audience, claims, extra,
	family_id, issued_at, expires_at, used_at, revoked_at`

const (
	qGetToken    = `SELECT ` + tokenCols + ` FROM tokens WHERE hash = ?`
	qCreateToken = `INSERT INTO tokens (` + tokenCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// qConsumeToken is the whole race of ConsumeToken in one conditional statement: of
	// concurrent callers exactly one matches the row while it is still unused.
	qConsumeToken = `UPDATE tokens SET used_at = ?
		WHERE hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?
		RETURNING ` + tokenCols
	// deleteBatch bounds how many rows one DELETE of DeleteExpiredTokens touches, so the
	// SQLite writer is never held for long.
	deleteBatch = 5000
)

func tokenArgs(t store.Token) ([]any, error) {
	if err := checkKey("token hash", t.Hash); err != nil {
		return nil, err
	}
	switch t.Kind {
	case store.KindAccess, store.KindRefresh, store.KindCode:
	default:
		return nil, invalid("token kind %q", t.Kind)
	}
	if err := checkKey("token client id", t.ClientID); err != nil {
		return nil, err
	}
	if t.FamilyID != "" {
		if err := checkKey("token family id", t.FamilyID); err != nil {
			return nil, err
		}
	}
	if err := errors.Join(checkText("token format", t.Format), checkText("token subject", t.Subject),
		checkTexts("token scopes", t.Scopes), checkTexts("token audience", t.Audience)); err != nil {
		return nil, err
	}
	if t.IssuedAt.IsZero() || t.ExpiresAt.IsZero() {
		return nil, invalid("token issued_at and expires_at are required")
	}
	var js [4]string
	for i, v := range []any{t.Scopes, t.Audience, t.Claims, t.Extra} {
		s, err := encJSON("token", v)
		if err != nil {
			return nil, err
		}
		js[i] = s
	}
	return []any{t.Hash, t.Kind, t.Format, t.ClientID, t.Subject, js[0], js[1], js[2], js[3],
		t.FamilyID, micros(t.IssuedAt), micros(t.ExpiresAt), micros(t.UsedAt), micros(t.RevokedAt)}, nil
}

func scanToken(s scanner) (store.Token, error) {
	var (
		t                              store.Token
		scopes, aud, claims, extra     []byte
		issued, expires, used, revoked sql.NullInt64
	)
	err := s.Scan(&t.Hash, &t.Kind, &t.Format, &t.ClientID, &t.Subject, &scopes, &aud, &claims,
		&extra, &t.FamilyID, &issued, &expires, &used, &revoked)
	if err != nil {
		return store.Token{}, err
	}
	t.IssuedAt, t.ExpiresAt = fromMicros(issued), fromMicros(expires)
	t.UsedAt, t.RevokedAt = fromMicros(used), fromMicros(revoked)
	if err := decJSON("token scopes", scopes, &t.Scopes); err != nil {
		return store.Token{}, err
	}
	if err := decJSON("token audience", aud, &t.Audience); err != nil {
		return store.Token{}, err
	}
	if err := decJSON("token claims", claims, &t.Claims); err != nil {
		return store.Token{}, err
	}
	if err := decJSON("token extra", extra, &t.Extra); err != nil {
		return store.Token{}, err
	}
	return t, nil
}

// CreateToken inserts t; store.ErrDuplicate if its hash is taken.
func (db *DB) CreateToken(ctx context.Context, t store.Token) error {
	args, err := tokenArgs(t)
	if err != nil {
		return err
	}
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	_, err = db.write(ctx, db.st.createToken, "", args...)
	return db.wrap("create token", err)
}

// GetToken returns the record whose hash is hash, or store.ErrNotFound.
func (db *DB) GetToken(ctx context.Context, hash string) (store.Token, error) {
	if !validKey(hash) {
		return store.Token{}, notFound("get token")
	}
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	t, err := scanToken(db.st.getToken.QueryRowContext(ctx, hash))
	if err != nil {
		return store.Token{}, db.wrap("get token", err)
	}
	return t, nil
}

// RevokeToken sets RevokedAt to at unless it is already set; store.ErrNotFound for an
// unknown hash.
func (db *DB) RevokeToken(ctx context.Context, hash string, at time.Time) error {
	if !validKey(hash) {
		return notFound("revoke token")
	}
	if at.IsZero() {
		return invalid("revoke token: zero time")
	}
	n, err := db.exec(ctx, "revoke token",
		`UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE hash = ?`, micros(at), hash)
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound("revoke token")
	}
	return nil
}

// RevokeFamily revokes every unrevoked token of familyID and returns how many it revoked.
// An empty familyID is store.ErrInvalid: it would otherwise name every family-less token.
func (db *DB) RevokeFamily(ctx context.Context, familyID string, at time.Time) ([]string, error) {
	if err := checkKey("family id", familyID); err != nil {
		return nil, err
	}
	if at.IsZero() {
		return nil, invalid("revoke family: zero time")
	}
	var hashes []string
	err := db.tx(ctx, "revoke family", func(ctx context.Context, tx *sql.Tx) error {
		// family_id <> '' lets both planners use the partial index tokens_family.
		rows, err := tx.QueryContext(ctx, db.d.rebind(`UPDATE tokens SET revoked_at = ?
			WHERE family_id = ? AND family_id <> '' AND revoked_at IS NULL RETURNING hash`), micros(at), familyID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				return err
			}
			hashes = append(hashes, h)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return hashes, nil
}

// ConsumeToken marks the token used at now and inserts replacements, in one transaction. The
// token must be unused, unrevoked and unexpired at now, else store.ErrConflict and nothing
// changes; of concurrent callers exactly one wins. It returns the record as it was before.
// A replacement whose hash exists is store.ErrDuplicate, and the token stays unused.
func (db *DB) ConsumeToken(ctx context.Context, hash string, now time.Time, replacements []store.Token) (store.Token, error) {
	if !validKey(hash) {
		return store.Token{}, notFound("consume token")
	}
	if now.IsZero() {
		return store.Token{}, invalid("consume token: zero time")
	}
	reps := make([][]any, 0, len(replacements))
	seen := map[string]bool{hash: true}
	for _, r := range replacements {
		args, err := tokenArgs(r)
		if err != nil {
			return store.Token{}, err
		}
		if seen[r.Hash] {
			return store.Token{}, invalid("consume token: replacement hash repeated")
		}
		seen[r.Hash] = true
		reps = append(reps, args)
	}
	var before store.Token
	err := db.tx(ctx, "consume token", func(ctx context.Context, tx *sql.Tx) error {
		t, err := scanToken(tx.QueryRowContext(ctx, db.d.rebind(qConsumeToken), micros(now), hash, micros(now)))
		if errors.Is(err, sql.ErrNoRows) {
			var one int
			err := tx.QueryRowContext(ctx, db.d.rebind(`SELECT 1 FROM tokens WHERE hash = ?`), hash).Scan(&one)
			if err != nil {
				return err // ErrNoRows becomes store.ErrNotFound
			}
			return fmt.Errorf("sqlstore: token already used, revoked or expired: %w", store.ErrConflict)
		}
		if err != nil {
			return err
		}
		before = t
		before.UsedAt = time.Time{}
		ins := tx.StmtContext(ctx, db.st.createToken)
		for _, args := range reps {
			if _, err := ins.ExecContext(ctx, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return store.Token{}, err
	}
	return before, nil
}

// DeleteExpiredTokens deletes the records that expired before before, in batches so that no
// single statement holds the writer for long, and returns how many it deleted.
func (db *DB) DeleteExpiredTokens(ctx context.Context, before time.Time) (int, error) {
	if before.IsZero() {
		return 0, invalid("delete expired tokens: zero time")
	}
	total := 0
	for {
		n, err := db.exec(ctx, "delete expired tokens", `DELETE FROM tokens WHERE hash IN
			(SELECT hash FROM tokens WHERE expires_at < ? LIMIT ?)`, micros(before), deleteBatch)
		total += int(n)
		if err != nil || n < deleteBatch {
			return total, err
		}
	}
}
