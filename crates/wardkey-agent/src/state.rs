//! The workstation's session state machine, free of I/O so every
//! transition is unit-tested.
//!
//! ```text
//!            tap (PIN grace)                      same user taps / idle / server lost
//!   locked ───────────────────────► active(A) ───────────────────────────────► locked
//!     │  ▲                            ▲   │ ▲
//!     │  │ PIN expired / refused      │   │ └── another clinician taps (grace): active(B), a switch
//!     │  │ server lost                │   │
//!     ▼  │                 right PIN  │   ▼ another clinician taps (needs PIN): A is hidden at once
//!   pin_required(B, previous?) ───────┘   pin_required(B, previous: A)
//!     ▲  │ wrong PIN
//!     └──┘
//! ```
//!
//! The server decides who a badge belongs to and whether a PIN is needed;
//! the machine turns its answers (and local events: idle, PIN timeout, the
//! server unreachable) into the next state plus [`Effects`]: the broker
//! event for desktop apps, the hook to run, whether cached tokens must go,
//! the tap-to-active time to report, and whether the server must be told to
//! detach a session the workstation no longer shows.
//!
//! It fails closed: whenever the agent cannot know what the server did, the
//! workstation ends up locked.

use std::time::Duration;

use secrecy::SecretString;
use tokio::time::Instant;
use wardkey_proto::broker::{BrokerEvent, SessionInfo, WorkstationState};
use wardkey_proto::tap::{TapResponse, UserSummary};

use crate::hooks::{HookCall, HookEvent};

/// Longest a PIN prompt stays up whatever the server says: a forgotten
/// prompt must not hold the workstation.
pub const MAX_PIN_WAIT: Duration = Duration::from_secs(600);

/// Where the workstation is.
#[derive(Debug, Default)]
pub enum Phase {
    /// Nobody is signed in here.
    #[default]
    Locked,
    /// A badge was tapped and its owner must type their PIN.
    PinRequired(PinPrompt),
    /// A clinician is at the keyboard.
    Active(ActiveSession),
}

/// An open PIN prompt.
#[derive(Debug)]
pub struct PinPrompt {
    /// Echoed to `POST /tap/pin`.
    pub tap_id: String,
    /// Whose badge it was.
    pub user: UserSummary,
    /// The clinician who was active when the badge was tapped: hidden now,
    /// but still attached at the server until the PIN succeeds (a switch)
    /// or the prompt is abandoned (then the agent detaches them).
    pub previous: Option<UserSummary>,
    /// When the prompt lapses.
    pub deadline: Instant,
    /// When the badge was read: the start of tap-to-active.
    pub read_at: Instant,
}

/// The clinician at the keyboard.
#[derive(Debug)]
pub struct ActiveSession {
    /// Who.
    pub user: UserSummary,
    /// The session ticket for token exchange and handoff.
    pub ticket: SecretString,
    /// Bumped on every change of who is signed in, so a token fetched for
    /// one clinician is never handed out after another took over.
    pub generation: u64,
}

/// What the agent observed.
#[derive(Debug)]
pub enum Input {
    /// The server answered `POST /tap` for a badge read at `read_at`.
    TapAnswer {
        /// The answer.
        answer: TapResponse,
        /// When the badge was read.
        read_at: Instant,
    },
    /// The server answered `POST /tap/pin`.
    PinAnswer(TapResponse),
    /// The server refused a tap outright (unknown badge, disabled user...):
    /// nothing changed there, so nothing changes here.
    TapRefused,
    /// Wrong PIN: the prompt stays for another try.
    PinWrong,
    /// The PIN step is over without success (expired, badge locked...).
    PinRefused,
    /// The PIN prompt's time ran out.
    PinTimedOut,
    /// The server could not be asked or its answer was unusable: what it
    /// did is unknown, so the workstation locks.
    Unreachable,
    /// The server no longer honours the session ticket (locked or switched
    /// elsewhere, or the session ended).
    TicketRejected,
    /// The agent locked on its own (idle timeout, shutdown), after or
    /// instead of `POST /tap/out`.
    LockedLocally,
}

/// What a transition asks the agent to do.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// Tell desktop apps (`GET /v1/events`).
    pub event: Option<BrokerEvent>,
    /// Run a hook.
    pub hook: Option<HookCall>,
    /// Drop cached tokens: they belong to someone no longer at the keyboard.
    pub purge_tokens: bool,
    /// Badge read to active, to report to the server.
    pub tap_to_active: Option<Duration>,
    /// Send `POST /tap/out`: the server may still attach a session that the
    /// workstation no longer shows.
    pub detach_at_server: bool,
}

/// The state machine.
#[derive(Debug, Default)]
pub struct Machine {
    phase: Phase,
    generation: u64,
}

impl Machine {
    /// A locked workstation.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// What `GET /v1/session` shows.
    pub fn info(&self, workstation: &str) -> SessionInfo {
        let (state, user) = match &self.phase {
            Phase::Locked => (WorkstationState::Locked, None),
            Phase::PinRequired(p) => (WorkstationState::PinRequired, Some(p.user.clone())),
            Phase::Active(a) => (WorkstationState::Active, Some(a.user.clone())),
        };
        SessionInfo { state, user, workstation: workstation.to_string() }
    }

    /// Apply one observation at `now`.
    pub fn apply(&mut self, input: Input, now: Instant) -> Effects {
        match input {
            Input::TapAnswer { answer, read_at } => self.answer(answer, read_at, now),
            Input::PinAnswer(answer) => {
                // The clock started when the badge was read, before the PIN.
                let read_at = match &self.phase {
                    Phase::PinRequired(p) => p.read_at,
                    _ => now,
                };
                self.answer(answer, read_at, now)
            }
            Input::TapRefused | Input::PinWrong => Effects::default(),
            Input::PinRefused | Input::PinTimedOut => match self.phase {
                Phase::PinRequired(_) => self.lock(true),
                _ => Effects::default(),
            },
            Input::Unreachable => self.lock(true),
            Input::TicketRejected | Input::LockedLocally => self.lock(false),
        }
    }

    fn answer(&mut self, answer: TapResponse, read_at: Instant, now: Instant) -> Effects {
        match answer {
            TapResponse::Active { user, session_ticket, .. } => {
                self.activate(user, session_ticket, None, now.saturating_duration_since(read_at))
            }
            TapResponse::Switched { user, previous, session_ticket, .. } => {
                self.activate(user, session_ticket, Some(previous), now.saturating_duration_since(read_at))
            }
            TapResponse::PinRequired { tap_id, user, expires_in } => {
                let wait = Duration::from_secs(expires_in).min(MAX_PIN_WAIT);
                self.ask_pin(tap_id, user, now + wait, read_at)
            }
            // The server has already detached: nothing to tell it.
            TapResponse::Locked | TapResponse::LoggedOut => self.lock(false),
        }
    }

    fn activate(
        &mut self,
        user: UserSummary,
        ticket: String,
        previous_at_server: Option<UserSummary>,
        waited: Duration,
    ) -> Effects {
        let old = std::mem::take(&mut self.phase);
        let (was_active, shown_before) = match old {
            Phase::Active(a) => (true, Some(a.user)),
            Phase::PinRequired(p) => (false, p.previous),
            Phase::Locked => (false, None),
        };
        // The server knows best who was attached; fall back to what this
        // workstation last showed.
        let previous = previous_at_server.or(shown_before.clone()).filter(|p| p.username != user.username);
        let (event, hook) = match previous {
            Some(previous) => (
                Some(BrokerEvent::Switch { user: user.clone(), previous: previous.clone() }),
                Some(HookCall::new(HookEvent::Switch, &user, Some(&previous))),
            ),
            // The same clinician got a fresh ticket: apps keep going.
            None if was_active && shown_before.is_some_and(|s| s.username == user.username) => (None, None),
            None => {
                (Some(BrokerEvent::Unlock { user: user.clone() }), Some(HookCall::new(HookEvent::Unlock, &user, None)))
            }
        };
        self.generation += 1;
        self.phase =
            Phase::Active(ActiveSession { user, ticket: SecretString::from(ticket), generation: self.generation });
        Effects { event, hook, purge_tokens: true, tap_to_active: Some(waited), detach_at_server: false }
    }

    fn ask_pin(&mut self, tap_id: String, user: UserSummary, deadline: Instant, read_at: Instant) -> Effects {
        let old = std::mem::take(&mut self.phase);
        let mut effects = Effects::default();
        let previous = match old {
            // Someone else is at the keyboard now: hide the previous
            // clinician's work before the PIN is even typed.
            Phase::Active(a) => {
                self.generation += 1;
                effects.event = Some(BrokerEvent::Lock);
                effects.hook = Some(HookCall::new(HookEvent::Lock, &a.user, None));
                effects.purge_tokens = true;
                Some(a.user)
            }
            Phase::PinRequired(p) => p.previous,
            Phase::Locked => None,
        };
        self.phase = Phase::PinRequired(PinPrompt { tap_id, user, previous, deadline, read_at });
        effects
    }

    /// Lock. `detach` asks the server to drop any attachment it may still
    /// hold for a session this workstation no longer shows.
    fn lock(&mut self, detach: bool) -> Effects {
        match std::mem::take(&mut self.phase) {
            Phase::Active(a) => {
                self.generation += 1;
                Effects {
                    event: Some(BrokerEvent::Lock),
                    hook: Some(HookCall::new(HookEvent::Lock, &a.user, None)),
                    purge_tokens: true,
                    tap_to_active: None,
                    detach_at_server: detach,
                }
            }
            // Apps were already told (or never unlocked).
            Phase::PinRequired(p) => Effects { detach_at_server: detach && p.previous.is_some(), ..Effects::default() },
            Phase::Locked => Effects::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn user(name: &str) -> UserSummary {
        UserSummary { username: name.into(), name: Some(format!("Dr {name}")) }
    }

    fn active(name: &str, ticket: &str) -> TapResponse {
        TapResponse::Active { user: user(name), session_ticket: ticket.into(), expires_in: 600 }
    }

    fn pin_required(name: &str, tap_id: &str) -> TapResponse {
        TapResponse::PinRequired { tap_id: tap_id.into(), user: user(name), expires_in: 60 }
    }

    fn tap(m: &mut Machine, answer: TapResponse, read_at: Instant, now: Instant) -> Effects {
        m.apply(Input::TapAnswer { answer, read_at }, now)
    }

    fn state(m: &Machine) -> (WorkstationState, Option<String>) {
        let info = m.info("ws");
        (info.state, info.user.map(|u| u.username))
    }

    fn ticket(m: &Machine) -> String {
        match m.phase() {
            Phase::Active(a) => a.ticket.expose_secret().to_string(),
            other => panic!("not active: {other:?}"),
        }
    }

    #[test]
    fn hot_path_tap_unlocks_and_reports_the_wait() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        assert_eq!(state(&m), (WorkstationState::Locked, None));
        let fx = tap(&mut m, active("alice", "T1"), t0, t0 + Duration::from_millis(80));
        assert_eq!(state(&m), (WorkstationState::Active, Some("alice".into())));
        assert_eq!(ticket(&m), "T1");
        assert_eq!(fx.event, Some(BrokerEvent::Unlock { user: user("alice") }));
        assert_eq!(fx.hook, Some(HookCall::new(HookEvent::Unlock, &user("alice"), None)));
        assert_eq!(fx.tap_to_active, Some(Duration::from_millis(80)));
        assert!(fx.purge_tokens && !fx.detach_at_server);
    }

    #[test]
    fn the_same_clinician_tapping_again_locks() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        tap(&mut m, active("alice", "T1"), t0, t0);
        let fx = tap(&mut m, TapResponse::Locked, t0, t0);
        assert_eq!(state(&m), (WorkstationState::Locked, None));
        assert_eq!(fx.event, Some(BrokerEvent::Lock));
        assert_eq!(fx.hook, Some(HookCall::new(HookEvent::Lock, &user("alice"), None)));
        assert!(fx.purge_tokens);
        assert!(!fx.detach_at_server, "the server already detached");
        assert_eq!(fx.tap_to_active, None);
    }

    #[test]
    fn another_clinician_in_grace_switches() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        tap(&mut m, active("alice", "T1"), t0, t0);
        let answer = TapResponse::Switched {
            user: user("bob"),
            previous: user("alice"),
            session_ticket: "T2".into(),
            expires_in: 600,
        };
        let fx = tap(&mut m, answer, t0, t0 + Duration::from_millis(50));
        assert_eq!(state(&m), (WorkstationState::Active, Some("bob".into())));
        assert_eq!(ticket(&m), "T2");
        assert_eq!(fx.event, Some(BrokerEvent::Switch { user: user("bob"), previous: user("alice") }));
        assert_eq!(fx.hook, Some(HookCall::new(HookEvent::Switch, &user("bob"), Some(&user("alice")))));
        assert!(fx.purge_tokens);
        assert_eq!(fx.tap_to_active, Some(Duration::from_millis(50)));
    }

    #[test]
    fn pin_flow_wrong_pin_stays_then_right_pin_unlocks_timing_from_the_tap() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        let fx = tap(&mut m, pin_required("alice", "tap1"), t0, t0 + Duration::from_millis(40));
        assert_eq!(fx, Effects::default(), "nothing to tell apps: they were locked already");
        assert_eq!(state(&m), (WorkstationState::PinRequired, Some("alice".into())));
        match m.phase() {
            Phase::PinRequired(p) => {
                assert_eq!(p.tap_id, "tap1");
                assert_eq!(p.deadline, t0 + Duration::from_millis(40) + Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
        let fx = m.apply(Input::PinWrong, t0 + Duration::from_secs(3));
        assert_eq!(fx, Effects::default());
        assert_eq!(state(&m), (WorkstationState::PinRequired, Some("alice".into())));
        let fx = m.apply(Input::PinAnswer(active("alice", "T1")), t0 + Duration::from_secs(6));
        assert_eq!(state(&m), (WorkstationState::Active, Some("alice".into())));
        assert_eq!(fx.event, Some(BrokerEvent::Unlock { user: user("alice") }));
        assert_eq!(fx.tap_to_active, Some(Duration::from_secs(6)), "includes typing the PIN");
    }

    #[test]
    fn a_tap_needing_a_pin_hides_the_previous_clinician_at_once_and_switches_on_success() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        tap(&mut m, active("alice", "T1"), t0, t0);
        let fx = tap(&mut m, pin_required("bob", "tap2"), t0, t0);
        assert_eq!(state(&m), (WorkstationState::PinRequired, Some("bob".into())));
        assert_eq!(fx.event, Some(BrokerEvent::Lock));
        assert_eq!(fx.hook, Some(HookCall::new(HookEvent::Lock, &user("alice"), None)));
        assert!(fx.purge_tokens);
        let answer = TapResponse::Switched {
            user: user("bob"),
            previous: user("alice"),
            session_ticket: "T2".into(),
            expires_in: 600,
        };
        let fx = m.apply(Input::PinAnswer(answer), t0 + Duration::from_secs(4));
        assert_eq!(state(&m), (WorkstationState::Active, Some("bob".into())));
        assert_eq!(fx.event, Some(BrokerEvent::Switch { user: user("bob"), previous: user("alice") }));
    }

    #[test]
    fn an_abandoned_pin_prompt_locks_and_detaches_the_hidden_clinician() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        tap(&mut m, active("alice", "T1"), t0, t0);
        tap(&mut m, pin_required("bob", "tap2"), t0, t0);
        let fx = m.apply(Input::PinTimedOut, t0 + Duration::from_secs(61));
        assert_eq!(state(&m), (WorkstationState::Locked, None));
        assert!(fx.detach_at_server, "alice is still attached at the server");
        assert_eq!(fx.event, None, "apps saw the lock already");

        // Without a hidden clinician there is nothing to detach.
        tap(&mut m, pin_required("bob", "tap3"), t0, t0);
        let fx = m.apply(Input::PinRefused, t0);
        assert_eq!(state(&m), (WorkstationState::Locked, None));
        assert!(!fx.detach_at_server);
    }

    #[test]
    fn server_errors_keep_a_locked_workstation_locked() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        for input in [Input::Unreachable, Input::TapRefused, Input::PinWrong, Input::PinRefused, Input::PinTimedOut] {
            let fx = m.apply(input, t0);
            assert_eq!(fx, Effects::default());
            assert_eq!(state(&m), (WorkstationState::Locked, None));
        }
    }

    #[test]
    fn losing_the_server_while_active_fails_closed() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        tap(&mut m, active("alice", "T1"), t0, t0);
        let fx = m.apply(Input::Unreachable, t0);
        assert_eq!(state(&m), (WorkstationState::Locked, None));
        assert_eq!(fx.event, Some(BrokerEvent::Lock));
        assert!(fx.purge_tokens && fx.detach_at_server);
    }

    #[test]
    fn losing_the_server_during_a_pin_prompt_locks() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        tap(&mut m, pin_required("alice", "tap1"), t0, t0);
        m.apply(Input::Unreachable, t0);
        assert_eq!(state(&m), (WorkstationState::Locked, None));
    }

    #[test]
    fn a_refused_tap_leaves_the_active_clinician_alone() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        tap(&mut m, active("alice", "T1"), t0, t0);
        assert_eq!(m.apply(Input::TapRefused, t0), Effects::default());
        assert_eq!(state(&m), (WorkstationState::Active, Some("alice".into())));
    }

    #[test]
    fn idle_lock_and_ticket_rejection_lock_without_asking_the_server_again() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        tap(&mut m, active("alice", "T1"), t0, t0);
        let fx = m.apply(Input::LockedLocally, t0);
        assert_eq!(fx.event, Some(BrokerEvent::Lock));
        assert!(!fx.detach_at_server);
        tap(&mut m, active("alice", "T2"), t0, t0);
        let fx = m.apply(Input::TicketRejected, t0);
        assert_eq!(fx.event, Some(BrokerEvent::Lock));
        assert_eq!(state(&m), (WorkstationState::Locked, None));
    }

    #[test]
    fn logged_out_locks() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        tap(&mut m, active("alice", "T1"), t0, t0);
        let fx = tap(&mut m, TapResponse::LoggedOut, t0, t0);
        assert_eq!(fx.event, Some(BrokerEvent::Lock));
        assert_eq!(state(&m), (WorkstationState::Locked, None));
    }

    #[test]
    fn an_unexpected_active_for_someone_else_is_a_switch() {
        // The server lost its attachment (cache restart) and says `active`
        // for bob while this workstation still shows alice.
        let t0 = Instant::now();
        let mut m = Machine::new();
        tap(&mut m, active("alice", "T1"), t0, t0);
        let fx = tap(&mut m, active("bob", "T2"), t0, t0);
        assert_eq!(fx.event, Some(BrokerEvent::Switch { user: user("bob"), previous: user("alice") }));
        // And a fresh ticket for the same clinician is no event at all.
        let fx = tap(&mut m, active("bob", "T3"), t0, t0);
        assert_eq!(fx.event, None);
        assert!(fx.purge_tokens);
        assert_eq!(ticket(&m), "T3");
    }

    #[test]
    fn generations_change_with_every_clinician_change() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        tap(&mut m, active("alice", "T1"), t0, t0);
        let Phase::Active(a) = m.phase() else { panic!() };
        let g1 = a.generation;
        m.apply(Input::LockedLocally, t0);
        tap(&mut m, active("alice", "T2"), t0, t0);
        let Phase::Active(a) = m.phase() else { panic!() };
        assert!(a.generation > g1);
    }

    #[test]
    fn pin_prompts_never_outlive_the_cap() {
        let t0 = Instant::now();
        let mut m = Machine::new();
        let answer = TapResponse::PinRequired { tap_id: "t".into(), user: user("a"), expires_in: u64::MAX };
        tap(&mut m, answer, t0, t0);
        let Phase::PinRequired(p) = m.phase() else { panic!() };
        assert_eq!(p.deadline, t0 + MAX_PIN_WAIT);
    }
}
