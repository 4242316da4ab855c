//! `wardkey keys …`: the server's signing keys.

use clap::Subcommand;
use serde_json::json;
use wardkey_core::clock::{Clock, SystemClock};
use wardkey_idp::Settings;

use super::shared::{audit, open_store, print};

/// `wardkey keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Publish new signing keys; old ones stay in /jwks until their tokens expire.
    Rotate,
}

/// `wardkey keys …`.
pub async fn run(settings: &Settings, cmd: KeysCommand, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Rotate => {
            let store = open_store(settings).await?;
            let now = SystemClock.now();
            let fresh = wardkey_idp::keys::generate_keys(now)?;
            store.rotate_signing_keys(&fresh, now).await?;
            // Keys retired long enough ago that no token they signed is
            // still valid are no longer published.
            let keep = settings.oidc.access_token_ttl.as_secs() as i64 + settings.oidc.clock_skew.as_secs() as i64;
            let purged = store.purge_signing_keys(now - keep).await?;
            let kids: Vec<_> = fresh.iter().map(|k| json!({"kid": k.kid, "alg": k.alg.as_str()})).collect();
            audit(store.as_ref(), "keys.rotate", "signing-keys", json!({"new": kids, "purged": purged})).await?;
            print(json_out, json!({"new_keys": kids, "purged": purged}), || {
                let list = fresh.iter().map(|k| format!("{} {}", k.alg.as_str(), k.kid)).collect::<Vec<_>>().join(", ");
                format!(
                    "new signing keys: {list}\nrunning servers switch to them within oidc.key_reload_interval ({}); retired keys stay published until their tokens expire",
                    humantime_fmt(settings.oidc.key_reload_interval)
                )
            });
        }
    }
    Ok(())
}

fn humantime_fmt(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs())
}
