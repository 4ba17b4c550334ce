-- Portcullis store, version 1 (SQLite). Forward-only: later changes are new files.
-- Times are INTEGER Unix microseconds UTC (NULL = zero time); lists and maps are JSON text.

-- +goose Up
CREATE TABLE clients (
    id            TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    source        TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    auth_method   TEXT NOT NULL,
    jwks          TEXT NOT NULL,
    jwks_uri      TEXT NOT NULL,
    grant_types   TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    audience      TEXT NOT NULL,
    claims        TEXT NOT NULL,
    token_format  TEXT NOT NULL,
    internal      INTEGER NOT NULL,
    introspect    INTEGER NOT NULL,
    redirect_uris TEXT NOT NULL,
    require_par   INTEGER NOT NULL,
    disabled      INTEGER NOT NULL,
    created_at    INTEGER,
    updated_at    INTEGER
) STRICT;
-- CreateClient counts per owner; SyncConfigClients selects by source.
CREATE INDEX clients_owner ON clients (owner);
CREATE INDEX clients_source ON clients (source);

CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY, -- the hottest read: introspection looks tokens up by hash
    kind       TEXT NOT NULL,
    format     TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    audience   TEXT NOT NULL,
    claims     TEXT NOT NULL,
    extra      TEXT NOT NULL,
    family_id  TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER
) STRICT;
CREATE INDEX tokens_family ON tokens (family_id) WHERE family_id <> '';
CREATE INDEX tokens_expires ON tokens (expires_at);

CREATE TABLE signing_keys (
    id             TEXT PRIMARY KEY,
    pos            INTEGER NOT NULL,
    algorithm      TEXT NOT NULL,
    public_jwk     BLOB NOT NULL,
    private_sealed BLOB NOT NULL,
    created_at     INTEGER,
    sign_from      INTEGER,
    retire_at      INTEGER,
    remove_at      INTEGER
) STRICT;

CREATE TABLE replay (
    id         TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX replay_expires ON replay (expires_at);

-- The rowid (id) is the implicit last column of every index below, so they also serve
-- ORDER BY occurred_at, id.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    remote_ip   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    details     TEXT NOT NULL
) STRICT;
CREATE INDEX audit_time ON audit_events (occurred_at);
CREATE INDEX audit_type_time ON audit_events (event_type, occurred_at);
CREATE INDEX audit_client_time ON audit_events (client_id, occurred_at);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL,
    username_key   TEXT NOT NULL UNIQUE, -- PRECIS UsernameCaseMapped form, computed by the store
    password_hash  TEXT NOT NULL,
    disabled       INTEGER NOT NULL,
    totp_sealed    BLOB,
    totp_last_step INTEGER NOT NULL,
    attributes     TEXT NOT NULL,
    created_at     INTEGER,
    updated_at     INTEGER
) STRICT;

CREATE TABLE consents (
    subject    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    granted_at INTEGER,
    PRIMARY KEY (subject, client_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE ephemeral (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    value      BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) STRICT;
CREATE INDEX ephemeral_expires ON ephemeral (expires_at);
