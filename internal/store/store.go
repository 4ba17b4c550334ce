// Package store holds the record types Portcullis keeps durably, the small per-aggregate
// interfaces the rest of the code consumes, and the sentinel errors every backend returns.
//
// It has no drivers: internal/store/sqlstore implements every interface for SQLite and
// PostgreSQL, and internal/store/storetest is the conformance suite each backend must pass.
//
// Secrets never reach a store in the clear: tokens are kept by hash, client secrets as
// keyed hashes or argon2id, private keys sealed under the master key.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Backends wrap them (errors.Is works) and never return driver errors that a
// caller would have to understand.
var (
	// ErrNotFound reports that no record has the given key.
	ErrNotFound = errors.New("store: not found")
	// ErrDuplicate reports that a record with the same key already exists.
	ErrDuplicate = errors.New("store: duplicate")
	// ErrConflict reports that a conditional change lost: the record was consumed, revoked or
	// changed by someone else first (the loser of a race gets it, the winner does not).
	ErrConflict = errors.New("store: conflict")
	// ErrLimit reports that a creation would exceed a configured cap (clients per owner).
	ErrLimit = errors.New("store: limit reached")
	// ErrUnavailable reports that the backend cannot be reached or timed out. Surfaces turn
	// it into 503; nothing was written.
	ErrUnavailable = errors.New("store: unavailable")
)

// Client is a registered OAuth client. Exactly one authentication method per client.
type Client struct {
	ID         string
	Owner      string // who registered it; creation is capped per owner
	Source     string // "config" (synced from portcullis.yaml) or "cli" (portcullis clients add)
	SecretHash string // keyed hash "$hmac-sha256$..." or "$argon2id$..."; empty for key-based methods
	AuthMethod string // client_secret_basic | client_secret_post | private_key_jwt | tls_client_auth | none
	JWKS       string // inline public JWKS document (private_key_jwt)
	JWKSURI    string // or a URL serving it (https only)
	GrantTypes []string
	Scopes     []string
	Audience   []string          // audiences of the tokens it gets; empty means the issuer default
	Claims     map[string]string // per-client claim values, asserted only for scopes that name them
	// TokenFormat is "opaque" (default) or "jwt"; jwt is allowed only when Internal.
	TokenFormat  string
	Internal     bool
	Introspect   bool // may introspect any token (resource servers, the gateway)
	RedirectURIs []string
	// PostLogoutRedirectURIs are where RP-initiated logout may send the browser back to
	// (exact match); a list of its own, so a sign-in redirect URI is never a logout target.
	PostLogoutRedirectURIs []string
	RequirePAR             bool
	Disabled               bool
	CreatedAt              time.Time
	UpdatedAt              time.Time
}

// ClientStore keeps clients.
type ClientStore interface {
	GetClient(ctx context.Context, id string) (Client, error)
	// CreateClient inserts c. When maxPerOwner > 0 and c.Owner already has that many clients,
	// it returns ErrLimit; the count and the insert are one atomic step.
	CreateClient(ctx context.Context, c Client, maxPerOwner int) error
	// UpdateClient applies fn to the stored client inside one transaction.
	UpdateClient(ctx context.Context, id string, fn func(Client) (Client, error)) (Client, error)
	DeleteClient(ctx context.Context, id string) error
	ListClients(ctx context.Context) ([]Client, error)
	// SyncConfigClients makes the set of clients with Source "config" equal to cs, atomically:
	// new ones are inserted, changed ones replaced, missing ones deleted. Clients of other
	// sources are untouched; a config client whose id is taken by another source is ErrDuplicate.
	SyncConfigClients(ctx context.Context, cs []Client) error
}

// Token kinds.
const (
	KindAccess  = "access"
	KindRefresh = "refresh"
	KindCode    = "code"
)

// Token is the record of an issued token, authorization code or refresh token. The token
// itself is never stored: Hash is the SHA-256 of the token string (events.TokenHash), for
// opaque and JWT tokens alike.
type Token struct {
	Hash      string
	Kind      string // KindAccess | KindRefresh | KindCode
	Format    string // "opaque" | "jwt"
	ClientID  string
	Subject   string
	Scopes    []string
	Audience  []string
	Claims    map[string]any // claims asserted centrally when it was issued
	Extra     map[string]any // grant data: redirect_uri, code_challenge, nonce, auth_time ...
	FamilyID  string         // all tokens descending from one grant share it
	IssuedAt  time.Time
	ExpiresAt time.Time
	UsedAt    time.Time // codes and refresh tokens: when consumed; zero while unused
	RevokedAt time.Time // zero while not revoked
}

// Active reports whether t is neither revoked nor expired at now.
func (t Token) Active(now time.Time) bool {
	return t.RevokedAt.IsZero() && now.Before(t.ExpiresAt)
}

// TokenStore keeps token records.
type TokenStore interface {
	CreateToken(ctx context.Context, t Token) error
	GetToken(ctx context.Context, hash string) (Token, error)
	// RevokeToken marks the token revoked at at. Revoking an unknown token is ErrNotFound;
	// revoking a revoked one keeps the first time and succeeds.
	RevokeToken(ctx context.Context, hash string, at time.Time) error
	// RevokeFamily revokes every unrevoked token of a family and returns their hashes, so
	// caches holding any of them can be told.
	RevokeFamily(ctx context.Context, familyID string, at time.Time) ([]string, error)
	// ConsumeToken atomically marks an unused, unrevoked, unexpired token used at now and
	// inserts the tokens that replace it (refresh rotation, code exchange). If it was already
	// used or revoked, or has expired at now, nothing changes and the error is ErrConflict: of
	// two concurrent calls exactly one wins. It returns the record as it was before.
	ConsumeToken(ctx context.Context, hash string, now time.Time, replacements []Token) (Token, error)
	// DeleteExpiredTokens removes records that expired before before and returns how many.
	DeleteExpiredTokens(ctx context.Context, before time.Time) (int, error)
}

// SigningKey is one issuer signing key. Its private half is sealed (AES-256-GCM under a key
// derived from the master key); the store never sees it in the clear.
type SigningKey struct {
	ID            string // kid
	Algorithm     string // ES256 | EdDSA | PS256
	PublicJWK     []byte // JSON of the public JWK
	PrivateSealed []byte
	CreatedAt     time.Time // published in the JWKS from here on
	SignFrom      time.Time // signs from here on (after verifiers had time to fetch it)
	RetireAt      time.Time // zero while it may sign; set when a successor starts signing
	RemoveAt      time.Time // zero until retired; leaves the JWKS after every token it signed expired
}

// KeyStore keeps signing keys.
type KeyStore interface {
	ListKeys(ctx context.Context) ([]SigningKey, error)
	// UpdateKeys replaces the whole key set with what fn returns, inside one serialised
	// transaction: of concurrent rotations each fn sees the result of the one before, so two
	// replicas rotating at once create one key. Keys absent from the result are deleted.
	UpdateKeys(ctx context.Context, fn func([]SigningKey) ([]SigningKey, error)) ([]SigningKey, error)
}

// ReplayCache remembers one-time values (assertion jti, DPoP proof jti) until they expire.
type ReplayCache interface {
	// MarkUsed records key until expires and reports whether it was new. A key seen before and
	// not yet expired gives false. Atomic: of concurrent calls with one key exactly one is true.
	MarkUsed(ctx context.Context, key string, expires time.Time) (bool, error)
}

// AuditEvent is one security decision.
type AuditEvent struct {
	ID        int64 // assigned by the store, increasing
	Time      time.Time
	Type      string // e.g. token.issued, client.auth_failed, token.revoked, key.rotated
	Outcome   string // success | failure | denied
	ClientID  string
	Subject   string
	RequestID string
	RemoteIP  string
	Reason    string
	Details   map[string]string
}

// AuditFilter selects audit events; zero fields do not filter.
type AuditFilter struct {
	Type     string
	ClientID string
	Since    time.Time
	Limit    int // default and maximum 1000
}

// AuditStore keeps the audit trail. It is append-only.
type AuditStore interface {
	AppendAudit(ctx context.Context, events ...AuditEvent) error
	// ListAudit returns matching events, oldest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
}

// User is a person who signs in. Username is unique, compared case-insensitively.
type User struct {
	ID           string
	Username     string
	PasswordHash string // argon2id
	Disabled     bool
	TOTPSealed   []byte // sealed TOTP secret; nil when the second factor is off
	TOTPLastStep int64  // last accepted TOTP time step; a step is never accepted twice
	Attributes   map[string]any
	// CredentialsChangedAt is when the user's credentials last changed (a new password, a
	// second factor enrolled or removed) or the user was disabled; zero if never. A sign-in
	// before it no longer stands: its sessions and refresh-token families stop working.
	CredentialsChangedAt time.Time
	CreatedAt            time.Time
	UpdatedAt            time.Time
}

// CredentialsChangedSince reports whether u's credentials changed after a sign-in at
// authTime, so that the sign-in's session and tokens must no longer be honoured.
func (u User) CredentialsChangedSince(authTime time.Time) bool {
	return authTime.Before(u.CredentialsChangedAt)
}

// UserStore keeps users.
type UserStore interface {
	CreateUser(ctx context.Context, u User) error
	GetUser(ctx context.Context, id string) (User, error)
	GetUserByName(ctx context.Context, username string) (User, error)
	UpdateUser(ctx context.Context, id string, fn func(User) (User, error)) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// UseTOTPStep records step as used if it is greater than the last used step and reports
	// whether it was; atomic, so one code is accepted once.
	UseTOTPStep(ctx context.Context, userID string, step int64) (bool, error)
}

// Consent records which scopes a user granted a client.
type Consent struct {
	Subject   string
	ClientID  string
	Scopes    []string
	GrantedAt time.Time
}

// ConsentStore keeps consents.
type ConsentStore interface {
	GetConsent(ctx context.Context, subject, clientID string) (Consent, error)
	// SaveConsent inserts or replaces.
	SaveConsent(ctx context.Context, c Consent) error
	DeleteConsent(ctx context.Context, subject, clientID string) error
}

// EphemeralStore keeps short-lived opaque values shared by replicas: pushed authorization
// requests, sign-in transactions. Kind namespaces keys.
type EphemeralStore interface {
	PutEphemeral(ctx context.Context, kind, key string, value []byte, expires time.Time) error
	// GetEphemeral returns an unexpired value.
	GetEphemeral(ctx context.Context, kind, key string) ([]byte, error)
	// TakeEphemeral returns an unexpired value and deletes it, atomically: of concurrent
	// calls exactly one gets it; the others get ErrNotFound.
	TakeEphemeral(ctx context.Context, kind, key string) ([]byte, error)
	DeleteEphemeral(ctx context.Context, kind, key string) error
}

// Store is everything a backend provides.
type Store interface {
	ClientStore
	TokenStore
	KeyStore
	ReplayCache
	AuditStore
	UserStore
	ConsentStore
	EphemeralStore
	// PurgeExpired deletes replay keys and ephemeral values that expired before before and
	// returns how many; they already read as absent, this only reclaims space.
	PurgeExpired(ctx context.Context, before time.Time) (int, error)
	// Ping reports whether the backend answers (readiness).
	Ping(ctx context.Context) error
	// Close releases connections; the store is unusable afterwards.
	Close() error
}
