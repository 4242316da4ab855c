-- Per-client minimum assurance, and one-time enrolment invites. Same
-- conventions as 0001: STRICT tables, Unix-second INTEGER timestamps.

-- The weakest acr the client accepts (a urn:wardkey:acr:… value); NULL
-- accepts any session. No CHECK: the store checks the value against the acr
-- levels Wardkey issues, which a new level would otherwise need a table
-- rebuild to extend. Changes move the directory generation through the
-- clients triggers of 0004.
ALTER TABLE clients ADD COLUMN min_acr TEXT;

-- An invite lets a clinician who has no password yet set up their account
-- once. Only the SHA-256 digest of its token is kept (as for client
-- secrets), so a leaked database holds no working link. Taking an invite
-- deletes it, so a link works once. No trigger bumps the directory
-- generation: no node caches invites.
CREATE TABLE invites (
    digest     BLOB    NOT NULL PRIMARY KEY,        -- SHA-256 of the token
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

-- The user cascade; create_invite purges expired invites by expires_at.
CREATE INDEX invites_user_id ON invites (user_id);
CREATE INDEX invites_expires_at ON invites (expires_at);
