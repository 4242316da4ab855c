//! `authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6).

use std::time::Duration;

use wardkey_core::client::Client;
use wardkey_core::pkce;
use wardkey_core::secret::digest_b64;
use wardkey_proto::oauth::TokenResponse;

use crate::error::OAuthError;
use crate::kv::{keys, take_json};
use crate::params::Params;
use crate::sessions::CodeRecord;
use crate::state::AppState;

/// How long a redeemed code is remembered for reuse detection.
const USED_CODE_MEMORY: Duration = Duration::from_secs(3600);

/// Redeem a code, once. A second redemption is `invalid_grant` and revokes
/// everything issued from the first (RFC 6749 §4.1.2, RFC 9700 §4.5).
pub async fn redeem(state: &AppState, client: &Client, params: &Params) -> Result<TokenResponse, OAuthError> {
    let missing = |p: &str| OAuthError::InvalidRequest(format!("{p} is missing"));
    let code = params.get("code").ok_or_else(|| missing("code"))?;
    let redirect_uri = params.get("redirect_uri").ok_or_else(|| missing("redirect_uri"))?;
    let verifier = params.get("code_verifier").ok_or_else(|| missing("code_verifier (PKCE is required)"))?;
    let digest = digest_b64(code);

    let Some(record) = take_json::<CodeRecord>(state.cache.as_ref(), &keys::code(&digest)).await? else {
        if let Some(gid) = state.cache.get(&keys::code_used(&digest)).await? {
            let gid = String::from_utf8_lossy(&gid).to_string();
            state.sessions.revoke_grant(&gid).await?;
            state.metrics.reuse_detected.inc();
            tracing::warn!(client_id = %client.client_id, "authorization code reused; grant revoked");
            return Err(OAuthError::InvalidGrant(
                "this code was already used; the tokens issued from it are revoked".into(),
            ));
        }
        return Err(OAuthError::InvalidGrant("the code is invalid or expired".into()));
    };
    state.cache.put(&keys::code_used(&digest), record.grant.gid.as_bytes(), USED_CODE_MEMORY).await?;

    if record.client_id != client.client_id {
        return Err(OAuthError::InvalidGrant("the code was issued to another client".into()));
    }
    if state.now() > record.expires_at {
        return Err(OAuthError::InvalidGrant("the code has expired".into()));
    }
    if record.redirect_uri != redirect_uri {
        return Err(OAuthError::InvalidGrant("redirect_uri does not match the authorization request".into()));
    }
    if !pkce::verify(verifier, &record.code_challenge) {
        return Err(OAuthError::InvalidGrant("code_verifier does not match the code_challenge".into()));
    }
    let user = super::live_user(state, &record.grant).await?;
    state.tokens.issue_tokens(client, &record.grant, user.as_ref(), record.nonce.as_deref(), true).await
}
