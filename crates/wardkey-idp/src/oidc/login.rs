//! The sign-in page: a plain HTML form (no JavaScript needed) with a
//! double-submit CSRF token, argon2id verification off the runtime, and
//! NIST SP 800-63B §5.2.2 throttling.

use crate::admission::ClientAddress;
use crate::signins::Method;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wardkey_core::secret::{constant_time_eq, random_token};
use wardkey_core::session::{ACR_PASSWORD, Amr};

use crate::cookies::CookieName;
use crate::error::PageError;
use crate::kv::{get_json, keys, take_json};
use crate::logins::Verdict;
use crate::metrics::Metrics;
use crate::pages;
use crate::params::Params;
use crate::sessions::PendingAuthorization;
use crate::state::AppState;

use super::authorize::{complete, needs_words};
use crate::pages::see_other;

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
    let with = pages::LoginOptions { passkeys: state.passkeys.enabled(), needs: needs_words(min_acr) };
    let mut response = (status, pages::login_page(username, request, &csrf, error, &with)).into_response();
    state.cookies.set(response.headers_mut(), CookieName::Csrf, &csrf);
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

/// `POST /login`.
pub async fn submit(
    State(state): State<AppState>,
    ClientAddress(from): ClientAddress,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let params = match Params::from_form(&headers, &body) {
        Ok(p) => p,
        Err(e) => {
            return PageError::BadRequest(format!("The sign-in form was not sent correctly: {e}.")).into_response();
        }
    };
    let request = params.get("request").unwrap_or("");
    let username = params.get("username").unwrap_or("").trim();
    let csrf_ok = match (params.get("csrf"), state.cookies.read(&headers, CookieName::Csrf)) {
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

    let verdict = match state.logins.check(username, password).await {
        Ok(v) => v,
        Err(e) => return PageError::from(e).into_response(),
    };
    let (status, message, outcome) = match verdict {
        Verdict::Success(user) => {
            state.signins.record_browser(Method::Password, &user.username, pending.as_ref(), started, from);
            return signed_in(&state, user, pending, request).await;
        }
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
        Verdict::DirectoryUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Your password cannot be checked right now because the trust directory is not answering. \
             Try again in a few minutes, or tap your badge if you have one."
                .to_string(),
            "directory_unavailable",
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

async fn audit(state: &AppState, event: &str, subject: &str, detail: serde_json::Value) {
    state.audit.record(event, subject, subject, detail).await;
}

async fn signed_in(
    state: &AppState,
    user: wardkey_core::user::User,
    pending: Option<PendingAuthorization>,
    request: &str,
) -> Response {
    Metrics::count(&state.metrics.logins, "success");
    let (cookie, session) = match state.sessions.create_session(&user.id, vec![Amr::Pwd], ACR_PASSWORD).await {
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
    state.cookies.set(response.headers_mut(), CookieName::Session, &cookie);
    state.cookies.clear(response.headers_mut(), CookieName::Csrf);
    response
}
