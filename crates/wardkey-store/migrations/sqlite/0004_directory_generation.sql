-- A counter bumped, in the same transaction, by every change to the tables
-- the tap hot path reads (users, badges, workstations, clients), whoever
-- makes it (any server node, the admin CLI). Nodes cache those rows and
-- poll this one value to know when to drop the cache.
CREATE TABLE directory_generation (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
) STRICT;
INSERT INTO directory_generation (id, value) VALUES (1, 0);

CREATE TRIGGER users_ai AFTER INSERT ON users BEGIN UPDATE directory_generation SET value = value + 1; END;
CREATE TRIGGER users_au AFTER UPDATE ON users BEGIN UPDATE directory_generation SET value = value + 1; END;
CREATE TRIGGER users_ad AFTER DELETE ON users BEGIN UPDATE directory_generation SET value = value + 1; END;
CREATE TRIGGER badges_ai AFTER INSERT ON badges BEGIN UPDATE directory_generation SET value = value + 1; END;
CREATE TRIGGER badges_au AFTER UPDATE ON badges BEGIN UPDATE directory_generation SET value = value + 1; END;
CREATE TRIGGER badges_ad AFTER DELETE ON badges BEGIN UPDATE directory_generation SET value = value + 1; END;
CREATE TRIGGER workstations_ai AFTER INSERT ON workstations BEGIN UPDATE directory_generation SET value = value + 1; END;
CREATE TRIGGER workstations_au AFTER UPDATE ON workstations BEGIN UPDATE directory_generation SET value = value + 1; END;
CREATE TRIGGER workstations_ad AFTER DELETE ON workstations BEGIN UPDATE directory_generation SET value = value + 1; END;
CREATE TRIGGER clients_ai AFTER INSERT ON clients BEGIN UPDATE directory_generation SET value = value + 1; END;
CREATE TRIGGER clients_au AFTER UPDATE ON clients BEGIN UPDATE directory_generation SET value = value + 1; END;
CREATE TRIGGER clients_ad AFTER DELETE ON clients BEGIN UPDATE directory_generation SET value = value + 1; END;
