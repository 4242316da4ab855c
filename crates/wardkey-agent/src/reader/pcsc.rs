//! PC/SC contactless readers: each card placed on any attached reader is
//! read once (GET DATA `FF CA 00 00 00`, the card UID) and sent as a line
//! of upper-case hex, the same text a keyboard-wedge reader would type.
//!
//! A card that answers the FIDO applet (a FIDO2 badge, or a security key
//! held to the reader) is a key tap instead: its connection is put in the
//! [`CardSlot`] for the agent's CTAP2 client, and the line `fido2` is sent.
//! The card stays there while it is on the reader (for its PIN).
//!
//! Readers plugged in later are picked up, and a restarted pcscd is
//! reconnected to; failures are logged and never end the agent.

use std::ffi::CStr;
use std::time::Duration;

use pcsc::{
    Card, Context, Disposition, Error, MAX_BUFFER_SIZE, MAX_BUFFER_SIZE_EXTENDED, PNP_NOTIFICATION, Protocols,
    ReaderState, Scope, ShareMode, State,
};
use tokio::sync::mpsc;

use super::{ReaderError, spawn_thread};
use crate::fido2::KEY_TAP_LINE;
use crate::fido2::ctap2::{CardSlot, FIDO_AID, Transport};

/// PC/SC part 3 GET DATA: the UID of a contactless card.
const GET_UID: [u8; 5] = [0xFF, 0xCA, 0x00, 0x00, 0x00];

/// How often the thread looks up from waiting (to notice the agent stopped).
const POLL: Duration = Duration::from_secs(1);

/// Start reading cards; a PC/SC service that cannot be reached at all is
/// an error at start-up.
pub(super) fn spawn(tx: mpsc::Sender<String>, cards: CardSlot) -> Result<(), ReaderError> {
    let ctx = Context::establish(Scope::User)
        .map_err(|e| ReaderError::Pcsc(format!("cannot reach the PC/SC service (is pcscd running?): {e}")))?;
    spawn_thread("pcsc", move || run(ctx, &tx, &cards))
}

/// A FIDO2 card's connection, for CTAP2.
struct PcscCard(Card);

impl Transport for PcscCard {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; MAX_BUFFER_SIZE_EXTENDED];
        self.0.transmit(apdu, &mut buf).map(<[u8]>::to_vec).map_err(|e| e.to_string())
    }
}

/// What a card placed on a reader turned out to be.
enum Placed {
    /// A badge, by its UID.
    Badge(String),
    /// A FIDO2 key, now in the slot.
    Key,
}

fn run(mut ctx: Context, tx: &mpsc::Sender<String>, cards: &CardSlot) {
    // The reader holding the FIDO2 card in the slot.
    let mut key_reader: Option<std::ffi::CString> = None;
    let mut states = vec![ReaderState::new(PNP_NOTIFICATION(), State::UNAWARE)];
    loop {
        if tx.is_closed() {
            return;
        }
        states.retain(|rs| !rs.event_state().intersects(State::UNKNOWN | State::IGNORE));
        match ctx.list_readers_owned() {
            Ok(names) => {
                for name in names {
                    if !states.iter().any(|rs| rs.name() == name.as_c_str()) {
                        tracing::info!(reader = ?name, "PC/SC reader found");
                        states.push(ReaderState::new(name, State::UNAWARE));
                    }
                }
            }
            Err(Error::NoReadersAvailable) => {}
            Err(e) => tracing::debug!(error = %e, "listing PC/SC readers failed"),
        }
        for rs in &mut states {
            rs.sync_current_state();
        }
        match ctx.get_status_change(POLL, &mut states) {
            Ok(()) => {}
            Err(Error::Timeout) => continue,
            Err(e @ (Error::NoService | Error::ServiceStopped | Error::InvalidHandle)) => {
                tracing::warn!(error = %e, "lost the PC/SC service; reconnecting");
                ctx = reconnect(tx);
                states = vec![ReaderState::new(PNP_NOTIFICATION(), State::UNAWARE)];
                cards.clear();
                key_reader = None;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "waiting for PC/SC events failed");
                std::thread::sleep(POLL);
                continue;
            }
        }
        for rs in &states {
            if rs.name() == PNP_NOTIFICATION() {
                continue;
            }
            let present = rs.event_state().contains(State::PRESENT);
            let was_present = rs.current_state().contains(State::PRESENT);
            if !present && key_reader.as_deref() == Some(rs.name()) {
                // The key left the reader: its connection is dead.
                cards.clear();
                key_reader = None;
            }
            if !present || was_present {
                continue;
            }
            let line = match read_card(&ctx, rs.name(), cards) {
                Ok(Placed::Badge(uid)) => uid,
                Ok(Placed::Key) => {
                    key_reader = Some(rs.name().to_owned());
                    KEY_TAP_LINE.to_string()
                }
                Err(why) => {
                    tracing::warn!(reader = ?rs.name(), "could not read the card: {why}");
                    continue;
                }
            };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    }
}

/// Keep trying to reach pcscd again, once a second.
fn reconnect(tx: &mpsc::Sender<String>) -> Context {
    loop {
        std::thread::sleep(POLL);
        if let Ok(ctx) = Context::establish(Scope::User) {
            tracing::info!("reconnected to the PC/SC service");
            return ctx;
        }
        if tx.is_closed() {
            // The agent is gone; park until the process exits.
            loop {
                std::thread::park();
            }
        }
    }
}

fn read_card(ctx: &Context, reader: &CStr, cards: &CardSlot) -> Result<Placed, String> {
    let card = ctx.connect(reader, ShareMode::Shared, Protocols::ANY).map_err(|e| format!("connect: {e}"))?;
    let mut buf = [0u8; MAX_BUFFER_SIZE];
    let select = [&[0x00, 0xA4, 0x04, 0x00, 0x08][..], &FIDO_AID, &[0x00]].concat();
    if let Ok([.., 0x90, 0x00] | [.., 0x61, _]) = card.transmit(&select, &mut buf) {
        let _ = card.disconnect(Disposition::LeaveCard);
        cards.put(Box::new(PcscCard(connect_key(reader)?)));
        return Ok(Placed::Key);
    }
    let answer = card.transmit(&GET_UID, &mut buf).map_err(|e| format!("GET DATA: {e}"))?;
    uid_from_answer(answer).map(Placed::Badge)
}

/// A connection for the agent's CTAP2 client, on a PC/SC context of its
/// own (pcsc-lite contexts are not to be shared between threads, and this
/// thread's waits on its own would stall every APDU). Exclusive where it
/// can be, so no other application selects another applet on the key
/// between the PIN and the assertion.
fn connect_key(reader: &CStr) -> Result<Card, String> {
    let ctx = Context::establish(Scope::User).map_err(|e| format!("PC/SC context: {e}"))?;
    ctx.connect(reader, ShareMode::Exclusive, Protocols::ANY)
        .or_else(|_| ctx.connect(reader, ShareMode::Shared, Protocols::ANY))
        .map_err(|e| format!("connect: {e}"))
}

/// The UID in an answer to GET DATA (`UID… 90 00`), as upper-case hex.
fn uid_from_answer(answer: &[u8]) -> Result<String, String> {
    match answer {
        [uid @ .., 0x90, 0x00] if !uid.is_empty() && uid.len() <= 32 => {
            Ok(uid.iter().map(|b| format!("{b:02X}")).collect())
        }
        [.., sw1, sw2] => Err(format!("the card answered status {sw1:02X}{sw2:02X}")),
        _ => Err("the card's answer is too short".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_upper_case_hex_and_bad_answers_errors() {
        assert_eq!(uid_from_answer(&[0x04, 0xa1, 0xb2, 0xc3, 0x90, 0x00]).unwrap(), "04A1B2C3");
        assert!(uid_from_answer(&[0x6a, 0x81]).unwrap_err().contains("6A81"));
        assert!(uid_from_answer(&[0x90, 0x00]).is_err());
        assert!(uid_from_answer(&[0x90]).is_err());
        assert!(uid_from_answer(&[]).is_err());
    }
}
