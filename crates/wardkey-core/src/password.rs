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

/// Passwords nobody may choose: commonly used and breached ones (NIST SP
/// 800-63B §3.1.1.2 asks that new passwords are checked against such a
/// list). Compared without case.
#[derive(Debug, Clone, Default)]
pub struct Blocklist(std::collections::HashSet<String>);

/// The list Wardkey ships: `data/common-passwords.txt` (its header says
/// where it comes from).
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

impl Blocklist {
    /// The shipped list of commonly used and breached passwords.
    pub fn builtin() -> &'static Blocklist {
        static BUILTIN: OnceLock<Blocklist> = OnceLock::new();
        BUILTIN.get_or_init(|| Self::parse(COMMON_PASSWORDS))
    }

    /// One password per line; blank lines and lines starting with `#` are
    /// skipped.
    pub fn parse(text: &str) -> Blocklist {
        Blocklist(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_lowercase)
                .collect(),
        )
    }

    /// Whether `password` is on the list.
    pub fn contains(&self, password: &str) -> bool {
        self.0.contains(&password.to_lowercase())
    }

    /// How many passwords it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Passwords set by an admin follow NIST SP 800-63B §5.1.1.2: at least 8
/// characters, at most 256 (we accept long passphrases but bound the work),
/// no composition rules, not on `blocklist`, and not the username itself.
pub fn validate_password(password: &str, username: &str, blocklist: &Blocklist) -> Result<(), ValidationError> {
    let n = password.chars().count();
    if n < 8 {
        return Err(ValidationError::new("password", "is shorter than 8 characters"));
    }
    if n > 256 {
        return Err(ValidationError::new("password", "is longer than 256 characters"));
    }
    if blocklist.contains(password) {
        return Err(ValidationError::new(
            "password",
            "is one of the commonly used or breached passwords that attackers try first: choose another \
             (a few unrelated words make a good one)",
        ));
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return Err(ValidationError::new("password", "contains the username: choose one that does not"));
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
        let list = Blocklist::builtin();
        assert!(list.len() > 5000, "{}", list.len());
        assert!(validate_password("short", "bob", list).is_err());
        assert!(validate_password("long enough", "bob", list).is_ok());
        for common in ["password", "Password1", "PASSWORD1", "iloveyou", "qwertyuiop", "1q2w3e4r5t"] {
            let e = validate_password(common, "bob", list).unwrap_err();
            assert!(e.to_string().contains("commonly used"), "{common}: {e}");
        }
        assert!(validate_password("bob-the-builder", "Bob", list).is_err(), "contains the username");
        let own = Blocklist::parse("# trust list\nWardSeven2026\n\n");
        assert!(validate_password("wardseven2026", "bob", &own).is_err());
        assert!(validate_password("password1", "bob", &own).is_ok(), "a replacement list replaces");
    }
}
