//! What every command group shares: opening the configured store,
//! reading a secret from stdin, the audit record of a change, printing a
//! result for people or as JSON, and errors that name what was not found.

use std::io::BufRead;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use wardkey_core::audit::AuditEvent;
use wardkey_core::clock::{Clock, SystemClock};
use wardkey_idp::Settings;
use wardkey_store::{Store, StoreError};

/// The configured store, which must exist: an admin command never creates
/// one (`wardkey store init` does).
pub(crate) async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    wardkey_store::open_existing(&settings.store.url)
        .await
        .with_context(|| format!("opening the store at {}", wardkey_core::secret::redact_url(&settings.store.url)))
}

/// The admin service on the configured store: the console's rules and
/// audit records, with this operator's name.
pub(crate) async fn admin(settings: &Settings) -> anyhow::Result<wardkey_idp::admin::Admin> {
    let store = open_store(settings).await?;
    Ok(wardkey_idp::admin::Admin::new(store, Arc::new(SystemClock), Arc::new(settings.clone())))
}

/// Read one secret line from stdin, without its line ending.
pub(crate) fn read_secret(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).with_context(|| format!("reading the {what} from stdin"))?;
    let secret = line.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        bail!("no {what} on stdin: pipe it in, for example `printf '%s\\n' \"$SECRET\" | wardkey …`");
    }
    Ok(secret)
}

pub(crate) async fn audit(
    store: &dyn Store,
    event: &str,
    subject: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let record =
        AuditEvent { at: SystemClock.now(), event: event.into(), actor: operator(), subject: subject.into(), detail };
    store.append_audit(&record).await.context("writing the audit log")
}

/// Who ran this command, for the audit log: `cli:` and the operating
/// system user (under sudo, the user who ran sudo), so a record names a
/// person rather than "the CLI".
pub(crate) fn operator() -> String {
    let user = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("uid {}", real_uid()));
    format!("cli:{user}")
}

/// The real user id, when no name is in the environment (a cron job).
fn real_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(str::trim).map(str::to_string)))
        .and_then(|ids| ids.split_whitespace().next().and_then(|id| id.parse().ok()))
        .unwrap_or(u32::MAX)
}

pub(crate) fn print(json_out: bool, value: serde_json::Value, human: impl FnOnce() -> String) {
    if json_out {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

/// Turn "not found"/"already exists" into sentences that name the thing.
pub(crate) fn explain(e: StoreError, kind: &str, name: &str) -> anyhow::Error {
    match e {
        StoreError::NotFound(_) => anyhow!("{kind} {name:?} does not exist"),
        StoreError::Conflict(_) => anyhow!("{kind} {name:?} already exists"),
        other => anyhow::Error::new(other),
    }
}

pub(crate) async fn find_user(store: &dyn Store, username: &str) -> anyhow::Result<wardkey_core::user::User> {
    store.user_by_username(username).await?.ok_or_else(|| anyhow!("user {username:?} does not exist"))
}
