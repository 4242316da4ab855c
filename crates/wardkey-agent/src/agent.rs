//! The agent: the state machine wired to the server, the hooks, the broker's
//! token cache and events, and the reader loop.
//!
//! [`Agent`] is a cheap handle (clone it into the broker, tests, signal
//! handlers). Server conversations that change the workstation's state
//! (tap, PIN, tap-out, lock on idle) run one at a time; token requests from
//! desktop apps run alongside them and never see a token for a clinician
//! who has already left.
//!
//! Two background tasks live as long as the agent: the hook runner and the
//! link task, which delivers tap-to-active reports (never on the tap path)
//! and, after the server was unreachable, probes it with exponential
//! backoff until it answers again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use wardkey_proto::broker::{BrokerEvent, SessionInfo, WorkstationState};
use wardkey_proto::oauth::TokenResponse;
use wardkey_proto::tap::{HandoffResponse, TapResponse};

use crate::client::{KeyTapError, ServerClient, ServerError};
use crate::config::{AgentConfig, ConfigError};
use crate::desk::DeskLink;
use crate::fido2::{Authenticator, KEY_TAP_LINE, SoftwareKey};
use crate::hooks::{HookCall, HookRunner, Hooks};
use crate::keys::{KeyError, Signer};
use crate::prompt::PinSource;
use crate::reader::{Debouncer, Lines};
use crate::state::{Effects, Input, Machine, Phase};

/// Tokens are handed out from the cache until this long before they
/// expire, so an app never receives one about to die in its hands.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// Backoff bounds for report delivery and probing an unreachable server.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// The cap of the backoff.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Reports kept while the server is unreachable; older ones are dropped
/// (a metric, not a record).
const MAX_PENDING_REPORTS: usize = 100;

/// Time allowed for a tap-out the agent sends on its own (abandoned PIN,
/// server lost, shutdown): short, because someone may be tapping next.
const DETACH_TIMEOUT: Duration = Duration::from_secs(2);

/// What the person at the keyboard hears when a tap or PIN could not be
/// checked because the server did not answer.
const SERVER_UNREACHABLE: &str =
    "Cannot reach the Wardkey server right now: the workstation stays locked. Try again shortly.";

/// How long a security key's PIN may take to type.
pub const KEY_PIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A key tap that needs the key's PIN: when the tap was, and until when the
/// PIN is awaited.
#[derive(Debug, Clone, Copy)]
struct KeyPinWait {
    read_at: Instant,
    deadline: Instant,
}

/// Broker events buffered for slow subscribers.
const EVENT_BUFFER: usize = 64;

/// Why the agent could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The config is incomplete or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key file is missing or unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The server refused, failed or could not be reached.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A PIN arrived but no PIN prompt is open.
    #[error("no PIN was asked for: tap your badge first")]
    NoPinPending,
    /// The request needs a clinician signed in.
    #[error("nobody is signed in at this workstation: tap your badge")]
    NotActive,
    /// A FIDO2 key was tapped but none can be read here.
    #[error("this workstation cannot read FIDO2 keys yet: tap your badge instead")]
    NoKeyReader,
    /// The FIDO2 key could not answer (the message says what to do).
    #[error(transparent)]
    Fido2(#[from] crate::fido2::Fido2Error),
}

/// Why the broker could not give a desktop app a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Nobody is signed in.
    #[error("nobody is signed in at this workstation: tap your badge")]
    Locked,
    /// A PIN is awaited.
    #[error("the workstation is waiting for a PIN")]
    PinRequired,
    /// Who is signed in changed while the token was fetched.
    #[error("the clinician at this workstation changed; ask again")]
    Changed,
    /// The server refused (the app's client id is not registered for token
    /// exchange, or the workstation is not trusted).
    #[error(transparent)]
    Refused(ServerError),
    /// The server could not be asked.
    #[error(transparent)]
    Unavailable(ServerError),
}

/// A token response kept for one app and one clinician.
#[derive(Clone)]
struct CachedToken {
    response: TokenResponse,
    generation: u64,
    fresh_until: Instant,
}

/// Tokens never print.
impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("generation", &self.generation)
            .field("fresh_until", &self.fresh_until)
            .finish_non_exhaustive()
    }
}

/// The link to the server as the background task sees it: pending reports
/// and whether the server is known to be unreachable.
#[derive(Debug)]
struct Link {
    server: String,
    reports: Mutex<VecDeque<f64>>,
    wake: Notify,
    down: AtomicBool,
    /// Told when the server becomes unreachable or reachable again, so the
    /// lock screen says so without waiting for a tap.
    changed: Notify,
}

impl Link {
    /// Say once per outage, in one plain line, that the server cannot be
    /// reached and what the workstation does about it.
    fn failed(&self, error: &ServerError, consequence: &str) {
        if !error.is_transient() {
            return;
        }
        if !self.down.swap(true, Ordering::SeqCst) {
            tracing::warn!("{error}; {consequence}");
            self.wake.notify_one();
            self.changed.notify_one();
        } else {
            tracing::debug!(%error, "the Wardkey server is still unreachable");
        }
    }

    fn succeeded(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            tracing::info!("the Wardkey server at {} is reachable again", self.server);
            self.changed.notify_one();
        }
    }

    fn note<T>(&self, result: &Result<T, ServerError>, consequence: &str) {
        match result {
            Ok(_) => self.succeeded(),
            // A refusal is an answer: the server is up.
            Err(e) if e.is_refusal() => self.succeeded(),
            Err(e) => self.failed(e, consequence),
        }
    }

    fn queue_report(&self, seconds: f64) {
        let mut reports = lock(&self.reports);
        if reports.len() >= MAX_PENDING_REPORTS {
            reports.pop_front();
        }
        reports.push_back(seconds);
        drop(reports);
        self.wake.notify_one();
    }
}

/// Poisoning only means another thread panicked mid-update of plain data;
/// the agent keeps going rather than turning one bug into a dead agent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
struct Inner {
    client: Arc<ServerClient>,
    workstation: String,
    idle_timeout: Duration,
    debounce: Duration,
    machine: Mutex<Machine>,
    /// Held across each state-changing server conversation.
    ops: tokio::sync::Mutex<()>,
    last_activity: Mutex<Instant>,
    tokens: Mutex<HashMap<String, CachedToken>>,
    events: broadcast::Sender<BrokerEvent>,
    hooks: Hooks,
    hook_runner: HookRunner,
    link: Arc<Link>,
    /// What answers FIDO2 key taps, if this workstation has one.
    fido2: Mutex<Option<Arc<dyn Authenticator>>>,
    /// A key tap waiting for the key's PIN.
    key_pin: Mutex<Option<KeyPinWait>>,
    /// Told when a new ticket is held, so that the desk channel is opened
    /// again naming it: a session revoked a moment after the tap is then
    /// reported too, however short-lived its attachment.
    desk_renew: Arc<Notify>,
    /// The lock screen's view of the agent.
    desk: DeskLink,
    /// Cancelled when the last handle goes: ends the background tasks.
    _stop: DropGuard,
}

/// The workstation agent. Create it inside a Tokio runtime.
#[derive(Debug, Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl Agent {
    /// An agent for the enrolled workstation `config` describes (its key
    /// file is read now, so a missing key is an error at start-up).
    pub fn new(config: AgentConfig) -> Result<Self, AgentError> {
        config.validate()?;
        let enrolment = config.enrolment()?;
        let key = crate::keys::load_key(&config.key_path())?;
        let signer = Signer::new(key, enrolment.workstation_id, enrolment.server);
        let client = ServerClient::new(signer, config.request_timeout)?;
        let name = enrolment.name;
        let agent = Self::with_client(client, name, &config);
        if let Some(path) = config.fido2_software_key_path() {
            agent.set_key_reader(Arc::new(SoftwareKey::load(&path)?));
        }
        Ok(agent)
    }

    /// An agent around an existing client (tests, or a key kept elsewhere).
    pub fn with_client(client: ServerClient, workstation: String, config: &AgentConfig) -> Self {
        let stop = CancellationToken::new();
        let client = Arc::new(client);
        let link = Arc::new(Link {
            server: client.server().to_string(),
            reports: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            down: AtomicBool::new(false),
            changed: Notify::new(),
        });
        tokio::spawn(link_task(client.clone(), link.clone(), stop.clone()));
        let desk_stop = stop.clone();
        let desk_renew = Arc::new(Notify::new());
        let hooks = Hooks::new(config.hooks.clone());
        let hook_runner = HookRunner::spawn(hooks.clone(), stop.clone());
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let agent = Self {
            inner: Arc::new(Inner {
                client,
                workstation,
                idle_timeout: config.idle_timeout,
                debounce: config.debounce,
                machine: Mutex::new(Machine::new()),
                ops: tokio::sync::Mutex::new(()),
                last_activity: Mutex::new(Instant::now()),
                tokens: Mutex::new(HashMap::new()),
                events,
                hooks,
                hook_runner,
                link,
                fido2: Mutex::new(None),
                key_pin: Mutex::new(None),
                desk_renew: desk_renew.clone(),
                desk: DeskLink::default(),
                _stop: stop.drop_guard(),
            }),
        };
        tokio::spawn(desk_task(Arc::downgrade(&agent.inner), desk_renew, desk_stop.clone()));
        tokio::spawn(screen_task(Arc::downgrade(&agent.inner), desk_stop));
        agent
    }

    /// The digest of the session ticket held now, as the server keys it
    /// (SHA-256, base64url), if someone is signed in.
    fn held_ticket(&self) -> Option<String> {
        match lock(&self.inner.machine).phase() {
            Phase::Active(a) => Some(ticket_digest(secrecy::ExposeSecret::expose_secret(&a.ticket))),
            _ => None,
        }
    }

    /// The server says the attachment of ticket `gone` has ended elsewhere
    /// (revoked, disabled, logged out): lock, if that is still the ticket
    /// held here.
    async fn desk_lock(&self, gone: &str) {
        let _op = self.inner.ops.lock().await;
        if self.held_ticket().as_deref() == Some(gone) {
            tracing::info!("the server ended this workstation's session: locking");
            self.transition(Input::TicketRejected).await;
        }
    }

    /// This workstation's name.
    pub fn workstation(&self) -> &str {
        &self.inner.workstation
    }

    /// What the broker's `GET /v1/session` shows.
    pub fn state(&self) -> SessionInfo {
        lock(&self.inner.machine).info(&self.inner.workstation)
    }

    /// The lock screen's side of the agent.
    pub fn desk(&self) -> &DeskLink {
        &self.inner.desk
    }

    /// The lock screen shows the desktop for screen `seq`: report the
    /// clinician's tap-to-desktop wait, if this ends one.
    pub fn desk_shown(&self, seq: u64) {
        if let Some(waited) = self.inner.desk.shown(seq) {
            let seconds = waited.as_secs_f64();
            tracing::info!(seconds, "tap to desktop");
            self.inner.link.queue_report(seconds);
        }
    }

    /// Show the current state on the lock screen, with `message`.
    fn show(&self, info: &SessionInfo, message: Option<(&str, bool)>) {
        let key_pin = self.key_pin_deadline().is_some();
        self.inner.desk.show(info, key_pin, self.server_unreachable(), message);
    }

    /// Broker events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<BrokerEvent> {
        self.inner.events.subscribe()
    }

    /// Tap-to-active reports not yet delivered.
    pub fn pending_reports(&self) -> usize {
        lock(&self.inner.link.reports).len()
    }

    /// Whether the agent currently believes the server unreachable.
    pub fn server_unreachable(&self) -> bool {
        self.inner.link.down.load(Ordering::SeqCst)
    }

    /// The clinician is still there (a tap, a PIN, or input the desktop
    /// reports): push the idle lock back.
    pub fn touch(&self) {
        *lock(&self.inner.last_activity) = Instant::now();
    }

    /// When the idle lock is due, if someone is signed in.
    pub fn idle_deadline(&self) -> Option<Instant> {
        match lock(&self.inner.machine).phase() {
            Phase::Active(_) => Some(*lock(&self.inner.last_activity) + self.inner.idle_timeout),
            _ => None,
        }
    }

    /// When the open PIN prompt lapses.
    pub fn pin_deadline(&self) -> Option<Instant> {
        match lock(&self.inner.machine).phase() {
            Phase::PinRequired(p) => Some(p.deadline),
            _ => None,
        }
    }

    /// Answer FIDO2 key taps with `key` (a software key, or a reader).
    pub fn set_key_reader(&self, key: Arc<dyn Authenticator>) {
        *lock(&self.inner.fido2) = Some(key);
    }

    /// A FIDO2 key was tapped at `read_at`: it answers the server's
    /// challenge and the clinician is in at the security-key `acr` (no PIN).
    /// Refusals and key failures leave the workstation as it was.
    /// A key that checks its holder by PIN answers
    /// [`Fido2Error::PinRequired`](crate::fido2::Fido2Error::PinRequired):
    /// the agent then waits [`KEY_PIN_TIMEOUT`] for [`Self::submit_key_pin`].
    pub async fn handle_key_tap_at(&self, read_at: Instant) -> Result<SessionInfo, AgentError> {
        self.key_tap(read_at, None).await
    }

    /// The PIN of the key tapped last (the key still on the reader).
    pub async fn submit_key_pin(&self, pin: SecretString) -> Result<SessionInfo, AgentError> {
        let wait = lock(&self.inner.key_pin).take().ok_or(AgentError::NoPinPending)?;
        self.key_tap(wait.read_at, Some(pin)).await
    }

    /// When the key PIN being waited for lapses.
    pub fn key_pin_deadline(&self) -> Option<Instant> {
        lock(&self.inner.key_pin).map(|w| w.deadline)
    }

    async fn key_tap(&self, read_at: Instant, pin: Option<SecretString>) -> Result<SessionInfo, AgentError> {
        let key = lock(&self.inner.fido2).clone().ok_or(AgentError::NoKeyReader)?;
        let _op = self.inner.ops.lock().await;
        self.touch();
        let result = match self.inner.client.key_tap(key, pin).await {
            Ok(answer) => Ok(answer),
            Err(KeyTapError::Key(e)) => {
                let deadline = Instant::now() + KEY_PIN_TIMEOUT;
                *lock(&self.inner.key_pin) = e.wants_pin().then_some(KeyPinWait { read_at, deadline });
                return Err(AgentError::Fido2(e));
            }
            Err(KeyTapError::Server(e)) => Err(e),
        };
        *lock(&self.inner.key_pin) = None;
        self.settle(result, read_at, "staying as it was, retrying").await
    }

    /// A badge was read just now.
    pub async fn handle_tap(&self, badge: &str) -> Result<SessionInfo, AgentError> {
        self.handle_tap_at(badge, Instant::now()).await
    }

    /// A badge was read at `read_at` (the start of tap-to-active).
    /// On success, the state it led to; on an error, the workstation is in
    /// the state the error left it (unchanged for a refusal, locked when
    /// the server could not be asked).
    pub async fn handle_tap_at(&self, badge: &str, read_at: Instant) -> Result<SessionInfo, AgentError> {
        let _op = self.inner.ops.lock().await;
        // A badge instead of the key's PIN: the key tap is abandoned.
        *lock(&self.inner.key_pin) = None;
        self.touch();
        let before = self.state().state;
        let was_active = before == WorkstationState::Active;
        let mut result = self.inner.client.tap(badge).await;
        if before == WorkstationState::Locked && matches!(result, Ok(TapResponse::Locked)) {
            // The server still attached this clinician here (the agent
            // locked while it could not tell the server): that tap only
            // detached them. A tap on a locked screen always means
            // "let me in", so tap once more for them.
            tracing::debug!("the server held a stale session for this workstation; tapping again");
            result = self.inner.client.tap(badge).await;
        }
        let consequence =
            if was_active { "locked this workstation to be safe; retrying" } else { "staying locked, retrying" };
        self.settle(result, read_at, consequence).await
    }

    /// Move the state machine on the server's answer to a tap read at
    /// `read_at` (or its failure, reported as leading to `consequence`).
    async fn settle(
        &self,
        result: Result<TapResponse, ServerError>,
        read_at: Instant,
        consequence: &str,
    ) -> Result<SessionInfo, AgentError> {
        self.inner.link.note(&result, consequence);
        let input = match &result {
            Ok(answer) => Input::TapAnswer { answer: answer.clone(), read_at },
            Err(e) if e.is_refusal() => Input::TapRefused,
            Err(_) => Input::Unreachable,
        };
        let info = self.transition(input).await;
        result.map(|_| info).map_err(AgentError::Server)
    }

    /// Enrol an unknown badge for the clinician at the keyboard with their
    /// username and password (after a tap answered `unknown_badge`, where
    /// the server allows self-enrolment); on success they are signed in.
    pub async fn self_enrol(
        &self,
        badge: &str,
        username: &str,
        password: SecretString,
    ) -> Result<SessionInfo, AgentError> {
        let _op = self.inner.ops.lock().await;
        self.touch();
        let read_at = Instant::now();
        let result = self.inner.client.self_enrol(badge, username, &password).await;
        self.settle(result, read_at, "staying locked, retrying").await
    }

    /// The PIN for the open prompt. A wrong PIN leaves the prompt open;
    /// other refusals close it.
    pub async fn submit_pin(&self, pin: SecretString) -> Result<SessionInfo, AgentError> {
        let _op = self.inner.ops.lock().await;
        let tap_id = match lock(&self.inner.machine).phase() {
            Phase::PinRequired(p) => p.tap_id.clone(),
            _ => return Err(AgentError::NoPinPending),
        };
        self.touch();
        let result = self.inner.client.pin(&tap_id, &pin).await;
        self.inner.link.note(&result, "staying locked, retrying");
        let input = match &result {
            Ok(answer) => Input::PinAnswer(answer.clone()),
            // A PIN too short to be anyone's cost no attempt: ask again.
            Err(e) if matches!(e.code(), Some("wrong_pin" | "pin_too_short")) => Input::PinWrong,
            Err(e) if e.is_refusal() => Input::PinRefused,
            Err(_) => Input::Unreachable,
        };
        let info = self.transition(input).await;
        result.map(|_| info).map_err(AgentError::Server)
    }

    /// Lock the workstation (`POST /tap/out`), or with `logout` sign the
    /// clinician out everywhere. The workstation locks even when the server
    /// cannot be told.
    pub async fn lock(&self, logout: bool) -> Result<SessionInfo, AgentError> {
        let _op = self.inner.ops.lock().await;
        self.tap_out_and_lock(logout).await
    }

    /// [`Agent::lock`] with the operation lock already held.
    async fn tap_out_and_lock(&self, logout: bool) -> Result<SessionInfo, AgentError> {
        let result = self.inner.client.tap_out(logout).await;
        self.inner.link.note(&result, "locked this workstation anyway; retrying");
        if matches!(
            &result,
            Ok(TapResponse::Active { .. } | TapResponse::Switched { .. } | TapResponse::PinRequired { .. })
        ) {
            tracing::warn!("the server answered a tap-out with a state other than locked; locked anyway");
        }
        let info = self.transition(Input::LockedLocally).await;
        result.map(|_| info).map_err(AgentError::Server)
    }

    /// Lock if the idle time has passed (checked under the operation lock:
    /// a tap may have come in meanwhile). Returns whether it locked.
    pub async fn lock_if_idle(&self) -> bool {
        let _op = self.inner.ops.lock().await;
        match self.idle_deadline() {
            Some(deadline) if Instant::now() >= deadline => {
                tracing::info!(idle = ?self.inner.idle_timeout, "no activity: locking the workstation");
                if let Err(e) = self.tap_out_and_lock(false).await {
                    tracing::debug!(error = %e, "the server was not told of the idle lock");
                }
                true
            }
            _ => false,
        }
    }

    /// Close the PIN prompt if its time is up. Returns whether it did.
    pub async fn expire_pin_if_due(&self) -> bool {
        let _op = self.inner.ops.lock().await;
        match self.pin_deadline() {
            Some(deadline) if Instant::now() >= deadline => {
                tracing::info!("the PIN was not entered in time: tap your badge again");
                self.transition(Input::PinTimedOut).await;
                true
            }
            _ => false,
        }
    }

    /// Stop waiting for a key's PIN if its time is up. Returns whether it did.
    pub fn expire_key_pin_if_due(&self) -> bool {
        let mut wait = lock(&self.inner.key_pin);
        let due = wait.is_some_and(|w| Instant::now() >= w.deadline);
        if due {
            tracing::info!("the key's PIN was not entered in time");
            *wait = None;
        }
        due
    }

    /// A one-time URL that opens the browser EPR `client_id` signed in as
    /// the clinician at the keyboard.
    pub async fn handoff(&self, client_id: &str) -> Result<HandoffResponse, AgentError> {
        if self.state().state != WorkstationState::Active {
            return Err(AgentError::NotActive);
        }
        let result = self.inner.client.handoff(client_id).await;
        self.inner.link.note(&result, "retrying");
        result.map_err(AgentError::Server)
    }

    /// Tokens for the EPR app `client_id`, for the clinician at the
    /// keyboard: from the cache while fresh, else by token exchange with the
    /// session ticket.
    pub async fn token(&self, client_id: &str) -> Result<TokenResponse, TokenError> {
        let (generation, ticket) = match lock(&self.inner.machine).phase() {
            Phase::Active(a) => (a.generation, a.ticket.clone()),
            Phase::PinRequired(_) => return Err(TokenError::PinRequired),
            Phase::Locked => return Err(TokenError::Locked),
        };
        if let Some(hit) = lock(&self.inner.tokens).get(client_id)
            && hit.generation == generation
            && Instant::now() < hit.fresh_until
        {
            return Ok(hit.response.clone());
        }
        let asked_at = Instant::now();
        let result = self.inner.client.token_exchange(&ticket, client_id).await;
        self.inner.link.note(&result, "desktop apps cannot get tokens until it is back; retrying");
        match result {
            Ok(response) => {
                let machine = lock(&self.inner.machine);
                if !matches!(machine.phase(), Phase::Active(a) if a.generation == generation) {
                    return Err(TokenError::Changed);
                }
                // Cached under the machine lock: a lock or switch either
                // happened before (and the check above failed) or will
                // purge this entry after.
                let lifetime = Duration::from_secs(response.expires_in);
                if lifetime > TOKEN_REFRESH_MARGIN {
                    let fresh_until = asked_at + (lifetime - TOKEN_REFRESH_MARGIN);
                    let entry = CachedToken { response: response.clone(), generation, fresh_until };
                    lock(&self.inner.tokens).insert(client_id.to_string(), entry);
                }
                drop(machine);
                Ok(response)
            }
            Err(e) if e.code() == Some("invalid_grant") => {
                // The server no longer honours the ticket: the session was
                // locked, switched or ended elsewhere. Follow it, unless
                // someone else has signed in here meanwhile.
                tracing::info!(error = %e, "the session ticket was refused: locking");
                let _op = self.inner.ops.lock().await;
                let current =
                    matches!(lock(&self.inner.machine).phase(), Phase::Active(a) if a.generation == generation);
                if current {
                    self.transition(Input::TicketRejected).await;
                }
                Err(TokenError::Locked)
            }
            Err(e) if e.is_refusal() => Err(TokenError::Refused(e)),
            Err(e) => Err(TokenError::Unavailable(e)),
        }
    }

    /// Apply `input` and carry out its effects (hooks in the background).
    async fn transition(&self, input: Input) -> SessionInfo {
        let (effects, info) = self.apply(input);
        if let Some(hook) = effects.hook.clone() {
            self.inner.hook_runner.fire(hook);
        }
        if effects.detach_at_server {
            self.detach().await;
        }
        info
    }

    /// Apply `input` and carry out the effects that cannot wait; the hook
    /// and the detach are left to the caller.
    fn apply(&self, input: Input) -> (Effects, SessionInfo) {
        let (effects, info) = {
            let mut machine = lock(&self.inner.machine);
            let effects = machine.apply(input, Instant::now());
            (effects, machine.info(&self.inner.workstation))
        };
        if effects.purge_tokens {
            lock(&self.inner.tokens).clear();
        }
        if let Some(event) = &effects.event {
            match event {
                BrokerEvent::Lock => tracing::info!("workstation locked"),
                BrokerEvent::Unlock { user } => tracing::info!(user = %user.username, "workstation unlocked"),
                BrokerEvent::Switch { user, previous } => {
                    tracing::info!(user = %user.username, previous = %previous.username, "workstation switched user")
                }
            }
            if matches!(event, BrokerEvent::Unlock { .. } | BrokerEvent::Switch { .. }) {
                self.inner.desk_renew.notify_one();
            }
            // No subscriber is fine: nobody to tell.
            let _ = self.inner.events.send(event.clone());
        }
        self.show(&info, None);
        if let Some(waited) = effects.tap_to_active {
            let seconds = waited.as_secs_f64();
            tracing::info!(seconds, "tap to active");
            if self.inner.desk.attached() {
                // Reported when the lock screen shows the desktop.
                if let Some(read_at) = Instant::now().checked_sub(waited) {
                    self.inner.desk.unlocked(read_at);
                }
            } else if seconds <= 3600.0 {
                self.inner.link.queue_report(seconds);
            }
        }
        if info.state == WorkstationState::PinRequired
            && let Some(user) = &info.user
        {
            tracing::info!(user = %user.username, "PIN required");
        }
        (effects, info)
    }

    /// Tell the server to drop this workstation's attachment (a session the
    /// workstation no longer shows). One short try: if it fails, the
    /// server's own ticket expiry ends it.
    async fn detach(&self) {
        match tokio::time::timeout(DETACH_TIMEOUT, self.inner.client.tap_out(false)).await {
            Ok(Ok(_)) => tracing::debug!("server told to detach the hidden session"),
            Ok(Err(e)) => tracing::debug!(error = %e, "could not tell the server to detach"),
            Err(_) => tracing::debug!("no answer to the detach in time"),
        }
    }

    /// Lock before the agent stops: nobody would guard an unlocked desktop
    /// once it is gone. The lock hook is awaited, not queued.
    pub async fn lock_for_shutdown(&self) {
        let _op = self.inner.ops.lock().await;
        let attached = match lock(&self.inner.machine).phase() {
            Phase::Active(_) => true,
            Phase::PinRequired(p) => p.previous.is_some(),
            Phase::Locked => false,
        };
        if attached {
            self.detach().await;
        }
        let (effects, _) = self.apply(Input::LockedLocally);
        if let Some(hook) = effects.hook {
            run_hook_now(&self.inner.hooks, &hook).await;
        }
    }

    /// The reader loop: taps from `badges`, PINs from `pins`, the idle lock
    /// and PIN timeouts, until `shutdown`; then the workstation is locked.
    pub async fn run(&self, mut badges: Lines, mut pins: PinSource, shutdown: CancellationToken) {
        let mut debouncer = Debouncer::new(self.inner.debounce);
        let mut badges_open = true;
        let mut prompted: Option<String> = None;
        // The badge whose tap opened the PIN prompt: read again, it is a
        // new tap, not a (wrong) PIN costing the clinician an attempt.
        let mut prompting_badge: Option<String> = None;
        // PINs typed on the lock screen's pad.
        let mut pad = self.inner.desk.take_pins();
        self.warm_up();
        loop {
            // A badge's PIN for the server, or a security key's own PIN.
            let pin_deadline = match (self.pin_deadline(), self.key_pin_deadline()) {
                (Some(badge), Some(key)) => Some(badge.min(key)),
                (badge, key) => badge.or(key),
            };
            let idle_deadline = self.idle_deadline();
            self.prompt(&pins, &mut prompted);
            let pin_wanted = pin_deadline.is_some();
            if !pin_wanted {
                prompting_badge = None;
            }
            let pins_from_reader = pins.is_reader();
            let far = Instant::now() + Duration::from_secs(24 * 3600);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                line = badges.next(), if badges_open => match line {
                    None => {
                        badges_open = false;
                        tracing::warn!("the badge reader has closed: no more taps will be read");
                    }
                    Some(line) => {
                        let now = Instant::now();
                        if line == KEY_TAP_LINE {
                            // A key placed on the reader (PC/SC sends this
                            // once per placing): always a new tap, never a
                            // PIN or a repeat.
                            self.tap_line(&line, now, &pins).await;
                        } else if pin_wanted && pins_from_reader {
                            // The badge still lying on the reader is not the
                            // PIN. (A PIN is never recorded by the debouncer.)
                            if debouncer.is_repeat(&line, now) {
                                debouncer.accept(&line, now);
                                tracing::debug!("ignored a repeated badge read while waiting for the PIN");
                                continue;
                            }
                            if prompting_badge.as_deref() == Some(line.as_str()) {
                                debouncer.accept(&line, now);
                                self.tap_line(&line, now, &pins).await;
                                continue;
                            }
                            self.pin_line(SecretString::from(line), &pins, &mut prompted).await;
                        } else if debouncer.accept(&line, now) {
                            self.tap_line(&line, now, &pins).await;
                            if self.pin_deadline().is_some() {
                                prompting_badge = Some(line);
                            }
                        } else {
                            tracing::debug!("ignored a repeated read of the same badge");
                        }
                    }
                },
                Some(pin) = next_pad_pin(&mut pad) => {
                    if pin_wanted {
                        self.pin_line(pin, &pins, &mut prompted).await;
                    } else {
                        tracing::info!("ignored a PIN from the lock screen when none was asked for");
                    }
                }
                line = pins.next_line(), if !pins_from_reader => {
                    if pin_wanted {
                        self.pin_line(SecretString::from(line), &pins, &mut prompted).await;
                    } else {
                        tracing::info!("ignored a line typed when no PIN was asked for");
                    }
                }
                _ = tokio::time::sleep_until(pin_deadline.unwrap_or(far)), if pin_wanted => {
                    if self.expire_pin_if_due().await {
                        self.say(&pins, "The PIN was not entered in time. Tap your badge again.", true);
                    }
                    if self.expire_key_pin_if_due() {
                        self.say(&pins, "The key's PIN was not entered in time. Tap your key again.", true);
                    }
                }
                _ = tokio::time::sleep_until(idle_deadline.unwrap_or(far)), if idle_deadline.is_some() => {
                    self.lock_if_idle().await;
                }
            }
        }
        self.lock_for_shutdown().await;
    }

    /// Open the connection to the server before the first tap (the TLS
    /// handshake then never lands on the hot path) and find out early
    /// whether it is reachable.
    fn warm_up(&self) {
        let client = self.inner.client.clone();
        let link = self.inner.link.clone();
        tokio::spawn(async move {
            let result = client.healthz().await;
            link.note(&result, "staying locked, retrying");
        });
    }

    /// Show the PIN prompt once per tap.
    fn prompt(&self, pins: &PinSource, prompted: &mut Option<String>) {
        let machine = lock(&self.inner.machine);
        let Phase::PinRequired(p) = machine.phase() else {
            *prompted = None;
            return;
        };
        if prompted.as_deref() == Some(p.tap_id.as_str()) {
            return;
        }
        *prompted = Some(p.tap_id.clone());
        let who = p.user.name.as_deref().unwrap_or(&p.user.username);
        if pins.is_terminal() {
            eprint!("{who}, please enter your PIN and press Enter: ");
        } else {
            tracing::info!(user = %p.user.username, "waiting for the PIN on the next line");
        }
    }

    async fn tap_line(&self, badge: &str, read_at: Instant, pins: &PinSource) {
        let tapped = if badge == KEY_TAP_LINE {
            self.handle_key_tap_at(read_at).await
        } else {
            self.handle_tap_at(badge, read_at).await
        };
        self.report_tap(pins, tapped);
    }

    async fn pin_line(&self, pin: SecretString, pins: &PinSource, prompted: &mut Option<String>) {
        if self.key_pin_deadline().is_some() {
            self.report_tap(pins, self.submit_key_pin(pin).await);
            return;
        }
        match self.submit_pin(pin).await {
            Ok(info) => self.greet(pins, &info),
            Err(AgentError::Server(e)) if matches!(e.code(), Some("wrong_pin" | "pin_too_short")) => {
                tracing::warn!("PIN refused: {e}");
                self.say(pins, &e.to_string(), true);
                // Ask again.
                *prompted = None;
            }
            Err(AgentError::Server(e)) if e.is_refusal() => {
                tracing::warn!(code = e.code().unwrap_or(""), "PIN refused: {e}");
                self.say(pins, &e.to_string(), true);
            }
            Err(e) => {
                tracing::debug!(error = %e, "PIN not checked");
                self.say(pins, SERVER_UNREACHABLE, true);
            }
        }
    }

    /// Tell the person at the keyboard how a tap went.
    fn report_tap(&self, pins: &PinSource, tapped: Result<SessionInfo, AgentError>) {
        match tapped {
            Ok(info) => self.greet(pins, &info),
            Err(AgentError::Fido2(e)) if e.wants_pin() => {
                tracing::info!("waiting for the security key's PIN: {e}");
                self.say(pins, &e.to_string(), false);
            }
            Err(e @ (AgentError::NoKeyReader | AgentError::Fido2(_))) => {
                tracing::warn!("key tap failed: {e}");
                self.say(pins, &e.to_string(), true);
            }
            Err(AgentError::Server(e)) if e.is_refusal() => {
                tracing::warn!(code = e.code().unwrap_or(""), "tap refused: {e}");
                self.say(pins, &e.to_string(), true);
            }
            // The log line is written once per outage; the person at the
            // keyboard hears it on every tap.
            Err(e) => {
                tracing::debug!(error = %e, "tap failed");
                self.say(pins, SERVER_UNREACHABLE, true);
            }
        }
    }

    /// Tell the person at the keyboard where they are now (the PIN prompt
    /// speaks for itself).
    fn greet(&self, pins: &PinSource, info: &SessionInfo) {
        match (info.state, &info.user) {
            (WorkstationState::Active, Some(user)) => {
                self.say(pins, &format!("Signed in: {}.", user.name.as_deref().unwrap_or(&user.username)), false)
            }
            (WorkstationState::Locked, _) => self.say(pins, "Locked.", false),
            _ => {}
        }
    }

    /// A sentence for the person at the keyboard: on the lock screen, and
    /// on the terminal when there is one. `alert` when it is a problem.
    fn say(&self, pins: &PinSource, sentence: &str, alert: bool) {
        self.show(&self.state(), Some((sentence, alert)));
        if pins.is_terminal() {
            eprintln!("{sentence}");
        }
    }
}

/// The next PIN typed on the lock screen's pad; never ready without one.
async fn next_pad_pin(pad: &mut Option<tokio::sync::mpsc::Receiver<SecretString>>) -> Option<SecretString> {
    match pad {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn run_hook_now(hooks: &Hooks, call: &HookCall) {
    crate::hooks::run_logged(hooks, call).await;
}

/// The ticket digest the server keys attachments by.
fn ticket_digest(ticket: &str) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ticket.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// Keep the desk channel open (`POST /tap/events`), reconnecting with
/// backoff, and lock when the server says the session here has ended
/// elsewhere; ends with the agent (it holds the agent weakly for that).
async fn desk_task(agent: std::sync::Weak<Inner>, renew: Arc<Notify>, stop: CancellationToken) {
    let mut backoff = BACKOFF_START;
    loop {
        let Some(inner) = agent.upgrade() else { return };
        let this = Agent { inner };
        let client = this.inner.client.clone();
        let held = this.held_ticket();
        drop(this);
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            opened = client.desk_channel(held) => opened,
        };
        match opened {
            Ok(mut channel) => {
                backoff = BACKOFF_START;
                let renewed = loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = renew.notified() => break true,
                        next = channel.next() => next,
                    };
                    let Some(event) = next else { break false };
                    let Some(inner) = agent.upgrade() else { return };
                    Agent { inner }.desk_lock(&event.ticket_digest).await;
                };
                if !renewed {
                    // Reopened a moment later (what is held is sent again,
                    // so nothing said meanwhile is missed).
                    tracing::debug!("the desk channel ended; reopening it");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(BACKOFF_START) => {}
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot open the desk channel; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }
}

/// Deliver reports and, while the server is unreachable, probe it, with
/// exponential backoff; ends with the agent.
/// Keep the lock screen's "server unreachable" true to the link: say when
/// it is back, without waiting for a tap. Ends with the agent.
async fn screen_task(agent: std::sync::Weak<Inner>, stop: CancellationToken) {
    loop {
        let Some(inner) = agent.upgrade() else { return };
        let link = inner.link.clone();
        drop(inner);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = link.changed.notified() => {}
        }
        let Some(inner) = agent.upgrade() else { return };
        let this = Agent { inner };
        let back = !this.server_unreachable();
        let info = this.state();
        if back && info.state == WorkstationState::Locked {
            this.show(&info, Some(("The Wardkey server is reachable again. Tap your badge.", false)));
        } else {
            this.show(&info, None);
        }
    }
}

async fn link_task(client: Arc<ServerClient>, link: Arc<Link>, stop: CancellationToken) {
    let mut backoff = BACKOFF_START;
    loop {
        let report = lock(&link.reports).front().copied();
        if report.is_none() && !link.down.load(Ordering::SeqCst) {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = link.wake.notified() => continue,
            }
        }
        let result = match report {
            Some(seconds) => client.report(seconds).await,
            None => client.healthz().await,
        };
        match result {
            Ok(()) => {
                if report.is_some() {
                    lock(&link.reports).pop_front();
                }
                link.succeeded();
                backoff = BACKOFF_START;
            }
            Err(e) if e.is_transient() => {
                link.failed(&e, "will keep retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
            Err(e) => {
                // Answered but refused: retrying the same thing will not help.
                if report.is_some() {
                    lock(&link.reports).pop_front();
                    tracing::warn!(error = %e, "the server refused a tap-to-active report; dropped");
                }
                link.succeeded();
                backoff = BACKOFF_START;
            }
        }
    }
}
