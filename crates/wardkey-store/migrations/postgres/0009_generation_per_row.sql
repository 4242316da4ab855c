-- The directory generation moves only when a directory row changes, as on
-- SQLite (whose triggers are per row). The statement triggers of 0004/0007
-- fired for statements that changed nothing too: every password login's
-- "reset PIN failures" (which matches no badge with nothing to reset) moved
-- the generation and so emptied every node's directory cache.
DROP TRIGGER users_generation ON users;
CREATE TRIGGER users_generation
    AFTER INSERT OR UPDATE OF id, username, name, email, roles, disabled, failed_logins, last_failed_at, created_at
    OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
DROP TRIGGER badges_generation ON badges;
CREATE TRIGGER badges_generation
    AFTER INSERT OR UPDATE OF digest, user_id, failed_pins, created_at OR DELETE ON badges
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
DROP TRIGGER workstations_generation ON workstations;
CREATE TRIGGER workstations_generation AFTER INSERT OR UPDATE OR DELETE ON workstations
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
DROP TRIGGER clients_generation ON clients;
CREATE TRIGGER clients_generation AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION bump_directory_generation();
