//! The Redis backend against a real `redis-server` (one per test, started by
//! `wardkey_testsupport`): the same behaviours as the memory backend's unit
//! tests, with real short TTLs, plus what only a network backend can get
//! wrong: atomicity under concurrency, failing fast when Redis hangs or is
//! gone, and coming back by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wardkey_cache::{Cache, CacheError, Op, RedisCache, Reply};
use wardkey_testsupport::redis::TestRedis;

/// Tolerance on the backend's fail-fast promise (1.5 s backstop): a busy
/// shared test machine gets some slack, a hang does not.
const FAIL_FAST: Duration = Duration::from_millis(2500);

fn open(redis: &TestRedis) -> Arc<dyn Cache> {
    wardkey_cache::open(&redis.url()).expect("opening the redis cache")
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Run `f` and check that it fails with `Unavailable`, quickly.
async fn assert_fails_fast<T: std::fmt::Debug>(what: &str, f: impl Future<Output = Result<T, CacheError>>) {
    let started = Instant::now();
    let result = f.await;
    let took = started.elapsed();
    assert!(matches!(result, Err(CacheError::Unavailable(_))), "{what}: expected Unavailable, got {result:?}");
    assert!(took < FAIL_FAST, "{what}: failed only after {took:?}");
}

#[tokio::test]
async fn round_trips_binary_values() {
    let redis = TestRedis::start();
    let c = open(&redis);
    c.ping().await.unwrap();
    assert_eq!(c.get("missing").await.unwrap(), None);
    let value = [0u8, 159, 146, 150, 255, b'\r', b'\n'];
    c.put("bin", &value, Duration::from_secs(10)).await.unwrap();
    assert_eq!(c.get("bin").await.unwrap().as_deref(), Some(&value[..]));
    c.put("bin", b"replaced", Duration::from_secs(10)).await.unwrap();
    assert_eq!(c.get("bin").await.unwrap().as_deref(), Some(&b"replaced"[..]));
    c.delete("bin").await.unwrap();
    c.delete("bin").await.unwrap();
    assert_eq!(c.get("bin").await.unwrap(), None);
}

#[tokio::test]
async fn batches_run_in_one_script_and_respect_their_guard() {
    let redis = TestRedis::start();
    let c = open(&redis);
    let ttl = Duration::from_secs(10);
    let binary = vec![0u8, 255, b'\n'];
    let ops = [
        Op::PutIfAbsent("jti".into(), b"1".to_vec(), ttl),
        Op::PutIfAbsent("jti".into(), b"2".to_vec(), ttl),
        Op::Get("jti".into()),
        Op::Get("missing".into()),
        Op::Put("bin".into(), binary.clone(), ttl),
        Op::Append("list".into(), b"a,".to_vec(), ttl),
        Op::Append("list".into(), b"b,".to_vec(), Duration::from_millis(600)),
        Op::Touch("missing".into(), ttl),
        Op::Touch("bin".into(), ttl),
        Op::Delete("jti".into()),
    ];
    let replies = c.batch(&ops).await.unwrap();
    assert_eq!(
        replies,
        [
            Reply::Flag(true),
            Reply::Flag(false),
            Reply::Value(Some(b"1".to_vec())),
            Reply::Value(None),
            Reply::Done,
            Reply::Done,
            Reply::Done,
            Reply::Flag(false),
            Reply::Flag(true),
            Reply::Done,
        ]
    );
    assert_eq!(c.get("bin").await.unwrap(), Some(binary));
    assert_eq!(c.get("list").await.unwrap().as_deref(), Some(&b"a,b,"[..]));
    assert_eq!(c.get("jti").await.unwrap(), None);
    assert_eq!(c.batch(&[]).await.unwrap(), []);

    let write = [Op::Put("k".into(), b"v".to_vec(), ttl), Op::Get("k".into())];
    assert_eq!(c.batch_if(Some("absent"), &write).await.unwrap(), None);
    assert_eq!(c.get("k").await.unwrap(), None, "a failed guard runs nothing");
    assert_eq!(
        c.batch_if(Some("list"), &write).await.unwrap(),
        Some(vec![Reply::Done, Reply::Value(Some(b"v".to_vec()))])
    );
    sleep_ms(800).await;
    assert_eq!(c.batch_if(Some("list"), &write).await.unwrap(), None, "the append set the list's TTL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_batch_and_a_delete_of_its_guard_never_interleave() {
    // The session-attach race: one client writes "attached" only while the
    // session exists, another ends the session. Either the write happened
    // before the delete (and the cleanup below finds it) or not at all.
    let redis = TestRedis::start();
    let c = open(&redis);
    let ttl = Duration::from_secs(10);
    for round in 0..50 {
        c.put("sess", b"live", ttl).await.unwrap();
        let writer = {
            let c = c.clone();
            tokio::spawn(async move {
                c.batch_if(Some("sess"), &[Op::Put(format!("ws:{round}"), b"sess".to_vec(), ttl)]).await.unwrap()
            })
        };
        let ender = {
            let c = c.clone();
            tokio::spawn(async move { c.batch(&[Op::Delete("sess".into()), Op::Get(format!("ws:{round}"))]).await })
        };
        let wrote = writer.await.unwrap().is_some();
        let seen_by_ender = ender.await.unwrap().unwrap()[1].clone().into_value().is_some();
        assert_eq!(wrote, seen_by_ender, "round {round}: a write slipped in after its guard was deleted");
    }
}

/// The next message of a subscription, or `None` when it ended.
async fn next(s: &mut wardkey_cache::Subscription) -> Option<Vec<u8>> {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("a message within 5 s")
}

#[tokio::test]
async fn published_messages_reach_every_subscriber_until_redis_goes_away() {
    let mut redis = TestRedis::start();
    let node_a = open(&redis);
    let node_b = open(&redis);
    let mut heard = node_b.subscribe("directory").await.unwrap().expect("redis subscriptions");
    let mut also = node_a.subscribe("directory").await.unwrap().expect("redis subscriptions");
    node_a.publish("directory", b"changed").await.unwrap();
    node_a.publish("elsewhere", b"not for us").await.unwrap();
    node_a.publish("directory", b"again").await.unwrap();
    assert_eq!(next(&mut heard).await.as_deref(), Some(&b"changed"[..]));
    assert_eq!(next(&mut heard).await.as_deref(), Some(&b"again"[..]));
    assert_eq!(next(&mut also).await.as_deref(), Some(&b"changed"[..]));
    // A stopped Redis ends the subscription, so the subscriber knows to
    // subscribe again; until it is back, subscribing fails fast.
    redis.stop();
    assert_eq!(next(&mut heard).await, None);
    assert_fails_fast("subscribe", async { node_b.subscribe("directory").await.map(|_| ()) }).await;
    redis.start_again();
    let mut heard = node_b.subscribe("directory").await.unwrap().expect("redis subscriptions");
    node_a.publish("directory", b"back").await.unwrap();
    assert_eq!(next(&mut heard).await.as_deref(), Some(&b"back"[..]));
}

#[tokio::test]
async fn the_memory_cache_has_nobody_to_publish_to() {
    let c = wardkey_cache::open("memory://").unwrap();
    c.publish("directory", b"changed").await.unwrap();
    assert!(c.subscribe("directory").await.unwrap().is_none());
}

#[tokio::test]
async fn entries_expire() {
    let redis = TestRedis::start();
    let c = open(&redis);
    c.put("k", b"v", Duration::from_millis(500)).await.unwrap();
    c.put("code", b"x", Duration::from_millis(500)).await.unwrap();
    assert_eq!(c.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    sleep_ms(700).await;
    assert_eq!(c.get("k").await.unwrap(), None);
    assert_eq!(c.take("code").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_is_single_use_under_concurrency() {
    let redis = TestRedis::start();
    let c = open(&redis);
    c.put("code", b"x", Duration::from_secs(10)).await.unwrap();
    assert_eq!(c.take("code").await.unwrap().as_deref(), Some(&b"x"[..]));
    assert_eq!(c.take("code").await.unwrap(), None);

    c.put("code", b"y", Duration::from_secs(10)).await.unwrap();
    let takes: Vec<_> = (0..50)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.take("code").await })
        })
        .collect();
    let mut winners = 0;
    for t in takes {
        if let Some(v) = t.await.unwrap().unwrap() {
            assert_eq!(v, b"y");
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent take must see the code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_if_absent_stores_once_under_concurrency() {
    let redis = TestRedis::start();
    let c = open(&redis);
    let puts: Vec<_> = (0..50u8)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { (i, c.put_if_absent("nonce", &[i], Duration::from_secs(10)).await) })
        })
        .collect();
    let mut stored = Vec::new();
    for p in puts {
        let (i, r) = p.await.unwrap();
        if r.unwrap() {
            stored.push(i);
        }
    }
    assert_eq!(stored.len(), 1, "exactly one concurrent put_if_absent must win: {stored:?}");
    assert_eq!(c.get("nonce").await.unwrap(), Some(vec![stored[0]]));
}

#[tokio::test]
async fn put_if_absent_and_touch() {
    let redis = TestRedis::start();
    let c = open(&redis);
    // The sleeps leave 300 ms of slack wherever an entry must still be
    // alive: a busy machine oversleeps.
    let ttl = Duration::from_millis(800);
    assert!(c.put_if_absent("n", b"1", ttl).await.unwrap());
    assert!(!c.put_if_absent("n", b"2", ttl).await.unwrap());
    sleep_ms(500).await;
    assert!(c.touch("n", ttl).await.unwrap());
    // 1 s after creation: alive only because touch reset the TTL.
    sleep_ms(500).await;
    assert_eq!(c.get("n").await.unwrap().as_deref(), Some(&b"1"[..]));
    // 1.4 s after the touch: gone, so the nonce can be stored again.
    sleep_ms(900).await;
    assert!(c.put_if_absent("n", b"3", ttl).await.unwrap());
    assert_eq!(c.get("n").await.unwrap().as_deref(), Some(&b"3"[..]));
    assert!(!c.touch("missing", ttl).await.unwrap());
}

#[tokio::test]
async fn counters_use_a_fixed_window() {
    let redis = TestRedis::start();
    let c = open(&redis);
    let window = Duration::from_millis(800);
    assert_eq!(c.incr("fail", window).await.unwrap(), 1);
    sleep_ms(400).await;
    // Increments do not extend the window...
    assert_eq!(c.incr("fail", window).await.unwrap(), 2);
    sleep_ms(500).await;
    // ...so 900 ms after the first one it has ended (a window extended by
    // the second increment would still be open until 1.2 s and answer 3).
    assert_eq!(c.incr("fail", window).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_are_not_lost() {
    let redis = TestRedis::start();
    let c = open(&redis);
    let incrs: Vec<_> = (0..50)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.incr("hits", Duration::from_secs(10)).await })
        })
        .collect();
    let mut seen = Vec::new();
    for i in incrs {
        seen.push(i.await.unwrap().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=50).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_frozen_redis_fails_fast_and_the_connection_recovers() {
    let mut redis = TestRedis::start();
    let c = open(&redis);
    c.put("k", b"v", Duration::from_secs(30)).await.unwrap();

    redis.pause();
    assert_fails_fast("get from a paused redis", c.get("k")).await;
    // Concurrent calls on the shared connection fail fast too.
    let (a, b) = tokio::join!(c.put("k2", b"w", Duration::from_secs(30)), c.ping());
    assert!(matches!(a, Err(CacheError::Unavailable(_))), "{a:?}");
    assert!(matches!(b, Err(CacheError::Unavailable(_))), "{b:?}");

    redis.resume();
    // Same cache object, no reopening: the next call works, and answers
    // are matched to the right requests despite the abandoned ones.
    assert_eq!(c.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    c.ping().await.unwrap();
    assert_eq!(c.incr("after", Duration::from_secs(30)).await.unwrap(), 1);
}

#[tokio::test]
async fn a_restarted_redis_is_reconnected_to() {
    let mut redis = TestRedis::start();
    let c = open(&redis);
    c.put("k", b"v", Duration::from_secs(30)).await.unwrap();

    redis.stop();
    for _ in 0..3 {
        assert_fails_fast("get from a stopped redis", c.get("k")).await;
    }
    assert_fails_fast("ping a stopped redis", c.ping()).await;

    redis.start_again();
    // The first call after the restart already succeeds (a refused
    // connection is retried once); persistence is off, so the data is gone.
    assert_eq!(c.get("k").await.unwrap(), None);
    c.put("k", b"again", Duration::from_secs(30)).await.unwrap();
    assert_eq!(c.take("k").await.unwrap().as_deref(), Some(&b"again"[..]));
}

#[tokio::test]
async fn nothing_listening_fails_fast() {
    // Opening does not connect, so it succeeds; calls then fail fast.
    let port = wardkey_testsupport::free_port();
    let c = wardkey_cache::open(&format!("redis://127.0.0.1:{port}")).unwrap();
    assert_fails_fast("ping with no server", c.ping()).await;
    assert_fails_fast("get with no server", c.get("k")).await;
}

#[tokio::test]
async fn sentinel_finds_the_master() {
    let redis = TestRedis::start();
    let sentinel = redis.sentinel("wardkey-main");
    let via_sentinel = wardkey_cache::open(&sentinel.url()).unwrap();
    via_sentinel.put("k", b"v", Duration::from_secs(30)).await.unwrap();
    // The value landed on the monitored server itself.
    assert_eq!(open(&redis).get("k").await.unwrap().as_deref(), Some(&b"v"[..]));

    // An unknown service name is an error, not a hang.
    let url = format!("redis+sentinel://127.0.0.1:{}/nobody", sentinel.port());
    let unknown = wardkey_cache::open(&url).unwrap();
    assert_fails_fast("unknown sentinel service", unknown.ping()).await;
}

#[tokio::test]
async fn malformed_urls_are_refused_without_leaking_passwords() {
    for url in [
        "redis://",
        "redis://:hunter2@127.0.0.1:notaport",
        "redis://:hunter2@127.0.0.1:6379/notadb",
        "rediss://:hunter2@127.0.0.1#bogus",
        "rediss://:hunter2@127.0.0.1#insecure",
        "redis+sentinel://:hunter2@127.0.0.1:26379",
        "redis+sentinel://:hunter2@127.0.0.1:26379/",
        "redis+sentinel:///mymaster",
        "redis+sentinel://127.0.0.1:99999/mymaster",
        "redis+sentinel://a:1,,b:2/mymaster",
        "redis+sentinel://127.0.0.1/mymaster?db=1",
        "redis+sentinel://127.0.0.1/my master",
        "redis+sentinel://127.0.0.1/mymaster/notadb",
    ] {
        let err = match wardkey_cache::open(url) {
            Ok(_) => panic!("{url:?} was accepted"),
            Err(e) => e,
        };
        assert!(matches!(err, CacheError::InvalidUrl(_)), "{url}: {err:?}");
        let message = err.to_string();
        assert!(!message.contains("hunter2"), "password in {message:?}");
        assert!(message.len() > "invalid cache url".len() + url.len(), "unclear: {message:?}");
    }
    let err = wardkey_cache::open("postgres://u:hunter2@db/x").err().unwrap();
    assert!(matches!(err, CacheError::UnsupportedUrl(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    // Well-formed URLs of each kind open (without connecting).
    for url in [
        "redis://127.0.0.1:6379/2",
        "REDIS://127.0.0.1",
        "rediss://:pw@redis.example:6380",
        "redis+sentinel://:pw@10.0.0.1,10.0.0.2:5000,[::1]:26380/mymaster/3",
    ] {
        RedisCache::open(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn opening_outside_a_runtime_is_an_error_not_a_panic() {
    let err = RedisCache::open("redis://127.0.0.1:6379").unwrap_err();
    assert!(matches!(err, CacheError::Unavailable(_)), "{err:?}");
}
