//! `client_credentials` (RFC 6749 §4.4): EPR back ends calling each other.

use wardkey_core::client::Client;
use wardkey_core::secret::random_token;
use wardkey_proto::oauth::TokenResponse;

use crate::error::OAuthError;
use crate::sessions::Grant;
use crate::state::AppState;

/// Issue an access token for the client itself. Public clients cannot use
/// this grant: they have no credentials to prove (RFC 6749 §4.4).
pub async fn issue(state: &AppState, client: &Client) -> Result<TokenResponse, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::UnauthorizedClient("public clients cannot use client_credentials".into()));
    }
    // Every scope Wardkey defines is about a user; none applies when no user
    // is involved, so the token carries an empty scope whatever was asked.
    let scope = String::new();
    let grant =
        Grant { gid: random_token(16), user_id: None, sid: None, scope, auth_time: None, acr: None, amr: Vec::new() };
    state.tokens.issue_tokens(client, &grant, None, None, false).await
}
