-- A tamper-evident audit log: each record carries its place in the chain
-- (`seq`, without gaps), the previous record's hash and its own hash over
-- its content and that previous hash (`crate::audit_chain`). The chain's
-- head and the anchor left by retention live in `audit_chain`, whose one
-- row every append locks first, so records join the chain one writer at a
-- time. Records written before this migration are sealed, in order, when
-- the store is next opened.
ALTER TABLE audit_log ADD COLUMN seq BIGINT;
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_log ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_log_seq ON audit_log (seq);

CREATE TABLE audit_chain (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq         BIGINT  NOT NULL,  -- the newest record's seq (0: none yet)
    hash        TEXT    NOT NULL,  -- the newest record's hash
    anchor_seq  BIGINT  NOT NULL,  -- the last record retention deleted
    anchor_hash TEXT    NOT NULL,  -- and its hash, where the chain now starts
    legacy_sealed BIGINT  NOT NULL -- 1 once the records older than this
                                   -- migration were sealed into the chain
);
-- A store with no records yet has nothing to seal.
INSERT INTO audit_chain (id, seq, hash, anchor_seq, anchor_hash, legacy_sealed)
SELECT 1, 0, '', 0, '', CASE WHEN EXISTS (SELECT 1 FROM audit_log) THEN 0 ELSE 1 END;
