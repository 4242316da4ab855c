//! `wardkey scim …`: provisioning clients (Entra ID and others) of
//! `/scim/v2`.

use clap::Subcommand;
use serde_json::json;
use wardkey_core::secret::random_token;
use wardkey_idp::Settings;

use super::shared::print;

/// `wardkey scim …`.
#[derive(Debug, Subcommand)]
pub enum ScimCommand {
    /// Make a bearer token for a provisioning client. Prints the token once
    /// (for the provisioner's "Secret Token" field) and the `[scim]` line
    /// that lets it in; only the token's SHA-256 goes in wardkey.toml.
    Token {
        /// Who it is for, as the audit log will name it (`scim:NAME`).
        name: String,
    },
}

/// `wardkey scim …`.
pub async fn run(_settings: &Settings, cmd: ScimCommand, json_out: bool) -> anyhow::Result<()> {
    let ScimCommand::Token { name } = cmd;
    anyhow::ensure!(
        !name.trim().is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
        "name: use letters, digits, '-', '_' or '.', like entra-id"
    );
    let token = random_token(32);
    let sha256 = wardkey_core::secret::digest(&token).iter().map(|b| format!("{b:02x}")).collect::<String>();
    print(json_out, json!({"name": name, "token": token, "sha256": sha256}), || {
        format!(
            "token for {name} (shown once; paste it into the provisioner's Secret Token field):\n{token}\n\n\
             add to wardkey.toml under [scim], then restart the servers:\n\
             tokens = [{{ name = \"{name}\", sha256 = \"{sha256}\" }}]"
        )
    });
    Ok(())
}
