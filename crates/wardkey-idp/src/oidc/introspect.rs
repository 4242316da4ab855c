//! Token introspection (RFC 7662) for EPR resource servers.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use wardkey_core::secret::digest_b64;

use crate::error::{OAuthError, no_store};
use crate::kv::{get_json, keys};
use crate::params::Params;
use crate::sessions::RefreshRecord;
use crate::state::AppState;

use super::userinfo::validate_access_token;

/// `POST /introspect`. Callers must authenticate as a confidential client;
/// anything not active and ours is just `{"active": false}` (§2.2), so the
/// endpoint never tells why a token is dead.
pub async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
    let params = Params::from_form(headers, body).map_err(|e| OAuthError::InvalidRequest(e.0))?;
    let caller = state.clients.authenticate_client(headers, &params).await?;
    if caller.is_public() {
        return Err(OAuthError::invalid_client("public clients cannot introspect tokens", false));
    }
    let token = params.require("token").map_err(|e| OAuthError::InvalidRequest(e.0))?;

    if token.contains('.') {
        return Ok(match validate_access_token(state, token).await {
            Ok((c, user)) => {
                let mut v = json!({
                    "active": true, "token_type": "Bearer", "scope": c.scope, "client_id": c.client_id,
                    "sub": c.sub, "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "jti": c.jti,
                });
                if let Some(user) = user {
                    v["username"] = json!(user.username);
                }
                for (k, val) in [("sid", json!(c.sid)), ("acr", json!(c.acr)), ("auth_time", json!(c.auth_time))] {
                    if !val.is_null() {
                        v[k] = val;
                    }
                }
                v
            }
            Err(crate::error::BearerError::Unavailable) => {
                return Err(OAuthError::TemporarilyUnavailable("retry shortly".into()));
            }
            Err(_) => json!({"active": false}),
        });
    }

    // A refresh token is a secret of the client it was issued to: only that
    // client learns anything about it.
    let record = get_json::<RefreshRecord>(state.cache.as_ref(), &keys::refresh(&digest_b64(token))).await?;
    let Some(record) = record.filter(|r| r.client_id == caller.client_id) else {
        return Ok(json!({"active": false}));
    };
    if super::super::grants::live_user(state, &record.grant).await.is_err() {
        return Ok(json!({"active": false}));
    }
    Ok(json!({
        "active": true, "token_type": "refresh_token", "scope": record.grant.scope,
        "client_id": record.client_id, "sub": record.grant.user_id, "iss": state.issuer.as_ref(),
    }))
}
