//! Writing the audit log from a request. A record that cannot be written
//! is logged as an error and never fails what it records: a clinician is
//! not refused a sign-in because the audit table is briefly unwritable.
//! (Ending a session, which must leave a trace, writes its record itself
//! and fails with it.)

use serde_json::Value;
use wardkey_core::audit::AuditEvent;
use wardkey_store::Store;

/// Append `event` about `subject`, made by `actor` at `at`, to the audit
/// log; log a failure instead of returning it.
pub async fn record(store: &dyn Store, at: i64, event: &str, actor: &str, subject: &str, detail: Value) {
    let record = AuditEvent { at, event: event.into(), actor: actor.into(), subject: subject.into(), detail };
    if let Err(e) = store.append_audit(&record).await {
        tracing::error!(error = %e, event, "audit write failed");
    }
}
