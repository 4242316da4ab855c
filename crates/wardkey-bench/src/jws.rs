//! The workstation's Ed25519 key and the compact JWS it signs, byte for byte
//! as the agent signs them (see `wardkey_proto::tap`): signing is part of
//! each tap's cost on a real ward PC, so the load tool does it per request
//! too instead of replaying canned tokens (which the server would refuse as
//! replays anyway).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use serde::Serialize;
use wardkey_proto::tap::Envelope;

/// JWS `typ` of signed tap requests.
pub const TAP_TYP: &str = "wardkey-tap+jwt";

/// JWS `typ` of the token-exchange client assertion (RFC 7523).
pub const ASSERTION_TYP: &str = "JWT";

/// How long a client assertion is valid: a minute, as the agent does.
const ASSERTION_LIFETIME: i64 = 60;

/// The JOSE header of every request a workstation signs.
#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'a str,
}

/// Claims of a `private_key_jwt` client assertion (RFC 7523 §3).
#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: i64,
    exp: i64,
}

/// An enrolled workstation: its id (`kid`, `iss`, and token-exchange
/// `client_id`) and its Ed25519 key.
pub struct WorkstationKey {
    /// The workstation id the server gave at enrolment.
    pub id: String,
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for WorkstationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkstationKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A fresh Ed25519 key as PKCS#8 (what the fixture keeps) and its public
/// half as base64url (what `POST /tap/enrol` takes).
pub fn generate_key() -> anyhow::Result<(Vec<u8>, String)> {
    let key = Ed25519KeyPair::generate().map_err(|_| anyhow::anyhow!("generating an Ed25519 key failed"))?;
    let pkcs8 = key.to_pkcs8().map_err(|_| anyhow::anyhow!("encoding an Ed25519 key as PKCS#8 failed"))?;
    Ok((pkcs8.as_ref().to_vec(), URL_SAFE_NO_PAD.encode(key.public_key().as_ref())))
}

/// A fresh `jti`: 16 random bytes, 22 characters (the server wants 16 to
/// 128).
pub fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the Unix epoch, as `iat` wants.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl WorkstationKey {
    /// The key of workstation `id` from its PKCS#8 bytes.
    pub fn from_pkcs8(id: &str, pkcs8: &[u8]) -> anyhow::Result<Self> {
        let key = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| anyhow::anyhow!("workstation {id}: not an Ed25519 PKCS#8 key: {e}"))?;
        Ok(Self { id: id.into(), key })
    }

    /// The key of workstation `id` from standard base64 PKCS#8, as the
    /// fixture keeps it.
    pub fn from_base64(id: &str, pkcs8_b64: &str) -> anyhow::Result<Self> {
        let bytes = STANDARD
            .decode(pkcs8_b64.trim())
            .map_err(|e| anyhow::anyhow!("workstation {id}: the key is not base64: {e}"))?;
        Self::from_pkcs8(id, &bytes)
    }

    /// The public key, 32 bytes base64url.
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.public_key().as_ref())
    }

    /// A compact EdDSA JWS over `claims` with header `typ`.
    pub fn sign<C: Serialize>(&self, typ: &str, claims: &C) -> String {
        let header = Header { alg: "EdDSA", kid: &self.id, typ };
        // Serialising these plain structs cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let claims = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    /// A signed tap request (`POST /tap`, `/tap/pin`, `/tap/out`) for
    /// `action`, addressed to `issuer`, with a fresh `jti` and `iat` now.
    pub fn tap_request<A: Serialize>(&self, issuer: &str, action: A) -> String {
        let envelope =
            Envelope { iss: self.id.clone(), aud: issuer.to_string(), jti: new_jti(), iat: unix_now(), action };
        self.sign(TAP_TYP, &envelope)
    }

    /// A `private_key_jwt` client assertion for the token endpoint.
    pub fn client_assertion(&self, token_endpoint: &str) -> String {
        let now = unix_now();
        let claims = AssertionClaims {
            iss: &self.id,
            sub: &self.id,
            aud: token_endpoint,
            jti: new_jti(),
            iat: now,
            exp: now + ASSERTION_LIFETIME,
        };
        self.sign(ASSERTION_TYP, &claims)
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
    use serde_json::Value;
    use wardkey_proto::tap::Tap;

    use super::*;

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    fn verified(jws: &str, public_key_b64: &str) -> (Value, Value) {
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3, "compact JWS");
        let public = URL_SAFE_NO_PAD.decode(public_key_b64).unwrap();
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&ED25519, &public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("signature verifies with the workstation's public key");
        (decode(parts[0]), decode(parts[1]))
    }

    fn workstation() -> WorkstationKey {
        let (pkcs8, public) = generate_key().unwrap();
        let ws = WorkstationKey::from_base64("ws-1", &STANDARD.encode(&pkcs8)).unwrap();
        assert_eq!(ws.public_key_b64(), public);
        ws
    }

    #[test]
    fn tap_request_is_a_verifiable_eddsa_jws() {
        let ws = workstation();
        let jws = ws.tap_request("http://127.0.0.1:8080", Tap { badge: "04A23B1C".into() });
        let (header, claims) = verified(&jws, &ws.public_key_b64());
        assert_eq!(header, serde_json::json!({"alg": "EdDSA", "kid": "ws-1", "typ": "wardkey-tap+jwt"}));
        assert_eq!(claims["iss"], "ws-1");
        assert_eq!(claims["aud"], "http://127.0.0.1:8080");
        assert_eq!(claims["badge"], "04A23B1C", "the action is flattened into the claims");
        let jti = claims["jti"].as_str().unwrap();
        assert!((16..=128).contains(&jti.len()));
        assert!((claims["iat"].as_i64().unwrap() - unix_now()).abs() <= 1);
        // Every request gets its own jti.
        let again = ws.tap_request("http://127.0.0.1:8080", Tap { badge: "04A23B1C".into() });
        assert_ne!(verified(&again, &ws.public_key_b64()).1["jti"], claims["jti"]);
    }

    #[test]
    fn client_assertion_names_the_workstation_and_the_token_endpoint() {
        let ws = workstation();
        let jws = ws.client_assertion("http://idp.test/token");
        let (header, claims) = verified(&jws, &ws.public_key_b64());
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], "ws-1");
        assert_eq!(claims["iss"], "ws-1");
        assert_eq!(claims["sub"], "ws-1");
        assert_eq!(claims["aud"], "http://idp.test/token");
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 60);
    }

    #[test]
    fn a_tampered_or_foreign_signature_fails() {
        let ws = workstation();
        let other = workstation();
        let jws = ws.tap_request("iss", Tap { badge: "AA".into() });
        let parts: Vec<&str> = jws.split('.').collect();
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let forged = format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode(br#"{"badge":"BB"}"#));
        let public = URL_SAFE_NO_PAD.decode(ws.public_key_b64()).unwrap();
        assert!(UnparsedPublicKey::new(&ED25519, &public).verify(forged.as_bytes(), &signature).is_err());
        let foreign = URL_SAFE_NO_PAD.decode(other.public_key_b64()).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(UnparsedPublicKey::new(&ED25519, &foreign).verify(input.as_bytes(), &signature).is_err());
        assert!(WorkstationKey::from_base64("x", "not base64!").is_err());
        assert!(WorkstationKey::from_pkcs8("x", b"not a key").is_err());
    }
}
