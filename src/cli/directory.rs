//! `wardkey directory …`: the trust's LDAP / Active Directory sources.

use anyhow::bail;
use clap::Subcommand;
use wardkey_core::clock::{Clock, SystemClock};
use wardkey_directory::{Directories, SyncReport};
use wardkey_idp::Settings;

use super::shared::{open_store, print};

/// `wardkey directory …`.
#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Sync users from the configured directories now (the server also
    /// syncs every `directory.sync_interval`).
    Sync {
        /// Only this `[[directory.ldap]]` source.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// Show what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply a sync that disables more users than
        /// `directory.max_disable_share` allows (check a dry run first).
        #[arg(long)]
        force: bool,
    },
}

/// `wardkey directory …`.
pub async fn run(settings: &Settings, cmd: DirectoryCommand, json_out: bool) -> anyhow::Result<()> {
    let DirectoryCommand::Sync { source, dry_run, force } = cmd;
    let directories = Directories::new(&settings.directory)?;
    let sources: Vec<_> = match &source {
        Some(name) => vec![directories.ldap_source(name)?.clone()],
        None => directories.ldap().cloned().collect(),
    };
    if sources.is_empty() {
        bail!("no directory is configured: add a [[directory.ldap]] source to wardkey.toml (see config/wardkey.toml)");
    }
    let store = open_store(settings).await?;
    let mut reports = Vec::new();
    for directory in sources {
        let report = wardkey_directory::sync::run(
            &directory,
            store.as_ref(),
            directories.settings(),
            SystemClock.now(),
            dry_run,
            force,
        )
        .await?;
        reports.push(report);
    }
    let orphans = wardkey_directory::sync::orphaned_sources(&store.list_users().await?, directories.settings());
    print(json_out, serde_json::to_value(&reports)?, || {
        let mut text = reports.iter().map(describe).collect::<Vec<_>>().join("\n");
        for (source, count) in &orphans {
            text.push_str(&format!(
                "\nwarning: {count} enabled users come from directory source {source:?}, which wardkey.toml no longer \
                 has: nobody syncs or disables them; configure it again, or disable them"
            ));
        }
        text
    });
    Ok(())
}

fn describe(r: &SyncReport) -> String {
    let mut text = format!(
        "{}{}: read {} users in {} LDAP round trips ({:.1} s): {} created, {} updated, {} linked, {} disabled, \
         {} unchanged, {} skipped",
        r.source,
        if r.dry_run { " (dry run: nothing written)" } else { "" },
        r.read,
        r.round_trips,
        r.seconds,
        r.created,
        r.updated,
        r.linked,
        r.disabled,
        r.unchanged,
        r.skipped,
    );
    for user in &r.disabled_users {
        text.push_str(&format!("\n  disabled: {user}"));
    }
    for why in &r.skipped_entries {
        text.push_str(&format!("\n  skipped: {why}"));
    }
    text
}
