//! WebAuthn: what the server does with a browser's answer, through the real
//! router: `POST /webauthn/login/finish` (an assertion: clientDataJSON,
//! authenticatorData, signature, user handle, checked by webauthn-rs and
//! then by `webauthn::verify_assertion`) and
//! `POST /account/keys/register/finish` (a registration: clientDataJSON and
//! the CBOR attestation object with its authenticatorData and COSE key).
//!
//! Input: a mode byte, then the JSON request body: `R` registration
//! (ceremonies `fuzz-passkey-ceremony`, `fuzz-security-key-ceremony`, sent
//! with the invite cookie that may add keys), anything else (seeds use `L`)
//! sign-in (ceremony `fuzz-login-ceremony`). The ceremonies' challenge is
//! fixed and they are restored before every input; keys an input added are
//! removed after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardkey_fuzz::server::{check_no_internal_error, raw_json_request, server};

fuzz_target!(init: wardkey_fuzz::seeds::maybe_write("webauthn"), |data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let (path, enrolled) = match mode {
        b'R' => ("/account/keys/register/finish", true),
        _ => ("/webauthn/login/finish", false),
    };
    let server = server();
    server.rt.block_on(async {
        server.reset_webauthn().await;
        let r = server.call(raw_json_request(path, body.to_vec(), enrolled)).await;
        let added = enrolled && r.status().is_success();
        check_no_internal_error(path, r).await;
        if added {
            server.remove_added_credentials().await;
        }
    });
});
