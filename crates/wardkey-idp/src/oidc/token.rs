//! The token endpoint (RFC 6749 §3.2): parse strictly, authenticate the
//! client, check it may use the grant, then hand over to `grants::*`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use wardkey_core::client::GrantType;

use crate::error::{OAuthError, no_store};
use crate::grants;
use crate::metrics::Metrics;
use crate::params::Params;
use crate::state::AppState;

/// `POST /token`.
pub async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&state, &headers, &body).await {
        Ok((grant, response)) => {
            Metrics::count(&state.metrics.tokens_issued, grant.as_str());
            no_store(Json(response).into_response())
        }
        Err(e) => {
            Metrics::count(&state.metrics.token_errors, e.error_code());
            e.into_response()
        }
    }
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(GrantType, wardkey_proto::oauth::TokenResponse), OAuthError> {
    let params = Params::from_form(headers, body).map_err(|e| OAuthError::InvalidRequest(e.0))?;
    let grant = match params.get("grant_type") {
        None => return Err(OAuthError::InvalidRequest("grant_type is missing".into())),
        Some("authorization_code") => GrantType::AuthorizationCode,
        Some("refresh_token") => GrantType::RefreshToken,
        Some("client_credentials") => GrantType::ClientCredentials,
        Some(wardkey_proto::tap::TOKEN_EXCHANGE_GRANT) => {
            let started = std::time::Instant::now();
            let (ws, nonce) = grants::token_exchange::authenticate_workstation(state, &params).await?;
            let response = grants::token_exchange::exchange(state, &ws, &nonce, &params).await?;
            state.signins.step("token_exchange", &ws.ward, started.elapsed());
            return Ok((GrantType::TokenExchange, response));
        }
        Some(other) => {
            return Err(OAuthError::UnsupportedGrantType(format!(
                "{other:?} is not supported; use authorization_code, refresh_token, client_credentials or token exchange"
            )));
        }
    };
    let client = state.clients.authenticate_client(headers, &params).await?;
    if !client.allows(grant) {
        return Err(OAuthError::UnauthorizedClient(format!(
            "this client is not registered for the {} grant",
            grant.as_str()
        )));
    }
    let response = match grant {
        GrantType::AuthorizationCode => grants::authorization_code::redeem(state, &client, &params).await?,
        GrantType::RefreshToken => grants::refresh_token::rotate(state, &client, &params).await?,
        GrantType::ClientCredentials => grants::client_credentials::issue(state, &client).await?,
        GrantType::TokenExchange => unreachable!("handled above, before client authentication"),
    };
    Ok((grant, response))
}
