//! Relying parties: the EPR, PACS and e-prescribing apps that trust Wardkey.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::ValidationError;
use crate::keys::SigningAlg;
use crate::session::{ACR_LEVELS, acr_rank};

/// OAuth grant types a client may be registered for. A client gets only the
/// grants it was registered with (RFC 9700 §2.4 least privilege).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// `authorization_code` (with PKCE).
    AuthorizationCode,
    /// `refresh_token`.
    RefreshToken,
    /// `client_credentials`, for EPR back ends calling each other.
    ClientCredentials,
    /// RFC 8693 token exchange, for the workstation agent.
    TokenExchange,
}

impl GrantType {
    /// The CLI spelling (`authorization_code`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => "token_exchange",
        }
    }

    /// The value of the `grant_type` parameter at the token endpoint.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
            other => other.as_str(),
        }
    }

    /// Parse the CLI spelling.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        Ok(match s {
            "authorization_code" => Self::AuthorizationCode,
            "refresh_token" => Self::RefreshToken,
            "client_credentials" => Self::ClientCredentials,
            "token_exchange" => Self::TokenExchange,
            other => {
                return Err(ValidationError::new(
                    "grant-type",
                    format!(
                        "{other:?} is not a grant type: use authorization_code, refresh_token, client_credentials or token_exchange"
                    ),
                ));
            }
        })
    }
}

/// How a client proves who it is at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum ClientAuth {
    /// A public client (SPA, native app): no secret, PKCE carries the proof.
    None,
    /// A shared secret, kept only as its SHA-256 digest.
    Secret {
        /// SHA-256 of the secret.
        digest: Vec<u8>,
    },
    /// `private_key_jwt` (RFC 7523) with keys from a JWKS URL.
    JwksUri {
        /// Where the client publishes its keys.
        uri: String,
    },
    /// `private_key_jwt` with a JWKS given at registration.
    Jwks {
        /// The JWK Set document.
        jwks: String,
    },
}

/// A registered relying party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// The `client_id`.
    pub client_id: String,
    /// How it authenticates.
    pub auth: ClientAuth,
    /// Redirect URIs, matched exactly (RFC 9700 §2.1).
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may return to, matched exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// OIDC Back-Channel Logout endpoint.
    pub backchannel_logout_uri: Option<String>,
    /// Grants the client may use.
    pub grant_types: Vec<GrantType>,
    /// Where a browser handoff from the agent lands.
    pub start_url: Option<String>,
    /// Signing algorithm for this client's ID tokens.
    pub id_token_alg: SigningAlg,
    /// The weakest `acr` this application accepts; sessions below it step up
    /// first. One of [`ACR_LEVELS`] (see [`validate_min_acr`]); `None`
    /// accepts any session, as before the field existed.
    pub min_acr: Option<String>,
    /// When the client was registered (Unix seconds).
    pub created_at: i64,
}

impl Client {
    /// Whether the client may use `grant`.
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Exact string comparison, as RFC 9700 §4.1.3 requires: no prefix,
    /// wildcard or normalisation that an attacker could steer.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    /// Exact match against the registered post-logout redirect URIs.
    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    /// Whether the client has no credentials of its own.
    pub fn is_public(&self) -> bool {
        matches!(self.auth, ClientAuth::None)
    }
}

/// Client ids appear in URLs, tokens and logs: keep them plain.
pub fn validate_client_id(id: &str) -> Result<(), ValidationError> {
    if (1..=128).contains(&id.len())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
    {
        Ok(())
    } else {
        Err(ValidationError::new(
            "client_id",
            format!("{id:?} is not a valid client id: use 1 to 128 letters, digits, '.', '_', '-' or ':'"),
        ))
    }
}

/// A client's minimum `acr` must be one Wardkey issues: no session could
/// ever meet any other value, so a typo would lock everyone out of the app.
pub fn validate_min_acr(acr: &str) -> Result<(), ValidationError> {
    if acr_rank(acr).is_some() {
        Ok(())
    } else {
        Err(ValidationError::new(
            "min-acr",
            format!("{acr:?} is not an acr Wardkey issues: use one of {} (weakest first)", ACR_LEVELS.join(", ")),
        ))
    }
}

/// A redirect or logout URI must be absolute, carry no fragment (RFC 6749
/// §3.1.2) and use https, except http on loopback for native apps and
/// development (RFC 8252 §7.3); custom schemes (`com.trust.epr:/cb`) are
/// allowed for native apps.
pub fn validate_redirect_uri(field: &'static str, uri: &str) -> Result<(), ValidationError> {
    let parsed = Url::parse(uri).map_err(|e| {
        ValidationError::new(
            field,
            format!("{uri:?} is not an absolute URI ({e}); give one like https://epr.trust.nhs.uk/callback"),
        )
    })?;
    if parsed.fragment().is_some() {
        return Err(ValidationError::new(field, format!("{uri:?} must not contain a fragment (#…)")));
    }
    // Redirect URIs are matched exactly (RFC 9700 §4.1.3); a `*` would be
    // stored as a literal that no application ever sends, or mistaken by a
    // reader for a pattern that lets any sub-domain receive codes.
    if uri.contains('*') {
        return Err(ValidationError::new(
            field,
            format!(
                "{uri:?} contains a wildcard (*): Wardkey matches redirect URIs exactly, so register each \
                 address in full (repeat the option for each)"
            ),
        ));
    }
    let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(ValidationError::new(field, format!("{uri:?} uses http on a non-loopback host: use https"))),
        "javascript" | "data" | "file" | "vbscript" => {
            Err(ValidationError::new(field, format!("{uri:?} uses a scheme that is never a safe redirect target")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris() {
        assert!(validate_redirect_uri("redirect-uri", "https://epr.example/cb").is_ok());
        assert!(validate_redirect_uri("redirect-uri", "http://127.0.0.1:9000/cb").is_ok());
        assert!(validate_redirect_uri("redirect-uri", "com.trust.epr:/cb").is_ok());
        assert!(validate_redirect_uri("redirect-uri", "not a uri").is_err());
        assert!(validate_redirect_uri("redirect-uri", "http://evil.example/cb").is_err());
        assert!(validate_redirect_uri("redirect-uri", "https://epr.example/cb#x").is_err());
        assert!(validate_redirect_uri("redirect-uri", "javascript:alert(1)").is_err());
        for wildcard in ["https://*.trust.nhs.uk/cb", "https://epr.trust.nhs.uk/*", "https://epr.example/cb?x=*"] {
            let err = validate_redirect_uri("redirect-uri", wildcard).unwrap_err();
            assert!(err.to_string().contains("wildcard"), "{err}");
        }
    }

    #[test]
    fn min_acr_is_one_wardkey_issues() {
        for acr in ACR_LEVELS {
            assert!(validate_min_acr(acr).is_ok(), "{acr}");
        }
        for bad in ["", "passkey", "urn:wardkey:acr:PASSKEY", "urn:wardkey:acr:pwd ", "urn:wardkey:acr:otp"] {
            let err = validate_min_acr(bad).unwrap_err();
            assert_eq!(err.field, "min-acr");
            assert!(err.message.contains("urn:wardkey:acr:security-key"), "{err}");
        }
    }

    #[test]
    fn grant_types_round_trip() {
        for g in ["authorization_code", "refresh_token", "client_credentials", "token_exchange"] {
            assert_eq!(GrantType::parse(g).unwrap().as_str(), g);
        }
        assert!(GrantType::parse("implicit").is_err());
    }
}
