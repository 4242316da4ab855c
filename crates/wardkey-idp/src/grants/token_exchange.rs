//! OAuth 2.0 Token Exchange (RFC 8693) for the workstation agent: a session
//! ticket bound to a workstation becomes tokens for one EPR app.
//!
//! The workstation authenticates with `private_key_jwt` signed by its own
//! Ed25519 key. This is on the hot path (every EPR app the clinician opens
//! after a tap): no argon2, no store write, and one cache round trip (the
//! assertion's `jti`, the ticket and its session read together), plus one
//! the first time an app gets tokens in a session.

use serde_json::Value;
use wardkey_cache::{Op, Reply};
use wardkey_core::client::GrantType;
use wardkey_core::secret::{digest_b64, random_token};
use wardkey_core::workstation::Workstation;
use wardkey_proto::oauth::TokenResponse;
use wardkey_proto::tap::SESSION_TICKET_TOKEN_TYPE;

use crate::attachments::{Ticket, ticket_sid};
use crate::client_auth::REPLAYED_ASSERTION;
use crate::error::{OAuthError, TapApiError};
use crate::kv::{Nonce, from_reply, keys, parse_list};
use crate::params::Params;
use crate::sessions::Grant;
use crate::state::AppState;
use crate::tokens::filter_scope;
use wardkey_core::session::acr_meets;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Authenticate a workstation by its client assertion (RFC 7523 §3),
/// leaving its `jti` for [`exchange`] to record.
pub async fn authenticate_workstation(state: &AppState, params: &Params) -> Result<(Workstation, Nonce), OAuthError> {
    let bad = |why: &str| OAuthError::invalid_client(format!("workstation assertion rejected: {why}"), false);
    if params.get("client_assertion_type") != Some(ASSERTION_TYPE) {
        return Err(bad("token exchange needs a private_key_jwt client assertion"));
    }
    let jwt = params.get("client_assertion").ok_or_else(|| bad("client_assertion is missing"))?;
    let (ws, claims, _) = state.workstations.verify_jws(jwt).await.map_err(|e| match e {
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
    let nonce = state.clients.assertion_nonce(&ws.id, exp, nbf, text("jti")).map_err(bad)?;
    Ok((ws, nonce))
}

/// Exchange a session ticket for tokens addressed to the `audience` client,
/// recording the workstation's assertion `nonce` on the way.
pub async fn exchange(
    state: &AppState,
    ws: &Workstation,
    nonce: &Nonce,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
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
    let client =
        state.directory.client(audience).await?.filter(|c| c.allows(GrantType::TokenExchange)).ok_or_else(|| {
            OAuthError::InvalidTarget(format!("{audience:?} is not a client registered for token exchange"))
        })?;
    let sid = ticket_sid(subject).unwrap_or_default();
    let replies = state
        .cache
        .batch(&[
            nonce.op(),
            Op::Get(keys::ticket(&digest_b64(subject))),
            Op::Get(keys::session(sid)),
            Op::Get(keys::session_clients(sid)),
        ])
        .await?;
    let mut replies = replies.into_iter();
    if !Nonce::fresh(replies.next().as_ref()) {
        return Err(OAuthError::invalid_client(format!("workstation assertion rejected: {REPLAYED_ASSERTION}"), false));
    }
    let ticket = from_reply::<Ticket>(replies.next())
        .filter(|t| t.workstation_id == ws.id && t.sid == sid)
        .ok_or_else(|| {
            OAuthError::InvalidGrant(
                "the session ticket is not valid for this workstation (locked, switched or expired)".into(),
            )
        })?;
    let session = state
        .sessions
        .live_session(replies.next().and_then(Reply::into_value))
        .ok_or_else(|| OAuthError::InvalidGrant("the clinician's session has ended".into()))?;
    let listed = parse_list(replies.next().and_then(Reply::into_value));
    // What this workstation's attachment reached, never what the session
    // reached elsewhere (another PC's key tap, a browser's step-up).
    let assurance = &ticket.assurance;
    if !acr_meets(&assurance.acr, client.min_acr.as_deref()) {
        return Err(OAuthError::InsufficientUserAuthentication(format!(
            "{audience:?} needs a stronger sign-in than this workstation's ({}): tap your security key here",
            assurance.acr
        )));
    }
    let user = state
        .directory
        .user(&session.user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(|| OAuthError::InvalidGrant("the user is disabled or no longer exists".into()))?;
    let scope = filter_scope(params.get("scope").unwrap_or("openid profile"));
    let grant = Grant {
        gid: random_token(16),
        user_id: Some(user.id.clone()),
        sid: Some(session.sid.clone()),
        scope,
        auth_time: Some(assurance.auth_time),
        acr: Some(assurance.acr.clone()),
        amr: assurance.amr.clone(),
    };
    state.sessions.note_session_client(&session, &client, &listed).await?;
    let mut response = state.tokens.issue_tokens(&client, &grant, Some(&user), None, false).await?;
    response.issued_token_type = Some(ACCESS_TOKEN_TYPE.into());
    Ok(response)
}
