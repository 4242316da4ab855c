//! Client assertions (`private_key_jwt`, RFC 7523): the server's
//! `ClientAuthenticator::authenticate_client` (whose `check_assertion` is private)
//! for a client with a registered JWKS (ES256 and EdDSA keys), and
//! `grants::token_exchange::authenticate_workstation` for workstation
//! assertions, with the assertion as `client_assertion`.
//!
//! Input: a mode byte, then
//! - `S`: `header JSON` `\n` `claims JSON`, signed by the harness with the
//!   client's P-256 key when the header's `alg` is ES256, else its Ed25519
//!   key;
//! - `W`: the same, signed with the enrolled workstation's key;
//! - anything else (seeds use `J`): the assertion as sent.
#![no_main]

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wardkey_fuzz::jose::{Signer, sign_raw, signer_for};
use wardkey_fuzz::server::{JWT_CLIENT, WORKSTATION_ID, server};
use wardkey_idp::grants::token_exchange::authenticate_workstation;
use wardkey_idp::params::Params;
use wardkey_idp::kv::keys;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fuzz_target!(init: wardkey_fuzz::seeds::maybe_write("client_assertion"), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let split = |rest: &[u8]| match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (rest[..i].to_vec(), rest[i + 1..].to_vec()),
        None => (rest.to_vec(), Vec::new()),
    };
    let jwt = match mode {
        b'S' => {
            let (h, c) = split(rest);
            sign_raw(signer_for(&h, false), &h, &c)
        }
        b'W' => {
            let (h, c) = split(rest);
            sign_raw(Signer::Workstation, &h, &c)
        }
        _ => String::from_utf8_lossy(rest).into_owned(),
    };
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_assertion_type", ASSERTION_TYPE)
        .append_pair("client_assertion", &jwt)
        .finish();
    let Ok(params) = Params::parse(form.as_bytes()) else { return };
    let server = server();
    let state = &server.state;
    server.rt.block_on(async {
        let client = state.clients.authenticate_client(&HeaderMap::new(), &params).await;
        let workstation = authenticate_workstation(state, &params).await;
        if wardkey_fuzz::server::debug() {
            eprintln!("authenticate_client: {:?}", client.as_ref().map(|c| &c.client_id).map_err(ToString::to_string));
            eprintln!("authenticate_workstation: {:?}", workstation.as_ref().map(|w| &w.0.id).map_err(ToString::to_string));
        }
        if let Ok(client) = client {
            assert_eq!(client.client_id, JWT_CLIENT, "an assertion authenticated another client");
            // Forget its jti, so that the same input does the same next time.
            if let Some(jti) = claim(&jwt, "jti") {
                state.cache.delete(&keys::assertion_jti(JWT_CLIENT, &jti)).await.expect("cache");
            }
        }
        if let Ok((ws, _nonce)) = workstation {
            assert_eq!(ws.id, WORKSTATION_ID, "an assertion authenticated another workstation");
        }
    });
});

fn claim(jwt: &str, name: &str) -> Option<String> {
    let payload = URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1)?).ok()?;
    let claims: Value = serde_json::from_slice(&payload).ok()?;
    claims.get(name)?.as_str().map(str::to_string)
}
