//! `refresh_token` (RFC 6749 §6) with rotation and reuse detection
//! (RFC 9700 §4.14.2).
//!
//! Each use returns a new refresh token and retires the old one. The old one
//! is remembered: presented again within `oidc.refresh_reuse_grace` by the
//! same client (a lost response, two tabs racing) it gets the very same
//! answer; presented later it means a copy is loose, and the whole family is
//! revoked.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use wardkey_core::client::Client;
use wardkey_core::secret::digest_b64;
use wardkey_proto::oauth::TokenResponse;

use crate::error::OAuthError;
use crate::kv::{get_json, keys, put_json};
use crate::params::Params;
use crate::sessions::{RefreshRecord, RotatedRecord};
use crate::state::AppState;

/// Rotate a refresh token.
pub async fn rotate(state: &AppState, client: &Client, params: &Params) -> Result<TokenResponse, OAuthError> {
    let token =
        params.get("refresh_token").ok_or_else(|| OAuthError::InvalidRequest("refresh_token is missing".into()))?;
    let digest = digest_b64(token);
    let cache = state.cache.as_ref();

    let Some(record) = get_json::<RefreshRecord>(cache, &keys::refresh(&digest)).await? else {
        return replay_or_revoke(state, client, token, &digest).await;
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
    let response = state.tokens.issue_tokens(client, &grant, user.as_ref(), None, true).await?;

    // Whoever records the rotation first wins; a concurrent twin gets the
    // winner's tokens.
    let replayable = !state.settings.oidc.refresh_reuse_grace.is_zero();
    let rotated = RotatedRecord {
        client_id: client.client_id.clone(),
        gid: grant.gid.clone(),
        rotated_at: state.now(),
        sealed: replayable.then(|| seal(token, &response)),
    };
    let bytes = serde_json::to_vec(&rotated).unwrap_or_default();
    let ttl = state.settings.oidc.refresh_token_ttl;
    if !cache.put_if_absent(&keys::rotated(&digest), &bytes, ttl).await? {
        return replay_or_revoke(state, client, token, &digest).await;
    }
    cache.delete(&keys::refresh(&digest)).await?;
    Ok(response)
}

async fn replay_or_revoke(
    state: &AppState,
    client: &Client,
    token: &str,
    digest: &str,
) -> Result<TokenResponse, OAuthError> {
    let Some(rotated) = get_json::<RotatedRecord>(state.cache.as_ref(), &keys::rotated(digest)).await? else {
        return Err(OAuthError::InvalidGrant("the refresh token is invalid or expired".into()));
    };
    if rotated.client_id != client.client_id {
        return Err(OAuthError::InvalidGrant("the refresh token was issued to another client".into()));
    }
    let grace = state.settings.oidc.refresh_reuse_grace.as_secs() as i64;
    let within = state.now() - rotated.rotated_at <= grace;
    if within
        && let Some(response) = rotated.sealed.as_deref().and_then(|s| open(token, s))
        && !state.sessions.grant_revoked(&rotated.gid).await?
    {
        return Ok(response);
    }
    state.sessions.revoke_grant(&rotated.gid).await?;
    // Keep the record so later replays are also refused, but never replayed.
    let mut expired = rotated;
    expired.rotated_at = i64::MIN / 2;
    expired.sealed = None;
    put_json(state.cache.as_ref(), &keys::rotated(digest), &expired, state.settings.oidc.refresh_token_ttl).await?;
    state.metrics.reuse_detected.inc();
    tracing::warn!(client_id = %client.client_id, "refresh token reused after rotation; family revoked");
    Err(OAuthError::InvalidGrant("the refresh token was already used; this session's tokens are revoked".into()))
}

/// The key that seals the answer to a rotation: derived from the rotated
/// refresh token, which the cache keeps only as a digest of another kind
/// (`digest_b64`, unsalted SHA-256), so reading the cache yields neither
/// the token nor the tokens issued in exchange for it.
fn sealing_key(token: &str) -> LessSafeKey {
    let key = Sha256::new().chain_update(b"wardkey rotated refresh response\0").chain_update(token).finalize();
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("a 32-byte AES-256 key"))
}

/// `response`, encrypted (AES-256-GCM) under [`sealing_key`]: a random
/// nonce and the ciphertext, base64url.
fn seal(token: &str, response: &TokenResponse) -> String {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut data = serde_json::to_vec(response).unwrap_or_default();
    sealing_key(token)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .expect("AES-GCM seals any length we produce");
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&data);
    URL_SAFE_NO_PAD.encode(sealed)
}

/// The response [`seal`]ed for `token`; `None` if it does not open.
fn open(token: &str, sealed: &str) -> Option<TokenResponse> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let (nonce, data) = bytes.split_at_checked(NONCE_LEN)?;
    let mut data = data.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let plain = sealing_key(token).open_in_place(nonce, Aad::empty(), &mut data).ok()?;
    serde_json::from_slice(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_answer_opens_only_with_its_token_and_holds_no_token_in_clear() {
        let response = TokenResponse {
            access_token: "at-secret".into(),
            token_type: "Bearer".into(),
            expires_in: 600,
            refresh_token: Some("rt-secret".into()),
            id_token: Some("id-secret".into()),
            scope: Some("openid".into()),
            issued_token_type: None,
        };
        let sealed = seal("old-refresh-token", &response);
        assert!(!sealed.contains("secret") && !sealed.contains("old-refresh-token"));
        let decoded = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        assert!(!decoded.windows(9).any(|w| w == b"rt-secret"), "no token in clear");
        assert_eq!(open("old-refresh-token", &sealed).unwrap().refresh_token.as_deref(), Some("rt-secret"));
        assert!(open("another-token", &sealed).is_none());
        assert!(open("old-refresh-token", "not base64 !").is_none());
        assert!(open("old-refresh-token", "AAAA").is_none());
    }
}
