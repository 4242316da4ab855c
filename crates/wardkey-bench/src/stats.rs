//! Latency histograms per operation and error counts by kind.
//!
//! Latencies go into HDR histograms (microseconds, 3 significant digits, up
//! to an hour) so that p99.9 and the maximum are exact to 0.1 % however
//! many requests a run makes, and histograms of several workers merge
//! without loss. Each worker keeps its own [`Stats`]; they are merged at the
//! end, so recording never takes a lock.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram holds, in microseconds (one hour); longer
/// ones are recorded as one hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// What one request was, as the server's answer showed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `POST /tap` answered `active`: a session resumed without a PIN. The
    /// hot path.
    TapHot,
    /// `POST /tap` answered `locked`: the clinician tapped their own
    /// workstation again.
    TapLock,
    /// `POST /tap` answered `pin_required`: the first tap of a shift.
    TapPin,
    /// `POST /tap/pin`: the PIN check (argon2) and the session start.
    PinEntry,
    /// `POST /tap` answered `switched`: another clinician tapped over.
    Switch,
    /// `POST /tap/out` with logout: the end of a clinician's shift.
    TapOut,
    /// `POST /token`, RFC 8693: tokens for one EPR app after a login.
    TokenExchange,
    /// `POST /token`, `refresh_token` grant with rotation.
    Refresh,
    /// `POST /token`, `client_credentials` grant.
    ClientCredentials,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 9] = [
        Op::TapHot,
        Op::TapLock,
        Op::TapPin,
        Op::PinEntry,
        Op::Switch,
        Op::TapOut,
        Op::TokenExchange,
        Op::Refresh,
        Op::ClientCredentials,
    ];

    /// The name used in reports and the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::TapHot => "tap_hot",
            Op::TapLock => "tap_lock",
            Op::TapPin => "tap_pin",
            Op::PinEntry => "pin_entry",
            Op::Switch => "switch",
            Op::TapOut => "tap_out",
            Op::TokenExchange => "token_exchange",
            Op::Refresh => "refresh",
            Op::ClientCredentials => "client_credentials",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request failed, grouped so that a report can say "412 × HTTP 409
/// replayed" rather than list every failure.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// The server answered with an error status; `code` is the tap API's or
    /// OAuth's `error` field when the body had one.
    Http {
        /// The HTTP status.
        status: u16,
        /// `error` from the body.
        code: Option<String>,
    },
    /// No answer: `timeout`, `connect` or another transport failure.
    Transport(String),
    /// A 2xx answer this tool could not read, or one the protocol does not
    /// allow at that point.
    Unexpected(String),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Http { status, code: Some(code) } => write!(f, "http {status} {code}"),
            ErrorKind::Http { status, code: None } => write!(f, "http {status}"),
            ErrorKind::Transport(what) => write!(f, "transport {what}"),
            ErrorKind::Unexpected(what) => write!(f, "unexpected {what}"),
        }
    }
}

/// A new, empty latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds are valid")
}

/// Record `latency` into `h`, clamped to the histogram's range.
pub fn record(h: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS);
    h.saturating_record(micros);
}

/// What one worker (or the whole run, once merged) measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of successful requests, per operation.
    pub latency: BTreeMap<Op, Histogram<u64>>,
    /// Failed requests, per operation and kind.
    pub errors: BTreeMap<Op, BTreeMap<String, u64>>,
    /// Open loop only: how long due requests waited for a free worker
    /// before being sent (part of their latency, shown on its own so that
    /// a saturated tool can be told from a slow server).
    pub queue_delay: Histogram<u64>,
    /// Requests that were due but never sent because the run ended first.
    pub unsent: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Nothing measured yet.
    pub fn new() -> Self {
        Self { latency: BTreeMap::new(), errors: BTreeMap::new(), queue_delay: new_histogram(), unsent: 0 }
    }

    /// A successful `op` that took `latency`.
    pub fn record(&mut self, op: Op, latency: Duration) {
        record(self.latency.entry(op).or_insert_with(new_histogram), latency);
    }

    /// A failed `op`.
    pub fn record_error(&mut self, op: Op, kind: &ErrorKind) {
        *self.errors.entry(op).or_default().entry(kind.to_string()).or_default() += 1;
    }

    /// Time a due request waited for a worker.
    pub fn record_queue_delay(&mut self, delay: Duration) {
        record(&mut self.queue_delay, delay);
    }

    /// Add everything `other` measured.
    pub fn merge(&mut self, other: &Stats) {
        for (op, h) in &other.latency {
            // Same bounds on both sides, so adding cannot fail.
            let _ = self.latency.entry(*op).or_insert_with(new_histogram).add(h);
        }
        for (op, kinds) in &other.errors {
            let mine = self.errors.entry(*op).or_default();
            for (kind, n) in kinds {
                *mine.entry(kind.clone()).or_default() += n;
            }
        }
        let _ = self.queue_delay.add(&other.queue_delay);
        self.unsent += other.unsent;
    }

    /// Successful requests of `op`.
    pub fn count(&self, op: Op) -> u64 {
        self.latency.get(&op).map_or(0, |h| h.len())
    }

    /// Failed requests of `op`.
    pub fn error_count(&self, op: Op) -> u64 {
        self.errors.get(&op).map_or(0, |k| k.values().sum())
    }

    /// Successful requests of every operation.
    pub fn total_count(&self) -> u64 {
        self.latency.values().map(|h| h.len()).sum()
    }

    /// Failed requests of every operation.
    pub fn total_errors(&self) -> u64 {
        self.errors.values().flat_map(|k| k.values()).sum()
    }

    /// Every operation's latencies in one histogram.
    pub fn combined(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for h in self.latency.values() {
            let _ = all.add(h);
        }
        all
    }
}

/// The figures a report shows for one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Fastest.
    pub min: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Slowest.
    pub max: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The summary figures of `h`, all zero when it is empty.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles { min: 0.0, mean: 0.0, p50: 0.0, p90: 0.0, p99: 0.0, p99_9: 0.0, max: 0.0 };
    }
    Percentiles {
        min: ms(h.min()),
        mean: h.mean() / 1000.0,
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p99_9: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// One point of a latency-by-percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Percentile, 0 to 100.
    pub percentile: f64,
    /// Latency at that percentile, in milliseconds.
    pub latency_ms: f64,
}

/// The whole latency distribution of `h` as HdrHistogram's percentile
/// output gives it: points ever closer together towards 100 %, so the
/// tail is drawn in detail on a log axis.
pub fn curve(h: &Histogram<u64>) -> Vec<CurvePoint> {
    let mut points: Vec<CurvePoint> = Vec::new();
    if h.is_empty() {
        return points;
    }
    for v in h.iter_quantiles(5) {
        let point = CurvePoint {
            percentile: v.quantile_iterated_to() * 100.0,
            latency_ms: ms(h.highest_equivalent(v.value_iterated_to())),
        };
        if points.last().is_some_and(|p| p.percentile >= point.percentile) {
            continue;
        }
        points.push(point);
    }
    if let Some(last) = points.last_mut() {
        last.latency_ms = ms(h.max());
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.001 + 1e-9
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut stats = Stats::new();
        for i in 1..=1000 {
            stats.record(Op::TapHot, Duration::from_micros(i * 1000));
        }
        let p = percentiles(&stats.latency[&Op::TapHot]);
        assert!(close(p.p50, 500.0), "{p:?}");
        assert!(close(p.p90, 900.0), "{p:?}");
        assert!(close(p.p99, 990.0), "{p:?}");
        assert!(close(p.p99_9, 999.0), "{p:?}");
        assert!(close(p.max, 1000.0), "{p:?}");
        assert!(close(p.min, 1.0), "{p:?}");
        assert!(close(p.mean, 500.5), "{p:?}");
        assert_eq!(stats.count(Op::TapHot), 1000);
    }

    #[test]
    fn empty_and_extreme_values() {
        let p = percentiles(&new_histogram());
        assert_eq!(p.max, 0.0);
        let mut h = new_histogram();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(10 * 3600));
        assert!(close(ms(h.min()), 0.001));
        assert!(close(ms(h.max()), 3_600_000.0), "clamped to an hour");
    }

    #[test]
    fn merging_adds_counts_errors_and_unsent() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.record(Op::TapHot, Duration::from_millis(2));
        b.record(Op::TapHot, Duration::from_millis(4));
        b.record(Op::TokenExchange, Duration::from_millis(3));
        let replayed = ErrorKind::Http { status: 409, code: Some("replayed".into()) };
        a.record_error(Op::TapHot, &replayed);
        b.record_error(Op::TapHot, &replayed);
        b.record_error(Op::TapHot, &ErrorKind::Transport("timeout".into()));
        b.unsent = 3;
        a.merge(&b);
        assert_eq!(a.count(Op::TapHot), 2);
        assert_eq!(a.total_count(), 3);
        assert_eq!(a.errors[&Op::TapHot]["http 409 replayed"], 2);
        assert_eq!(a.errors[&Op::TapHot]["transport timeout"], 1);
        assert_eq!(a.error_count(Op::TapHot), 3);
        assert_eq!(a.total_errors(), 3);
        assert_eq!(a.unsent, 3);
        assert_eq!(a.combined().len(), 3);
    }

    #[test]
    fn curve_rises_to_the_maximum() {
        let mut h = new_histogram();
        for i in 1..=10_000u64 {
            record(&mut h, Duration::from_micros(i * 10));
        }
        let c = curve(&h);
        assert!(c.len() > 20);
        assert_eq!(c[0].percentile, 0.0);
        assert!(c.windows(2).all(|w| w[0].percentile < w[1].percentile && w[0].latency_ms <= w[1].latency_ms));
        let last = c.last().unwrap();
        assert_eq!(last.percentile, 100.0);
        assert!(close(last.latency_ms, 100.0));
        // The tail is drawn in detail: points beyond 99.9 %.
        assert!(c.iter().filter(|p| p.percentile > 99.9).count() >= 3);
        assert!(curve(&new_histogram()).is_empty());
    }

    #[test]
    fn error_kinds_read_well() {
        assert_eq!(
            ErrorKind::Http { status: 400, code: Some("invalid_grant".into()) }.to_string(),
            "http 400 invalid_grant"
        );
        assert_eq!(ErrorKind::Http { status: 502, code: None }.to_string(), "http 502");
        assert_eq!(ErrorKind::Transport("timeout".into()).to_string(), "transport timeout");
        assert_eq!(Op::ALL.map(Op::as_str).len(), 9);
    }
}
