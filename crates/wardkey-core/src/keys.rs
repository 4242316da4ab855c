//! Signing keys as the store keeps them.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// JWS algorithms Wardkey signs with. ES256 is the default: small signatures
/// and fast signing; RS256 is what older EPR libraries expect; EdDSA for those
/// that want it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    RS256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlg {
    /// Every algorithm, in the order keys are generated.
    pub const ALL: [SigningAlg; 3] = [SigningAlg::ES256, SigningAlg::RS256, SigningAlg::EdDSA];

    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        }
    }

    /// Parse a JOSE `alg` name.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "ES256" => Ok(Self::ES256),
            "RS256" => Ok(Self::RS256),
            "EdDSA" => Ok(Self::EdDSA),
            other => Err(ValidationError::new(
                "id-token-alg",
                format!("{other:?} is not supported: use ES256, RS256 or EdDSA"),
            )),
        }
    }
}

/// A signing key pair. The private half is PKCS#8 DER; it never leaves the
/// store and the server's memory.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// Key id published in the JWKS and in every JWS header.
    pub kid: String,
    /// Algorithm this key signs with.
    pub alg: SigningAlg,
    /// PKCS#8 DER private key.
    pub pkcs8: Vec<u8>,
    /// When generated (Unix seconds).
    pub created_at: i64,
    /// When a newer key replaced it for signing; it stays published until
    /// every token it signed has expired.
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("pkcs8", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}
