//! `refresh_token` (RFC 6749 §6) with rotation and reuse detection
//! (RFC 9700 §4.14.2).
//!
//! Each use returns a new refresh token and retires the old one. The old one
//! is remembered: presented again within `oidc.refresh_reuse_grace` by the
//! same client (a lost response, two tabs racing) it gets the very same
//! answer; presented later it means a copy is loose, and the whole family is
//! revoked.

use wardkey_core::client::Client;
use wardkey_core::secret::digest_b64;
use wardkey_proto::oauth::TokenResponse;

use crate::error::OAuthError;
use crate::params::Params;
use crate::sessions::{RefreshRecord, RotatedRecord, get_json, keys, put_json};
use crate::state::AppState;

/// Rotate a refresh token.
pub async fn rotate(state: &AppState, client: &Client, params: &Params) -> Result<TokenResponse, OAuthError> {
    let token =
        params.get("refresh_token").ok_or_else(|| OAuthError::InvalidRequest("refresh_token is missing".into()))?;
    let digest = digest_b64(token);
    let cache = state.cache.as_ref();

    let Some(record) = get_json::<RefreshRecord>(cache, &keys::refresh(&digest)).await? else {
        return replay_or_revoke(state, client, &digest).await;
    };
    if record.client_id != client.client_id {
        // Not consumed: the rightful client can still use it.
        return Err(OAuthError::InvalidGrant("the refresh token was issued to another client".into()));
    }
    let mut grant = record.grant.clone();
    if let Some(requested) = params.get("scope") {
        // RFC 6749 §6: a narrower scope may be asked for, never a wider one.
        if !requested.split(' ').all(|s| grant.has_scope(s)) {
            return Err(OAuthError::InvalidScope("the requested scope exceeds the original grant".into()));
        }
        grant.scope = requested.to_string();
    }
    let user = super::live_user(state, &grant).await?;
    let response = state.issue_tokens(client, &grant, user.as_ref(), None, true).await?;

    // Whoever records the rotation first wins; a concurrent twin gets the
    // winner's tokens.
    let rotated = RotatedRecord {
        client_id: client.client_id.clone(),
        gid: grant.gid.clone(),
        rotated_at: state.now(),
        response: response.clone(),
    };
    let bytes = serde_json::to_vec(&rotated).unwrap_or_default();
    let ttl = state.settings.oidc.refresh_token_ttl;
    if !cache.put_if_absent(&keys::rotated(&digest), &bytes, ttl).await? {
        return replay_or_revoke(state, client, &digest).await;
    }
    cache.delete(&keys::refresh(&digest)).await?;
    Ok(response)
}

async fn replay_or_revoke(state: &AppState, client: &Client, digest: &str) -> Result<TokenResponse, OAuthError> {
    let Some(rotated) = get_json::<RotatedRecord>(state.cache.as_ref(), &keys::rotated(digest)).await? else {
        return Err(OAuthError::InvalidGrant("the refresh token is invalid or expired".into()));
    };
    if rotated.client_id != client.client_id {
        return Err(OAuthError::InvalidGrant("the refresh token was issued to another client".into()));
    }
    let grace = state.settings.oidc.refresh_reuse_grace.as_secs() as i64;
    if state.now() - rotated.rotated_at <= grace && !state.grant_revoked(&rotated.gid).await? {
        return Ok(rotated.response);
    }
    state.revoke_grant(&rotated.gid).await?;
    // Keep the record so later replays are also refused, but never replayed.
    let mut expired = rotated;
    expired.rotated_at = i64::MIN / 2;
    put_json(state.cache.as_ref(), &keys::rotated(digest), &expired, state.settings.oidc.refresh_token_ttl).await?;
    state.metrics.reuse_detected.inc();
    tracing::warn!(client_id = %client.client_id, "refresh token reused after rotation; family revoked");
    Err(OAuthError::InvalidGrant("the refresh token was already used; this session's tokens are revoked".into()))
}
