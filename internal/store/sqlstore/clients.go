package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/portcullis/portcullis/internal/store"
)

const clientCols = `id, owner, source, secret_hash, auth_method, jwks, jwks_uri, grant_types, scopes,
	audience, claims, token_format, internal, introspect, redirect_uris, require_par, disabled,
	created_at, updated_at, post_logout_redirect_uris`

const (
	qGetClient    = `SELECT ` + clientCols + ` FROM clients WHERE id = ?`
	qInsertClient = `INSERT INTO clients (` + clientCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// qReplaceClient takes the same arguments as qInsertClient minus the id, then the id.
	qReplaceClient = `UPDATE clients SET owner = ?, source = ?, secret_hash = ?, auth_method = ?,
		jwks = ?, jwks_uri = ?, grant_types = ?, scopes = ?, audience = ?, claims = ?,
		token_format = ?, internal = ?, introspect = ?, redirect_uris = ?, require_par = ?,
		disabled = ?, created_at = ?, updated_at = ?, post_logout_redirect_uris = ? WHERE id = ?`
)

// SourceConfig is the Client.Source of clients that SyncConfigClients manages.
const sourceConfig = "config"

func clientArgs(c store.Client) ([]any, error) {
	if err := checkKey("client id", c.ID); err != nil {
		return nil, err
	}
	for field, s := range map[string]string{"owner": c.Owner, "source": c.Source,
		"secret hash": c.SecretHash, "auth method": c.AuthMethod, "jwks": c.JWKS,
		"jwks uri": c.JWKSURI, "token format": c.TokenFormat} {
		if err := checkText(field, s); err != nil {
			return nil, err
		}
	}
	if len(c.Owner) > maxKey || len(c.Source) > maxKey {
		return nil, invalid("client owner or source longer than %d bytes", maxKey)
	}
	for field, ss := range map[string][]string{"grant types": c.GrantTypes, "scopes": c.Scopes,
		"audience": c.Audience, "redirect uris": c.RedirectURIs,
		"post-logout redirect uris": c.PostLogoutRedirectURIs} {
		if err := checkTexts(field, ss); err != nil {
			return nil, err
		}
	}
	var js [6]string
	for i, v := range []any{c.GrantTypes, c.Scopes, c.Audience, c.Claims, c.RedirectURIs, c.PostLogoutRedirectURIs} {
		s, err := encJSON("client", v)
		if err != nil {
			return nil, err
		}
		js[i] = s
	}
	return []any{c.ID, c.Owner, c.Source, c.SecretHash, c.AuthMethod, c.JWKS, c.JWKSURI,
		js[0], js[1], js[2], js[3], c.TokenFormat, c.Internal, c.Introspect, js[4],
		c.RequirePAR, c.Disabled, micros(c.CreatedAt), micros(c.UpdatedAt), js[5]}, nil
}

// replaceArgs reorders insert arguments for qReplaceClient (id last).
func replaceArgs(args []any) []any {
	return append(append([]any{}, args[1:]...), args[0])
}

func scanClient(s scanner) (store.Client, error) {
	var (
		c                                                   store.Client
		grants, scopes, aud, claims, redirects, postLogouts []byte
		created, updated                                    sql.NullInt64
	)
	err := s.Scan(&c.ID, &c.Owner, &c.Source, &c.SecretHash, &c.AuthMethod, &c.JWKS, &c.JWKSURI,
		&grants, &scopes, &aud, &claims, &c.TokenFormat, &c.Internal, &c.Introspect, &redirects,
		&c.RequirePAR, &c.Disabled, &created, &updated, &postLogouts)
	if err != nil {
		return store.Client{}, err
	}
	c.CreatedAt, c.UpdatedAt = fromMicros(created), fromMicros(updated)
	err = errors.Join(
		decJSON("client grant types", grants, &c.GrantTypes),
		decJSON("client scopes", scopes, &c.Scopes),
		decJSON("client audience", aud, &c.Audience),
		decJSON("client claims", claims, &c.Claims),
		decJSON("client redirect uris", redirects, &c.RedirectURIs),
		decJSON("client post-logout redirect uris", postLogouts, &c.PostLogoutRedirectURIs))
	return c, err
}

// normClient is c as the store will return it.
func normClient(c store.Client) store.Client {
	c.CreatedAt, c.UpdatedAt = norm(c.CreatedAt), norm(c.UpdatedAt)
	return c
}

// GetClient returns the client with id, or store.ErrNotFound.
func (db *DB) GetClient(ctx context.Context, id string) (store.Client, error) {
	if !validKey(id) {
		return store.Client{}, notFound("get client")
	}
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	c, err := scanClient(db.st.getClient.QueryRowContext(ctx, id))
	if err != nil {
		return store.Client{}, db.wrap("get client", err)
	}
	return c, nil
}

// CreateClient inserts c; store.ErrDuplicate if the id is taken. With maxPerOwner > 0 the
// count of c.Owner's clients and the insert are one serialised step (an advisory lock per
// owner on PostgreSQL), so concurrent creations never exceed the cap: store.ErrLimit.
func (db *DB) CreateClient(ctx context.Context, c store.Client, maxPerOwner int) error {
	args, err := clientArgs(c)
	if err != nil {
		return err
	}
	if maxPerOwner <= 0 {
		_, err := db.exec(ctx, "create client", qInsertClient, args...)
		return err
	}
	return db.tx(ctx, "create client", func(ctx context.Context, tx *sql.Tx) error {
		if err := db.lock(ctx, tx, "client-owner\x00"+c.Owner); err != nil {
			return err
		}
		var n int
		err := tx.QueryRowContext(ctx, db.d.rebind(`SELECT count(*) FROM clients WHERE owner = ?`), c.Owner).Scan(&n)
		if err != nil {
			return err
		}
		if n >= maxPerOwner {
			return fmt.Errorf("sqlstore: owner has %d clients (max %d): %w", n, maxPerOwner, store.ErrLimit)
		}
		_, err = tx.ExecContext(ctx, db.d.rebind(qInsertClient), args...)
		return err
	})
}

// UpdateClient applies fn to the stored client in one transaction with the row locked; an
// error from fn aborts with nothing written. fn must not call the store, and must keep the id.
// Changing Owner here does not consult the per-owner cap.
func (db *DB) UpdateClient(ctx context.Context, id string, fn func(store.Client) (store.Client, error)) (store.Client, error) {
	if !validKey(id) {
		return store.Client{}, notFound("update client")
	}
	var out store.Client
	err := db.tx(ctx, "update client", func(ctx context.Context, tx *sql.Tx) error {
		old, err := scanClient(tx.QueryRowContext(ctx, db.d.rebind(qGetClient+db.d.forUpdate), id))
		if err != nil {
			return err
		}
		c, err := fn(old)
		if err != nil {
			return err
		}
		if c.ID != id {
			return invalid("update must not change the client id")
		}
		args, err := clientArgs(c)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.d.rebind(qReplaceClient), replaceArgs(args)...); err != nil {
			return err
		}
		out = normClient(c)
		return nil
	})
	if err != nil {
		return store.Client{}, err
	}
	return out, nil
}

// DeleteClient removes the client; store.ErrNotFound if there is none.
func (db *DB) DeleteClient(ctx context.Context, id string) error {
	if !validKey(id) {
		return notFound("delete client")
	}
	n, err := db.exec(ctx, "delete client", `DELETE FROM clients WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound("delete client")
	}
	return nil
}

// ListClients returns every client ordered by id (byte order).
func (db *DB) ListClients(ctx context.Context) ([]store.Client, error) {
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	rows, err := db.r.QueryContext(ctx, `SELECT `+clientCols+` FROM clients ORDER BY id`)
	if err != nil {
		return nil, db.wrap("list clients", err)
	}
	defer rows.Close()
	var cs []store.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, db.wrap("list clients", err)
		}
		cs = append(cs, c)
	}
	return cs, db.wrap("list clients", rows.Err())
}

// SyncConfigClients makes the clients with Source "config" exactly cs, in one transaction
// serialised against other syncs. A client in cs with an empty Source is stored as "config";
// any other Source is store.ErrInvalid, as are duplicate ids. A config client whose id
// belongs to a client of another source is store.ErrDuplicate, and nothing changes.
func (db *DB) SyncConfigClients(ctx context.Context, cs []store.Client) error {
	want := make(map[string][]any, len(cs))
	for _, c := range cs {
		switch c.Source {
		case "":
			c.Source = sourceConfig
		case sourceConfig:
		default:
			return invalid("config client %q has source %q", c.ID, c.Source)
		}
		args, err := clientArgs(c)
		if err != nil {
			return err
		}
		if _, dup := want[c.ID]; dup {
			return invalid("config client %q listed twice", c.ID)
		}
		want[c.ID] = args
	}
	return db.tx(ctx, "sync config clients", func(ctx context.Context, tx *sql.Tx) error {
		if err := db.lock(ctx, tx, "sync-config-clients"); err != nil {
			return err
		}
		have, err := clientSources(ctx, tx)
		if err != nil {
			return err
		}
		for _, c := range cs { // in input order, so failures are deterministic
			args := want[c.ID]
			switch src, ok := have[c.ID]; {
			case !ok:
				_, err = tx.ExecContext(ctx, db.d.rebind(qInsertClient), args...)
			case src == sourceConfig:
				_, err = tx.ExecContext(ctx, db.d.rebind(qReplaceClient), replaceArgs(args)...)
			default:
				err = fmt.Errorf("sqlstore: config client %q: id taken by a %q client: %w", c.ID, src, store.ErrDuplicate)
			}
			if err != nil {
				return err
			}
		}
		for id, src := range have {
			if _, keep := want[id]; src == sourceConfig && !keep {
				if _, err := tx.ExecContext(ctx, db.d.rebind(`DELETE FROM clients WHERE id = ?`), id); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func clientSources(ctx context.Context, tx *sql.Tx) (map[string]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, source FROM clients`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	have := map[string]string{}
	for rows.Next() {
		var id, src string
		if err := rows.Scan(&id, &src); err != nil {
			return nil, err
		}
		have[id] = src
	}
	return have, rows.Err()
}
