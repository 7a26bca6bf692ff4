//! The HTTP API (axum): JSON under `/v1`, health, readiness and Prometheus metrics.
//!
//! [`router`] builds the whole API from an [`AppState`], separately from serving it, so tests can
//! call it directly or through a real listener. Handlers only read published snapshots and
//! counters; none of them takes a lock the analytics core needs.
//!
//! - [`error`]: the one error type and its JSON body.
//! - [`alerts`]: recent alerts and the rules (list, add, remove).
//! - [`candles`]: candles, and the loading of a symbol's candles.
//! - [`indicators`]: indicators over the closed candles (through the shared indicator cache).
//! - [`stream`]: the live stream of alerts and statistics (Server-Sent Events).
//! - [`stream_ws`]: the same stream over a WebSocket, with subscriptions changed in flight.
//! - [`server`]: the connections: HTTP/1.1 and h2c, timeouts, the bound on open connections.
//! - [`cors`]: which browser origins may call the API.
//! - [`dashboard`]: the page at `/`, its assets embedded in the binary.
//! - [`stats`]: symbols, per-symbol statistics and the all-symbols ranking.
//! - [`history`]: the recordings' candles and past windows, through a bounded pool.
//! - [`system`]: health, readiness, feeds, metrics and the OpenAPI description (`/openapi.json`).

pub mod alerts;
pub mod candles;
pub mod cluster;
pub mod cors;
pub mod dashboard;
pub mod doc;
pub mod error;
pub mod history;
pub mod indicators;
pub mod server;
pub mod stats;
pub mod stream;
pub mod stream_ws;
pub mod system;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, Query, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::alerts::RuleBook;
use crate::alerts::sink::AlertLog;
use crate::analytics::snapshot::SnapshotStore;
use crate::analytics::{IntervalSpec, WindowSpec};
use crate::fanout::StreamEvent;
use crate::health::FeedRegistry;
use crate::indicators::cache::IndicatorCache;
use crate::metrics::{HttpLabels, Metrics};
pub use error::ApiError;

/// The environment variable holding the API token that rule edits require.
pub const API_TOKEN_ENV: &str = "TICKSTREAM_API_TOKEN";
/// Default HTTP listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// What every handler can read: one pointer to [`SharedState`], so that handing it to each
/// request (axum clones the state for every extractor and layer that takes it) is one atomic
/// increment rather than a dozen, one of them a lock.
#[derive(Debug, Clone)]
pub struct AppState(Arc<SharedState>);

impl AppState {
    /// A state reading `shared`.
    pub fn new(shared: SharedState) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The handles behind an [`AppState`].
#[derive(Debug)]
pub struct SharedState {
    /// Published per-symbol snapshots.
    pub snapshots: Arc<SnapshotStore>,
    /// Feed states and counters.
    pub feeds: Arc<FeedRegistry>,
    /// Service metrics.
    pub metrics: Arc<Metrics>,
    /// The configured windows, in order.
    pub windows: Arc<[WindowSpec]>,
    /// The configured candle intervals, in order.
    pub intervals: Arc<[IntervalSpec]>,
    /// Closed candles kept per symbol and interval.
    pub candle_history: usize,
    /// Memoized indicator results, shared by every request.
    pub indicators: IndicatorCache,
    /// Whether the pipeline is up (readiness).
    pub ready: Arc<AtomicBool>,
    /// The alert rules in force.
    pub rules: Arc<RuleBook>,
    /// The most recent alerts.
    pub alerts: Arc<AlertLog>,
    /// The live stream (alerts and snapshots) that `/v1/stream` clients subscribe to.
    pub stream: tokio::sync::broadcast::Sender<StreamEvent>,
    /// The latest statistics other cluster nodes sent for their symbols (empty on a single
    /// process): what the stream starts a client with besides this node's snapshots.
    pub remote_stats: Arc<crate::fanout::RemoteLatest>,
    /// Least time between two `stats` events of one symbol on the stream.
    pub stream_throttle: std::time::Duration,
    /// How long a stream client may leave its events unread before it is disconnected.
    pub stall: std::time::Duration,
    /// Cancelled when the service starts shutting down (ends live streams).
    pub stopping: tokio_util::sync::CancellationToken,
    /// The bearer token that endpoints changing state require, if configured.
    pub api_token: Option<crate::secret::Secret>,
    /// Requests in flight and how long one may take.
    pub limits: HttpLimits,
    /// Which origins browsers may call the API from.
    pub cors: cors::CorsPolicy,
    /// The history store and its query pool, when one is configured.
    pub history: Option<history::HistoryPool>,
    /// An analytics node's view of its cluster (`GET /v1/cluster`); `None` on a single process.
    pub cluster: Option<Arc<crate::cluster::lease::LeaseShared>>,
}

impl AppState {
    /// A state serving `snapshots` with no feeds and no alert rules, ready (for benches and
    /// tools that drive the core themselves).
    pub fn over_snapshots(
        snapshots: Arc<SnapshotStore>,
        windows: Arc<[WindowSpec]>,
        intervals: Arc<[IntervalSpec]>,
        cache: crate::indicators::cache::CacheSettings,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let rules = RuleBook::new(&[], Arc::clone(&windows), Arc::clone(&intervals))
            .unwrap_or_else(|_| unreachable!("an empty rule book is valid"));
        AppState::new(SharedState {
            snapshots,
            feeds: Arc::new(FeedRegistry::new()),
            indicators: IndicatorCache::new(cache, Arc::clone(&metrics)),
            metrics,
            windows,
            intervals,
            candle_history: crate::analytics::DEFAULT_CANDLE_HISTORY,
            ready: Arc::new(AtomicBool::new(true)),
            rules: Arc::new(rules),
            alerts: Arc::new(AlertLog::new(crate::alerts::sink::RECENT_ALERTS)),
            stream: tokio::sync::broadcast::channel(crate::fanout::STREAM_CAPACITY).0,
            remote_stats: Arc::default(),
            stream_throttle: DEFAULT_STREAM_THROTTLE,
            stall: server::DEFAULT_SERVER.stall,
            stopping: tokio_util::sync::CancellationToken::new(),
            api_token: None,
            limits: HttpLimits::new(DEFAULT_HTTP_LIMITS),
            cors: cors::CorsPolicy::default(),
            history: None,
            cluster: None,
        })
    }
}

/// The whole API: the routes (each served and described by one line of [`doc::routes`]) and
/// the layers every request goes through.
pub fn router(state: AppState) -> Router {
    let (routes, _) = doc::routes().split_for_parts();
    let routes = routes
        .merge(dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // An analytics node of a cluster answers for symbols another node owns by asking it.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cluster::forward,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cluster::gather,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ));
    // Preflights are answered here, before the limits and the counters.
    let routes = match state.cors.layer() {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    routes
        // JSON (and the OpenAPI document) compressed when the client asks; never the event
        // stream, whose events must reach the client as they are written.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .br(true),
        )
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` is cancelled, then finishes the requests in
/// flight (at most `drain`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    settings: server::ServerSettings,
    shutdown: tokio_util::sync::CancellationToken,
    drain: Duration,
) {
    let metrics = Arc::clone(&state.metrics);
    let router = router(state.clone());
    cluster::set_responder(&state, &router);
    server::serve(listener, router, settings, metrics, shutdown, drain).await;
}

/// Bounds on the HTTP API's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimitSettings {
    /// Requests handled at once (the live stream aside); more are answered 503 at once.
    pub max_in_flight: usize,
    /// Longest time one request may take, receiving its body included.
    pub timeout: Duration,
}

/// Default HTTP limits: 1,024 requests in flight, 10 s each.
pub const DEFAULT_HTTP_LIMITS: HttpLimitSettings = HttpLimitSettings {
    max_in_flight: 1024,
    timeout: Duration::from_secs(10),
};

/// Default least time between two `stats` events of one symbol on the live stream.
pub const DEFAULT_STREAM_THROTTLE: Duration = Duration::from_millis(250);

/// The largest request body accepted (alert rules are a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Bounds on the API's work: requests in flight (beyond it, new ones are shed with 503, not
/// queued) and the time one may take (including receiving its body).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    in_flight: Arc<tokio::sync::Semaphore>,
    max_in_flight: usize,
    timeout: std::time::Duration,
}

impl HttpLimits {
    /// The longest time one request may take.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    /// Limits as configured.
    pub fn new(settings: HttpLimitSettings) -> Self {
        HttpLimits {
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_in_flight)),
            max_in_flight: settings.max_in_flight,
            timeout: settings.timeout,
        }
    }
}

/// Sheds a request when too many are in flight and bounds its time. The live stream is exempt
/// (its clients stay connected by design; each has its own bounded queue).
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/v1/stream") {
        return next.run(request).await;
    }
    let limits = &state.limits;
    let Ok(_permit) = Arc::clone(&limits.in_flight).try_acquire_owned() else {
        return ApiError::Overloaded(limits.max_in_flight).into_response();
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(limits.timeout.as_millis()).into_response(),
    }
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("{} {}", request.method(), request.uri().path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Counts every request by method, matched route and status, and times it by method and route.
async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let labels = crate::metrics::RouteLabels { method, route };
    state
        .metrics
        .http_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    let crate::metrics::RouteLabels { method, route } = labels;
    state
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Query parameters, with a rejection that is an [`ApiError`] (400 with the JSON body).
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::BadParameter(rejection.body_text()))
    }
}

/// A JSON body, with a rejection that is an [`ApiError`]: a body that is not JSON (or not sent
/// as JSON) is 400 `bad_parameter`; JSON of the wrong shape (a field of the wrong type, a missing
/// or unknown field) is 400 `invalid_rule` — the only JSON body the API takes is an alert rule.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|axum::Json(value)| ApiJson(value))
            .map_err(|rejection| {
                use axum::extract::rejection::JsonRejection;
                match rejection {
                    _ if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                        ApiError::PayloadTooLarge(MAX_BODY_BYTES)
                    }
                    JsonRejection::JsonDataError(error) => {
                        ApiError::InvalidRule(format!("invalid alert rule: {}", error.body_text()))
                    }
                    other => ApiError::BadParameter(other.body_text()),
                }
            })
    }
}

/// A path parameter, with a rejection that is an [`ApiError`].
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::BadParameter(rejection.body_text()))
    }
}
