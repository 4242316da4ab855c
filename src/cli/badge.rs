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
    /// List enrolled badges (of one user, or all): owner, when enrolled, wrong
    /// PINs. UIDs are not kept, only their keyed digests (the first bytes
    /// are shown to tell badges apart).
    List {
        /// Only this user's badges.
        username: Option<String>,
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
        BadgeCommand::List { username } => {
            let only = match &username {
                Some(name) => Some(find_user(store.as_ref(), name).await?.id),
                None => None,
            };
            let users: std::collections::HashMap<String, String> =
                store.list_users().await?.into_iter().map(|u| (u.id, u.username)).collect();
            let mut rows: Vec<(String, String, i64, u32)> = store
                .list_badges()
                .await?
                .into_iter()
                .filter(|b| only.as_ref().is_none_or(|id| *id == b.user_id))
                .map(|b| {
                    let owner = users.get(&b.user_id).cloned().unwrap_or_else(|| b.user_id.clone());
                    let id: String = b.digest.iter().take(4).map(|x| format!("{x:02x}")).collect();
                    (owner, id, b.created_at, b.failed_pins)
                })
                .collect();
            rows.sort();
            let json_rows: Vec<_> = rows
                .iter()
                .map(|(owner, id, at, fails)| {
                    json!({"username": owner, "badge": id, "enrolled_at": at, "wrong_pins": fails,
                        "locked": *fails >= wardkey_core::badge::MAX_PIN_FAILURES})
                })
                .collect();
            print(json_out, json!(json_rows), || {
                rows.iter()
                    .map(|(owner, id, at, fails)| {
                        let locked = if *fails >= wardkey_core::badge::MAX_PIN_FAILURES { "\tlocked" } else { "" };
                        format!("{owner}\t{id}\tenrolled {}\t{fails} wrong PINs{locked}", super::user::show_time(*at))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
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
