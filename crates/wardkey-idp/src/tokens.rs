//! The token issuer: access tokens (RFC 9068 JWTs), ID tokens (OIDC Core
//! §2) and refresh tokens (opaque, rotated).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use wardkey_cache::Cache;
use wardkey_core::client::{Client, GrantType};
use wardkey_core::clock::SharedClock;
use wardkey_core::keys::SigningAlg;
use wardkey_core::secret::{digest_b64, new_secret, random_token};
use wardkey_core::session::Amr;
use wardkey_core::user::User;
use wardkey_proto::oauth::TokenResponse;

use crate::config::Settings;
use crate::error::OAuthError;
use crate::keys::Keyring;
use crate::kv::{keys, put_json};
use crate::sessions::{Grant, RefreshRecord};

/// Scopes Wardkey understands; others are dropped from the grant.
pub const SUPPORTED_SCOPES: [&str; 5] = ["openid", "profile", "email", "roles", "offline_access"];

/// The claims of our access tokens. `gid` ties the token to its grant so
/// that revoking the grant revokes the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user, or the client for client credentials.
    pub sub: String,
    /// Audience: the client the token was issued to.
    pub aud: String,
    /// Client the token was issued to (RFC 9068 §2.2).
    pub client_id: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Unique id.
    pub jti: String,
    /// Granted scope.
    pub scope: String,
    /// Grant id.
    pub gid: String,
    /// SSO session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Time of the authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Assurance level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<Amr>,
}

/// Keep only the scopes we support, in request order, without repeats.
pub fn filter_scope(requested: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for s in requested.split(' ').filter(|s| SUPPORTED_SCOPES.contains(s)) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(" ")
}

/// OIDC Core §3.1.3.6: the left half of the hash of the access token, with
/// the hash of the ID token's signing algorithm (SHA-512 for Ed25519).
fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    match alg {
        SigningAlg::EdDSA => {
            let h = Sha512::digest(access_token.as_bytes());
            URL_SAFE_NO_PAD.encode(&h[..32])
        }
        SigningAlg::ES256 | SigningAlg::RS256 => {
            let h = Sha256::digest(access_token.as_bytes());
            URL_SAFE_NO_PAD.encode(&h[..16])
        }
    }
}

/// Profile claims released for `grant`'s scope, shared by the ID token and
/// userinfo.
pub fn user_claims(user: &User, grant_scope: &str, claims: &mut serde_json::Map<String, serde_json::Value>) {
    let has = |s: &str| grant_scope.split(' ').any(|x| x == s);
    if has("profile") {
        claims.insert("preferred_username".into(), user.username.clone().into());
        if let Some(name) = &user.name {
            claims.insert("name".into(), name.clone().into());
        }
    }
    if has("email")
        && let Some(email) = &user.email
    {
        claims.insert("email".into(), email.clone().into());
        // Addresses come from the trust's directory via an admin, not from
        // the user, so they are as verified as anything we hold.
        claims.insert("email_verified".into(), true.into());
    }
    if has("roles") {
        claims.insert("roles".into(), user.roles.clone().into());
    }
}

/// Mints the tokens of a grant. Cheap to clone.
#[derive(Clone)]
pub struct TokenIssuer {
    /// `iss` of every token.
    pub(crate) issuer: Arc<str>,
    pub(crate) keys: Arc<Keyring>,
    /// Refresh tokens live here.
    pub(crate) cache: Arc<dyn Cache>,
    pub(crate) clock: SharedClock,
    pub(crate) settings: Arc<Settings>,
}

impl TokenIssuer {
    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Issue the token response for `grant` to `client`: an access token,
    /// an ID token when `openid` is in scope (with `nonce` if given), and a
    /// refresh token when `with_refresh` and the client may refresh.
    pub async fn issue_tokens(
        &self,
        client: &Client,
        grant: &Grant,
        user: Option<&User>,
        nonce: Option<&str>,
        with_refresh: bool,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.now();
        let ttl = self.settings.oidc.access_token_ttl.as_secs() as i64;
        let sub = grant.user_id.clone().unwrap_or_else(|| client.client_id.clone());
        let access = AccessClaims {
            iss: self.issuer.to_string(),
            sub: sub.clone(),
            aud: client.client_id.clone(),
            client_id: client.client_id.clone(),
            exp: now + ttl,
            iat: now,
            jti: random_token(16),
            scope: grant.scope.clone(),
            gid: grant.gid.clone(),
            sid: grant.sid.clone(),
            auth_time: grant.auth_time,
            acr: grant.acr.clone(),
            amr: grant.amr.clone(),
        };
        let access_token = self.keys.sign(SigningAlg::ES256, "at+jwt", &access)?;

        let id_token = match user {
            Some(user) if grant.has_scope("openid") => {
                let alg = client.id_token_alg;
                let mut claims = serde_json::Map::new();
                claims.insert("iss".into(), self.issuer.to_string().into());
                claims.insert("sub".into(), sub.into());
                claims.insert("aud".into(), client.client_id.clone().into());
                claims.insert("exp".into(), (now + ttl).into());
                claims.insert("iat".into(), now.into());
                if let Some(t) = grant.auth_time {
                    claims.insert("auth_time".into(), t.into());
                }
                if let Some(n) = nonce {
                    claims.insert("nonce".into(), n.into());
                }
                if let Some(sid) = &grant.sid {
                    claims.insert("sid".into(), sid.clone().into());
                }
                if let Some(acr) = &grant.acr {
                    claims.insert("acr".into(), acr.clone().into());
                }
                if !grant.amr.is_empty() {
                    claims.insert("amr".into(), serde_json::to_value(&grant.amr).unwrap_or_default());
                }
                claims.insert("at_hash".into(), at_hash(alg, &access_token).into());
                user_claims(user, &grant.scope, &mut claims);
                Some(self.keys.sign(alg, "JWT", &claims)?)
            }
            _ => None,
        };

        let refresh_token = if with_refresh && client.allows(GrantType::RefreshToken) && grant.user_id.is_some() {
            let token = new_secret();
            let record = RefreshRecord { client_id: client.client_id.clone(), grant: grant.clone() };
            put_json(
                self.cache.as_ref(),
                &keys::refresh(&digest_b64(&token)),
                &record,
                self.settings.oidc.refresh_token_ttl,
            )
            .await?;
            Some(token)
        } else {
            None
        };

        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".into(),
            expires_in: ttl as u64,
            refresh_token,
            id_token,
            scope: Some(grant.scope.clone()),
            issued_token_type: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_filtered() {
        assert_eq!(filter_scope("openid openid profile api:read email"), "openid profile email");
        assert_eq!(filter_scope(""), "");
    }

    #[test]
    fn at_hash_matches_oidc_example() {
        // OIDC Core Appendix A.3 token and at_hash (RS256 → SHA-256).
        assert_eq!(at_hash(SigningAlg::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
    }
}
