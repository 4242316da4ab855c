//! The Redis backend, shared by every node of a multi-node deployment.
//!
//! Every [`Cache`] method is one Redis command (or one `MULTI`/`EXEC`
//! transaction), so atomicity comes from Redis itself and holds across
//! nodes: two nodes redeeming one authorization code race on a single
//! `GETDEL`, and exactly one of them gets it.
//!
//! All calls share one multiplexed connection held by a redis
//! [`ConnectionManager`], which pipelines concurrent requests and reconnects
//! on its own after Redis restarts; opening a connection per request would
//! cost a TCP (and TLS) handshake on every login step.
//!
//! The cache must fail fast rather than hang: a request stuck on a
//! frozen Redis is worse than a prompt 503. Hence a connect timeout and a
//! response timeout on the connection, short reconnect back-off, and a
//! [`tokio::time::timeout`] around every call as a backstop, whatever state
//! the connection is in.

use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Cmd, ConnectionAddr, FromRedisValue, IntoConnectionInfo, Pipeline, RedisError, Script, ScriptInvocation,
    ServerErrorKind, Value,
};

use crate::{Cache, CacheError, CacheResult, Op, Reply, Subscription};

/// Each TCP (or TLS) connection attempt gives up after this long, so a
/// blackholed address fails instead of waiting for the kernel's minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A command without an answer after this long fails. Loopback and LAN
/// round trips are well under a millisecond; a second means Redis is stuck.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Backstop around a whole call, including waiting for a reconnection in
/// progress (which the two timeouts above do not bound on their own).
/// Slightly above them, so their more precise errors normally win.
const CALL_TIMEOUT: Duration = Duration::from_millis(1500);
/// Reconnection: retries after the first attempt, and the bounds of the
/// jittered exponential back-off between attempts. Kept short because calls
/// wait for a reconnection in progress; when all attempts fail, the next call
/// starts a new round.
const RECONNECT_RETRIES: usize = 1;
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(200);
/// Upper bound on a TTL sent to Redis (about 100 years): Redis rejects an
/// expiry that overflows its clock, and no cache entry needs more.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
/// Port of a sentinel given without one.
const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// Cache on a Redis server, version 6.2 or newer (for `GETDEL`).
///
/// Opened from a URL by [`RedisCache::open`] (or `wardkey_cache::open`):
///
/// - `redis://[[user]:password@]host[:port][/db]` — plain TCP;
/// - `rediss://…` — TLS with rustls, verifying the server against the
///   system's root certificates (the redis crate's `#insecure` is refused:
///   session data is worth a verified server). A process-wide rustls
///   `CryptoProvider` must be installed before the first connection, as
///   wardkey's `main` does;
/// - `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service_name[/db]`
///   — ask the listed Redis Sentinels (default port 26379) for the current
///   master of `service_name` and connect to it over plain TCP. The
///   credentials and `db` are for the master; the sentinels are asked
///   without authentication. The redis crate has no URL form for Sentinel,
///   so this one is wardkey's, after the common `redis+sentinel` convention.
///
/// Opening validates the URL but does not connect: the first call does, so a
/// node starts (and reports not-ready on `/readyz`) while Redis is still
/// coming up. Every failure is [`CacheError::Unavailable`], within 1.5 s at
/// the latest, even when Redis hangs; after an outage the shared
/// connection comes back by itself. A call that timed out may still have
/// been applied by Redis (a write stuck in a frozen server's socket buffer):
/// callers treat `Unavailable` as "unknown", which for single-use `take` errs
/// on the safe side (the code is spent).
pub struct RedisCache {
    source: Source,
    /// The shared connection, built on first use and replaced when it
    /// proves unusable (see [`RedisCache::failed`]).
    current: Mutex<Option<Arc<ConnectionManager>>>,
    /// The URL with any password masked, for messages and `Debug`.
    display: String,
}

/// Where connections go.
enum Source {
    /// A fixed server.
    Direct(redis::Client),
    /// Whichever server the sentinels name as master. Querying needs `&mut`,
    /// and one resolution at a time is plenty.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// A request: one command, one pipeline (here always a transaction) or one
/// script.
#[derive(Clone, Copy)]
enum Request<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a Pipeline),
    Script(&'a ScriptInvocation<'a>),
}

/// [`Cache::batch_if`] as one Lua script, which Redis runs atomically: a
/// `MULTI` transaction cannot make its writes depend on a guard key, and a
/// `WATCH` would need a connection of its own per caller. Every key is
/// passed in `KEYS` (as Redis asks of scripts); `KEYS[1]` is the guard, or
/// the empty string for none. `ARGV` holds each op's name, value and TTL in
/// milliseconds. Replies: nil when the guard is missing, else one entry per
/// op (a `GET`'s value or false, 1/0 for flags, 1 for plain writes).
const BATCH_SCRIPT: &str = r"
if KEYS[1] ~= '' and redis.call('EXISTS', KEYS[1]) == 0 then return false end
local out = {}
for i = 2, #KEYS do
  local key, op, value, ttl = KEYS[i], ARGV[3*i-5], ARGV[3*i-4], ARGV[3*i-3]
  if op == 'GET' then
    out[i-1] = redis.call('GET', key)
  elseif op == 'SET' then
    redis.call('SET', key, value, 'PX', ttl)
    out[i-1] = 1
  elseif op == 'SETNX' then
    out[i-1] = redis.call('SET', key, value, 'NX', 'PX', ttl) and 1 or 0
  elseif op == 'APPEND' then
    redis.call('APPEND', key, value)
    redis.call('PEXPIRE', key, ttl)
    out[i-1] = 1
  elseif op == 'DEL' then
    redis.call('DEL', key)
    out[i-1] = 1
  elseif op == 'PEXPIRE' then
    out[i-1] = redis.call('PEXPIRE', key, ttl)
  else
    return redis.error_reply('unknown batch op ' .. op)
  end
end
return out
";

static BATCH: LazyLock<Script> = LazyLock::new(|| Script::new(BATCH_SCRIPT));

/// Why a call failed, as far as replacing the connection is concerned.
enum Failure {
    Redis(RedisError),
    /// The [`CALL_TIMEOUT`] backstop fired.
    Backstop,
}

impl RedisCache {
    /// Whether `url` names a Redis backend (by scheme) that [`Self::open`]
    /// should be given, rather than being some other kind of cache URL.
    pub fn handles(url: &str) -> bool {
        matches!(scheme(url).as_deref(), Some("redis" | "rediss" | "redis+sentinel"))
    }

    /// Validate `url` and prepare the connection (see the type's docs for
    /// the URL forms). Does not connect. Must be called within a Tokio
    /// runtime, which the connection's background tasks run on.
    pub fn open(url: &str) -> CacheResult<Self> {
        let display = redact(url);
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CacheError::Unavailable(format!(
                "opening the redis cache at {display} outside a Tokio runtime"
            )));
        }
        let invalid = |reason: String| CacheError::InvalidUrl(format!("{display:?}: {reason}"));
        let (source, current) = match scheme(url).as_deref() {
            Some("redis" | "rediss") => {
                let client = redis::Client::open(url).map_err(|e| invalid(e.to_string()))?;
                if matches!(client.get_connection_info().addr(), ConnectionAddr::TcpTls { insecure: true, .. }) {
                    return Err(invalid("TLS certificate verification cannot be turned off".into()));
                }
                // Built now rather than on first use so that a configuration
                // the redis crate rejects is reported by `open`.
                let manager = new_manager(client.clone()).map_err(|e| invalid(e.to_string()))?;
                (Source::Direct(client), Some(Arc::new(manager)))
            }
            Some("redis+sentinel") => {
                let client = sentinel_client(url).map_err(invalid)?;
                (Source::Sentinel(tokio::sync::Mutex::new(client)), None)
            }
            _ => return Err(CacheError::UnsupportedUrl(display)),
        };
        Ok(Self { source, current: Mutex::new(current), display })
    }

    /// Run `req` on the shared connection, within the [`CALL_TIMEOUT`]
    /// backstop, and turn any failure into [`CacheError::Unavailable`].
    async fn call<T: FromRedisValue>(&self, what: &str, req: Request<'_>) -> CacheResult<T> {
        let mut used = None;
        let result = tokio::time::timeout(CALL_TIMEOUT, self.call_inner(req, &mut used)).await;
        let (failure, message) = match result {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(Ok(e))) => {
                let message = e.to_string();
                (Some(Failure::Redis(e)), message)
            }
            // No connection to blame: the sentinels did not name a master.
            Ok(Err(Err(message))) => (None, message),
            Err(_) => (Some(Failure::Backstop), format!("no answer within {CALL_TIMEOUT:?}")),
        };
        if let (Some(failure), Some(conn)) = (failure, used) {
            self.failed(&conn, &failure);
        }
        Err(CacheError::Unavailable(format!("redis {what} at {}: {message}", self.display)))
    }

    /// The call proper. `used` receives the connection manager tried last,
    /// which [`Self::call`] still needs if the backstop cancels this future.
    /// Errors are a command's `Ok(RedisError)` or a failure to find a
    /// connection, `Err(message)`.
    async fn call_inner<T: FromRedisValue>(
        &self,
        req: Request<'_>,
        used: &mut Option<Arc<ConnectionManager>>,
    ) -> Result<T, Result<RedisError, String>> {
        let mut retried = false;
        loop {
            let conn = self.connection().await.map_err(Err)?;
            let mut manager = (*conn).clone();
            *used = Some(conn);
            let result = match req {
                Request::Cmd(cmd) => cmd.query_async(&mut manager).await,
                Request::Pipe(pipe) => pipe.query_async(&mut manager).await,
                Request::Script(script) => script.invoke_async(&mut manager).await,
            };
            match result {
                Ok(v) => return Ok(v),
                // A refused or dropped connection is retried once, on the
                // connection the manager is rebuilding. This happens after
                // Redis comes back: the manager hands out its failed
                // reconnection, or its old socket to the stopped server,
                // once more. Refused means the command was never sent; a
                // dropped one may have been applied, and every command here
                // is safe to see twice: writes are idempotent, a repeated
                // SET NX or GETDEL errs on the side of refusing (a nonce
                // "replayed", a code spent), a repeated INCR counts a
                // failure twice.
                Err(e) if !retried && (e.is_connection_refusal() || e.is_connection_dropped()) => retried = true,
                Err(e) => return Err(Ok(e)),
            }
        }
    }

    /// The connection manager to send through, building one (for Sentinel,
    /// asking the sentinels for the master first) if there is none.
    async fn connection(&self) -> Result<Arc<ConnectionManager>, String> {
        if let Some(m) = self.current() {
            return Ok(m);
        }
        match &self.source {
            Source::Direct(client) => {
                let mut current = self.lock();
                if let Some(m) = current.as_ref() {
                    return Ok(m.clone());
                }
                let manager = Arc::new(new_manager(client.clone()).map_err(|e| e.to_string())?);
                *current = Some(manager.clone());
                Ok(manager)
            }
            Source::Sentinel(sentinel) => {
                let mut sentinel = sentinel.lock().await;
                // Another call may have found the master while this one
                // waited for the lock.
                if let Some(m) = self.current() {
                    return Ok(m);
                }
                let master = sentinel
                    .async_get_client()
                    .await
                    .map_err(|e| format!("asking the sentinels for the master: {e}"))?;
                let manager = Arc::new(new_manager(master).map_err(|e| e.to_string())?);
                *self.lock() = Some(manager.clone());
                Ok(manager)
            }
        }
    }

    /// After a failed call on `conn`, drop that connection manager if it can
    /// no longer be trusted, so that the next call builds a new one:
    ///
    /// - on a timeout, always. The manager reconnects by itself when the
    ///   connection drops, but not when it merely stops answering, and a
    ///   half-open connection (a Redis host gone without a reset) would
    ///   otherwise time out every call until the kernel gives up on it,
    ///   minutes later. Requests still in flight on the old connection
    ///   finish or time out normally; it closes when they are done.
    /// - for Sentinel, also on a connection error or a `READONLY` reply: a
    ///   manager only ever reconnects to the address it was built for, and
    ///   the master may have moved (the old one demoted to a replica).
    ///
    /// Only the current manager is dropped, so concurrent failures of one
    /// connection replace it once.
    fn failed(&self, conn: &Arc<ConnectionManager>, failure: &Failure) {
        let replace = match failure {
            Failure::Backstop => true,
            Failure::Redis(e) => {
                e.is_timeout()
                    || matches!(self.source, Source::Sentinel(_))
                        && (e.is_io_error() || e.kind() == redis::ErrorKind::Server(ServerErrorKind::ReadOnly))
            }
        };
        if replace {
            let mut current = self.lock();
            if current.as_ref().is_some_and(|m| Arc::ptr_eq(m, conn)) {
                *current = None;
            }
        }
    }

    fn current(&self) -> Option<Arc<ConnectionManager>> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<ConnectionManager>>> {
        // Holds an `Option<Arc>` that is only ever replaced whole, so a
        // poisoned lock is still consistent.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache").field("url", &self.display).finish_non_exhaustive()
    }
}

/// Parse `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service_name[/db]`
/// into a client that asks those sentinels for the master of `service_name`.
fn sentinel_client(url: &str) -> Result<SentinelClient, String> {
    let rest = &url["redis+sentinel://".len()..];
    if rest.contains(['?', '#']) {
        return Err("query strings and fragments are not supported in redis+sentinel URLs".into());
    }
    let (authority, path) = rest.split_once('/').ok_or("missing /service_name after the sentinel addresses")?;
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let sentinels = hosts
        .split(',')
        .map(|h| sentinel_address(h).map(|(host, port)| format!("redis://{host}:{port}")))
        .collect::<Result<Vec<_>, _>>()?;
    let (service_name, db) = path.split_once('/').unwrap_or((path, ""));
    if service_name.is_empty() {
        return Err("missing service name: redis+sentinel://host:port/service_name".into());
    }
    if !service_name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("invalid service name {service_name:?}"));
    }
    // Let the redis crate parse (and percent-decode) the master's
    // credentials and database, as it would in a redis:// URL.
    let master_url = format!(
        "redis://{}{}/{db}",
        userinfo.map(|u| format!("{u}@")).unwrap_or_default(),
        sentinels[0].trim_start_matches("redis://"),
    );
    let master = master_url
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("credentials or database: {e}"))?
        .redis_settings()
        .clone();
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master);
    SentinelClient::build(sentinels, service_name, Some(node), SentinelServerType::Master).map_err(|e| e.to_string())
}

/// A lazily connecting manager for `client` with wardkey's timeouts.
fn new_manager(client: redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_min_delay(RECONNECT_MIN_DELAY)
        .set_max_delay(RECONNECT_MAX_DELAY);
    ConnectionManager::new_lazy_with_config(client, config)
}

/// `host[:port]` or `[ipv6][:port]` of one sentinel.
fn sentinel_address(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("invalid sentinel address {s:?}: expected host[:port]");
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (format!("[{addr}]"), port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    let valid = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && !host.contains(|c: char| c.is_whitespace() || "@/[]".contains(c)),
    };
    if !valid {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_SENTINEL_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad)?,
    };
    Ok((host, port))
}

/// The lower-cased scheme of `url`, if it has one.
fn scheme(url: &str) -> Option<String> {
    url.split_once("://").map(|(s, _)| s.to_ascii_lowercase())
}

/// `url` with the password (or a lone userinfo, which redis URLs also read
/// as a password) replaced by `REDACTED`, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:REDACTED"),
                None => "REDACTED".to_owned(),
            };
            format!("{scheme}://{user}@{hosts}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Milliseconds for `PX`/`PEXPIRE`: rounded up so an entry lives at least
/// `ttl`, at least 1 (Redis rejects 0) and at most [`MAX_TTL_MS`].
fn ttl_ms(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).clamp(1, MAX_TTL_MS)
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        self.call("GET", Request::Cmd(redis::cmd("GET").arg(key))).await
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<()> {
        let cmd = redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms(ttl)).to_owned();
        self.call("SET", Request::Cmd(&cmd)).await
    }

    async fn put_if_absent(&self, key: &str, value: &[u8], ttl: Duration) -> CacheResult<bool> {
        let cmd = redis::cmd("SET").arg(key).arg(value).arg("NX").arg("PX").arg(ttl_ms(ttl)).to_owned();
        // `OK` when stored, nil when the key existed.
        let reply: Value = self.call("SET NX", Request::Cmd(&cmd)).await?;
        Ok(!matches!(reply, Value::Nil))
    }

    async fn take(&self, key: &str) -> CacheResult<Option<Vec<u8>>> {
        self.call("GETDEL", Request::Cmd(redis::cmd("GETDEL").arg(key))).await
    }

    async fn delete(&self, key: &str) -> CacheResult<()> {
        self.call("DEL", Request::Cmd(redis::cmd("DEL").arg(key))).await
    }

    async fn incr(&self, key: &str, ttl: Duration) -> CacheResult<u64> {
        // A fixed window in one transaction: create the counter at 0 with
        // the TTL only if absent, then increment, which keeps the TTL. A
        // plain INCR + EXPIRE would either extend the window on every hit or,
        // if the EXPIRE were lost, leave a counter that never resets.
        let pipe = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(key)
            .arg(0)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .ignore()
            .cmd("INCR")
            .arg(key)
            .to_owned();
        let (n,): (u64,) = self.call("INCR", Request::Pipe(&pipe)).await?;
        Ok(n)
    }

    async fn touch(&self, key: &str, ttl: Duration) -> CacheResult<bool> {
        let cmd = redis::cmd("PEXPIRE").arg(key).arg(ttl_ms(ttl)).to_owned();
        let set: i64 = self.call("PEXPIRE", Request::Cmd(&cmd)).await?;
        Ok(set == 1)
    }

    async fn ping(&self) -> CacheResult<()> {
        let reply: String = self.call("PING", Request::Cmd(&redis::cmd("PING"))).await?;
        if reply == "PONG" { Ok(()) } else { Err(self.unexpected("PING", &Value::SimpleString(reply))) }
    }

    async fn publish(&self, channel: &str, message: &[u8]) -> CacheResult<()> {
        let cmd = redis::cmd("PUBLISH").arg(channel).arg(message).to_owned();
        let _receivers: i64 = self.call("PUBLISH", Request::Cmd(&cmd)).await?;
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> CacheResult<Option<Subscription>> {
        // A subscribed connection can do nothing else, so it is its own,
        // not the shared one; connecting is bounded like every other call.
        let subscribed = async {
            let client = match &self.source {
                Source::Direct(client) => client.clone(),
                Source::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await?,
            };
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, RedisError>(pubsub)
        };
        let unavailable = |why: String| CacheError::Unavailable(format!("redis SUBSCRIBE at {}: {why}", self.display));
        let pubsub = tokio::time::timeout(CALL_TIMEOUT, subscribed)
            .await
            .map_err(|_| unavailable(format!("no answer within {CALL_TIMEOUT:?}")))?
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(Some(pubsub.into_on_message().map(|m| m.get_payload_bytes().to_vec()).boxed()))
    }

    async fn batch_if(&self, guard: Option<&str>, ops: &[Op]) -> CacheResult<Option<Vec<Reply>>> {
        let mut invocation = BATCH.prepare_invoke();
        invocation.key(guard.unwrap_or(""));
        for op in ops {
            let (name, key, value, ttl): (&str, &str, &[u8], Option<Duration>) = match op {
                Op::Get(k) => ("GET", k, b"", None),
                Op::Put(k, v, t) => ("SET", k, v, Some(*t)),
                Op::PutIfAbsent(k, v, t) => ("SETNX", k, v, Some(*t)),
                Op::Append(k, v, t) => ("APPEND", k, v, Some(*t)),
                Op::Delete(k) => ("DEL", k, b"", None),
                Op::Touch(k, t) => ("PEXPIRE", k, b"", Some(*t)),
            };
            invocation.key(key).arg(name).arg(value).arg(ttl.map(ttl_ms).unwrap_or(0));
        }
        let reply: Value = self.call("batch", Request::Script(&invocation)).await?;
        let items = match reply {
            Value::Nil => return Ok(None),
            Value::Array(items) => items,
            other => return Err(self.unexpected("batch", &other)),
        };
        if items.len() != ops.len() {
            return Err(self.unexpected("batch", &Value::Array(items)));
        }
        let replies = ops.iter().zip(items).map(|(op, item)| match (op, item) {
            (Op::Get(_), Value::BulkString(v)) => Ok(Reply::Value(Some(v))),
            (Op::Get(_), Value::Nil) => Ok(Reply::Value(None)),
            (Op::PutIfAbsent(..) | Op::Touch(..), Value::Int(n)) => Ok(Reply::Flag(n == 1)),
            (Op::Put(..) | Op::Append(..) | Op::Delete(_), Value::Int(_)) => Ok(Reply::Done),
            (_, other) => Err(self.unexpected("batch", &other)),
        });
        replies.collect::<CacheResult<Vec<_>>>().map(Some)
    }
}

impl RedisCache {
    /// A reply of a shape the command never gives: not a security decision
    /// to guess at, so the call fails as if Redis were unavailable.
    fn unexpected(&self, what: &str, reply: &Value) -> CacheError {
        CacheError::Unavailable(format!("redis {what} at {}: unexpected reply {reply:?}", self.display))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_masks_passwords_only() {
        assert_eq!(redact("redis://:s3cret@h:6379/0"), "redis://:REDACTED@h:6379/0");
        assert_eq!(redact("rediss://u:p@w@h/1"), "rediss://u:REDACTED@h/1");
        assert_eq!(redact("redis://tok@h"), "redis://REDACTED@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact("redis+sentinel://u:p@a:1,b:2/m"), "redis+sentinel://u:REDACTED@a:1,b:2/m");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn ttls_round_up_and_stay_in_range() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_ms(Duration::from_secs(60)), 60_000);
        assert_eq!(ttl_ms(Duration::MAX), MAX_TTL_MS);
    }

    #[test]
    fn sentinel_addresses() {
        assert_eq!(sentinel_address("a.b").unwrap(), ("a.b".into(), 26379));
        assert_eq!(sentinel_address("10.0.0.1:5000").unwrap(), ("10.0.0.1".into(), 5000));
        assert_eq!(sentinel_address("[::1]:5000").unwrap(), ("[::1]".into(), 5000));
        assert_eq!(sentinel_address("[::1]").unwrap(), ("[::1]".into(), 26379));
        for bad in ["", ":1", "h:", "h:0", "h:65536", "h:x", "[::1", "[::1]x", "a b:1"] {
            assert!(sentinel_address(bad).is_err(), "{bad:?} accepted");
        }
    }
}
