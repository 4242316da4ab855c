-- Users from the trust's directories (issue 15): where each user's record
-- comes from, the source's stable id for them, and their employee number.
-- Existing users are local.
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN employee_number TEXT;
-- Disabled by a Wardkey admin: stays disabled whatever its source says, so
-- a sync cannot undo an emergency disable.
ALTER TABLE users ADD COLUMN held INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1));
-- One user per directory entry, so a sync links and never duplicates.
CREATE UNIQUE INDEX users_source_external_id ON users (source, external_id) WHERE external_id IS NOT NULL;
-- Usernames are case-insensitive: "Alice" and "alice" are one person, as
-- in Active Directory. Usernames are ASCII (validate_username), so lower()
-- is exact on both engines. The store refuses to open, naming the pair,
-- if existing usernames clash (see `username_case_clashes`).
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));
