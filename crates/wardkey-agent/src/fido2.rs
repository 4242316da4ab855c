//! A FIDO2 security key or FIDO2 badge as the tap: instead of a badge UID,
//! the key answers a WebAuthn challenge from the server (`/tap/key/start`,
//! `/tap/key`), proving possession of a hardware-held key and, with its PIN
//! or fingerprint, the person. Phishing-resistant, and at the highest `acr`,
//! so no PIN grace is involved.
//!
//! The agent plays the WebAuthn client (WebAuthn L2 §5.1.4.1): it builds the
//! client data with the server's issuer as origin and asks the authenticator
//! for an assertion over its hash (CTAP2 `authenticatorGetAssertion`). An
//! [`Authenticator`] is that last step. [`SoftwareKey`] holds its key in a
//! file, for demonstrations and tests; driving keys on a PC/SC reader over
//! CTAP2 is not built yet.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The reader line that means "a FIDO2 key is on the reader" (badge UIDs
/// are hex, so it cannot be one).
pub const KEY_TAP_LINE: &str = "fido2";

/// Why a key could not answer.
#[derive(Debug, thiserror::Error)]
pub enum Fido2Error {
    /// The key file is missing or unusable.
    #[error("the FIDO2 key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The server's challenge is not one the agent can answer.
    #[error("the server's key challenge is not usable: {0}")]
    Challenge(String),
    /// The key refused or failed to sign.
    #[error("the key could not sign: {0}")]
    Sign(String),
}

/// An authenticator's answer (CTAP2 `authenticatorGetAssertion`).
pub struct Assertion {
    /// The credential it used.
    pub credential_id: Vec<u8>,
    /// `rpIdHash`, flags, signature counter.
    pub authenticator_data: Vec<u8>,
    /// Over `authenticator_data` then the client data hash.
    pub signature: Vec<u8>,
    /// The user handle of a discoverable credential.
    pub user_handle: Option<Vec<u8>>,
}

/// Something that signs WebAuthn assertions: a key on a reader, or a
/// software stand-in.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Sign for relying party `rp_id` over `client_data_hash`, having
    /// verified the user.
    fn get_assertion(&self, rp_id: &str, client_data_hash: &[u8]) -> Result<Assertion, Fido2Error>;
}

/// The assertion for a `/tap/key/start` challenge (`options`), as the
/// JSON `/tap/key` takes, made with `origin` (the server's issuer).
pub fn answer(authenticator: &dyn Authenticator, options: &Value, origin: &str) -> Result<Value, Fido2Error> {
    let public_key = &options["publicKey"];
    let challenge = public_key["challenge"].as_str().ok_or_else(|| Fido2Error::Challenge("no challenge".into()))?;
    let rp_id = public_key["rpId"].as_str().ok_or_else(|| Fido2Error::Challenge("no rpId".into()))?;
    let client_data =
        json!({"type": "webauthn.get", "challenge": challenge, "origin": origin, "crossOrigin": false}).to_string();
    let assertion = authenticator.get_assertion(rp_id, digest(&SHA256, client_data.as_bytes()).as_ref())?;
    let id = URL_SAFE_NO_PAD.encode(&assertion.credential_id);
    Ok(json!({
        "id": id,
        "rawId": id,
        "type": "public-key",
        "extensions": {},
        "response": {
            "authenticatorData": URL_SAFE_NO_PAD.encode(&assertion.authenticator_data),
            "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data.as_bytes()),
            "signature": URL_SAFE_NO_PAD.encode(&assertion.signature),
            "userHandle": assertion.user_handle.map(|h| URL_SAFE_NO_PAD.encode(h)),
        },
    }))
}

/// A software FIDO2 credential kept in a JSON file (`credential_id`,
/// `user_handle`, `private_key`: base64url, the key P-256 PKCS#8; `counter`).
/// The counter is written back after every signature, so it only grows.
/// Not for production: the key is only as safe as the file.
pub struct SoftwareKey {
    path: PathBuf,
    file: Mutex<KeyFile>,
    key: EcdsaKeyPair,
}

/// The file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// The credential id, base64url.
    pub credential_id: String,
    /// The user handle, base64url.
    pub user_handle: String,
    /// The P-256 private key, PKCS#8 DER, base64url.
    pub private_key: String,
    /// The signature counter last used.
    pub counter: u32,
}

impl std::fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareKey").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SoftwareKey {
    /// Load the key file at `path`.
    pub fn load(path: &Path) -> Result<Self, Fido2Error> {
        let bad = |reason: String| Fido2Error::KeyFile { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let der = URL_SAFE_NO_PAD.decode(&file.private_key).map_err(|e| bad(format!("private_key: {e}")))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
            .map_err(|_| bad("private_key is not a P-256 PKCS#8 key".into()))?;
        Ok(Self { path: path.to_path_buf(), file: Mutex::new(file), key })
    }
}

impl Authenticator for SoftwareKey {
    fn get_assertion(&self, rp_id: &str, client_data_hash: &[u8]) -> Result<Assertion, Fido2Error> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let decode = |v: &str| URL_SAFE_NO_PAD.decode(v).map_err(|e| Fido2Error::Sign(e.to_string()));
        file.counter = file.counter.saturating_add(1);
        let mut authenticator_data = digest(&SHA256, rp_id.as_bytes()).as_ref().to_vec();
        // User present and user verified (WebAuthn L2 §6.1 flags UP, UV).
        authenticator_data.push(0x05);
        authenticator_data.extend_from_slice(&file.counter.to_be_bytes());
        let mut signed = authenticator_data.clone();
        signed.extend_from_slice(client_data_hash);
        let signature =
            self.key.sign(&SystemRandom::new(), &signed).map_err(|_| Fido2Error::Sign("signing failed".into()))?;
        let text = serde_json::to_string_pretty(&*file).unwrap_or_default();
        std::fs::write(&self.path, text).map_err(|e| Fido2Error::Sign(format!("saving the counter: {e}")))?;
        Ok(Assertion {
            credential_id: decode(&file.credential_id)?,
            authenticator_data,
            signature: signature.as_ref().to_vec(),
            user_handle: Some(decode(&file.user_handle)?),
        })
    }
}
