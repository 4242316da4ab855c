//! One LDAP / Active Directory source: the password check (find the entry
//! with the service account, then bind as it) and the paged read of every
//! user for a sync.
//!
//! Each call opens its own connection and closes it: a sign-in is rare
//! next to taps (badges do not come here), and a connection per call never
//! carries one user's bind into another's request.

use std::collections::HashMap;
use std::sync::Arc;

use ldap3::controls::{Control, ControlType, PagedResults};
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchResult, StdStream, ldap_escape,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use wardkey_core::user::{DirectoryRecord, validate_username};

use crate::config::LdapSource;
use crate::error::DirectoryError;

/// AD `userAccountControl` ACCOUNTDISABLE.
const ACCOUNT_DISABLE: u64 = 0x2;
/// LDAP result code invalidCredentials (RFC 4511 §A.1).
const INVALID_CREDENTIALS: u32 = 49;
/// Most pages a sync reads (10,000 × page_size entries).
const MAX_PAGES: u32 = 10_000;
/// sizeLimitExceeded.
const SIZE_LIMIT_EXCEEDED: u32 = 4;

/// What a directory said about a password.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The directory accepted it.
    Right,
    /// Wrong password, or no such user in the directory.
    Wrong,
    /// The right password, but the directory marks the account disabled
    /// (AD's ACCOUNTDISABLE): a user disabled since the last sync is
    /// refused at once, also by directories that accept their bind.
    Disabled,
}

/// What one read of the whole directory found.
#[derive(Debug, Default)]
pub struct Read {
    /// Entries mapped to records.
    pub records: Vec<DirectoryRecord>,
    /// Entries left out, with why (an attribute missing, a username Wardkey
    /// cannot take).
    pub skipped: Vec<String>,
    /// LDAP requests that waited for an answer (bind and pages).
    pub round_trips: u32,
}

/// A configured source, ready to connect.
pub struct LdapDirectory {
    source: LdapSource,
    password: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Group DN (normalised) → role code.
    roles: HashMap<String, String>,
}

impl std::fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapDirectory").field("source", &self.source).finish_non_exhaustive()
    }
}

/// DNs compare without case and without spaces after separators, as
/// directories write them both ways.
fn normalise_dn(dn: &str) -> String {
    dn.split(',').map(|rdn| rdn.trim().to_ascii_lowercase()).collect::<Vec<_>>().join(",")
}

impl LdapDirectory {
    /// Read the source's CA file and password file: errors name the key.
    pub fn new(source: LdapSource) -> Result<Self, DirectoryError> {
        let config = |message: String| DirectoryError::Config { name: source.name.clone(), message };
        let password = match (&source.bind_password, &source.bind_password_file) {
            (Some(p), _) => p.0.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| config(format!("bind_password_file: cannot read {}: {e}", path.display())))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            (None, None) => return Err(config("bind_password or bind_password_file must be set".into())),
        };
        // An empty password would make the service bind an anonymous one
        // (RFC 4513 §5.1.2), which directories accept.
        if password.is_empty() {
            return Err(config(
                "the service account's password is empty: set bind_password_file to a file holding it".into(),
            ));
        }
        let tls = match &source.ca_file {
            Some(path) => {
                let pem =
                    std::fs::read(path).map_err(|e| config(format!("ca_file: cannot read {}: {e}", path.display())))?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| config(format!("ca_file: {} is not PEM: {e}", path.display())))?;
                    roots.add(cert).map_err(|e| {
                        config(format!("ca_file: a certificate in {} is unusable: {e}", path.display()))
                    })?;
                }
                if roots.is_empty() {
                    return Err(config(format!("ca_file: {} holds no certificate", path.display())));
                }
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| config(format!("TLS: {e}")))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(Arc::new(tls))
            }
            None => None,
        };
        let roles = source.roles.iter().map(|(dn, role)| (normalise_dn(dn), role.clone())).collect();
        Ok(Self { source, password, tls, roles })
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.source.name
    }

    /// The source's settings.
    pub fn source(&self) -> &LdapSource {
        &self.source
    }

    /// Connect, with TCP_NODELAY: ldap3 leaves Nagle on, and a bind's small
    /// request then waits for the directory's delayed ACK, 40 ms a sign-in.
    async fn connect(&self) -> Result<Ldap, DirectoryError> {
        let unreachable = |error: String| DirectoryError::Unreachable {
            name: self.source.name.clone(),
            url: self.source.url.clone(),
            error,
        };
        let url = url::Url::parse(&self.source.url).map_err(|e| unreachable(e.to_string()))?;
        let port = url.port().unwrap_or(if url.scheme() == "ldaps" { 636 } else { 389 });
        let host = url.host_str().filter(|h| !h.is_empty()).unwrap_or("localhost");
        let tcp = tokio::time::timeout(self.source.timeout, tokio::net::TcpStream::connect((host, port)))
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.source.timeout)))?
            .map_err(|e| unreachable(e.to_string()))?;
        let tcp = tcp.set_nodelay(true).and_then(|()| tcp.into_std()).map_err(|e| unreachable(e.to_string()))?;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.source.timeout)
            .set_starttls(self.source.starttls)
            .set_std_stream(StdStream::Tcp(tcp));
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) =
            LdapConnAsync::with_settings(settings, &self.source.url).await.map_err(|e| self.unreachable(e))?;
        ldap3::drive!(conn);
        ldap.with_timeout(self.source.timeout);
        Ok(ldap)
    }

    fn unreachable(&self, e: LdapError) -> DirectoryError {
        DirectoryError::Unreachable {
            name: self.source.name.clone(),
            url: self.source.url.clone(),
            error: e.to_string(),
        }
    }

    /// Bind with the service account.
    async fn service_bind(&self, ldap: &mut Ldap) -> Result<(), DirectoryError> {
        let result = ldap
            .with_timeout(self.source.timeout)
            .simple_bind(&self.source.bind_dn, &self.password)
            .await
            .map_err(|e| self.unreachable(e))?;
        match result.rc {
            0 => Ok(()),
            INVALID_CREDENTIALS => Err(DirectoryError::ServiceBind {
                name: self.source.name.clone(),
                bind_dn: self.source.bind_dn.clone(),
            }),
            rc => Err(self.refused("bind", rc, &result.text)),
        }
    }

    fn refused(&self, what: &str, rc: u32, text: &str) -> DirectoryError {
        DirectoryError::Refused { name: self.source.name.clone(), what: what.into(), rc, text: text.into() }
    }

    /// Check `password` for the person whose entry has id `external_id`
    /// (the one their Wardkey user is linked to; by `username` when there is
    /// none yet) by binding as that entry. By id, so that whoever holds the
    /// username in the directory today (a rename, a reused name) never signs
    /// in as someone else's Wardkey user.
    ///
    /// An empty password is wrong without asking: LDAP takes a simple bind
    /// with a name and no password as an anonymous bind that succeeds
    /// (RFC 4513 §5.1.2). Values are escaped into the filter (RFC 4515 §3),
    /// so `*` or `)(` match nothing they should not. The whole check is
    /// bounded by the source's `timeout`, twice over.
    pub async fn verify_password(
        &self,
        username: &str,
        external_id: Option<&str>,
        password: &str,
    ) -> Result<PasswordCheck, DirectoryError> {
        if password.is_empty() || username.is_empty() {
            return Ok(PasswordCheck::Wrong);
        }
        let check = async {
            let mut ldap = self.connect().await?;
            let outcome = self.verify_on(&mut ldap, username, external_id, password).await;
            let _ = ldap.unbind().await;
            outcome
        };
        tokio::time::timeout(self.source.timeout * 2, check).await.map_err(|_| self.stalled())?
    }

    fn stalled(&self) -> DirectoryError {
        DirectoryError::Unreachable {
            name: self.source.name.clone(),
            url: self.source.url.clone(),
            error: format!("no answer within {:?}", self.source.timeout * 2),
        }
    }

    /// The filter term that finds the entry with id `id`: an AD
    /// `objectGUID` (kept as hex) as escaped bytes, anything else escaped
    /// text.
    fn id_term(&self, id: &str) -> String {
        let attr = &self.source.id_attribute;
        if self.binary_id() {
            let bytes: String = (0..id.len() / 2).map(|i| format!("\\{}", &id[2 * i..2 * i + 2])).collect();
            format!("({attr}={bytes})")
        } else {
            format!("({attr}={})", ldap_escape(id))
        }
    }

    /// Whether the id attribute is AD's binary `objectGUID`, always kept as
    /// hex (even when its 16 bytes happen to be valid UTF-8).
    fn binary_id(&self) -> bool {
        self.source.id_attribute.eq_ignore_ascii_case("objectGUID")
    }

    async fn verify_on(
        &self,
        ldap: &mut Ldap,
        username: &str,
        external_id: Option<&str>,
        password: &str,
    ) -> Result<PasswordCheck, DirectoryError> {
        self.service_bind(ldap).await?;
        let term = match external_id {
            Some(id) => self.id_term(id),
            None => format!("({}={})", self.source.username_attribute, ldap_escape(username)),
        };
        let filter = format!("(&{}{term})", self.source.user_filter);
        let attrs = match self.source.disabled_attribute.as_str() {
            "" => vec!["1.1"],
            flag => vec![flag],
        };
        let SearchResult(entries, result) = ldap
            .with_timeout(self.source.timeout)
            .search(&self.source.base_dn, Scope::Subtree, &filter, attrs)
            .await
            .map_err(|e| self.unreachable(e))?;
        if result.rc != 0 {
            return Err(self.refused("search", result.rc, &result.text));
        }
        let [entry] = entries.as_slice() else {
            if entries.len() > 1 {
                tracing::warn!(source = %self.source.name, count = entries.len(), "a username matches several directory entries; refusing the sign-in");
            }
            return Ok(PasswordCheck::Wrong);
        };
        let entry = SearchEntry::construct(entry.clone());
        let bind = ldap
            .with_timeout(self.source.timeout)
            .simple_bind(&entry.dn, password)
            .await
            .map_err(|e| self.unreachable(e))?;
        match bind.rc {
            // As for local users, only the right password learns that the
            // account is disabled.
            0 if self.disabled(&entry).unwrap_or(true) => Ok(PasswordCheck::Disabled),
            0 => Ok(PasswordCheck::Right),
            INVALID_CREDENTIALS => Ok(PasswordCheck::Wrong),
            rc => Err(self.refused("bind", rc, &bind.text)),
        }
    }

    /// Read every user entry with a paged search (RFC 2696), mapped to
    /// records. Fails as a whole on any error: a sync never works from part
    /// of the directory.
    pub async fn read_all(&self) -> Result<Read, DirectoryError> {
        let mut ldap = self.connect().await?;
        let outcome = self.read_on(&mut ldap).await;
        let _ = ldap.unbind().await;
        outcome
    }

    async fn read_on(&self, ldap: &mut Ldap) -> Result<Read, DirectoryError> {
        self.service_bind(ldap).await?;
        let s = &self.source;
        let attrs: Vec<&str> = [
            &s.username_attribute,
            &s.id_attribute,
            &s.name_attribute,
            &s.email_attribute,
            &s.employee_number_attribute,
            &s.disabled_attribute,
            &s.expires_attribute,
            &s.group_attribute,
        ]
        .into_iter()
        .map(String::as_str)
        .filter(|a| !a.is_empty())
        .collect();
        let mut read = Read { round_trips: 1, ..Read::default() };
        let mut cookie = Vec::new();
        loop {
            let page = PagedResults { size: s.page_size as i32, cookie: std::mem::take(&mut cookie) };
            let SearchResult(entries, result) = ldap
                .with_timeout(s.timeout)
                .with_controls(page)
                .search(&s.base_dn, Scope::Subtree, &s.user_filter, &attrs)
                .await
                .map_err(|e| self.unreachable(e))?;
            read.round_trips += 1;
            if result.rc == SIZE_LIMIT_EXCEEDED {
                return Err(self.refused(
                    "paged search (the directory's size limit for the service account is below the entries)",
                    result.rc,
                    &result.text,
                ));
            }
            if result.rc != 0 {
                return Err(self.refused("search", result.rc, &result.text));
            }
            for entry in entries {
                let entry = SearchEntry::construct(entry);
                match self.record(&entry) {
                    Ok(record) => read.records.push(record),
                    Err(why) => read.skipped.push(format!("{:?}: {why}", entry.dn)),
                }
            }
            for Control(kind, raw) in &result.ctrls {
                if matches!(kind, Some(ControlType::PagedResults)) {
                    cookie = raw.parse::<PagedResults>().cookie;
                }
            }
            if cookie.is_empty() {
                return Ok(read);
            }
            // A directory that keeps sending a cookie with no entries would
            // keep this loop going for ever.
            if read.round_trips > 1 + MAX_PAGES {
                return Err(self.refused(
                    "paged search (more pages than Wardkey reads)",
                    0,
                    "still more after 10,000 pages",
                ));
            }
        }
    }

    /// Whether the entry's `disabled_attribute` (AD `userAccountControl`)
    /// has ACCOUNTDISABLE set, or its `expires_attribute` (AD
    /// `accountExpires`) has passed; `Err` if either is not a number.
    fn disabled(&self, entry: &SearchEntry) -> Result<bool, String> {
        let number = |attr: &str| -> Result<Option<i64>, String> {
            match entry.attrs.get(attr).and_then(|v| v.first()).map(|v| v.trim()) {
                Some(value) if !attr.is_empty() => {
                    value.parse().map(Some).map_err(|_| format!("{attr} is {value:?}, not a number"))
                }
                _ => Ok(None),
            }
        };
        let flagged = number(&self.source.disabled_attribute)?.is_some_and(|flags| flags as u64 & ACCOUNT_DISABLE != 0);
        // FILETIME: 100 ns since 1601; 0 and i64::MAX mean "never".
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let now_filetime = (now + 11_644_473_600) * 10_000_000;
        let expired =
            number(&self.source.expires_attribute)?.is_some_and(|at| at != 0 && at != i64::MAX && at <= now_filetime);
        Ok(flagged || expired)
    }

    /// Map one entry; `Err` says why it is left out.
    fn record(&self, entry: &SearchEntry) -> Result<DirectoryRecord, String> {
        let s = &self.source;
        let text = |attr: &str| -> Option<String> {
            if attr.is_empty() {
                return None;
            }
            entry.attrs.get(attr).and_then(|v| v.first()).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
        };
        let username = text(&s.username_attribute).ok_or_else(|| format!("no {}", s.username_attribute))?;
        validate_username(&username).map_err(|e| e.to_string())?;
        // objectGUID is 16 bytes, kept as hex, also when they happen to be
        // valid UTF-8 (ldap3 then files them as text).
        let raw = entry.attrs.get(&s.id_attribute).and_then(|v| v.first()).map(|v| v.as_bytes().to_vec());
        let raw = raw.or_else(|| entry.bin_attrs.get(&s.id_attribute).and_then(|v| v.first()).cloned());
        let external_id = match raw {
            Some(bytes) if self.binary_id() || std::str::from_utf8(&bytes).is_err() => {
                bytes.iter().map(|x| format!("{x:02x}")).collect()
            }
            Some(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
            None => return Err(format!("no {}", s.id_attribute)),
        };
        if external_id.is_empty() {
            return Err(format!("no {}", s.id_attribute));
        }
        let disabled = self.disabled(entry)?;
        let mut roles: Vec<String> = entry
            .attrs
            .get(&s.group_attribute)
            .into_iter()
            .flatten()
            .filter_map(|dn| self.roles.get(&normalise_dn(dn)).cloned())
            .collect();
        roles.sort();
        roles.dedup();
        Ok(DirectoryRecord {
            external_id,
            username,
            name: text(&s.name_attribute),
            email: text(&s.email_attribute),
            employee_number: text(&s.employee_number_attribute),
            roles,
            disabled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_or_flagged_ad_accounts_are_disabled() {
        let source = LdapSource {
            bind_password: Some(crate::Secret("x".into())),
            url: "ldaps://dc".into(),
            ..LdapSource::default()
        };
        let directory = LdapDirectory::new(source).unwrap();
        let entry = |pairs: &[(&str, &str)]| SearchEntry {
            dn: "cn=x".into(),
            attrs: pairs.iter().map(|(k, v)| (k.to_string(), vec![v.to_string()])).collect(),
            bin_attrs: HashMap::new(),
        };
        assert!(!directory.disabled(&entry(&[("userAccountControl", "512")])).unwrap());
        assert!(directory.disabled(&entry(&[("userAccountControl", "514")])).unwrap());
        // 2020-01-01 has passed; 0 and i64::MAX are "never"; 2100 has not.
        assert!(directory.disabled(&entry(&[("accountExpires", "132223104000000000")])).unwrap());
        assert!(!directory.disabled(&entry(&[("accountExpires", "0")])).unwrap());
        assert!(!directory.disabled(&entry(&[("accountExpires", "9223372036854775807")])).unwrap());
        assert!(!directory.disabled(&entry(&[("accountExpires", "159725952000000000")])).unwrap());
        assert!(directory.disabled(&entry(&[("userAccountControl", "x")])).is_err());
    }

    #[test]
    fn an_empty_service_password_is_refused_not_sent_as_an_anonymous_bind() {
        let source = LdapSource { bind_password: Some(crate::Secret(String::new())), ..LdapSource::default() };
        let e = LdapDirectory::new(source).unwrap_err().to_string();
        assert!(e.contains("password is empty"), "{e}");
    }

    #[test]
    fn dns_compare_without_case_or_spaces() {
        assert_eq!(normalise_dn("CN=Ward 7, OU=Groups,DC=Trust"), normalise_dn("cn=ward 7,ou=groups, dc=trust"));
    }
}
