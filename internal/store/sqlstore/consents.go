package sqlstore

import (
	"context"
	"database/sql"

	"github.com/portcullis/portcullis/internal/store"
)

// GetConsent returns what subject granted clientID, or store.ErrNotFound.
func (db *DB) GetConsent(ctx context.Context, subject, clientID string) (store.Consent, error) {
	if !validKey(subject) || !validKey(clientID) {
		return store.Consent{}, notFound("get consent")
	}
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	var (
		c       = store.Consent{Subject: subject, ClientID: clientID}
		scopes  []byte
		granted sql.NullInt64
	)
	err := db.r.QueryRowContext(ctx, db.d.rebind(`SELECT scopes, granted_at FROM consents
		WHERE subject = ? AND client_id = ?`), subject, clientID).Scan(&scopes, &granted)
	if err != nil {
		return store.Consent{}, db.wrap("get consent", err)
	}
	c.GrantedAt = fromMicros(granted)
	if err := decJSON("consent scopes", scopes, &c.Scopes); err != nil {
		return store.Consent{}, db.wrap("get consent", err)
	}
	return c, nil
}

// SaveConsent inserts c or replaces the consent of the same subject and client.
func (db *DB) SaveConsent(ctx context.Context, c store.Consent) error {
	if err := checkKey("consent subject", c.Subject); err != nil {
		return err
	}
	if err := checkKey("consent client id", c.ClientID); err != nil {
		return err
	}
	if err := checkTexts("consent scopes", c.Scopes); err != nil {
		return err
	}
	scopes, err := encJSON("consent scopes", c.Scopes)
	if err != nil {
		return err
	}
	_, err = db.exec(ctx, "save consent", `INSERT INTO consents (subject, client_id, scopes, granted_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (subject, client_id)
		DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at`,
		c.Subject, c.ClientID, scopes, micros(c.GrantedAt))
	return err
}

// DeleteConsent removes a consent; store.ErrNotFound if there is none.
func (db *DB) DeleteConsent(ctx context.Context, subject, clientID string) error {
	if !validKey(subject) || !validKey(clientID) {
		return notFound("delete consent")
	}
	n, err := db.exec(ctx, "delete consent", `DELETE FROM consents WHERE subject = ? AND client_id = ?`, subject, clientID)
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound("delete consent")
	}
	return nil
}
