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

pub(crate) async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    wardkey_store::open(&settings.store.url)
        .await
        .with_context(|| format!("opening the store at {}", wardkey_core::secret::redact_url(&settings.store.url)))
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
    let record = AuditEvent {
        at: SystemClock.now(),
        event: event.into(),
        actor: "admin-cli".into(),
        subject: subject.into(),
        detail,
    };
    store.append_audit(&record).await.context("writing the audit log")
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
