//! The workstation's Ed25519 key: making it at enrolment, keeping it in a
//! file only the agent's user can read, and signing the compact JWS that
//! prove each request comes from this workstation.
//!
//! The JWS are built by hand (header and claims are fixed and tiny) rather
//! than with a JOSE library: the server accepts exactly `alg: EdDSA`, and
//! doing it here keeps the agent's dependencies to aws-lc-rs.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use wardkey_proto::tap::Envelope;

/// JWS `typ` of tap requests (the server refuses any other).
pub const TAP_TYP: &str = "wardkey-tap+jwt";

/// RFC 7523 client assertions live this long: long enough for clock skew
/// in flight, short enough that a copied one is soon useless.
pub const ASSERTION_LIFETIME_SECS: i64 = 60;

/// A key file problem.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `enrol` found a key already there.
    #[error("{0} already exists: this workstation looks enrolled already; use --force to replace its key")]
    Exists(PathBuf),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an Ed25519 PKCS#8 key.
    #[error("{0} is not an Ed25519 private key (PKCS#8 DER); re-enrol this workstation")]
    Invalid(PathBuf),
    /// aws-lc-rs could not make a key or signature (no entropy?).
    #[error("the cryptographic library failed: {0}")]
    Crypto(&'static str),
}

/// The workstation's signing key. Its `Debug` never shows key material.
pub struct WorkstationKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for WorkstationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkstationKey").field("public_key", &self.public_key_b64()).finish()
    }
}

impl WorkstationKey {
    /// A fresh key and its PKCS#8 DER encoding (to be written to the key
    /// file).
    pub fn generate() -> Result<(Self, Vec<u8>), KeyError> {
        let pair = Ed25519KeyPair::generate().map_err(|_| KeyError::Crypto("Ed25519 key generation"))?;
        let der = pair.to_pkcs8().map_err(|_| KeyError::Crypto("PKCS#8 encoding"))?.as_ref().to_vec();
        Ok((Self { pair }, der))
    }

    /// The key in PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Option<Self> {
        Ed25519KeyPair::from_pkcs8(der).ok().map(|pair| Self { pair })
    }

    /// Read the key file. A file others can read still loads (the agent
    /// must keep working at the bedside) but is logged loudly.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io { path: path.into(), source };
        let der = std::fs::read(path).map_err(io)?;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the workstation key file can be read by other users; run chmod 600 on it"
            );
        }
        Self::from_pkcs8(&der).ok_or_else(|| KeyError::Invalid(path.into()))
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The public key as enrolment sends it: base64url, no padding.
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public_key())
    }

    /// A compact JWS of `claims` with `header`.
    pub fn sign_compact(&self, header: &JwsHeader<'_>, claims: &impl Serialize) -> Result<String, KeyError> {
        let header = serde_json::to_vec(header).map_err(|_| KeyError::Crypto("JSON encoding"))?;
        let claims = serde_json::to_vec(claims).map_err(|_| KeyError::Crypto("JSON encoding"))?;
        let mut jws = URL_SAFE_NO_PAD.encode(header);
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature = self.pair.try_sign(jws.as_bytes()).map_err(|_| KeyError::Crypto("Ed25519 signing"))?;
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
    /// `wardkey-tap+jwt` or `JWT`.
    pub typ: &'static str,
}

/// RFC 7523 client assertion claims for `private_key_jwt` at `/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: String,
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

    /// The workstation id.
    pub fn workstation_id(&self) -> &str {
        &self.workstation_id
    }

    /// The server's issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The body of a signed tap request: `Envelope<A>` with a fresh `jti`,
    /// `iat` = `now` (seconds since the epoch).
    pub fn tap_request<A: Serialize>(&self, action: A, now: i64) -> Result<String, KeyError> {
        let envelope =
            Envelope { iss: self.workstation_id.clone(), aud: self.issuer.clone(), jti: new_jti()?, iat: now, action };
        let header = JwsHeader { alg: "EdDSA", kid: &self.workstation_id, typ: TAP_TYP };
        self.key.sign_compact(&header, &envelope)
    }

    /// A `private_key_jwt` client assertion for `{issuer}/token`.
    pub fn client_assertion(&self, now: i64) -> Result<String, KeyError> {
        let claims = AssertionClaims {
            iss: &self.workstation_id,
            sub: &self.workstation_id,
            aud: format!("{}/token", self.issuer),
            jti: new_jti()?,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        let header = JwsHeader { alg: "EdDSA", kid: &self.workstation_id, typ: "JWT" };
        self.key.sign_compact(&header, &claims)
    }
}

/// 128 random bits, base64url: the server remembers each `jti` once, so
/// it must never repeat.
pub fn new_jti() -> Result<String, KeyError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyError::Crypto("random number generation"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Write a private key to `path` with mode 0600 from the first byte on
/// (never a window where another user could read it). Without `overwrite`,
/// an existing file is an error rather than a silently lost enrolment.
pub fn write_key_file(path: &Path, der: &[u8], overwrite: bool) -> Result<(), KeyError> {
    let io = |source| KeyError::Io { path: path.into(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.into()),
        _ => io(e),
    })?;
    // `mode` only applies when the file is created: tighten an old one too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    file.write_all(der).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
    use serde_json::{Value, json};
    use wardkey_proto::tap::Tap;

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
        assert_eq!(claims["iss"], "ws_42");
        assert_eq!(claims["aud"], "https://idp.example");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["badge"], "04A1B2C3");
        let jti = claims["jti"].as_str().unwrap();
        assert!(URL_SAFE_NO_PAD.decode(jti).unwrap().len() >= 16, "jti has at least 128 bits");
        assert_eq!(claims.as_object().unwrap().len(), 5, "{claims}");
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
    }

    #[test]
    fn a_tampered_jws_does_not_verify() {
        let signer = signer();
        let jws = signer.tap_request(Tap { badge: "a".into() }, 1).unwrap();
        let parts: Vec<&str> = jws.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(br#"{"iss":"ws_42","badge":"b"}"#);
        let signed = format!("{}.{}", parts[0], forged_claims);
        let result = UnparsedPublicKey::new(&ED25519, signer.key.public_key())
            .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap());
        assert!(result.is_err());
    }

    #[test]
    fn key_files_are_0600_and_never_silently_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        let (key, der) = WorkstationKey::generate().unwrap();
        write_key_file(&path, &der, false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let loaded = WorkstationKey::load(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        assert_eq!(loaded.public_key().len(), 32);
        assert_eq!(URL_SAFE_NO_PAD.decode(loaded.public_key_b64()).unwrap(), key.public_key());

        let (_, other) = WorkstationKey::generate().unwrap();
        assert!(matches!(write_key_file(&path, &other, false), Err(KeyError::Exists(_))));
        assert_eq!(WorkstationKey::load(&path).unwrap().public_key(), key.public_key());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_key_file(&path, &other, true).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_ne!(WorkstationKey::load(&path).unwrap().public_key(), key.public_key());
    }

    #[test]
    fn garbage_key_files_are_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        write_key_file(&path, b"not a key", false).unwrap();
        assert!(matches!(WorkstationKey::load(&path), Err(KeyError::Invalid(_))));
        assert!(matches!(WorkstationKey::load(&dir.path().join("missing")), Err(KeyError::Io { .. })));
    }

    #[test]
    fn debug_shows_no_private_key() {
        let (key, der) = WorkstationKey::generate().unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains(&key.public_key_b64()));
        assert!(!shown.contains(&URL_SAFE_NO_PAD.encode(&der)));
    }
}
