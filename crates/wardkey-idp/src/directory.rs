//! Directory reads for the hot path (workstation keys, badges, users,
//! clients) that survive a store outage.
//!
//! Every read goes to the store first, so a disabled workstation or user is
//! refused at once. When the store does not answer, the last value this node
//! read is used instead: a clinician with a live session keeps tapping in
//! and getting tokens while PostgreSQL restarts. The staleness is bounded by
//! the outage; nothing is served stale while the store answers.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wardkey_core::badge::Badge;
use wardkey_core::client::Client;
use wardkey_core::user::User;
use wardkey_core::workstation::Workstation;
use wardkey_store::{Store, StoreResult};

/// Entries kept for outages; past this the memory is cleared and refilled.
const MAX_ENTRIES: usize = 200_000;
/// After a failed read, the store is not asked again for this long: a dead
/// database costs one connection timeout, not one per tap.
const RETRY_AFTER: Duration = Duration::from_secs(2);

type Entry = Arc<dyn Any + Send + Sync>;

/// Fresh-first directory reads with a last-known fallback.
pub struct Directory {
    store: Arc<dyn Store>,
    last_known: Mutex<HashMap<String, Entry>>,
    /// While set and in the future, answer from `last_known` at once.
    down_until: Mutex<Option<Instant>>,
}

impl Directory {
    /// Reads through `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, last_known: Mutex::new(HashMap::new()), down_until: Mutex::new(None) }
    }

    async fn read<T, F>(&self, key: String, fetch: F) -> StoreResult<Option<T>>
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = StoreResult<Option<T>>>,
    {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| Instant::now() < t);
        if down && let Some(value) = self.known::<T>(&key) {
            return Ok(value);
        }
        match fetch.await {
            Ok(value) => {
                let mut map = self.last_known.lock().unwrap_or_else(|p| p.into_inner());
                if map.len() >= MAX_ENTRIES {
                    map.clear();
                }
                map.insert(key, Arc::new(value.clone()));
                Ok(value)
            }
            Err(e) => {
                *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + RETRY_AFTER);
                match self.known::<T>(&key) {
                    Some(value) => {
                        tracing::warn!(error = %e, "store unavailable; using the last known directory entry");
                        Ok(value)
                    }
                    None => Err(e),
                }
            }
        }
    }

    fn known<T: Clone + 'static>(&self, key: &str) -> Option<Option<T>> {
        let map = self.last_known.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).and_then(|v| v.downcast_ref::<Option<T>>()).cloned()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_fresh_values_and_falls_back_only_on_errors() {
        let dir = Directory::new(wardkey_store::open("sqlite::memory:").await.unwrap());
        let ok = |v: Option<u32>| async move { Ok(v) };
        let down = || async { Err::<Option<u32>, _>(wardkey_store::StoreError::NotFound("down".into())) };
        assert_eq!(dir.read("k".into(), ok(Some(1))).await.unwrap(), Some(1));
        assert_eq!(dir.read("k".into(), down()).await.unwrap(), Some(1), "last known on failure");
        // Right after a failure the store is not asked again for a moment.
        assert_eq!(dir.read("k".into(), ok(Some(2))).await.unwrap(), Some(1), "store resting after a failure");
        *dir.down_until.lock().unwrap() = None;
        assert_eq!(dir.read("k".into(), ok(None)).await.unwrap(), None, "fresh value wins");
        assert_eq!(dir.read("k".into(), down()).await.unwrap(), None);
        assert!(dir.read("other".into(), down()).await.is_err(), "nothing known: the error");
        assert!(dir.read("other".into(), ok(Some(3))).await.is_ok(), "nothing known: the store is asked");
    }
}
