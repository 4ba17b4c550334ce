-- Portcullis store, version 1 (PostgreSQL). Forward-only: later changes are new files.
-- Times are BIGINT Unix microseconds UTC (NULL = zero time); lists and maps are JSON text.
-- Keys use COLLATE "C": byte-wise comparison, the same order as SQLite, and faster B-trees.

-- +goose Up
CREATE TABLE clients (
    id            TEXT COLLATE "C" PRIMARY KEY,
    owner         TEXT COLLATE "C" NOT NULL,
    source        TEXT COLLATE "C" NOT NULL,
    secret_hash   TEXT NOT NULL,
    auth_method   TEXT NOT NULL,
    jwks          TEXT NOT NULL,
    jwks_uri      TEXT NOT NULL,
    grant_types   TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    audience      TEXT NOT NULL,
    claims        TEXT NOT NULL,
    token_format  TEXT NOT NULL,
    internal      BOOLEAN NOT NULL,
    introspect    BOOLEAN NOT NULL,
    redirect_uris TEXT NOT NULL,
    require_par   BOOLEAN NOT NULL,
    disabled      BOOLEAN NOT NULL,
    created_at    BIGINT,
    updated_at    BIGINT
);
-- CreateClient counts per owner; SyncConfigClients selects by source.
CREATE INDEX clients_owner ON clients (owner);
CREATE INDEX clients_source ON clients (source);

-- fillfactor leaves room for the used_at/revoked_at updates to stay HOT (no index changes).
CREATE TABLE tokens (
    hash       TEXT COLLATE "C" PRIMARY KEY, -- the hottest read: introspection looks tokens up by hash
    kind       TEXT NOT NULL,
    format     TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    audience   TEXT NOT NULL,
    claims     TEXT NOT NULL,
    extra      TEXT NOT NULL,
    family_id  TEXT COLLATE "C" NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
) WITH (fillfactor = 90);
CREATE INDEX tokens_family ON tokens (family_id) WHERE family_id <> '';
CREATE INDEX tokens_expires ON tokens (expires_at);

CREATE TABLE signing_keys (
    id             TEXT COLLATE "C" PRIMARY KEY,
    pos            INTEGER NOT NULL,
    algorithm      TEXT NOT NULL,
    public_jwk     BYTEA NOT NULL,
    private_sealed BYTEA NOT NULL,
    created_at     BIGINT,
    sign_from      BIGINT,
    retire_at      BIGINT,
    remove_at      BIGINT
);

CREATE TABLE replay (
    id         TEXT COLLATE "C" PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX replay_expires ON replay (expires_at);

CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at BIGINT NOT NULL,
    event_type  TEXT COLLATE "C" NOT NULL,
    outcome     TEXT NOT NULL,
    client_id   TEXT COLLATE "C" NOT NULL,
    subject     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    remote_ip   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    details     TEXT NOT NULL
);
CREATE INDEX audit_time ON audit_events (occurred_at, id);
CREATE INDEX audit_type_time ON audit_events (event_type, occurred_at, id);
CREATE INDEX audit_client_time ON audit_events (client_id, occurred_at, id);

CREATE TABLE users (
    id             TEXT COLLATE "C" PRIMARY KEY,
    username       TEXT NOT NULL,
    username_key   TEXT COLLATE "C" NOT NULL UNIQUE, -- PRECIS UsernameCaseMapped form, computed by the store
    password_hash  TEXT NOT NULL,
    disabled       BOOLEAN NOT NULL,
    totp_sealed    BYTEA,
    totp_last_step BIGINT NOT NULL,
    attributes     TEXT NOT NULL,
    created_at     BIGINT,
    updated_at     BIGINT
);

CREATE TABLE consents (
    subject    TEXT COLLATE "C" NOT NULL,
    client_id  TEXT COLLATE "C" NOT NULL,
    scopes     TEXT NOT NULL,
    granted_at BIGINT,
    PRIMARY KEY (subject, client_id)
);

CREATE TABLE ephemeral (
    kind       TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    value      BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX ephemeral_expires ON ephemeral (expires_at);
