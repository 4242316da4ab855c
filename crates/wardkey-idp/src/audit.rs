//! Writing the audit log. A record that cannot be written is logged as an
//! error and counted (`wardkey_audit_write_failures_total`), and never
//! fails what it records: a clinician is not refused a sign-in because the
//! audit table is briefly unwritable. (Ending a session, which must leave
//! a trace, writes its record itself and fails with it.)
//!
//! Sign-ins at a workstation are recorded off the tap hot path: they are
//! queued to one writer task, which appends what has queued up in one
//! transaction (the hash chain's lock is taken once per batch, not per tap).
//! The live copy for a SIEM (`[audit] sink`) and retention are in
//! [`crate::audit_sink`].

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use wardkey_core::audit::AuditEvent;
use wardkey_core::clock::SharedClock;
use wardkey_store::Store;

use crate::metrics::Metrics;

/// Records queued and not yet written; past this, a record is dropped and
/// counted as a write failure rather than holding a sign-in up.
const QUEUE: usize = 10_000;

/// Records written in one transaction at most.
const BATCH: usize = 256;

/// How long the writer gathers records before a transaction: at a shift
/// change hundreds of taps a second share a handful of transactions (and
/// the chain's lock) instead of taking one each, at the price of a record
/// reaching the store this much later.
const GATHER: std::time::Duration = std::time::Duration::from_millis(50);

/// The audit log, as the server writes it. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn Store>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    queue: mpsc::Sender<AuditEvent>,
}

impl AuditLog {
    /// The log and its writer task (which ends when the last clone of the
    /// log is dropped, after writing what was queued).
    pub fn spawn(store: Arc<dyn Store>, clock: SharedClock, metrics: Arc<Metrics>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_queued(store.clone(), metrics.clone(), rx));
        Self { store, clock, metrics, queue }
    }

    /// Append `event` about `subject`, made by `actor`, now; log and count
    /// a failure instead of returning it.
    pub async fn record(&self, event: &str, actor: &str, subject: &str, detail: Value) {
        let record = self.event(event, actor, subject, detail);
        if let Err(e) = self.store.append_audit(&record).await {
            self.metrics.audit_write_failures.inc();
            tracing::error!(error = %e, event, "audit write failed");
        }
    }

    /// [`AuditLog::record`] without waiting: the writer task appends it
    /// within milliseconds, in order with the rest of the queue.
    pub fn queue(&self, event: &str, actor: &str, subject: &str, detail: Value) {
        let record = self.event(event, actor, subject, detail);
        if let Err(e) = self.queue.try_send(record) {
            self.metrics.audit_write_failures.inc();
            tracing::error!(event, reason = %e, "audit record dropped: the writer is not keeping up");
        }
    }

    fn event(&self, event: &str, actor: &str, subject: &str, detail: Value) -> AuditEvent {
        AuditEvent { at: self.clock.now(), event: event.into(), actor: actor.into(), subject: subject.into(), detail }
    }
}

async fn write_queued(store: Arc<dyn Store>, metrics: Arc<Metrics>, mut rx: mpsc::Receiver<AuditEvent>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if batch.len() < BATCH {
            tokio::time::sleep(GATHER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(record) => batch.push(record),
                    Err(_) => break,
                }
            }
        }
        // A store that blinks (a failover, a busy SQLite file) gets a second
        // chance before the records are counted as lost.
        let mut result = store.append_audit_batch(&batch).await;
        if result.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            result = store.append_audit_batch(&batch).await;
        }
        if let Err(e) = result {
            metrics.audit_write_failures.inc_by(batch.len() as u64);
            tracing::error!(error = %e, records = batch.len(), "audit write failed");
        }
        batch.clear();
    }
}
