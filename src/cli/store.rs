//! `wardkey store …`: moving everything durable from one store to another.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use wardkey_store::Store;

use super::shared::{audit, print};

/// `wardkey store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the store at `store.url` if there is none, and bring its
    /// schema up to date (once, before the first `wardkey serve`).
    Init,
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
pub async fn run(settings: &wardkey_idp::Settings, cmd: StoreCommand, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Init => {
            let shown = wardkey_core::secret::redact_url(&settings.store.url);
            let existed = wardkey_store::open_existing(&settings.store.url).await.is_ok();
            wardkey_store::open(&settings.store.url).await.with_context(|| format!("creating the store at {shown}"))?;
            let state = if existed { "already there, schema up to date" } else { "created" };
            print(json_out, json!({"store": shown, "created": !existed}), || format!("store {shown}: {state}"));
        }
        StoreCommand::Migrate { from, to } => {
            let (from_shown, to_shown) =
                (wardkey_core::secret::redact_url(&from), wardkey_core::secret::redact_url(&to));
            if from == to {
                bail!("--from and --to name the same store");
            }
            let source = wardkey_store::open_existing(&from)
                .await
                .with_context(|| format!("opening the source store {from_shown}"))?;
            // The target starts a chain of its own over the copied records:
            // a tampered source would come out looking intact, so it is
            // refused, and the source's head is printed to keep.
            let (head, verdict) = wardkey_store::audit_chain::verify(source.as_ref()).await?;
            if let Err(problem) = verdict {
                bail!(
                    "the source's audit log has been tampered with ({problem}); keep it as it is for the investigation"
                );
            }
            let target =
                wardkey_store::open(&to).await.with_context(|| format!("opening the target store {to_shown}"))?;
            let counts = migrate(source.as_ref(), target.as_ref()).await.with_context(|| {
                format!(
                    "migrating into {to_shown} stopped part-way; drop and recreate that database before trying again"
                )
            })?;
            audit(target.as_ref(), "store.migrate", &to_shown, json!({"from": from_shown, "moved": counts})).await?;
            let source_head = json!({"seq": head.seq, "hash": head.hash});
            print(
                json_out,
                json!({"from": from_shown, "to": to_shown, "moved": counts, "source_audit_head": source_head}),
                || {
                    let list = counts
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| format!("  {k}: {v}")).collect::<Vec<_>>().join("\n"));
                    format!(
                        "moved from {from_shown} to {to_shown}:\n{}\nthe source's audit chain verified up to record {} \
                     (hash {}); the new store starts a chain of its own over the copied records",
                        list.unwrap_or_default(),
                        head.seq,
                        if head.hash.is_empty() { "-" } else { &head.hash }
                    )
                },
            );
        }
    }
    Ok(())
}

/// Copy every durable record from `source` into the empty `target`; returns
/// how many of each kind moved. Pending workstation enrolment codes and
/// invites are not moved (only digests exist): issue new ones.
async fn migrate(source: &dyn Store, target: &dyn Store) -> anyhow::Result<serde_json::Value> {
    let report = wardkey_store::migrate::copy(source, target, wardkey_core::badge::DIGEST_KEY_NAME).await?;
    Ok(serde_json::to_value(report)?)
}
