//! The grants the token endpoint serves, one module each.

pub mod authorization_code;
pub mod client_credentials;
pub mod refresh_token;
pub mod token_exchange;

use wardkey_core::user::User;

use crate::error::OAuthError;
use crate::sessions::Grant;
use crate::state::AppState;

/// The user behind a grant, refusing a grant whose user is gone or disabled
/// or whose SSO session has ended (logout ends every token of the session).
pub(crate) async fn live_user(state: &AppState, grant: &Grant) -> Result<Option<User>, OAuthError> {
    if state.sessions.grant_revoked(&grant.gid).await? {
        return Err(OAuthError::InvalidGrant("this grant has been revoked".into()));
    }
    if let Some(sid) = &grant.sid
        && !state.sessions.session_alive(sid).await?
    {
        return Err(OAuthError::InvalidGrant("the sign-in session has ended; sign in again".into()));
    }
    let Some(user_id) = &grant.user_id else { return Ok(None) };
    match state.directory.user(user_id).await? {
        Some(user) if !user.disabled => Ok(Some(user)),
        _ => Err(OAuthError::InvalidGrant("the user is disabled or no longer exists".into())),
    }
}
