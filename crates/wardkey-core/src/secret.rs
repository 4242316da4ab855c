//! Random secrets and their digests.
//!
//! Client secrets, authorization codes, refresh tokens and session cookies are
//! 256-bit random values. They are never stored as such: the store and the
//! cache key on a SHA-256 digest, so a leaked database or cache dump cannot be
//! replayed. A slow hash adds nothing for values with 256 bits of entropy and
//! would put milliseconds on every request (RFC 9700 §4.14 discusses
//! high-entropy tokens).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh base64url string carrying `bytes` random bytes from the OS CSPRNG.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A fresh 256-bit secret (43 base64url characters).
pub fn new_secret() -> String {
    random_token(32)
}

/// SHA-256 of `value`.
pub fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// SHA-256 of `value` as base64url, for use as a cache key.
pub fn digest_b64(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(value))
}

/// Compare a presented secret with a stored digest in constant time.
pub fn matches_digest(presented: &str, stored: &[u8]) -> bool {
    digest(presented).ct_eq(stored).into()
}

/// Compare two secrets in constant time (for equal lengths).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A store or cache URL fit to show: the password in
/// `postgres://user:secret@host/db` replaced by `REDACTED`, so that error
/// messages and logs name the database without handing out its password.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_and_distinct() {
        let a = new_secret();
        assert_eq!(a.len(), 43);
        assert_ne!(a, new_secret());
        assert!(matches_digest(&a, &digest(&a)));
        assert!(!matches_digest("other", &digest(&a)));
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:REDACTED@h/db");
        assert_eq!(redact_url("sqlite://./wardkey.db"), "sqlite://./wardkey.db");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
    }
}
