//! The periodic sync of the trust's LDAP directories (`[directory]`): each
//! source every `directory.sync_interval`, on one node at a time.
//!
//! Users a sync disables have their sessions ended by the store in the
//! same transaction (a revocation request), which the back-channel outbox
//! takes within a second: their ward PCs lock and their RPs get logout
//! tokens within one sync interval.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wardkey_cache::Cache;
use wardkey_core::clock::SharedClock;
use wardkey_directory::Directories;
use wardkey_store::Store;

use crate::directory::Directory;

/// What the sync task uses.
#[derive(Clone)]
pub struct DirectorySync {
    /// The sources.
    pub directories: Directories,
    /// Where users are written.
    pub store: Arc<dyn Store>,
    /// Holds the claim that one node syncs a source per interval.
    pub cache: Arc<dyn Cache>,
    /// This node's directory cache, dropped after a sync that changed users.
    pub directory: Arc<Directory>,
    /// Wall clock.
    pub clock: SharedClock,
    /// Where failed syncs are recorded.
    pub audit: crate::audit::AuditLog,
}

impl DirectorySync {
    /// Sync every source now (those another node is syncing are left to
    /// it). Errors are logged: the next interval tries again.
    pub async fn sync_all(&self) {
        let interval = self.directories.settings().sync_interval;
        for source in self.directories.ldap() {
            // Several nodes share the work: the first to claim a source
            // this interval syncs it.
            let claim = format!("directory-sync:{}", source.name());
            let hold = interval.saturating_sub(Duration::from_secs(1)).max(Duration::from_secs(1));
            match self.cache.put_if_absent(&claim, b"1", hold).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => tracing::warn!(error = %e, "cannot claim the directory sync; syncing anyway"),
            }
            let now = self.clock.now();
            match wardkey_directory::sync::run(
                source,
                self.store.as_ref(),
                self.directories.settings(),
                now,
                false,
                false,
            )
            .await
            {
                Ok(report) => {
                    tracing::info!(
                        source = %report.source, read = report.read, created = report.created,
                        updated = report.updated, linked = report.linked, disabled = report.disabled,
                        skipped = report.skipped, seconds = report.seconds, "directory sync"
                    );
                    for why in &report.skipped_entries {
                        tracing::warn!(source = %report.source, entry = %why, "directory entry skipped");
                    }
                    if report.created + report.updated + report.linked + report.disabled > 0 {
                        self.directory.changed().await;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "directory sync failed; users stay as they were");
                    // Leavers stay enabled until a sync succeeds: the
                    // security officer's record shows it, not only the log.
                    let detail = serde_json::json!({ "error": e.to_string() });
                    let actor = format!("directory:{}", source.name());
                    self.audit.record("directory.sync_failed", &actor, source.name(), detail).await;
                }
            }
        }
    }
}

/// Run [`DirectorySync::sync_all`] at start and every `sync_interval`
/// until `cancel`; returns at once when no source is configured.
pub async fn run(sync: DirectorySync, cancel: CancellationToken) {
    match sync.store.list_users().await {
        Ok(users) => {
            for (source, count) in wardkey_directory::sync::orphaned_sources(&users, sync.directories.settings()) {
                tracing::warn!(
                    source = %source,
                    users = count,
                    "enabled users come from directory source {source:?}, which wardkey.toml no longer has: nobody \
                     syncs or disables them and their badges keep working; configure the source again, or disable them"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot check for users of directory sources no longer configured"),
    }
    if sync.directories.ldap().next().is_none() {
        return;
    }
    let mut tick = tokio::time::interval(sync.directories.settings().sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => sync.sync_all().await,
        }
    }
}
