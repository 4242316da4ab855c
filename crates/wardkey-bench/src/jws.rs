//! The workstation signer as the load tool drives it: the agent's own
//! (`wardkey_proto::signer`), so requests are the bytes a real ward PC
//! sends. Signing is part of each tap's cost on a real ward PC, so the load
//! tool does it per request too instead of replaying canned tokens (which
//! the server would refuse as replays anyway).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
pub use wardkey_proto::signer::Signer;
use wardkey_proto::signer::WorkstationKey;

/// A fresh Ed25519 key as PKCS#8 (what the fixture keeps) and its public
/// half as base64url (what `POST /tap/enrol` takes).
pub fn generate_key() -> anyhow::Result<(Vec<u8>, String)> {
    let (key, pkcs8) = WorkstationKey::generate()?;
    Ok((pkcs8, key.public_key_b64()))
}

/// Seconds since the Unix epoch, as `iat` wants.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Workstation `id` of the server `issuer`, from its PKCS#8 key.
pub fn from_pkcs8(id: &str, issuer: &str, pkcs8: &[u8]) -> anyhow::Result<Signer> {
    let key = WorkstationKey::from_pkcs8(pkcs8)
        .ok_or_else(|| anyhow::anyhow!("workstation {id}: not an Ed25519 PKCS#8 key"))?;
    Ok(Signer::new(key, id, issuer))
}

/// Workstation `id` of the server `issuer`, from standard base64 PKCS#8 as
/// the fixture keeps it.
pub fn from_base64(id: &str, issuer: &str, pkcs8_b64: &str) -> anyhow::Result<Signer> {
    let bytes = STANDARD
        .decode(pkcs8_b64.trim())
        .map_err(|e| anyhow::anyhow!("workstation {id}: the key is not base64: {e}"))?;
    from_pkcs8(id, issuer, &bytes)
}

/// Signing at the moment of sending, infallibly: with a parsed key only the
/// system's random source can fail, and then the request goes out empty and
/// counts as that request's error (the server refuses it) instead of
/// stopping the run.
pub trait SignNow {
    /// A signed tap request (`POST /tap`, `/tap/pin`, `/tap/out`) for
    /// `action`, with a fresh `jti` and `iat` now.
    fn tap_now<A: Serialize>(&self, action: A) -> String;
    /// A `private_key_jwt` client assertion for `token_endpoint`.
    fn assertion_now(&self, token_endpoint: &str) -> String;
}

impl SignNow for Signer {
    fn tap_now<A: Serialize>(&self, action: A) -> String {
        self.tap_request(action, unix_now()).unwrap_or_default()
    }

    fn assertion_now(&self, token_endpoint: &str) -> String {
        self.client_assertion_for(token_endpoint, unix_now()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_keys_load_as_the_key_enrolment_sent() {
        let (pkcs8, public) = generate_key().unwrap();
        let ws = from_base64("ws-1", "http://127.0.0.1:8080", &STANDARD.encode(&pkcs8)).unwrap();
        assert_eq!(ws.key().public_key_b64(), public);
        assert_eq!(ws.workstation_id(), "ws-1");
        assert!(from_base64("x", "i", "not base64!").is_err());
        assert!(from_pkcs8("x", "i", b"not a key").is_err());
    }

    #[test]
    fn signing_now_uses_the_clock() {
        let (pkcs8, _) = generate_key().unwrap();
        let ws = from_pkcs8("ws-1", "http://127.0.0.1:8080", &pkcs8).unwrap();
        let jws = ws.tap_now(wardkey_proto::tap::Tap { badge: "04A23B1C".into() });
        let claims = jws.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert!((claims["iat"].as_i64().unwrap() - unix_now()).abs() <= 1);
        assert_eq!(claims["aud"], "http://127.0.0.1:8080");
        assert!(!ws.assertion_now("http://127.0.0.1:8080/token").is_empty());
    }
}
