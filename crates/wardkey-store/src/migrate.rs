//! `wardkey store migrate`: copy every durable record of one store into a
//! new, empty one (SQLite to PostgreSQL when a one-machine install grows,
//! or back). The CLI prints the [`CopyReport`]; the conformance suite runs
//! the same code on every engine pair.
//!
//! What is copied: users with their secret hashes, counters and
//! timestamps; their WebAuthn credentials (signature counters included, so
//! nobody registers theirs again); clients; signing keys (retired ones too);
//! workstations with their public keys; the badge key and every badge; the
//! audit log. Nothing that only lives for a moment (login and PIN attempts
//! under way, invites, the logout outbox, session revocation requests) is.

use serde::Serialize;
use wardkey_core::secret::new_secret;

use crate::prelude::*;
use crate::{CredentialKind, StoreError};

/// How many records of each kind were copied; serialised as the CLI prints
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Users.
    pub users: usize,
    /// Secret hashes (passwords and PINs).
    pub credentials: usize,
    /// WebAuthn credentials.
    pub webauthn_credentials: usize,
    /// Clients.
    pub clients: usize,
    /// Signing keys, retired ones included.
    pub signing_keys: usize,
    /// Workstations.
    pub workstations: usize,
    /// Badges.
    pub badges: usize,
    /// SCIM groups.
    pub groups: usize,
    /// Audit records.
    pub audit_records: usize,
}

/// Why a copy stopped. A copy that stops half-way leaves the target
/// partly written: start again with a new, empty target.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target already holds users, clients, signing keys or
    /// workstations.
    #[error("the target store is not empty: migrate into a new, empty database")]
    TargetNotEmpty,
    /// The target holds a badge key other than the source's, so the
    /// source's badge digests would not match there.
    #[error("the target store already has a different badge key")]
    DifferentBadgeKey,
    /// Reading the source or writing the target failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing one record failed; `what` names it (never a secret).
    #[error("{what}")]
    Record {
        /// The record, e.g. `user "alice"`.
        what: String,
        /// Why.
        #[source]
        source: StoreError,
    },
}

/// Attach the record's name to a failed write.
fn record(what: impl FnOnce() -> String) -> impl FnOnce(StoreError) -> CopyError {
    move |source| CopyError::Record { what: what(), source }
}

/// Copy everything durable from `source` into the empty `target`.
/// `badge_key_name` is the server secret badge digests are keyed with: if
/// the source has none yet, one is made there first, so that both agree.
pub async fn copy(source: &dyn Store, target: &dyn Store, badge_key_name: &str) -> Result<CopyReport, CopyError> {
    let empty = target.list_users().await?.is_empty()
        && target.list_clients().await?.is_empty()
        && target.signing_keys().await?.is_empty()
        && target.list_workstations().await?.is_empty();
    if !empty {
        return Err(CopyError::TargetNotEmpty);
    }
    let mut report = CopyReport::default();

    let users = source.list_users().await?;
    for user in &users {
        let mut creds = Vec::new();
        for kind in [CredentialKind::Password, CredentialKind::Pin] {
            if let Some(hash) = source.credential(&user.id, kind).await? {
                creds.push((kind, hash));
            }
        }
        report.credentials += creds.len();
        target.import_user(user, &creds).await.map_err(record(|| format!("user {:?}", user.username)))?;
        let authenticators = source.webauthn_credentials(&user.id).await?;
        for credential in &authenticators {
            target
                .add_webauthn_credential(credential)
                .await
                .map_err(record(|| format!("WebAuthn credential {:?} of user {:?}", credential.name, user.username)))?;
        }
        report.webauthn_credentials += authenticators.len();
    }
    report.users = users.len();

    // Members and roles came with the users; the groups name them again.
    let groups = source.list_groups().await?;
    for group in &groups {
        target.save_group(group, &[]).await.map_err(record(|| format!("group {:?}", group.display_name)))?;
    }
    report.groups = groups.len();

    let clients = source.list_clients().await?;
    for client in &clients {
        target.create_client(client).await.map_err(record(|| format!("client {:?}", client.client_id)))?;
    }
    report.clients = clients.len();

    let keys = source.signing_keys().await?;
    // Oldest first, so "newest first" reads back the same on the target.
    for key in keys.iter().rev() {
        target.import_signing_key(key).await.map_err(record(|| format!("signing key {}", key.kid)))?;
    }
    report.signing_keys = keys.len();

    let workstations = source.list_workstations().await?;
    for ws in &workstations {
        target.import_workstation(ws).await.map_err(record(|| format!("workstation {:?}", ws.name)))?;
    }
    report.workstations = workstations.len();

    // Badge digests only mean something with the key that made them.
    let badge_key = source.server_secret(badge_key_name, new_secret().as_bytes()).await?;
    if target.server_secret(badge_key_name, &badge_key).await? != badge_key {
        return Err(CopyError::DifferentBadgeKey);
    }
    let badges = source.list_badges().await?;
    for badge in &badges {
        target.add_badge(badge).await.map_err(record(|| "badge".to_string()))?;
    }
    report.badges = badges.len();

    let audit = source.recent_audit(u32::MAX).await?;
    for event in audit.iter().rev() {
        target.append_audit(event).await.map_err(record(|| "audit record".to_string()))?;
    }
    report.audit_records = audit.len();
    Ok(report)
}
