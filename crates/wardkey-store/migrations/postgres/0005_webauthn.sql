-- WebAuthn credentials: passkeys and FIDO2 security keys. Same conventions
-- as 0001. No trigger bumps the directory generation (0004): no node caches
-- these rows, a WebAuthn sign-in reads them from the store.

-- id is the WebAuthn credential id, unique across all users: an assertion
-- names only it. data is the webauthn-rs credential as JSON, opaque here
-- (TEXT, byte for byte what the server wrote, as in 0001).
CREATE TABLE webauthn_credentials (
    id           BYTEA  NOT NULL CONSTRAINT webauthn_credentials_pkey PRIMARY KEY,
    user_id      TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT   NOT NULL CHECK (kind IN ('passkey', 'security_key')),
    name         TEXT   NOT NULL,                   -- the user's label
    data         TEXT   NOT NULL,                   -- JSON webauthn-rs Passkey or SecurityKey
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);

-- webauthn_credentials lists a user's oldest first; also the user cascade.
CREATE INDEX webauthn_credentials_user_id ON webauthn_credentials (user_id, created_at, id);
