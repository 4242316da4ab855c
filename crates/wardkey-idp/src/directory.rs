//! Directory reads for the hot path (workstation keys, badges, users,
//! clients): cached on the node, kept correct across nodes, and surviving a
//! store outage.
//!
//! Every change to those tables bumps a generation counter in the store, in
//! the same transaction (a trigger), whoever makes it: another node or the
//! admin CLI. Each node polls that one value every `store.directory_poll`
//! (250 ms by default) and drops its cache when it moves, so a disabled
//! workstation or user is refused within a quarter of a second everywhere,
//! while a tap costs no store round trip.
//!
//! A node's own writes drop its cache at once and are announced to the
//! other nodes on a Redis channel ([`Directory::changed`],
//! [`listen`]), so they apply everywhere within a round trip. The channel
//! only speeds things up: a message lost with a dropped connection (Redis
//! pub/sub keeps no backlog) is made up for by the poll, which stays the
//! bound.
//!
//! When the store does not answer, the last values read stay in use: a
//! clinician with a live session keeps tapping in and getting tokens while
//! PostgreSQL restarts. Staleness is then bounded by the outage.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use wardkey_cache::Cache;
use wardkey_core::badge::Badge;
use wardkey_core::client::Client;
use wardkey_core::user::User;
use wardkey_core::workstation::Workstation;
use wardkey_store::{Store, StoreResult};

/// The cache channel on which nodes announce their directory changes.
pub const CHANNEL: &str = "wardkey:directory";
/// Entries kept; past this the cache is cleared and refilled.
const MAX_ENTRIES: usize = 200_000;
/// Misses kept (ids that name nothing, such as the random `kid`s anyone can
/// send to `/tap`); past this only the misses are dropped, so that nobody
/// can flush the directory that signed-in clinicians are served from.
const MAX_MISSES: usize = 10_000;
/// After a failed read, the store is not asked again for this long: a dead
/// database costs one connection timeout, not one per tap.
const RETRY_AFTER: Duration = Duration::from_secs(2);

type Entry = Arc<dyn Any + Send + Sync>;

#[derive(Default)]
struct Cached {
    /// The generation `entries` belong to; `None` until the first poll, and
    /// while unknown nothing is served from the cache (only as fallback).
    generation: Option<i64>,
    entries: HashMap<String, Entry>,
    /// Lookups that found nothing, kept apart from `entries` (see
    /// [`MAX_MISSES`]).
    misses: HashSet<String>,
}

impl Cached {
    fn clear(&mut self) {
        self.entries.clear();
        self.misses.clear();
    }

    /// What the cache knows of `key`: `Some(None)` for a known miss.
    fn get<T: Clone + 'static>(&self, key: &str) -> Option<Option<T>> {
        if self.misses.contains(key) {
            return Some(None);
        }
        self.entries.get(key).and_then(|v| v.downcast_ref::<T>()).map(|v| Some(v.clone()))
    }

    fn insert<T: Send + Sync + 'static>(&mut self, key: String, value: Option<T>) {
        match value {
            Some(value) => {
                if self.entries.len() >= MAX_ENTRIES {
                    self.entries.clear();
                }
                self.entries.insert(key, Arc::new(value));
            }
            None => {
                if self.misses.len() >= MAX_MISSES {
                    self.misses.clear();
                }
                self.misses.insert(key);
            }
        }
    }
}

/// Node-local directory cache with a last-known fallback.
pub struct Directory {
    store: Arc<dyn Store>,
    /// Where this node's changes are announced to the others.
    cache: Arc<dyn Cache>,
    cached: Mutex<Cached>,
    /// While set and in the future, answer from the cache at once.
    down_until: Mutex<Option<Instant>>,
}

impl Directory {
    /// Reads through `store`; announces changes on `cache`'s channel.
    pub fn new(store: Arc<dyn Store>, cache: Arc<dyn Cache>) -> Self {
        Self { store, cache, cached: Mutex::new(Cached::default()), down_until: Mutex::new(None) }
    }

    /// After this node changed the directory: drop its own cached entries
    /// at once and tell the other nodes. Telling them is best effort; the
    /// store poll catches what a lost message misses.
    pub async fn changed(&self) {
        self.forget();
        if let Err(e) = self.cache.publish(CHANNEL, b"changed").await {
            tracing::debug!(error = %e, "could not announce a directory change; other nodes will poll it");
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop every cached entry (after this node changed the directory).
    pub fn forget(&self) {
        self.cached().clear();
    }

    /// Ask the store for the generation; drop the cache if it moved.
    pub async fn refresh(&self) -> StoreResult<()> {
        let generation = self.store.directory_generation().await?;
        let mut cached = self.cached();
        if cached.generation != Some(generation) {
            cached.clear();
            cached.generation = Some(generation);
        }
        Ok(())
    }

    async fn read<T, F>(&self, key: String, fetch: F) -> StoreResult<Option<T>>
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = StoreResult<Option<T>>>,
    {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| Instant::now() < t);
        {
            let cached = self.cached();
            if (cached.generation.is_some() || down)
                && let Some(value) = cached.get::<T>(&key)
            {
                return Ok(value);
            }
        }
        match fetch.await {
            Ok(value) => {
                self.cached().insert(key, value.clone());
                Ok(value)
            }
            Err(e) => {
                *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + RETRY_AFTER);
                let cached = self.cached();
                match cached.get::<T>(&key) {
                    Some(value) => {
                        tracing::warn!(error = %e, "store unavailable; using the last known directory entry");
                        Ok(value)
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// A user by `sub`.
    pub async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        self.read(format!("user:{id}"), self.store.user_by_id(id)).await
    }

    /// A workstation by id.
    pub async fn workstation(&self, id: &str) -> StoreResult<Option<Workstation>> {
        self.read(format!("ws:{id}"), self.store.workstation(id)).await
    }

    /// A badge by digest.
    pub async fn badge(&self, digest: &[u8]) -> StoreResult<Option<Badge>> {
        let key = format!("badge:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>());
        self.read(key, self.store.badge(digest)).await
    }

    /// A client by id.
    pub async fn client(&self, id: &str) -> StoreResult<Option<Client>> {
        self.read(format!("client:{id}"), self.store.client(id)).await
    }
}

/// The poller, every `interval` (`store.directory_poll`): runs until
/// `cancel`.
pub async fn poll_generation(directory: Arc<Directory>, interval: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = directory.refresh().await {
                    tracing::debug!(error = %e, "directory generation unavailable; keeping the cache");
                }
            }
        }
    }
}

/// Hear other nodes' directory changes on [`CHANNEL`] and drop the cache
/// for each: runs until `cancel`, or returns at once on the in-process
/// cache, where there are no other nodes. A lost subscription is taken up
/// again every [`RETRY_AFTER`].
pub async fn listen(directory: Arc<Directory>, cache: Arc<dyn Cache>, cancel: CancellationToken) {
    loop {
        let subscribed = tokio::select! {
            _ = cancel.cancelled() => return,
            s = cache.subscribe(CHANNEL) => s,
        };
        match subscribed {
            Ok(None) => return,
            Ok(Some(mut messages)) => {
                // Changes made while nobody was listening are news too.
                directory.forget();
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        message = messages.next() => match message {
                            Some(_) => directory.forget(),
                            None => break,
                        },
                    }
                }
                tracing::warn!("lost the directory-change subscription; the store poll bounds staleness meanwhile");
            }
            Err(e) => tracing::debug!(error = %e, "cannot subscribe to directory changes yet"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RETRY_AFTER) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_cache() -> Arc<dyn Cache> {
        Arc::new(wardkey_cache::MemoryCache::new())
    }

    #[tokio::test]
    async fn caches_within_a_generation_and_falls_back_only_on_errors() {
        let store = wardkey_store::open("sqlite::memory:").await.unwrap();
        let dir = Directory::new(store.clone(), memory_cache());
        let ok = |v: Option<u32>| async move { Ok(v) };
        let down = || async { Err::<Option<u32>, _>(wardkey_store::StoreError::NotFound("down".into())) };
        // Before the first poll nothing is served from the cache.
        assert_eq!(dir.read("k".into(), ok(Some(1))).await.unwrap(), Some(1));
        assert_eq!(dir.read("k".into(), ok(Some(2))).await.unwrap(), Some(2));
        // Within a generation: the cache answers, the store is not asked.
        dir.refresh().await.unwrap();
        assert_eq!(dir.read("k".into(), ok(Some(3))).await.unwrap(), Some(3), "cleared by the first poll");
        assert_eq!(dir.read("k".into(), ok(Some(4))).await.unwrap(), Some(3), "served from the cache");
        // A directory change anywhere moves the generation: the next poll
        // drops the cache.
        store
            .create_user(&wardkey_core::user::NewUser { username: "x".into(), ..Default::default() }, None, 1)
            .await
            .unwrap();
        dir.refresh().await.unwrap();
        assert_eq!(dir.read("k".into(), ok(Some(5))).await.unwrap(), Some(5));
        assert_eq!(dir.read("k".into(), ok(Some(6))).await.unwrap(), Some(5));
        // Store down: the last known value, and nothing known is the error.
        assert_eq!(dir.read("k".into(), down()).await.unwrap(), Some(5), "last known on failure");
        assert!(dir.read("other".into(), down()).await.is_err(), "nothing known: the error");
        // This node's own writes drop the cache at once.
        *dir.down_until.lock().unwrap() = None;
        dir.forget();
        assert_eq!(dir.read("k".into(), ok(Some(7))).await.unwrap(), Some(7));
    }

    #[tokio::test]
    async fn lookups_of_ids_that_name_nothing_cannot_flush_the_directory() {
        let store = wardkey_store::open("sqlite::memory:").await.unwrap();
        let dir = Directory::new(store, memory_cache());
        dir.refresh().await.unwrap();
        assert_eq!(dir.read("ws:real".into(), async { Ok(Some(1u32)) }).await.unwrap(), Some(1));
        // An attacker's random kids: far more misses than the cache keeps.
        for i in 0..(MAX_MISSES * 3) {
            assert_eq!(dir.read(format!("ws:random-{i}"), async { Ok(None::<u32>) }).await.unwrap(), None);
        }
        let refetched = dir.read("ws:real".into(), async { Ok(Some(2u32)) }).await.unwrap();
        assert_eq!(refetched, Some(1), "the real entry is still served from the cache");
        assert!(dir.cached().misses.len() <= MAX_MISSES, "misses stay bounded");
    }
}
