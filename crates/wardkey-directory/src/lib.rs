//! Wardkey's connectors to the trust's own directories. Today: LDAP and
//! Active Directory, for password sign-in (a bind as the user; the password
//! is never stored) and for a periodic, paged sync of users, their groups
//! as roles and their disabled state.
//!
//! Depends on the domain and the store's traits, never on the server: the
//! server's sign-in service and `wardkey directory sync` both call
//! [`Directories`]. [`esr`] imports a staff extract (CSV, the shape of an
//! ESR export) through the same plan and the same one-transaction write.

#![warn(missing_docs)]

pub mod config;
mod error;
pub mod esr;
pub mod ldap;
pub mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use config::{DirectorySettings, LdapSource, LinkBy, Secret};
pub use error::DirectoryError;
pub use ldap::{LdapDirectory, PasswordCheck};
pub use sync::SyncReport;

/// Every configured source, by name. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Directories {
    settings: DirectorySettings,
    ldap: BTreeMap<String, Arc<LdapDirectory>>,
}

impl Directories {
    /// Ready the configured sources: reads their CA and password files, so
    /// a missing file stops start-up with its name.
    pub fn new(settings: &DirectorySettings) -> Result<Self, DirectoryError> {
        let mut ldap = BTreeMap::new();
        for source in &settings.ldap {
            ldap.insert(source.name.clone(), Arc::new(LdapDirectory::new(source.clone())?));
        }
        Ok(Self { settings: settings.clone(), ldap })
    }

    /// The `[directory]` settings.
    pub fn settings(&self) -> &DirectorySettings {
        &self.settings
    }

    /// The LDAP sources.
    pub fn ldap(&self) -> impl Iterator<Item = &Arc<LdapDirectory>> {
        self.ldap.values()
    }

    /// The LDAP source called `name`.
    pub fn ldap_source(&self, name: &str) -> Result<&Arc<LdapDirectory>, DirectoryError> {
        self.ldap.get(name).ok_or_else(|| DirectoryError::UnknownSource(name.to_string()))
    }
}
