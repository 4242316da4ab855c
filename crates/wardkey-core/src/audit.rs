//! Audit records: who did what, for the trust's information governance.

use serde::{Deserialize, Serialize};

/// One audit record. Never holds a secret: no password, PIN, badge UID or
/// token, only identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When (Unix seconds).
    pub at: i64,
    /// A short dotted name such as `login.success`, `client.add`.
    pub event: String,
    /// Who acted: a username, `admin-cli`, a client id.
    pub actor: String,
    /// What it acted on.
    pub subject: String,
    /// Free-form JSON detail.
    pub detail: serde_json::Value,
}
