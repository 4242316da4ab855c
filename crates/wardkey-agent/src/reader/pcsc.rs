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
    let ctx = Context::establish(Scope::User).map_err(|e| match e {
        Error::NoService | Error::ServiceStopped | Error::CommError => ReaderError::Pcsc(format!(
            "the PC/SC service (pcscd) is not running, so the badge reader cannot be used ({e}). \
             Install and start it: `apt install pcscd && systemctl enable --now pcscd.socket`. \
             A keyboard-wedge reader needs no pcscd: set reader = \"stdin\" in agent.toml"
        )),
        e => ReaderError::Pcsc(format!("cannot reach the PC/SC service: {e}")),
    })?;
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

/// The PC/SC path against a real pcscd: a virtual reader (vsmartcard's
/// vpcd driver) on a free port, and cards connected to it over the vpcd
/// protocol, a FIDO2 card (the software CTAP2 card) and a plain badge.
#[cfg(test)]
mod with_pcscd {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::fido2::Authenticator;
    use crate::fido2::ctap2::tests::{PIN, RP, key, pin, verify};
    use crate::fido2::ctap2::{CardSlot, Ctap2Key};
    use crate::fido2::soft_card::SoftCard;

    const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
    /// Where Debian puts the daemon (not on a non-root PATH).
    const PCSCD: &str = "/usr/sbin/pcscd";
    /// pcsc-lite's daemon socket: fixed at build time, so one pcscd per machine.
    const PCSCD_PID: &str = "/run/pcscd/pcscd.pid";

    /// pcscd in the foreground, as root (or through `sudo -n`), stopped on drop.
    struct Pcscd(Child);

    impl Drop for Pcscd {
        fn drop(&mut self) {
            // TERM (not KILL) so that sudo passes it on and pcscd cleans up.
            let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
            let _ = self.0.wait();
        }
    }

    /// Start pcscd with a vpcd reader listening for cards on `port` (and
    /// `port + 1`); `None` (outside CI) where this machine cannot.
    fn start_pcscd(dir: &Path, port: u16) -> Option<Pcscd> {
        let unavailable = |why: String| {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "in CI the PC/SC test must run: {why}");
            eprintln!("skipping the pcscd test: {why}");
            None
        };
        if !Path::new(VPCD_DRIVER).exists() || !Path::new(PCSCD).exists() {
            return unavailable("pcscd and vsmartcard-vpcd are not installed (scripts/test installs them)".into());
        }
        if Path::new(PCSCD_PID).exists() {
            return unavailable(format!("a pcscd is already running ({PCSCD_PID}); this test needs its own"));
        }
        let conf = dir.join("reader.conf.d");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(
            conf.join("vpcd"),
            format!(
                "FRIENDLYNAME \"Wardkey test reader\"\nDEVICENAME /dev/null:0x{port:X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:X}\n"
            ),
        )
        .unwrap();
        let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
        let mut command = if root { Command::new(PCSCD) } else { Command::new("sudo") };
        if !root {
            command.args(["-n", PCSCD]);
        }
        let child =
            command.args(["--foreground", "--config"]).arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        match child {
            Ok(child) => Some(Pcscd(child)),
            Err(e) => unavailable(format!("cannot start pcscd (root or passwordless sudo needed): {e}")),
        }
    }

    /// Two consecutive free TCP ports (vpcd listens on both).
    fn free_port_pair() -> u16 {
        loop {
            let first = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            if first < u16::MAX && TcpListener::bind(("127.0.0.1", first + 1)).is_ok() {
                return first;
            }
        }
    }

    /// A card "placed" on the reader: connected to vpcd until dropped.
    struct Placed(TcpStream);

    impl Drop for Placed {
        fn drop(&mut self) {
            let _ = self.0.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Connect `card` to the reader and answer vpcd for it on a thread
    /// (vsmartcard's vpcd protocol: a 2-byte length, then a control byte
    /// (0 off, 1 on, 2 reset, 4 ATR) or an APDU).
    fn place(port: u16, mut card: Box<dyn Transport>) -> Placed {
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("vpcd never listened on {port}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let mut wire = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            loop {
                let mut len = [0u8; 2];
                if wire.read_exact(&mut len).is_err() {
                    return;
                }
                let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if wire.read_exact(&mut message).is_err() {
                    return;
                }
                let answer = match message.as_slice() {
                    [4] => vec![0x3B, 0x80, 0x80, 0x01, 0x01], // a T=1 ATR
                    [_] => continue,
                    apdu => card.transmit(apdu).unwrap_or_else(|_| vec![0x6F, 0x00]),
                };
                let framed = [&u16::try_from(answer.len()).unwrap().to_be_bytes()[..], &answer].concat();
                if wire.write_all(&framed).is_err() {
                    return;
                }
            }
        });
        Placed(stream)
    }

    /// A prox-style badge: no FIDO applet, a UID.
    struct Badge;

    impl Transport for Badge {
        fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, String> {
            Ok(match apdu {
                [0xFF, 0xCA, 0x00, 0x00, ..] => vec![0x04, 0xA1, 0xB2, 0xC3, 0x90, 0x00],
                _ => vec![0x6A, 0x82],
            })
        }
    }

    async fn next_line(lines: &mut mpsc::Receiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(15), lines.recv()).await.expect("a line from the reader").unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fido2_cards_and_badges_on_a_real_pcscd() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port_pair();
        let Some(_pcscd) = start_pcscd(dir.path(), port) else { return };
        // pcscd up and the reader listed before the agent's thread starts.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !Context::establish(Scope::User).and_then(|c| c.list_readers_owned()).is_ok_and(|r| !r.is_empty()) {
            assert!(Instant::now() < deadline, "pcscd did not come up with the vpcd reader");
            std::thread::sleep(Duration::from_millis(100));
        }
        let (tx, mut lines) = mpsc::channel(8);
        let cards = CardSlot::default();
        spawn(tx, cards.clone()).unwrap();

        // A FIDO2 card with its own PIN: the agent gets "fido2", and the
        // key signs over PC/SC with the user verified.
        let (software, public) = key(&dir);
        let card = place(port, Box::new(SoftCard::new(software, Some(PIN)).unwrap()));
        assert_eq!(next_line(&mut lines).await, "fido2");
        let key = Ctap2Key::new(cards.clone());
        let signer = key.clone();
        let assertion =
            tokio::task::spawn_blocking(move || signer.get_assertion(RP, &[9; 32], Some(&pin(PIN)))).await.unwrap();
        assert_eq!(verify(&assertion.unwrap(), &public, &[9; 32]) & 0x05, 0x05);

        // Lifted off the reader: the key is gone from the slot.
        drop(card);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let signer = key.clone();
            let now = tokio::task::spawn_blocking(move || signer.get_assertion(RP, &[9; 32], None)).await.unwrap();
            match now {
                Err(crate::fido2::Fido2Error::NoKey) => break,
                _ if Instant::now() > deadline => panic!("the lifted key stayed in the slot"),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }

        // A plain badge: its UID, as a keyboard-wedge reader would type it.
        let _badge = place(port, Box::new(Badge));
        assert_eq!(next_line(&mut lines).await, "04A1B2C3");
    }
}
