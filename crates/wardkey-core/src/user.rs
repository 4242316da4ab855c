//! Clinicians and other people who sign in.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A person known to Wardkey. `id` is the OIDC `sub`: random, stable and
/// opaque, so that a renamed account or a reused username never confuses an
/// EPR's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable opaque subject identifier (`sub`).
    pub id: String,
    /// The name typed at the login form.
    pub username: String,
    /// Display name (`name` claim).
    pub name: Option<String>,
    /// Email address (`email` claim).
    pub email: Option<String>,
    /// Role codes (for example NHS national RBAC codes), released as `roles`.
    pub roles: Vec<String>,
    /// A disabled user cannot sign in, tap in or refresh tokens.
    pub disabled: bool,
    /// Consecutive failed password checks, for NIST SP 800-63B §5.2.2
    /// throttling; kept in the store so a cache restart never resets it.
    pub failed_logins: u32,
    /// When the last failed check happened (Unix seconds).
    pub last_failed_at: Option<i64>,
    /// When the account was created (Unix seconds).
    pub created_at: i64,
    /// Where the record comes from: [`LOCAL`] (typed in with the CLI or
    /// imported), `ldap:NAME` (a `[[directory.ldap]]` source) or [`SCIM`].
    /// A directory owns its users' names, roles and enabled state, and an
    /// LDAP user's password is checked by the directory.
    pub source: String,
    /// The source's stable id for the person (the LDAP entry's
    /// `entryUUID`/`objectGUID`, SCIM's `externalId`), so a renamed account
    /// stays one user.
    pub external_id: Option<String>,
    /// Employee (ESR) number, as the directory or import gives it.
    pub employee_number: Option<String>,
    /// Disabled by a Wardkey admin (`wardkey user disable`): stays disabled
    /// whatever its directory or provisioner says, until `user enable`.
    pub held: bool,
}

/// [`User::source`] of users made by hand (CLI, invites, imports).
pub const LOCAL: &str = "local";
/// [`User::source`] of users provisioned over SCIM 2.0.
pub const SCIM: &str = "scim";

/// [`User::source`] of users synced from the `[[directory.ldap]]` source
/// called `name`.
pub fn ldap_source(name: &str) -> String {
    format!("ldap:{name}")
}

impl User {
    /// The name of the LDAP source whose password this user signs in with.
    pub fn ldap_source(&self) -> Option<&str> {
        self.source.strip_prefix("ldap:")
    }
}

/// What a directory says about one person, mapped from its attributes: the
/// whole of what a sync writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryRecord {
    /// The directory's stable id for the entry.
    pub external_id: String,
    /// Login name.
    pub username: String,
    /// Display name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Employee number.
    pub employee_number: Option<String>,
    /// Role codes from the mapped groups, sorted.
    pub roles: Vec<String>,
    /// Disabled in the directory.
    pub disabled: bool,
}

/// What an admin supplies to create a user.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Login name; see [`validate_username`].
    pub username: String,
    /// Display name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Role codes.
    pub roles: Vec<String>,
}

/// Usernames are what clinicians type on a ward PC and what appears in audit
/// logs, so they are kept to a plain, unambiguous alphabet.
pub fn validate_username(username: &str) -> Result<(), ValidationError> {
    let ok_len = (1..=64).contains(&username.len());
    let ok_chars = username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err(ValidationError::new(
            "username",
            format!("{username:?} is not a valid username: use 1 to 64 letters, digits, '.', '_', '-' or '@'"),
        ))
    }
}

/// A minimal email shape check; the directory is the source of truth.
pub fn validate_email(email: &str) -> Result<(), ValidationError> {
    let mut parts = email.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(local), Some(domain), None)
            if !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(ValidationError::new("email", format!("{email:?} is not an email address like name@trust.nhs.uk"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(validate_username("dr.jones").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username("x\u{301}").is_err());
    }

    #[test]
    fn emails() {
        assert!(validate_email("a@b.nhs.uk").is_ok());
        assert!(validate_email("nope").is_err());
        assert!(validate_email("a@b@c.uk").is_err());
    }
}
