//! OAuth 2.0 token-endpoint shapes.

use serde::{Deserialize, Serialize};

use crate::{Redacted, redacted_option};

/// A successful token response (RFC 6749 §5.1, OIDC Core §3.1.3.3). Its
/// `Debug` shows no token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The access token (a JWT, RFC 9068).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
    /// A refresh token, when the grant and client allow one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The ID token, when `openid` was in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Granted scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 8693 §2.2.1: the type of the issued token, on token exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &Redacted)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &redacted_option(&self.refresh_token))
            .field("id_token", &redacted_option(&self.id_token))
            .field("scope", &self.scope)
            .field("issued_token_type", &self.issued_token_type)
            .finish()
    }
}

/// An error response (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error code, such as `invalid_grant`.
    pub error: String,
    /// A sentence a developer can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tap::{EnrolRequest, HandoffResponse, PinEntry, Tap, TapResponse, UserSummary};

    /// Every wire type that carries a secret keeps it out of `Debug`.
    #[test]
    fn debug_redacts_every_secret() {
        let user = UserSummary { username: "alice".into(), name: None };
        let shown = [
            format!(
                "{:?}",
                TokenResponse {
                    access_token: "SECRET-access".into(),
                    token_type: "Bearer".into(),
                    expires_in: 300,
                    refresh_token: Some("SECRET-refresh".into()),
                    id_token: Some("SECRET-id".into()),
                    scope: Some("openid".into()),
                    issued_token_type: None,
                }
            ),
            format!("{:?}", Tap { badge: "SECRET-badge".into() }),
            format!("{:?}", PinEntry { tap_id: "tap-1".into(), pin: "SECRET-pin".into() }),
            format!("{:?}", EnrolRequest { code: "SECRET-code".into(), public_key: "pk".into() }),
            format!(
                "{:?}",
                TapResponse::Active { user: user.clone(), session_ticket: "SECRET-ticket".into(), expires_in: 1 }
            ),
            format!(
                "{:#?}",
                TapResponse::Switched {
                    user: user.clone(),
                    previous: user.clone(),
                    session_ticket: "SECRET-ticket".into(),
                    expires_in: 1,
                }
            ),
            format!("{:?}", HandoffResponse { url: "https://idp/handoff?code=SECRET-handoff".into(), expires_in: 60 }),
        ];
        for shown in shown {
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        let token = format!("{:?}", TapResponse::PinRequired { tap_id: "t".into(), user, expires_in: 30 });
        assert!(token.contains("alice"), "what is not secret still shows: {token}");
    }
}
