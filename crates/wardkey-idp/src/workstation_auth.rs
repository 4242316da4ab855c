//! Workstation authentication: verifying requests signed by a
//! workstation's Ed25519 key, tap requests (`typ: wardkey-tap+jwt`) and
//! token-exchange client assertions alike.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wardkey_cache::{Cache, Reply};
use wardkey_core::clock::SharedClock;
use wardkey_core::workstation::Workstation;
use wardkey_proto::tap::Envelope;

use crate::directory::Directory;
use crate::error::TapApiError;
use crate::kv::{Nonce, keys};

/// JWS `typ` of tap requests.
pub const TAP_TYP: &str = "wardkey-tap+jwt";

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

/// A tap request with a good signature and claims whose `jti` is not yet
/// recorded: its [`Nonce`] does that, so the hot path can do
/// that in the same round trip as its first reads.
pub struct SignedTap<A> {
    /// The workstation that signed it.
    pub ws: Workstation,
    /// What it asks for.
    pub action: A,
    /// Its `jti`, to record.
    pub nonce: Nonce,
}

/// Refuse a tap request whose [`Nonce::op`] reply says its `jti` was used.
pub fn check_fresh(reply: Option<&Reply>) -> Result<(), TapApiError> {
    if Nonce::fresh(reply) { Ok(()) } else { Err(TapApiError::Replayed) }
}

/// Checks what workstations sign. Cheap to clone.
#[derive(Clone)]
pub struct WorkstationAuthenticator {
    /// Where workstations and their keys are looked up (cached on the node).
    pub(crate) directory: Arc<Directory>,
    /// Seen request `jti`s.
    pub(crate) cache: Arc<dyn Cache>,
    pub(crate) clock: SharedClock,
    /// The `aud` every request must name.
    pub(crate) issuer: Arc<str>,
    /// How far a request's `iat` may be from our clock.
    pub(crate) clock_skew: Duration,
}

impl WorkstationAuthenticator {
    /// The workstation named by `kid`, with the JWS checked against its key.
    /// Returns the workstation and the decoded claims.
    pub async fn verify_jws(&self, jws: &str) -> Result<(Workstation, Value, Option<String>), TapApiError> {
        let malformed = || TapApiError::InvalidRequest("the request is not a compact JWS".into());
        let mut parts = jws.trim().split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(malformed());
        };
        let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| malformed());
        let header: Header = serde_json::from_slice(&decode(h)?).map_err(|_| malformed())?;
        // Only EdDSA: `none` or anything else never reaches a key (RFC 8725 §3.1).
        if header.alg != "EdDSA" {
            return Err(TapApiError::InvalidSignature);
        }
        let kid = header.kid.ok_or(TapApiError::InvalidSignature)?;
        let ws = self.directory.workstation(&kid).await?.ok_or(TapApiError::InvalidSignature)?;
        let public = ws.public_key.as_deref().ok_or(TapApiError::InvalidSignature)?;
        let signed = &jws.trim()[..h.len() + 1 + c.len()];
        UnparsedPublicKey::new(&ED25519, public)
            .verify(signed.as_bytes(), &decode(s)?)
            .map_err(|_| TapApiError::InvalidSignature)?;
        // Checked only after the signature, so an unknown caller learns nothing.
        if !ws.enabled {
            return Err(TapApiError::WorkstationDisabled);
        }
        let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|_| malformed())?;
        Ok((ws, claims, header.typ))
    }

    /// Verify a signed tap request and decode its action: signature, `iss`,
    /// `aud` and `iat` within the clock skew. The `jti` is left to the caller
    /// (see [`SignedTap`]); [`WorkstationAuthenticator::verify_tap`] does both.
    pub async fn verify_signed_tap<A: DeserializeOwned>(&self, body: &[u8]) -> Result<SignedTap<A>, TapApiError> {
        let jws = std::str::from_utf8(body).map_err(|_| TapApiError::InvalidRequest("the body is not text".into()))?;
        let (ws, claims, typ) = self.verify_jws(jws).await?;
        if typ.as_deref() != Some(TAP_TYP) {
            return Err(TapApiError::InvalidRequest(format!("the JWS typ must be {TAP_TYP}")));
        }
        let envelope: Envelope<A> = serde_json::from_value(claims)
            .map_err(|e| TapApiError::InvalidRequest(format!("the request's claims are not valid: {e}")))?;
        if envelope.iss != ws.id {
            return Err(TapApiError::InvalidSignature);
        }
        if envelope.aud != *self.issuer {
            return Err(TapApiError::InvalidRequest("the request is addressed to another server".into()));
        }
        let skew = self.clock_skew.as_secs() as i64;
        if (self.clock.now() - envelope.iat).abs() > skew {
            return Err(TapApiError::Stale);
        }
        if envelope.jti.len() < 16 || envelope.jti.len() > 128 {
            return Err(TapApiError::InvalidRequest("jti must be 16 to 128 characters".into()));
        }
        // Remembered for twice the skew: an older `iat` is refused as stale.
        let nonce = Nonce::new(keys::tap_jti(&ws.id, &envelope.jti), Duration::from_secs(2 * skew as u64 + 1));
        Ok(SignedTap { ws, action: envelope.action, nonce })
    }

    /// Verify a signed tap request, record its `jti` (refusing a replay) and
    /// decode its action.
    pub async fn verify_tap<A: DeserializeOwned>(&self, body: &[u8]) -> Result<(Workstation, A), TapApiError> {
        let signed = self.verify_signed_tap(body).await?;
        if !signed.nonce.record(self.cache.as_ref()).await? {
            return Err(TapApiError::Replayed);
        }
        Ok((signed.ws, signed.action))
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use serde_json::json;
    use wardkey_proto::tap::TapOut;

    use super::*;
    use crate::testkit::Kit;

    const ISSUER: &str = "https://sso.example";

    /// An enrolled workstation `ws1` and its key.
    async fn enrolled(kit: &Kit) -> (WorkstationAuthenticator, Ed25519KeyPair) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let ws = Kit::workstation("ws1");
        kit.store.create_workstation(&ws, b"code", kit.now() + 60).await.unwrap();
        kit.store.enrol_workstation(b"code", key.public_key().as_ref(), kit.now()).await.unwrap();
        let directory = Arc::new(Directory::new(kit.store.clone(), kit.cache.clone()));
        let skew = kit.settings.oidc.clock_skew;
        let auth = WorkstationAuthenticator {
            directory,
            cache: kit.cache.clone(),
            clock: kit.shared_clock(),
            issuer: ISSUER.into(),
            clock_skew: skew,
        };
        (auth, key)
    }

    fn jws(key: &Ed25519KeyPair, header: Value, claims: Value) -> String {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        let signed = format!("{}.{}", part(&header), part(&claims));
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes()).as_ref()))
    }

    fn claims(kit: &Kit, jti: &str) -> Value {
        json!({"iss": "ws1", "aud": ISSUER, "jti": jti, "iat": kit.now(), "logout": false})
    }

    fn header() -> Value {
        json!({"alg": "EdDSA", "kid": "ws1", "typ": TAP_TYP})
    }

    #[tokio::test]
    async fn a_signed_request_is_accepted_once() {
        let kit = Kit::new().await;
        let (auth, key) = enrolled(&kit).await;
        let request = jws(&key, header(), claims(&kit, "0123456789abcdef"));
        let (ws, out): (Workstation, TapOut) = auth.verify_tap(request.as_bytes()).await.unwrap();
        assert_eq!((ws.id.as_str(), out.logout), ("ws1", false));
        let replay = auth.verify_tap::<TapOut>(request.as_bytes()).await.unwrap_err();
        assert!(matches!(replay, TapApiError::Replayed), "{replay:?}");
    }

    #[tokio::test]
    async fn forged_stale_and_misaddressed_requests_are_refused() {
        let kit = Kit::new().await;
        let (auth, key) = enrolled(&kit).await;
        let other = Ed25519KeyPair::from_pkcs8(
            Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap().as_ref(),
        )
        .unwrap();
        let refuse = |jws: String| {
            let auth = auth.clone();
            async move { auth.verify_tap::<TapOut>(jws.as_bytes()).await.unwrap_err() }
        };
        let forged = refuse(jws(&other, header(), claims(&kit, "0123456789abcdef"))).await;
        assert!(matches!(forged, TapApiError::InvalidSignature), "another key: {forged:?}");
        let none = refuse(jws(&key, json!({"alg": "none", "kid": "ws1"}), claims(&kit, "0123456789abcdef"))).await;
        assert!(matches!(none, TapApiError::InvalidSignature), "alg none: {none:?}");
        let mut elsewhere = claims(&kit, "0123456789abcdef");
        elsewhere["aud"] = json!("https://other.example");
        assert!(matches!(refuse(jws(&key, header(), elsewhere)).await, TapApiError::InvalidRequest(_)));
        let mut stale = claims(&kit, "0123456789abcdef");
        stale["iat"] = json!(kit.now() - kit.settings.oidc.clock_skew.as_secs() as i64 - 1);
        assert!(matches!(refuse(jws(&key, header(), stale)).await, TapApiError::Stale));
        let short = refuse(jws(&key, header(), claims(&kit, "short"))).await;
        assert!(matches!(short, TapApiError::InvalidRequest(_)), "{short:?}");
        kit.store.set_workstation_enabled("PC ws1", false).await.unwrap();
        auth.directory.forget();
        let disabled = refuse(jws(&key, header(), claims(&kit, "fedcba9876543210"))).await;
        assert!(matches!(disabled, TapApiError::WorkstationDisabled), "{disabled:?}");
    }

    #[tokio::test]
    async fn thirty_copies_of_one_signed_request_at_once_are_accepted_once() {
        let kit = Kit::new().await;
        let (auth, key) = enrolled(&kit).await;
        let request = jws(&key, header(), claims(&kit, "0123456789abcdef"));
        let tries = (0..30).map(|_| {
            let (auth, request) = (auth.clone(), request.clone());
            tokio::spawn(async move { auth.verify_tap::<TapOut>(request.as_bytes()).await })
        });
        let outcomes: Vec<_> = futures_util::future::join_all(tries).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
        assert!(outcomes.iter().filter_map(|o| o.as_ref().err()).all(|e| matches!(e, TapApiError::Replayed)));
    }
}
