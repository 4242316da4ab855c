//! `wardkey session …`: ending a person's sessions on every running server.

use clap::Subcommand;
use serde_json::json;
use wardkey_idp::Settings;

use super::shared::print;

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
    match cmd {
        SessionCommand::Revoke { username } => {
            super::shared::admin(settings).await?.end_sessions(&super::shared::operator(), &username).await?;
            print(json_out, json!({"username": username, "revocation_requested": true}), || {
                format!(
                    "sessions of {username} end within a second on every running server; apps are notified by back-channel logout"
                )
            });
        }
    }
    Ok(())
}
