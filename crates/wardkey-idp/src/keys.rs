//! The signing keyring: parsed key pairs for signing our JWTs, the public
//! keys for verifying them again (userinfo, introspection, logout hints), and
//! the JWKS document.
//!
//! Keys live in the store; each node parses them once into aws-lc-rs key
//! pairs, because re-parsing a DER key on every signature would nearly double
//! the cost of an ES256 signature and quadruple RS256 (see
//! `shared/CRATES.md`). A background task reloads them on
//! `oidc.key_reload_interval`, so a rotation on any node reaches every node.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use wardkey_core::keys::{SigningAlg, SigningKey};
use wardkey_core::secret::random_token;
use wardkey_store::{Store, StoreError};

/// Why a key could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// aws-lc rejected a stored key or failed to generate or sign.
    #[error("signing key error: {0}")]
    Crypto(String),
    /// No usable key for the algorithm (the store holds none).
    #[error("no active signing key for {0}")]
    Missing(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a JWT we are asked to trust is not one of ours, or no longer valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not three base64url parts with JSON header and claims.
    #[error("the token is malformed")]
    Malformed,
    /// Unknown `kid`, an `alg` other than the key's own (including `none`),
    /// or a bad signature.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// The `typ` header is not the one expected.
    #[error("the token is of the wrong type")]
    WrongType,
}

enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

struct ActiveKey {
    kid: String,
    alg: SigningAlg,
    signer: Signer,
}

struct PublicKeyEntry {
    alg: SigningAlg,
    public: Vec<u8>,
}

#[derive(Default)]
struct KeySet {
    active: HashMap<SigningAlg, Arc<ActiveKey>>,
    public: HashMap<String, PublicKeyEntry>,
    jwks: Value,
}

/// The node's view of the signing keys. Cheap to read on every token.
pub struct Keyring {
    set: RwLock<Arc<KeySet>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(..)")
    }
}

/// Generate one fresh key per algorithm, for first start and for rotation.
pub fn generate_keys(now: i64) -> Result<Vec<SigningKey>, KeyError> {
    SigningAlg::ALL.iter().map(|&alg| generate_key(alg, now)).collect()
}

fn crypto<E: std::fmt::Debug>(e: E) -> KeyError {
    KeyError::Crypto(format!("{e:?}"))
}

fn generate_key(alg: SigningAlg, now: i64) -> Result<SigningKey, KeyError> {
    use aws_lc_rs::encoding::AsDer;
    let pkcs8 = match alg {
        SigningAlg::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(crypto)?
            .to_pkcs8v1()
            .map_err(crypto)?
            .as_ref()
            .to_vec(),
        SigningAlg::RS256 => {
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                RsaKeyPair::generate(KeySize::Rsa2048).map_err(crypto)?.as_der().map_err(crypto)?;
            der.as_ref().to_vec()
        }
        SigningAlg::EdDSA => Ed25519KeyPair::generate().map_err(crypto)?.to_pkcs8().map_err(crypto)?.as_ref().to_vec(),
    };
    Ok(SigningKey { kid: random_token(12), alg, pkcs8, created_at: now, retired_at: None })
}

fn parse(key: &SigningKey) -> Result<(Signer, Vec<u8>, Value), KeyError> {
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    Ok(match key.alg {
        SigningAlg::ES256 => {
            let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.pkcs8).map_err(crypto)?;
            let public = kp.public_key().as_ref().to_vec();
            // Uncompressed point: 0x04 || x || y.
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&public[1..33]), "y": b64(&public[33..65])});
            (Signer::Es256(kp), public, jwk)
        }
        SigningAlg::RS256 => {
            let kp = RsaKeyPair::from_pkcs8(&key.pkcs8).map_err(crypto)?;
            let pk = kp.public_key();
            let jwk = json!({
                "kty": "RSA",
                "n": b64(pk.modulus().big_endian_without_leading_zero()),
                "e": b64(pk.exponent().big_endian_without_leading_zero()),
            });
            let public = pk.as_ref().to_vec();
            (Signer::Rs256(kp), public, jwk)
        }
        SigningAlg::EdDSA => {
            let kp = Ed25519KeyPair::from_pkcs8(&key.pkcs8).map_err(crypto)?;
            let public = kp.public_key().as_ref().to_vec();
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&public)});
            (Signer::EdDsa(kp), public, jwk)
        }
    })
}

impl Keyring {
    /// Load the keys from the store, generating a first set if the store has
    /// none (first start).
    pub async fn load(store: &dyn Store, now: i64) -> Result<Self, KeyError> {
        let ring = Keyring { set: RwLock::new(Arc::new(KeySet::default())), rng: SystemRandom::new() };
        ring.reload(store, now).await?;
        Ok(ring)
    }

    /// Re-read keys from the store. Missing algorithms (first start, or a
    /// store restored without them) get a fresh key.
    pub async fn reload(&self, store: &dyn Store, now: i64) -> Result<(), KeyError> {
        let mut keys = store.signing_keys().await?;
        let missing: Vec<SigningAlg> = SigningAlg::ALL
            .into_iter()
            .filter(|alg| !keys.iter().any(|k| k.alg == *alg && k.retired_at.is_none()))
            .collect();
        if !missing.is_empty() {
            let fresh = missing.iter().map(|&a| generate_key(a, now)).collect::<Result<Vec<_>, _>>()?;
            store.rotate_signing_keys(&fresh, now).await?;
            keys = store.signing_keys().await?;
        }
        let mut set = KeySet::default();
        let mut jwks = Vec::new();
        // Newest first: the first unretired key of each algorithm signs.
        for key in &keys {
            let (signer, public, mut jwk) = match parse(key) {
                Ok(parsed) => parsed,
                Err(e) => {
                    tracing::error!(kid = %key.kid, error = %e, "skipping unusable signing key");
                    continue;
                }
            };
            jwk["kid"] = json!(key.kid);
            jwk["alg"] = json!(key.alg.as_str());
            jwk["use"] = json!("sig");
            jwks.push(jwk);
            set.public.insert(key.kid.clone(), PublicKeyEntry { alg: key.alg, public });
            if key.retired_at.is_none() && !set.active.contains_key(&key.alg) {
                set.active.insert(key.alg, Arc::new(ActiveKey { kid: key.kid.clone(), alg: key.alg, signer }));
            }
        }
        set.jwks = json!({ "keys": jwks });
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(())
    }

    fn current(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The JWKS document (RFC 7517) with every published key.
    pub fn jwks(&self) -> Value {
        self.current().jwks.clone()
    }

    /// Sign `claims` as a compact JWS with the active key for `alg`.
    pub fn sign<T: Serialize>(&self, alg: SigningAlg, typ: &str, claims: &T) -> Result<String, KeyError> {
        let set = self.current();
        let key = set.active.get(&alg).ok_or(KeyError::Missing(alg.as_str()))?;
        let header = json!({"alg": key.alg.as_str(), "typ": typ, "kid": key.kid});
        let mut jws = String::with_capacity(512);
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&header).map_err(crypto)?, &mut jws);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims).map_err(crypto)?, &mut jws);
        let signature = match &key.signer {
            Signer::Es256(kp) => kp.sign(&self.rng, jws.as_bytes()).map_err(crypto)?.as_ref().to_vec(),
            Signer::EdDsa(kp) => kp.sign(jws.as_bytes()).as_ref().to_vec(),
            Signer::Rs256(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &self.rng, jws.as_bytes(), &mut sig).map_err(crypto)?;
                sig
            }
        };
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        Ok(jws)
    }

    /// Verify a JWS we signed and return its claims. Only keys in this
    /// keyring count, and only with their own algorithm: `alg: none` or an
    /// algorithm swapped in the header never verifies (RFC 8725 §3.1).
    /// `typ`, if given, must match the header's `typ`.
    pub fn verify<T: DeserializeOwned>(&self, jws: &str, typ: Option<&str>) -> Result<T, VerifyError> {
        let mut parts = jws.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(VerifyError::Malformed);
        };
        let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| VerifyError::Malformed);
        let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| VerifyError::Malformed)?;
        let kid = header.get("kid").and_then(Value::as_str).ok_or(VerifyError::BadSignature)?;
        let set = self.current();
        let key = set.public.get(kid).ok_or(VerifyError::BadSignature)?;
        if header.get("alg").and_then(Value::as_str) != Some(key.alg.as_str()) {
            return Err(VerifyError::BadSignature);
        }
        if let Some(typ) = typ
            && header.get("typ").and_then(Value::as_str) != Some(typ)
        {
            return Err(VerifyError::WrongType);
        }
        let algorithm: &dyn signature::VerificationAlgorithm = match key.alg {
            SigningAlg::ES256 => &ECDSA_P256_SHA256_FIXED,
            SigningAlg::RS256 => &RSA_PKCS1_2048_8192_SHA256,
            SigningAlg::EdDSA => &ED25519,
        };
        let signed = &jws[..h.len() + 1 + c.len()];
        UnparsedPublicKey::new(algorithm, &key.public)
            .verify(signed.as_bytes(), &decode(s)?)
            .map_err(|_| VerifyError::BadSignature)?;
        serde_json::from_slice(&decode(c)?).map_err(|_| VerifyError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(keys: Vec<SigningKey>) -> Keyring {
        let ring = Keyring { set: RwLock::new(Arc::new(KeySet::default())), rng: SystemRandom::new() };
        let mut set = KeySet::default();
        for key in &keys {
            let (signer, public, _) = parse(key).unwrap();
            set.public.insert(key.kid.clone(), PublicKeyEntry { alg: key.alg, public });
            set.active.insert(key.alg, Arc::new(ActiveKey { kid: key.kid.clone(), alg: key.alg, signer }));
        }
        *ring.set.write().unwrap() = Arc::new(set);
        ring
    }

    #[test]
    fn sign_and_verify_every_alg() {
        let ring = ring_with(generate_keys(0).unwrap());
        for alg in SigningAlg::ALL {
            let jws = ring.sign(alg, "JWT", &json!({"sub": "x"})).unwrap();
            let claims: Value = ring.verify(&jws, Some("JWT")).unwrap();
            assert_eq!(claims["sub"], "x");
            assert_eq!(ring.verify::<Value>(&jws, Some("at+jwt")).unwrap_err(), VerifyError::WrongType);
            let mut tampered = jws.clone();
            tampered.insert(jws.find('.').unwrap() + 2, 'A');
            assert!(ring.verify::<Value>(&tampered, None).is_err());
        }
    }

    #[test]
    fn alg_none_and_foreign_keys_fail() {
        let ring = ring_with(generate_keys(0).unwrap());
        let other = ring_with(generate_keys(0).unwrap());
        let foreign = other.sign(SigningAlg::ES256, "JWT", &json!({})).unwrap();
        assert_eq!(ring.verify::<Value>(&foreign, None).unwrap_err(), VerifyError::BadSignature);
        let jws = ring.sign(SigningAlg::ES256, "JWT", &json!({})).unwrap();
        let kid = jws.split('.').next().unwrap();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(kid).unwrap()).unwrap();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": header["kid"]}).to_string()),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert_eq!(ring.verify::<Value>(&none, None).unwrap_err(), VerifyError::BadSignature);
        assert_eq!(ring.verify::<Value>("a.b", None).unwrap_err(), VerifyError::Malformed);
    }
}
