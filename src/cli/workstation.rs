//! `wardkey workstation …`: ward PCs running the agent, enrolled with a one-time code.

use clap::Subcommand;
use serde_json::json;
use wardkey_core::clock::SystemClock;
use wardkey_core::workstation::validate_label;
use wardkey_idp::Settings;

use super::shared::{admin, audit, explain, open_store, operator, print};

/// `wardkey workstation …`.
#[derive(Debug, Subcommand)]
pub enum WorkstationCommand {
    /// Create a workstation and print its one-time enrolment code.
    Enrol {
        /// A name for it (hostname or location).
        name: String,
        /// Its ward (selects ward policy).
        #[arg(long)]
        ward: String,
    },
    /// List workstations.
    List,
    /// Disable a workstation: its taps are refused at once.
    Disable {
        /// Its name.
        name: String,
    },
    /// Re-enable a workstation.
    Enable {
        /// Its name.
        name: String,
    },
    /// Remove a workstation for good (scrapped or rebuilt): its key signs
    /// nothing any more; enrol the PC again to bring it back.
    Remove {
        /// Its name.
        name: String,
    },
}

/// `wardkey workstation …`.
pub async fn run(settings: &Settings, cmd: WorkstationCommand, json_out: bool) -> anyhow::Result<()> {
    // Check arguments before the store is even opened.
    if let WorkstationCommand::Enrol { name, ward } = &cmd {
        validate_label("name", name)?;
        validate_label("ward", ward)?;
    }
    let store = open_store(settings).await?;
    match cmd {
        WorkstationCommand::Enrol { name, ward } => {
            let admin = wardkey_idp::admin::Admin::new(
                store.clone(),
                std::sync::Arc::new(SystemClock),
                std::sync::Arc::new(settings.clone()),
            );
            let enrolment = admin.enrol_workstation(&operator(), &name, &ward).await?;
            let (ws, code, expires_at) = (enrolment.workstation, enrolment.code, enrolment.expires_at);
            print(
                json_out,
                json!({"name": name, "ward": ward, "workstation_id": ws.id, "code": code, "expires_at": expires_at}),
                || {
                    format!(
                        "enrolment code for {name} ({ward}): {code}\nvalid for {}s, once. On the workstation run:\n  wardkey-agent enrol --server {} --code {code}",
                        settings.tap.enrolment_code_ttl.as_secs(),
                        settings.issuer()
                    )
                },
            );
        }
        WorkstationCommand::List => {
            let list = store.list_workstations().await?;
            let rows: Vec<_> = list
                .iter()
                .map(|w| {
                    json!({"name": w.name, "ward": w.ward, "workstation_id": w.id, "enabled": w.enabled,
                        "enrolled": w.public_key.is_some()})
                })
                .collect();
            print(json_out, json!(rows), || {
                list.iter()
                    .map(|w| {
                        let state = match (w.enabled, w.public_key.is_some()) {
                            (false, _) => "disabled",
                            (true, false) => "awaiting enrolment",
                            (true, true) => "enrolled",
                        };
                        format!("{}\t{}\t{}\t{state}", w.name, w.ward, w.id)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        WorkstationCommand::Disable { name } => set_workstation(settings, &name, false, json_out).await?,
        WorkstationCommand::Enable { name } => set_workstation(settings, &name, true, json_out).await?,
        WorkstationCommand::Remove { name } => {
            store.remove_workstation(&name).await.map_err(|e| explain(e, "workstation", &name))?;
            audit(store.as_ref(), "workstation.remove", &name, json!({})).await?;
            print(json_out, json!({"name": name, "removed": true}), || format!("removed workstation {name}"));
        }
    }
    Ok(())
}

async fn set_workstation(settings: &Settings, name: &str, enabled: bool, json_out: bool) -> anyhow::Result<()> {
    admin(settings).await?.set_workstation_enabled(&operator(), name, enabled).await?;
    print(json_out, json!({"name": name, "enabled": enabled}), || {
        format!("{} {name}", if enabled { "enabled" } else { "disabled" })
    });
    Ok(())
}
