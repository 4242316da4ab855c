//! The session cache's layout: every key Wardkey writes (namespaced
//! `sess:`, `authz:`, `code:`, …), values as JSON, single-use nonces and
//! append-only lists. One place, so that two services never disagree on a
//! key and a reader of a Redis dump can find what each key is.
//!
//! Every secret the browser or a client holds is looked up by its SHA-256
//! digest, never stored as such.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wardkey_cache::{Cache, CacheResult, Op, Reply};

/// Read a JSON value; a value that no longer decodes (an older format after an
/// upgrade) reads as absent rather than failing the request.
pub async fn get_json<T: DeserializeOwned>(cache: &dyn Cache, key: &str) -> CacheResult<Option<T>> {
    Ok(cache.get(key).await?.and_then(|v| serde_json::from_slice(&v).ok()))
}

/// Atomically read and delete a JSON value.
pub async fn take_json<T: DeserializeOwned>(cache: &dyn Cache, key: &str) -> CacheResult<Option<T>> {
    Ok(cache.take(key).await?.and_then(|v| serde_json::from_slice(&v).ok()))
}

/// A value as stored: JSON.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Decode a batch's `Get` reply, as [`get_json`] does a single read.
pub fn from_reply<T: DeserializeOwned>(reply: Option<Reply>) -> Option<T> {
    reply.and_then(Reply::into_value).and_then(|v| serde_json::from_slice(&v).ok())
}

/// Store a JSON value.
pub async fn put_json<T: Serialize>(cache: &dyn Cache, key: &str, value: &T, ttl: Duration) -> CacheResult<()> {
    cache.put(key, &to_json(value), ttl).await
}

/// Key helpers.
pub mod keys {
    /// An SSO session by its public `sid`.
    pub fn session(sid: &str) -> String {
        format!("sess:{sid}")
    }
    /// A pending authorization request.
    pub fn pending(id: &str) -> String {
        format!("authz:{id}")
    }
    /// An authorization code by digest.
    pub fn code(digest: &str) -> String {
        format!("code:{digest}")
    }
    /// A redeemed code by digest, remembering its grant for reuse detection.
    pub fn code_used(digest: &str) -> String {
        format!("code-used:{digest}")
    }
    /// A refresh token by digest.
    pub fn refresh(digest: &str) -> String {
        format!("rt:{digest}")
    }
    /// A rotated refresh token by digest.
    pub fn rotated(digest: &str) -> String {
        format!("rt-rotated:{digest}")
    }
    /// The live session ids of a user.
    pub fn user_sessions(user_id: &str) -> String {
        format!("user-sessions:{user_id}")
    }
    /// The clients that got tokens in a session (an append-only list).
    pub fn session_clients(sid: &str) -> String {
        format!("sess-clients:{sid}")
    }
    /// The workstations a session was attached to (an append-only list).
    pub fn session_workstations(sid: &str) -> String {
        format!("sess-ws:{sid}")
    }
    /// Who is at a workstation.
    pub fn attachment(workstation_id: &str) -> String {
        format!("ws:{workstation_id}")
    }
    /// A session ticket by digest.
    pub fn ticket(digest: &str) -> String {
        format!("ticket:{digest}")
    }
    /// A redeemed invite's enrolment (by cookie digest): a user id.
    pub fn enrolment(digest: &str) -> String {
        format!("enrol:{digest}")
    }
    /// A WebAuthn ceremony between its start and finish.
    pub fn webauthn_ceremony(id: &str) -> String {
        format!("webauthn:{id}")
    }
    /// A tap waiting for its PIN.
    pub fn pending_tap(id: &str) -> String {
        format!("tap:{id}")
    }
    /// A signed tap request's `jti`, for replay protection.
    pub fn tap_jti(workstation_id: &str, jti: &str) -> String {
        format!("tap-jti:{workstation_id}:{jti}")
    }
    /// A browser handoff by digest.
    pub fn handoff(digest: &str) -> String {
        format!("handoff:{digest}")
    }
    /// Where a badge was last seen, for cloned-badge detection.
    pub fn badge_seen(digest: &str) -> String {
        format!("badge-seen:{digest}")
    }
    /// A revoked grant.
    pub fn revoked(gid: &str) -> String {
        format!("revoked:{gid}")
    }
    /// A client assertion `jti`, for replay protection.
    pub fn assertion_jti(client_id: &str, jti: &str) -> String {
        format!("jti:{client_id}:{jti}")
    }
    /// A password check in progress for a username (by its digest key).
    pub fn login_in_flight(failures_key: &str) -> String {
        format!("inflight:{failures_key}")
    }
    /// Failed logins for a username that does not exist.
    pub fn unknown_user_failures(username_digest: &str) -> String {
        format!("fail:{username_digest}")
    }
}

/// A single-use identifier (a signed request's or assertion's `jti`) to be
/// recorded for its lifetime: recording it a second time fails. Kept as a
/// value so that the hot paths can record it in the same round trip as
/// their first reads ([`Nonce::op`]).
#[derive(Debug, Clone)]
pub struct Nonce {
    key: String,
    ttl: Duration,
}

impl Nonce {
    /// The nonce under `key` (see [`keys`]), remembered for `ttl`.
    pub fn new(key: String, ttl: Duration) -> Self {
        Self { key, ttl }
    }

    /// The op that records it; its reply goes to [`Nonce::fresh`].
    pub fn op(&self) -> Op {
        Op::PutIfAbsent(self.key.clone(), b"1".to_vec(), self.ttl)
    }

    /// Whether [`Nonce::op`]'s reply says this is the first use.
    pub fn fresh(reply: Option<&Reply>) -> bool {
        reply.is_some_and(Reply::flag)
    }

    /// Record it on its own; whether this is the first use.
    pub async fn record(&self, cache: &dyn Cache) -> CacheResult<bool> {
        cache.put_if_absent(&self.key, b"1", self.ttl).await
    }
}

/// An item for an append-only list ([`Op::Append`]): newline-terminated.
pub fn list_item(item: &str) -> Vec<u8> {
    format!("{item}\n").into_bytes()
}

/// The distinct items of an append-only list (a read of one, alone or a
/// batch's `Get` reply's value), in first-seen order.
pub fn parse_list(bytes: Option<Vec<u8>>) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for item in String::from_utf8_lossy(&bytes.unwrap_or_default()).lines() {
        if !item.is_empty() && !items.iter().any(|i| i == item) {
            items.push(item.to_owned());
        }
    }
    items
}
