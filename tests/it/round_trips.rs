//! The hot path's budget of cache round trips. With Redis every call on
//! the `Cache` trait is one network round trip (one command, transaction or
//! script), so the budget is counted there: the server's own state with its
//! cache wrapped in a counter, served on a port of its own. Under
//! `WARDKEY_TEST_BACKENDS=redis` the counted cache is a real Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use wardkey_cache::{Cache, CacheResult, Op, Reply, Subscription};
use wardkey_core::client::GrantType;
use wardkey_core::keys::SigningAlg;
use wardkey_proto::tap::JOSE_CONTENT_TYPE;

use crate::helpers::*;
use crate::tap::{TestWorkstation, enrol_badge, tap_in};

/// A cache that counts the calls made on it.
struct Counting {
    inner: Arc<dyn Cache>,
    calls: AtomicUsize,
}

impl Counting {
    /// Calls since the last look.
    fn take(&self) -> usize {
        self.calls.swap(0, Ordering::SeqCst)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Cache for Counting {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        self.count();
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<()> {
        self.count();
        self.inner.put(key, value, ttl).await
    }
    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<bool> {
        self.count();
        self.inner.put_if_absent(key, value, ttl).await
    }
    async fn take(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        self.count();
        self.inner.take(key).await
    }
    async fn delete(&self, key: &str) -> CacheResult<()> {
        self.count();
        self.inner.delete(key).await
    }
    async fn incr(&self, key: &str, ttl: Duration) -> CacheResult<u64> {
        self.count();
        self.inner.incr(key, ttl).await
    }
    async fn touch(&self, key: &str, ttl: Duration) -> CacheResult<bool> {
        self.count();
        self.inner.touch(key, ttl).await
    }
    async fn ping(&self) -> CacheResult<()> {
        self.count();
        self.inner.ping().await
    }
    async fn publish(&self, channel: &str, message: &[u8]) -> CacheResult<()> {
        self.count();
        self.inner.publish(channel, message).await
    }
    async fn subscribe(&self, channel: &str) -> CacheResult<Option<Subscription>> {
        self.inner.subscribe(channel).await
    }
    async fn batch_if(&self, guard: Option<&str>, ops: &[Op]) -> CacheResult<Option<Vec<Reply>>> {
        self.count();
        self.inner.batch_if(guard, ops).await
    }
}

/// Serve `app`'s state with its cache counted; returns the base URL.
async fn serve_counted(app: &TestApp, counting: Arc<Counting>) -> String {
    let state = app.state.with_cache(counting);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, wardkey_idp::router(state)).into_future());
    base
}

async fn tap(app: &TestApp, base: &str, ws: &TestWorkstation, badge: &str) -> Value {
    let jws = ws.sign("wardkey-tap+jwt", &ws.envelope(app, json!({"badge": badge})));
    let r = app.http.post(format!("{base}/tap")).header("content-type", JOSE_CONTENT_TYPE).body(jws).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_hot_tap_costs_two_cache_round_trips_and_a_token_exchange_one() {
    let app = spawn_app().await;
    enrol_badge(&app, "ida", "1DA1").await;
    enrol_badge(&app, "jon", "10A1").await;
    app.add_client("epr", Auth::Secret, &[GrantType::TokenExchange], SigningAlg::ES256).await;
    let pc1 = TestWorkstation::enrol(&app, "pc1", "Ward 1").await;
    let pc2 = TestWorkstation::enrol(&app, "pc2", "Ward 1").await;
    // First taps of the shift, with PINs: both clinicians are within the
    // PIN grace from here, and Jon is at pc2.
    tap_in(&app, &pc1, "1DA1").await;
    tap_in(&app, &pc2, "10A1").await;
    app.sync_directory().await;

    let counting = Arc::new(Counting { inner: app.state.cache.clone(), calls: AtomicUsize::new(0) });
    let base = serve_counted(&app, counting.clone()).await;
    let mut ticket = String::new();
    for (ws, badge, outcome) in [(&pc1, "1DA1", "locked"), (&pc1, "1DA1", "active"), (&pc2, "1DA1", "switched")] {
        counting.take();
        let answer = tap(&app, &base, ws, badge).await;
        assert_eq!(answer["state"], outcome, "{answer}");
        let calls = counting.take();
        assert!(calls <= 2, "a hot tap ({outcome}) made {calls} cache round trips");
        ticket = answer["session_ticket"].as_str().unwrap_or_default().to_owned();
    }

    // The first token for an app in a session also lists the app for
    // logout; every later one is a single round trip.
    for (n, budget) in [(1, 2), (2, 1), (3, 1)] {
        counting.take();
        let r = pc2.exchange_at(&app, &base, &ticket, "epr").await;
        assert_eq!(r.status(), 200, "exchange {n}");
        let calls = counting.take();
        assert!(calls <= budget, "token exchange {n} made {calls} cache round trips (budget {budget})");
    }
}
