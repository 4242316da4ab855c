//! The workstation's request signer: its Ed25519 key and the compact JWS
//! that prove a request comes from it (tap requests, see [`crate::tap`], and
//! RFC 7523 client assertions for token exchange).
//!
//! One implementation for everything that signs as a workstation (the
//! agent, the load tool, the integration tests and the benches), so that
//! what they send is what the server's verifier and the fuzz corpus expect,
//! byte for byte. Behind the `signer` feature: the server only verifies.
//!
//! The JWS are built by hand (header and claims are fixed and tiny) rather
//! than with a JOSE library: the server accepts exactly `alg: EdDSA`, and
//! doing it here keeps a client's dependencies to aws-lc-rs.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::tap::Envelope;

/// JWS `typ` of tap requests (the server refuses any other).
pub const TAP_TYP: &str = "wardkey-tap+jwt";

/// JWS `typ` of the token-exchange client assertion (RFC 7523).
pub const ASSERTION_TYP: &str = "JWT";

/// RFC 7523 client assertions live this long: long enough for clock skew
/// in flight, short enough that a copied one is soon useless.
pub const ASSERTION_LIFETIME_SECS: i64 = 60;

/// The cryptographic library (or JSON encoding of the claims) failed; names
/// the step.
#[derive(Debug, thiserror::Error)]
#[error("the cryptographic library failed: {0}")]
pub struct CryptoError(pub &'static str);

/// A workstation's Ed25519 signing key. Its `Debug` never shows key
/// material.
pub struct WorkstationKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for WorkstationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkstationKey").field("public_key", &self.public_key_b64()).finish()
    }
}

impl WorkstationKey {
    /// A fresh key and its PKCS#8 DER encoding (to be kept in a key file or
    /// a fixture).
    pub fn generate() -> Result<(Self, Vec<u8>), CryptoError> {
        let pair = Ed25519KeyPair::generate().map_err(|_| CryptoError("Ed25519 key generation"))?;
        let der = pair.to_pkcs8().map_err(|_| CryptoError("PKCS#8 encoding"))?.as_ref().to_vec();
        Ok((Self { pair }, der))
    }

    /// The key in PKCS#8 DER, or `None` if it is not an Ed25519 key.
    pub fn from_pkcs8(der: &[u8]) -> Option<Self> {
        Ed25519KeyPair::from_pkcs8(der).ok().map(|pair| Self { pair })
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key as enrolment (`POST /tap/enrol`) takes it: base64url,
    /// no padding.
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key())
    }

    /// A compact JWS of `claims` with `header`.
    pub fn sign_compact(&self, header: &JwsHeader<'_>, claims: &impl Serialize) -> Result<String, CryptoError> {
        let header = serde_json::to_vec(header).map_err(|_| CryptoError("JSON encoding"))?;
        let claims = serde_json::to_vec(claims).map_err(|_| CryptoError("JSON encoding"))?;
        let mut jws = URL_SAFE_NO_PAD.encode(header);
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature = self.pair.try_sign(jws.as_bytes()).map_err(|_| CryptoError("Ed25519 signing"))?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(jws)
    }
}

/// A JWS protected header, in the field order the contract shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwsHeader<'a> {
    /// Always `EdDSA`.
    pub alg: &'static str,
    /// The workstation id.
    pub kid: &'a str,
    /// [`TAP_TYP`] or [`ASSERTION_TYP`] (tests also send others, to see
    /// them refused).
    pub typ: &'a str,
}

/// RFC 7523 client assertion claims for `private_key_jwt` at `/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: i64,
    exp: i64,
}

/// Signs requests as one enrolled workstation for one server.
#[derive(Debug)]
pub struct Signer {
    key: WorkstationKey,
    workstation_id: String,
    issuer: String,
}

impl Signer {
    /// `issuer` is the server URL without a trailing slash (the server
    /// compares `aud` with its issuer exactly).
    pub fn new(key: WorkstationKey, workstation_id: impl Into<String>, issuer: impl Into<String>) -> Self {
        Self { key, workstation_id: workstation_id.into(), issuer: issuer.into() }
    }

    /// The workstation id (`iss`, `kid`, and the token-exchange
    /// `client_id`).
    pub fn workstation_id(&self) -> &str {
        &self.workstation_id
    }

    /// The server's issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key it signs with.
    pub fn key(&self) -> &WorkstationKey {
        &self.key
    }

    /// A compact EdDSA JWS over any `claims`, with header `typ` and this
    /// workstation as `kid`. [`Signer::tap_request`] and
    /// [`Signer::client_assertion`] are the usual ways in; this one lets
    /// tests sign claims the server must refuse.
    pub fn sign(&self, typ: &str, claims: &impl Serialize) -> Result<String, CryptoError> {
        let header = JwsHeader { alg: "EdDSA", kid: &self.workstation_id, typ };
        self.key.sign_compact(&header, claims)
    }

    /// The body of a signed tap request: `Envelope<A>` with a fresh `jti`,
    /// `iat` = `now` (seconds since the epoch).
    pub fn tap_request<A: Serialize>(&self, action: A, now: i64) -> Result<String, CryptoError> {
        let envelope =
            Envelope { iss: self.workstation_id.clone(), aud: self.issuer.clone(), jti: new_jti()?, iat: now, action };
        self.sign(TAP_TYP, &envelope)
    }

    /// A `private_key_jwt` client assertion for `{issuer}/token`.
    pub fn client_assertion(&self, now: i64) -> Result<String, CryptoError> {
        self.client_assertion_for(&format!("{}/token", self.issuer), now)
    }

    /// A `private_key_jwt` client assertion for the token endpoint at
    /// `audience` (as discovery named it, when that is not
    /// `{issuer}/token`).
    pub fn client_assertion_for(&self, audience: &str, now: i64) -> Result<String, CryptoError> {
        let claims = AssertionClaims {
            iss: &self.workstation_id,
            sub: &self.workstation_id,
            aud: audience,
            jti: new_jti()?,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        self.sign(ASSERTION_TYP, &claims)
    }
}

/// 128 random bits, base64url: the server remembers each `jti` once, so
/// it must never repeat.
pub fn new_jti() -> Result<String, CryptoError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CryptoError("random number generation"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
    use serde_json::{Value, json};

    use super::*;
    use crate::tap::Tap;

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// Verify as the server does and return (header, claims).
    fn verify(jws: &str, public_key: &[u8]) -> (Value, Value) {
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3, "compact JWS has three parts");
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .expect("signature verifies with the workstation's public key");
        (decode(parts[0]), decode(parts[1]))
    }

    fn signer() -> Signer {
        let (key, _) = WorkstationKey::generate().unwrap();
        Signer::new(key, "ws_42", "https://idp.example")
    }

    #[test]
    fn tap_requests_verify_and_carry_the_contract_header_and_claims() {
        let signer = signer();
        let jws = signer.tap_request(Tap { badge: "04A1B2C3".into() }, 1_700_000_000).unwrap();
        let (header, claims) = verify(&jws, signer.key.public_key());
        assert_eq!(header, json!({"alg": "EdDSA", "kid": "ws_42", "typ": "wardkey-tap+jwt"}));
        // The header is serialised in exactly the contract's order.
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(jws.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(raw, r#"{"alg":"EdDSA","kid":"ws_42","typ":"wardkey-tap+jwt"}"#);
        // So are the claims: the envelope first, then the action.
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(jws.split('.').nth(1).unwrap()).unwrap()).unwrap();
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(
            raw,
            format!(
                r#"{{"iss":"ws_42","aud":"https://idp.example","jti":"{jti}","iat":1700000000,"badge":"04A1B2C3"}}"#
            )
        );
        assert!(URL_SAFE_NO_PAD.decode(jti).unwrap().len() >= 16, "jti has at least 128 bits");
        // The envelope decodes as the server decodes it.
        let envelope: Envelope<Tap> = serde_json::from_value(claims).unwrap();
        assert_eq!(envelope.action.badge, "04A1B2C3");
    }

    #[test]
    fn every_request_gets_a_fresh_jti() {
        let signer = signer();
        let a = verify(&signer.tap_request(Tap { badge: "x".into() }, 1).unwrap(), signer.key.public_key()).1;
        let b = verify(&signer.tap_request(Tap { badge: "x".into() }, 1).unwrap(), signer.key.public_key()).1;
        assert_ne!(a["jti"], b["jti"]);
    }

    #[test]
    fn client_assertions_follow_rfc_7523() {
        let signer = signer();
        let jws = signer.client_assertion(1_700_000_000).unwrap();
        let (header, claims) = verify(&jws, signer.key.public_key());
        assert_eq!(header, json!({"alg": "EdDSA", "kid": "ws_42", "typ": "JWT"}));
        assert_eq!(claims["iss"], "ws_42");
        assert_eq!(claims["sub"], "ws_42");
        assert_eq!(claims["aud"], "https://idp.example/token");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_000_060);
        assert!(claims["jti"].as_str().unwrap().len() >= 22);
        let elsewhere = signer.client_assertion_for("https://tokens.example/t", 1).unwrap();
        assert_eq!(verify(&elsewhere, signer.key.public_key()).1["aud"], "https://tokens.example/t");
    }

    #[test]
    fn arbitrary_claims_sign_as_json_serialises_them() {
        let signer = signer();
        let claims = json!({"iss": "ws_42", "badge": "AA"});
        let jws = signer.sign("other", &claims).unwrap();
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[0]).unwrap(), br#"{"alg":"EdDSA","kid":"ws_42","typ":"other"}"#);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[1]).unwrap(), claims.to_string().as_bytes());
        verify(&jws, signer.key.public_key());
    }

    #[test]
    fn a_tampered_or_foreign_jws_does_not_verify() {
        let signer = signer();
        let other = self::signer();
        let jws = signer.tap_request(Tap { badge: "a".into() }, 1).unwrap();
        let parts: Vec<&str> = jws.split('.').collect();
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let forged = format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode(br#"{"iss":"ws_42","badge":"b"}"#));
        let public = UnparsedPublicKey::new(&ED25519, signer.key.public_key());
        assert!(public.verify(forged.as_bytes(), &signature).is_err());
        let input = format!("{}.{}", parts[0], parts[1]);
        let foreign = UnparsedPublicKey::new(&ED25519, other.key.public_key());
        assert!(foreign.verify(input.as_bytes(), &signature).is_err());
        assert!(WorkstationKey::from_pkcs8(b"not a key").is_none());
    }

    #[test]
    fn debug_shows_no_private_key() {
        let (key, der) = WorkstationKey::generate().unwrap();
        let signer = Signer::new(WorkstationKey::from_pkcs8(&der).unwrap(), "ws_42", "https://idp.example");
        for shown in [format!("{key:?}"), format!("{signer:?}")] {
            assert!(shown.contains(&key.public_key_b64()), "{shown}");
            assert!(!shown.contains(&URL_SAFE_NO_PAD.encode(&der)), "{shown}");
            assert!(!shown.contains(&base64::engine::general_purpose::STANDARD.encode(&der)), "{shown}");
        }
    }
}
