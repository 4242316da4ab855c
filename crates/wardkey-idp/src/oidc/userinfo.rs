//! The UserInfo endpoint (OIDC Core §5.3) with bearer tokens (RFC 6750).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{BearerError, no_store};
use crate::params::Params;
use crate::state::AppState;
use crate::tokens::{AccessClaims, user_claims};

/// `GET /userinfo`.
pub async fn get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    respond(&state, bearer(&headers, None)).await
}

/// `POST /userinfo`: the token may also come as a form parameter (RFC 6750
/// §2.2), but not both ways at once.
pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form = if body.is_empty() {
        None
    } else {
        match Params::from_form(&headers, &body) {
            Ok(p) => p.get("access_token").map(str::to_string),
            Err(e) => return BearerError::InvalidRequest(e.0).into_response(),
        }
    };
    respond(&state, bearer(&headers, form)).await
}

fn bearer(headers: &HeaderMap, form: Option<String>) -> Result<String, BearerError> {
    let header = match headers.get(AUTHORIZATION) {
        Some(v) => {
            let v = v.to_str().map_err(|_| BearerError::InvalidRequest("malformed Authorization header".into()))?;
            let token = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .ok_or_else(|| BearerError::InvalidRequest("use the Bearer scheme".into()))?;
            Some(token.trim().to_string())
        }
        None => None,
    };
    match (header, form) {
        (Some(_), Some(_)) => Err(BearerError::InvalidRequest("send the token one way only".into())),
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(BearerError::Missing),
    }
}

async fn respond(state: &AppState, token: Result<String, BearerError>) -> Response {
    match userinfo(state, token).await {
        Ok(claims) => no_store(Json(claims).into_response()),
        Err(e) => e.into_response(),
    }
}

/// Validate an access token of ours for a live user; shared with
/// introspection.
pub async fn validate_access_token(
    state: &AppState,
    token: &str,
) -> Result<(AccessClaims, Option<wardkey_core::user::User>), BearerError> {
    let claims: AccessClaims =
        state.keys.verify(token, Some("at+jwt")).map_err(|e| BearerError::InvalidToken(e.to_string()))?;
    if claims.iss != *state.issuer {
        return Err(BearerError::InvalidToken("the token was issued by another server".into()));
    }
    if claims.exp <= state.now() {
        return Err(BearerError::InvalidToken("the token has expired".into()));
    }
    if state.sessions.grant_revoked(&claims.gid).await? {
        return Err(BearerError::InvalidToken("the token has been revoked".into()));
    }
    if let Some(sid) = &claims.sid
        && !state.sessions.session_alive(sid).await?
    {
        return Err(BearerError::InvalidToken("the sign-in session has ended".into()));
    }
    if claims.sub == claims.client_id && claims.sid.is_none() {
        return Ok((claims, None));
    }
    match state.directory.user(&claims.sub).await? {
        Some(user) if !user.disabled => Ok((claims, Some(user))),
        _ => Err(BearerError::InvalidToken("the user is disabled or no longer exists".into())),
    }
}

async fn userinfo(state: &AppState, token: Result<String, BearerError>) -> Result<Value, BearerError> {
    let (claims, user) = validate_access_token(state, &token?).await?;
    let user = user.ok_or_else(|| BearerError::InvalidToken("the token is not for a user".into()))?;
    if !claims.scope.split(' ').any(|s| s == "openid") {
        return Err(BearerError::InvalidToken("the token lacks the openid scope".into()));
    }
    let mut out = serde_json::Map::new();
    out.insert("sub".into(), user.id.clone().into());
    user_claims(&user, &claims.scope, &mut out);
    Ok(Value::Object(out))
}
