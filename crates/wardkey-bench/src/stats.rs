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
use tokio::time::Instant;

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
    /// Latency over the run, when [`Stats::timed`] gave it a start.
    pub timeline: Timeline,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Nothing measured yet, and no timeline kept.
    pub fn new() -> Self {
        Self {
            latency: BTreeMap::new(),
            errors: BTreeMap::new(),
            queue_delay: new_histogram(),
            unsent: 0,
            timeline: Timeline::default(),
        }
    }

    /// Nothing measured yet; each request is also placed on a timeline by
    /// when it started, from `origin` (the start of the measured window) in
    /// steps of `step`.
    pub fn timed(origin: Instant, step: Duration) -> Self {
        Self { timeline: Timeline::new(origin, step), ..Self::new() }
    }

    /// A successful `op` that took `latency` and has just ended.
    pub fn record(&mut self, op: Op, latency: Duration) {
        let now = Instant::now();
        self.record_at(op, latency, now.checked_sub(latency).unwrap_or(now));
    }

    /// A successful `op` that took `latency` from `started` (when it was
    /// due, for latency counted from then).
    pub fn record_at(&mut self, op: Op, latency: Duration, started: Instant) {
        record(self.latency.entry(op).or_insert_with(new_histogram), latency);
        self.timeline.record(op, latency, started);
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
        self.timeline.merge(&other.timeline);
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

/// Steps of the timeline's latency buckets: 16 a doubling, so a bucket is
/// 4.4 % wide and a percentile read from it is within about 2 % — plenty
/// for a chart, at a few bytes a bucket.
const STEPS_PER_DOUBLING: f64 = 16.0;

fn latency_bucket(latency: Duration) -> u16 {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS);
    ((micros as f64).log2() * STEPS_PER_DOUBLING).floor() as u16
}

/// The middle of a latency bucket, in milliseconds.
fn bucket_ms(bucket: u16) -> f64 {
    2f64.powf((f64::from(bucket) + 0.5) / STEPS_PER_DOUBLING) / 1000.0
}

/// A step for a timeline of `window`: about 60 steps, rounded up to 1, 2 or
/// 5 times a power of ten milliseconds, at least 100 ms.
pub fn timeline_step(window: Duration) -> Duration {
    let raw = (window.as_secs_f64() * 1000.0 / 60.0).max(100.0);
    let magnitude = 10f64.powf(raw.log10().floor());
    let ms = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw - 1e-9).unwrap_or(raw);
    Duration::from_millis(ms.round() as u64)
}

/// Latency over the run: for each operation and time step, how many
/// requests that started in the step fell in each latency bucket. Sparse
/// (only buckets hit are kept) and coarse (see [`STEPS_PER_DOUBLING`]), so
/// a worker's timeline stays small however long the run; timelines of
/// several workers merge by adding counts.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Step 0 starts here; none: nothing is kept.
    origin: Option<Instant>,
    step: Duration,
    /// (operation, step, latency bucket) → requests.
    cells: BTreeMap<(Op, u32, u16), u64>,
}

/// One step of a timeline: requests that started in it, and their latency.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeBucket {
    /// Start of the step, seconds from the start of the measured window.
    pub from_seconds: f64,
    /// Length of the step, seconds.
    pub seconds: f64,
    /// Successful requests that started in the step.
    pub count: u64,
    /// Median latency, milliseconds (within about 2 %).
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds (within about 2 %).
    pub p99_ms: f64,
}

impl Timeline {
    /// An empty timeline whose step 0 starts at `origin`.
    pub fn new(origin: Instant, step: Duration) -> Self {
        Self { origin: Some(origin), step: step.max(Duration::from_millis(1)), cells: BTreeMap::new() }
    }

    /// The length of one step.
    pub fn step(&self) -> Duration {
        self.step
    }

    fn index(&self, started: Instant) -> Option<u32> {
        let origin = self.origin?;
        let since = started.saturating_duration_since(origin);
        Some(u32::try_from(since.as_nanos() / self.step.as_nanos().max(1)).unwrap_or(u32::MAX))
    }

    /// A request of `op` that started at `started` and took `latency`.
    pub fn record(&mut self, op: Op, latency: Duration, started: Instant) {
        if let Some(index) = self.index(started) {
            *self.cells.entry((op, index, latency_bucket(latency))).or_default() += 1;
        }
    }

    /// Add what `other` holds. A timeline without an origin takes
    /// `other`'s origin and step; steps of another origin or length are
    /// placed by when they started.
    pub fn merge(&mut self, other: &Timeline) {
        let Some(theirs) = other.origin else { return };
        let Some(mine) = self.origin else {
            *self = other.clone();
            return;
        };
        if mine == theirs && self.step == other.step {
            for (key, n) in &other.cells {
                *self.cells.entry(*key).or_default() += n;
            }
            return;
        }
        for ((op, index, bucket), n) in &other.cells {
            let started = theirs + other.step * *index;
            if let Some(at) = self.index(started) {
                *self.cells.entry((*op, at, *bucket)).or_default() += n;
            }
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Each step in which `op` (every operation, for none) had requests,
    /// in time order.
    pub fn buckets(&self, op: Option<Op>) -> Vec<TimeBucket> {
        // step → latency bucket → requests
        let mut steps: BTreeMap<u32, BTreeMap<u16, u64>> = BTreeMap::new();
        for ((o, index, bucket), n) in &self.cells {
            if op.is_none_or(|want| want == *o) {
                *steps.entry(*index).or_default().entry(*bucket).or_default() += n;
            }
        }
        let step = self.step.as_secs_f64();
        steps
            .into_iter()
            .map(|(index, counts)| {
                let count: u64 = counts.values().sum();
                let at = |q: f64| {
                    let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
                    let mut seen = 0;
                    for (bucket, n) in &counts {
                        seen += n;
                        if seen >= rank {
                            return bucket_ms(*bucket);
                        }
                    }
                    0.0
                };
                TimeBucket {
                    from_seconds: self.step.checked_mul(index).map_or(f64::MAX, |d| d.as_secs_f64()),
                    seconds: step,
                    count,
                    p50_ms: at(0.5),
                    p99_ms: at(0.99),
                }
            })
            .collect()
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
    fn timeline_places_requests_by_when_they_started() {
        let origin = Instant::now();
        let at = |ms: u64| origin + Duration::from_millis(ms);
        let mut a = Stats::timed(origin, Duration::from_secs(1));
        for _ in 0..100 {
            a.record_at(Op::TapHot, Duration::from_millis(1), at(100));
        }
        let mut b = Stats::timed(origin, Duration::from_secs(1));
        for _ in 0..98 {
            b.record_at(Op::TapHot, Duration::from_millis(10), at(2500));
        }
        b.record_at(Op::TapHot, Duration::from_millis(200), at(2900));
        b.record_at(Op::TapHot, Duration::from_millis(200), at(2000));
        b.record_at(Op::PinEntry, Duration::from_millis(100), at(2100));
        // As the engine gathers workers: into stats without a timeline.
        let mut all = Stats::new();
        all.merge(&a);
        all.merge(&b);
        assert_eq!(all.count(Op::TapHot), 200);
        let within = |got: f64, want: f64| (got - want).abs() <= want * 0.025;
        let hot = all.timeline.buckets(Some(Op::TapHot));
        assert_eq!(hot.len(), 2, "{hot:?}");
        assert_eq!((hot[0].from_seconds, hot[0].seconds, hot[0].count), (0.0, 1.0, 100));
        assert!(within(hot[0].p50_ms, 1.0) && within(hot[0].p99_ms, 1.0), "{hot:?}");
        assert_eq!((hot[1].from_seconds, hot[1].count), (2.0, 100));
        assert!(within(hot[1].p50_ms, 10.0), "{hot:?}");
        assert!(within(hot[1].p99_ms, 200.0), "the slowest 2 of 100 make p99: {hot:?}");
        let every = all.timeline.buckets(None);
        assert_eq!(every.iter().map(|b| b.count).collect::<Vec<_>>(), [100, 101]);
        assert_eq!(all.timeline.buckets(Some(Op::Refresh)), []);
        // Stats without a start keep no timeline.
        let mut plain = Stats::new();
        plain.record(Op::TapHot, Duration::from_millis(1));
        assert!(plain.timeline.is_empty());
        // A timeline of another origin is placed by time.
        let mut later = Stats::timed(at(1000), Duration::from_millis(500));
        later.record_at(Op::TapHot, Duration::from_millis(3), at(1700));
        all.merge(&later);
        assert_eq!(all.timeline.buckets(Some(Op::TapHot))[1].from_seconds, 1.0);
    }

    #[test]
    fn timeline_steps_are_round_and_about_sixty_a_run() {
        assert_eq!(timeline_step(Duration::from_secs(20)), Duration::from_millis(500));
        assert_eq!(timeline_step(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(timeline_step(Duration::from_secs(600)), Duration::from_secs(10));
        assert_eq!(timeline_step(Duration::from_secs(3600)), Duration::from_secs(100));
        assert_eq!(timeline_step(Duration::from_secs(1)), Duration::from_millis(100));
        assert_eq!(timeline_step(Duration::ZERO), Duration::from_millis(100));
        assert_eq!(latency_bucket(Duration::ZERO), 0);
        assert!((bucket_ms(latency_bucket(Duration::from_millis(100))) / 100.0 - 1.0).abs() < 0.025);
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
