//! Liveness and readiness for load balancers and orchestrators.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::metrics::BackendLabel;
use crate::state::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the store and the cache both answer within two seconds;
/// otherwise 503 so the load balancer sends traffic to another node.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let (store, cache) = probe(&state).await;
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let status = if store && cache { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"store": word(store), "cache": word(cache)})))
}

/// `GET /metrics`: the Prometheus text, with the store and cache checked
/// first so the health gauges are as fresh as the scrape.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    probe(&state).await;
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
}

/// Ping the store and the cache (each within two seconds), record the
/// outcome in `wardkey_backend_up` and `wardkey_backend_ping_seconds`, and
/// say whether each answered.
async fn probe(state: &AppState) -> (bool, bool) {
    let timed = |started: Instant, ok: bool, backend: &'static str| {
        let labels = BackendLabel { backend };
        state.metrics.backend_up.get_or_create(&labels).set(i64::from(ok));
        state.metrics.backend_ping.get_or_create(&labels).set(started.elapsed().as_secs_f64());
        ok
    };
    let started = Instant::now();
    let store =
        timed(started, matches!(tokio::time::timeout(PROBE_TIMEOUT, state.store.ping()).await, Ok(Ok(()))), "store");
    let started = Instant::now();
    let cache =
        timed(started, matches!(tokio::time::timeout(PROBE_TIMEOUT, state.cache.ping()).await, Ok(Ok(()))), "cache");
    (store, cache)
}
