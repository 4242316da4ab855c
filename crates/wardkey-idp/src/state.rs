//! Shared server state, passed to handlers through axum's `State`.

use std::sync::Arc;

use wardkey_cache::Cache;
use wardkey_core::clock::SharedClock;
use wardkey_store::Store;

use crate::config::Settings;
use crate::keys::Keyring;
use crate::metrics::Metrics;
use crate::password::PasswordChecker;

/// Everything a handler needs. Cheap to clone (all `Arc`s).
#[derive(Clone)]
pub struct AppState {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// The issuer URL, without trailing slash (OIDC Core §2).
    pub issuer: Arc<str>,
    /// Durable directory.
    pub store: Arc<dyn Store>,
    /// Hot-path reads of the store that survive a store outage.
    pub directory: Arc<crate::directory::Directory>,
    /// Session cache.
    pub cache: Arc<dyn Cache>,
    /// Wall clock, injectable for tests.
    pub clock: SharedClock,
    /// Signing keys.
    pub keys: Arc<Keyring>,
    /// Password hashing off the runtime.
    pub passwords: Arc<PasswordChecker>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Outbound HTTP (client JWKS).
    pub http: reqwest::Client,
    /// Client JWKS fetched from `jwks_uri`.
    pub jwks_cache: Arc<crate::client_auth::JwksCache>,
    /// Key of the badge UID digests (HMAC), shared by every node via the store.
    pub badge_key: Arc<[u8]>,
    /// Wakes the back-channel logout delivery task.
    pub outbox: Arc<crate::backchannel::Outbox>,
    /// The WebAuthn relying party, when the issuer has a host name.
    pub webauthn: Option<Arc<webauthn_rs::prelude::Webauthn>>,
    /// The security-key models the trust approves (`webauthn.approved_models`),
    /// built once at start-up; `None` accepts any security key.
    pub attestation: Option<Arc<webauthn_rs::prelude::AttestationCaList>>,
    /// Bounds on what anonymous callers can make the server keep.
    pub admission: Arc<crate::admission::Admission>,
}

impl AppState {
    /// Current time in Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// An absolute URL on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}
