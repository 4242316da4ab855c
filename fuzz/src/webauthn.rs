//! A software WebAuthn authenticator: the registration (`none`
//! attestation) and assertion responses a browser sends, built as in
//! `tests/it/attestation.rs` and `tests/it/browser.rs`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ciborium::Value as Cbor;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The registered credential's P-256 key, PKCS#8.
pub const CREDENTIAL_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg0wI2qzRJ/bfMdmrNyctYY2Y2bxqmC9JLKnUvZ3g3TBChRANCAASHUtiXMg7vjPgLVfPuB1CNjMVO3UwA0zH946cB3dKui9f1oqpPzEaYM9WT7eIVQt58gwGOeuW3lBiG+r/AlffB";
/// A second key, for registrations the fuzzer replays.
pub const NEW_CREDENTIAL_PKCS8: &str = crate::jose::CLIENT_EC_PKCS8;

/// Flags (WebAuthn L2 §6.1): user present.
pub const UP: u8 = 0x01;
/// User verified.
pub const UV: u8 = 0x04;
/// Backup eligible.
pub const BE: u8 = 0x08;
/// Attested credential data included.
pub const AT: u8 = 0x40;

/// A P-256 key for WebAuthn signatures (ASN.1 DER signatures).
pub fn key(pkcs8_b64: &str) -> EcdsaKeyPair {
    let der = STANDARD.decode(pkcs8_b64).expect("base64");
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der).expect("fixed key")
}

fn b64url(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// The COSE_Key of `key` (EC2, ES256, P-256).
pub fn cose_key(key: &EcdsaKeyPair) -> Cbor {
    let point = key.public_key().as_ref();
    Cbor::Map(vec![
        (1.into(), 2.into()),
        (3.into(), (-7).into()),
        ((-1).into(), 1.into()),
        ((-2).into(), Cbor::Bytes(point[1..33].to_vec())),
        ((-3).into(), Cbor::Bytes(point[33..65].to_vec())),
    ])
}

/// A `RegisterPublicKeyCredential` answering `challenge` (base64url) at
/// `origin` for `rp_id`, with `none` attestation.
pub fn registration(
    challenge: &str,
    origin: &str,
    rp_id: &str,
    credential_id: &[u8],
    key: &EcdsaKeyPair,
    flags: u8,
) -> Value {
    let client_data =
        json!({"type": "webauthn.create", "challenge": challenge, "origin": origin, "crossOrigin": false}).to_string();
    let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
    auth_data.push(flags | AT);
    auth_data.extend_from_slice(&0u32.to_be_bytes());
    auth_data.extend_from_slice(&[0u8; 16]); // AAGUID
    auth_data.extend_from_slice(&(credential_id.len() as u16).to_be_bytes());
    auth_data.extend_from_slice(credential_id);
    ciborium::into_writer(&cose_key(key), &mut auth_data).expect("cbor");
    let object = Cbor::Map(vec![
        ("fmt".into(), "none".into()),
        ("attStmt".into(), Cbor::Map(vec![])),
        ("authData".into(), Cbor::Bytes(auth_data)),
    ]);
    let mut attestation_object = Vec::new();
    ciborium::into_writer(&object, &mut attestation_object).expect("cbor");
    json!({
        "id": b64url(credential_id),
        "rawId": b64url(credential_id),
        "type": "public-key",
        "response": {
            "attestationObject": b64url(&attestation_object),
            "clientDataJSON": b64url(client_data.as_bytes()),
            "transports": ["usb", "nfc"],
        },
        "extensions": {},
    })
}

/// A `PublicKeyCredential` (assertion) answering `challenge` at `origin`.
#[allow(clippy::too_many_arguments)]
pub fn assertion(
    challenge: &str,
    origin: &str,
    rp_id: &str,
    credential_id: &[u8],
    user_handle: &[u8],
    key: &EcdsaKeyPair,
    flags: u8,
    counter: u32,
) -> Value {
    let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
    auth_data.push(flags);
    auth_data.extend_from_slice(&counter.to_be_bytes());
    let client_data =
        json!({"type": "webauthn.get", "challenge": challenge, "origin": origin, "crossOrigin": false}).to_string();
    let mut signed = auth_data.clone();
    signed.extend_from_slice(&Sha256::digest(client_data.as_bytes()));
    let signature = key.sign(&SystemRandom::new(), &signed).expect("sign");
    json!({
        "id": b64url(credential_id),
        "rawId": b64url(credential_id),
        "type": "public-key",
        "extensions": {},
        "response": {
            "authenticatorData": b64url(&auth_data),
            "clientDataJSON": b64url(client_data.as_bytes()),
            "signature": b64url(signature.as_ref()),
            "userHandle": b64url(user_handle),
        },
    })
}
