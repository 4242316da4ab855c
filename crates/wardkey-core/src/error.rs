//! Errors for input that breaks a domain rule.

/// Input that breaks a domain rule. The message is written for the person who
/// typed the input (an admin at the CLI, a developer registering a client),
/// so it says what is wrong and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The argument or field at fault, as the person knows it.
    pub field: &'static str,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl ValidationError {
    /// Build an error for `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}
