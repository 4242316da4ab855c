//! Compact JWS with the fixture keys: the enrolled workstation's Ed25519
//! key and the `private_key_jwt` client's P-256 and Ed25519 keys.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// Seed of the enrolled workstation's Ed25519 key (fixed, so that
/// committed seeds keep verifying).
pub const WORKSTATION_SEED: [u8; 32] = *b"wardkey-fuzz-workstation-key-001";
/// Seed of the `private_key_jwt` client's Ed25519 key (`kid` `ed1`).
pub const CLIENT_ED_SEED: [u8; 32] = *b"wardkey-fuzz-client-ed25519-k001";
/// The `private_key_jwt` client's P-256 key (`kid` `ec1`), PKCS#8.
pub const CLIENT_EC_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgxEqA9kLWDNZNPfzSVZDwy7LaTWM2XJItr5UYOBRxdlyhRANCAAQ5HflZ7V7EvIKsQ6JLnQ/XSqL3ZgwcWxoanpnsqZ/3X8mLSL2na/iFdYBlXHgodeE+ZjdmIiXuwA7cEJa1Ur07";

/// The workstation's key.
pub fn workstation_key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&WORKSTATION_SEED).expect("fixed seed")
}

/// The client's Ed25519 key.
pub fn client_ed_key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&CLIENT_ED_SEED).expect("fixed seed")
}

/// The client's P-256 key.
pub fn client_ec_key() -> EcdsaKeyPair {
    let der = STANDARD.decode(CLIENT_EC_PKCS8).expect("base64");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).expect("fixed key")
}

/// The client's JWK Set (public keys), as registered.
pub fn client_jwks() -> String {
    let ec = client_ec_key();
    let point = ec.public_key().as_ref();
    let ed = client_ed_key();
    json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig", "alg": "ES256",
         "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed1", "use": "sig", "alg": "EdDSA",
         "x": URL_SAFE_NO_PAD.encode(ed.public_key().as_ref())},
    ]})
    .to_string()
}

/// Which key signs.
#[derive(Clone, Copy, Debug)]
pub enum Signer {
    /// The enrolled workstation (EdDSA).
    Workstation,
    /// The `private_key_jwt` client's Ed25519 key.
    ClientEd,
    /// The `private_key_jwt` client's P-256 key (ES256).
    ClientEc,
}

/// Sign `header_json` and `claims_json` (any bytes: they are only
/// base64url-encoded) into a compact JWS.
pub fn sign_raw(signer: Signer, header_json: &[u8], claims_json: &[u8]) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header_json), URL_SAFE_NO_PAD.encode(claims_json));
    let signature = match signer {
        Signer::Workstation => workstation_key().sign(input.as_bytes()).as_ref().to_vec(),
        Signer::ClientEd => client_ed_key().sign(input.as_bytes()).as_ref().to_vec(),
        Signer::ClientEc => {
            client_ec_key().sign(&SystemRandom::new(), input.as_bytes()).expect("sign").as_ref().to_vec()
        }
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// [`sign_raw`] for JSON values.
pub fn sign(signer: Signer, header: &Value, claims: &Value) -> String {
    sign_raw(signer, header.to_string().as_bytes(), claims.to_string().as_bytes())
}

/// Which key a header's `alg` asks for, when the harness re-signs: ES256
/// gets the client's P-256 key, anything else an Ed25519 key.
pub fn signer_for(header_json: &[u8], workstation: bool) -> Signer {
    let alg = serde_json::from_slice::<Value>(header_json)
        .ok()
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_string));
    match (alg.as_deref(), workstation) {
        (Some("ES256"), _) => Signer::ClientEc,
        (_, true) => Signer::Workstation,
        (_, false) => Signer::ClientEd,
    }
}
