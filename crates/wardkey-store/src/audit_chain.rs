//! The audit log's hash chain: what makes an edited, inserted, deleted or
//! reordered record visible (`wardkey audit verify`).
//!
//! Record `seq` (1, 2, 3, … without gaps) stores `prev_hash`, the hash of
//! record `seq - 1`, and `hash = SHA-256(prev_hash, seq, at, event, actor,
//! subject, detail)` over the text exactly as stored. Editing a record
//! breaks its own hash; deleting, inserting or moving one breaks the link
//! (`prev_hash`) or the numbering of the next. The store's `audit_chain`
//! row keeps the newest record's `seq` and hash, so cutting records off the
//! end shows too, and the anchor retention leaves where it deleted the
//! oldest records.
//!
//! What it cannot show: someone with write access to the database can
//! recompute every later hash, or simply cut records off the end (or, like
//! retention, off the start) and move the head (or the anchor) to match,
//! without computing anything. The live copy a SIEM keeps (`[audit] sink`,
//! every line with its `seq` and hash) and the head `verify` prints, kept
//! elsewhere, are what catch those.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wardkey_core::audit::AuditEvent;

/// One record as stored, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedRecord {
    /// Its place in the chain; `None` for a row that never joined it (added
    /// to the table by something other than Wardkey).
    pub seq: Option<i64>,
    /// The table's own row id, to name a row that has no `seq`.
    pub row_id: i64,
    /// The record.
    pub event: AuditEvent,
    /// `detail` exactly as stored (the hash is over this text).
    pub detail_text: String,
    /// The previous record's hash, as stored.
    pub prev_hash: Option<String>,
    /// Its own hash, as stored.
    pub hash: Option<String>,
}

/// The chain's head and anchor (the `audit_chain` row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// The newest record's `seq` (0: none yet).
    pub seq: i64,
    /// The newest record's hash.
    pub hash: String,
    /// The last record retention deleted (0: none).
    pub anchor_seq: i64,
    /// Its hash: the first kept record's `prev_hash`.
    pub anchor_hash: String,
    /// The first row that never joined the chain, if any.
    pub unchained: Option<ChainedRecord>,
}

/// The hash of record `seq` with content `event` (whose detail is stored as
/// `detail_text`) after a record whose hash is `prev_hash`; lowercase hex.
pub fn record_hash(prev_hash: &str, seq: i64, event: &AuditEvent, detail_text: &str) -> String {
    // A JSON array: every field delimited and escaped, so no two records
    // hash the same input.
    let input = serde_json::json!([prev_hash, seq, event.at, event.event, event.actor, event.subject, detail_text]);
    Sha256::digest(input.to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The first thing wrong with the chain, in chain order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainProblem {
    /// The record's content no longer matches its hash.
    #[error("record {seq} was edited: its content no longer matches its hash (first altered record)")]
    Altered {
        /// The record.
        seq: i64,
    },
    /// Records are missing before `seq`.
    #[error("records {from} to {to} are missing: deleted, or renumbered (the chain goes from {before} to {seq})")]
    Missing {
        /// The first missing `seq`.
        from: i64,
        /// The last missing `seq`.
        to: i64,
        /// The record before the gap.
        before: i64,
        /// The record after it.
        seq: i64,
    },
    /// The record does not follow the one before it.
    #[error(
        "record {seq} does not follow record {before}: a record between them was deleted and the rest \
         renumbered, or records were reordered or inserted"
    )]
    Unlinked {
        /// The record.
        seq: i64,
        /// The record before it.
        before: i64,
    },
    /// A row never joined the chain.
    #[error("row {row_id} ({event:?} at {at}) was inserted outside Wardkey: it has no place in the chain")]
    Inserted {
        /// The table's row id.
        row_id: i64,
        /// Its event name.
        event: String,
        /// Its time.
        at: i64,
    },
    /// Records claim places past the chain's head.
    #[error("records after record {head}, the chain's head, were added outside Wardkey (the log goes on to {last})")]
    BeyondHead {
        /// The head the store recorded.
        head: i64,
        /// The last record found.
        last: i64,
    },
    /// The newest records are gone.
    #[error("the newest records are missing: the chain's head is record {head} but the log ends at record {last}")]
    TailMissing {
        /// The head the store recorded.
        head: i64,
        /// The last record found.
        last: i64,
    },
}

/// Walks records in `seq` order, page by page, and keeps the first
/// problem.
#[derive(Debug)]
pub struct Verifier {
    prev_seq: i64,
    prev_hash: String,
    checked: u64,
    problem: Option<ChainProblem>,
}

impl Verifier {
    /// Start at the chain's anchor.
    pub fn new(head: &ChainHead) -> Self {
        let problem = head.unchained.as_ref().map(|r| ChainProblem::Inserted {
            row_id: r.row_id,
            event: r.event.event.clone(),
            at: r.event.at,
        });
        Self { prev_seq: head.anchor_seq, prev_hash: head.anchor_hash.clone(), checked: 0, problem }
    }

    /// Check the next record; false once a problem is found (stop reading).
    pub fn check(&mut self, record: &ChainedRecord) -> bool {
        if self.problem.is_some() {
            return false;
        }
        let (Some(seq), Some(hash)) = (record.seq, record.hash.as_deref()) else {
            self.problem = Some(ChainProblem::Inserted {
                row_id: record.row_id,
                event: record.event.event.clone(),
                at: record.event.at,
            });
            return false;
        };
        let stored_prev = record.prev_hash.as_deref().unwrap_or_default();
        let problem = if seq != self.prev_seq + 1 && seq > self.prev_seq + 1 && stored_prev != self.prev_hash {
            Some(ChainProblem::Missing { from: self.prev_seq + 1, to: seq - 1, before: self.prev_seq, seq })
        } else if record_hash(stored_prev, seq, &record.event, &record.detail_text) != hash {
            Some(ChainProblem::Altered { seq })
        } else if seq != self.prev_seq + 1 || stored_prev != self.prev_hash {
            Some(ChainProblem::Unlinked { seq, before: self.prev_seq })
        } else {
            None
        };
        if problem.is_some() {
            self.problem = problem;
            return false;
        }
        self.prev_seq = seq;
        self.prev_hash = hash.to_string();
        self.checked += 1;
        true
    }

    /// The verdict once every record was read: the records checked, or
    /// the first problem.
    pub fn finish(self, head: &ChainHead) -> Result<u64, ChainProblem> {
        self.finish_at(head)
    }

    /// The verdict against `head` read before the walk: records the walk
    /// found past it were appended meanwhile and are fine.
    fn finish_at(mut self, head: &ChainHead) -> Result<u64, ChainProblem> {
        if self.problem.is_none() {
            if self.prev_seq < head.seq {
                self.problem = Some(ChainProblem::TailMissing { head: head.seq, last: self.prev_seq });
            } else if self.prev_seq == head.seq && self.prev_hash != head.hash {
                // The newest record was replaced, its hash made anew.
                self.problem = Some(ChainProblem::Altered { seq: head.seq });
            }
        }
        match self.problem {
            Some(p) => Err(p),
            None => Ok(self.checked),
        }
    }
}

/// Records read per page while verifying or exporting.
pub const PAGE: u32 = 1000;

/// Walk the whole chain of `store`: the records checked, or the first
/// problem in chain order.
pub async fn verify(store: &dyn crate::AuditStore) -> crate::StoreResult<(ChainHead, Result<u64, ChainProblem>)> {
    let head = store.audit_chain_head().await?;
    let mut verifier = Verifier::new(&head);
    let mut after = head.anchor_seq;
    'pages: loop {
        let page = store.audit_chain_page(after, PAGE).await?;
        let Some(last) = page.last().and_then(|r| r.seq) else { break };
        for record in &page {
            if !verifier.check(record) {
                break 'pages;
            }
        }
        after = last;
    }
    // The head as it was read first: records appended while verifying are
    // past it and do not count as missing; but a record past the head as it
    // is now was never appended by Wardkey.
    let walked = verifier.prev_seq;
    let mut verdict = verifier.finish_at(&head);
    if verdict.is_ok() {
        let now = store.audit_chain_head().await?;
        if walked > now.seq {
            verdict = Err(ChainProblem::BeyondHead { head: now.seq, last: walked });
        }
    }
    Ok((head, verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> (Vec<ChainedRecord>, ChainHead) {
        let mut prev = String::new();
        let mut out = Vec::new();
        for seq in 1..=n {
            let event = AuditEvent {
                at: 1000 + seq,
                event: "tap.signin".into(),
                actor: "tap".into(),
                subject: format!("user{seq}"),
                detail: serde_json::json!({"ward": "7"}),
            };
            let detail_text = event.detail.to_string();
            let hash = record_hash(&prev, seq, &event, &detail_text);
            out.push(ChainedRecord {
                seq: Some(seq),
                row_id: seq,
                event,
                detail_text,
                prev_hash: Some(prev.clone()),
                hash: Some(hash.clone()),
            });
            prev = hash;
        }
        let head = ChainHead { seq: n, hash: prev, ..ChainHead::default() };
        (out, head)
    }

    fn verify(records: &[ChainedRecord], head: &ChainHead) -> Result<u64, ChainProblem> {
        let mut v = Verifier::new(head);
        for r in records {
            if !v.check(r) {
                break;
            }
        }
        v.finish(head)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (records, head) = chain(5);
        assert_eq!(verify(&records, &head), Ok(5));
        assert_eq!(verify(&[], &ChainHead::default()), Ok(0));
    }

    #[test]
    fn edits_deletions_reorders_insertions_and_cut_tails_are_found() {
        let (records, head) = chain(5);
        let mut edited = records.clone();
        edited[2].event.subject = "someone else".into();
        assert_eq!(verify(&edited, &head), Err(ChainProblem::Altered { seq: 3 }));
        let mut deleted = records.clone();
        deleted.remove(1);
        assert_eq!(verify(&deleted, &head), Err(ChainProblem::Missing { from: 2, to: 2, before: 1, seq: 3 }));
        let mut relinked = records.clone();
        relinked[2].prev_hash = Some("0".repeat(64));
        relinked[2].hash = Some(record_hash("0", 3, &relinked[2].event, &relinked[2].detail_text));
        relinked[2].prev_hash = Some("0".into());
        assert_eq!(verify(&relinked, &head), Err(ChainProblem::Unlinked { seq: 3, before: 2 }));
        let mut renumbered = records.clone();
        (renumbered[1].seq, renumbered[2].seq) = (Some(3), Some(2));
        renumbered.swap(1, 2);
        assert_eq!(verify(&renumbered, &head), Err(ChainProblem::Altered { seq: 2 }));
        let mut inserted = records.clone();
        inserted[3].seq = None;
        assert!(matches!(verify(&inserted, &head), Err(ChainProblem::Inserted { row_id: 4, .. })));
        let stray = ChainHead { unchained: Some(records[0].clone()), ..head.clone() };
        assert!(matches!(verify(&records, &stray), Err(ChainProblem::Inserted { row_id: 1, .. })));
        assert_eq!(verify(&records[..4], &head), Err(ChainProblem::TailMissing { head: 5, last: 4 }));
    }
}
