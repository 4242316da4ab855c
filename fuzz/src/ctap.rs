//! The CTAP2 targets' framing and card.
//!
//! `ctap2_card` input: one byte choosing the PIN typed (0: none, else one
//! of [`PINS`]), then the card's answers as [`crate::records`]: each is a
//! whole response APDU (data, SW1, SW2). The agent's
//! `fido2::ctap2::get_assertion` talks to a [`ScriptedCard`] that gives
//! them in order, whatever it is sent.
//!
//! `ctap2_soft_card` input: one byte of card configuration ([`CardConfig`]),
//! then command APDUs as records, sent in order to a
//! `fido2::soft_card::SoftCard`.

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use wardkey_agent::fido2::ctap2::Transport;
use wardkey_agent::fido2::pin_protocol::PinProtocol;
use wardkey_agent::fido2::soft_card::SoftCard;
use wardkey_agent::fido2::{KeyFile, SoftwareKey};

/// The relying party the agent asks for.
pub const RP_ID: &str = crate::server::RP_ID;
/// The client data hash it signs.
pub const CDH: [u8; 32] = [7; 32];
/// PINs the first byte chooses from (the card's PIN is the first).
pub const PINS: [&str; 4] = ["4821", "0000", "123", "cafe\u{301}1"];

/// The PIN chosen by `selector`.
pub fn pin(selector: u8) -> Option<&'static str> {
    match selector {
        0 => None,
        n => Some(PINS[usize::from(n - 1) % PINS.len()]),
    }
}

/// A card that answers from a script and checks that every command APDU
/// the agent builds is well formed (ISO 7816-4 short or extended case 3/4,
/// or a 5-byte GET RESPONSE).
pub struct ScriptedCard<'a> {
    answers: std::vec::IntoIter<&'a [u8]>,
}

impl<'a> ScriptedCard<'a> {
    /// A card that gives `answers` in order, then is lifted off the reader.
    pub fn new(answers: Vec<&'a [u8]>) -> Self {
        Self { answers: answers.into_iter() }
    }
}

/// Panic if `apdu` is not a well-formed command APDU.
pub fn check_command_apdu(apdu: &[u8]) {
    assert!(apdu.len() >= 5, "command APDU too short: {apdu:02X?}");
    let lc = apdu[4];
    let ok = if apdu.len() == 5 {
        true // case 2 short: CLA INS P1 P2 Le
    } else if lc != 0 {
        apdu.len() == 5 + usize::from(lc) + 1
    } else {
        apdu.len() >= 7 && {
            let n = usize::from(u16::from_be_bytes([apdu[5], apdu[6]]));
            n > 255 && apdu.len() == 7 + n + 2
        }
    };
    assert!(ok, "malformed command APDU ({} bytes): {:02X?}", apdu.len(), &apdu[..apdu.len().min(16)]);
}

impl Transport for ScriptedCard<'_> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, String> {
        check_command_apdu(apdu);
        self.answers.next().map(<[u8]>::to_vec).ok_or_else(|| "the card was lifted".to_string())
    }
}

/// The first byte of a `ctap2_soft_card` input.
#[derive(Clone, Copy, Debug)]
pub struct CardConfig(pub u8);

impl CardConfig {
    /// Bit 0: a PIN (`PINS[0]`) is set.
    pub fn pin(self) -> bool {
        self.0 & 1 != 0
    }
    /// Bit 1: a fingerprint reader; bit 2: it recognises the holder.
    pub fn fingerprint(self) -> Option<bool> {
        (self.0 & 2 != 0).then_some(self.0 & 4 != 0)
    }
    /// Bit 3: CTAP 2.0 (PIN protocol one only).
    pub fn protocol_one_only(self) -> bool {
        self.0 & 8 != 0
    }
    /// Bit 4: the credential is for [`RP_ID`] only.
    pub fn for_rp(self) -> bool {
        self.0 & 16 != 0
    }
    /// Bits 5-7: answers in parts of 256, 128, ... bytes.
    pub fn parts(self) -> usize {
        256 >> (self.0 >> 5)
    }

    /// The software card this configuration describes.
    pub fn card(self) -> SoftCard {
        let key = SoftwareKey::load(key_file()).expect("key file");
        let mut card = SoftCard::new(key, self.pin().then_some(PINS[0])).expect("card");
        if let Some(recognised) = self.fingerprint() {
            card = card.with_fingerprint(recognised);
        }
        if self.protocol_one_only() {
            card = card.with_protocols(&[PinProtocol::One]);
        }
        if self.for_rp() {
            card = card.for_rp(RP_ID);
        }
        card.with_response_parts(self.parts())
    }
}

/// A software FIDO2 key file in a temporary directory (the process's).
pub fn key_file() -> &'static std::path::Path {
    static PATH: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &PATH
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let der = STANDARD.decode(crate::webauthn::CREDENTIAL_PKCS8).expect("base64");
            let file = KeyFile {
                credential_id: URL_SAFE_NO_PAD.encode(crate::server::CREDENTIAL_ID),
                user_handle: URL_SAFE_NO_PAD.encode(b"fuzz-user-handle"),
                private_key: URL_SAFE_NO_PAD.encode(der),
                counter: 0,
            };
            let path = dir.path().join("fido2-key.json");
            std::fs::write(&path, serde_json::to_string(&file).expect("json")).expect("write");
            (dir, path)
        })
        .1
}

/// A transport that records what passes through it (seed generation).
pub struct Recorder<'a, T: Transport> {
    /// The real card.
    pub card: &'a mut T,
    /// Its answers, in order.
    pub answers: Vec<Vec<u8>>,
    /// The APDUs sent, in order.
    pub commands: Vec<Vec<u8>>,
}

impl<T: Transport> Transport for Recorder<'_, T> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, String> {
        self.commands.push(apdu.to_vec());
        let answer = self.card.transmit(apdu)?;
        self.answers.push(answer.clone());
        Ok(answer)
    }
}
