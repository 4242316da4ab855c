-- A key whose signature counter went backwards may have been copied
-- (WebAuthn L2 §6.1.1): it is suspended then, and signs nobody in until the
-- service desk has checked it and re-enabled it (`wardkey user keys USER
-- --enable ID`). No trigger bumps the directory generation: no node caches
-- WebAuthn credentials.
ALTER TABLE webauthn_credentials ADD COLUMN suspended_at BIGINT;
