//! `oidc`: load on the token endpoint of any OpenID provider found by
//! discovery, so Wardkey can be set against another provider with the same
//! tool and the same numbers.
//!
//! Two grants: `client_credentials` (when the provider offers it) and
//! `refresh_token`. Refresh tokens rotate: each answer carries the next
//! token and the old one is spent (presenting it again later revokes the
//! whole family), so each refresh token is one chain driven by one worker
//! that keeps the latest token. Refresh throughput is therefore bounded by
//! the number of tokens given, by design.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::time::Instant;
use wardkey_proto::oauth::TokenResponse;
use wardkey_proto::{Redacted, redacted_option};

use crate::engine::{Actor, Outcome};
use crate::stats::{ErrorKind, Op};
use crate::wire::read;

/// Names of the kinds in `--mix` for this mode, in lane order.
pub const KINDS: [&str; 2] = ["client_credentials", "refresh"];
/// Lane of `client_credentials` requests.
pub const CLIENT_CREDENTIALS: usize = 0;
/// Lane of refresh requests.
pub const REFRESH: usize = 1;

/// How the client proves itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`, the spec's default).
    Basic,
    /// In the form body (`client_secret_post`).
    Post,
}

impl ClientAuth {
    /// The method to use: `forced` if given, else Basic when the provider
    /// lists it or lists nothing (RFC 8414's default), else Post.
    pub fn choose(forced: Option<ClientAuth>, supported: Option<&[String]>) -> Self {
        if let Some(auth) = forced {
            return auth;
        }
        match supported {
            Some(list)
                if !list.iter().any(|m| m == "client_secret_basic")
                    && list.iter().any(|m| m == "client_secret_post") =>
            {
                ClientAuth::Post
            }
            _ => ClientAuth::Basic,
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one value, which RFC
/// 6749 §2.3.1 asks for inside HTTP Basic client credentials.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The provider's token endpoint and this client's credentials. `Debug`
/// hides the secret.
pub struct Provider {
    /// HTTP client (no redirects, bounded time).
    pub http: reqwest::Client,
    /// From discovery, checked to be on the issuer's host.
    pub token_endpoint: String,
    /// Client authentication method.
    pub auth: ClientAuth,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// `scope` for client_credentials, if any.
    pub scope: Option<String>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("token_endpoint", &self.token_endpoint)
            .field("auth", &self.auth)
            .field("client_id", &self.client_id)
            .field("client_secret", &Redacted)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// POST `form` to the token endpoint with client authentication.
    async fn token(&self, mut form: Vec<(&str, &str)>) -> (Result<TokenResponse, ErrorKind>, Instant) {
        let mut request = self.http.post(&self.token_endpoint);
        match self.auth {
            ClientAuth::Basic => {
                let credentials = format!("{}:{}", form_encode(&self.client_id), form_encode(&self.client_secret));
                request =
                    request.header(reqwest::header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(credentials)));
            }
            ClientAuth::Post => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", &self.client_secret));
            }
        }
        let answer = read::<TokenResponse>(request.form(&form).send().await).await;
        (answer, Instant::now())
    }
}

/// One OAuth client worker: client_credentials requests, and one refresh
/// chain when it was given a refresh token. `Debug` hides the token.
pub struct Worker {
    provider: Arc<Provider>,
    refresh_token: Option<String>,
    lost: bool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("provider", &self.provider)
            .field("refresh_token", &redacted_option(&self.refresh_token))
            .field("lost", &self.lost)
            .finish()
    }
}

impl Worker {
    /// A worker, with the refresh chain starting at `refresh_token`.
    pub fn new(provider: Arc<Provider>, refresh_token: Option<String>) -> Self {
        Self { provider, refresh_token, lost: false }
    }

    /// Whether this worker drives a refresh chain.
    pub fn has_chain(&self) -> bool {
        self.refresh_token.is_some()
    }

    /// The latest refresh token, unless the chain was lost.
    pub fn latest_refresh_token(&self) -> Option<&str> {
        if self.lost { None } else { self.refresh_token.as_deref() }
    }

    async fn client_credentials(&mut self) -> Outcome {
        let mut form = vec![("grant_type", "client_credentials")];
        let scope = self.provider.scope.clone();
        if let Some(scope) = &scope {
            form.push(("scope", scope));
        }
        let (answer, done) = self.provider.token(form).await;
        Outcome { op: Op::ClientCredentials, result: answer.and_then(has_access_token), done }
    }

    async fn refresh(&mut self) -> Outcome {
        let Some(token) = self.refresh_token.clone().filter(|_| !self.lost) else {
            let result = Err(ErrorKind::Unexpected("refresh chain lost earlier".into()));
            return Outcome { op: Op::Refresh, result, done: Instant::now() };
        };
        let (answer, done) =
            self.provider.token(vec![("grant_type", "refresh_token"), ("refresh_token", &token)]).await;
        let result = match answer {
            Ok(tokens) => {
                // Rotation: keep the newest. A provider that does not rotate
                // sends none, and the same token stays good.
                if let Some(next) = tokens.refresh_token.clone() {
                    self.refresh_token = Some(next);
                }
                has_access_token(tokens)
            }
            Err(kind) => {
                // invalid_grant: the token (and its family) is dead. Other
                // failures keep it: a retry within the reuse grace gets the
                // same answer.
                if matches!(&kind, ErrorKind::Http { code: Some(code), .. } if code == "invalid_grant") {
                    self.lost = true;
                }
                Err(kind)
            }
        };
        Outcome { op: Op::Refresh, result, done }
    }
}

fn has_access_token(tokens: TokenResponse) -> Result<(), ErrorKind> {
    if tokens.access_token.is_empty() { Err(ErrorKind::Unexpected("empty access_token".into())) } else { Ok(()) }
}

impl Actor for Worker {
    async fn step(&mut self, _due: Instant, lane: usize) -> Outcome {
        if lane == REFRESH { self.refresh().await } else { self.client_credentials().await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("epr-1.test_x*"), "epr-1.test_x*");
        assert_eq!(form_encode("a b:c/d%é"), "a+b%3Ac%2Fd%25%C3%A9");
    }

    #[test]
    fn auth_method_follows_discovery() {
        let both = vec!["client_secret_post".to_string(), "client_secret_basic".to_string()];
        let post_only = vec!["client_secret_post".to_string(), "private_key_jwt".to_string()];
        assert_eq!(ClientAuth::choose(None, Some(&both)), ClientAuth::Basic);
        assert_eq!(ClientAuth::choose(None, Some(&post_only)), ClientAuth::Post);
        assert_eq!(ClientAuth::choose(None, None), ClientAuth::Basic);
        assert_eq!(ClientAuth::choose(Some(ClientAuth::Post), Some(&both)), ClientAuth::Post);
    }
}
