//! The software FIDO2 card against a hostile platform:
//! `fido2::soft_card::SoftCard`'s `Transport::transmit` (command APDU
//! parsing, short and extended lengths, GET RESPONSE, CTAP2 CBOR requests,
//! clientPIN with both PIN protocols, getAssertion) fed command APDUs from
//! the input. Each response must end in a status word and respect the
//! card's part size. See `wardkey_fuzz::ctap` for the input format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wardkey_agent::fido2::ctap2::Transport;
use wardkey_fuzz::ctap::CardConfig;

fuzz_target!(init: wardkey_fuzz::seeds::maybe_write("ctap2_soft_card"), |data: &[u8]| {
    let Some((&config, rest)) = data.split_first() else { return };
    let config = CardConfig(config);
    let mut card = config.card();
    for apdu in wardkey_fuzz::records(rest).into_iter().take(64) {
        let response = card.transmit(apdu).expect("the soft card always answers");
        assert!(response.len() >= 2, "a response without a status word: {response:02X?}");
        assert!(response.len() <= config.parts() + 2, "a response longer than the card's part size");
        if wardkey_fuzz::server::debug() {
            eprintln!("{:02X?} -> {} bytes, SW {:02X?}", &apdu[..apdu.len().min(6)], response.len(), &response[response.len() - 2..]);
        }
    }
});
