//! CTAP2 over ISO 7816-4 APDUs: how the agent has a FIDO2 security key or
//! FIDO2 card on an NFC (PC/SC) reader sign in a clinician (CTAP 2.1 §11.3).
//!
//! One key tap is: SELECT the FIDO applet, `authenticatorGetInfo` to learn
//! how the key verifies its holder, then `authenticatorGetAssertion` with
//! either the key's built-in user verification (a fingerprint card) or a
//! PIN token got with the key's PIN over a PIN/UV auth protocol. The reader
//! thread puts each FIDO2 card it sees in a [`CardSlot`]; [`Ctap2Key`]
//! answers the server's challenges with whatever card is there.
//!
//! Every byte from the card is untrusted: wrong lengths, bad CBOR and odd
//! status words are errors in words, never a panic.

use std::sync::{Arc, Mutex};

use ciborium::Value;
use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use super::pin_protocol::{PinProtocol, field, pin_hash};
use super::{Assertion, Authenticator, Fido2Error};

/// The FIDO applet (CTAP 2.1 §11.3.3).
pub const FIDO_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x06, 0x47, 0x2F, 0x00, 0x01];

/// `authenticatorGetAssertion`.
pub const CMD_GET_ASSERTION: u8 = 0x02;
/// `authenticatorGetInfo`.
pub const CMD_GET_INFO: u8 = 0x04;
/// `authenticatorClientPIN`.
pub const CMD_CLIENT_PIN: u8 = 0x06;

/// clientPIN subcommands (CTAP 2.1 §6.5.5).
pub mod sub {
    /// getPINRetries.
    pub const GET_RETRIES: i64 = 1;
    /// getKeyAgreement.
    pub const GET_KEY_AGREEMENT: i64 = 2;
    /// getPinToken (CTAP 2.0).
    pub const GET_PIN_TOKEN: i64 = 5;
    /// getPinUvAuthTokenUsingPinWithPermissions (CTAP 2.1).
    pub const GET_TOKEN_WITH_PERMISSIONS: i64 = 9;
}

/// CTAP status codes the agent explains (CTAP 2.1 §8.2).
pub mod status {
    /// The relying party has no credential on this key.
    pub const NO_CREDENTIALS: u8 = 0x2E;
    /// Wrong PIN.
    pub const PIN_INVALID: u8 = 0x31;
    /// No PIN tries left.
    pub const PIN_BLOCKED: u8 = 0x32;
    /// The PIN token or its MAC is wrong.
    pub const PIN_AUTH_INVALID: u8 = 0x33;
    /// Three wrong PINs in a row: the key needs a power cycle.
    pub const PIN_AUTH_BLOCKED: u8 = 0x34;
    /// The key has no PIN.
    pub const PIN_NOT_SET: u8 = 0x35;
    /// The key wants its PIN for this.
    pub const PIN_REQUIRED: u8 = 0x36;
    /// Built-in verification is blocked after too many failures.
    pub const UV_BLOCKED: u8 = 0x3C;
    /// The user did not verify (e.g. the fingerprint did not match).
    pub const UV_INVALID: u8 = 0x3F;
}

/// Where card answers end: 64 KiB is far more than any CTAP2 answer, and
/// stops a card that keeps saying "more data" from holding the agent.
const MAX_RESPONSE: usize = 64 * 1024;
/// The most parts one answer may come in (256 full short APDUs).
const MAX_PARTS: usize = 256;

/// A connection to a card: one command APDU in, one response APDU (data
/// then SW1 SW2) out.
pub trait Transport: Send {
    /// Exchange one APDU.
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, String>;
}

/// The FIDO2 card now on the reader, put there by the reader thread and
/// used by [`Ctap2Key`] (the card stays for a PIN typed after the tap).
#[derive(Clone, Default)]
pub struct CardSlot(Arc<Mutex<Option<Box<dyn Transport>>>>);

impl std::fmt::Debug for CardSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardSlot")
    }
}

impl CardSlot {
    /// `card` is now on the reader.
    pub fn put(&self, card: Box<dyn Transport>) {
        *self.card() = Some(card);
    }

    /// The card has left the reader.
    pub fn clear(&self) {
        *self.card() = None;
    }

    /// The slot, held while one CTAP2 conversation runs (a panic in one
    /// leaves no broken state worth refusing the next tap for).
    fn card(&self) -> std::sync::MutexGuard<'_, Option<Box<dyn Transport>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A FIDO2 key on a reader, driven over CTAP2.
#[derive(Debug, Clone)]
pub struct Ctap2Key {
    slot: CardSlot,
}

impl Ctap2Key {
    /// Answer with whatever card is in `slot`.
    pub fn new(slot: CardSlot) -> Self {
        Self { slot }
    }
}

impl Authenticator for Ctap2Key {
    fn get_assertion(
        &self,
        rp_id: &str,
        client_data_hash: &[u8],
        pin: Option<&SecretString>,
    ) -> Result<Assertion, Fido2Error> {
        let mut slot = self.slot.card();
        let card = slot.as_mut().ok_or(Fido2Error::NoKey)?;
        get_assertion(card.as_mut(), rp_id, client_data_hash, pin)
    }
}

/// What `authenticatorGetInfo` says about user verification.
struct Info {
    /// A fingerprint (or similar) on the key itself.
    built_in_uv: bool,
    /// `Some(true)`: a PIN is set; `Some(false)`: it could be but is not.
    client_pin: Option<bool>,
    /// CTAP 2.1 PIN tokens with permissions.
    token_permissions: bool,
    /// The best PIN protocol both sides speak.
    protocol: PinProtocol,
}

/// One assertion from `card`, verifying the user with the key's built-in
/// verification or, failing that, `pin`.
pub fn get_assertion(
    card: &mut dyn Transport,
    rp_id: &str,
    client_data_hash: &[u8],
    pin: Option<&SecretString>,
) -> Result<Assertion, Fido2Error> {
    select(card)?;
    let info = get_info(card)?;
    let mut params = vec![(1.into(), Value::Text(rp_id.into())), (2.into(), Value::Bytes(client_data_hash.to_vec()))];
    match (pin, info.built_in_uv, info.client_pin) {
        // A PIN the clinician typed wins: the fingerprint failed before.
        (Some(pin), _, Some(true)) => {
            let token = pin_token(card, &info, rp_id, pin)?;
            let auth = info.protocol.authenticate(&token, client_data_hash);
            params.push((6.into(), Value::Bytes(auth)));
            params.push((7.into(), info.protocol.number().into()));
        }
        (_, true, _) => params.push((5.into(), Value::Map(vec![("uv".into(), true.into())]))),
        (None, false, Some(true)) => return Err(Fido2Error::PinRequired),
        _ => return Err(Fido2Error::NoPinSet),
    }
    let answer = command(card, CMD_GET_ASSERTION, Some(Value::Map(params))).map_err(|e| match e {
        CardError::Status(status::NO_CREDENTIALS) => Fido2Error::NotRegistered,
        CardError::Status(status::PIN_REQUIRED) => Fido2Error::PinRequired,
        // A fingerprint not recognised, or blocked after too many tries:
        // the key's PIN still works, where it has one.
        CardError::Status(status::UV_INVALID | status::UV_BLOCKED) if info.client_pin == Some(true) => {
            Fido2Error::NotRecognised
        }
        CardError::Status(status::UV_INVALID | status::UV_BLOCKED) => {
            Fido2Error::Card("the key did not recognise you; try again".into())
        }
        e => e.into(),
    })?;
    let bytes = |label: i64, what: &str| {
        field(&answer, label)
            .and_then(Value::as_bytes)
            .cloned()
            .ok_or_else(|| Fido2Error::Card(format!("its answer has no {what}")))
    };
    let credential_id = field(&answer, 1)
        .and_then(|c| text_field(c, "id"))
        .and_then(Value::as_bytes)
        .cloned()
        .ok_or_else(|| Fido2Error::Card("its answer names no credential".into()))?;
    let user_handle = field(&answer, 4).and_then(|u| text_field(u, "id")).and_then(Value::as_bytes).cloned();
    // With several sign-ins for this server on one key, the key answers
    // with its newest (CTAP 2.1 §6.2.2); there is no picker at a tap.
    if field(&answer, 5).and_then(Value::as_integer).is_some_and(|n| i128::from(n) > 1) {
        tracing::warn!("the key holds several Wardkey sign-ins; it used its newest");
    }
    Ok(Assertion {
        credential_id,
        authenticator_data: bytes(2, "authenticator data")?,
        signature: bytes(3, "signature")?,
        user_handle,
    })
}

fn select(card: &mut dyn Transport) -> Result<(), Fido2Error> {
    let apdu = build_apdu(0x00, 0xA4, 0x04, 0x00, &FIDO_AID)?;
    exchange(card, &apdu).map_err(|e| match e {
        CardError::Sw(_) => Fido2Error::Card("this card is not a FIDO2 key".into()),
        e => e.into(),
    })?;
    // The answer is "FIDO_2_0" from a CTAP2-only key, but "U2F_V2" from
    // the many that also speak U2F (CTAP 2.1 §11.3.3): only getInfo tells.
    Ok(())
}

fn get_info(card: &mut dyn Transport) -> Result<Info, Fido2Error> {
    let info = command(card, CMD_GET_INFO, None).map_err(|e| match e {
        // A U2F-only key (CTAP1) has no CTAP2 commands and cannot verify
        // its holder.
        CardError::Sw(_) => Fido2Error::Card("this is an older U2F-only key; it cannot sign in to Wardkey".into()),
        e => e.into(),
    })?;
    let option = |name: &str| field(&info, 4).and_then(|o| text_field(o, name)).and_then(Value::as_bool);
    let protocols: Vec<PinProtocol> = field(&info, 6)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|p| PinProtocol::from_number(p.as_integer()?.into())).collect())
        // CTAP 2.0 keys may leave the list out: they speak protocol one.
        .unwrap_or_else(|| vec![PinProtocol::One]);
    let protocol = if protocols.contains(&PinProtocol::Two) { PinProtocol::Two } else { PinProtocol::One };
    Ok(Info {
        built_in_uv: option("uv") == Some(true),
        client_pin: option("clientPin"),
        token_permissions: option("pinUvAuthToken") == Some(true),
        protocol,
    })
}

/// A PIN token for an assertion at `rp_id` (CTAP 2.1 §6.5.5.7).
/// The PIN's hash, the shared secret and the token are wiped when done.
fn pin_token(
    card: &mut dyn Transport,
    info: &Info,
    rp_id: &str,
    pin: &SecretString,
) -> Result<Zeroizing<Vec<u8>>, Fido2Error> {
    // CTAP 2.1 §6.5.1: the PIN in Unicode Normalization Form C (as the
    // platform that set it sent it), at least 4 code points, at most 63
    // bytes.
    let pin = Zeroizing::new(pin.expose_secret().nfc().collect::<String>());
    if pin.chars().count() < 4 || pin.len() > 63 {
        return Err(Fido2Error::WrongPin { retries: None });
    }
    let protocol = info.protocol;
    let number = Value::from(protocol.number());
    let request = Value::Map(vec![(1.into(), number.clone()), (2.into(), sub::GET_KEY_AGREEMENT.into())]);
    let answer = command(card, CMD_CLIENT_PIN, Some(request))?;
    let card_key = field(&answer, 1).ok_or_else(|| Fido2Error::Card("no key agreement key".into()))?;
    let (platform_key, secret) = protocol.encapsulate(card_key).map_err(|e| Fido2Error::Card(e.to_string()))?;
    let secret = Zeroizing::new(secret);
    let hash = Zeroizing::new(pin_hash(&pin));
    let pin_hash_enc = protocol.encrypt(&secret, hash.as_ref()).map_err(|e| Fido2Error::Card(e.to_string()))?;
    let mut request = vec![(1.into(), number.clone())];
    if info.token_permissions {
        // Permission `ga` (getAssertion), for this relying party only.
        request.push((2.into(), sub::GET_TOKEN_WITH_PERMISSIONS.into()));
        request.push((3.into(), platform_key));
        request.push((6.into(), Value::Bytes(pin_hash_enc)));
        request.push((9.into(), 0x02.into()));
        request.push((10.into(), Value::Text(rp_id.into())));
    } else {
        request.push((2.into(), sub::GET_PIN_TOKEN.into()));
        request.push((3.into(), platform_key));
        request.push((6.into(), Value::Bytes(pin_hash_enc)));
    }
    let answer = command(card, CMD_CLIENT_PIN, Some(Value::Map(request))).map_err(|e| match e {
        CardError::Status(status::PIN_INVALID) => {
            let retries = Value::Map(vec![(1.into(), number), (2.into(), sub::GET_RETRIES.into())]);
            let retries = command(card, CMD_CLIENT_PIN, Some(retries))
                .ok()
                .and_then(|a| field(&a, 3)?.as_integer())
                .and_then(|n| u32::try_from(n).ok());
            Fido2Error::WrongPin { retries }
        }
        CardError::Status(status::PIN_BLOCKED) => Fido2Error::PinBlocked,
        CardError::Status(status::PIN_AUTH_BLOCKED) => Fido2Error::PinPaused,
        CardError::Status(status::PIN_NOT_SET) => Fido2Error::NoPinSet,
        e => e.into(),
    })?;
    let token = field(&answer, 2).and_then(Value::as_bytes).ok_or_else(|| Fido2Error::Card("no PIN token".into()))?;
    protocol.decrypt(&secret, token).map(Zeroizing::new).map_err(|e| Fido2Error::Card(e.to_string()))
}

/// What went wrong talking to the card, before it is put in words.
#[derive(Debug)]
enum CardError {
    /// The reader or card connection failed.
    Io(String),
    /// An ISO 7816 status word other than success.
    Sw([u8; 2]),
    /// A CTAP2 status other than success.
    Status(u8),
    /// An answer that is not what CTAP2 says.
    Malformed(&'static str),
    /// A request longer than an extended APDU carries.
    TooLong,
}

impl From<CardError> for Fido2Error {
    fn from(e: CardError) -> Self {
        Fido2Error::Card(match e {
            CardError::Io(why) => format!("the reader lost it ({why})"),
            CardError::Sw([a, b]) => format!("it answered status {a:02X}{b:02X}"),
            CardError::Status(s) => format!("it answered CTAP error 0x{s:02X}"),
            CardError::Malformed(what) => format!("its answer was garbled ({what})"),
            CardError::TooLong => "the request is too long for it".into(),
        })
    }
}

/// One CTAP2 command in an NFCCTAP_MSG APDU; the CBOR answer (an empty
/// map when the key sends none).
fn command(card: &mut dyn Transport, cmd: u8, params: Option<Value>) -> Result<Value, CardError> {
    let mut data = vec![cmd];
    if let Some(params) = params {
        ciborium::into_writer(&params, &mut data).map_err(|_| CardError::Malformed("cannot encode"))?;
    }
    let answer = exchange(card, &build_apdu(0x80, 0x10, 0x00, 0x00, &data)?)?;
    match answer.split_first() {
        Some((0, [])) => Ok(Value::Map(vec![])),
        Some((0, cbor)) => {
            let value: Value = ciborium::from_reader(cbor).map_err(|_| CardError::Malformed("not CBOR"))?;
            if value.is_map() { Ok(value) } else { Err(CardError::Malformed("not a CBOR map")) }
        }
        Some((&status, _)) => Err(CardError::Status(status)),
        None => Err(CardError::Malformed("no CTAP status")),
    }
}

/// A command APDU: short form when the data fits, extended otherwise;
/// always asking for the longest answer.
fn build_apdu(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8]) -> Result<Vec<u8>, CardError> {
    let mut apdu = vec![cla, ins, p1, p2];
    match u8::try_from(data.len()) {
        Ok(len) => {
            apdu.push(len);
            apdu.extend_from_slice(data);
            apdu.push(0x00);
        }
        Err(_) => {
            let len = u16::try_from(data.len()).map_err(|_| CardError::TooLong)?;
            apdu.push(0x00);
            apdu.extend_from_slice(&len.to_be_bytes());
            apdu.extend_from_slice(data);
            apdu.extend_from_slice(&[0x00, 0x00]);
        }
    }
    Ok(apdu)
}

/// Send `apdu`; collect an answer the card sends in parts (`61xx`, GET
/// RESPONSE) and check the final status word.
fn exchange(card: &mut dyn Transport, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
    let mut out = Vec::new();
    let mut response = card.transmit(apdu).map_err(CardError::Io)?;
    for _ in 0..MAX_PARTS {
        let Some(split) = response.len().checked_sub(2) else {
            return Err(CardError::Malformed("no status word"));
        };
        let sw = [response[split], response[split + 1]];
        out.extend_from_slice(&response[..split]);
        if out.len() > MAX_RESPONSE {
            return Err(CardError::Malformed("too long"));
        }
        match sw {
            [0x90, 0x00] => return Ok(out),
            [0x61, more] => response = card.transmit(&[0x00, 0xC0, 0x00, 0x00, more]).map_err(CardError::Io)?,
            // Wrong Le: the same short command again, asking for `exact`.
            [0x6C, exact] if out.is_empty() && apdu.len() > 4 && apdu[4] != 0 => {
                let mut again = apdu.to_vec();
                if let Some(le) = again.last_mut() {
                    *le = exact;
                }
                response = card.transmit(&again).map_err(CardError::Io)?;
            }
            sw => return Err(CardError::Sw(sw)),
        }
    }
    Err(CardError::Malformed("too many parts"))
}

/// The value under text key `name` in a CBOR map.
fn text_field<'a>(map: &'a Value, name: &str) -> Option<&'a Value> {
    map.as_map()?.iter().find(|(k, _)| k.as_text() == Some(name)).map(|(_, v)| v)
}

#[cfg(test)]
pub(crate) mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::UnparsedPublicKey;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::fido2::soft_card::SoftCard;
    use crate::fido2::{KeyFile, SoftwareKey};

    pub(crate) const RP: &str = "wardkey.trust.example";
    pub(crate) const PIN: &str = "4821";

    /// A software key for `RP` in `dir`, and its public key.
    pub(crate) fn key(dir: &tempfile::TempDir) -> (SoftwareKey, Vec<u8>) {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let file = KeyFile {
            credential_id: URL_SAFE_NO_PAD.encode(b"credential-1"),
            user_handle: URL_SAFE_NO_PAD.encode(b"user-1"),
            private_key: URL_SAFE_NO_PAD.encode(pkcs8.as_ref()),
            counter: 0,
        };
        let path = dir.path().join("key.json");
        std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        (SoftwareKey::load(&path).unwrap(), pair.public_key().as_ref().to_vec())
    }

    pub(crate) fn pin(p: &str) -> SecretString {
        SecretString::from(p.to_string())
    }

    /// Check the signature and return the authenticator-data flags.
    pub(crate) fn verify(assertion: &Assertion, public: &[u8], cdh: &[u8]) -> u8 {
        let signed = [&assertion.authenticator_data[..], cdh].concat();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public).verify(&signed, &assertion.signature).unwrap();
        assert_eq!(assertion.credential_id, b"credential-1");
        assert_eq!(assertion.user_handle.as_deref(), Some(&b"user-1"[..]));
        assertion.authenticator_data[32]
    }

    #[test]
    fn a_pin_card_signs_with_user_verified_in_both_pin_protocols_and_the_pin_never_travels_in_clear() {
        for protocols in [&[PinProtocol::Two, PinProtocol::One][..], &[PinProtocol::One]] {
            let dir = tempfile::tempdir().unwrap();
            let (software, public) = key(&dir);
            let mut card =
                SoftCard::new(software, Some(PIN)).unwrap().with_protocols(protocols).with_response_parts(64);
            let cdh = [7u8; 32];
            let assertion = get_assertion(&mut card, RP, &cdh, Some(&pin(PIN))).unwrap();
            assert_eq!(verify(&assertion, &public, &cdh) & 0x05, 0x05, "user present and verified");
            let sent = card.log.concat();
            assert!(!sent.windows(4).any(|w| w == PIN.as_bytes()), "the PIN went over the air");
            assert!(!sent.windows(16).any(|w| w == pin_hash(PIN)), "the PIN hash went over the air");
            assert!(card.log.iter().any(|a| a[..2] == [0x00, 0xC0]), "answers came in parts");
        }
    }

    #[test]
    fn without_the_pin_the_key_asks_for_it_and_no_try_is_spent() {
        let dir = tempfile::tempdir().unwrap();
        let mut card = SoftCard::new(key(&dir).0, Some(PIN)).unwrap();
        let err = get_assertion(&mut card, RP, &[0; 32], None).unwrap_err();
        assert!(matches!(err, Fido2Error::PinRequired), "{err}");
        assert!(err.wants_pin());
        assert_eq!(card.retries(), 8);
    }

    #[test]
    fn wrong_pins_count_down_pause_and_finally_lock_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut card = SoftCard::new(key(&dir).0, Some(PIN)).unwrap();
        let mut results = Vec::new();
        for _ in 0..8 {
            let err = get_assertion(&mut card, RP, &[0; 32], Some(&pin("0000"))).unwrap_err();
            if matches!(err, Fido2Error::PinPaused) {
                card.power_cycle();
            }
            results.push(err);
        }
        assert!(matches!(results[0], Fido2Error::WrongPin { retries: Some(7) }), "{}", results[0]);
        assert!(results[0].to_string().contains("7 tries left"), "{}", results[0]);
        assert!(matches!(results[2], Fido2Error::PinPaused), "{}", results[2]);
        assert!(matches!(results[7], Fido2Error::PinBlocked), "{}", results[7]);
        let err = get_assertion(&mut card, RP, &[0; 32], Some(&pin(PIN))).unwrap_err();
        assert!(matches!(err, Fido2Error::PinBlocked), "even the right PIN: {err}");
        // A PIN typed decomposed (e + combining acute) is the same PIN.
        let dir = tempfile::tempdir().unwrap();
        let mut card = SoftCard::new(key(&dir).0, Some("caf\u{e9}1")).unwrap();
        assert!(get_assertion(&mut card, RP, &[0; 32], Some(&pin("cafe\u{301}1"))).is_ok());
        // Too short or too long never reaches the key.
        let dir = tempfile::tempdir().unwrap();
        let mut card = SoftCard::new(key(&dir).0, Some(PIN)).unwrap();
        for bad in ["123", &"9".repeat(64)] {
            let err = get_assertion(&mut card, RP, &[0; 32], Some(&pin(bad))).unwrap_err();
            assert!(matches!(err, Fido2Error::WrongPin { retries: None }), "{err}");
        }
        assert_eq!(card.retries(), 8);
    }

    #[test]
    fn a_fingerprint_card_verifies_on_the_card_and_a_key_without_pin_or_fingerprint_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (software, public) = key(&dir);
        let mut card = SoftCard::new(software, None).unwrap().with_fingerprint(true);
        let assertion = get_assertion(&mut card, RP, &[1; 32], None).unwrap();
        assert_eq!(verify(&assertion, &public, &[1; 32]) & 0x05, 0x05);
        assert!(!card.log.iter().any(|a| a.starts_with(&[0x80, 0x10]) && a[5] == CMD_CLIENT_PIN), "no PIN asked");

        // A finger the key does not recognise: its PIN does instead.
        let dir = tempfile::tempdir().unwrap();
        let (software, public) = key(&dir);
        let mut card = SoftCard::new(software, Some(PIN)).unwrap().with_fingerprint(false);
        let err = get_assertion(&mut card, RP, &[1; 32], None).unwrap_err();
        assert!(matches!(err, Fido2Error::NotRecognised) && err.wants_pin(), "{err}");
        let assertion = get_assertion(&mut card, RP, &[1; 32], Some(&pin(PIN))).unwrap();
        assert_eq!(verify(&assertion, &public, &[1; 32]) & 0x05, 0x05);

        let dir = tempfile::tempdir().unwrap();
        let mut card = SoftCard::new(key(&dir).0, None).unwrap();
        let err = get_assertion(&mut card, RP, &[1; 32], Some(&pin(PIN))).unwrap_err();
        assert!(matches!(err, Fido2Error::NoPinSet), "{err}");
    }

    #[test]
    fn a_key_enrolled_elsewhere_says_so_and_long_requests_use_extended_apdus() {
        let dir = tempfile::tempdir().unwrap();
        let mut card = SoftCard::new(key(&dir).0, None).unwrap().with_fingerprint(true).for_rp(RP);
        let err = get_assertion(&mut card, "other.example", &[1; 32], None).unwrap_err();
        assert!(matches!(err, Fido2Error::NotRegistered), "{err}");
        let long = format!("{}.example", "a".repeat(300));
        let err = get_assertion(&mut card, &long, &[1; 32], None).unwrap_err();
        assert!(matches!(err, Fido2Error::NotRegistered), "the card read the whole request: {err}");
        assert!(card.log.iter().any(|a| a[4] == 0 && a.len() > 300), "an extended-length APDU was sent");
    }

    /// A card's answers, in order.
    type Script = Vec<Result<Vec<u8>, String>>;

    /// A card that answers from a script, whatever is asked.
    struct Scripted(Script);

    impl Transport for Scripted {
        fn transmit(&mut self, _apdu: &[u8]) -> Result<Vec<u8>, String> {
            if self.0.is_empty() { Ok(vec![0x61, 0xFF]) } else { self.0.remove(0) }
        }
    }

    #[test]
    fn hostile_or_broken_cards_are_errors_in_words_never_panics() {
        let ok = |data: &[u8]| Ok([data, &[0x90, 0x00]].concat());
        let info = {
            let mut v = vec![0];
            let map = Value::Map(vec![(4.into(), Value::Map(vec![("uv".into(), true.into())]))]);
            ciborium::into_writer(&map, &mut v).unwrap();
            v
        };
        let cases: Vec<(Script, &str)> = vec![
            (vec![Err("card removed".into())], "lost it"),
            (vec![Ok(vec![])], "garbled"),
            (vec![Ok(vec![0x90])], "garbled"),
            (vec![Ok(vec![0x6A, 0x82])], "not a FIDO2 key"),
            (vec![ok(b"U2F_V2"), Ok(vec![0x6D, 0x00])], "U2F-only"),
            (vec![ok(b"FIDO_2_0"), ok(&[])], "garbled"),
            (vec![ok(b"FIDO_2_0"), ok(&[0, 0xFF, 0x00])], "garbled"),
            (vec![ok(b"FIDO_2_0"), ok(&[0, 0x01])], "garbled"),
            (vec![ok(b"FIDO_2_0"), ok(&[0x7F])], "CTAP error 0x7F"),
            (vec![ok(b"FIDO_2_0"), ok(&info), ok(&[0, 0xA0])], "names no credential"),
            (vec![ok(b"FIDO_2_0"), ok(&info), ok(&[0x3F])], "did not recognise you"),
            // A card that never stops saying "more".
            (vec![ok(b"FIDO_2_0")], "garbled"),
            // Wrong Le, then the answer to the command sent again.
            (vec![Ok(vec![0x6C, 0x08]), ok(b"FIDO_2_0"), ok(&[0x7F])], "CTAP error 0x7F"),
        ];
        for (script, expected) in cases {
            let err = get_assertion(&mut Scripted(script), RP, &[0; 32], None).unwrap_err();
            assert!(err.to_string().contains(expected), "{err} should mention {expected:?}");
        }
        let huge = "a".repeat(70_000);
        let script = vec![ok(b"FIDO_2_0"), ok(&info)];
        let err = get_assertion(&mut Scripted(script), &huge, &[0; 32], None).unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
        let empty = CardSlot::default();
        let err = Ctap2Key::new(empty.clone()).get_assertion(RP, &[0; 32], None).unwrap_err();
        assert!(matches!(err, Fido2Error::NoKey), "{err}");
    }
}
