//! A FIDO2 security key or FIDO2 badge as the tap: instead of a badge UID,
//! the key answers a WebAuthn challenge from the server (`/tap/key/start`,
//! `/tap/key`), proving possession of a hardware-held key and, with its PIN
//! or fingerprint, the person. Phishing-resistant, and at the highest `acr`,
//! so no PIN grace is involved.
//!
//! The agent plays the WebAuthn client (WebAuthn L2 §5.1.4.1): it builds the
//! client data with the server's issuer as origin and asks the authenticator
//! for an assertion over its hash (CTAP2 `authenticatorGetAssertion`). An
//! [`Authenticator`] is that last step: [`ctap2::Ctap2Key`] drives a key on
//! a PC/SC reader over CTAP2; [`SoftwareKey`] holds its key in a file, and
//! [`soft_card::SoftCard`] puts one behind the APDUs a real card speaks,
//! for demonstrations and tests.

pub mod ctap2;
pub mod pin_protocol;
pub mod soft_card;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
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
    /// A key tap with no key on the reader (it was lifted too soon).
    #[error("No security key is on the reader. Hold the key on the reader and tap again.")]
    NoKey,
    /// The key checks its holder by PIN, and none was typed yet.
    #[error("Type your security key's PIN and press Enter, keeping the key on the reader.")]
    PinRequired,
    /// The key's fingerprint reader did not recognise the clinician (or is
    /// blocked); its PIN will do instead.
    #[error("The key did not recognise you. Type its PIN and press Enter, keeping the key on the reader.")]
    NotRecognised,
    /// The PIN typed is not the key's.
    #[error("That is not your security key's PIN{}. Type it again.", retries.map(|n| format!(" ({n} tries left before the key locks)")).unwrap_or_default())]
    WrongPin {
        /// Tries left, if the key said.
        retries: Option<u32>,
    },
    /// Too many wrong PINs in a row for now (CTAP2 `PIN_AUTH_BLOCKED`).
    #[error("Too many wrong PINs in a row. Take the key off the reader, then tap it again.")]
    PinPaused,
    /// No PIN tries left (CTAP2 `PIN_BLOCKED`).
    #[error("This security key is locked after too many wrong PINs. Ask IT to reset it.")]
    PinBlocked,
    /// The key can verify nobody: no PIN set and no fingerprint reader.
    #[error("This security key has no PIN set, so it cannot confirm it is you. Ask IT to set one up.")]
    NoPinSet,
    /// The key holds no credential for this server.
    #[error("This security key is not enrolled for Wardkey. Add it on your account's security keys page first.")]
    NotRegistered,
    /// The key or reader failed mid-conversation.
    #[error("The security key did not answer properly: {0}. Hold it still on the reader and tap again.")]
    Card(String),
}

impl Fido2Error {
    /// Whether the next typed line should be the key's PIN.
    pub fn wants_pin(&self) -> bool {
        matches!(self, Self::PinRequired | Self::NotRecognised | Self::WrongPin { .. })
    }
}

/// An authenticator's answer (CTAP2 `authenticatorGetAssertion`).
#[derive(Debug)]
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
    /// verified the user: by the key itself, or with `pin` (the key's PIN,
    /// typed by the clinician) when the key asks for it
    /// ([`Fido2Error::PinRequired`]).
    fn get_assertion(
        &self,
        rp_id: &str,
        client_data_hash: &[u8],
        pin: Option<&SecretString>,
    ) -> Result<Assertion, Fido2Error>;
}

/// The assertion for a `/tap/key/start` challenge (`options`), as the
/// JSON `/tap/key` takes, made with `origin` (the server's issuer).
pub fn answer(
    authenticator: &dyn Authenticator,
    options: &Value,
    origin: &str,
    pin: Option<&SecretString>,
) -> Result<Value, Fido2Error> {
    let public_key = &options["publicKey"];
    let challenge = public_key["challenge"].as_str().ok_or_else(|| Fido2Error::Challenge("no challenge".into()))?;
    let rp_id = public_key["rpId"].as_str().ok_or_else(|| Fido2Error::Challenge("no rpId".into()))?;
    let client_data =
        json!({"type": "webauthn.get", "challenge": challenge, "origin": origin, "crossOrigin": false}).to_string();
    let assertion = authenticator.get_assertion(rp_id, digest(&SHA256, client_data.as_bytes()).as_ref(), pin)?;
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

/// The file's contents. `Debug` hides the private key.
#[derive(Clone, Serialize, Deserialize)]
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

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("credential_id", &self.credential_id)
            .field("user_handle", &self.user_handle)
            .field("private_key", &wardkey_proto::Redacted)
            .field("counter", &self.counter)
            .finish()
    }
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

impl SoftwareKey {
    /// Sign for `rp_id` with authenticator-data `flags` (WebAuthn L2 §6.1),
    /// counting up and saving the counter first.
    pub fn sign(&self, rp_id: &str, client_data_hash: &[u8], flags: u8) -> Result<Assertion, Fido2Error> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let decode = |v: &str| URL_SAFE_NO_PAD.decode(v).map_err(|e| Fido2Error::Sign(e.to_string()));
        file.counter = file.counter.saturating_add(1);
        let mut authenticator_data = digest(&SHA256, rp_id.as_bytes()).as_ref().to_vec();
        authenticator_data.push(flags);
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

/// Authenticator-data flags: user present.
pub const FLAG_UP: u8 = 0x01;
/// Authenticator-data flags: user verified.
pub const FLAG_UV: u8 = 0x04;

impl Authenticator for SoftwareKey {
    /// The file stands in for a key that verified its holder itself.
    fn get_assertion(
        &self,
        rp_id: &str,
        client_data_hash: &[u8],
        _pin: Option<&SecretString>,
    ) -> Result<Assertion, Fido2Error> {
        self.sign(rp_id, client_data_hash, FLAG_UP | FLAG_UV)
    }
}
