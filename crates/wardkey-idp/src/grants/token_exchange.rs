//! OAuth 2.0 Token Exchange (RFC 8693) for the workstation agent: a session
//! ticket bound to a workstation becomes tokens for one EPR app.
//!
//! The workstation authenticates with `private_key_jwt` signed by its own
//! Ed25519 key. This is on the hot path (every EPR app the clinician opens
//! after a tap): no argon2 and no store write here.

use serde_json::Value;
use wardkey_core::client::GrantType;
use wardkey_core::secret::random_token;
use wardkey_core::workstation::Workstation;
use wardkey_proto::oauth::TokenResponse;
use wardkey_proto::tap::SESSION_TICKET_TOKEN_TYPE;

use crate::error::{OAuthError, TapApiError};
use crate::params::Params;
use crate::sessions::Grant;
use crate::state::AppState;
use crate::tap::signed::verify_workstation_jws;
use crate::tokens::filter_scope;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Authenticate a workstation by its client assertion (RFC 7523 §3).
pub async fn authenticate_workstation(state: &AppState, params: &Params) -> Result<Workstation, OAuthError> {
    let bad = |why: &str| OAuthError::invalid_client(format!("workstation assertion rejected: {why}"), false);
    if params.get("client_assertion_type") != Some(ASSERTION_TYPE) {
        return Err(bad("token exchange needs a private_key_jwt client assertion"));
    }
    let jwt = params.get("client_assertion").ok_or_else(|| bad("client_assertion is missing"))?;
    let (ws, claims, _) = verify_workstation_jws(state, jwt).await.map_err(|e| match e {
        TapApiError::Unavailable => OAuthError::TemporarilyUnavailable("retry shortly".into()),
        TapApiError::WorkstationDisabled => bad("the workstation is disabled"),
        _ => bad("not signed by an enrolled workstation"),
    })?;
    if params.get("client_id").is_some_and(|id| id != ws.id) {
        return Err(bad("client_id does not match the assertion"));
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("iss") != Some(ws.id.as_str()) || text("sub") != Some(ws.id.as_str()) {
        return Err(bad("iss and sub must be the workstation id"));
    }
    let token_endpoint = state.url("/token");
    let aud_ok = |a: &str| a == token_endpoint || a == &*state.issuer;
    let aud_matches = match claims.get("aud") {
        Some(Value::String(a)) => aud_ok(a),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(aud_ok),
        _ => false,
    };
    if !aud_matches {
        return Err(bad("aud must be the token endpoint"));
    }
    let exp = claims.get("exp").and_then(Value::as_i64).ok_or_else(|| bad("exp is missing"))?;
    let nbf = claims.get("nbf").and_then(Value::as_i64);
    match state.accept_assertion(&ws.id, exp, nbf, text("jti")).await? {
        Ok(()) => Ok(ws),
        Err(why) => Err(bad(why)),
    }
}

/// Exchange a session ticket for tokens addressed to the `audience` client.
pub async fn exchange(state: &AppState, ws: &Workstation, params: &Params) -> Result<TokenResponse, OAuthError> {
    let missing = |p: &str| OAuthError::InvalidRequest(format!("{p} is missing"));
    match params.get("subject_token_type") {
        Some(SESSION_TICKET_TOKEN_TYPE) => {}
        Some(_) => {
            return Err(OAuthError::InvalidRequest(format!("subject_token_type must be {SESSION_TICKET_TOKEN_TYPE}")));
        }
        None => return Err(missing("subject_token_type")),
    }
    let subject = params.get("subject_token").ok_or_else(|| missing("subject_token"))?;
    let audience = params.get("audience").ok_or_else(|| missing("audience (the EPR client id)"))?;
    if params.get("requested_token_type").is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::InvalidRequest(format!("only {ACCESS_TOKEN_TYPE} can be requested")));
    }
    let ticket = state.ticket(subject, &ws.id).await?.ok_or_else(|| {
        OAuthError::InvalidGrant(
            "the session ticket is not valid for this workstation (locked, switched or expired)".into(),
        )
    })?;
    let client =
        state.directory.client(audience).await?.filter(|c| c.allows(GrantType::TokenExchange)).ok_or_else(|| {
            OAuthError::InvalidTarget(format!("{audience:?} is not a client registered for token exchange"))
        })?;
    let session = state
        .session_by_sid(&ticket.sid)
        .await?
        .ok_or_else(|| OAuthError::InvalidGrant("the clinician's session has ended".into()))?;
    let user = state
        .directory
        .user(&ticket.user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(|| OAuthError::InvalidGrant("the user is disabled or no longer exists".into()))?;
    let scope = filter_scope(params.get("scope").unwrap_or("openid profile"));
    let grant = Grant {
        gid: random_token(16),
        user_id: Some(user.id.clone()),
        sid: Some(session.sid.clone()),
        scope,
        auth_time: Some(session.auth_time),
        acr: Some(session.acr.clone()),
        amr: session.amr.clone(),
    };
    state.note_session_client(&session, &client).await?;
    let mut response = state.issue_tokens(&client, &grant, Some(&user), None, false).await?;
    response.issued_token_type = Some(ACCESS_TOKEN_TYPE.into());
    Ok(response)
}
