//! Health, readiness, feeds, metrics and the OpenAPI description.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::{ApiError, AppState};
use crate::health::FeedView;

/// The body of `GET /healthz` and `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// `ok` (health) or `ready` (readiness).
    pub status: &'static str,
}

/// `GET /healthz`: the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    summary = "Liveness",
    responses((status = 200, description = "The process serves.", body = Status)),
)]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The body of `GET /v1/info`: what this service is configured with, so a client (the
/// dashboard) can offer the windows, intervals and indicators it serves.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Info {
    /// The service's version.
    pub version: &'static str,
    /// The run: when this process started, epoch µs (the `RUN` of the stream's event ids).
    pub run: u64,
    /// The rolling windows' labels, shortest first as configured.
    pub windows: Vec<String>,
    /// The candle intervals' labels, as configured.
    pub intervals: Vec<String>,
    /// Closed candles kept per symbol and interval.
    pub candle_history: usize,
    /// The indicators served.
    pub indicators: Vec<&'static str>,
    /// Least time between two `stats` events of one symbol on the live stream, ms.
    pub stream_throttle_ms: u64,
    /// Whether rule edits need the API token.
    pub rule_edits_need_token: bool,
}

/// `GET /v1/info`: the service's version and configuration as clients need it.
#[utoipa::path(
    get,
    path = "/v1/info",
    tag = "system",
    summary = "Version, windows, intervals and indicators served",
    params(super::stats::NoQuery),
    responses((status = 200, description = "What this service serves.", body = Info)),
)]
pub async fn info(
    State(state): State<AppState>,
    super::ApiQuery(_): super::ApiQuery<super::stats::NoQuery>,
) -> Json<Info> {
    Json(Info {
        version: env!("CARGO_PKG_VERSION"),
        run: state.alerts.run(),
        windows: state.windows.iter().map(|w| w.label.clone()).collect(),
        intervals: state.intervals.iter().map(|i| i.label.clone()).collect(),
        candle_history: state.candle_history,
        indicators: crate::indicators::NAMES.to_vec(),
        stream_throttle_ms: u64::try_from(state.stream_throttle.as_millis()).unwrap_or(u64::MAX),
        rule_edits_need_token: state.api_token.is_some(),
    })
}

/// `GET /openapi.json`: the API's OpenAPI 3.1 description, generated from the handlers and their
/// types (see [`super::doc`]).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    summary = "This description",
    responses((status = 200, description = "The OpenAPI 3.1 description of the API.", content_type = "application/json", body = Object)),
)]
pub async fn openapi() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        super::doc::openapi_json(),
    )
}

/// `GET /readyz`: the pipeline runs and every source has delivered data or ended (503 before,
/// naming the sources still waited for, and during shutdown); an analytics node of a cluster
/// has joined and every partition it owns has caught up with the stream.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    summary = "Readiness: every source has delivered data or ended",
    responses(
        (status = 200, description = "Ready.", body = Status),
        (status = 503, description = "`unavailable`: starting, a source has not delivered yet (named with its state), or shutting down.", body = ErrorBody),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    if !state.ready.load(Ordering::Acquire) {
        return Err(ApiError::Unavailable("the pipeline is not running".into()));
    }
    // An analytics node: joined, and every partition it owns caught up with the stream.
    if let Some(cluster) = &state.cluster {
        if cluster.partition_count().is_none() {
            return Err(ApiError::Unavailable(
                "this node has not joined its cluster yet (waiting for NATS, or for an ingest to create the stream)".into(),
            ));
        }
        let running = cluster
            .running
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let behind: Vec<String> = running
            .iter()
            .filter(|partition| !cluster.serves(**partition))
            .map(u32::to_string)
            .collect();
        if !behind.is_empty() {
            return Err(ApiError::Unavailable(format!(
                "rebuilding partitions {} from the stream",
                behind.join(", ")
            )));
        }
    }
    let waiting: Vec<String> = state
        .feeds
        .all()
        .iter()
        .filter(|feed| !feed.has_delivered())
        .map(|feed| format!("{} ({})", feed.name(), feed.state().name()))
        .collect();
    if waiting.is_empty() {
        Ok(Json(Status { status: "ready" }))
    } else {
        Err(ApiError::Unavailable(format!(
            "waiting for data from {}",
            waiting.join(", ")
        )))
    }
}

/// The body of `GET /v1/feeds`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedList {
    /// Every feed, in registration order.
    pub feeds: Vec<FeedView>,
}

/// `GET /v1/feeds`: every source with its state, counters and progress.
#[utoipa::path(
    get,
    path = "/v1/feeds",
    tag = "feeds",
    summary = "Every source: state, counters, progress, lag",
    responses((status = 200, description = "Every feed, in registration order.", body = FeedList)),
)]
pub async fn feeds(State(state): State<AppState>) -> Json<FeedList> {
    Json(FeedList {
        feeds: state.feeds.all().iter().map(|feed| feed.view()).collect(),
    })
}

/// The content type of `GET /metrics`.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`: Prometheus text exposition (OpenMetrics).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    summary = "Prometheus metrics (OpenMetrics text)",
    responses(
        (status = 200, description = "Every metric, in the OpenMetrics text format.", content_type = "application/openmetrics-text", body = String),
        (status = 500, description = "`internal`: the metrics could not be encoded.", body = ErrorBody),
    ),
)]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .encode()
        .map_err(|error| ApiError::Internal(format!("metrics encoding failed: {error}")))?;
    Ok(([(CONTENT_TYPE, OPENMETRICS)], text).into_response())
}
