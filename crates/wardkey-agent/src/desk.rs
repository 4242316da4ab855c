//! The agent's side of the lock screen: the screen it should show, the
//! PINs typed on its pad, and when it reports the desktop showing.
//!
//! The lock screen (`wardkey-desk`, in the clinician's session) is a
//! drawing of [`DeskScreen`]: it subscribes to `GET /v1/desk/events`, sends
//! PINs with `POST /v1/pin`, and says `POST /v1/desk/shown` once it has
//! hidden itself. Nothing it does can unlock the workstation: only the
//! server's answer to a tap or a PIN does.
//!
//! While a desk is connected, the tap-to-active report waits for its
//! "shown", so ops see tap to desktop (the clinician's wait) rather than
//! tap to state change.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use wardkey_proto::broker::{DeskScreen, SessionInfo, WorkstationState};

/// PINs typed on the pad and not yet taken by the reader loop: one, so a
/// PIN never waits to be checked against a later prompt (another badge, or
/// a security key).
const PIN_QUEUE: usize = 1;

/// A report waits this long for the desk's "shown" before it is dropped.
const SHOWN_WITHIN: Duration = Duration::from_secs(60);

/// The screen, the pad's PINs, and the tap-to-desktop clock.
#[derive(Debug)]
pub struct DeskLink {
    screen: watch::Sender<DeskScreen>,
    pins: mpsc::Sender<SecretString>,
    pins_rx: Mutex<Option<mpsc::Receiver<SecretString>>>,
    /// When the badge that unlocked was read, until the desk shows the
    /// desktop for screen `seq`.
    unlocked: Mutex<Option<(u64, Instant)>>,
    /// Users with a lock screen attached now, and how many each.
    attached: Mutex<HashMap<u32, usize>>,
}

/// A lock screen of user `uid` attached to the agent, until dropped.
#[derive(Debug)]
pub struct Attached {
    agent: crate::Agent,
    uid: u32,
}

impl Attached {
    /// Count `uid` as at the screen until this is dropped.
    pub fn new(agent: crate::Agent, uid: u32) -> Self {
        *agent.desk().lock_attached().entry(uid).or_default() += 1;
        Self { agent, uid }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let mut attached = self.agent.desk().lock_attached();
        if let Some(n) = attached.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                attached.remove(&self.uid);
            }
        }
    }
}

/// Why a PIN from the pad was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PadError {
    /// No PIN is being asked for.
    #[error("no PIN is being asked for: tap your badge first")]
    NotAsked,
    /// The reader loop is not taking PINs (it has stopped, or PINs already
    /// wait to be checked).
    #[error("the agent is busy checking a PIN; wait for the answer")]
    Busy,
}

impl Default for DeskLink {
    fn default() -> Self {
        let (screen, _) = watch::channel(DeskScreen::default());
        let (pins, pins_rx) = mpsc::channel(PIN_QUEUE);
        Self {
            screen,
            pins,
            pins_rx: Mutex::new(Some(pins_rx)),
            unlocked: Mutex::new(None),
            attached: Mutex::new(HashMap::new()),
        }
    }
}

impl DeskLink {
    /// Whether user `uid` has a lock screen attached now.
    pub fn is_attached(&self, uid: u32) -> bool {
        self.lock_attached().contains_key(&uid)
    }

    fn lock_attached(&self) -> std::sync::MutexGuard<'_, HashMap<u32, usize>> {
        self.attached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The screen now.
    pub fn screen(&self) -> DeskScreen {
        self.screen.borrow().clone()
    }

    /// Every screen from now on (the current one first).
    pub fn subscribe(&self) -> watch::Receiver<DeskScreen> {
        let mut rx = self.screen.subscribe();
        rx.mark_changed();
        rx
    }

    /// Whether a desk is drawing the screen.
    pub fn attached(&self) -> bool {
        self.screen.receiver_count() > 0
    }

    /// Show `info`, with `message` if there is one (`alert` when it reports
    /// a problem). A new session state starts a new screen.
    pub fn show(&self, info: &SessionInfo, key_pin: bool, unreachable: bool, message: Option<(&str, bool)>) {
        self.screen.send_modify(|s| {
            s.seq += 1;
            let changed = s.state != info.state || s.user != info.user;
            s.state = info.state;
            s.user = info.user.clone();
            s.workstation = info.workstation.clone();
            s.key_pin = key_pin;
            s.server_unreachable = unreachable;
            s.desktop_shown = false;
            match message {
                Some((text, alert)) => {
                    s.message = Some(text.to_string());
                    s.alert = alert;
                }
                None if changed => {
                    s.message = None;
                    s.alert = false;
                }
                None => {}
            }
        });
    }

    /// The clinician's badge was read at `read_at` and they are in: the
    /// tap-to-desktop clock runs until the desk shows the current screen.
    pub fn unlocked(&self, read_at: Instant) {
        let seq = self.screen.borrow().seq;
        *self.unlocked.lock().unwrap_or_else(|p| p.into_inner()) = Some((seq, read_at));
    }

    /// The desk shows the desktop for screen `seq`: the tap-to-desktop time,
    /// if this ends a wait for it.
    pub fn shown(&self, seq: u64) -> Option<Duration> {
        let mut shown = false;
        self.screen.send_if_modified(|s| {
            shown = s.seq == seq && s.state == WorkstationState::Active;
            let changed = shown && !s.desktop_shown;
            s.desktop_shown |= shown;
            changed
        });
        if !shown {
            return None;
        }
        let mut unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        match *unlocked {
            Some((_, read_at)) if read_at.elapsed() > SHOWN_WITHIN => {
                *unlocked = None;
                None
            }
            // A later screen of the same session (a message) still ends
            // the same wait.
            Some((from, read_at)) if from <= seq => {
                *unlocked = None;
                Some(read_at.elapsed())
            }
            _ => None,
        }
    }

    /// A PIN typed on the pad, for the reader loop.
    pub fn submit_pin(&self, pin: SecretString) -> Result<(), PadError> {
        let screen = self.screen.borrow();
        if screen.state != WorkstationState::PinRequired && !screen.key_pin {
            return Err(PadError::NotAsked);
        }
        drop(screen);
        self.pins.try_send(pin).map_err(|_| PadError::Busy)
    }

    /// The pad's PINs; the reader loop takes them once.
    pub fn take_pins(&self) -> Option<mpsc::Receiver<SecretString>> {
        self.pins_rx.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use wardkey_proto::tap::UserSummary;

    use super::*;

    fn info(state: WorkstationState) -> SessionInfo {
        let user = (state != WorkstationState::Locked).then(|| UserSummary { username: "alice".into(), name: None });
        SessionInfo { state, user, workstation: "pc1".into() }
    }

    #[tokio::test]
    async fn the_pad_is_open_only_while_a_pin_is_asked_for() {
        let desk = DeskLink::default();
        let mut pins = desk.take_pins().unwrap();
        assert!(desk.take_pins().is_none());
        assert_eq!(desk.submit_pin("1234".into()), Err(PadError::NotAsked));
        desk.show(&info(WorkstationState::PinRequired), false, false, None);
        desk.submit_pin("1234".into()).unwrap();
        assert!(pins.recv().await.is_some());
        for _ in 0..PIN_QUEUE {
            desk.submit_pin("1".into()).unwrap();
        }
        assert_eq!(desk.submit_pin("1".into()), Err(PadError::Busy), "thirty PINs at once queue no more than one");
    }

    #[tokio::test]
    async fn a_security_key_asking_for_its_pin_opens_the_pad_on_a_locked_screen() {
        let desk = DeskLink::default();
        let _pins = desk.take_pins().unwrap();
        desk.show(&info(WorkstationState::Locked), true, false, Some(("Type your security key's PIN", false)));
        assert!(desk.screen().key_pin);
        desk.submit_pin("123456".into()).unwrap();
        desk.show(&info(WorkstationState::Locked), false, false, None);
        assert_eq!(desk.submit_pin("123456".into()), Err(PadError::NotAsked));
    }

    #[tokio::test]
    async fn tap_to_desktop_ends_when_the_desk_shows_the_active_screen() {
        let desk = DeskLink::default();
        let mut screens = desk.subscribe();
        assert!(desk.attached());
        desk.show(&info(WorkstationState::Active), false, false, None);
        desk.unlocked(Instant::now());
        let seq = screens.borrow_and_update().seq;
        assert_eq!(desk.shown(seq + 1), None, "a screen not yet drawn ends nothing");
        assert!(desk.shown(seq).is_some());
        assert!(desk.screen().desktop_shown);
        assert_eq!(desk.shown(seq), None, "reported once");
        desk.show(&info(WorkstationState::Locked), false, false, Some(("Locked.", false)));
        assert!(!desk.screen().desktop_shown);
        assert_eq!(desk.shown(desk.screen().seq), None, "a locked screen is never the desktop");
    }

    #[test]
    fn a_message_stays_with_its_state_and_goes_with_the_next() {
        let desk = DeskLink::default();
        let pin = info(WorkstationState::PinRequired);
        desk.show(&pin, false, false, Some(("Wrong PIN: 4 attempts left", true)));
        desk.show(&pin, false, false, None);
        assert_eq!(desk.screen().message.as_deref(), Some("Wrong PIN: 4 attempts left"));
        desk.show(&info(WorkstationState::Active), false, false, None);
        assert_eq!(desk.screen().message, None);
        assert!(!desk.screen().alert);
    }
}
