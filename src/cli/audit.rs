//! `wardkey audit …`: reading the audit log, checking its hash chain, and
//! exporting it for a SIEM.

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::json;
use wardkey_core::clock::{Clock, SystemClock};
use wardkey_idp::Settings;
use wardkey_idp::audit_sink::{Format, rfc3339, to_json_line, to_syslog};
use wardkey_store::AuditFilter;
use wardkey_store::audit_chain::{self, PAGE};

use super::shared::{open_store, print};

/// `wardkey audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show records, newest first.
    List {
        /// Only records at or after this time: an RFC 3339 date or time
        /// (2026-12-01, 2026-12-01T08:00:00Z) or an age (8h, 7days).
        #[arg(long)]
        since: Option<String>,
        /// Only events starting with this, such as `signin` or `user.`.
        #[arg(long)]
        event: Option<String>,
        /// Only records by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only records about this subject (a username, a workstation).
        #[arg(long)]
        subject: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Check the hash chain: report the first edited, inserted, missing or
    /// reordered record. Exits 1 (and says which) if the log was tampered
    /// with.
    Verify,
    /// Write records, oldest first, to stdout for a SIEM.
    Export {
        /// Only records at or after this time (as for `list`).
        #[arg(long)]
        since: Option<String>,
        /// JSON lines, or RFC 5424 syslog messages.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
}

/// `--format` of export.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// RFC 5424 syslog messages, one per line.
    Syslog,
}

/// `wardkey audit …`.
pub async fn run(settings: &Settings, cmd: AuditCommand, json_out: bool) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    match cmd {
        AuditCommand::List { since, event, actor, subject, limit } => {
            let filter = AuditFilter {
                since: since.as_deref().map(parse_since).transpose()?,
                event,
                actor,
                subject,
                limit,
                ..AuditFilter::default()
            };
            let records = store.search_audit(&filter).await?;
            print(json_out, serde_json::to_value(&records)?, || {
                if records.is_empty() {
                    return "no audit records match".into();
                }
                records
                    .iter()
                    .map(|r| {
                        let e = &r.event;
                        format!(
                            "{:>8}  {}  {:<26} {:<20} {:<20} {}",
                            r.seq,
                            rfc3339(e.at),
                            e.event,
                            e.actor,
                            e.subject,
                            e.detail
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        AuditCommand::Verify => {
            let (head, verdict) = audit_chain::verify(store.as_ref()).await?;
            match verdict {
                Ok(checked) => print(
                    json_out,
                    json!({"ok": true, "records": checked, "head_seq": head.seq, "head_hash": head.hash, "anchor_seq": head.anchor_seq}),
                    || {
                        format!(
                            "the audit log is intact: {checked} records, from {} to {}; head hash {}\n\
                             (keep the head hash somewhere else: a later verify that passes with a different \
                             history would mean the whole chain was rewritten)",
                            head.anchor_seq + 1,
                            head.seq,
                            if head.hash.is_empty() { "-" } else { &head.hash }
                        )
                    },
                ),
                Err(problem) => bail!(
                    "THE AUDIT LOG HAS BEEN TAMPERED WITH: {problem}. Keep this store as it is for the \
                     investigation, and compare it with the copy your SIEM holds (`[audit] sink`)"
                ),
            }
        }
        AuditCommand::Export { since, format } => {
            let since = since.as_deref().map(parse_since).transpose()?;
            let format = match format {
                ExportFormat::Jsonl => Format::Jsonl,
                ExportFormat::Syslog => Format::Syslog,
            };
            let host = wardkey_idp::audit_sink::hostname();
            let head = store.audit_chain_head().await?;
            let mut after = head.anchor_seq;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            loop {
                let page = store.audit_chain_page(after, PAGE).await?;
                let Some(last) = page.last().and_then(|r| r.seq) else { break };
                for record in page.iter().filter(|r| since.is_none_or(|s| r.event.at >= s)) {
                    let line = match format {
                        Format::Jsonl => to_json_line(record),
                        Format::Syslog => to_syslog(record, &host),
                    };
                    std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes()).context("writing to stdout")?;
                }
                after = last;
            }
            std::io::Write::flush(&mut out).context("writing to stdout")?;
        }
    }
    Ok(())
}

/// An RFC 3339 date or time, or an age such as `8h`, as Unix seconds.
fn parse_since(text: &str) -> anyhow::Result<i64> {
    if let Ok(age) = humantime::parse_duration(text) {
        return Ok(SystemClock.now() - i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
    }
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_string() };
    match humantime::parse_rfc3339_weak(&full) {
        Ok(t) => Ok(t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)),
        Err(_) => bail!(
            "--since {text:?} is neither a date or time (2026-12-01, 2026-12-01T08:00:00Z, in UTC) nor an age (8h, 7days)"
        ),
    }
}
