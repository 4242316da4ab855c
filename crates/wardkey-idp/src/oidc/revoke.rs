//! Token revocation (RFC 7009).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wardkey_core::secret::digest_b64;

use crate::error::{OAuthError, no_store};
use crate::kv::{get_json, keys};
use crate::params::Params;
use crate::sessions::RefreshRecord;
use crate::state::AppState;
use crate::tokens::AccessClaims;

/// `POST /revoke`. Revoking either token of a grant revokes the grant: the
/// refresh-token family and every access token issued from it (§2.1 allows
/// this). Unknown, foreign or already-dead tokens get 200 as well (§2.2), so
/// the endpoint reveals nothing.
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthError> {
    let params = Params::from_form(headers, body).map_err(|e| OAuthError::InvalidRequest(e.0))?;
    let client = state.clients.authenticate_client(headers, &params).await?;
    let token = params.require("token").map_err(|e| OAuthError::InvalidRequest(e.0))?;

    let key = keys::refresh(&digest_b64(token));
    if let Some(record) = get_json::<RefreshRecord>(state.cache.as_ref(), &key).await? {
        if record.client_id == client.client_id {
            state.sessions.revoke_grant(&record.grant.gid).await?;
            state.cache.delete(&key).await?;
        }
        return Ok(());
    }
    if let Ok(claims) = state.keys.verify::<AccessClaims>(token, Some("at+jwt"))
        && claims.client_id == client.client_id
    {
        state.sessions.revoke_grant(&claims.gid).await?;
    }
    Ok(())
}
