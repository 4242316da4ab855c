-- Tap-and-go: workstations and badges, server secrets, the back-channel
-- logout outbox and session revocation requests. Same conventions as 0001.

-- A workstation is created with a one-time enrolment code (its digest) and
-- enrolled when its agent redeems the code with a public key; redeeming
-- clears the code, so it works once. The constraint names tell a taken name
-- from a colliding random id or code.
CREATE TABLE workstations (
    id                    TEXT    NOT NULL CONSTRAINT workstations_pkey PRIMARY KEY,
    name                  TEXT    NOT NULL CONSTRAINT workstations_name_key UNIQUE,
    ward                  TEXT    NOT NULL,
    public_key            BYTEA,                    -- raw Ed25519 key, once enrolled
    enabled               BOOLEAN NOT NULL DEFAULT TRUE,
    created_at            BIGINT  NOT NULL,
    enrolled_at           BIGINT,
    enrol_code_digest     BYTEA   CONSTRAINT workstations_enrol_code_digest_key UNIQUE, -- NULL once redeemed
    enrol_code_expires_at BIGINT,
    CHECK ((enrol_code_digest IS NULL) = (enrol_code_expires_at IS NULL))
);

-- Badge UIDs are kept only as keyed digests (see wardkey_core::badge).
CREATE TABLE badges (
    digest      BYTEA  NOT NULL PRIMARY KEY,
    user_id     TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    failed_pins BIGINT NOT NULL DEFAULT 0 CHECK (failed_pins >= 0),
    created_at  BIGINT NOT NULL
);

-- revoke_user_badges, reset_pin_failures and the user cascade.
CREATE INDEX badges_user_id ON badges (user_id);

-- Secrets every node and the CLI must agree on (the badge digest key); the
-- first value stored wins.
CREATE TABLE server_secrets (
    name  TEXT  NOT NULL PRIMARY KEY,
    value BYTEA NOT NULL
);

-- Back-channel logouts still to deliver. No foreign key to clients: a client
-- removed meanwhile just makes delivery fail and the notice age out.
-- next_attempt_at doubles as the claim lease.
CREATE TABLE logout_outbox (
    id              BIGSERIAL PRIMARY KEY,
    client_id       TEXT   NOT NULL,
    sub             TEXT   NOT NULL,
    sid             TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_error      TEXT
);

-- claim_due_logouts scans due rows in (next_attempt_at, id) order.
CREATE INDEX logout_outbox_due ON logout_outbox (next_attempt_at, id);

-- Requests (from the admin CLI) to end every session of a user. No foreign
-- key: ending a deleted user's sessions still matters.
CREATE TABLE session_revocations (
    id           BIGSERIAL PRIMARY KEY,
    user_id      TEXT   NOT NULL,
    requested_at BIGINT NOT NULL
);
