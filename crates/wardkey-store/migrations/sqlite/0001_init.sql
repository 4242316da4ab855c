-- Wardkey directory, SQLite flavour. Timestamps are Unix seconds; lists and
-- tagged enums are JSON text. STRICT tables make SQLite reject values of the
-- wrong storage class instead of silently coercing them.

CREATE TABLE users (
    id             TEXT    NOT NULL PRIMARY KEY,
    username       TEXT    NOT NULL UNIQUE,
    name           TEXT,
    email          TEXT,
    roles          TEXT    NOT NULL DEFAULT '[]',   -- JSON array of strings
    disabled       INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    failed_logins  INTEGER NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    last_failed_at INTEGER,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE credentials (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('password', 'pin')),
    secret     TEXT    NOT NULL,                    -- argon2id PHC string
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, kind)
) STRICT;

CREATE TABLE clients (
    client_id                 TEXT    NOT NULL PRIMARY KEY,
    auth                      TEXT    NOT NULL,     -- JSON ClientAuth
    redirect_uris             TEXT    NOT NULL,     -- JSON array of strings
    post_logout_redirect_uris TEXT    NOT NULL,     -- JSON array of strings
    backchannel_logout_uri    TEXT,
    grant_types               TEXT    NOT NULL,     -- JSON array of GrantType
    start_url                 TEXT,
    id_token_alg              TEXT    NOT NULL,     -- JOSE alg name
    created_at                INTEGER NOT NULL
) STRICT;

CREATE TABLE signing_keys (
    kid         TEXT    NOT NULL PRIMARY KEY,
    alg         TEXT    NOT NULL,                   -- JOSE alg name
    private_der BLOB    NOT NULL,                   -- PKCS#8 DER
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
) STRICT;

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    event   TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    detail  TEXT    NOT NULL                        -- JSON
) STRICT;

-- recent_audit reads newest first; the index carries the rowid (id) too.
CREATE INDEX audit_log_at ON audit_log (at);
