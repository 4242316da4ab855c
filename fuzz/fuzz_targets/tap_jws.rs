//! The workstation-signed tap request: `WorkstationAuthenticator::verify_signed_tap`
//! (and through it `verify_jws`) on the server's real state.
//!
//! Input: a mode byte, then
//! - `S`: `header JSON` `\n` `claims JSON` (any bytes), which the harness
//!   signs with the enrolled workstation's Ed25519 key, so the fuzzer
//!   explores the header and claims checks behind the signature;
//! - anything else (seeds use `J`): the request body as sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardkey_fuzz::jose::{Signer, sign_raw};
use wardkey_fuzz::server::{WORKSTATION_ID, server};
use wardkey_idp::workstation_auth::SignedTap;
use wardkey_proto::tap::Tap;

fuzz_target!(init: wardkey_fuzz::seeds::maybe_write("tap_jws"), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let body = match mode {
        b'S' => {
            let (header, claims) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            sign_raw(Signer::Workstation, header, claims).into_bytes()
        }
        _ => rest.to_vec(),
    };
    let server = server();
    server.rt.block_on(async {
        let verified: Result<SignedTap<Tap>, _> = server.state.workstations.verify_signed_tap(&body).await;
        if wardkey_fuzz::server::debug() {
            eprintln!("verify_signed_tap: {:?}", verified.as_ref().map(|s| &s.action).map_err(ToString::to_string));
        }
        if let Ok(signed) = verified {
            // Only the enabled workstation holds a key that verifies.
            assert_eq!(signed.ws.id, WORKSTATION_ID, "a tap verified for another workstation");
            assert!(signed.ws.enabled);
        }
    });
});
