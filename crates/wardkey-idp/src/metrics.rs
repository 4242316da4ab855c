//! Prometheus metrics: what ops watch on the login-time dashboards.
//! Names come from `wardkey_proto::metrics`; latencies are in seconds.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
}

fn latency_histogram() -> Histogram {
    // 50 µs … ~6.5 s: the hot path lives in the first buckets, argon2 in the
    // middle ones.
    Histogram::new(exponential_buckets(0.00005, 2.0, 18))
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
        Self {
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

/// `GET /metrics`.
pub async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> Response {
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.encode()).into_response()
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
