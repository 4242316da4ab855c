//! `wardkey badge …`: badges, stored only as keyed digests of their UIDs.

use anyhow::{anyhow, bail};
use clap::Subcommand;
use serde_json::json;
use wardkey_core::badge::Badge;
use wardkey_core::clock::{Clock, SystemClock};
use wardkey_core::secret::new_secret;
use wardkey_idp::Settings;
use wardkey_store::{Store, StoreError};

use super::shared::{audit, find_user, open_store, print, read_secret};

/// `wardkey badge …`.
#[derive(Debug, Subcommand)]
pub enum BadgeCommand {
    /// Enrol a badge for a user; the UID is read from stdin (a reader types it).
    Enrol {
        /// Login name of the badge's owner.
        username: String,
        /// Read the badge UID from the first line of stdin (required).
        #[arg(long, required = true)]
        uid_stdin: bool,
    },
    /// Revoke a user's badges: one (UID on stdin) or all.
    Revoke {
        /// Login name of the badge's owner.
        username: String,
        /// Revoke only the badge whose UID is on stdin.
        #[arg(long)]
        uid_stdin: bool,
    },
}

async fn badge_key(store: &dyn Store) -> anyhow::Result<Vec<u8>> {
    Ok(store.server_secret(wardkey_core::badge::DIGEST_KEY_NAME, new_secret().as_bytes()).await?)
}

/// `wardkey badge …`.
pub async fn run(settings: &Settings, cmd: BadgeCommand, json_out: bool) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    match cmd {
        BadgeCommand::Enrol { username, .. } => {
            let uid = read_secret("badge UID")?;
            let user = find_user(store.as_ref(), &username).await?;
            let digest = wardkey_core::badge::digest(&badge_key(store.as_ref()).await?, &uid)?;
            let badge = Badge { digest, user_id: user.id.clone(), failed_pins: 0, created_at: SystemClock.now() };
            store.add_badge(&badge).await.map_err(|e| match e {
                StoreError::Conflict(_) => anyhow!("this badge is already enrolled; revoke it first"),
                other => anyhow::Error::new(other),
            })?;
            audit(store.as_ref(), "badge.enrol", &username, json!({})).await?;
            print(json_out, json!({"username": username, "enrolled": true}), || {
                format!("badge enrolled for {username}")
            });
        }
        BadgeCommand::Revoke { username, uid_stdin } => {
            let user = find_user(store.as_ref(), &username).await?;
            let revoked = if uid_stdin {
                let uid = read_secret("badge UID")?;
                let digest = wardkey_core::badge::digest(&badge_key(store.as_ref()).await?, &uid)?;
                match store.badge(&digest).await? {
                    Some(b) if b.user_id == user.id => {
                        store.revoke_badge(&digest).await?;
                        1
                    }
                    _ => bail!("{username:?} has no badge with that UID"),
                }
            } else {
                store.revoke_user_badges(&user.id).await?
            };
            // A revoked badge (lost, stolen, copied) must not leave a PC
            // open: the servers end the user's sessions, which locks every
            // ward PC holding one (their desk channels).
            if revoked > 0 {
                store.request_session_revocation(&user.id, SystemClock.now()).await?;
            }
            audit(store.as_ref(), "badge.revoke", &username, json!({"revoked": revoked})).await?;
            print(json_out, json!({"username": username, "revoked": revoked}), || {
                format!("revoked {revoked} badge(s) of {username}")
            });
        }
    }
    Ok(())
}
