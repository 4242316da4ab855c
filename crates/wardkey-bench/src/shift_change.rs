//! `shift-change`: workstations driven as real agents through taps, PINs,
//! locks, tap-overs and token exchanges.
//!
//! Each enrolled workstation is one sequential [`Agent`]. When it has
//! nothing queued it plans an *episode* by the mix:
//!
//! - `hot`: a clinician whose session is live taps in (`active`, the hot
//!   path), their apps get tokens, and they tap again to lock;
//! - `switch`: one clinician taps in, another taps over (`switched`), both
//!   get tokens, the second locks;
//! - `pin`: a clinician with no session taps (`pin_required`), types the
//!   PIN (`POST /tap/pin`), gets tokens and locks. When the tap finds a
//!   live session after all (every free clinician is signed in, or an
//!   earlier run left sessions on the server), the clinician first ends it
//!   (`POST /tap/out` with logout) and taps again, so that a PIN is really
//!   needed and the mix holds.
//!
//! Every login (an `active` or `switched` answer) is followed by K token
//! exchanges, one per EPR app. Clinicians are checked out of a shared pool
//! for the length of an episode, so two workstations never act for the
//! same clinician at once, and only tap at workstations on their own ward,
//! so no cloned-badge alert fires. The agent follows the server's answers,
//! not its own expectations: what each request *was* (hot tap, PIN, switch)
//! is decided by the answer, and an unexpected answer steers the episode
//! rather than failing the run.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use wardkey_proto::tap::{PinEntry, Tap, TapOut, TapResponse};

use crate::engine::{Actor, Outcome};
use crate::fixture::FixtureClinician;
use crate::jws::{SignNow, Signer};
use crate::mix::pick;
use crate::stats::{ErrorKind, Op};
use crate::wire::Wardkey;

/// Names of the episode kinds in `--mix`, in weight order.
pub const EPISODES: [&str; 3] = ["hot", "pin", "switch"];
const HOT: usize = 0;
const SWITCH: usize = 2;

/// The default mix: most taps resume a live session; about one in fifty is
/// a PIN (one PIN in a shift of 60 taps) and one in ten a tap-over.
pub const DEFAULT_MIX: &str = "hot=88,switch=10,pin=2";

#[derive(Debug, Clone, Copy, Default)]
struct PoolFlags {
    busy: bool,
    /// `None` until an answer shows whether there is a live session.
    live: Option<bool>,
}

/// Which clinicians an episode wants, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Signed in (or not known yet: the tap finds out).
    Live,
    /// Not signed in; failing that, not known; failing that, anyone (the
    /// episode then signs them out first).
    NoSession,
}

impl Want {
    fn preferences(self) -> &'static [Option<bool>] {
        match self {
            Want::Live => &[Some(true), None],
            Want::NoSession => &[Some(false), None, Some(true)],
        }
    }
}

/// The clinicians, shared by every agent: who is free, and who (as far as
/// the answers so far show) has a live session. Nothing is assumed at the
/// start: a server that already has sessions (from an earlier run) is
/// learnt from its answers.
#[derive(Debug)]
pub struct Pool {
    clinicians: Vec<FixtureClinician>,
    flags: Mutex<Vec<PoolFlags>>,
}

impl Pool {
    /// Every clinician free, none known to have a session yet.
    pub fn new(clinicians: Vec<FixtureClinician>) -> Self {
        let flags = Mutex::new(vec![PoolFlags::default(); clinicians.len()]);
        Self { clinicians, flags }
    }

    fn flags(&self) -> std::sync::MutexGuard<'_, Vec<PoolFlags>> {
        // A panic elsewhere while holding the lock leaves plain flags, still
        // usable.
        self.flags.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Check out a free clinician of `ward`, the best `want` can get.
    pub fn checkout(&self, ward: &str, want: Want, rng: &mut impl Rng) -> Option<usize> {
        let mut flags = self.flags();
        for live in want.preferences() {
            let free: Vec<usize> = (0..self.clinicians.len())
                .filter(|&i| self.clinicians[i].ward == ward && !flags[i].busy && flags[i].live == *live)
                .collect();
            if let Some(&chosen) = free.choose(rng) {
                flags[chosen].busy = true;
                return Some(chosen);
            }
        }
        None
    }

    /// Give a clinician back.
    pub fn release(&self, i: usize) {
        self.flags()[i].busy = false;
    }

    /// Record what an answer showed about a clinician's session.
    pub fn set_live(&self, i: usize, live: bool) {
        self.flags()[i].live = Some(live);
    }

    /// Whether the answers so far show a live session (`None`: not known).
    pub fn is_live(&self, i: usize) -> Option<bool> {
        self.flags()[i].live
    }

    /// The clinician's fixture entry.
    pub fn clinician(&self, i: usize) -> &FixtureClinician {
        &self.clinicians[i]
    }

    /// Clinicians on `ward`.
    pub fn on_ward(&self, ward: &str) -> usize {
        self.clinicians.iter().filter(|c| c.ward == ward).count()
    }
}

/// What every agent shares.
#[derive(Debug)]
pub struct Shared {
    /// The server.
    pub server: Wardkey,
    /// EPR client ids for token exchange.
    pub clients: Vec<String>,
    /// Token exchanges after each login.
    pub exchanges: usize,
    /// The clinicians.
    pub pool: Pool,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Tap(usize),
    /// A tap that must end in a PIN: on a live session, sign out and tap
    /// again.
    TapForPin(usize),
    Pin {
        clinician: usize,
        tap_id: String,
    },
    Exchange(usize),
    Logout,
    Lock,
}

/// One workstation, acting as its agent would.
pub struct Agent {
    shared: Arc<Shared>,
    ws: Signer,
    ward: String,
    weights: Vec<f64>,
    rng: StdRng,
    queue: VecDeque<Step>,
    held: Vec<usize>,
    attached: Option<usize>,
    ticket: Option<String>,
    healing: bool,
}

impl Agent {
    /// Workstation `ws` on `ward`, choosing episodes by `weights` (hot,
    /// pin, switch).
    pub fn new(shared: Arc<Shared>, ws: Signer, ward: String, weights: Vec<f64>, seed: u64) -> Self {
        Self {
            shared,
            ws,
            ward,
            weights,
            rng: StdRng::seed_from_u64(seed),
            queue: VecDeque::new(),
            held: Vec::new(),
            attached: None,
            ticket: None,
            healing: false,
        }
    }

    /// Plan the next episode.
    fn plan(&mut self) {
        // Start every episode from a locked workstation: if an error left a
        // clinician attached, they tap once to lock it (once only).
        if let Some(c) = self.attached {
            if !self.healing {
                self.healing = true;
                self.queue.push_back(Step::Tap(c));
                return;
            }
            self.attached = None;
            self.ticket = None;
        }
        self.healing = false;
        for c in self.held.drain(..) {
            self.shared.pool.release(c);
        }
        let shared = self.shared.clone();
        let pool = &shared.pool;
        match pick(&self.weights, &mut self.rng) {
            HOT => match pool.checkout(&self.ward, Want::Live, &mut self.rng) {
                Some(y) => self.episode(vec![y], [Step::Tap(y), Step::Tap(y)]),
                None => self.plan_pin(),
            },
            SWITCH => match pool.checkout(&self.ward, Want::Live, &mut self.rng) {
                Some(y) => match pool.checkout(&self.ward, Want::Live, &mut self.rng) {
                    Some(z) => self.episode(vec![y, z], [Step::Tap(y), Step::Tap(z), Step::Tap(z)]),
                    None => self.episode(vec![y], [Step::Tap(y), Step::Tap(y)]),
                },
                None => self.plan_pin(),
            },
            // PIN, index 1.
            _ => self.plan_pin(),
        }
    }

    fn plan_pin(&mut self) {
        let shared = self.shared.clone();
        let pool = &shared.pool;
        if let Some(y) = pool.checkout(&self.ward, Want::NoSession, &mut self.rng) {
            self.episode(vec![y], [Step::TapForPin(y), Step::Tap(y)]);
        } else {
            // No clinician free on this ward (the driver sizes agents so
            // this does not happen): lock, which costs the server little.
            self.queue.push_back(Step::Lock);
        }
    }

    fn episode<const N: usize>(&mut self, held: Vec<usize>, steps: [Step; N]) {
        self.held = held;
        self.queue.extend(steps);
    }

    /// What a tap by `c` should be, to name a failed one.
    fn expected(&self, c: usize) -> Op {
        if self.attached == Some(c) {
            Op::TapLock
        } else if self.shared.pool.is_live(c) == Some(false) {
            Op::TapPin
        } else if self.attached.is_some() {
            Op::Switch
        } else {
            Op::TapHot
        }
    }

    /// `c` is at the desktop; their apps get tokens next (unless the
    /// login is only on the way to a PIN).
    fn logged_in(&mut self, c: usize, ticket: String, exchanges: bool) {
        self.attached = Some(c);
        self.ticket = Some(ticket);
        self.shared.pool.set_live(c, true);
        if exchanges {
            for k in (0..self.shared.exchanges).rev() {
                self.queue.push_front(Step::Exchange(k));
            }
        }
    }

    fn after_login(&mut self, c: usize, ticket: String, for_pin: bool) {
        if for_pin {
            // The session was live after all: end it, then tap for the PIN.
            self.queue.push_front(Step::Tap(c));
            self.queue.push_front(Step::Logout);
        }
        self.logged_in(c, ticket, !for_pin);
    }

    fn locked(&mut self) {
        self.attached = None;
        self.ticket = None;
    }

    /// Follow a tap's answer: what the tap was, and what comes next.
    fn on_tap(
        &mut self,
        c: usize,
        for_pin: bool,
        answer: Result<TapResponse, ErrorKind>,
    ) -> (Op, Result<(), ErrorKind>) {
        let expected = self.expected(c);
        match answer {
            Ok(TapResponse::Active { session_ticket, .. }) => {
                self.after_login(c, session_ticket, for_pin);
                (Op::TapHot, Ok(()))
            }
            Ok(TapResponse::Switched { session_ticket, .. }) => {
                self.after_login(c, session_ticket, for_pin);
                (Op::Switch, Ok(()))
            }
            Ok(TapResponse::PinRequired { tap_id, .. }) => {
                self.shared.pool.set_live(c, false);
                self.queue.push_front(Step::Pin { clinician: c, tap_id });
                (Op::TapPin, Ok(()))
            }
            Ok(TapResponse::Locked) => {
                self.locked();
                (Op::TapLock, Ok(()))
            }
            Ok(TapResponse::LoggedOut) => {
                self.locked();
                (expected, Err(ErrorKind::Unexpected("logged_out answer to a tap".into())))
            }
            Err(kind) => (expected, Err(kind)),
        }
    }

    /// Follow a PIN's answer.
    fn on_pin(&mut self, c: usize, answer: Result<TapResponse, ErrorKind>) -> Result<(), ErrorKind> {
        match answer {
            Ok(TapResponse::Active { session_ticket, .. } | TapResponse::Switched { session_ticket, .. }) => {
                self.logged_in(c, session_ticket, true);
                Ok(())
            }
            Ok(other) => Err(ErrorKind::Unexpected(format!("{} answer to a PIN", state_name(&other)))),
            Err(kind) => Err(kind),
        }
    }

    /// Follow a tap-out's answer.
    fn on_tap_out(&mut self, logout: bool, answer: Result<TapResponse, ErrorKind>) -> Result<(), ErrorKind> {
        match answer {
            Ok(TapResponse::LoggedOut | TapResponse::Locked) => {
                if let (true, Some(c)) = (logout, self.attached) {
                    self.shared.pool.set_live(c, false);
                }
                self.locked();
                Ok(())
            }
            Ok(other) => Err(ErrorKind::Unexpected(format!("{} answer to a tap-out", state_name(&other)))),
            Err(kind) => Err(kind),
        }
    }

    async fn tap(&mut self, c: usize, for_pin: bool) -> Outcome {
        let badge = self.shared.pool.clinician(c).badge.clone();
        let jws = self.ws.tap_now(Tap { badge });
        let (answer, done) = self.shared.server.tap("/tap", jws).await;
        let (op, result) = self.on_tap(c, for_pin, answer);
        Outcome { op, result, done }
    }

    async fn pin(&mut self, c: usize, tap_id: String) -> Outcome {
        let pin = self.shared.pool.clinician(c).pin.clone();
        let jws = self.ws.tap_now(PinEntry { tap_id, pin });
        let (answer, done) = self.shared.server.tap("/tap/pin", jws).await;
        Outcome { op: Op::PinEntry, result: self.on_pin(c, answer), done }
    }

    async fn exchange(&mut self, k: usize) -> Outcome {
        let Some(ticket) = self.ticket.clone() else {
            let result = Err(ErrorKind::Unexpected("token exchange with no session ticket".into()));
            return Outcome { op: Op::TokenExchange, result, done: Instant::now() };
        };
        let audience = &self.shared.clients[k % self.shared.clients.len()];
        let (answer, done) = self.shared.server.exchange(&self.ws, &ticket, audience).await;
        let result = answer.and_then(|tokens| {
            if tokens.access_token.is_empty() {
                Err(ErrorKind::Unexpected("empty access_token".into()))
            } else {
                Ok(())
            }
        });
        Outcome { op: Op::TokenExchange, result, done }
    }

    async fn tap_out(&mut self, logout: bool) -> Outcome {
        let jws = self.ws.tap_now(TapOut { logout });
        let (answer, done) = self.shared.server.tap("/tap/out", jws).await;
        let result = self.on_tap_out(logout, answer);
        Outcome { op: if logout { Op::TapOut } else { Op::TapLock }, result, done }
    }

    async fn next(&mut self) -> Outcome {
        if self.queue.is_empty() {
            self.plan();
        }
        match self.queue.pop_front().unwrap_or(Step::Lock) {
            Step::Tap(c) => self.tap(c, false).await,
            Step::TapForPin(c) => self.tap(c, true).await,
            Step::Pin { clinician, tap_id } => self.pin(clinician, tap_id).await,
            Step::Exchange(k) => self.exchange(k).await,
            Step::Logout => self.tap_out(true).await,
            Step::Lock => self.tap_out(false).await,
        }
    }
}

impl Actor for Agent {
    fn step(&mut self, _due: Instant, _lane: usize) -> impl Future<Output = Outcome> + Send {
        self.next()
    }
}

/// The `state` tag of an answer, for messages.
pub fn state_name(answer: &TapResponse) -> &'static str {
    match answer {
        TapResponse::Active { .. } => "active",
        TapResponse::Switched { .. } => "switched",
        TapResponse::PinRequired { .. } => "pin_required",
        TapResponse::Locked => "locked",
        TapResponse::LoggedOut => "logged_out",
    }
}

/// Which workstations to drive: per ward at most half as many as it has
/// clinicians (an episode holds up to two), and at most `limit` overall,
/// taken in turn from each ward. Returns indices into `wards_of` and notes
/// for the report when some were left out.
pub fn choose_agents(wards_of: &[String], pool: &Pool, limit: usize, rng: &mut impl Rng) -> (Vec<usize>, Vec<String>) {
    let mut wards: Vec<(&String, Vec<usize>)> = Vec::new();
    for (i, ward) in wards_of.iter().enumerate() {
        match wards.iter_mut().find(|(w, _)| *w == ward) {
            Some((_, list)) => list.push(i),
            None => wards.push((ward, vec![i])),
        }
    }
    let mut notes = Vec::new();
    for (ward, list) in &mut wards {
        let cap = pool.on_ward(ward) / 2;
        if list.len() > cap {
            notes.push(format!(
                "ward {ward:?} has {} clinicians for {} workstations: driving {cap} of them (each episode holds up to two clinicians)",
                pool.on_ward(ward),
                list.len()
            ));
            list.shuffle(rng);
            list.truncate(cap);
        }
    }
    let mut chosen = Vec::new();
    let mut round = 0;
    while chosen.len() < limit && wards.iter().any(|(_, l)| round < l.len()) {
        for (_, list) in &wards {
            if let Some(&i) = list.get(round)
                && chosen.len() < limit
            {
                chosen.push(i);
            }
        }
        round += 1;
    }
    (chosen, notes)
}

#[cfg(test)]
mod tests {
    use wardkey_proto::tap::UserSummary;

    use super::*;
    use crate::jws::{from_pkcs8, generate_key};

    fn agent(clinicians: usize, weights: [f64; 3], exchanges: usize) -> Agent {
        let server = Wardkey::new(
            reqwest::Client::new(),
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/token",
        );
        let pool = Pool::new((0..clinicians).map(|n| clinician(n, "A")).collect());
        let shared = Arc::new(Shared { server, clients: vec!["epr".into()], exchanges, pool });
        let key = from_pkcs8("ws", "http://127.0.0.1:9", &generate_key().unwrap().0).unwrap();
        Agent::new(shared, key, "A".into(), weights.to_vec(), 5)
    }

    fn user() -> UserSummary {
        UserSummary { username: "u".into(), name: None }
    }

    fn active() -> Result<TapResponse, ErrorKind> {
        Ok(TapResponse::Active { user: user(), session_ticket: "t".into(), expires_in: 60 })
    }

    fn pin_required() -> Result<TapResponse, ErrorKind> {
        Ok(TapResponse::PinRequired { tap_id: "p".into(), user: user(), expires_in: 60 })
    }

    fn queue(a: &Agent) -> Vec<Step> {
        a.queue.iter().cloned().collect()
    }

    #[test]
    fn a_hot_episode_resumes_gets_tokens_and_locks() {
        let mut a = agent(2, [1.0, 0.0, 0.0], 2);
        a.plan();
        let [Step::Tap(y), Step::Tap(y2)] = queue(&a)[..] else { panic!("{:?}", a.queue) };
        assert_eq!(y, y2);
        a.queue.pop_front();
        assert_eq!(a.on_tap(y, false, active()), (Op::TapHot, Ok(())));
        assert_eq!(queue(&a), vec![Step::Exchange(0), Step::Exchange(1), Step::Tap(y)]);
        assert_eq!(a.shared.pool.is_live(y), Some(true));
        a.queue.drain(..2);
        a.queue.pop_front();
        assert_eq!(a.on_tap(y, false, Ok(TapResponse::Locked)), (Op::TapLock, Ok(())));
        assert!(a.queue.is_empty() && a.attached.is_none() && a.ticket.is_none());
    }

    #[test]
    fn a_first_tap_asks_for_the_pin_then_gets_tokens() {
        let mut a = agent(2, [0.0, 1.0, 0.0], 1);
        a.plan();
        let Step::TapForPin(y) = a.queue.pop_front().unwrap() else { panic!() };
        assert_eq!(a.on_tap(y, true, pin_required()), (Op::TapPin, Ok(())));
        assert_eq!(a.queue.pop_front(), Some(Step::Pin { clinician: y, tap_id: "p".into() }));
        assert_eq!(a.on_pin(y, active()), Ok(()));
        assert_eq!(queue(&a), vec![Step::Exchange(0), Step::Tap(y)]);
    }

    #[test]
    fn a_pin_episode_on_a_live_session_signs_out_first() {
        let mut a = agent(2, [0.0, 1.0, 0.0], 3);
        a.plan();
        let Step::TapForPin(y) = a.queue.pop_front().unwrap() else { panic!() };
        // The server still had a session (an earlier run): no tokens, sign
        // out, tap again for the PIN, then lock as planned.
        assert_eq!(a.on_tap(y, true, active()), (Op::TapHot, Ok(())));
        assert_eq!(queue(&a), vec![Step::Logout, Step::Tap(y), Step::Tap(y)]);
        a.queue.pop_front();
        assert_eq!(a.on_tap_out(true, Ok(TapResponse::LoggedOut)), Ok(()));
        assert_eq!(a.shared.pool.is_live(y), Some(false));
        a.queue.pop_front();
        assert_eq!(a.expected(y), Op::TapPin);
        assert_eq!(a.on_tap(y, false, pin_required()), (Op::TapPin, Ok(())));
    }

    #[test]
    fn a_switch_episode_hands_the_workstation_over() {
        let mut a = agent(4, [0.0, 0.0, 1.0], 0);
        a.plan();
        let [Step::Tap(y), Step::Tap(z), Step::Tap(z2)] = queue(&a)[..] else { panic!("{:?}", a.queue) };
        assert!(y != z && z == z2);
        a.queue.pop_front();
        assert_eq!(a.on_tap(y, false, active()), (Op::TapHot, Ok(())));
        a.queue.pop_front();
        assert_eq!(a.expected(z), Op::Switch);
        let switched =
            Ok(TapResponse::Switched { user: user(), previous: user(), session_ticket: "s".into(), expires_in: 1 });
        assert_eq!(a.on_tap(z, false, switched), (Op::Switch, Ok(())));
        assert_eq!(a.attached, Some(z));
        assert_eq!(a.ticket.as_deref(), Some("s"));
    }

    #[test]
    fn errors_are_named_by_intent_and_the_next_episode_starts_locked() {
        let mut a = agent(2, [1.0, 0.0, 0.0], 0);
        a.plan();
        let Step::Tap(y) = a.queue.pop_front().unwrap() else { panic!() };
        assert_eq!(a.on_tap(y, false, active()), (Op::TapHot, Ok(())));
        let refused = ErrorKind::Http { status: 503, code: Some("unavailable".into()) };
        a.queue.clear();
        // The lock tap failed: the workstation is still attached, so the
        // next episode first taps to lock it, once.
        assert_eq!(a.on_tap(y, false, Err(refused.clone())), (Op::TapLock, Err(refused)));
        a.plan();
        assert_eq!(queue(&a), vec![Step::Tap(y)]);
        a.queue.clear();
        a.plan();
        assert!(a.attached.is_none(), "given up after one try");
        assert_eq!(a.queue.len(), 2);
    }

    fn clinician(n: usize, ward: &str) -> FixtureClinician {
        FixtureClinician {
            username: format!("n{n}"),
            ward: ward.into(),
            badge: format!("{n:04X}"),
            pin: "123456".into(),
        }
    }

    #[test]
    fn the_pool_hands_out_each_clinician_once_and_tracks_sessions() {
        let pool = Pool::new(vec![clinician(1, "A"), clinician(2, "A"), clinician(3, "B")]);
        let mut rng = StdRng::seed_from_u64(3);
        // Nothing known yet: anyone will do, the taps find out.
        let a = pool.checkout("A", Want::Live, &mut rng).unwrap();
        let b = pool.checkout("A", Want::NoSession, &mut rng).unwrap();
        assert_ne!(a, b);
        assert_eq!(pool.checkout("A", Want::NoSession, &mut rng), None, "both busy");
        pool.set_live(a, true);
        pool.set_live(b, false);
        pool.release(a);
        pool.release(b);
        assert_eq!(pool.is_live(a), Some(true));
        assert_eq!(pool.checkout("A", Want::Live, &mut rng), Some(a), "the signed-in one first");
        assert_eq!(pool.checkout("A", Want::Live, &mut rng), None, "never one known to have no session");
        assert_eq!(pool.checkout("A", Want::NoSession, &mut rng), Some(b));
        pool.release(b);
        pool.set_live(b, true);
        assert_eq!(pool.checkout("A", Want::NoSession, &mut rng), Some(b), "for a PIN, even a signed-in one");
        assert_eq!(pool.checkout("B", Want::Live, &mut rng), Some(2), "wards stay apart");
        assert_eq!(pool.on_ward("A"), 2);
    }

    #[test]
    fn agents_are_sized_to_the_clinicians_of_each_ward() {
        let pool = Pool::new((0..10).map(|n| clinician(n, if n < 8 { "A" } else { "B" })).collect());
        let wards: Vec<String> = ["A", "A", "A", "A", "A", "B", "B"].iter().map(|s| s.to_string()).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let (chosen, notes) = choose_agents(&wards, &pool, 100, &mut rng);
        // A: 8 clinicians → 4 of 5 workstations; B: 2 clinicians → 1 of 2.
        assert_eq!(chosen.len(), 5);
        assert_eq!(chosen.iter().filter(|&&i| wards[i] == "B").count(), 1);
        assert_eq!(notes.len(), 2);
        let (limited, _) = choose_agents(&wards, &pool, 2, &mut rng);
        assert_eq!(limited.len(), 2);
        assert_ne!(wards[limited[0]], wards[limited[1]], "taken in turn from each ward");
    }
}
