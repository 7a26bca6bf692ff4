//! Health, readiness, feeds and metrics endpoints.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::feeds::FeedView;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /openapi.json`: the API's OpenAPI description.
pub async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// `GET /readyz`: the pipeline runs and every source has delivered data or ended (503 before,
/// naming the sources still waited for, and during shutdown).
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if !state.ready.load(Ordering::Acquire) {
        return Err(ApiError::Unavailable("the pipeline is not running".into()));
    }
    let waiting: Vec<String> = state
        .feeds
        .all()
        .iter()
        .filter(|feed| !feed.has_delivered())
        .map(|feed| format!("{} ({})", feed.name(), feed.state().name()))
        .collect();
    if waiting.is_empty() {
        Ok(Json(json!({ "status": "ready" })))
    } else {
        Err(ApiError::Unavailable(format!(
            "waiting for data from {}",
            waiting.join(", ")
        )))
    }
}

/// The body of `GET /v1/feeds`.
#[derive(Debug, Serialize)]
pub struct FeedList {
    /// Every feed, in registration order.
    pub feeds: Vec<FeedView>,
}

/// `GET /v1/feeds`: every source with its state, counters and progress.
pub async fn feeds(State(state): State<AppState>) -> Json<FeedList> {
    Json(FeedList {
        feeds: state.feeds.all().iter().map(|feed| feed.view()).collect(),
    })
}

/// `GET /metrics`: Prometheus text exposition (OpenMetrics).
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .encode()
        .map_err(|error| ApiError::Internal(format!("metrics encoding failed: {error}")))?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
