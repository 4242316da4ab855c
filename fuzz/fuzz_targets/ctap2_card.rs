//! The agent's CTAP2 client against a hostile card:
//! `fido2::ctap2::get_assertion` (APDU framing, `61xx`/`6Cxx` handling,
//! status words, CBOR answers of getInfo, clientPIN and getAssertion, the
//! PIN protocols' key agreement and token decryption) with a card that
//! answers from the input. Every command APDU the agent builds is checked
//! to be well formed. See `wardkey_fuzz::ctap` for the input format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use wardkey_agent::fido2::ctap2::get_assertion;
use wardkey_fuzz::ctap::{CDH, RP_ID, ScriptedCard, pin};

fuzz_target!(init: wardkey_fuzz::seeds::maybe_write("ctap2_card"), |data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let pin = pin(selector).map(|p| SecretString::from(p.to_string()));
    let mut card = ScriptedCard::new(wardkey_fuzz::records(rest));
    let result = get_assertion(&mut card, RP_ID, &CDH, pin.as_ref());
    // The error's words are what a clinician sees: they must format.
    let words = result.as_ref().map(|a| a.authenticator_data.len()).map_err(ToString::to_string);
    if wardkey_fuzz::server::debug() {
        eprintln!("get_assertion: {words:?}");
    }
});
