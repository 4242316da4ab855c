//! Password (and PIN) hashing with argon2id.
//!
//! The parameters are defined here once; the server runs these functions on
//! a blocking thread behind a semaphore, because each call costs ~15 ms of CPU
//! at the OWASP parameters and must never sit on the async runtime or the tap
//! hot path.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// argon2id cost parameters. The defaults are OWASP's recommendation
/// (m = 19 MiB, t = 2, p = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self { m_cost: 19 * 1024, t_cost: 2, p_cost: 1 }
    }
}

impl Argon2Params {
    fn hasher(&self) -> Result<Argon2<'static>, ValidationError> {
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, None)
            .map_err(|e| ValidationError::new("password", format!("invalid argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Check the parameters are accepted by argon2, for start-up validation.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.hasher().map(|_| ())
    }
}

/// Hash a secret into a PHC string (`$argon2id$v=19$m=…`).
pub fn hash(params: &Argon2Params, secret: &str) -> Result<String, ValidationError> {
    let salt = SaltString::generate(&mut OsRng);
    params
        .hasher()?
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ValidationError::new("password", format!("could not hash: {e}")))
}

/// Verify a secret against a stored PHC string. The cost parameters come
/// from the stored hash, so old hashes keep verifying after a parameter
/// change.
pub fn verify(stored: &str, secret: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Verify against a fixed hash with the configured cost, for unknown users,
/// so a login for a name that does not exist takes as long as one that does
/// (no user enumeration by timing).
pub fn verify_dummy(params: &Argon2Params, secret: &str) -> bool {
    static DUMMY: OnceLock<(Argon2Params, String)> = OnceLock::new();
    let (p, stored) = DUMMY.get_or_init(|| (*params, hash(params, "wardkey-dummy-password").unwrap_or_default()));
    let stored = if p == params { stored.clone() } else { hash(params, "wardkey-dummy-password").unwrap_or_default() };
    let _ = verify(&stored, secret);
    false
}

/// Passwords set by an admin follow NIST SP 800-63B §5.1.1.2: at least 8
/// characters, at most 256 (we accept long passphrases but bound the work),
/// no composition rules.
pub fn validate_password(password: &str) -> Result<(), ValidationError> {
    let n = password.chars().count();
    if n < 8 {
        return Err(ValidationError::new("password", "is shorter than 8 characters"));
    }
    if n > 256 {
        return Err(ValidationError::new("password", "is longer than 256 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Params {
        Argon2Params { m_cost: 256, t_cost: 1, p_cost: 1 }
    }

    #[test]
    fn hash_and_verify() {
        let h = hash(&cheap(), "correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "wrong"));
        assert!(!verify("garbage", "x"));
        assert!(!verify_dummy(&cheap(), "anything"));
    }

    #[test]
    fn password_policy() {
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
    }
}
