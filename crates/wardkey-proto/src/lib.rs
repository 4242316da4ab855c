//! Wire types shared by the Wardkey server and its clients (the workstation
//! agent, the load tool, tests), with no dependency beyond serde so that a
//! client never pulls in the server.

#![warn(missing_docs)]

pub mod broker;
pub mod metrics;
pub mod oauth;
#[cfg(feature = "signer")]
pub mod signer;
pub mod tap;

/// Stands in for a secret in a manual `Debug` (PINs, badge UIDs, tokens,
/// codes): prints `<redacted>`, so a logged request or answer never carries
/// what opens a session.
#[derive(Clone, Copy)]
pub struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `Some(<redacted>)` or `None`: whether an optional secret is there,
/// never what it is.
pub fn redacted_option<T>(secret: &Option<T>) -> Option<Redacted> {
    secret.as_ref().map(|_| Redacted)
}
