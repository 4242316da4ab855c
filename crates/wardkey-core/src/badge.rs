//! Badge identifiers, kept only as keyed digests.
//!
//! A prox card UID is not a secret (it is broadcast to any reader and clones
//! in seconds), but it is personal data that links a person to their
//! movements, so the store holds HMAC-SHA256(server secret, UID) and never
//! the UID. The digest is a lookup key, not an authenticator: a badge only
//! resumes a session that a PIN, password or key established.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ValidationError;

/// An enrolled badge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Badge {
    /// HMAC digest of the UID.
    pub digest: Vec<u8>,
    /// Owner's `sub`.
    pub user_id: String,
    /// Consecutive wrong PINs entered after tapping it; 5 lock it.
    pub failed_pins: u32,
    /// When enrolled (Unix seconds).
    pub created_at: i64,
}

/// Wrong PINs that lock a badge until a password login or an admin reset.
pub const MAX_PIN_FAILURES: u32 = 5;

/// The store's name for the key badge UIDs are digested with (a server
/// secret every node and the CLI share): a badge enrolled with one key is
/// found only with the same one.
pub const DIGEST_KEY_NAME: &str = "badge-hmac";

/// Readers report UIDs in different spellings (`04:A2:…`, `04a2…`, with
/// spaces, dots or a trailing newline); digest one canonical form: hex
/// digits, upper case, no separators. Anything else is refused: a UID is
/// bytes, and text (a name typed into the UID prompt, a keyboard-wedge
/// reader's stray keys) would enrol a badge no reader ever sends.
pub fn normalise_uid(uid: &str) -> Result<String, ValidationError> {
    let compact: String = uid.trim().chars().filter(|c| !matches!(c, ':' | '-' | ' ' | '.' | '_' | '\t')).collect();
    if compact.is_empty() || compact.len() > 128 || !compact.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ValidationError::new(
            "uid",
            "a badge UID is 1 to 128 hex digits (0-9, A-F), as the reader reports it, with or without ':', '-' or \
             spaces between bytes",
        ));
    }
    Ok(compact.to_ascii_uppercase())
}

/// The keyed digest the store keeps for `uid`.
pub fn digest(secret: &[u8], uid: &str) -> Result<Vec<u8>, ValidationError> {
    let canonical = normalise_uid(uid)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(canonical.as_bytes());
    Ok(mac.finalize().into_bytes().to_vec())
}

/// PIN policy: digits only, at least `min_len` (NIST SP 800-63B §5.1.1.1
/// allows 6-digit secrets when attempts are rate limited, as they are), and
/// not one of the PINs tried first (§5.1.1.2 asks that secrets are checked
/// against commonly used values): one digit repeated (`111111`) or a run up
/// or down (`123456`, `987654`, wrapping past 9 as `890123`).
pub fn validate_pin(pin: &str, min_len: usize) -> Result<(), ValidationError> {
    if pin.len() < min_len || pin.len() > 32 || !pin.chars().all(|c| c.is_ascii_digit()) {
        return Err(ValidationError::new("pin", format!("a PIN must be {min_len} to 32 digits")));
    }
    let digits: Vec<i32> = pin.bytes().map(|b| i32::from(b - b'0')).collect();
    let steps: Vec<i32> = digits.windows(2).map(|w| (w[1] - w[0]).rem_euclid(10)).collect();
    if steps.iter().all(|&s| s == 0) || steps.iter().all(|&s| s == 1) || steps.iter().all(|&s| s == 9) {
        return Err(ValidationError::new(
            "pin",
            "that PIN is one of the first anyone would try (one digit repeated, or a run like 123456): choose another",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_uid_digest_alike() {
        let d = digest(b"k", "04:a2:3b:1c").unwrap();
        assert_eq!(d, digest(b"k", "04A23B1C\n").unwrap());
        assert_eq!(d, digest(b"k", "04 a2 3b 1c").unwrap());
        assert_ne!(d, digest(b"other", "04A23B1C").unwrap());
        assert_eq!(d, digest(b"k", "04-A2.3B_1C").unwrap());
        assert!(digest(b"k", "  ").is_err());
        assert!(digest(b"k", "ab\u{7}").is_err());
        assert!(digest(b"k", "alice").is_err(), "text is not a UID");
        assert!(digest(b"k", "04:A2:ZZ").is_err());
    }

    #[test]
    fn pins() {
        assert!(validate_pin("192837", 6).is_ok());
        assert!(validate_pin("12345", 6).is_err());
        assert!(validate_pin("12345a", 6).is_err());
        assert!(validate_pin("246810", 6).is_ok());
        assert!(validate_pin("135790", 6).is_ok());
        for weak in ["111111", "000000", "123456", "234567", "654321", "987654", "890123", "1234567890"] {
            assert!(validate_pin(weak, 6).is_err(), "{weak}");
        }
    }
}
