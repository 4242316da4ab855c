//! Prometheus metrics: what ops watch on the login-time dashboards.
//! Names come from `wardkey_proto::metrics`; latencies are in seconds.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use wardkey_proto::metrics as names;

/// Labels of the request-duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern, never the raw path (bounded cardinality).
    pub route: String,
    /// HTTP status code.
    pub status: u16,
}

/// A single string label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The kind (outcome, grant, error code).
    pub kind: &'static str,
}

/// Per-ward labels come from an enrolled workstation (or are `none`),
/// never from request text, so each label set stays as small as the
/// trust's list of wards.
/// The ward label alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WardLabel {
    /// The ward.
    pub ward: String,
}

/// The backend label of the health gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    /// `store` or `cache`.
    pub backend: &'static str,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    /// Request latency by route and status.
    pub http: Family<RouteLabels, Histogram>,
    /// Password logins by outcome.
    pub logins: Family<KindLabel, Counter>,
    /// argon2 verification time including queueing.
    pub password_verify: Histogram,
    /// Tokens issued by grant.
    pub tokens_issued: Family<KindLabel, Counter>,
    /// Token endpoint errors by error code.
    pub token_errors: Family<KindLabel, Counter>,
    /// Code or refresh-token reuse detected.
    pub reuse_detected: Counter,
    /// Taps by outcome.
    pub taps: Family<KindLabel, Counter>,
    /// Tap-to-active time reported by agents.
    pub tap_to_active: Histogram,
    /// Back-channel logout delivery time, per attempt.
    pub backchannel_delivery: Histogram,
    /// Back-channel logout attempts that failed.
    pub backchannel_failures: Counter,
    /// Badges seen on two wards within the window.
    pub cloned_badge: Counter,
    /// Each step of a login by `step` and ward.
    pub login_step: Family<StepLabels, Histogram>,
    /// Completed sign-ins by method and ward.
    pub signins: Family<MethodLabels, Counter>,
    /// Wrong PINs by ward.
    pub wrong_pins: Family<WardLabel, Counter>,
    /// Lockouts by kind and ward.
    pub lockouts: Family<LockoutLabels, Counter>,
    /// Seconds saved by ward.
    pub time_saved: Family<WardLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Whether each backend answered its last check.
    pub backend_up: Family<BackendLabel, Gauge>,
    /// How long its last check took.
    pub backend_ping: Family<BackendLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Audit records that could not be written.
    pub audit_write_failures: Counter,
}

/// Labels of `wardkey_login_step_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// `tap`, `pin`, `desktop`, `token_exchange`, `password`, `passkey`.
    pub step: &'static str,
    /// The ward, or `none`.
    pub ward: String,
}

/// Labels of `wardkey_signins_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `badge`, `badge_pin`, `password`, `passkey`.
    pub method: &'static str,
    /// The ward, or `none`.
    pub ward: String,
}

/// Labels of `wardkey_lockouts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LockoutLabels {
    /// `badge` or `password`.
    pub kind: &'static str,
    /// The ward, or `none`.
    pub ward: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~6.5 s: the hot path lives in the first buckets, argon2 in the
    // middle ones.
    Histogram::new(exponential_buckets(0.00005, 2.0, 18))
}

fn login_histogram() -> Histogram {
    // 1 ms … ~130 s: a hot-path tap in the first buckets, a PIN typed in
    // seconds, a password login in tens of seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

fn counter_name(full: &'static str) -> &'static str {
    // prometheus-client appends `_total` to counters itself.
    full.strip_suffix("_total").unwrap_or(full)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let http = Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let logins = Family::<KindLabel, Counter>::default();
        let password_verify = latency_histogram();
        let tokens_issued = Family::<KindLabel, Counter>::default();
        let token_errors = Family::<KindLabel, Counter>::default();
        let reuse_detected = Counter::default();
        registry.register(names::HTTP_REQUEST_DURATION, "HTTP request latency in seconds", http.clone());
        registry.register(counter_name(names::LOGINS_TOTAL), "Password logins by outcome", logins.clone());
        registry.register(
            names::PASSWORD_VERIFY_DURATION,
            "Password verification time in seconds, queueing included",
            password_verify.clone(),
        );
        registry.register(counter_name(names::TOKENS_ISSUED_TOTAL), "Tokens issued by grant", tokens_issued.clone());
        registry.register(
            counter_name(names::TOKEN_ERRORS_TOTAL),
            "Token endpoint errors by error code",
            token_errors.clone(),
        );
        registry.register(
            counter_name(names::TOKEN_REUSE_DETECTED_TOTAL),
            "Authorization code or refresh token reuse detected",
            reuse_detected.clone(),
        );
        let taps = Family::<KindLabel, Counter>::default();
        let tap_to_active = latency_histogram();
        let backchannel_delivery = latency_histogram();
        let backchannel_failures = Counter::default();
        let cloned_badge = Counter::default();
        registry.register(counter_name(names::TAPS_TOTAL), "Badge taps and PIN entries by outcome", taps.clone());
        registry.register(
            names::TAP_TO_ACTIVE,
            "Badge read to unlocked desktop, reported by agents, in seconds",
            tap_to_active.clone(),
        );
        registry.register(
            names::BACKCHANNEL_DELIVERY,
            "Back-channel logout delivery time per attempt, in seconds",
            backchannel_delivery.clone(),
        );
        registry.register(
            counter_name(names::BACKCHANNEL_FAILURES_TOTAL),
            "Back-channel logout attempts that failed",
            backchannel_failures.clone(),
        );
        registry.register(
            counter_name(names::CLONED_BADGE_TOTAL),
            "Badges tapped on two wards within the cloned-badge window",
            cloned_badge.clone(),
        );
        let login_step = Family::<StepLabels, Histogram>::new_with_constructor(login_histogram as fn() -> Histogram);
        let signins = Family::<MethodLabels, Counter>::default();
        let wrong_pins = Family::<WardLabel, Counter>::default();
        let lockouts = Family::<LockoutLabels, Counter>::default();
        let time_saved = Family::<WardLabel, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        let backend_up = Family::<BackendLabel, Gauge>::default();
        let backend_ping = Family::<BackendLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let audit_write_failures = Counter::default();
        registry.register(
            names::LOGIN_STEP_SECONDS,
            "One step of a login by step and ward, in seconds",
            login_step.clone(),
        );
        registry.register(counter_name(names::SIGNINS_TOTAL), "Completed sign-ins by method and ward", signins.clone());
        registry.register(counter_name(names::WRONG_PINS_TOTAL), "Wrong PINs by ward", wrong_pins.clone());
        registry.register(
            counter_name(names::LOCKOUTS_TOTAL),
            "Badges and accounts locked after too many failures, by kind and ward",
            lockouts.clone(),
        );
        registry.register(
            counter_name(names::TIME_SAVED_SECONDS_TOTAL),
            "Seconds saved by ward: each sign-in's baseline for its method minus the time it took",
            time_saved.clone(),
        );
        registry.register(names::BACKEND_UP, "1 if the backend answered its last check", backend_up.clone());
        registry.register(
            names::BACKEND_PING_SECONDS,
            "How long the backend's last check took, in seconds",
            backend_ping.clone(),
        );
        registry.register(
            counter_name(names::AUDIT_WRITE_FAILURES_TOTAL),
            "Audit records that could not be written",
            audit_write_failures.clone(),
        );
        Self {
            login_step,
            signins,
            wrong_pins,
            lockouts,
            time_saved,
            backend_up,
            backend_ping,
            audit_write_failures,
            registry,
            http,
            logins,
            password_verify,
            tokens_issued,
            token_errors,
            reuse_detected,
            taps,
            tap_to_active,
            backchannel_delivery,
            backchannel_failures,
            cloned_badge,
        }
    }
}

impl Metrics {
    /// Count one event of `kind` in `family`.
    pub fn count(family: &Family<KindLabel, Counter>, kind: &'static str) {
        family.get_or_create(&KindLabel { kind }).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Middleware timing every request by matched route.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    // The route pattern, never the raw URI: query strings can carry request
    // ids and hints that do not belong in logs.
    tracing::debug!(%method, route, status, seconds, "request");
    metrics.http.get_or_create(&RouteLabels { route, status }).observe(seconds);
    response
}
