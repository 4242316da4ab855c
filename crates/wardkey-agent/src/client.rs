//! HTTP to the Wardkey server: enrolment, the signed tap requests, token
//! exchange, and a health probe.
//!
//! Every way a request can go wrong ends as a [`ServerError`]: the network
//! (refused, timed out), the server saying no (`TapError` or an OAuth error
//! with a 4xx), the server being down (5xx), or an answer that does not
//! parse (including a state this agent does not know). The agent decides
//! what each means for the workstation; nothing here panics on what the
//! server sends.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wardkey_proto::oauth::{ErrorResponse, TokenResponse};
use wardkey_proto::tap::{
    DESK_LOCK_EVENT, DeskLock, DeskSubscribe, EnrolRequest, EnrolResponse, HandoffRequest, HandoffResponse,
    JOSE_CONTENT_TYPE, KeyChallenge, KeyTap, KeyTapStart, PinEntry, SESSION_TICKET_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT,
    Tap, TapError, TapOut, TapReport, TapResponse,
};

use crate::fido2::{self, Authenticator, Fido2Error};
use crate::keys::{KeyError, Signer};

/// RFC 7523 client assertion type.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Bodies larger than this are not read: no honest answer is near it.
const MAX_BODY: usize = 256 * 1024;

/// Why a FIDO2 key tap failed: at the key, or at the server.
#[derive(Debug, thiserror::Error)]
pub enum KeyTapError {
    /// The key could not answer.
    #[error(transparent)]
    Key(#[from] Fido2Error),
    /// The server refused, failed or could not be reached.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// A failed request to the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The network failed: refused, timed out, DNS, TLS.
    #[error("cannot reach the Wardkey server at {server}: {detail}")]
    Unreachable {
        /// The server URL.
        server: String,
        /// The root cause, in the OS's or TLS library's words.
        detail: String,
    },
    /// The server answered 5xx (503: a backend is down).
    #[error("the Wardkey server at {server} is temporarily unavailable: {message}")]
    Unavailable {
        /// The server URL.
        server: String,
        /// What it said.
        message: String,
    },
    /// The server refused a tap request (4xx with a `TapError`).
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The stable `TapError` code (`unknown_badge`, `wrong_pin`...).
        code: String,
        /// The server's sentence for the clinician.
        message: String,
    },
    /// The token endpoint refused (4xx with an OAuth error).
    #[error("the Wardkey server refused the token exchange: {}{}", .error.error,
        .error.error_description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    OAuth {
        /// HTTP status.
        status: u16,
        /// The OAuth error.
        error: ErrorResponse,
    },
    /// An answer this agent does not understand.
    #[error("the Wardkey server sent an answer this agent does not understand (HTTP {status}): {detail}")]
    Malformed {
        /// HTTP status.
        status: u16,
        /// What did not parse.
        detail: String,
    },
    /// Signing the request failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl ServerError {
    /// Whether trying again later may work (network down, server 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Unavailable { .. } => true,
            Self::Malformed { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Whether the server certainly refused and changed nothing, as
    /// opposed to an outcome the agent cannot know.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. } | Self::OAuth { .. })
    }

    /// The `TapError` or OAuth error code, if the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            Self::OAuth { error, .. } => Some(&error.error),
            _ => None,
        }
    }
}

/// The network failure in plain words: reqwest's top-level message says
/// only "error sending request", the cause is at the bottom of the chain.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".into();
    }
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// An HTTP client with the agent's timeouts. Redirects are not followed: a
/// signed request is for one URL only.
pub fn http_client(request_timeout: Duration) -> Result<reqwest::Client, ServerError> {
    reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(3)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wardkey-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ServerError::Unreachable { server: String::new(), detail: describe(&e) })
}

/// `POST {server}/tap/enrol`: register `public_key` with a one-time code.
pub async fn enrol(
    http: &reqwest::Client,
    server: &str,
    code: &str,
    public_key: &str,
) -> Result<EnrolResponse, ServerError> {
    let request = EnrolRequest { code: code.to_string(), public_key: public_key.to_string() };
    let response = http
        .post(format!("{server}/tap/enrol"))
        .json(&request)
        .send()
        .await
        .map_err(|e| ServerError::Unreachable { server: server.into(), detail: describe(&e) })?;
    read_answer(server, response, tap_error).await
}

/// Seconds since the Unix epoch, for `iat`: the wall clock by default;
/// tests whose server runs on a manual clock pass that clock instead.
pub type UnixClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The server as seen by one enrolled workstation.
pub struct ServerClient {
    http: reqwest::Client,
    /// For the desk channel: a stream that stays open, so no overall
    /// request timeout (the server's keep-alives show it is alive).
    streaming: reqwest::Client,
    signer: Signer,
    clock: UnixClock,
}

impl std::fmt::Debug for ServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerClient").field("signer", &self.signer).finish_non_exhaustive()
    }
}

impl ServerClient {
    /// A client signing with `signer`, giving up on each request after
    /// `request_timeout`.
    pub fn new(signer: Signer, request_timeout: Duration) -> Result<Self, ServerError> {
        let streaming = reqwest::Client::builder()
            .connect_timeout(request_timeout.min(Duration::from_secs(3)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wardkey-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ServerError::Unreachable { server: String::new(), detail: describe(&e) })?;
        Ok(Self { http: http_client(request_timeout)?, streaming, signer, clock: Arc::new(unix_now) })
    }

    /// Use `clock` for `iat` and `exp` instead of the wall clock.
    pub fn with_clock(mut self, clock: UnixClock) -> Self {
        self.clock = clock;
        self
    }

    /// The server URL (issuer).
    pub fn server(&self) -> &str {
        self.signer.issuer()
    }

    /// The workstation id.
    pub fn workstation_id(&self) -> &str {
        self.signer.workstation_id()
    }

    /// `POST /tap`.
    pub async fn tap(&self, badge: &str) -> Result<TapResponse, ServerError> {
        self.signed("/tap", Tap { badge: badge.to_string() }).await
    }

    /// A FIDO2 key tap: `POST /tap/key/start`, the key's answer for this
    /// server's origin, then `POST /tap/key`.
    /// The key talks to its reader on a blocking thread (a card answers in
    /// tens to hundreds of milliseconds).
    pub async fn key_tap(
        &self,
        key: Arc<dyn Authenticator>,
        pin: Option<SecretString>,
    ) -> Result<TapResponse, KeyTapError> {
        let challenge: KeyChallenge = self.signed("/tap/key/start", KeyTapStart {}).await?;
        let origin = self.signer.issuer().to_string();
        let options = challenge.options;
        let credential =
            tokio::task::spawn_blocking(move || fido2::answer(key.as_ref(), &options, &origin, pin.as_ref()))
                .await
                .map_err(|e| Fido2Error::Card(format!("the key's thread failed: {e}")))??;
        Ok(self.signed("/tap/key", KeyTap { ceremony: challenge.ceremony, credential }).await?)
    }

    /// `POST /tap/pin`.
    pub async fn pin(&self, tap_id: &str, pin: &SecretString) -> Result<TapResponse, ServerError> {
        self.signed("/tap/pin", PinEntry { tap_id: tap_id.to_string(), pin: pin.expose_secret().to_string() }).await
    }

    /// `POST /tap/self-enrol`: enrol this badge for the clinician who types
    /// their username and password (where the server allows it).
    pub async fn self_enrol(
        &self,
        badge: &str,
        username: &str,
        password: &SecretString,
    ) -> Result<TapResponse, ServerError> {
        let request = wardkey_proto::tap::SelfEnrol {
            badge: badge.to_string(),
            username: username.to_string(),
            password: password.expose_secret().to_string(),
        };
        self.signed("/tap/self-enrol", request).await
    }

    /// `POST /tap/out`: lock (or with `logout`, sign out everywhere).
    pub async fn tap_out(&self, logout: bool) -> Result<TapResponse, ServerError> {
        self.signed("/tap/out", TapOut { logout }).await
    }

    /// `POST /tap/handoff`: a one-time URL that opens `client_id`'s start
    /// page signed in.
    pub async fn handoff(&self, client_id: &str) -> Result<HandoffResponse, ServerError> {
        self.signed("/tap/handoff", HandoffRequest { client_id: client_id.to_string() }).await
    }

    /// `POST /tap/report` (204).
    pub async fn report(&self, tap_to_active_seconds: f64) -> Result<(), ServerError> {
        let response = self.send_signed("/tap/report", TapReport { tap_to_active_seconds }).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = read_body(self.server(), response).await?;
        Err(tap_error(self.server(), status.as_u16(), &body))
    }

    /// RFC 8693 token exchange at `/token`: the session ticket becomes
    /// tokens for the EPR client `audience`, authenticated by a
    /// `private_key_jwt` assertion.
    pub async fn token_exchange(&self, ticket: &SecretString, audience: &str) -> Result<TokenResponse, ServerError> {
        let assertion = self.signer.client_assertion((self.clock)()).map_err(KeyError::from)?;
        let form = [
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("subject_token", ticket.expose_secret()),
            ("subject_token_type", SESSION_TICKET_TOKEN_TYPE),
            ("audience", audience),
            ("client_id", self.workstation_id()),
            ("client_assertion_type", JWT_BEARER_ASSERTION),
            ("client_assertion", &assertion),
        ];
        let response = self
            .http
            .post(format!("{}/token", self.server()))
            .form(&form)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        read_answer(self.server(), response, oauth_error).await
    }

    /// `GET /healthz`: is the server back?
    pub async fn healthz(&self) -> Result<(), ServerError> {
        let response =
            self.http.get(format!("{}/healthz", self.server())).send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = read_body(self.server(), response).await?;
        Err(tap_error(self.server(), status.as_u16(), &body))
    }

    fn unreachable(&self, e: &reqwest::Error) -> ServerError {
        ServerError::Unreachable { server: self.server().to_string(), detail: describe(e) }
    }

    /// `POST /tap/events`: open the desk channel, telling the server the
    /// digest of the ticket held (`held`). Its events come from
    /// [`DeskChannel::next`].
    pub async fn desk_channel(&self, held: Option<String>) -> Result<DeskChannel, ServerError> {
        let jws = self.signer.tap_request(DeskSubscribe { held }, (self.clock)()).map_err(KeyError::from)?;
        let response = self
            .streaming
            .post(format!("{}/tap/events", self.server()))
            .header(reqwest::header::CONTENT_TYPE, JOSE_CONTENT_TYPE)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .body(jws)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_body(self.server(), response).await?;
            return Err(tap_error(self.server(), status.as_u16(), &body));
        }
        Ok(DeskChannel { response, buffer: Vec::new(), event: String::new() })
    }

    async fn send_signed<A: Serialize>(&self, path: &str, action: A) -> Result<reqwest::Response, ServerError> {
        let jws = self.signer.tap_request(action, (self.clock)()).map_err(KeyError::from)?;
        self.http
            .post(format!("{}{path}", self.server()))
            .header(reqwest::header::CONTENT_TYPE, JOSE_CONTENT_TYPE)
            .header(reqwest::header::ACCEPT, "application/json")
            .body(jws)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))
    }

    async fn signed<A: Serialize, R: DeserializeOwned>(&self, path: &str, action: A) -> Result<R, ServerError> {
        let response = self.send_signed(path, action).await?;
        read_answer(self.server(), response, tap_error).await
    }
}

/// Seconds since the Unix epoch from the wall clock: the default
/// [`UnixClock`] (the server checks `iat` against its own clock).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

async fn read_body(server: &str, mut response: reqwest::Response) -> Result<Vec<u8>, ServerError> {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(ServerError::Malformed { status, detail: "the answer is far too large".into() });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(ServerError::Unreachable { server: server.into(), detail: describe(&e) });
            }
        }
    }
}

async fn read_answer<R: DeserializeOwned>(
    server: &str,
    response: reqwest::Response,
    on_error: fn(&str, u16, &[u8]) -> ServerError,
) -> Result<R, ServerError> {
    let status = response.status();
    let body = read_body(server, response).await?;
    if status.is_success() {
        return serde_json::from_slice(&body)
            .map_err(|e| ServerError::Malformed { status: status.as_u16(), detail: e.to_string() });
    }
    Err(on_error(server, status.as_u16(), &body))
}

/// A non-2xx answer from the tap API.
fn tap_error(server: &str, status: u16, body: &[u8]) -> ServerError {
    let parsed = serde_json::from_slice::<TapError>(body).ok();
    if status >= 500 {
        let message = parsed.map_or_else(|| format!("HTTP {status}"), |e| e.message);
        return ServerError::Unavailable { server: server.into(), message };
    }
    match parsed {
        Some(e) => ServerError::Refused { status, code: e.error, message: e.message },
        None => ServerError::Malformed { status, detail: "the error answer is not a Wardkey tap error".into() },
    }
}

/// A non-2xx answer from the token endpoint (RFC 6749 §5.2).
fn oauth_error(server: &str, status: u16, body: &[u8]) -> ServerError {
    let parsed = serde_json::from_slice::<ErrorResponse>(body).ok();
    if status >= 500 || parsed.as_ref().is_some_and(|e| e.error == "temporarily_unavailable") {
        let message =
            parsed.map(|e| e.error_description.unwrap_or(e.error)).unwrap_or_else(|| format!("HTTP {status}"));
        return ServerError::Unavailable { server: server.into(), message };
    }
    match parsed {
        Some(error) => ServerError::OAuth { status, error },
        None => ServerError::Malformed { status, detail: "the error answer is not an OAuth error".into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_errors_map_to_typed_errors() {
        let body = br#"{"error":"unknown_badge","message":"this badge is not registered"}"#;
        match tap_error("s", 404, body) {
            ServerError::Refused { status: 404, code, message } => {
                assert_eq!(code, "unknown_badge");
                assert_eq!(message, "this badge is not registered");
            }
            other => panic!("{other:?}"),
        }
        let e = tap_error("s", 503, br#"{"error":"unavailable","message":"try again"}"#);
        assert!(matches!(&e, ServerError::Unavailable { message, .. } if message == "try again"));
        assert!(e.is_transient());
        let e = tap_error("s", 502, b"<html>bad gateway</html>");
        assert!(matches!(e, ServerError::Unavailable { .. }));
        let e = tap_error("s", 400, b"not json");
        assert!(matches!(e, ServerError::Malformed { status: 400, .. }));
        assert!(!e.is_transient() && !e.is_refusal());
    }

    #[test]
    fn oauth_errors_map_to_typed_errors() {
        let e = oauth_error("s", 400, br#"{"error":"invalid_grant","error_description":"locked"}"#);
        assert_eq!(e.code(), Some("invalid_grant"));
        assert!(e.is_refusal());
        assert!(e.to_string().contains("invalid_grant: locked"), "{e}");
        let e = oauth_error("s", 503, br#"{"error":"temporarily_unavailable"}"#);
        assert!(e.is_transient());
        let e = oauth_error("s", 401, b"");
        assert!(matches!(e, ServerError::Malformed { .. }));
    }
}

/// How long the desk channel may stay silent: the server sends a keep-alive
/// every 15 s, so a longer silence is a connection that died unnoticed.
const DESK_SILENCE: Duration = Duration::from_secs(45);
/// The longest line the desk channel may send.
const DESK_LINE_MAX: usize = 4096;

/// An open desk channel (`POST /tap/events`): server-sent events.
#[derive(Debug)]
pub struct DeskChannel {
    response: reqwest::Response,
    buffer: Vec<u8>,
    /// The `event:` name of the event being read.
    event: String,
}

impl DeskChannel {
    /// The next lock the server sends; `None` when the channel has ended
    /// (closed, silent too long, or sending what it should not): reconnect.
    pub async fn next(&mut self) -> Option<DeskLock> {
        loop {
            while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\r', '\n']);
                if let Some(name) = line.strip_prefix("event:") {
                    self.event = name.trim().to_string();
                } else if let Some(data) = line.strip_prefix("data:") {
                    if self.event == DESK_LOCK_EVENT
                        && let Ok(lock) = serde_json::from_str::<DeskLock>(data.trim())
                    {
                        return Some(lock);
                    }
                } else if line.is_empty() {
                    self.event.clear();
                }
            }
            if self.buffer.len() > DESK_LINE_MAX {
                return None;
            }
            match tokio::time::timeout(DESK_SILENCE, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }
}
