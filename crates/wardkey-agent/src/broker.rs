//! The local token broker: HTTP over a Unix socket that desktop EPR apps
//! ask for the clinician's tokens instead of showing their own login.
//!
//! - `GET /v1/session` -> [`SessionInfo`]
//! - `POST /v1/token {"client_id"}` -> a token response for the clinician at
//!   the keyboard; 409 with a JSON error while locked or waiting for a PIN
//! - `GET /v1/events` -> server-sent events, `data: <BrokerEvent JSON>`, on
//!   lock, unlock and switch. Subscribe first, then read `/v1/session`: no
//!   change falls between the two.
//!
//! and for the lock screen (`wardkey-desk`, see [`crate::desk`]):
//!
//! - `GET /v1/desk` -> [`DeskScreen`]; `GET /v1/desk/events` -> every screen
//!   as server-sent events, the current one first
//! - `POST /v1/pin {"pin"}` -> 202 once the PIN is queued for checking (the
//!   verdict comes as the next screen); 409 when no PIN is asked for
//! - `POST /v1/desk/shown {"seq"}` -> 204: the desktop shows
//!
//! Every connection is checked against a [`PeerPolicy`] by the kernel's
//! peer credentials (a TCP port could be reached by every local user and
//! says nothing of who is asking): a caller not allowed gets 403 and is
//! logged. The socket is mode 0600 from the moment it exists, or 0666 when
//! the policy admits other users. [`http_request`] is the client side, for
//! `wardkey-agent status` and `token`.

use std::convert::Infallible;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use wardkey_proto::broker::{BrokerEvent, BrokerTokenRequest, DeskPin, DeskScreen, DeskShown, SessionInfo};

use crate::agent::{Agent, TokenError};
use crate::client::ServerError;
use crate::desk::PadError;
use crate::peer::{Peer, PeerPolicy};

/// Longest `client_id` accepted.
const MAX_CLIENT_ID: usize = 256;

/// Longest PIN accepted from the pad (a security key's PIN is at most 63
/// bytes, CTAP 2.1 §6.5.5.5).
const MAX_PIN: usize = 63;

/// An error answer of the broker: `error` is a stable code, `message` a
/// sentence for the app's log or its user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerError {
    /// `locked`, `pin_required`, `invalid_request`, `invalid_target`,
    /// `unavailable`, `server_error`, `forbidden`, `no_pin_asked`, `busy`,
    /// or the server's OAuth error code.
    pub error: String,
    /// Plain words.
    pub message: String,
}

/// A broker error answer.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(BrokerError { error: code.into(), message: message.into() })).into_response()
}

/// Refuse callers the policy does not allow: 403 with a sentence naming
/// the caller and the agent.toml setting that would allow it, and a log
/// line for the security officer.
pub async fn admit(
    State((policy, setting)): State<(std::sync::Arc<PeerPolicy>, &'static str)>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    if policy.allows(&peer) {
        return next.run(request).await;
    }
    refuse(&peer, &request, "forbidden", |who| {
        format!("{who} is not allowed to use the Wardkey broker; IT can allow it with {setting} in agent.toml")
    })
}

/// 403 with `code` and the sentence `why` makes of the caller's name, and
/// a log line for the security officer.
fn refuse(peer: &Peer, request: &Request, code: &str, why: impl FnOnce(&str) -> String) -> Response {
    let sentence = why(&peer.describe());
    tracing::warn!(path = %request.uri().path(), "refused a broker caller: {sentence}");
    error(StatusCode::FORBIDDEN, code, sentence)
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another agent answers on the socket.
    #[error("another wardkey-agent is already serving on {0}")]
    InUse(PathBuf),
    /// The path holds something else than a socket.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// Binding, permissions or serving failed.
    #[error("{path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct BrokerState {
    agent: Agent,
    shutdown: CancellationToken,
}

/// The broker's routes, for callers `policy` allows. Event streams end
/// when `shutdown` is cancelled, so a graceful shutdown does not wait on
/// them forever.
///
/// Everything but `/v1/desk/events` (how a lock screen attaches) is for
/// the clinician at the screen only: the agent's own user, or a user whose
/// lock screen is attached now. So a member of the allowed group in another
/// session (SSH, cron, a background login) gets no one's tokens and cannot
/// type PINs.
pub fn router(agent: Agent, policy: PeerPolicy, shutdown: CancellationToken) -> Router {
    let state = BrokerState { agent, shutdown };
    let at_the_screen = Router::new()
        .route("/v1/session", get(session))
        .route("/v1/token", post(token))
        .route("/v1/events", get(events))
        .route("/v1/desk", get(desk))
        .route("/v1/desk/shown", post(desk_shown))
        .route("/v1/pin", post(pin))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), at_the_screen));
    Router::new()
        .route("/v1/desk/events", get(desk_events))
        .merge(at_the_screen)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state((std::sync::Arc::new(policy), "broker_allow"), admit))
}

/// Refuse callers who are neither the agent's user nor the user of an
/// attached lock screen.
async fn at_the_screen(
    State(state): State<BrokerState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    let own = rustix::process::getuid().as_raw();
    match peer.uid {
        Some(uid) if uid == own || state.agent.desk().is_attached(uid) => next.run(request).await,
        _ => refuse(&peer, &request, "not_at_the_screen", |who| {
            format!("{who} has no Wardkey lock screen open on this PC, so it cannot act for the clinician here")
        }),
    }
}

/// Bind the socket at `path` with `mode` from the moment it exists (it is
/// made in a private directory beside `path` and renamed into place, so no
/// one can connect through a wider mode in between). A stale socket from
/// a crashed agent is removed first (a live one is an error); missing
/// parent directories are made 0700.
pub async fn bind_with_mode(path: &Path, mode: u32) -> Result<UnixListener, ServeError> {
    let io = |source| ServeError::Io { path: path.into(), source };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ServeError::InUse(path.into()));
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(_) => return Err(ServeError::NotASocket(path.into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir,
        None => Path::new("."),
    };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    let name = path.file_name().ok_or_else(|| io(std::io::Error::other("the socket path names no file")))?;
    let private = dir.join(format!(".{}.{}.bind", name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private).map_err(io)?;
    let staged = private.join("s");
    let bound = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    bound.map_err(io)
}

/// [`bind_with_mode`] with 0600, or 0666 when `policy` admits other users
/// (the policy is then the access check).
pub async fn bind(path: &Path, policy: &PeerPolicy) -> Result<UnixListener, ServeError> {
    bind_with_mode(path, if policy.admits_others() { 0o666 } else { 0o600 }).await
}

/// Serve the broker on `path` until `shutdown`, then remove the socket.
pub async fn serve(
    path: &Path,
    agent: Agent,
    policy: PeerPolicy,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let listener = bind(path, &policy).await?;
    tracing::info!(socket = %path.display(), "token broker listening");
    let result = serve_listener(listener, agent, policy, shutdown).await;
    let _ = std::fs::remove_file(path);
    result.map_err(|source| ServeError::Io { path: path.into(), source })
}

/// Serve `app` on a bound listener until `shutdown`, telling each handler
/// who connected ([`Peer`]).
pub async fn serve_app(listener: UnixListener, app: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Serve the broker on a bound listener until `shutdown`.
pub async fn serve_listener(
    listener: UnixListener,
    agent: Agent,
    policy: PeerPolicy,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_app(listener, router(agent, policy, shutdown.clone()), shutdown).await
}

async fn session(State(state): State<BrokerState>) -> Json<SessionInfo> {
    Json(state.agent.state())
}

async fn desk(State(state): State<BrokerState>) -> Json<DeskScreen> {
    Json(state.agent.desk().screen())
}

/// Every screen, the current one first; a slow desk skips to the latest.
/// A lock screen attaches: its user is at the screen for as long as the
/// stream lasts.
async fn desk_events(
    State(state): State<BrokerState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.agent.desk().subscribe();
    let attached = peer.uid.map(|uid| crate::desk::Attached::new(state.agent.clone(), uid));
    let stream =
        futures_util::stream::unfold((rx, state.shutdown, attached), |(mut rx, shutdown, attached)| async move {
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                changed = rx.changed() => changed.ok()?,
            }
            let screen = rx.borrow_and_update().clone();
            let data = serde_json::to_string(&screen).ok()?;
            Some((Ok(Event::default().data(data)), (rx, shutdown, attached)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn desk_shown(State(state): State<BrokerState>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<DeskShown>(&body) {
        Ok(shown) => {
            state.agent.desk_shown(shown.seq);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_request", format!("expected {{\"seq\": N}}: {e}")),
    }
}

/// `POST /v1/pin`: the verdict is the next screen, as for a typed PIN.
async fn pin(State(state): State<BrokerState>, body: axum::body::Bytes) -> Response {
    let pin = match serde_json::from_slice::<DeskPin>(&body) {
        Ok(DeskPin { pin }) if !pin.is_empty() && pin.len() <= MAX_PIN && !pin.chars().any(char::is_control) => pin,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "invalid_request", "a PIN is 1 to 63 characters, no controls"),
        // The body is not echoed: it may hold the PIN.
        Err(_) => return error(StatusCode::BAD_REQUEST, "invalid_request", "expected {\"pin\": \"…\"}"),
    };
    // No touch() here: a PIN posted when none is asked for must not hold
    // off the idle lock (the check of a real PIN touches).
    match state.agent.desk().submit_pin(secrecy::SecretString::from(pin)) {
        Ok(()) => (StatusCode::ACCEPTED, Json(serde_json::json!({"accepted": true}))).into_response(),
        Err(e @ PadError::NotAsked) => error(StatusCode::CONFLICT, "no_pin_asked", e.to_string()),
        Err(e @ PadError::Busy) => error(StatusCode::TOO_MANY_REQUESTS, "busy", e.to_string()),
    }
}

/// `POST /v1/token`. The body is parsed here rather than by the `Json`
/// extractor so every refusal is the broker's JSON error shape.
async fn token(State(state): State<BrokerState>, body: axum::body::Bytes) -> Response {
    let request: BrokerTokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("expected {{\"client_id\": \"…\"}}: {e}"),
            );
        }
    };
    let client_id = request.client_id.trim();
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID || client_id.chars().any(char::is_control) {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "client_id must be a registered client id");
    }
    match state.agent.token(client_id).await {
        Ok(response) => Json(response).into_response(),
        Err(e) => token_error(e),
    }
}

fn token_error(e: TokenError) -> Response {
    match &e {
        TokenError::Locked | TokenError::Changed => error(StatusCode::CONFLICT, "locked", e.to_string()),
        TokenError::PinRequired => error(StatusCode::CONFLICT, "pin_required", e.to_string()),
        TokenError::Refused(ServerError::OAuth { error: oauth, .. }) => {
            let message = oauth.error_description.clone().unwrap_or_else(|| e.to_string());
            match oauth.error.as_str() {
                // The app asked for something the server does not know.
                "invalid_target" | "invalid_request" | "unauthorized_client" => {
                    error(StatusCode::BAD_REQUEST, &oauth.error, message)
                }
                // The workstation itself is not trusted: nothing the app can fix.
                _ => {
                    tracing::warn!(error = %e, "token exchange refused");
                    error(StatusCode::BAD_GATEWAY, &oauth.error, message)
                }
            }
        }
        TokenError::Refused(other) => {
            tracing::warn!(error = %other, "token exchange refused");
            error(StatusCode::BAD_GATEWAY, "server_error", other.to_string())
        }
        TokenError::Unavailable(ServerError::Malformed { .. } | ServerError::Key(_)) => {
            tracing::warn!(error = %e, "token exchange failed");
            error(StatusCode::BAD_GATEWAY, "server_error", "the Wardkey server's answer could not be used")
        }
        TokenError::Unavailable(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the Wardkey server cannot be reached right now; try again shortly",
        ),
    }
}

async fn events(State(state): State<BrokerState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.agent.subscribe();
    let stream = futures_util::stream::unfold((rx, state.shutdown), |(mut rx, shutdown)| async move {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return None,
            received = rx.recv() => match received {
                Ok(event) => event,
                // This listener fell behind and may have missed a lock:
                // tell it to lock, the safe reading of a gap.
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a broker event listener fell behind; sending it a lock");
                    BrokerEvent::Lock
                }
                Err(RecvError::Closed) => return None,
            },
        };
        let data = serde_json::to_string(&event).unwrap_or_else(|_| r#"{"event":"lock"}"#.into());
        Some((Ok(Event::default().data(data)), (rx, shutdown)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Why `status` could not read the broker.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Nothing listens on the socket.
    #[error("the agent is not running (nothing answers on {path})")]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It answered, but not with what was expected.
    #[error("the agent answered something unexpected: {0}")]
    Protocol(String),
    /// It refused (this user is not allowed): its sentence.
    #[error("{0}")]
    Refused(String),
}

/// `GET /v1/session` over the broker socket.
pub async fn fetch_session(path: &Path) -> Result<SessionInfo, StatusError> {
    let (status, body) = http_request(path, "GET", "/v1/session", b"").await?;
    if status != 200 {
        return Err(match serde_json::from_slice::<BrokerError>(&body) {
            Ok(refusal) => StatusError::Refused(refusal.message),
            Err(_) => StatusError::Protocol(format!("HTTP {status}")),
        });
    }
    serde_json::from_slice(&body).map_err(|e| StatusError::Protocol(e.to_string()))
}

/// One request over the broker's Unix socket with a JSON `body`: its
/// status and body (for `status`, `token` and tests).
pub async fn http_request(path: &Path, method: &str, target: &str, body: &[u8]) -> Result<(u16, Vec<u8>), StatusError> {
    let bad = |e: &dyn std::fmt::Display| StatusError::Protocol(e.to_string());
    let client = reqwest::Client::builder()
        .unix_socket(path.to_path_buf())
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| bad(&e))?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| bad(&e))?;
    let answer = client
        .request(method, format!("http://agent{target}"))
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| match e {
            e if e.is_connect() => StatusError::NotRunning { path: path.into(), source: std::io::Error::other(e) },
            e if e.is_timeout() => StatusError::Protocol("no answer within 5 s".into()),
            e => bad(&e),
        })?;
    let status = answer.status().as_u16();
    let body = answer.bytes().await.map_err(|e| bad(&e))?;
    Ok((status, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn status_of_a_missing_agent_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = fetch_session(&dir.path().join("none.sock")).await.unwrap_err();
        assert!(err.to_string().contains("not running"), "{err}");
    }

    #[tokio::test]
    async fn bind_replaces_a_stale_socket_but_not_a_live_one_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/agent.sock");
        let own = PeerPolicy::own_user();
        let first = bind(&path, &own).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert!(matches!(bind(&path, &own).await, Err(ServeError::InUse(_))));
        drop(first);
        // The socket file stays behind, as after a crash: it is stale now.
        assert!(path.exists());
        let _second = bind(&path, &own).await.unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(bind(&file, &own).await, Err(ServeError::NotASocket(_))));
        // Nothing of the private bind directory is left behind.
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from("agent.sock")]);
        let shared = bind(&dir.path().join("shared.sock"), &PeerPolicy::new(&["group:0".into()]).unwrap()).await;
        drop(shared.unwrap());
        assert_eq!(std::fs::metadata(dir.path().join("shared.sock")).unwrap().permissions().mode() & 0o777, 0o666);
    }
}
