//! Wardkey's session cache: SSO sessions, authorization codes, refresh
//! tokens, ceremony challenges, replay nonces and rate-limit counters. All of
//! it is ephemeral and carries a TTL; losing it logs people out and loses
//! nothing durable.
//!
//! Callers hold an `Arc<dyn Cache>`. The trait is deliberately small and maps
//! one-to-one onto Redis commands (`GET`, `SET EX`, `SET NX EX`, `GETDEL`,
//! `DEL`, `INCR`+`EXPIRE`, `EXPIRE`), so that every method is atomic on
//! every backend. [`MemoryCache`] is the in-process default.
//!
//! [`Cache::batch`] runs several of those commands as one atomic unit in one
//! round trip, optionally only if a guard key exists. With Redis every round
//! trip is a network hop, and the tap hot path is budgeted at two of them.

#![warn(missing_docs)]

mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

pub use memory::MemoryCache;
pub use redis::RedisCache;

/// Cache errors: the backend is unreachable or misbehaving. Callers answer
/// 503 / `temporarily_unavailable`, never a security decision.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache URL is not one we can open.
    #[error("unsupported cache url {0:?}: use memory:// or redis://…")]
    UnsupportedUrl(String),
    /// The URL names a backend we support but is malformed; the message
    /// says why and quotes the URL with any password masked.
    #[error("invalid cache url {0}")]
    InvalidUrl(String),
    /// The backend failed or timed out.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
}

/// Result alias for cache calls.
pub type CacheResult<T> = Result<T, CacheError>;

/// The messages of a [`Cache::subscribe`]; ends when the subscription is
/// lost (the connection dropped), and the subscriber subscribes again.
pub type Subscription = BoxStream<'static, Vec<u8>>;

/// One command of a [`Cache::batch`]. Owned, so that callers can build a
/// batch from keys they compute on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// As [`Cache::get`]; answers [`Reply::Value`].
    Get(String),
    /// As [`Cache::put`]; answers [`Reply::Done`].
    Put(String, Vec<u8>, Duration),
    /// As [`Cache::put_if_absent`]; answers [`Reply::Flag`] (stored).
    PutIfAbsent(String, Vec<u8>, Duration),
    /// Append bytes to a value (creating it), then set its TTL (`APPEND` +
    /// `PEXPIRE`): a list that many writers extend without reading it first.
    /// Answers [`Reply::Done`].
    Append(String, Vec<u8>, Duration),
    /// As [`Cache::delete`]; answers [`Reply::Done`].
    Delete(String),
    /// As [`Cache::touch`]; answers [`Reply::Flag`] (existed).
    Touch(String, Duration),
}

/// The answer to one [`Op`] of a batch, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A `Get`'s value, if present.
    Value(Option<Vec<u8>>),
    /// `PutIfAbsent`: whether it stored; `Touch`: whether the key existed.
    Flag(bool),
    /// A write without an answer.
    Done,
}

impl Reply {
    /// The value of a `Get` (`None` for any other reply).
    pub fn into_value(self) -> Option<Vec<u8>> {
        match self {
            Reply::Value(v) => v,
            _ => None,
        }
    }

    /// The flag of a `PutIfAbsent` or `Touch` (`false` for any other reply).
    pub fn flag(&self) -> bool {
        matches!(self, Reply::Flag(true))
    }
}

/// A key-value cache with per-entry TTLs. Values are opaque bytes; typed
/// access lives with the caller.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>>;
    /// Store `value` under `key` for `ttl`, replacing any value.
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<()>;
    /// Store only if `key` is absent; returns whether it was stored. This is
    /// the replay-nonce primitive (`SET NX EX`).
    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<bool>;
    /// Atomically read and delete (`GETDEL`): of two concurrent takes of one
    /// key, exactly one sees the value. Single-use codes rely on this.
    async fn take(&self, key: &str) -> CacheResult<Option<Vec<u8>>>;
    /// Delete `key` if present.
    async fn delete(&self, key: &str) -> CacheResult<()>;
    /// Increment a counter, creating it with `ttl` if absent; returns the new
    /// value. The TTL is not extended by later increments (a fixed window).
    async fn incr(&self, key: &str, ttl: Duration) -> CacheResult<u64>;
    /// Reset the TTL of an existing key; returns whether it existed.
    async fn touch(&self, key: &str, ttl: Duration) -> CacheResult<bool>;
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> CacheResult<()>;
    /// Run `ops` in order as one atomic unit (no other client sees a state
    /// in between) and one round trip, but only if `guard` is `None` or
    /// names a live key; `None` when the guard was missing and nothing ran.
    /// The guard lets a caller write "attach this session" only while the
    /// session still exists, without a read-then-write race.
    async fn batch_if(&self, guard: Option<&str>, ops: &[Op]) -> CacheResult<Option<Vec<Reply>>>;
    /// Send `message` to the subscribers of `channel` on every node (Redis
    /// `PUBLISH`), fire and forget: a node that is not listening misses it,
    /// so it only ever speeds up what a node also learns another way.
    async fn publish(&self, channel: &str, message: &[u8]) -> CacheResult<()>;
    /// The messages published on `channel` from now on, by any node; `None`
    /// when the backend is this process alone (the in-process cache), so
    /// there is nobody else to hear from.
    async fn subscribe(&self, channel: &str) -> CacheResult<Option<Subscription>>;
    /// [`Cache::batch_if`] without a guard: one reply per op.
    async fn batch(&self, ops: &[Op]) -> CacheResult<Vec<Reply>> {
        Ok(self.batch_if(None, ops).await?.unwrap_or_default())
    }
}

/// Open the cache named by `url`: `memory://`, or a Redis URL (`redis://`,
/// `rediss://`, `redis+sentinel://`; see [`RedisCache`]). Redis is
/// connected lazily, on first use, so this stays synchronous; it must be
/// called within a Tokio runtime for Redis URLs. Error messages never
/// contain the URL's password.
pub fn open(url: &str) -> CacheResult<Arc<dyn Cache>> {
    if url == "memory://" || url == "memory:" {
        Ok(Arc::new(MemoryCache::new()))
    } else if RedisCache::handles(url) {
        Ok(Arc::new(RedisCache::open(url)?))
    } else {
        Err(CacheError::UnsupportedUrl(redis::redact(url)))
    }
}
