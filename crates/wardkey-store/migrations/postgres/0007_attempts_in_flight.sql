-- Guesses in flight. A PIN or password check is counted before its slow
-- argon2 verification starts, so that thirty guesses sent at once are not
-- all judged against the same "4 failures so far" (NIST SP 800-63B §5.2.2:
-- the limit is on attempts, not on answers already given).
--
-- badges.pin_attempts: PIN checks of this badge under way; a badge is
-- locked when failed_pins + pin_attempts reaches the limit.
-- users.attempt_at: when the password check under way for this user began
-- (one at a time per user; a check left behind by a crashed node stops
-- counting after a minute).
--
-- Neither column is directory data: the triggers of 0004 are narrowed to
-- the columns nodes cache, so that counting an attempt does not flush every
-- node's directory cache.
ALTER TABLE badges ADD COLUMN pin_attempts BIGINT NOT NULL DEFAULT 0 CHECK (pin_attempts >= 0);
ALTER TABLE users ADD COLUMN attempt_at BIGINT;

DROP TRIGGER users_generation ON users;
CREATE TRIGGER users_generation
    AFTER INSERT OR UPDATE OF id, username, name, email, roles, disabled, failed_logins, last_failed_at, created_at
    OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_generation();
DROP TRIGGER badges_generation ON badges;
CREATE TRIGGER badges_generation
    AFTER INSERT OR UPDATE OF digest, user_id, failed_pins, created_at OR DELETE ON badges
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_generation();
