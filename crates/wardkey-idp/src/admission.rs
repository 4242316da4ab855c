//! Bounds on what anonymous callers can make the server keep.
//!
//! Some requests need no credential and leave a record behind for a while:
//! an authorization request waits 15 minutes for its sign-in, a key sign-in
//! ceremony 5 minutes for its answer, a wrong password for a username that
//! does not exist an hour (so that it is throttled like a real account).
//! Unbounded, anyone can fill the server's memory, or the shared Redis,
//! with them. [`Admission`] counts each kind per client address and in
//! total over the record's lifetime (a fixed window in the cache, so every
//! node counts together) and refuses past the limits: 429 for one address
//! sending too many, 503 when the server as a whole is full.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use wardkey_cache::{Cache, CacheError};

use crate::config::{LimitsSettings, Settings};

/// A kind of record anonymous callers can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// A pending authorization request (`/authorize`).
    SignIn,
    /// A key sign-in ceremony (`/webauthn/login/start`).
    KeyCeremony,
    /// The failure count of a username that does not exist.
    UnknownUser,
}

impl Kept {
    fn name(self) -> &'static str {
        match self {
            Self::SignIn => "sign-in",
            Self::KeyCeremony => "key-ceremony",
            Self::UnknownUser => "unknown-user",
        }
    }

    /// How long such a record lives: the counting window.
    fn window(self) -> Duration {
        match self {
            Self::SignIn => Duration::from_secs(900),
            Self::KeyCeremony => Duration::from_secs(300),
            Self::UnknownUser => Duration::from_secs(3600),
        }
    }
}

/// Why a record was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// This address has made too many lately: 429.
    #[error("Too many sign-ins have been started from this computer. Wait a few minutes, then try again.")]
    TooMany,
    /// The server holds as many as it will: 503.
    #[error("Wardkey is too busy to start another sign-in just now. Try again in a few minutes.")]
    Full,
    /// The cache did not answer.
    #[error("the session cache is unavailable")]
    Cache(#[from] CacheError),
}

/// The counter service (see the module docs).
pub struct Admission {
    cache: Arc<dyn Cache>,
    limits: LimitsSettings,
}

impl Admission {
    /// Counting in `cache` against `limits`.
    pub fn new(cache: Arc<dyn Cache>, limits: LimitsSettings) -> Self {
        Self { cache, limits }
    }

    /// Count one record of `kind` from `from` (unknown: counted in the total
    /// only), or refuse it.
    pub async fn admit(&self, kind: Kept, from: Option<IpAddr>) -> Result<(), Refusal> {
        let window = kind.window();
        if let Some(address) = from {
            let key = format!("quota:{}:{address}", kind.name());
            if self.cache.incr(&key, window).await? > self.limits.per_address {
                return Err(Refusal::TooMany);
            }
        }
        if self.cache.incr(&format!("quota:{}", kind.name()), window).await? > self.limits.total {
            return Err(Refusal::Full);
        }
        Ok(())
    }
}

/// The client's address: the TCP peer, or behind a reverse proxy that the
/// configuration trusts (`server.trust_forwarded_for`), the address that
/// proxy appended last to `X-Forwarded-For`. `None` when neither is known
/// (a router called without a socket, in tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress
where
    Arc<Settings>: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        if !Arc::<Settings>::from_ref(state).server.trust_forwarded_for {
            return Ok(Self(peer));
        }
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .next_back();
        Ok(Self(forwarded.or(peer)))
    }
}
