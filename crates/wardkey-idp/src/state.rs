//! What handlers receive: the services, built once at start-up.
//!
//! [`AppState`] holds services and does nothing itself. Each service owns
//! what it uses (its cache, store, clock and settings) and is tested on its
//! own; a handler takes the fields it needs (`state.sessions`,
//! `state.clients`, …) or, where one part is enough, a `FromRef` substate
//! (`State<Arc<Metrics>>`, `State<Arc<Settings>>`).
//!
//! One `Arc` around the whole: a request clones the state once (one
//! atomic increment), not once per service.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use wardkey_cache::Cache;
use wardkey_core::clock::SharedClock;
use wardkey_store::Store;

use crate::admission::Admission;
use crate::attachments::Attachments;
use crate::audit::AuditLog;
use crate::backchannel::Logouts;
use crate::client_auth::ClientAuthenticator;
use crate::config::Settings;
use crate::cookies::Cookies;
use crate::desks::Desks;
use crate::directory::Directory;
use crate::keys::Keyring;
use crate::logins::PasswordLogins;
use crate::metrics::Metrics;
use crate::passkeys::Passkeys;
use crate::password::PasswordChecker;
use crate::sessions::Sessions;
use crate::signins::SignIns;
use crate::tokens::TokenIssuer;
use crate::workstation_auth::WorkstationAuthenticator;

/// The shared state: every service, behind one `Arc`. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// What the services are built from: the server's outside world.
pub struct Foundations {
    /// Validated settings.
    pub settings: Settings,
    /// Durable directory.
    pub store: Arc<dyn Store>,
    /// Session cache.
    pub cache: Arc<dyn Cache>,
    /// Wall clock, injectable for tests.
    pub clock: SharedClock,
    /// Signing keys.
    pub keys: Arc<Keyring>,
    /// Key of the badge UID digests (HMAC), shared by every node via the store.
    pub badge_key: Arc<[u8]>,
    /// Outbound HTTP (client JWKS, back-channel logout).
    pub http: reqwest::Client,
    /// The WebAuthn relying party, when the issuer has a host name.
    pub webauthn: Option<Arc<webauthn_rs::prelude::Webauthn>>,
    /// The security-key models the trust approves, if listed.
    pub attestation: Option<Arc<webauthn_rs::prelude::AttestationCaList>>,
    /// The trust's directories (`[directory]`), ready to connect.
    pub directories: wardkey_directory::Directories,
}

/// The services. Fields are public so a handler names exactly what it uses.
pub struct Services {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// The issuer URL, without trailing slash (OIDC Core §2).
    pub issuer: Arc<str>,
    /// Durable directory, for what no service below wraps (admin-style
    /// reads and writes of one row).
    pub store: Arc<dyn Store>,
    /// Session cache, for the tap hot path's batched round trips.
    pub cache: Arc<dyn Cache>,
    /// Wall clock, injectable for tests.
    pub clock: SharedClock,
    /// Signing keys.
    pub keys: Arc<Keyring>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Key of the badge UID digests (HMAC).
    pub badge_key: Arc<[u8]>,
    /// Outbound HTTP (client JWKS, back-channel logout).
    pub http: reqwest::Client,
    /// Bounds on what anonymous callers can make the server keep.
    pub admission: Arc<Admission>,
    /// Hot-path reads of the store that survive a store outage.
    pub directory: Arc<Directory>,
    /// SSO sessions, pending authorizations, codes, revocations.
    pub sessions: Sessions,
    /// Who is at which workstation.
    pub attachments: Attachments,
    /// EPR client authentication.
    pub clients: ClientAuthenticator,
    /// Workstation request signatures.
    pub workstations: WorkstationAuthenticator,
    /// Minting tokens.
    pub tokens: TokenIssuer,
    /// Ending sessions and back-channel logout.
    pub logouts: Logouts,
    /// Unlocking workstations.
    pub desks: Desks,
    /// Password sign-in verdicts.
    pub logins: PasswordLogins,
    /// WebAuthn ceremonies and key levels.
    pub passkeys: Passkeys,
    /// The cookies we set.
    pub cookies: Cookies,
    /// The audit log.
    pub audit: AuditLog,
    /// Sign-ins measured, counted and recorded.
    pub signins: SignIns,
}

impl AppState {
    /// Build every service from `base`.
    pub fn new(base: Foundations) -> Self {
        let Foundations { settings, store, cache, clock, keys, badge_key, http, webauthn, attestation, directories } =
            base;
        let issuer: Arc<str> = settings.issuer().into();
        let cookies = Cookies::new(settings.is_https());
        let passwords = Arc::new(PasswordChecker::new(settings.password.argon2(), settings.password.max_concurrent));
        let admission = Arc::new(Admission::new(cache.clone(), settings.limits.clone()));
        let clock_skew = settings.oidc.clock_skew;
        let settings = Arc::new(settings);
        let metrics = Arc::new(Metrics::default());
        let audit = AuditLog::spawn(store.clone(), clock.clone(), metrics.clone());
        let signins = SignIns { metrics: metrics.clone(), audit: audit.clone(), baselines: settings.metrics.clone() };
        let directory = Arc::new(Directory::new(store.clone(), cache.clone()));
        let sessions = Sessions::new(cache.clone(), store.clone(), clock.clone(), settings.clone());
        let attachments = Attachments::new(cache.clone(), settings.clone());
        let clients = ClientAuthenticator {
            directory: directory.clone(),
            cache: cache.clone(),
            clock: clock.clone(),
            settings: settings.clone(),
            issuer: issuer.clone(),
            http: http.clone(),
            jwks_cache: Arc::default(),
        };
        let workstations = WorkstationAuthenticator {
            directory: directory.clone(),
            cache: cache.clone(),
            clock: clock.clone(),
            issuer: issuer.clone(),
            clock_skew,
        };
        let tokens = TokenIssuer {
            issuer: issuer.clone(),
            keys: keys.clone(),
            cache: cache.clone(),
            clock: clock.clone(),
            settings: settings.clone(),
        };
        let logouts = Logouts {
            sessions: sessions.clone(),
            attachments: attachments.clone(),
            cache: cache.clone(),
            store: store.clone(),
            keys: keys.clone(),
            issuer: issuer.clone(),
            http: http.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            settings: settings.clone(),
            wake: Arc::default(),
        };
        let desks = Desks {
            attachments: attachments.clone(),
            logouts: logouts.clone(),
            metrics: metrics.clone(),
            audit: audit.clone(),
            settings: settings.clone(),
        };
        let logins = PasswordLogins {
            directories,
            store: store.clone(),
            audit: audit.clone(),
            cache: cache.clone(),
            directory: directory.clone(),
            passwords,
            admission: admission.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            settings: settings.clone(),
        };
        let passkeys = Passkeys {
            webauthn,
            attestation,
            audit: audit.clone(),
            cache: cache.clone(),
            store: store.clone(),
            clock: clock.clone(),
            settings: settings.clone(),
        };
        Self(Arc::new(Services {
            settings,
            issuer,
            store,
            cache,
            clock,
            keys,
            metrics,
            badge_key,
            http,
            admission,
            directory,
            sessions,
            attachments,
            clients,
            workstations,
            tokens,
            logouts,
            desks,
            logins,
            passkeys,
            cookies,
            audit,
            signins,
        }))
    }
}

impl AppState {
    /// The same services over another cache (a fresh node-local directory
    /// and metrics): how tests and benchmarks count cache round trips.
    pub fn with_cache(&self, cache: Arc<dyn Cache>) -> Self {
        let (webauthn, attestation) = self.passkeys.foundations();
        Self::new(Foundations {
            settings: Settings::clone(&self.settings),
            store: self.store.clone(),
            cache,
            clock: self.clock.clone(),
            keys: self.keys.clone(),
            badge_key: self.badge_key.clone(),
            http: self.http.clone(),
            webauthn,
            attestation,
            directories: self.logins.directories.clone(),
        })
    }
}

impl Services {
    /// The directory sync's view of the services.
    pub fn directory_sync(&self) -> crate::directory_sync::DirectorySync {
        crate::directory_sync::DirectorySync {
            directories: self.logins.directories.clone(),
            store: self.store.clone(),
            cache: self.cache.clone(),
            directory: self.directory.clone(),
            clock: self.clock.clone(),
            audit: self.audit.clone(),
        }
    }

    /// Current time in Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// An absolute URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

impl FromRef<AppState> for Arc<Settings> {
    fn from_ref(state: &AppState) -> Self {
        state.settings.clone()
    }
}
