//! Proof Key for Code Exchange (RFC 7636), S256 only.
//!
//! RFC 9700 §2.1.1 requires PKCE and forbids `plain` when S256 is possible;
//! every client library in use today supports S256, so Wardkey accepts
//! nothing else.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::secret::constant_time_eq;

/// Why a `code_challenge` on an authorization request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeError {
    /// No `code_challenge` at all.
    Missing,
    /// `code_challenge_method` other than S256 (including `plain` and absent).
    UnsupportedMethod,
    /// Not 43 base64url characters (a SHA-256 digest).
    Malformed,
}

/// Check an authorization request's `code_challenge` and method.
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<(), ChallengeError> {
    let challenge = challenge.filter(|c| !c.is_empty()).ok_or(ChallengeError::Missing)?;
    if method != Some("S256") {
        return Err(ChallengeError::UnsupportedMethod);
    }
    let valid = challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid { Ok(()) } else { Err(ChallengeError::Malformed) }
}

/// Whether `verifier` (43–128 unreserved characters, RFC 7636 §4.1) hashes to
/// `challenge`.
pub fn verify(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    constant_time_eq(&computed, challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(check_challenge(Some(challenge), Some("S256")).is_ok());
        assert!(verify(verifier, challenge));
        assert!(!verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX", challenge));
    }

    #[test]
    fn plain_and_missing_are_refused() {
        assert_eq!(check_challenge(None, Some("S256")), Err(ChallengeError::Missing));
        assert_eq!(
            check_challenge(Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), Some("plain")),
            Err(ChallengeError::UnsupportedMethod)
        );
        assert_eq!(
            check_challenge(Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), None),
            Err(ChallengeError::UnsupportedMethod)
        );
        assert_eq!(check_challenge(Some("short"), Some("S256")), Err(ChallengeError::Malformed));
    }
}
