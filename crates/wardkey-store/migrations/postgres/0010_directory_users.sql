-- Users from the trust's directories (issue 15): where each user's record
-- comes from, the source's stable id for them, and their employee number.
-- Existing users are local.
ALTER TABLE users ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN employee_number TEXT;
-- Disabled by a Wardkey admin: stays disabled whatever its source says, so
-- a sync cannot undo an emergency disable.
ALTER TABLE users ADD COLUMN held BOOLEAN NOT NULL DEFAULT FALSE;
-- One user per directory entry, so a sync links and never duplicates.
CREATE UNIQUE INDEX users_source_external_id ON users (source, external_id) WHERE external_id IS NOT NULL;
-- Usernames are case-insensitive: "Alice" and "alice" are one person, as
-- in Active Directory. Usernames are ASCII (validate_username), so lower()
-- is exact on both engines. The store refuses to open, naming the pair,
-- if existing usernames clash (see `username_case_clashes`).
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));
-- The new columns are directory rows too: nodes cache users.
DROP TRIGGER users_generation ON users;
CREATE TRIGGER users_generation
    AFTER INSERT OR UPDATE OF id, username, name, email, roles, disabled, failed_logins, last_failed_at, created_at,
        source, external_id, employee_number, held
    OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
