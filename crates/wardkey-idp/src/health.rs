//! Liveness and readiness for load balancers and orchestrators.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::state::AppState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the store and the cache both answer within two seconds;
/// otherwise 503 so the load balancer sends traffic to another node.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = matches!(tokio::time::timeout(PROBE_TIMEOUT, state.store.ping()).await, Ok(Ok(())));
    let cache = matches!(tokio::time::timeout(PROBE_TIMEOUT, state.cache.ping()).await, Ok(Ok(())));
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let status = if store && cache { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({"store": word(store), "cache": word(cache)})))
}
