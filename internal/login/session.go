package login

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/internal/secret"
	"github.com/portcullis/portcullis/internal/store"
)

// Session is one person's sign-in at the issuer, shared by every client they authorize
// while it lasts.
type Session struct {
	UserID   string    `json:"uid"`
	AuthTime time.Time `json:"auth_time"` // when the person last proved who they are
	AMR      []string  `json:"amr"`       // RFC 8176 methods: pwd, otp
	ACR      string    `json:"acr"`
	Expires  time.Time `json:"exp"`
}

// Sessions keeps sessions server-side in the ephemeral store, so every replica finds them
// and signing out ends them everywhere. The browser holds only an opaque random id (256
// bits); the store holds only its SHA-256, so a copy of the store opens no session.
type Sessions struct {
	Store store.EphemeralStore
	TTL   time.Duration
	Now   func() time.Time
}

const sessionKind = "session"

func sessionKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Create stores s (its Expires set to now + TTL) under a fresh id and returns the id.
// A new id at every sign-in: an id planted before sign-in never becomes a session.
func (ss *Sessions) Create(ctx context.Context, s Session) (string, Session, error) {
	s.Expires = ss.Now().Add(ss.TTL).UTC().Truncate(time.Second)
	b, err := json.Marshal(s)
	if err != nil {
		return "", Session{}, err
	}
	id := secret.Random(32)
	if err := ss.Store.PutEphemeral(ctx, sessionKind, sessionKey(id), b, s.Expires); err != nil {
		return "", Session{}, fmt.Errorf("login: store session: %w", err)
	}
	return id, s, nil
}

// Get returns the unexpired session with id; ok is false for an unknown, malformed or
// expired id.
func (ss *Sessions) Get(ctx context.Context, id string) (Session, bool, error) {
	if len(id) != 43 { // 32 random bytes, base64url: anything else was never issued
		return Session{}, false, nil
	}
	b, err := ss.Store.GetEphemeral(ctx, sessionKind, sessionKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return Session{}, false, nil
	}
	if err != nil {
		return Session{}, false, fmt.Errorf("login: read session: %w", err)
	}
	var s Session
	if err := json.Unmarshal(b, &s); err != nil || !ss.Now().Before(s.Expires) {
		return Session{}, false, nil
	}
	return s, true, nil
}

// Delete ends the session with id (signing out). Ending an unknown session succeeds.
func (ss *Sessions) Delete(ctx context.Context, id string) error {
	if len(id) != 43 {
		return nil
	}
	return ss.Store.DeleteEphemeral(ctx, sessionKind, sessionKey(id))
}
