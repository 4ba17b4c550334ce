package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/portcullis/portcullis/internal/store"
)

const userCols = `id, username, username_key, password_hash, disabled, totp_sealed, totp_last_step,
	attributes, credentials_changed_at, created_at, updated_at`

// usernameKey is the form usernames are unique and looked up in (store.UsernameKey: PRECIS
// UsernameCaseMapped), so "Alice", "ALICE" and "Ａｌｉｃｅ" are one user.
func usernameKey(name string) (string, error) {
	k, err := store.UsernameKey(name)
	if err != nil {
		return "", fmt.Errorf("sqlstore: %w", err)
	}
	if len(k) > maxKey {
		return "", invalid("username longer than %d bytes", maxKey)
	}
	return k, nil
}

func userArgs(u store.User) ([]any, error) {
	if err := checkKey("user id", u.ID); err != nil {
		return nil, err
	}
	key, err := usernameKey(u.Username)
	if err != nil {
		return nil, err
	}
	if err := checkText("password hash", u.PasswordHash); err != nil {
		return nil, err
	}
	attrs, err := encJSON("user attributes", u.Attributes)
	if err != nil {
		return nil, err
	}
	var totp any // NULL when the second factor is off
	if u.TOTPSealed != nil {
		totp = blob(u.TOTPSealed)
	}
	return []any{u.ID, u.Username, key, u.PasswordHash, u.Disabled, totp, u.TOTPLastStep, attrs,
		micros(u.CredentialsChangedAt), micros(u.CreatedAt), micros(u.UpdatedAt)}, nil
}

func scanUser(s scanner) (store.User, error) {
	var (
		u                store.User
		key              string
		attrs            []byte
		changed          sql.NullInt64
		created, updated sql.NullInt64
	)
	err := s.Scan(&u.ID, &u.Username, &key, &u.PasswordHash, &u.Disabled, &u.TOTPSealed,
		&u.TOTPLastStep, &attrs, &changed, &created, &updated)
	if err != nil {
		return store.User{}, err
	}
	u.TOTPSealed = bytesOrNil(u.TOTPSealed)
	u.CredentialsChangedAt = fromMicros(changed)
	u.CreatedAt, u.UpdatedAt = fromMicros(created), fromMicros(updated)
	return u, decJSON("user attributes", attrs, &u.Attributes)
}

// CreateUser inserts u; store.ErrDuplicate if its id or (case-insensitively) its username is
// taken.
func (db *DB) CreateUser(ctx context.Context, u store.User) error {
	args, err := userArgs(u)
	if err != nil {
		return err
	}
	_, err = db.exec(ctx, "create user", `INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...)
	return err
}

// GetUser returns the user with id, or store.ErrNotFound.
func (db *DB) GetUser(ctx context.Context, id string) (store.User, error) {
	if !validKey(id) {
		return store.User{}, notFound("get user")
	}
	return db.getUser(ctx, "get user", `SELECT `+userCols+` FROM users WHERE id = ?`, id)
}

// GetUserByName returns the user whose username matches name case-insensitively (see
// usernameKey), or store.ErrNotFound, also for a name no user could have.
func (db *DB) GetUserByName(ctx context.Context, name string) (store.User, error) {
	key, err := usernameKey(name)
	if err != nil {
		return store.User{}, notFound("get user by name")
	}
	return db.getUser(ctx, "get user by name", `SELECT `+userCols+` FROM users WHERE username_key = ?`, key)
}

func (db *DB) getUser(ctx context.Context, op, q string, arg string) (store.User, error) {
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	u, err := scanUser(db.r.QueryRowContext(ctx, db.d.rebind(q), arg))
	if err != nil {
		return store.User{}, db.wrap(op, err)
	}
	return u, nil
}

// UpdateUser applies fn to the stored user in one transaction with the row locked; an error
// from fn aborts with nothing written. fn must keep the id and must not call the store.
// Renaming to a taken username is store.ErrDuplicate.
func (db *DB) UpdateUser(ctx context.Context, id string, fn func(store.User) (store.User, error)) (store.User, error) {
	if !validKey(id) {
		return store.User{}, notFound("update user")
	}
	var out store.User
	err := db.tx(ctx, "update user", func(ctx context.Context, tx *sql.Tx) error {
		old, err := scanUser(tx.QueryRowContext(ctx, db.d.rebind(`SELECT `+userCols+` FROM users WHERE id = ?`+db.d.forUpdate), id))
		if err != nil {
			return err
		}
		u, err := fn(old)
		if err != nil {
			return err
		}
		if u.ID != id {
			return invalid("update must not change the user id")
		}
		args, err := userArgs(u)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, db.d.rebind(`UPDATE users SET username = ?, username_key = ?,
			password_hash = ?, disabled = ?, totp_sealed = ?, totp_last_step = ?, attributes = ?,
			credentials_changed_at = ?, created_at = ?, updated_at = ? WHERE id = ?`), append(args[1:], id)...)
		if err != nil {
			return err
		}
		u.CredentialsChangedAt, u.CreatedAt, u.UpdatedAt = norm(u.CredentialsChangedAt), norm(u.CreatedAt), norm(u.UpdatedAt)
		u.TOTPSealed = bytesOrNil(u.TOTPSealed)
		out = u
		return nil
	})
	if err != nil {
		return store.User{}, err
	}
	return out, nil
}

// ListUsers returns every user ordered by id.
func (db *DB) ListUsers(ctx context.Context) ([]store.User, error) {
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	rows, err := db.r.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY id`)
	if err != nil {
		return nil, db.wrap("list users", err)
	}
	defer rows.Close()
	var us []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, db.wrap("list users", err)
		}
		us = append(us, u)
	}
	return us, db.wrap("list users", rows.Err())
}

// UseTOTPStep records step as the user's last accepted TOTP step if it is greater than the
// stored one, in one conditional statement, and reports whether it did: a code is accepted
// once, and never after a later one. store.ErrNotFound for an unknown user.
func (db *DB) UseTOTPStep(ctx context.Context, userID string, step int64) (bool, error) {
	if !validKey(userID) {
		return false, notFound("use totp step")
	}
	n, err := db.exec(ctx, "use totp step",
		`UPDATE users SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?`, step, userID, step)
	if err != nil {
		return false, err
	}
	if n == 1 {
		return true, nil
	}
	if _, err := db.GetUser(ctx, userID); err != nil {
		return false, fmt.Errorf("sqlstore: use totp step: %w", err)
	}
	return false, nil
}
