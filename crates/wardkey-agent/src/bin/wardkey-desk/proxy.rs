//! The per-user broker: the socket desktop EPR apps ask for tokens, in the
//! clinician's own runtime directory, forwarding to the agent's socket.
//!
//! Only the app routes pass (`/v1/session`, `/v1/token`, `/v1/events`): an
//! EPR app cannot type PINs or report the desktop shown. Every caller is
//! checked against `desk_allow` by its peer credentials first.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use wardkey_agent::broker::{admit, error};
use wardkey_agent::peer::PeerPolicy;

/// Largest request body forwarded (a token request is a client id).
const MAX_BODY: usize = 16 * 1024;

/// The per-user broker's routes, for callers `policy` allows.
pub fn router(agent: reqwest::Client, policy: PeerPolicy) -> Router {
    Router::new()
        .route("/v1/session", get(forward))
        .route("/v1/token", post(forward))
        .route("/v1/events", get(forward))
        .with_state(agent)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state((Arc::new(policy), "desk_allow"), admit))
}

/// Pass the request to the agent and its answer back, streamed (events).
async fn forward(State(agent): State<reqwest::Client>, method: Method, uri: Uri, body: Bytes) -> Response {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let answer = agent
        .request(method, format!("http://agent{target}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(error = %e, "the agent did not answer a broker request");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the Wardkey agent is not running on this PC; try again shortly",
            );
        }
    };
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let stream = futures_util::stream::unfold(answer, |mut answer| async move {
        answer.chunk().await.transpose().map(|chunk| (chunk, answer))
    });
    let mut response = (status, Body::from_stream(stream)).into_response();
    if let Some(content_type) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, content_type);
    }
    response
}
