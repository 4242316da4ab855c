//! The sign-in page: a plain HTML form (no JavaScript needed) with a
//! double-submit CSRF token, argon2id verification off the runtime, and
//! NIST SP 800-63B §5.2.2 throttling.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wardkey_core::audit::AuditEvent;
use wardkey_core::secret::{constant_time_eq, digest_b64, random_token};
use wardkey_core::session::{ACR_PASSWORD, Amr};
use wardkey_store::CredentialKind;

use crate::cookies::CookieName;
use crate::error::PageError;
use crate::metrics::Metrics;
use crate::pages;
use crate::params::Params;
use crate::password::backoff_seconds;
use crate::sessions::{PendingAuthorization, get_json, keys, put_json, take_json};
use crate::state::AppState;

use super::authorize::{complete, needs_words, see_other};

/// Bounds the per-username "check in progress" marker if a node dies
/// mid-check.
const LOGIN_IN_FLIGHT_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a password check claimed in the store
/// ([`wardkey_store::Store::begin_login_attempt`]) holds if its node dies
/// before recording the outcome.
const LOGIN_ATTEMPT_STALE: std::time::Duration = std::time::Duration::from_secs(60);
/// How long failures of an unknown username are remembered.
const UNKNOWN_USER_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

const EXPIRED: &str = "This sign-in page has expired. Go back to the application and start signing in again.";

/// Render the form with a fresh CSRF token bound to this browser, for an
/// application that needs at least `min_acr`.
fn render(
    state: &AppState,
    status: StatusCode,
    username: &str,
    request: &str,
    error: Option<&str>,
    min_acr: Option<&str>,
) -> Response {
    let csrf = random_token(32);
    let with = pages::LoginOptions { passkeys: state.webauthn.is_some(), needs: needs_words(min_acr) };
    let mut response = (status, pages::login_page(username, request, &csrf, error, &with)).into_response();
    state.set_cookie(response.headers_mut(), CookieName::Csrf, &csrf);
    response
}

/// `GET /login`.
pub async fn form(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let request = Params::parse(query.unwrap_or_default().as_bytes())
        .ok()
        .and_then(|p| p.get("request").map(str::to_string))
        .unwrap_or_default();
    let mut hint = String::new();
    let mut min_acr = None;
    if !request.is_empty() {
        match get_json::<PendingAuthorization>(state.cache.as_ref(), &keys::pending(&request)).await {
            Ok(Some(p)) => {
                hint = p.login_hint.unwrap_or_default();
                min_acr = p.min_acr;
            }
            Ok(None) => return PageError::BadRequest(EXPIRED.into()).into_response(),
            Err(e) => return PageError::from(e).into_response(),
        }
    }
    render(&state, StatusCode::OK, &hint, &request, None, min_acr.as_deref())
}

/// What a password check concluded.
pub(crate) enum Verdict {
    Success(wardkey_core::user::User),
    Wrong,
    Throttled(i64),
    Locked,
    Disabled,
}

/// `POST /login`.
pub async fn submit(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match Params::from_form(&headers, &body) {
        Ok(p) => p,
        Err(e) => {
            return PageError::BadRequest(format!("The sign-in form was not sent correctly: {e}.")).into_response();
        }
    };
    let request = params.get("request").unwrap_or("");
    let username = params.get("username").unwrap_or("").trim();
    let csrf_ok = match (params.get("csrf"), state.read_cookie(&headers, CookieName::Csrf)) {
        (Some(form), Some(cookie)) => constant_time_eq(form, cookie),
        _ => false,
    };
    if !csrf_ok {
        return render(
            &state,
            StatusCode::FORBIDDEN,
            username,
            request,
            Some("This form had expired or did not come from this page. Please sign in again."),
            None,
        );
    }
    let pending = if request.is_empty() {
        None
    } else {
        match get_json::<PendingAuthorization>(state.cache.as_ref(), &keys::pending(request)).await {
            Ok(Some(p)) => Some(p),
            Ok(None) => return PageError::BadRequest(EXPIRED.into()).into_response(),
            Err(e) => return PageError::from(e).into_response(),
        }
    };
    let min_acr = pending.as_ref().and_then(|p| p.min_acr.clone());
    let min_acr = min_acr.as_deref();
    if let Some(needs) = needs_words(min_acr) {
        return render(&state, StatusCode::FORBIDDEN, username, request, Some(needs), min_acr);
    }
    let password = params.get("password").unwrap_or("");
    if username.is_empty() || password.is_empty() {
        let error = Some("Enter your username and password.");
        return render(&state, StatusCode::BAD_REQUEST, username, request, error, min_acr);
    }
    if password.len() > 1024 {
        return render(&state, StatusCode::BAD_REQUEST, username, request, Some("That password is too long."), min_acr);
    }

    let verdict = match check_password(&state, username, password).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let (status, message, outcome) = match verdict {
        Verdict::Success(user) => return signed_in(&state, user, pending, request).await,
        Verdict::Wrong => (
            StatusCode::BAD_REQUEST,
            "The username or password is not right. Check them and try again.".to_string(),
            "failure",
        ),
        Verdict::Throttled(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many unsuccessful attempts. Wait {wait} seconds, then try again."),
            "throttled",
        ),
        Verdict::Locked => (
            StatusCode::FORBIDDEN,
            "This account is locked after too many unsuccessful attempts. Call the IT service desk to unlock it."
                .to_string(),
            "locked",
        ),
        Verdict::Disabled => (
            StatusCode::FORBIDDEN,
            "This account is disabled. Call the IT service desk if you need access.".to_string(),
            "disabled",
        ),
    };
    Metrics::count(&state.metrics.logins, outcome);
    let mut response = render(&state, status, username, request, Some(&message), min_acr);
    if let Verdict::Throttled(wait) = verdict
        && let Ok(v) = HeaderValue::from_str(&wait.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Failed sign-ins for a username that does not exist, kept like a real
/// account's counter.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct UnknownFailures {
    count: u32,
    last: i64,
}

/// Throttle, verify and record the outcome. Unknown usernames are verified
/// against a dummy hash and counted in the cache, so they look like known
/// ones in time and message.
pub(crate) async fn check_password(state: &AppState, username: &str, password: &str) -> Result<Verdict, PageError> {
    let unknown_key = keys::unknown_user_failures(&digest_b64(&username.to_lowercase()));
    // One check per username at a time, taken before the counters are read:
    // concurrent guesses would otherwise all read the same counters and all
    // pass the backoff test before any failure is recorded.
    let inflight = keys::login_in_flight(&unknown_key);
    if !state.cache.put_if_absent(&inflight, b"1", LOGIN_IN_FLIGHT_TTL).await? {
        return Ok(Verdict::Throttled(1));
    }
    let verdict = throttle_and_verify(state, username, password, &unknown_key).await;
    state.cache.delete(&inflight).await?;
    verdict
}

async fn throttle_and_verify(
    state: &AppState,
    username: &str,
    password: &str,
    unknown_key: &str,
) -> Result<Verdict, PageError> {
    let cfg = &state.settings.password;
    let now = state.now();
    let user = state.store.user_by_username(username).await?;
    let (failures, last_failed) = match &user {
        Some(u) => (u.failed_logins, u.last_failed_at),
        None => get_json::<UnknownFailures>(state.cache.as_ref(), unknown_key)
            .await?
            .map_or((0, None), |f| (f.count, Some(f.last))),
    };
    if failures >= cfg.lock_after {
        return Ok(Verdict::Locked);
    }
    if let Some(last) = last_failed {
        let wait = last + backoff_seconds(failures, cfg.backoff_after) - now;
        if wait > 0 {
            return Ok(Verdict::Throttled(wait));
        }
    }
    verify_and_record(state, user, username, password, failures, now, unknown_key).await
}

async fn verify_and_record(
    state: &AppState,
    user: Option<wardkey_core::user::User>,
    username: &str,
    password: &str,
    failures: u32,
    now: i64,
    unknown_key: &str,
) -> Result<Verdict, PageError> {
    let cfg = &state.settings.password;
    if let Some(u) = &user {
        // Claimed in the store before the slow verification, atomically
        // with the lock check: the in-flight marker above is only a cache
        // entry, and a guess must never be judged against a count that a
        // guess still under way will change.
        let stale_before = now - LOGIN_ATTEMPT_STALE.as_secs() as i64;
        if !state.store.begin_login_attempt(&u.id, now, cfg.lock_after, stale_before).await? {
            return Ok(Verdict::Throttled(1));
        }
    }
    let stored = match &user {
        Some(u) => state.store.credential(&u.id, CredentialKind::Password).await?,
        None => None,
    };
    let (ok, seconds) = state.passwords.verify(stored, password.to_string()).await;
    state.metrics.password_verify.observe(seconds);
    match user {
        Some(user) if ok => {
            state.store.end_login_attempt(&user.id).await?;
            if user.disabled {
                return Ok(Verdict::Disabled);
            }
            if user.failed_logins > 0 {
                state.store.reset_login_failures(&user.id).await?;
            }
            // A password sign-in also unlocks badges locked by wrong PINs;
            // failing to do so must not fail the sign-in itself.
            if let Err(e) = state.store.reset_pin_failures(&user.id).await {
                tracing::warn!(error = %e, "could not reset badge PIN failures");
            }
            state.directory_changed().await;
            Ok(Verdict::Success(user))
        }
        Some(user) => {
            let n = state.store.record_login_failure(&user.id, now).await?;
            audit(state, "login.failure", username, json!({"consecutive_failures": n})).await;
            Ok(if n >= cfg.lock_after { Verdict::Locked } else { Verdict::Wrong })
        }
        None => {
            // The same counting and backoff as for a real account, so the
            // answers never tell which usernames exist. A new record for a
            // username nobody has is anyone's to create: counted in total
            // (the form carries no address, and a real account's failures
            // live in the store).
            if failures == 0
                && let Err(refusal) = state.admission.admit(crate::admission::Kept::UnknownUser, None).await
            {
                // The answer a real account's first failure gets: a full
                // quota must not tell which usernames exist.
                tracing::warn!(error = %refusal, "not recording a failure of an unknown username");
                return Ok(Verdict::Wrong);
            }
            let record = UnknownFailures { count: failures + 1, last: now };
            put_json(state.cache.as_ref(), unknown_key, &record, UNKNOWN_USER_WINDOW).await?;
            Ok(if record.count >= cfg.lock_after { Verdict::Locked } else { Verdict::Wrong })
        }
    }
}

async fn audit(state: &AppState, event: &str, subject: &str, detail: serde_json::Value) {
    let record =
        AuditEvent { at: state.now(), event: event.into(), actor: subject.into(), subject: subject.into(), detail };
    if let Err(e) = state.store.append_audit(&record).await {
        tracing::error!(error = %e, event, "audit write failed");
    }
}

async fn signed_in(
    state: &AppState,
    user: wardkey_core::user::User,
    pending: Option<PendingAuthorization>,
    request: &str,
) -> Response {
    Metrics::count(&state.metrics.logins, "success");
    let (cookie, session) = match state.create_session(&user.id, vec![Amr::Pwd], ACR_PASSWORD).await {
        Ok(s) => s,
        Err(e) => return PageError::from(e).into_response(),
    };
    audit(state, "login.success", &user.username, json!({"sid": session.sid, "amr": ["pwd"]})).await;
    let mut response = match pending {
        Some(_) => {
            // Take, not get: a pending request completes once, even if the
            // form is submitted twice.
            match take_json::<PendingAuthorization>(state.cache.as_ref(), &keys::pending(request)).await {
                Ok(Some(p)) => complete(state, &p, &session).await,
                Ok(None) => see_other("/login"),
                Err(e) => PageError::from(e).into_response(),
            }
        }
        None => (StatusCode::OK, pages::message_page("Signed in", &format!("You are signed in as {}.", user.username)))
            .into_response(),
    };
    state.set_cookie(response.headers_mut(), CookieName::Session, &cookie);
    state.clear_cookie(response.headers_mut(), CookieName::Csrf);
    response
}
