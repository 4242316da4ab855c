//! RP-Initiated Logout 1.0.
//!
//! With a valid `id_token_hint` (signed by us, any age) for the session this
//! browser holds, that session ends at once. Without one, or with one for a
//! session the browser does not hold, the person is asked to confirm
//! (RP-Initiated Logout §2: the OP MUST ask when the ID token "does not
//! belong to the current OP session"), so neither a third-party page nor
//! anyone holding an old ID token can sign a clinician out elsewhere. A `post_logout_redirect_uri` is honoured only
//! when it exactly matches one registered for the client the hint (or
//! `client_id`) names; anything else shows a page and never redirects.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use url::Url;
use wardkey_core::secret::{constant_time_eq, random_token};

use crate::cookies::CookieName;
use crate::error::PageError;
use crate::pages;
use crate::params::Params;
use crate::state::AppState;

use super::authorize::current_session;
use crate::pages::see_other;

/// `GET /logout`.
pub async fn get(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    respond(&state, &headers, params, false).await
}

/// `POST /logout`: the RP's form post, or the person's confirmation.
pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let params = Params::from_form(&headers, &body);
    respond(&state, &headers, params, true).await
}

async fn respond(
    state: &AppState,
    headers: &HeaderMap,
    params: Result<Params, crate::params::ParamsError>,
    is_post: bool,
) -> Response {
    match logout(state, headers, params, is_post).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The `aud` of an ID token as a single client id.
fn audience(claims: &Value) -> Option<String> {
    match claims.get("aud")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.first()?.as_str().map(str::to_string),
        _ => None,
    }
}

async fn logout(
    state: &AppState,
    headers: &HeaderMap,
    params: Result<Params, crate::params::ParamsError>,
    is_post: bool,
) -> Result<Response, PageError> {
    let params = params.map_err(|e| PageError::BadRequest(format!("The sign-out request is not valid: {e}.")))?;
    let hint = match params.get("id_token_hint") {
        Some(h) => {
            // Only an ID token (typ JWT): an access token (at+jwt) held by a
            // resource server must not end the clinician's session
            // (RFC 8725 §3.11, explicit typing).
            let claims: Value = state.keys.verify(h, Some("JWT")).map_err(|_| {
                PageError::BadRequest(
                    "The sign-out request was not valid: its id_token_hint was not issued by Wardkey.".into(),
                )
            })?;
            if claims.get("iss").and_then(Value::as_str) != Some(state.issuer.as_ref()) {
                return Err(PageError::BadRequest(
                    "The sign-out request was not valid: its id_token_hint was not issued by Wardkey.".into(),
                ));
            }
            Some(claims)
        }
        None => None,
    };
    let hint_client = hint.as_ref().and_then(audience);
    let client_id = match (params.get("client_id"), hint_client.as_deref()) {
        (Some(a), Some(b)) if a != b => {
            return Err(PageError::BadRequest("The sign-out request names two different applications.".into()));
        }
        (Some(a), _) => Some(a.to_string()),
        (None, b) => b.map(str::to_string),
    };
    let redirect = match params.get("post_logout_redirect_uri") {
        Some(uri) => {
            let client = match &client_id {
                Some(id) => state.store.client(id).await?,
                None => None,
            };
            match client {
                Some(c) if c.has_post_logout_redirect_uri(uri) => Some(uri.to_string()),
                _ => {
                    return Err(PageError::BadRequest(
                        "You have not been signed out: the application asked to return to an address that is not registered for it.".into(),
                    ));
                }
            }
        }
        None => None,
    };

    let confirmed = is_post
        && params.get("confirm") == Some("yes")
        && matches!(
            (params.get("csrf"), state.cookies.read(headers, CookieName::Csrf)),
            (Some(f), Some(c)) if constant_time_eq(f, c)
        );
    let current = current_session(state, headers).await?;
    let hint_sid = hint.as_ref().and_then(|c| c.get("sid")).and_then(Value::as_str);
    let this_browsers = hint_sid.is_some() && current.as_ref().map(|s| s.sid.as_str()) == hint_sid;
    if !this_browsers && !confirmed {
        let hinted_alive = match hint_sid {
            Some(sid) => state.sessions.session_alive(sid).await?,
            None => false,
        };
        if current.is_none() && !hinted_alive {
            return Ok(finish(redirect.as_deref(), params.get("state")));
        }
        let csrf = random_token(32);
        let mut hidden = Vec::new();
        for name in ["id_token_hint", "post_logout_redirect_uri", "client_id", "state"] {
            if let Some(v) = params.get(name) {
                hidden.push((name, v));
            }
        }
        let mut response = (StatusCode::OK, pages::logout_confirm_page(&csrf, &hidden)).into_response();
        state.cookies.set(response.headers_mut(), CookieName::Csrf, &csrf);
        return Ok(response);
    }

    // The hinted session ends only when it is this browser's: a confirmed
    // sign-out from a browser that merely holds someone's old ID token
    // ends that browser's own session, never the clinician's elsewhere.
    if this_browsers && let Some(sid) = hint_sid {
        state.logouts.logout_session(sid, "rp-logout").await?;
    }
    if let Some(session) = current {
        let hint_sub = hint.as_ref().and_then(|c| c.get("sub")).and_then(Value::as_str);
        if hint_sub.is_none_or(|s| s == session.user_id) {
            state.logouts.logout_session(&session.sid, "rp-logout").await?;
        }
    }
    let mut response = finish(redirect.as_deref(), params.get("state"));
    state.cookies.clear(response.headers_mut(), CookieName::Session);
    Ok(response)
}

fn finish(redirect: Option<&str>, client_state: Option<&str>) -> Response {
    match redirect.and_then(|r| Url::parse(r).ok()) {
        Some(mut url) => {
            if let Some(s) = client_state {
                url.query_pairs_mut().append_pair("state", s);
            }
            see_other(url.as_str())
        }
        None => (StatusCode::OK, pages::message_page("Signed out", "You have signed out of Wardkey.")).into_response(),
    }
}
