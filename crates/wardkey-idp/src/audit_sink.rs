//! The audit log leaving the store: as JSON lines or RFC 5424 syslog
//! messages for a SIEM (`wardkey audit export` and the live `[audit] sink`
//! share these formats), and retention.
//!
//! The live sink follows the chain, not the writers: it reads records in
//! `seq` order once a second, so what the CLI, a directory sync or another
//! node wrote reaches the SIEM too. Each line carries its `seq` and hash, so
//! the SIEM holds a copy of the chain that a rewrite of the database cannot
//! change (see `wardkey_store::audit_chain`). With several nodes, set the
//! sink on one (or let the SIEM drop repeats by `seq`). A file sink
//! continues after the last `seq` it holds; a syslog sink starts at the
//! newest record when the server starts.

use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use wardkey_core::clock::SharedClock;
use wardkey_store::Store;
use wardkey_store::audit_chain::{ChainedRecord, PAGE};

/// How often the live sink looks for new records.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The syslog facility (authpriv, 10) and severity (informational, 6) of
/// every message: security records, kept from general logs.
const PRI: u8 = 10 * 8 + 6;

/// The structured-data id: RFC 5612's documentation enterprise number.
const SD_ID: &str = "wardkey@32473";

/// Where the live copy goes (`[audit] sink`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// Append JSON lines to a file.
    File(PathBuf),
    /// RFC 5424 to the local syslog socket.
    LocalSyslog,
    /// RFC 5424 over UDP (RFC 5426).
    UdpSyslog(String),
}

impl SinkSpec {
    /// Parse `file:PATH`, `syslog` or `syslog:HOST:PORT`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        match spec.split_once(':') {
            None if spec == "syslog" => Ok(Self::LocalSyslog),
            Some(("file", path)) if path.starts_with('/') => Ok(Self::File(PathBuf::from(path))),
            Some(("file", _)) => Err("a file sink needs an absolute path: file:/var/log/wardkey/audit.jsonl".into()),
            Some(("syslog", target))
                if target.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
            {
                Ok(Self::UdpSyslog(target.to_string()))
            }
            _ => {
                Err(format!("{spec:?} is not a sink: use \"file:/ABSOLUTE/PATH\", \"syslog\" or \"syslog:HOST:PORT\""))
            }
        }
    }
}

/// Output formats of export and the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// RFC 5424 syslog messages, one per line.
    Syslog,
}

/// `record` as one JSON line (no newline): its place in the chain, the
/// record, and its hashes.
pub fn to_json_line(record: &ChainedRecord) -> String {
    json!({
        "seq": record.seq,
        "at": rfc3339(record.event.at),
        "event": record.event.event,
        "actor": record.event.actor,
        "subject": record.event.subject,
        "detail": record.event.detail,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    })
    .to_string()
}

/// `record` as an RFC 5424 message (no newline): MSGID is the event name,
/// the structured data holds seq, actor, subject and hash, the message is
/// the detail as JSON.
pub fn to_syslog(record: &ChainedRecord, hostname: &str) -> String {
    let msgid: String = record.event.event.chars().filter(|c| c.is_ascii_graphic()).take(32).collect::<String>();
    let msgid = if msgid.is_empty() { "-".to_string() } else { msgid };
    let host: String = hostname.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    let host = if host.is_empty() { "-".to_string() } else { host };
    format!(
        "<{PRI}>1 {} {host} wardkey - {msgid} [{SD_ID} seq=\"{}\" actor=\"{}\" subject=\"{}\" hash=\"{}\"] {}",
        rfc3339(record.event.at),
        record.seq.unwrap_or_default(),
        sd_escape(&record.event.actor),
        sd_escape(&record.event.subject),
        sd_escape(record.hash.as_deref().unwrap_or_default()),
        record.event.detail,
    )
}

/// RFC 5424 §6.3.3: `"`, `\` and `]` are escaped in a PARAM-VALUE; control
/// characters (a line break would split the message on line-based
/// transports) become U+FFFD.
fn sd_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(if c.is_control() { '\u{fffd}' } else { c });
    }
    out
}

/// Unix seconds as RFC 3339 UTC.
pub fn rfc3339(at: i64) -> String {
    // humantime formats years up to 9999 only; a record claiming later
    // (a hostile row) is shown at the limit rather than stopping the sink.
    const LAST_SECOND_OF_9999: u64 = 253_402_300_799;
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0).min(LAST_SECOND_OF_9999));
    humantime::format_rfc3339_seconds(time).to_string()
}

/// This machine's name, for syslog's HOSTNAME.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// Writes records to one sink.
struct Sink {
    spec: SinkSpec,
    hostname: String,
}

impl Sink {
    fn write(&self, records: &[ChainedRecord]) -> std::io::Result<()> {
        match &self.spec {
            SinkSpec::File(path) => {
                let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                let mut out = String::new();
                for r in records {
                    out.push_str(&to_json_line(r));
                    out.push('\n');
                }
                file.write_all(out.as_bytes())
            }
            SinkSpec::LocalSyslog => {
                let socket = UnixDatagram::unbound()?;
                for r in records {
                    socket.send_to(to_syslog(r, &self.hostname).as_bytes(), "/dev/log")?;
                }
                Ok(())
            }
            SinkSpec::UdpSyslog(target) => {
                let socket = UdpSocket::bind(("0.0.0.0", 0))?;
                for r in records {
                    socket.send_to(to_syslog(r, &self.hostname).as_bytes(), target.as_str())?;
                }
                Ok(())
            }
        }
    }

    /// Where to continue: after the last `seq` a file holds, else after
    /// the chain's head now.
    fn resume_after(&self, head: i64) -> i64 {
        let SinkSpec::File(path) = &self.spec else { return head };
        let Ok(text) = std::fs::read_to_string(path) else { return head };
        text.lines()
            .next_back()
            .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .and_then(|v| v["seq"].as_i64())
            .unwrap_or(head)
    }
}

/// Follow the chain into `spec` until cancelled.
pub async fn follow(store: Arc<dyn Store>, spec: SinkSpec, cancel: CancellationToken) {
    let sink = Sink { spec, hostname: hostname() };
    let mut after = match store.audit_chain_head().await {
        Ok(head) => sink.resume_after(head.seq),
        Err(e) => {
            tracing::error!(error = %e, "the audit sink cannot read the chain's head; it starts with the next record");
            0
        }
    };
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        loop {
            let page = match store.audit_chain_page(after, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "the audit sink cannot read new records; trying again");
                    break;
                }
            };
            let Some(last) = page.last().and_then(|r| r.seq) else { break };
            let written = sink.write(&page);
            if let Err(e) = written {
                tracing::error!(error = %e, sink = ?sink.spec, "the audit sink cannot write; trying again");
                break;
            }
            after = last;
            if page.len() < PAGE as usize {
                break;
            }
        }
    }
}

/// Delete records older than `retention` once a day (any node may: the
/// store prunes under the chain's lock), recording each prune.
pub async fn prune(store: Arc<dyn Store>, clock: SharedClock, retention: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let before = clock.now() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        match store.prune_audit(before).await {
            Ok(0) => {}
            Ok(gone) => {
                tracing::info!(records = gone, "audit records past retention deleted");
                let record = wardkey_core::audit::AuditEvent {
                    at: clock.now(),
                    event: "audit.pruned".into(),
                    actor: "retention".into(),
                    subject: "audit_log".into(),
                    detail: json!({"records": gone, "before": rfc3339(before)}),
                };
                if let Err(e) = store.append_audit(&record).await {
                    tracing::error!(error = %e, "recording the audit prune failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "pruning the audit log failed; trying again tomorrow"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wardkey_core::audit::AuditEvent;

    fn record() -> ChainedRecord {
        ChainedRecord {
            seq: Some(7),
            row_id: 7,
            event: AuditEvent {
                at: 1_764_806_400,
                event: "user.unlocked".into(),
                actor: "desk \"sam\"]".into(),
                subject: "dr.smith".into(),
                detail: json!({"ward": "7"}),
            },
            detail_text: r#"{"ward":"7"}"#.into(),
            prev_hash: Some("aa".into()),
            hash: Some("bb".into()),
        }
    }

    #[test]
    fn syslog_lines_follow_rfc_5424() {
        let line = to_syslog(&record(), "ward-pc");
        assert_eq!(
            line,
            r#"<86>1 2025-12-04T00:00:00Z ward-pc wardkey - user.unlocked [wardkey@32473 seq="7" actor="desk \"sam\"\]" subject="dr.smith" hash="bb"] {"ward":"7"}"#
        );
        let json: serde_json::Value = serde_json::from_str(&to_json_line(&record())).unwrap();
        assert_eq!((json["seq"].as_i64(), json["hash"].as_str()), (Some(7), Some("bb")));
    }

    #[test]
    fn sink_specs_are_parsed_or_explained() {
        assert_eq!(SinkSpec::parse("syslog"), Ok(SinkSpec::LocalSyslog));
        assert_eq!(SinkSpec::parse("syslog:siem.trust:514"), Ok(SinkSpec::UdpSyslog("siem.trust:514".into())));
        assert_eq!(SinkSpec::parse("file:/var/log/a.jsonl"), Ok(SinkSpec::File("/var/log/a.jsonl".into())));
        for bad in ["file:relative.jsonl", "syslog:nohost", "kafka:x", ""] {
            assert!(SinkSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
