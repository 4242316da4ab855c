//! `wardkey session …`: ending a person's sessions on every running server.

use clap::Subcommand;
use serde_json::json;
use wardkey_core::clock::{Clock, SystemClock};
use wardkey_idp::Settings;

use super::shared::{audit, find_user, open_store, print};

/// `wardkey session …`.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// End every session of a user and notify every app (back-channel logout).
    Revoke {
        /// Login name.
        username: String,
    },
}

/// `wardkey session …`.
pub async fn run(settings: &Settings, cmd: SessionCommand, json_out: bool) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    match cmd {
        SessionCommand::Revoke { username } => {
            let user = find_user(store.as_ref(), &username).await?;
            store.request_session_revocation(&user.id, SystemClock.now()).await?;
            audit(store.as_ref(), "session.revoke", &username, json!({})).await?;
            print(json_out, json!({"username": username, "revocation_requested": true}), || {
                format!(
                    "sessions of {username} end within a second on every running server; apps are notified by back-channel logout"
                )
            });
        }
    }
    Ok(())
}
