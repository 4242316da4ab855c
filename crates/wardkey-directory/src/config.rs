//! `[directory]` and its `[[directory.ldap]]` sources, as `wardkey.toml`
//! spells them. The server's settings embed [`DirectorySettings`]; every
//! key is documented for operators in `config/wardkey.toml`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[directory]`: the trust's directories Wardkey takes its users from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectorySettings {
    /// How often the server syncs each source (`wardkey directory sync`
    /// runs one at once). It bounds how long a user disabled in the
    /// directory keeps working.
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// A sync that would disable more than this share of a source's
    /// enabled users stops and says why, writing nothing: a broken filter
    /// or base DN must not lock a hospital out. At least one user may
    /// always be disabled.
    pub max_disable_share: f64,
    /// LDAP / Active Directory sources.
    pub ldap: Vec<LdapSource>,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        Self { sync_interval: Duration::from_secs(15 * 60), max_disable_share: 0.1, ldap: Vec::new() }
    }
}

/// Which attribute links a directory entry to a user Wardkey already has
/// from elsewhere (made by hand, or from another source), so that one
/// person is one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkBy {
    /// The same username (case-insensitive).
    Username,
    /// The same email address (case-insensitive).
    Email,
    /// The same employee number.
    EmployeeNumber,
    /// Never link: an entry whose username is taken is skipped and reported.
    None,
}

/// One `[[directory.ldap]]` source: an Active Directory domain or any LDAP
/// server.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapSource {
    /// Short name: users from here have source `ldap:NAME`.
    pub name: String,
    /// `ldaps://host[:636]`, or `ldap://host[:389]` with `starttls`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS (RFC 4513 §3).
    pub starttls: bool,
    /// PEM file of the CA(s) that sign the directory's certificate; the
    /// system's trusted CAs when unset.
    pub ca_file: Option<PathBuf>,
    /// Allow `ldap://` without StartTLS: passwords then cross the network
    /// in clear. Only for a directory on the same host or a test bench.
    pub allow_plain: bool,
    /// The service account that searches the directory (read-only).
    pub bind_dn: String,
    /// Its password; prefer `bind_password_file`.
    pub bind_password: Option<Secret>,
    /// A file holding the service account's password (first line).
    pub bind_password_file: Option<PathBuf>,
    /// Where users are searched (subtree).
    pub base_dn: String,
    /// Which entries are users.
    pub user_filter: String,
    /// What people type as their username: `sAMAccountName`, `uid` or
    /// `userPrincipalName`.
    pub username_attribute: String,
    /// The entry's stable id: `objectGUID` on Active Directory, `entryUUID`
    /// on OpenLDAP.
    pub id_attribute: String,
    /// Display name (`name` claim).
    pub name_attribute: String,
    /// Email address.
    pub email_attribute: String,
    /// Employee (ESR) number.
    pub employee_number_attribute: String,
    /// Active Directory's `userAccountControl`: bit 2 (ACCOUNTDISABLE)
    /// disables the user in Wardkey. Empty: nothing in the entry disables.
    pub disabled_attribute: String,
    /// Active Directory's `accountExpires` (a FILETIME): an account past it
    /// is disabled in Wardkey too, as locums' and fixed-term staff's
    /// accounts end this way. Empty: nothing expires.
    pub expires_attribute: String,
    /// The user's groups (DNs): `memberOf`.
    pub group_attribute: String,
    /// Group DN → role code released in the `roles` claim. Groups not
    /// listed give no role. DNs compare case-insensitively.
    pub roles: BTreeMap<String, String>,
    /// How an entry links to a user Wardkey already has.
    pub link_by: LinkBy,
    /// Entries per page of the paged search (RFC 2696).
    pub page_size: u32,
    /// Connect and operation timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for LdapSource {
    fn default() -> Self {
        Self {
            name: "ad".into(),
            url: String::new(),
            starttls: false,
            ca_file: None,
            allow_plain: false,
            bind_dn: String::new(),
            bind_password: None,
            bind_password_file: None,
            base_dn: String::new(),
            user_filter: "(&(objectClass=user)(objectCategory=person))".into(),
            username_attribute: "sAMAccountName".into(),
            id_attribute: "objectGUID".into(),
            name_attribute: "displayName".into(),
            email_attribute: "mail".into(),
            employee_number_attribute: "employeeNumber".into(),
            disabled_attribute: "userAccountControl".into(),
            expires_attribute: "accountExpires".into(),
            group_attribute: "memberOf".into(),
            roles: BTreeMap::new(),
            link_by: LinkBy::Username,
            page_size: 500,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The service password never reaches `Debug` or logs.
impl std::fmt::Debug for LdapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSource")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("bind_dn", &self.bind_dn)
            .field("base_dn", &self.base_dn)
            .field("user_filter", &self.user_filter)
            .finish_non_exhaustive()
    }
}

/// A secret setting: shown as `[redacted]` by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl DirectorySettings {
    /// Check what parsed but would not work; the message names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(0.0..=1.0).contains(&self.max_disable_share) {
            return Err(("directory.max_disable_share".into(), "must be between 0.0 and 1.0, like 0.1".into()));
        }
        if self.sync_interval < Duration::from_secs(10) {
            return Err(("directory.sync_interval".into(), "must be at least 10s, like \"15m\"".into()));
        }
        let mut names = std::collections::HashSet::new();
        for (i, source) in self.ldap.iter().enumerate() {
            let key = |k: &str| format!("directory.ldap[{i}].{k}");
            if !names.insert(source.name.as_str()) {
                return Err((key("name"), format!("{:?} names two sources: give each its own name", source.name)));
            }
            if source.name.is_empty() || !source.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err((key("name"), "use letters, digits and '-', like \"ad\"".into()));
            }
            let plain = source.url.starts_with("ldap://");
            if !plain && !source.url.starts_with("ldaps://") {
                return Err((key("url"), format!("{:?} is not an ldaps:// or ldap:// URL", source.url)));
            }
            if source.starttls && !plain {
                return Err((key("starttls"), "StartTLS upgrades an ldap:// URL; ldaps:// is TLS already".into()));
            }
            if plain && !source.starttls && !source.allow_plain {
                return Err((
                    key("url"),
                    "ldap:// without StartTLS sends passwords in clear: use ldaps://, or set starttls = true, \
                     or allow_plain = true for a directory on this host only"
                        .into(),
                ));
            }
            if source.bind_password.is_some() && source.bind_password_file.is_some() {
                return Err((key("bind_password"), "set bind_password or bind_password_file, not both".into()));
            }
            for (k, v) in [
                ("bind_dn", &source.bind_dn),
                ("base_dn", &source.base_dn),
                ("user_filter", &source.user_filter),
                ("username_attribute", &source.username_attribute),
                ("id_attribute", &source.id_attribute),
            ] {
                if v.trim().is_empty() {
                    return Err((key(k), "must be set".into()));
                }
            }
            if ldap3::parse_filter(&source.user_filter).is_err() {
                return Err((key("user_filter"), format!("{:?} is not an LDAP filter (RFC 4515)", source.user_filter)));
            }
            if !(1..=10_000).contains(&source.page_size) {
                return Err((key("page_size"), "must be between 1 and 10000".into()));
            }
        }
        Ok(())
    }
}
