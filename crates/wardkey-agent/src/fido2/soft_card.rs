//! A FIDO2 card in software: a [`SoftwareKey`] behind the APDUs and CTAP2
//! commands a real card answers on an NFC reader, with an optional PIN
//! (PIN/UV auth protocols one and two, retry counters) or a stand-in for a
//! fingerprint. It lets the agent's CTAP2 path be tested end to end without
//! hardware, and answers in parts (`61xx`) as cards with short buffers do.
//! Not for production: the key is only as safe as its file.

use aws_lc_rs::agreement::{ECDH_P256, PrivateKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use ciborium::Value;

use super::ctap2::{CMD_CLIENT_PIN, CMD_GET_ASSERTION, CMD_GET_INFO, FIDO_AID, Transport, status, sub};
use super::pin_protocol::{PinProtocol, cose_from_point, field, pin_hash};
use super::{FLAG_UP, FLAG_UV, Fido2Error, SoftwareKey};

/// Tries a PIN gets before the card locks (CTAP 2.1 §6.5.2.1).
const PIN_TRIES: u32 = 8;
/// Wrong PINs in a row before the card wants a power cycle.
const TRIES_PER_POWER_UP: u32 = 3;
/// Longest answer sent in one response APDU (short APDUs: 256 bytes).
const CHUNK: usize = 256;

/// A software CTAP2 card; see the module docs.
pub struct SoftCard {
    key: SoftwareKey,
    rp_id: Option<String>,
    pin: Option<[u8; 16]>,
    /// A fingerprint reader: whether it recognises the holder.
    fingerprint: Option<bool>,
    protocols: Vec<PinProtocol>,
    retries: u32,
    wrong_in_a_row: u32,
    agreement: PrivateKey,
    token: Option<(PinProtocol, Vec<u8>)>,
    pending: Vec<u8>,
    chunk: usize,
    /// The APDUs received, for tests that check what the platform sent.
    pub log: Vec<Vec<u8>>,
}

impl std::fmt::Debug for SoftCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftCard").field("key", &self.key).finish_non_exhaustive()
    }
}

impl SoftCard {
    /// A card holding `key`, protected by `pin` if given (PIN protocols
    /// one and two), with no fingerprint reader.
    pub fn new(key: SoftwareKey, pin: Option<&str>) -> Result<Self, Fido2Error> {
        Ok(Self {
            key,
            rp_id: None,
            pin: pin.map(pin_hash),
            fingerprint: None,
            protocols: vec![PinProtocol::Two, PinProtocol::One],
            retries: PIN_TRIES,
            wrong_in_a_row: 0,
            agreement: new_agreement_key()?,
            token: None,
            pending: Vec::new(),
            chunk: CHUNK,
            log: Vec::new(),
        })
    }

    /// Speak only these PIN protocols (a CTAP 2.0 card speaks only one).
    pub fn with_protocols(mut self, protocols: &[PinProtocol]) -> Self {
        self.protocols = protocols.to_vec();
        self
    }

    /// Hold the credential for relying party `rp_id` only (by default it
    /// answers any).
    pub fn for_rp(mut self, rp_id: &str) -> Self {
        self.rp_id = Some(rp_id.to_string());
        self
    }

    /// Verify the holder on the card, as a fingerprint card does; with
    /// `recognised` false, the finger on it is never the holder's.
    pub fn with_fingerprint(mut self, recognised: bool) -> Self {
        self.fingerprint = Some(recognised);
        self
    }

    /// Answer in parts of at most `bytes` (as cards with small buffers do).
    pub fn with_response_parts(mut self, bytes: usize) -> Self {
        self.chunk = bytes.clamp(1, CHUNK);
        self
    }

    /// PIN tries left.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The card left the field and came back: PIN tokens are gone and the
    /// wrong-PINs-in-a-row count starts again.
    pub fn power_cycle(&mut self) {
        self.token = None;
        self.wrong_in_a_row = 0;
        self.pending.clear();
    }

    /// One CTAP2 command; the status and CBOR answer.
    fn ctap(&mut self, request: &[u8]) -> (u8, Option<Value>) {
        let Some((&cmd, cbor)) = request.split_first() else {
            return (0x01, None);
        };
        let params: Value = if cbor.is_empty() {
            Value::Map(vec![])
        } else {
            match ciborium::from_reader(cbor) {
                Ok(v @ Value::Map(_)) => v,
                _ => return (0x12, None), // CTAP2_ERR_INVALID_CBOR
            }
        };
        let answer = match cmd {
            CMD_GET_INFO => Ok(self.info()),
            CMD_CLIENT_PIN => self.client_pin(&params),
            CMD_GET_ASSERTION => self.assertion(&params),
            _ => Err(0x01), // CTAP1_ERR_INVALID_COMMAND
        };
        match answer {
            Ok(v) => (0, Some(v)),
            Err(status) => (status, None),
        }
    }

    fn info(&self) -> Value {
        let mut options = vec![("rk".into(), true.into()), ("up".into(), true.into())];
        if self.fingerprint.is_some() {
            options.push(("uv".into(), true.into()));
        }
        options.push(("clientPin".into(), self.pin.is_some().into()));
        if self.protocols.contains(&PinProtocol::Two) {
            options.push(("pinUvAuthToken".into(), true.into()));
        }
        let protocols = self.protocols.iter().map(|p| p.number().into()).collect();
        Value::Map(vec![
            (1.into(), Value::Array(vec!["FIDO_2_0".into(), "FIDO_2_1".into()])),
            (3.into(), Value::Bytes(vec![0; 16])),
            (4.into(), Value::Map(options)),
            (6.into(), Value::Array(protocols)),
        ])
    }

    /// The PIN protocol numbered by `params[label]`, if this card speaks it.
    fn protocol(&self, params: &Value, label: i64) -> Result<PinProtocol, u8> {
        let number = field(params, label).and_then(Value::as_integer).ok_or(0x14u8)?; // MISSING_PARAMETER
        PinProtocol::from_number(number.into()).filter(|p| self.protocols.contains(p)).ok_or(0x02) // INVALID_PARAMETER
    }

    fn client_pin(&mut self, params: &Value) -> Result<Value, u8> {
        let protocol = self.protocol(params, 1)?;
        let subcommand = field(params, 2).and_then(Value::as_integer).map(i128::from).ok_or(0x14u8)?;
        match i64::try_from(subcommand).unwrap_or(0) {
            sub::GET_RETRIES => Ok(Value::Map(vec![(3.into(), self.retries.into())])),
            sub::GET_KEY_AGREEMENT => {
                let public = self.agreement.compute_public_key().map_err(|_| 0x7Fu8)?;
                Ok(Value::Map(vec![(1.into(), cose_from_point(public.as_ref()).map_err(|_| 0x7Fu8)?)]))
            }
            sub::GET_PIN_TOKEN | sub::GET_TOKEN_WITH_PERMISSIONS => self.pin_token(protocol, params),
            _ => Err(0x3E), // INVALID_SUBCOMMAND
        }
    }

    /// CTAP 2.1 §6.5.5.7: check the PIN hash, count failures, hand out a
    /// fresh token.
    fn pin_token(&mut self, protocol: PinProtocol, params: &Value) -> Result<Value, u8> {
        let Some(pin) = self.pin else { return Err(status::PIN_NOT_SET) };
        if self.retries == 0 {
            return Err(status::PIN_BLOCKED);
        }
        if self.wrong_in_a_row >= TRIES_PER_POWER_UP {
            return Err(status::PIN_AUTH_BLOCKED);
        }
        let platform = field(params, 3).ok_or(0x14u8)?;
        let pin_hash_enc = field(params, 6).and_then(Value::as_bytes).ok_or(0x14u8)?;
        let secret = protocol.decapsulate(&self.agreement, platform).map_err(|_| 0x02u8)?;
        self.retries -= 1;
        let sent = protocol.decrypt(&secret, pin_hash_enc).map_err(|_| 0x02u8)?;
        if verify_slices_are_equal(&sent, &pin).is_err() {
            // A new key agreement key after every wrong PIN (§6.5.5.7).
            self.agreement = new_agreement_key().map_err(|_| 0x7Fu8)?;
            self.wrong_in_a_row += 1;
            return Err(match self.retries {
                0 => status::PIN_BLOCKED,
                _ if self.wrong_in_a_row >= TRIES_PER_POWER_UP => status::PIN_AUTH_BLOCKED,
                _ => status::PIN_INVALID,
            });
        }
        self.retries = PIN_TRIES;
        self.wrong_in_a_row = 0;
        let mut token = vec![0u8; 32];
        SystemRandom::new().fill(&mut token).map_err(|_| 0x7Fu8)?;
        let sealed = protocol.encrypt(&secret, &token).map_err(|_| 0x7Fu8)?;
        self.token = Some((protocol, token));
        Ok(Value::Map(vec![(2.into(), Value::Bytes(sealed))]))
    }

    fn assertion(&mut self, params: &Value) -> Result<Value, u8> {
        let rp_id = field(params, 1).and_then(Value::as_text).ok_or(0x14u8)?.to_string();
        if self.rp_id.as_ref().is_some_and(|own| *own != rp_id) {
            return Err(status::NO_CREDENTIALS);
        }
        let client_data_hash = field(params, 2).and_then(Value::as_bytes).ok_or(0x14u8)?.clone();
        let wants_uv = field(params, 5)
            .and_then(Value::as_map)
            .and_then(|o| o.iter().find(|(k, _)| k.as_text() == Some("uv")))
            .and_then(|(_, v)| v.as_bool())
            == Some(true);
        let verified = match field(params, 6).and_then(Value::as_bytes) {
            Some(auth) => {
                let protocol = self.protocol(params, 7)?;
                let Some((token_protocol, token)) = &self.token else { return Err(status::PIN_AUTH_INVALID) };
                let expected = protocol.authenticate(token, &client_data_hash);
                if *token_protocol != protocol || verify_slices_are_equal(auth, &expected).is_err() {
                    return Err(status::PIN_AUTH_INVALID);
                }
                true
            }
            None if wants_uv && self.fingerprint == Some(true) => true,
            None if wants_uv && self.fingerprint == Some(false) => return Err(status::UV_INVALID),
            None if wants_uv => return Err(0x2C), // UNSUPPORTED_OPTION
            None if self.pin.is_some() => return Err(status::PIN_REQUIRED),
            None => false,
        };
        // A token is good for one assertion here (CTAP 2.1 lets it live
        // longer; a card lifted off the reader loses it anyway).
        self.token = None;
        let flags = if verified { FLAG_UP | FLAG_UV } else { FLAG_UP };
        let assertion = self.key.sign(&rp_id, &client_data_hash, flags).map_err(|_| 0x7Fu8)?;
        let mut answer = vec![
            (
                1.into(),
                Value::Map(vec![
                    ("id".into(), Value::Bytes(assertion.credential_id)),
                    ("type".into(), "public-key".into()),
                ]),
            ),
            (2.into(), Value::Bytes(assertion.authenticator_data)),
            (3.into(), Value::Bytes(assertion.signature)),
        ];
        if let Some(handle) = assertion.user_handle {
            answer.push((4.into(), Value::Map(vec![("id".into(), Value::Bytes(handle))])));
        }
        Ok(Value::Map(answer))
    }

    /// Queue `body` and send its first part with the right status word.
    fn respond(&mut self, body: Vec<u8>) -> Vec<u8> {
        self.pending = body;
        self.next_part()
    }

    fn next_part(&mut self) -> Vec<u8> {
        let take = self.pending.len().min(self.chunk);
        let mut out: Vec<u8> = self.pending.drain(..take).collect();
        match self.pending.len() {
            0 => out.extend_from_slice(&[0x90, 0x00]),
            left => out.extend_from_slice(&[0x61, u8::try_from(left).unwrap_or(0)]),
        }
        out
    }
}

impl Transport for SoftCard {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, String> {
        self.log.push(apdu.to_vec());
        let Some((header, body)) = apdu.split_first_chunk::<4>() else {
            return Ok(vec![0x67, 0x00]); // wrong length
        };
        let data = match body {
            [] | [_] => &[][..],
            [0, hi, lo, rest @ ..] if body.len() > 3 => {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                rest.get(..len).unwrap_or_default()
            }
            [len, rest @ ..] => rest.get(..usize::from(*len)).unwrap_or_default(),
        };
        Ok(match header {
            // As keys that also speak U2F answer (CTAP 2.1 §11.3.3).
            [0x00, 0xA4, 0x04, 0x00] if data == FIDO_AID => self.respond(b"U2F_V2".to_vec()),
            [0x00, 0xA4, ..] => vec![0x6A, 0x82], // file not found
            [0x00, 0xC0, ..] if !self.pending.is_empty() => self.next_part(),
            [0x80, 0x10, ..] => {
                let (status, answer) = self.ctap(data);
                let mut out = vec![status];
                if let Some(answer) = answer {
                    ciborium::into_writer(&answer, &mut out).map_err(|e| e.to_string())?;
                }
                self.respond(out)
            }
            _ => vec![0x6D, 0x00], // instruction not supported
        })
    }
}

fn new_agreement_key() -> Result<PrivateKey, Fido2Error> {
    PrivateKey::generate(&ECDH_P256).map_err(|_| Fido2Error::Sign("cannot make a key agreement key".into()))
}
