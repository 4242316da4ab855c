//! Every error a handler can return, and how each becomes an HTTP response.
//! This is the one place that decides status codes and bodies.
//!
//! Three audiences, three shapes:
//! - OAuth clients at `/token`, `/introspect`, `/revoke`: RFC 6749 §5.2 JSON
//!   ([`OAuthError`]);
//! - resource requests at `/userinfo`: RFC 6750 §3 `WWW-Authenticate`
//!   ([`BearerError`]);
//! - people in a browser: an HTML page in plain words ([`PageError`]).
//!
//! Internal detail (a database error, a cache timeout) is logged here and
//! never sent: the client gets a generic description.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wardkey_cache::CacheError;
use wardkey_store::StoreError;

use crate::keys::KeyError;
use crate::pages;

/// An OAuth 2.0 error response (RFC 6749 §5.2, RFC 7009 §2.2.1, RFC 8693
/// §2.2.2). Descriptions are for the developer integrating an EPR app.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// Malformed request: a missing, repeated or invalid parameter.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed. `basic` says whether the client tried
    /// HTTP Basic, which makes the answer 401 with `WWW-Authenticate`.
    #[error("invalid_client: {description}")]
    InvalidClient {
        /// What failed.
        description: String,
        /// Whether the client used the Authorization header.
        basic: bool,
    },
    /// The code, refresh token or assertion is invalid, expired, revoked,
    /// or belongs to another client.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// The client is not registered for this grant type.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// The grant type is unknown.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// The requested scope is not allowed.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// RFC 8693 §2.2.2: the audience is not a client we issue tokens for.
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    /// The authentication behind the grant is weaker than the client needs
    /// (the code of RFC 9470 §3). Not `invalid_grant`: the grant itself is
    /// good, and a workstation agent locks the PC on `invalid_grant`, which
    /// any local program could otherwise trigger by asking for a token for
    /// a strict application.
    #[error("insufficient_user_authentication: {0}")]
    InsufficientUserAuthentication(String),
    /// RFC 7009 §2.2.1: a `token_type_hint` we cannot revoke.
    #[error("unsupported_token_type: {0}")]
    UnsupportedTokenType(String),
    /// A backend (cache, store) is unreachable: retry later.
    #[error("temporarily_unavailable: {0}")]
    TemporarilyUnavailable(String),
    /// A bug or unexpected failure; detail logged, not sent.
    #[error("server_error: {0}")]
    Server(String),
}

impl OAuthError {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::UnsupportedTokenType(_) => "unsupported_token_type",
            Self::InvalidTarget(_) => "invalid_target",
            Self::InsufficientUserAuthentication(_) => "insufficient_user_authentication",
            Self::TemporarilyUnavailable(_) => "temporarily_unavailable",
            Self::Server(_) => "server_error",
        }
    }

    /// The `error` code, for metrics labels.
    pub fn error_code(&self) -> &'static str {
        self.code()
    }

    /// Shorthand for an `invalid_client` answer.
    pub fn invalid_client(description: impl Into<String>, basic: bool) -> Self {
        Self::InvalidClient { description: description.into(), basic }
    }
}

impl From<CacheError> for OAuthError {
    fn from(e: CacheError) -> Self {
        tracing::error!(error = %e, "session cache failed");
        Self::TemporarilyUnavailable("the session cache is unavailable; retry shortly".into())
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        Self::TemporarilyUnavailable("the directory is unavailable; retry shortly".into())
    }
}

impl From<KeyError> for OAuthError {
    fn from(e: KeyError) -> Self {
        Self::Server(e.to_string())
    }
}

/// Responses carrying tokens or token errors must not be cached (RFC 6749
/// §5.1).
pub fn no_store(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, description) = match &self {
            Self::InvalidClient { description, .. } => (StatusCode::UNAUTHORIZED, description.clone()),
            Self::TemporarilyUnavailable(d) => (StatusCode::SERVICE_UNAVAILABLE, d.clone()),
            Self::Server(detail) => {
                tracing::error!(detail, "token endpoint failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "an internal error occurred; it has been logged".into())
            }
            Self::InvalidRequest(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::UnsupportedTokenType(d)
            | Self::InvalidTarget(d)
            | Self::InsufficientUserAuthentication(d) => (StatusCode::BAD_REQUEST, d.clone()),
        };
        let mut response =
            (status, Json(json!({"error": self.code(), "error_description": description}))).into_response();
        match &self {
            Self::InvalidClient { basic: true, .. } => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"wardkey\""));
            }
            Self::TemporarilyUnavailable(_) => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        no_store(response)
    }
}

/// A failed bearer-token request (RFC 6750 §3.1).
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    /// No token was presented.
    #[error("no access token")]
    Missing,
    /// The request is malformed (two tokens, a bad header).
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// The token is expired, revoked, malformed or not ours.
    #[error("invalid_token: {0}")]
    InvalidToken(String),
    /// A backend is unreachable.
    #[error("temporarily unavailable")]
    Unavailable,
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let (status, challenge) = match &self {
            Self::Missing => (StatusCode::UNAUTHORIZED, "Bearer realm=\"wardkey\"".to_string()),
            Self::InvalidRequest(d) => (
                StatusCode::BAD_REQUEST,
                format!("Bearer realm=\"wardkey\", error=\"invalid_request\", error_description=\"{d}\""),
            ),
            Self::InvalidToken(d) => (
                StatusCode::UNAUTHORIZED,
                format!("Bearer realm=\"wardkey\", error=\"invalid_token\", error_description=\"{d}\""),
            ),
            Self::Unavailable => {
                let mut r = (StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable").into_response();
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        };
        let mut response = status.into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        no_store(response)
    }
}

/// An error shown to a person in a browser. The message is plain words for a
/// clinician or an integrator; internal detail is logged only.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Something in the request is wrong (an unregistered redirect URI, an
    /// unknown client, an expired form). Never redirected anywhere.
    #[error("{0}")]
    BadRequest(String),
    /// The service cannot serve this right now.
    #[error("unavailable")]
    Unavailable,
    /// A bug or unexpected failure.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<KeyError> for PageError {
    fn from(e: KeyError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is temporarily unavailable. Please try again in a moment; if it keeps happening, call the IT service desk.".into(),
            ),
            Self::Internal(detail) => {
                tracing::error!(detail, "page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on our side. It has been logged; please try again or call the IT service desk.".into(),
                )
            }
        };
        let mut response = (status, pages::error_page(&message)).into_response();
        if matches!(self, Self::Unavailable) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl crate::admission::Refusal {
    /// The status, and the seconds to wait (`Retry-After`).
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::TooMany => (StatusCode::TOO_MANY_REQUESTS, "60"),
            Self::Full => (StatusCode::SERVICE_UNAVAILABLE, "60"),
            Self::Cache(_) => (StatusCode::SERVICE_UNAVAILABLE, "1"),
        }
    }
}

/// A refused record on a page (the sign-in flow): the sentence, 429 or 503.
impl IntoResponse for crate::admission::Refusal {
    fn into_response(self) -> Response {
        if let Self::Cache(e) = self {
            return PageError::from(e).into_response();
        }
        let (status, wait) = self.status();
        let mut response = (status, pages::error_page(&self.to_string())).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(wait));
        response
    }
}

/// A failure of the store or the cache, for code that touches both. Each
/// caller maps it to its audience's shape through the `From` impls below.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The session cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A refused tap-protocol request. `message` is for the clinician at the
/// ward PC or the service desk; `error` is a stable code for the agent.
#[derive(Debug, thiserror::Error)]
pub enum TapApiError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// Not signed by an enrolled workstation's key.
    #[error("this workstation is not recognised; ask IT to re-enrol it")]
    InvalidSignature,
    /// The same signed request was seen before.
    #[error("this request was already used")]
    Replayed,
    /// `iat` is outside the allowed clock skew.
    #[error("the workstation's clock is wrong; ask IT to check its time settings")]
    Stale,
    /// The workstation is disabled.
    #[error("this workstation has been disabled; use another one or call the IT service desk")]
    WorkstationDisabled,
    /// The badge is not enrolled.
    #[error("this badge is not registered; sign in with your username and password, or call the IT service desk")]
    UnknownBadge,
    /// Too many wrong PINs.
    #[error("this badge is locked after too many wrong PINs; sign in once with your password to unlock it")]
    BadgeLocked,
    /// The user is disabled.
    #[error("this account is disabled; call the IT service desk")]
    UserDisabled,
    /// Wrong PIN.
    #[error("wrong PIN: {remaining} attempts left before the badge locks")]
    WrongPin {
        /// Attempts before the badge locks.
        remaining: u32,
    },
    /// A PIN shorter than any PIN can be: a typing slip, not a guess, so
    /// it costs no attempt and the prompt stays open.
    #[error("that PIN is too short: PINs have at least {min} digits. It did not count as a wrong PIN; type it again")]
    PinTooShort {
        /// The shortest PIN (`tap.pin_min_length`).
        min: usize,
    },
    /// The tap, code or link has expired or was used.
    #[error("{0}")]
    Expired(String),
    /// A backend is down.
    #[error("sign-in is temporarily unavailable; try again in a moment")]
    Unavailable,
    /// Policy does not allow this (self-enrolment off, account locked).
    #[error("{0}")]
    NotAllowed(String),
    /// Wrong username or password.
    #[error("the username or password is not right")]
    WrongPassword,
    /// Too many failed attempts: wait.
    #[error("too many unsuccessful attempts; wait {wait} seconds, then try again")]
    Throttled {
        /// Seconds to wait.
        wait: i64,
    },
}

impl TapApiError {
    fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidSignature => "invalid_signature",
            Self::Replayed => "replayed",
            Self::Stale => "stale",
            Self::WorkstationDisabled => "workstation_disabled",
            Self::UnknownBadge => "unknown_badge",
            Self::BadgeLocked => "badge_locked",
            Self::UserDisabled => "user_disabled",
            Self::WrongPin { .. } => "wrong_pin",
            Self::PinTooShort { .. } => "pin_too_short",
            Self::Expired(_) => "expired",
            Self::Unavailable => "unavailable",
            Self::NotAllowed(_) => "not_allowed",
            Self::WrongPassword => "wrong_password",
            Self::Throttled { .. } => "throttled",
        }
    }
}

impl From<KeyError> for TapApiError {
    fn from(e: KeyError) -> Self {
        tracing::error!(error = %e, "signing failed");
        Self::Unavailable
    }
}

impl IntoResponse for TapApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::InvalidRequest(_) | Self::Stale | Self::PinTooShort { .. } => StatusCode::BAD_REQUEST,
            Self::InvalidSignature | Self::WrongPin { .. } => StatusCode::UNAUTHORIZED,
            Self::Replayed => StatusCode::CONFLICT,
            Self::WorkstationDisabled | Self::BadgeLocked | Self::UserDisabled | Self::NotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            Self::WrongPassword => StatusCode::UNAUTHORIZED,
            Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UnknownBadge => StatusCode::NOT_FOUND,
            Self::Expired(_) => StatusCode::GONE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = wardkey_proto::tap::TapError { error: self.code().into(), message: self.to_string() };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        no_store(response)
    }
}

/// A refused step of a WebAuthn ceremony (the JSON API behind the sign-in
/// and security-key pages). `message` is shown to the person as it is.
#[derive(Debug, thiserror::Error)]
pub enum WebauthnApiError {
    /// The request is malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// No signed-in session where one is needed.
    #[error("you are not signed in (or your session has ended); sign in and try again")]
    NotSignedIn,
    /// The ceremony is unknown, used or timed out.
    #[error("this request has expired; try again")]
    Expired,
    /// The authenticator's answer did not verify, or names no key we know.
    #[error("{0}")]
    Refused(String),
    /// The key verified but is not a model on the trust's allow-list
    /// (`webauthn.approved_models`), or would not say which model it is:
    /// WebAuthn L2 §7.1 step 21 found its attestation not trustworthy.
    #[error("This key is not one your trust has approved. Use a key issued by IT.")]
    KeyNotApproved,
    /// The same refusal for a key whose attestation did not arrive (format
    /// `none`): usually the browser asked whether to share the key's make
    /// and model and was told no, so say how to get past that.
    #[error(
        "The key did not say which model it is, so it cannot be checked. Add it again and, if the browser asks, \
         allow it to see the key's make and model; or use a key issued by IT."
    )]
    KeyModelHidden,
    /// The trust has turned off self-service passkeys (`webauthn.passkeys =
    /// false`): only security keys can be added.
    #[error("Your trust does not allow passkeys to be added here. Add a security key issued by IT instead.")]
    PasskeysOff,
    /// Adding a key needs a recent sign-in at least as strong as the key
    /// (NIST SP 800-63B §6.1.2.1), or a service-desk invite: a phished
    /// password must not become a permanent key.
    #[error(
        "To add a key, first sign in again with a key you already have (in the last few minutes), or ask the IT \
         service desk for an invite link."
    )]
    SignInAgain,
    /// Passkeys are not available on this server's address.
    #[error("passkeys need the server to be reached by a host name, not an IP address; ask IT")]
    NotConfigured,
    /// The cache or the store is unavailable.
    #[error("Wardkey is temporarily unavailable; try again in a moment")]
    Unavailable,
    /// Too many ceremonies started (see `admission`).
    #[error("{0}")]
    Busy(crate::admission::Refusal),
}

impl From<crate::admission::Refusal> for WebauthnApiError {
    fn from(e: crate::admission::Refusal) -> Self {
        match e {
            crate::admission::Refusal::Cache(e) => e.into(),
            other => Self::Busy(other),
        }
    }
}

impl WebauthnApiError {
    /// The stable code in the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::NotSignedIn => "not_signed_in",
            Self::Expired => "expired",
            Self::Refused(_) => "refused",
            Self::KeyNotApproved | Self::KeyModelHidden => "key_not_approved",
            Self::PasskeysOff => "passkeys_off",
            Self::SignInAgain => "sign_in_again",
            Self::Busy(_) => "busy",
            Self::NotConfigured => "not_configured",
            Self::Unavailable => "unavailable",
        }
    }
}

impl From<PageError> for WebauthnApiError {
    fn from(e: PageError) -> Self {
        match e {
            PageError::BadRequest(m) => Self::InvalidRequest(m),
            _ => Self::Unavailable,
        }
    }
}

impl IntoResponse for WebauthnApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotSignedIn | Self::Refused(_) => StatusCode::UNAUTHORIZED,
            Self::KeyNotApproved | Self::KeyModelHidden | Self::PasskeysOff | Self::SignInAgain => {
                StatusCode::FORBIDDEN
            }
            Self::Expired => StatusCode::GONE,
            Self::NotConfigured => StatusCode::NOT_FOUND,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Busy(refusal) => refusal.status().0,
        };
        let body = serde_json::json!({"error": self.code(), "message": self.to_string()});
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        no_store(response)
    }
}

/// A refused SCIM 2.0 request, answered in SCIM's error format (RFC 7644
/// §3.12) with its `scimType` where the RFC names one.
#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    /// No bearer token, or one no `[scim] tokens` entry holds.
    #[error(
        "a SCIM bearer token is required: the provisioning client's \"Secret Token\" from `wardkey scim token NAME`"
    )]
    Unauthorized,
    /// The body is not JSON, or not the shape the request needs.
    #[error("{0}")]
    InvalidSyntax(String),
    /// A value breaks the schema or Wardkey's rules.
    #[error("{0}")]
    InvalidValue(String),
    /// A PATCH path names no attribute of the schema.
    #[error("{0}")]
    InvalidPath(String),
    /// A filter Wardkey does not support.
    #[error("{0}")]
    InvalidFilter(String),
    /// A read-only attribute, or a user another source owns.
    #[error("{0}")]
    Mutability(String),
    /// The userName or externalId is taken.
    #[error("{0}")]
    Uniqueness(String),
    /// No such resource.
    #[error("{0}")]
    NotFound(String),
    /// `If-Match` names another version.
    #[error("the resource has changed since version {0}: fetch it again, then retry")]
    PreconditionFailed(String),
    /// A backend is down.
    #[error("the service is temporarily unavailable; try again in a moment")]
    Unavailable,
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let (status, scim_type) = match &self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, None),
            Self::InvalidSyntax(_) => (StatusCode::BAD_REQUEST, Some("invalidSyntax")),
            Self::InvalidValue(_) => (StatusCode::BAD_REQUEST, Some("invalidValue")),
            Self::InvalidPath(_) => (StatusCode::BAD_REQUEST, Some("invalidPath")),
            Self::InvalidFilter(_) => (StatusCode::BAD_REQUEST, Some("invalidFilter")),
            Self::Mutability(_) => (StatusCode::BAD_REQUEST, Some("mutability")),
            Self::Uniqueness(_) => (StatusCode::CONFLICT, Some("uniqueness")),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, None),
            Self::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, None),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        let mut body = serde_json::json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": status.as_u16().to_string(),
            "detail": self.to_string(),
        });
        if let Some(scim_type) = scim_type {
            body["scimType"] = scim_type.into();
        }
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/scim+json")], body.to_string()).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"scim\""));
        }
        no_store(response)
    }
}

/// A backend failure becomes each response type's "unavailable": logged
/// here, once, and answered with a retry, never with what failed inside.
macro_rules! unavailable_on_backend_failure {
    ($($ty:ty),+ $(,)?) => {$(
        impl From<CacheError> for $ty {
            fn from(e: CacheError) -> Self {
                tracing::error!(error = %e, "session cache failed");
                Self::Unavailable
            }
        }

        impl From<StoreError> for $ty {
            fn from(e: StoreError) -> Self {
                tracing::error!(error = %e, "store failed");
                Self::Unavailable
            }
        }
    )+};
}

unavailable_on_backend_failure!(BearerError, PageError, ScimError, TapApiError, WebauthnApiError);

/// A service's [`BackendError`] is answered as the cache's or the store's
/// own failure would be.
macro_rules! from_backend_error {
    ($($ty:ty),+ $(,)?) => {$(
        impl From<BackendError> for $ty {
            fn from(e: BackendError) -> Self {
                match e {
                    BackendError::Cache(e) => e.into(),
                    BackendError::Store(e) => e.into(),
                }
            }
        }
    )+};
}

from_backend_error!(OAuthError, PageError, TapApiError);
