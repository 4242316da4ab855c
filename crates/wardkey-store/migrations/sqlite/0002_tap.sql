-- Tap-and-go: workstations and badges, server secrets, the back-channel
-- logout outbox and session revocation requests. Same conventions as 0001:
-- STRICT tables, Unix-second INTEGER timestamps.

-- A workstation is created with a one-time enrolment code (its digest) and
-- enrolled when its agent redeems the code with a public key; redeeming
-- clears the code, so it works once.
CREATE TABLE workstations (
    id                    TEXT    NOT NULL PRIMARY KEY,
    name                  TEXT    NOT NULL UNIQUE,
    ward                  TEXT    NOT NULL,
    public_key            BLOB,                     -- raw Ed25519 key, once enrolled
    enabled               INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at            INTEGER NOT NULL,
    enrolled_at           INTEGER,
    enrol_code_digest     BLOB    UNIQUE,           -- NULL once redeemed
    enrol_code_expires_at INTEGER,
    CHECK ((enrol_code_digest IS NULL) = (enrol_code_expires_at IS NULL))
) STRICT;

-- Badge UIDs are kept only as keyed digests (see wardkey_core::badge).
CREATE TABLE badges (
    digest      BLOB    NOT NULL PRIMARY KEY,
    user_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    failed_pins INTEGER NOT NULL DEFAULT 0 CHECK (failed_pins >= 0),
    created_at  INTEGER NOT NULL
) STRICT;

-- revoke_user_badges, reset_pin_failures and the user cascade.
CREATE INDEX badges_user_id ON badges (user_id);

-- Secrets every node and the CLI must agree on (the badge digest key); the
-- first value stored wins.
CREATE TABLE server_secrets (
    name  TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

-- Back-channel logouts still to deliver. No foreign key to clients: a client
-- removed meanwhile just makes delivery fail and the notice age out.
-- next_attempt_at doubles as the claim lease.
CREATE TABLE logout_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id       TEXT    NOT NULL,
    sub             TEXT    NOT NULL,
    sid             TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_error      TEXT
) STRICT;

-- claim_due_logouts scans due rows in (next_attempt_at, id) order.
CREATE INDEX logout_outbox_due ON logout_outbox (next_attempt_at, id);

-- Requests (from the admin CLI) to end every session of a user. No foreign
-- key: ending a deleted user's sessions still matters.
CREATE TABLE session_revocations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      TEXT    NOT NULL,
    requested_at INTEGER NOT NULL
) STRICT;
