//! Ward PCs running the tap-and-go agent.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// An enrolled (or awaiting enrolment) workstation. Its Ed25519 public key
/// verifies every tap it sends; the private key never leaves the PC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workstation {
    /// Random opaque id: the `iss`/`kid` of its signed requests and its
    /// `client_id` for token exchange.
    pub id: String,
    /// Name an admin gave it (a hostname, or "Ward 4 nurses' station").
    pub name: String,
    /// The ward, which selects per-ward policy and feeds cloned-badge checks.
    pub ward: String,
    /// Raw 32-byte Ed25519 public key, once enrolled.
    pub public_key: Option<Vec<u8>>,
    /// A disabled workstation is refused at once.
    pub enabled: bool,
    /// When it was created (Unix seconds).
    pub created_at: i64,
    /// When its agent enrolled (Unix seconds).
    pub enrolled_at: Option<i64>,
}

/// Letters of enrolment codes: no 0/O, 1/I/L, so a code read off a screen
/// and typed at a ward PC is typed right.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A fresh one-time enrolment code, `XXXX-XXXX-XXXX` (about 59 bits): short
/// enough to type, and it expires and works once.
pub fn enrolment_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let chars: Vec<char> = (0..12).map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char).collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// Workstation names and wards appear on screens and in audit logs.
pub fn validate_label(field: &'static str, value: &str) -> Result<(), ValidationError> {
    let ok = (1..=64).contains(&value.chars().count())
        && value.chars().all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-' | '\''))
        && value.trim() == value;
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!("{value:?} is not valid: use 1 to 64 letters, digits, spaces, '.', '_', '-' or an apostrophe"),
        ))
    }
}

/// Enrolment codes are typed by a person at a ward PC: compare them without
/// case, spaces or dashes.
pub fn normalise_code(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}
