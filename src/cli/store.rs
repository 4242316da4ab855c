//! `wardkey store …`: moving everything durable from one store to another.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use wardkey_core::secret::new_secret;
use wardkey_store::{CredentialKind, Store};

use super::shared::{audit, print};

/// `wardkey store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy everything durable from one store into a new, empty one (for
    /// example SQLite to PostgreSQL when moving to several nodes).
    Migrate {
        /// The store to copy from, e.g. sqlite://./data/wardkey.db
        #[arg(long, value_name = "URL")]
        from: String,
        /// The empty store to copy into, e.g. postgres://wardkey@db/wardkey
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

/// `wardkey store …`.
pub async fn run(cmd: StoreCommand, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Migrate { from, to } => {
            let (from_shown, to_shown) =
                (wardkey_core::secret::redact_url(&from), wardkey_core::secret::redact_url(&to));
            if from == to {
                bail!("--from and --to name the same store");
            }
            let source =
                wardkey_store::open(&from).await.with_context(|| format!("opening the source store {from_shown}"))?;
            let target =
                wardkey_store::open(&to).await.with_context(|| format!("opening the target store {to_shown}"))?;
            let counts = migrate(source.as_ref(), target.as_ref()).await.with_context(|| {
                format!(
                    "migrating into {to_shown} stopped part-way; drop and recreate that database before trying again"
                )
            })?;
            audit(target.as_ref(), "store.migrate", &to_shown, json!({"from": from_shown, "moved": counts})).await?;
            print(json_out, json!({"from": from_shown, "to": to_shown, "moved": counts}), || {
                let list = counts
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("  {k}: {v}")).collect::<Vec<_>>().join("\n"));
                format!("moved from {from_shown} to {to_shown}:\n{}", list.unwrap_or_default())
            });
        }
    }
    Ok(())
}

/// Copy every durable record from `source` into the empty `target`; returns
/// how many of each kind moved. Pending workstation enrolment codes and
/// invites are not moved (only digests exist): issue new ones.
async fn migrate(source: &dyn Store, target: &dyn Store) -> anyhow::Result<serde_json::Value> {
    let empty = target.list_users().await?.is_empty()
        && target.list_clients().await?.is_empty()
        && target.signing_keys().await?.is_empty()
        && target.list_workstations().await?.is_empty();
    if !empty {
        bail!("the target store is not empty: migrate into a new, empty database");
    }
    let users = source.list_users().await?;
    let mut credentials = 0;
    let mut webauthn_credentials = 0;
    for user in &users {
        let mut creds = Vec::new();
        for kind in [CredentialKind::Password, CredentialKind::Pin] {
            if let Some(hash) = source.credential(&user.id, kind).await? {
                creds.push((kind, hash));
            }
        }
        credentials += creds.len();
        target.import_user(user, &creds).await.with_context(|| format!("user {:?}", user.username))?;
        // Passkeys and security keys, with their signature counters and
        // last use, so nobody registers theirs again.
        let authenticators = source.webauthn_credentials(&user.id).await?;
        for credential in &authenticators {
            target
                .add_webauthn_credential(credential)
                .await
                .with_context(|| format!("WebAuthn credential {:?} of user {:?}", credential.name, user.username))?;
        }
        webauthn_credentials += authenticators.len();
    }
    let clients = source.list_clients().await?;
    for client in &clients {
        target.create_client(client).await.with_context(|| format!("client {:?}", client.client_id))?;
    }
    let keys = source.signing_keys().await?;
    // Oldest first, so "newest first" reads back the same on the target.
    for key in keys.iter().rev() {
        target.import_signing_key(key).await.with_context(|| format!("signing key {}", key.kid))?;
    }
    let workstations = source.list_workstations().await?;
    for ws in &workstations {
        target.import_workstation(ws).await.with_context(|| format!("workstation {:?}", ws.name))?;
    }
    // Badge digests only mean something with the key that made them.
    let badge_key = source.server_secret(wardkey_core::badge::DIGEST_KEY_NAME, new_secret().as_bytes()).await?;
    if target.server_secret(wardkey_core::badge::DIGEST_KEY_NAME, &badge_key).await? != badge_key {
        bail!("the target store already has a different badge key");
    }
    let badges = source.list_badges().await?;
    for badge in &badges {
        target.add_badge(badge).await.context("badge")?;
    }
    let audit = source.recent_audit(u32::MAX).await?;
    for event in audit.iter().rev() {
        target.append_audit(event).await.context("audit record")?;
    }
    Ok(json!({
        "users": users.len(),
        "credentials": credentials,
        "webauthn_credentials": webauthn_credentials,
        "clients": clients.len(),
        "signing_keys": keys.len(),
        "workstations": workstations.len(),
        "badges": badges.len(),
        "audit_records": audit.len(),
    }))
}
