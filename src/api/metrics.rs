//! The `metrics` listener (Prometheus text at `/_synapse/metrics`, as Synapse serves it,
//! and `/metrics`), and the layer every other listener has: each request counted and
//! timed by route, and one access-log line, as Synapse's.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::extract::AppState;
use crate::error::ApiResult;
use crate::services::metrics::{MAX_LABELLED_DESTINATIONS, RequestLabels, Snapshot};

const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_synapse/metrics", get(render))
        .route("/metrics", get(render))
        .route("/health", get(|| async { "OK" }))
        .with_state(state)
}

async fn render(State(state): State<AppState>) -> ApiResult<Response> {
    let (outbox_pdus, destinations_backing_off) = state.sender.queue_depth().await?;
    let snapshot = Snapshot {
        directory_users: state.directory.user_count(),
        remote_profile_queue: state.remote_profiles.queue_len().await?,
        outbox_pdus,
        destinations_backing_off,
        destination_queues: state.sender.destination_queues(MAX_LABELLED_DESTINATIONS).await?,
        peer_sync_lag: state.federated_directory.sync_lag().await?,
        partial_state_rooms: state.rooms.partial_state_room_count().await?,
        appservice_waiting: state.appservices.transactions_waiting().await?,
    };
    Ok(([(CONTENT_TYPE, CONTENT)], state.metrics.render(&snapshot)).into_response())
}

/// Counts and times the request under its route template, and logs it.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Any token is a valid method to hyper; only the standard ones get their own label.
    let method = match request.method().as_str() {
        known @ ("GET" | "POST" | "PUT" | "DELETE" | "OPTIONS" | "HEAD" | "PATCH") => known.to_owned(),
        _ => "OTHER".to_owned(),
    };
    let endpoint = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    // The path only: query strings may carry access tokens.
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    tracing::info!(target: "kith::access", %method, %path, status, ms = elapsed.as_secs_f64() * 1e3, "request");
    if endpoint.ends_with("/user_directory/search") {
        state.metrics.observe_directory_search(elapsed);
    }
    state.metrics.observe_request(RequestLabels { method, endpoint, status: status.to_string() }, elapsed);
    response
}
