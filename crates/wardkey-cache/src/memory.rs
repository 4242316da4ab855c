//! The in-process cache: a mutex-guarded map with deadlines.
//!
//! Time comes from `tokio::time::Instant`, so tests can drive expiry with
//! `tokio::time::pause()` and `advance()`. Expired entries are dropped when
//! read and by a sweep every 4096 writes, so memory stays bounded by the live
//! set without a background task.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::{Cache, CacheResult};

struct Entry {
    value: Vec<u8>,
    expires: Instant,
}

/// In-process cache for a single server node. Contention is low: each
/// operation holds the lock for a hash-map access and no more.
#[derive(Default)]
pub struct MemoryCache {
    map: Mutex<HashMap<String, Entry>>,
    writes: AtomicU64,
}

impl MemoryCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_map<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>, Instant) -> T) -> T {
        let now = Instant::now();
        // A panic while holding the lock cannot leave an entry half-written
        // (every mutation is a single insert or remove), so a poisoned lock
        // is safe to keep using.
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map, now)
    }

    fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.with_map(|map, now| map.retain(|_, e| e.expires > now));
        }
    }

    /// Number of live entries (for tests and metrics).
    pub fn len(&self) -> usize {
        self.with_map(|map, now| map.values().filter(|e| e.expires > now).count())
    }

    /// Whether no live entry remains.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn live<'a>(map: &'a mut HashMap<String, Entry>, key: &str, now: Instant) -> Option<&'a mut Entry> {
    if map.get(key).is_some_and(|e| e.expires <= now) {
        map.remove(key);
    }
    map.get_mut(key)
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        Ok(self.with_map(|map, now| live(map, key, now).map(|e| e.value.clone())))
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<()> {
        self.with_map(|map, now| {
            map.insert(key.to_owned(), Entry { value: value.to_vec(), expires: now + ttl });
        });
        self.wrote();
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<bool> {
        let stored = self.with_map(|map, now| {
            if live(map, key, now).is_some() {
                return false;
            }
            map.insert(key.to_owned(), Entry { value: value.to_vec(), expires: now + ttl });
            true
        });
        self.wrote();
        Ok(stored)
    }

    async fn take(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        Ok(self.with_map(|map, now| map.remove(key).filter(|e| e.expires > now).map(|e| e.value)))
    }

    async fn delete(&self, key: &str) -> CacheResult<()> {
        self.with_map(|map, _| map.remove(key));
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> CacheResult<u64> {
        let n = self.with_map(|map, now| {
            let entry = match live(map, key, now) {
                Some(e) => e,
                None => map.entry(key.to_owned()).or_insert(Entry { value: b"0".to_vec(), expires: now + ttl }),
            };
            let n = std::str::from_utf8(&entry.value)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                .saturating_add(1);
            entry.value = n.to_string().into_bytes();
            n
        });
        self.wrote();
        Ok(n)
    }

    async fn touch(&self, key: &str, ttl: Duration) -> CacheResult<bool> {
        Ok(self.with_map(|map, now| match live(map, key, now) {
            Some(e) => {
                e.expires = now + ttl;
                true
            }
            None => false,
        }))
    }

    async fn ping(&self) -> CacheResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn entries_expire() {
        let c = MemoryCache::new();
        c.put("k", b"v", TTL).await.unwrap();
        assert_eq!(c.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(c.get("k").await.unwrap(), None);
        assert!(c.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn take_is_single_use() {
        let c = MemoryCache::new();
        c.put("code", b"x", TTL).await.unwrap();
        assert!(c.take("code").await.unwrap().is_some());
        assert!(c.take("code").await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn put_if_absent_and_touch() {
        let c = MemoryCache::new();
        assert!(c.put_if_absent("n", b"1", TTL).await.unwrap());
        assert!(!c.put_if_absent("n", b"2", TTL).await.unwrap());
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(c.touch("n", TTL).await.unwrap());
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(c.get("n").await.unwrap().as_deref(), Some(&b"1"[..]));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(c.put_if_absent("n", b"3", TTL).await.unwrap());
        assert!(!c.touch("missing", TTL).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn counters_use_a_fixed_window() {
        let c = MemoryCache::new();
        assert_eq!(c.incr("fail", TTL).await.unwrap(), 1);
        assert_eq!(c.incr("fail", TTL).await.unwrap(), 2);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(c.incr("fail", TTL).await.unwrap(), 1);
    }
}
