//! What a run found, three ways: a table on stdout for the person at the
//! terminal, `--json FILE` for scripts and dashboards (one documented,
//! versioned shape), and `--plot FILE.svg` for a picture of the tail and
//! of latency over the run.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::plot::{self, Series, TimeSeries};
use crate::stats::{CurvePoint, Op, Percentiles, Stats, TimeBucket, curve, percentiles};

/// Version tag of the JSON report.
pub const SCHEMA: &str = "wardkey-bench/report-1";

/// The JSON report (`--json FILE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// `wardkey-bench VERSION`.
    pub tool: String,
    /// `shift-change`, `shift` or `oidc`.
    pub mode: String,
    /// The server the load went to.
    pub target: String,
    /// When the run started, seconds since the Unix epoch.
    pub started_at: i64,
    /// How the load was made.
    pub load: LoadReport,
    /// Per operation, by name (`tap_hot`, `token_exchange`, …).
    pub operations: BTreeMap<String, OpReport>,
    /// All operations together.
    pub total: OpReport,
    /// Failures.
    pub errors: ErrorReport,
    /// Open loop: how long due requests waited for a free worker (part of
    /// their latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_delay_ms: Option<Percentiles>,
    /// Requests that were due but never sent because the run ended first;
    /// each would have waited at least the drain time.
    pub unsent: u64,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
    /// The 12-hour shift scenario's per-clinician figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<ShiftReport>,
    /// Things the reader should know about this run.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// How the load was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// `open` (fixed arrival rate), `closed` (N workers back to back) or
    /// `shift` (each clinician's own timetable).
    pub model: String,
    /// Open loop: requests due a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// Workers (closed loop), or the most requests in flight (open loop).
    pub concurrency: usize,
    /// Not measured.
    pub warmup_seconds: f64,
    /// The measured window.
    pub duration_seconds: f64,
    /// Wall time of the whole run, warmup and drain included.
    pub elapsed_seconds: f64,
    /// Per-request timeout.
    pub timeout_seconds: f64,
    /// `scheduled send time` (open loop and shift: queueing included) or
    /// `actual send time` (closed loop).
    pub latency_from: String,
}

/// One operation's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpReport {
    /// Successful requests in the measured window.
    pub count: u64,
    /// Failed requests in the measured window.
    pub errors: u64,
    /// Successful requests a second over the measured window.
    pub throughput_per_second: f64,
    /// Latency of successful requests, milliseconds.
    pub latency_ms: Percentiles,
    /// The whole distribution, for plotting.
    pub percentile_curve: Vec<CurvePoint>,
    /// Latency over the measured window: p50 and p99 of the requests that
    /// started in each step (steps without any left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub over_time: Vec<TimeBucket>,
}

/// Failures, counted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErrorReport {
    /// All failures.
    pub total: u64,
    /// By kind: `http 409 replayed`, `transport timeout`, …
    pub by_kind: BTreeMap<String, u64>,
    /// By operation, then kind.
    pub by_operation: BTreeMap<String, BTreeMap<String, u64>>,
}

/// The shift scenario: what each clinician waited for the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftReport {
    /// Length of the real shift.
    pub shift_hours: f64,
    /// Time compression (720: 12 h in a minute).
    pub compress: f64,
    /// Clinicians on the shift.
    pub clinicians: usize,
    /// Badge taps each clinician makes.
    pub taps_per_clinician: usize,
    /// Workstations on the ward.
    pub workstations: usize,
    /// Token exchanges after each login.
    pub exchanges_per_login: usize,
    /// Each clinician's figures.
    pub per_clinician: Vec<ClinicianShift>,
    /// Total machine-side wait per clinician over the shift, seconds.
    pub wait_seconds: Spread,
    /// Machine-side wait per login, milliseconds.
    pub wait_per_login_ms: Spread,
    /// What the same logins cost with passwords, as trusts report it.
    pub reference: Reference,
}

/// One clinician's shift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClinicianShift {
    /// Login name.
    pub username: String,
    /// Badge taps made.
    pub taps: u64,
    /// PINs typed.
    pub pin_entries: u64,
    /// Taps that ended with the clinician at the desktop.
    pub logins: u64,
    /// Taps that locked their workstation.
    pub locks: u64,
    /// Logins that took a workstation over from someone else.
    pub switches: u64,
    /// Token exchanges for their apps.
    pub exchanges: u64,
    /// HTTP requests made for them.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Sum of the latencies of all their requests, seconds.
    pub wait_seconds: f64,
    /// `wait_seconds` per login, milliseconds.
    pub wait_per_login_ms: f64,
    /// Their slowest single request, milliseconds.
    pub slowest_request_ms: f64,
}

/// Smallest, median, mean and largest of a set of figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Mean.
    pub mean: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self { min: 0.0, median: 0.0, mean: 0.0, max: 0.0 };
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Self { min: v[0], median, mean: v.iter().sum::<f64>() / n as f64, max: v[n - 1] }
    }
}

/// The password-login cost trusts report, to set the measured wait against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Where the figures come from.
    pub source: String,
    /// Seconds per login, low end.
    pub seconds_per_login_low: f64,
    /// Seconds per login, high end.
    pub seconds_per_login_high: f64,
    /// Mean logins per clinician in this shift.
    pub logins_per_clinician: f64,
    /// The same logins with passwords, per clinician per shift, seconds:
    /// low end.
    pub per_shift_seconds_low: f64,
    /// High end.
    pub per_shift_seconds_high: f64,
}

impl Reference {
    /// 10 to 105 s per login, for `logins_per_clinician` logins.
    pub fn password_logins(logins_per_clinician: f64) -> Self {
        Self {
            source: "NHS trusts' reports: 10 to 105 s per login to a shared PC with passwords".into(),
            seconds_per_login_low: 10.0,
            seconds_per_login_high: 105.0,
            logins_per_clinician,
            per_shift_seconds_low: 10.0 * logins_per_clinician,
            per_shift_seconds_high: 105.0 * logins_per_clinician,
        }
    }
}

/// What describes a run besides its measurements.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// `shift-change`, `shift` or `oidc`.
    pub mode: String,
    /// The server.
    pub target: String,
    /// When it started, Unix seconds.
    pub started_at: i64,
    /// How the load was made.
    pub load: LoadReport,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// Notes for the reader.
    pub notes: Vec<String>,
}

fn op_report(h: &hdrhistogram::Histogram<u64>, errors: u64, window: Duration, over_time: Vec<TimeBucket>) -> OpReport {
    OpReport {
        count: h.len(),
        errors,
        throughput_per_second: h.len() as f64 / window.as_secs_f64().max(1e-9),
        latency_ms: percentiles(h),
        percentile_curve: curve(h),
        over_time,
    }
}

/// Put the measurements and the description together. `window` is the
/// measured time that throughput is counted over.
pub fn build(info: RunInfo, stats: &Stats, window: Duration, shift: Option<ShiftReport>) -> Report {
    let operations: BTreeMap<String, OpReport> = Op::ALL
        .iter()
        .filter(|op| stats.latency.contains_key(op) || stats.errors.contains_key(op))
        .map(|op| {
            let h = stats.latency.get(op).cloned().unwrap_or_else(crate::stats::new_histogram);
            let over_time = stats.timeline.buckets(Some(*op));
            (op.as_str().to_string(), op_report(&h, stats.error_count(*op), window, over_time))
        })
        .collect();
    let mut errors = ErrorReport { total: stats.total_errors(), ..ErrorReport::default() };
    for (op, kinds) in &stats.errors {
        for (kind, n) in kinds {
            *errors.by_kind.entry(kind.clone()).or_default() += n;
        }
        errors.by_operation.insert(op.as_str().to_string(), kinds.clone());
    }
    let open = info.load.model == "open";
    Report {
        schema: SCHEMA.into(),
        tool: concat!("wardkey-bench ", env!("CARGO_PKG_VERSION")).into(),
        mode: info.mode,
        target: info.target,
        started_at: info.started_at,
        load: info.load,
        operations,
        total: op_report(&stats.combined(), stats.total_errors(), window, stats.timeline.buckets(None)),
        errors,
        queue_delay_ms: open.then(|| percentiles(&stats.queue_delay)),
        unsent: stats.unsent,
        interrupted: info.interrupted,
        shift,
        notes: info.notes,
    }
}

fn row(out: &mut String, name: &str, r: &OpReport) {
    let p = &r.latency_ms;
    let _ = writeln!(
        out,
        "{name:<19}{:>9}{:>7}{:>9.1}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
        r.count, r.errors, r.throughput_per_second, p.p50, p.p90, p.p99, p.p99_9, p.max
    );
}

/// The report as a person reads it.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let load = &report.load;
    let how = match (load.model.as_str(), load.rate_per_second) {
        ("open", Some(rate)) => format!("open loop, {rate}/s, at most {} in flight", load.concurrency),
        ("closed", _) => format!("closed loop, {} workers", load.concurrency),
        (model, _) => format!("{model}, {} workers", load.concurrency),
    };
    let _ = writeln!(out, "wardkey-bench {} against {} — {how}", report.mode, report.target);
    let _ = writeln!(
        out,
        "measured {:.1}s after {:.1}s warmup (run took {:.1}s); latency from the {}",
        load.duration_seconds, load.warmup_seconds, load.elapsed_seconds, load.latency_from
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<19}{:>9}{:>7}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        "operation (ms)", "ok", "err", "req/s", "p50", "p90", "p99", "p99.9", "max"
    );
    for (name, r) in &report.operations {
        row(&mut out, name, r);
    }
    row(&mut out, "all", &report.total);
    if let Some(q) = &report.queue_delay_ms {
        let _ = writeln!(
            out,
            "\nwait for a free worker (included above): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            q.p50, q.p99, q.max
        );
    }
    if report.errors.total > 0 {
        let _ = writeln!(out, "\nerrors: {}", report.errors.total);
        for (op, kinds) in &report.errors.by_operation {
            for (kind, n) in kinds {
                let _ = writeln!(out, "  {op:<19}{kind:<40}{n:>8}");
            }
        }
    }
    if report.unsent > 0 {
        let _ = writeln!(
            out,
            "\n{} requests were due but never sent: the server (or this machine) fell behind the rate; \
             each would have waited longer than the drain time",
            report.unsent
        );
    }
    if report.interrupted {
        let _ = writeln!(out, "\ninterrupted: the figures cover only the time before Ctrl-C");
    }
    if let Some(shift) = &report.shift {
        render_shift(&mut out, shift);
    }
    for note in &report.notes {
        let _ = writeln!(out, "\nnote: {note}");
    }
    out
}

fn render_shift(out: &mut String, s: &ShiftReport) {
    let _ = writeln!(
        out,
        "\nshift: {} clinicians × {} taps over {} h on {} workstations, compressed {}× ({} token exchanges per login)",
        s.clinicians, s.taps_per_clinician, s.shift_hours, s.workstations, s.compress, s.exchanges_per_login
    );
    let _ = writeln!(
        out,
        "{:<24}{:>6}{:>6}{:>8}{:>7}{:>10}{:>10}{:>7}{:>12}{:>12}",
        "clinician", "taps", "pins", "logins", "locks", "switches", "requests", "err", "wait (s)", "per login"
    );
    for c in &s.per_clinician {
        let _ = writeln!(
            out,
            "{:<24}{:>6}{:>6}{:>8}{:>7}{:>10}{:>10}{:>7}{:>12.3}{:>9.1} ms",
            c.username,
            c.taps,
            c.pin_entries,
            c.logins,
            c.locks,
            c.switches,
            c.requests,
            c.errors,
            c.wait_seconds,
            c.wait_per_login_ms
        );
    }
    let w = &s.wait_seconds;
    let r = &s.reference;
    let _ = writeln!(
        out,
        "\nmachine-side wait per clinician per shift: median {:.2} s (min {:.2}, max {:.2}); per login median {:.1} ms",
        w.median, w.min, w.max, s.wait_per_login_ms.median
    );
    let _ = writeln!(
        out,
        "against {:.0}–{:.0} s per login with passwords: {:.0} logins would cost {:.0}–{:.0} min per clinician per shift",
        r.seconds_per_login_low,
        r.seconds_per_login_high,
        r.logins_per_clinician,
        r.per_shift_seconds_low / 60.0,
        r.per_shift_seconds_high / 60.0
    );
}

/// Where to write the machine-readable outputs.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// `--json FILE`.
    pub json: Option<PathBuf>,
    /// `--plot FILE.svg`.
    pub plot: Option<PathBuf>,
}

/// The plot of `report`'s operations: by percentile, and over the run
/// when the report has timelines.
pub fn svg(report: &Report) -> String {
    let labels: Vec<String> = report.operations.iter().map(|(name, r)| format!("{name} (n={})", r.count)).collect();
    let series: Vec<Series<'_>> = report
        .operations
        .values()
        .zip(&labels)
        .map(|(r, label)| Series { name: label, points: &r.percentile_curve })
        .collect();
    let over_time: Vec<TimeSeries<'_>> = report
        .operations
        .values()
        .zip(&labels)
        .map(|(r, label)| TimeSeries { name: label, buckets: &r.over_time })
        .collect();
    let timed = over_time.iter().any(|s| !s.buckets.is_empty());
    let title = format!(
        "Wardkey {} latency {}",
        report.mode,
        if timed { "by percentile and over the run" } else { "by percentile" }
    );
    let load = &report.load;
    let subtitle = match load.rate_per_second {
        None if load.model == "shift" => format!(
            "{} — shift of {} clinicians played in {:.0}s; taps timed from when they were due",
            report.target, load.concurrency, load.duration_seconds
        ),
        Some(rate) => format!(
            "{} — {} loop at {rate}/s for {:.0}s; latency from the {}",
            report.target, load.model, load.duration_seconds, load.latency_from
        ),
        None => format!(
            "{} — {} with {} workers for {:.0}s; latency from the {}",
            report.target, load.model, load.concurrency, load.duration_seconds, load.latency_from
        ),
    };
    plot::render_report(&title, &subtitle, &series, &over_time)
}

/// Print the table and write `--json` and `--plot` when asked.
pub fn emit(report: &Report, outputs: &Outputs) -> anyhow::Result<()> {
    print!("{}", render_text(report));
    if let Some(path) = &outputs.json {
        write(path, &serde_json::to_vec_pretty(report)?)?;
        println!("\nJSON report: {}", path.display());
    }
    if let Some(path) = &outputs.plot {
        write(path, svg(report).as_bytes())?;
        println!("latency plot: {}", path.display());
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::stats::ErrorKind;

    fn sample() -> Report {
        let mut stats = Stats::new();
        for i in 1..=200 {
            stats.record(Op::TapHot, Duration::from_micros(500 + i * 10));
            stats.record(Op::TokenExchange, Duration::from_micros(900 + i * 10));
        }
        stats.record_error(Op::TokenExchange, &ErrorKind::Http { status: 400, code: Some("invalid_grant".into()) });
        stats.record_queue_delay(Duration::from_micros(30));
        stats.unsent = 2;
        let info = RunInfo {
            mode: "shift-change".into(),
            target: "http://127.0.0.1:8080".into(),
            started_at: 1_700_000_000,
            load: LoadReport {
                model: "open".into(),
                rate_per_second: Some(200.0),
                concurrency: 20,
                warmup_seconds: 2.0,
                duration_seconds: 20.0,
                elapsed_seconds: 22.5,
                timeout_seconds: 10.0,
                latency_from: "scheduled send time".into(),
            },
            interrupted: false,
            notes: vec!["a note".into()],
        };
        let c = ClinicianShift {
            username: "n1".into(),
            taps: 60,
            pin_entries: 1,
            logins: 30,
            locks: 30,
            switches: 2,
            exchanges: 90,
            requests: 151,
            errors: 0,
            wait_seconds: 0.4,
            wait_per_login_ms: 13.3,
            slowest_request_ms: 20.0,
        };
        let shift = ShiftReport {
            shift_hours: 12.0,
            compress: 720.0,
            clinicians: 1,
            taps_per_clinician: 60,
            workstations: 10,
            exchanges_per_login: 3,
            per_clinician: vec![c],
            wait_seconds: Spread::of(&[0.4]),
            wait_per_login_ms: Spread::of(&[13.3]),
            reference: Reference::password_logins(30.0),
        };
        build(info, &stats, Duration::from_secs(20), Some(shift))
    }

    #[test]
    fn json_schema_has_every_documented_field() {
        let report = sample();
        let json: Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["schema"], SCHEMA);
        for key in ["tool", "mode", "target", "started_at", "load", "operations", "total", "errors", "unsent", "notes"]
        {
            assert!(json.get(key).is_some(), "{key}");
        }
        for key in ["model", "rate_per_second", "concurrency", "warmup_seconds", "duration_seconds", "latency_from"] {
            assert!(json["load"].get(key).is_some(), "load.{key}");
        }
        let hot = &json["operations"]["tap_hot"];
        assert_eq!(hot["count"], 200);
        assert_eq!(hot["throughput_per_second"], 10.0);
        for key in ["min", "mean", "p50", "p90", "p99", "p99_9", "max"] {
            assert!(hot["latency_ms"][key].is_f64(), "latency_ms.{key}");
        }
        let curve = hot["percentile_curve"].as_array().unwrap();
        assert!(curve.len() > 5);
        assert!(curve[0]["percentile"].is_f64() && curve[0]["latency_ms"].is_f64());
        assert_eq!(json["operations"]["token_exchange"]["errors"], 1);
        assert_eq!(json["total"]["count"], 400);
        assert_eq!(json["errors"]["total"], 1);
        assert_eq!(json["errors"]["by_kind"]["http 400 invalid_grant"], 1);
        assert_eq!(json["errors"]["by_operation"]["token_exchange"]["http 400 invalid_grant"], 1);
        assert!(json["queue_delay_ms"]["p99"].is_f64());
        assert_eq!(json["unsent"], 2);
        assert_eq!(json["shift"]["per_clinician"][0]["wait_seconds"], 0.4);
        assert_eq!(json["shift"]["reference"]["per_shift_seconds_high"], 3150.0);
        // And it reads back as the same report.
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn p50_and_tail_in_the_report() {
        let report = sample();
        let p = report.operations["tap_hot"].latency_ms;
        assert!((p.p50 - 1.5).abs() < 0.01, "{p:?}");
        assert!((p.max - 2.5).abs() < 0.01, "{p:?}");
        let text = render_text(&report);
        assert!(text.contains("tap_hot"), "{text}");
        assert!(text.contains("http 400 invalid_grant"), "{text}");
        assert!(text.contains("2 requests were due but never sent"), "{text}");
        assert!(text.contains("machine-side wait per clinician"), "{text}");
        assert!(text.contains("5–52 min") || text.contains("5–53 min"), "{text}");
    }

    #[test]
    fn spreads() {
        let s = Spread::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.min, s.median, s.mean, s.max), (1.0, 2.5, 4.0, 10.0));
        assert_eq!(Spread::of(&[]).max, 0.0);
    }

    #[test]
    fn a_timed_run_reports_and_plots_latency_over_time() {
        let origin = tokio::time::Instant::now();
        let mut stats = Stats::timed(origin, Duration::from_millis(500));
        for i in 0..40u64 {
            let at = origin + Duration::from_millis(i * 100);
            stats.record_at(Op::TapHot, Duration::from_micros(900 + i * 10), at);
            stats.record_at(Op::PinEntry, Duration::from_millis(90), at);
        }
        let report = sample();
        let built = build(
            RunInfo {
                mode: report.mode.clone(),
                target: report.target.clone(),
                started_at: report.started_at,
                load: report.load.clone(),
                interrupted: false,
                notes: vec![],
            },
            &stats,
            Duration::from_secs(4),
            None,
        );
        let hot = &built.operations["tap_hot"].over_time;
        assert_eq!(hot.len(), 8, "4 s in 0.5 s steps");
        assert_eq!(hot.iter().map(|b| b.count).sum::<u64>(), 40);
        assert_eq!(built.total.over_time.iter().map(|b| b.count).sum::<u64>(), 80);
        let json: Value = serde_json::to_value(&built).unwrap();
        assert_eq!(json["operations"]["pin_entry"]["over_time"][0]["from_seconds"], 0.0);
        assert!(json["operations"]["pin_entry"]["over_time"][0]["p99_ms"].is_f64());
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, built);
        // A report without timelines leaves the field out.
        let plain = serde_json::to_value(sample()).unwrap();
        assert!(plain["operations"]["tap_hot"].get("over_time").is_none());

        let svg = svg(&built);
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("path")).count(), 2);
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("polyline")).count(), 4);
        assert!(svg.contains("by percentile and over the run"));
    }

    #[test]
    fn svg_of_a_report_parses() {
        let svg = svg(&sample());
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("path")).count(), 2);
    }
}
