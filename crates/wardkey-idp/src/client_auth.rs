//! Client authentication at the token, introspection and revocation
//! endpoints: `client_secret_basic`, `client_secret_post`, `private_key_jwt`
//! (RFC 7523) and `none` for public clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use wardkey_cache::Cache;
use wardkey_core::client::{Client, ClientAuth};
use wardkey_core::clock::SharedClock;
use wardkey_core::secret::matches_digest;

use crate::config::Settings;
use crate::directory::Directory;
use crate::error::OAuthError;
use crate::kv::{Nonce, keys};
use crate::params::Params;

/// Why an assertion whose `jti` was seen before is refused.
pub(crate) const REPLAYED_ASSERTION: &str = "this assertion was already used (jti replay)";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long a fetched client JWKS is trusted before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(300);
/// RFC 7523 §3 lets us bound how far ahead an assertion may expire; a long
/// lived assertion is a replayable credential.
const MAX_ASSERTION_LIFETIME: i64 = 3600;

/// Client JWKS fetched from `jwks_uri`, kept briefly so that a busy EPR
/// does not cost a fetch per token request.
#[derive(Default)]
pub(crate) struct JwksCache(Mutex<HashMap<String, (Instant, JwkSet)>>);

/// Authenticates clients: EPR applications at the back-channel endpoints,
/// and the assertion rules workstations' signed requests share. Cheap to
/// clone.
#[derive(Clone)]
pub struct ClientAuthenticator {
    /// Where clients are looked up (cached on the node).
    pub(crate) directory: Arc<Directory>,
    /// Seen assertion `jti`s.
    pub(crate) cache: Arc<dyn Cache>,
    pub(crate) clock: SharedClock,
    pub(crate) settings: Arc<Settings>,
    /// The audiences an assertion may name: the issuer and its token endpoint.
    pub(crate) issuer: Arc<str>,
    /// Fetches `jwks_uri`.
    pub(crate) http: reqwest::Client,
    pub(crate) jwks_cache: Arc<JwksCache>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    jti: Option<String>,
    exp: i64,
    nbf: Option<i64>,
}

/// How the client presented itself.
enum Presented<'a> {
    Basic { id: String, secret: String },
    Post { id: &'a str, secret: &'a str },
    Assertion { id: Option<&'a str>, jwt: &'a str },
    Public { id: &'a str },
}

fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("the Authorization header is not valid HTTP Basic credentials", true);
    let value = value.to_str().map_err(|_| bad())?;
    let Some(encoded) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
        return Err(bad());
    };
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    // RFC 6749 §2.3.1: both halves are form-urlencoded before joining.
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

impl ClientAuthenticator {
    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Authenticate the client of a back-channel request. Exactly one method
    /// may be used (RFC 6749 §2.3). Failures say only what a legitimate
    /// integrator needs to fix, never which part of a secret was wrong.
    pub async fn authenticate_client(&self, headers: &HeaderMap, params: &Params) -> Result<Client, OAuthError> {
        let basic = basic_credentials(headers)?;
        let post_secret = params.get("client_secret");
        let assertion = params.get("client_assertion");
        let methods = [basic.is_some(), post_secret.is_some(), assertion.is_some()].iter().filter(|m| **m).count();
        if methods > 1 {
            return Err(OAuthError::InvalidRequest("use exactly one client authentication method".into()));
        }
        let form_id = params.get("client_id");
        let presented = if let Some((id, secret)) = basic {
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthError::InvalidRequest("client_id does not match the Authorization header".into()));
            }
            Presented::Basic { id, secret }
        } else if let Some(secret) = post_secret {
            let id = form_id.ok_or_else(|| OAuthError::InvalidRequest("client_secret without client_id".into()))?;
            Presented::Post { id, secret }
        } else if let Some(jwt) = assertion {
            if params.get("client_assertion_type") != Some(ASSERTION_TYPE) {
                return Err(OAuthError::InvalidRequest(format!("client_assertion_type must be {ASSERTION_TYPE}")));
            }
            Presented::Assertion { id: form_id, jwt }
        } else if let Some(id) = form_id {
            Presented::Public { id }
        } else {
            return Err(OAuthError::invalid_client("client authentication is required", false));
        };

        match presented {
            Presented::Basic { id, secret } => self.check_secret(&id, &secret, true).await,
            Presented::Post { id, secret } => self.check_secret(id, secret, false).await,
            Presented::Public { id } => {
                let client = self.lookup_client(id, false).await?;
                if client.is_public() {
                    Ok(client)
                } else {
                    Err(OAuthError::invalid_client("this client must authenticate", false))
                }
            }
            Presented::Assertion { id, jwt } => self.check_assertion(id, jwt).await,
        }
    }

    async fn lookup_client(&self, id: &str, basic: bool) -> Result<Client, OAuthError> {
        self.directory
            .client(id)
            .await?
            .ok_or_else(|| OAuthError::invalid_client("unknown client or wrong credentials", basic))
    }

    async fn check_secret(&self, id: &str, secret: &str, basic: bool) -> Result<Client, OAuthError> {
        let client = self.lookup_client(id, basic).await?;
        match &client.auth {
            ClientAuth::Secret { digest } if matches_digest(secret, digest) => Ok(client),
            _ => Err(OAuthError::invalid_client("unknown client or wrong credentials", basic)),
        }
    }

    async fn check_assertion(&self, form_id: Option<&str>, jwt: &str) -> Result<Client, OAuthError> {
        let bad = |why: &str| OAuthError::invalid_client(format!("client assertion rejected: {why}"), false);
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| bad("not a signed JWT"))?;
        // The client is named by `iss`/`sub`; read them unverified only to
        // find its keys, then verify everything with those keys.
        let unverified: serde_json::Value = {
            let payload = jwt.split('.').nth(1).ok_or_else(|| bad("not a signed JWT"))?;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .map_err(|_| bad("not a signed JWT"))?;
            serde_json::from_slice(&bytes).map_err(|_| bad("not a signed JWT"))?
        };
        let id = unverified.get("sub").and_then(|v| v.as_str()).ok_or_else(|| bad("no sub claim"))?;
        if form_id.is_some_and(|f| f != id) {
            return Err(bad("sub does not match client_id"));
        }
        let client = self.lookup_client(id, false).await?;
        let jwks = match &client.auth {
            ClientAuth::Jwks { jwks } => {
                serde_json::from_str::<JwkSet>(jwks).map_err(|_| bad("the registered JWKS is invalid"))?
            }
            ClientAuth::JwksUri { uri } => self.client_jwks(uri, false).await?,
            _ => return Err(bad("this client is not registered for private_key_jwt")),
        };
        let jwk = match header.kid.as_deref() {
            Some(kid) => match jwks.find(kid) {
                Some(jwk) => jwk.clone(),
                None => match &client.auth {
                    ClientAuth::JwksUri { uri } => {
                        self.client_jwks(uri, true).await?.find(kid).cloned().ok_or_else(|| bad("unknown kid"))?
                    }
                    _ => return Err(bad("unknown kid")),
                },
            },
            None if jwks.keys.len() == 1 => jwks.keys[0].clone(),
            None => return Err(bad("no kid and more than one key registered")),
        };
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(bad("unsupported alg"));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("the registered key is unusable"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[id]);
        // RFC 7523 §3: the audience identifies the authorization server; the
        // token endpoint URL and the issuer are both accepted, as OIDC Core
        // §9 allows.
        validation.set_audience(&[format!("{}/token", self.issuer), self.issuer.to_string()]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.sub = Some(id.to_string());
        // Time is checked below against the server's clock, like every other
        // time check, not the library's reading of the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<AssertionClaims>(jwt, &key, &validation)
            .map_err(|e| bad(describe_jwt_error(&e)))?
            .claims;
        match self.accept_assertion(id, claims.exp, claims.nbf, claims.jti.as_deref()).await? {
            Ok(()) => Ok(client),
            Err(why) => Err(bad(why)),
        }
    }

    /// The time and replay rules every client assertion obeys (RFC 7523
    /// §3), EPR clients' and workstations' alike: `exp` not past and at most
    /// an hour ahead, `nbf` reached (both with `oidc.clock_skew`, on the
    /// server's clock), and `jti` seen once. The inner error says which
    /// rule failed; the outer one is a cache failure.
    pub(crate) async fn accept_assertion(
        &self,
        issuer: &str,
        exp: i64,
        nbf: Option<i64>,
        jti: Option<&str>,
    ) -> Result<Result<(), &'static str>, OAuthError> {
        let nonce = match self.assertion_nonce(issuer, exp, nbf, jti) {
            Ok(nonce) => nonce,
            Err(why) => return Ok(Err(why)),
        };
        if !nonce.record(self.cache.as_ref()).await? {
            return Ok(Err(REPLAYED_ASSERTION));
        }
        Ok(Ok(()))
    }

    /// [`ClientAuthenticator::accept_assertion`]'s time rules, leaving the `jti` to
    /// record to the caller (token exchange batches it with its reads); a
    /// used one is [`REPLAYED_ASSERTION`].
    pub(crate) fn assertion_nonce(
        &self,
        issuer: &str,
        exp: i64,
        nbf: Option<i64>,
        jti: Option<&str>,
    ) -> Result<Nonce, &'static str> {
        let now = self.now();
        let skew = self.settings.oidc.clock_skew.as_secs() as i64;
        if exp + skew < now {
            return Err("expired");
        }
        if nbf.is_some_and(|nbf| nbf - skew > now) {
            return Err("not yet valid");
        }
        if exp > now + MAX_ASSERTION_LIFETIME {
            return Err("exp is too far in the future");
        }
        let jti = jti.ok_or("no jti claim")?;
        let ttl = Duration::from_secs((exp - now).max(0) as u64 + skew as u64 + 1);
        Ok(Nonce::new(keys::assertion_jti(issuer, jti), ttl))
    }

    async fn client_jwks(&self, uri: &str, refresh: bool) -> Result<JwkSet, OAuthError> {
        if !refresh {
            let cache = self.jwks_cache.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, set)) = cache.get(uri)
                && at.elapsed() < JWKS_TTL
            {
                return Ok(set.clone());
            }
        }
        let fetched: JwkSet =
            async { self.http.get(uri).timeout(Duration::from_secs(5)).send().await?.error_for_status()?.json().await }
                .await
                .map_err(|e: reqwest::Error| {
                    tracing::warn!(uri, error = %e, "cannot fetch client JWKS");
                    OAuthError::invalid_client("the client's jwks_uri could not be fetched", false)
                })?;
        self.jwks_cache
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uri.to_string(), (Instant::now(), fetched.clone()));
        Ok(fetched)
    }
}

/// What a developer needs to fix in a rejected assertion. Times are checked
/// by [`ClientAuthenticator::accept_assertion`], not here.
fn describe_jwt_error(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidAudience => "wrong aud (use the token endpoint URL)",
        K::InvalidIssuer => "iss must be the client_id",
        K::InvalidSubject => "sub must be the client_id",
        K::InvalidSignature => "bad signature",
        K::MissingRequiredClaim(_) => "a required claim (exp, iss, sub, aud) is missing",
        K::InvalidAlgorithm => "alg does not match the registered key",
        _ => "invalid JWT",
    }
}

#[cfg(test)]
mod tests {
    use wardkey_core::client::GrantType;
    use wardkey_core::keys::SigningAlg;
    use wardkey_core::secret::digest;

    use super::*;
    use crate::testkit::Kit;

    async fn authenticator(kit: &Kit) -> ClientAuthenticator {
        let client = Client {
            client_id: "epr".into(),
            auth: ClientAuth::Secret { digest: digest("s3cret").to_vec() },
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            grant_types: vec![GrantType::ClientCredentials],
            start_url: None,
            id_token_alg: SigningAlg::ES256,
            min_acr: None,
            created_at: 0,
        };
        kit.store.create_client(&client).await.unwrap();
        let directory = Arc::new(Directory::new(kit.store.clone(), kit.cache.clone()));
        let issuer: Arc<str> = "https://sso.example".into();
        ClientAuthenticator {
            directory,
            cache: kit.cache.clone(),
            clock: kit.shared_clock(),
            settings: kit.settings.clone(),
            issuer,
            http: reqwest::Client::new(),
            jwks_cache: Arc::default(),
        }
    }

    fn form(body: &str) -> Params {
        Params::parse(body.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn a_secret_authenticates_its_client_once_and_by_one_method() {
        let kit = Kit::new().await;
        let auth = authenticator(&kit).await;
        let none = HeaderMap::new();
        let ok = auth.authenticate_client(&none, &form("client_id=epr&client_secret=s3cret")).await.unwrap();
        assert_eq!(ok.client_id, "epr");
        let wrong = auth.authenticate_client(&none, &form("client_id=epr&client_secret=guess")).await.unwrap_err();
        assert!(wrong.to_string().contains("unknown client or wrong credentials"), "{wrong}");
        let unknown =
            auth.authenticate_client(&none, &form("client_id=nobody&client_secret=s3cret")).await.unwrap_err();
        assert_eq!(unknown.to_string(), wrong.to_string(), "an unknown client looks like a wrong secret");
        let mut basic = HeaderMap::new();
        basic.insert(AUTHORIZATION, format!("Basic {}", STANDARD.encode("epr:s3cret")).parse().unwrap());
        assert!(auth.authenticate_client(&basic, &form("")).await.is_ok());
        let both = auth.authenticate_client(&basic, &form("client_id=epr&client_secret=s3cret")).await.unwrap_err();
        assert!(both.to_string().contains("exactly one"), "{both}");
        let public = auth.authenticate_client(&none, &form("client_id=epr")).await.unwrap_err();
        assert!(public.to_string().contains("must authenticate"), "{public}");
    }

    #[tokio::test]
    async fn assertions_obey_time_and_replay_rules() {
        let kit = Kit::new().await;
        let auth = authenticator(&kit).await;
        let now = kit.now();
        let skew = kit.settings.oidc.clock_skew.as_secs() as i64;
        assert_eq!(auth.accept_assertion("epr", now + 60, None, Some("j1")).await.unwrap(), Ok(()));
        assert_eq!(auth.accept_assertion("epr", now + 60, None, Some("j1")).await.unwrap(), Err(REPLAYED_ASSERTION));
        assert_eq!(
            auth.accept_assertion("other", now + 60, None, Some("j1")).await.unwrap(),
            Ok(()),
            "jtis are per issuer"
        );
        let rule = |exp, nbf, jti| auth.assertion_nonce("epr", exp, nbf, jti).map(|_| ());
        assert_eq!(rule(now - skew - 1, None, Some("j2")), Err("expired"));
        assert_eq!(rule(now - skew, None, Some("j2")), Ok(()), "within the skew");
        assert_eq!(rule(now + 60, Some(now + skew + 1), Some("j2")), Err("not yet valid"));
        assert_eq!(rule(now + MAX_ASSERTION_LIFETIME + 1, None, Some("j2")), Err("exp is too far in the future"));
        assert_eq!(rule(now + 60, None, None), Err("no jti claim"));
    }

    #[tokio::test]
    async fn thirty_copies_of_one_assertion_at_once_are_accepted_once() {
        let kit = Kit::new().await;
        let auth = authenticator(&kit).await;
        let exp = kit.now() + 60;
        let tries = (0..30).map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.accept_assertion("epr", exp, None, Some("same-jti")).await.unwrap() })
        });
        let outcomes: Vec<_> = futures_util::future::join_all(tries).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
        assert!(outcomes.iter().all(|o| *o == Ok(()) || *o == Err(REPLAYED_ASSERTION)));
    }
}
