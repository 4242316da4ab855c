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

use crate::{Cache, CacheResult, Op, Reply, Subscription};

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

    fn with_map<T>(&self, f: impl FnOnce(&mut Locked<'_>) -> T) -> T {
        let now = Instant::now();
        // A panic while holding the lock cannot leave an entry half-written
        // (every mutation is a single insert or remove), so a poisoned lock
        // is safe to keep using.
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut Locked { map: &mut map, now })
    }

    fn wrote(&self) {
        if self.writes.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.with_map(|m| {
                let now = m.now;
                m.map.retain(|_, e| e.expires > now)
            });
        }
    }

    /// Number of live entries (for tests and metrics).
    pub fn len(&self) -> usize {
        self.with_map(|m| m.map.values().filter(|e| e.expires > m.now).count())
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

/// The map under the lock, with the time of the call: every operation is
/// one of these methods, so a batch is the same code run under one lock.
struct Locked<'a> {
    map: &'a mut HashMap<String, Entry>,
    now: Instant,
}

impl Locked<'_> {
    fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        live(self.map, key, self.now).map(|e| e.value.clone())
    }

    fn put(&mut self, key: &str, value: &[u8], ttl: Duration) {
        self.map.insert(key.to_owned(), Entry { value: value.to_vec(), expires: self.now + ttl });
    }

    fn put_if_absent(&mut self, key: &str, value: &[u8], ttl: Duration) -> bool {
        if live(self.map, key, self.now).is_some() {
            return false;
        }
        self.put(key, value, ttl);
        true
    }

    fn append(&mut self, key: &str, value: &[u8], ttl: Duration) {
        let mut joined = self.get(key).unwrap_or_default();
        joined.extend_from_slice(value);
        self.put(key, &joined, ttl);
    }

    fn take(&mut self, key: &str) -> Option<Vec<u8>> {
        self.map.remove(key).filter(|e| e.expires > self.now).map(|e| e.value)
    }

    fn delete(&mut self, key: &str) {
        self.map.remove(key);
    }

    fn incr(&mut self, key: &str, ttl: Duration) -> u64 {
        let now = self.now;
        let entry = match live(self.map, key, now) {
            Some(e) => e,
            None => self.map.entry(key.to_owned()).or_insert(Entry { value: b"0".to_vec(), expires: now + ttl }),
        };
        let n =
            std::str::from_utf8(&entry.value).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0).saturating_add(1);
        entry.value = n.to_string().into_bytes();
        n
    }

    fn touch(&mut self, key: &str, ttl: Duration) -> bool {
        match live(self.map, key, self.now) {
            Some(e) => {
                e.expires = self.now + ttl;
                true
            }
            None => false,
        }
    }

    fn apply(&mut self, op: &Op) -> Reply {
        match op {
            Op::Get(key) => Reply::Value(self.get(key)),
            Op::Put(key, value, ttl) => {
                self.put(key, value, *ttl);
                Reply::Done
            }
            Op::PutIfAbsent(key, value, ttl) => Reply::Flag(self.put_if_absent(key, value, *ttl)),
            Op::Append(key, value, ttl) => {
                self.append(key, value, *ttl);
                Reply::Done
            }
            Op::Delete(key) => {
                self.delete(key);
                Reply::Done
            }
            Op::Touch(key, ttl) => Reply::Flag(self.touch(key, *ttl)),
        }
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        Ok(self.with_map(|m| m.get(key)))
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<()> {
        self.with_map(|m| m.put(key, value, ttl));
        self.wrote();
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<bool> {
        let stored = self.with_map(|m| m.put_if_absent(key, value, ttl));
        self.wrote();
        Ok(stored)
    }

    async fn take(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        Ok(self.with_map(|m| m.take(key)))
    }

    async fn delete(&self, key: &str) -> CacheResult<()> {
        self.with_map(|m| m.delete(key));
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> CacheResult<u64> {
        let n = self.with_map(|m| m.incr(key, ttl));
        self.wrote();
        Ok(n)
    }

    async fn touch(&self, key: &str, ttl: Duration) -> CacheResult<bool> {
        Ok(self.with_map(|m| m.touch(key, ttl)))
    }

    async fn ping(&self) -> CacheResult<()> {
        Ok(())
    }

    async fn publish(&self, _channel: &str, _message: &[u8]) -> CacheResult<()> {
        Ok(())
    }

    async fn subscribe(&self, _channel: &str) -> CacheResult<Option<Subscription>> {
        Ok(None)
    }

    async fn batch_if(&self, guard: Option<&str>, ops: &[Op]) -> CacheResult<Option<Vec<Reply>>> {
        let replies = self.with_map(|m| {
            if guard.is_some_and(|g| live(m.map, g, m.now).is_none()) {
                return None;
            }
            Some(ops.iter().map(|op| m.apply(op)).collect())
        });
        self.wrote();
        Ok(replies)
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

    #[tokio::test(start_paused = true)]
    async fn batches_run_together_and_respect_their_guard() {
        let c = MemoryCache::new();
        let ops = [
            Op::PutIfAbsent("jti".into(), b"1".to_vec(), TTL),
            Op::Get("jti".into()),
            Op::Append("list".into(), b"a,".to_vec(), TTL),
            Op::Append("list".into(), b"b,".to_vec(), TTL),
            Op::Touch("missing".into(), TTL),
            Op::Delete("jti".into()),
        ];
        let replies = c.batch(&ops).await.unwrap();
        assert_eq!(
            replies,
            [
                Reply::Flag(true),
                Reply::Value(Some(b"1".to_vec())),
                Reply::Done,
                Reply::Done,
                Reply::Flag(false),
                Reply::Done
            ]
        );
        assert_eq!(c.get("list").await.unwrap().as_deref(), Some(&b"a,b,"[..]));
        assert_eq!(c.get("jti").await.unwrap(), None);

        let write = [Op::Put("k".into(), b"v".to_vec(), TTL)];
        assert_eq!(c.batch_if(Some("absent"), &write).await.unwrap(), None);
        assert_eq!(c.get("k").await.unwrap(), None, "a failed guard runs nothing");
        assert_eq!(c.batch_if(Some("list"), &write).await.unwrap(), Some(vec![Reply::Done]));
        assert_eq!(c.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(c.batch_if(Some("list"), &write).await.unwrap(), None, "an expired guard is missing");
    }
}
