-- One pending back-channel logout per (client, session): a notice queued to
-- watch for the session's expiry and one queued by an explicit logout are
-- the same notice, so an RP is told once.
CREATE UNIQUE INDEX logout_outbox_client_sid ON logout_outbox (client_id, sid);
