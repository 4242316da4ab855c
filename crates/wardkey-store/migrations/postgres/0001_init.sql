-- Wardkey directory, PostgreSQL flavour: the same tables as the SQLite
-- migrations of the same number. Timestamps are BIGINT Unix seconds. Lists
-- and tagged enums are JSON kept as TEXT, byte for byte what the server
-- wrote (JSONB would reorder keys and refuses \u0000 in strings); the store
-- decodes them and reports a row that does not decode as corrupt. Counts are
-- BIGINT so that every integer column reads back as one Rust type.

CREATE TABLE users (
    id             TEXT    NOT NULL PRIMARY KEY,
    username       TEXT    NOT NULL CONSTRAINT users_username_key UNIQUE,
    name           TEXT,
    email          TEXT,
    roles          TEXT    NOT NULL DEFAULT '[]',   -- JSON array of strings
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins  BIGINT  NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    last_failed_at BIGINT,
    created_at     BIGINT  NOT NULL
);

CREATE TABLE credentials (
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT   NOT NULL CHECK (kind IN ('password', 'pin')),
    secret     TEXT   NOT NULL,                     -- argon2id PHC string
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, kind)
);

CREATE TABLE clients (
    client_id                 TEXT   NOT NULL PRIMARY KEY,
    auth                      TEXT   NOT NULL,      -- JSON ClientAuth
    redirect_uris             TEXT   NOT NULL,      -- JSON array of strings
    post_logout_redirect_uris TEXT   NOT NULL,      -- JSON array of strings
    backchannel_logout_uri    TEXT,
    grant_types               TEXT   NOT NULL,      -- JSON array of GrantType
    start_url                 TEXT,
    id_token_alg              TEXT   NOT NULL,      -- JOSE alg name
    created_at                BIGINT NOT NULL
);

-- seq stands in for SQLite's rowid: keys created in the same second are
-- listed last inserted first.
CREATE TABLE signing_keys (
    kid         TEXT      NOT NULL PRIMARY KEY,
    alg         TEXT      NOT NULL,                 -- JOSE alg name
    private_der BYTEA     NOT NULL,                 -- PKCS#8 DER
    created_at  BIGINT    NOT NULL,
    retired_at  BIGINT,
    seq         BIGSERIAL NOT NULL
);

CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT    NOT NULL,
    event   TEXT      NOT NULL,
    actor   TEXT      NOT NULL,
    subject TEXT      NOT NULL,
    detail  TEXT      NOT NULL                      -- JSON
);

-- recent_audit reads newest first, ties by id.
CREATE INDEX audit_log_at ON audit_log (at, id);
