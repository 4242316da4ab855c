-- A counter bumped, in the same transaction, by every change to the tables
-- the tap hot path reads (users, badges, workstations, clients), whoever
-- makes it (any server node, the admin CLI). Nodes cache those rows and
-- poll this one value to know when to drop the cache.
CREATE TABLE directory_generation (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT  NOT NULL
);
INSERT INTO directory_generation (id, value) VALUES (1, 0);

CREATE FUNCTION bump_directory_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE directory_generation SET value = value + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER users_generation AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_generation();
CREATE TRIGGER badges_generation AFTER INSERT OR UPDATE OR DELETE ON badges
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_generation();
CREATE TRIGGER workstations_generation AFTER INSERT OR UPDATE OR DELETE ON workstations
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_generation();
CREATE TRIGGER clients_generation AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH STATEMENT EXECUTE FUNCTION bump_directory_generation();
