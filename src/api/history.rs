//! History over HTTP: `GET /v1/history` (what the store holds), and per symbol
//! `…/history/candles` (bars over a past range), `…/history/stats` (one window as of a past
//! instant) and `…/history/indicators/{name}` (an indicator over past bars) — the live API's field names, answered from the recordings by polars
//! ([`crate::history`]).
//!
//! Queries run off the async runtime on a small pool of blocking threads ([`HistoryPool`]: at
//! most [`HISTORY_WORKERS`] at once; the next wait for a slot within the request's timeout), are
//! bounded by the rows they may scan, and answer 408 when they take longer than the request
//! timeout (the query itself finishes in the background, holding its slot, so the pool stays
//! bounded). `from`, `to` and `at` take epoch milliseconds or RFC 3339.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::{ApiError, ApiPath, ApiQuery, AppState};
use crate::analytics::WindowStats;
use crate::history::{
    DEFAULT_MAX_ROWS, HistoryCandle, HistoryError, HistoryStore, MAX_CANDLES_PER_PAGE, StoreSummary,
};

/// History queries running at once.
pub const HISTORY_WORKERS: usize = 2;
/// Bars per page when no `limit` is given.
pub const DEFAULT_HISTORY_CANDLES: usize = 1_000;

/// The store and the pool its queries run on.
#[derive(Debug, Clone)]
pub struct HistoryPool {
    store: Arc<HistoryStore>,
    slots: Arc<tokio::sync::Semaphore>,
    max_rows: u64,
}

impl HistoryPool {
    /// A pool over `store`, scanning at most `max_rows` rows per query.
    pub fn new(store: HistoryStore, max_rows: u64) -> Self {
        HistoryPool {
            store: Arc::new(store),
            slots: Arc::new(tokio::sync::Semaphore::new(HISTORY_WORKERS)),
            max_rows,
        }
    }

    /// A pool over `store` with the default row limit.
    pub fn with_defaults(store: HistoryStore) -> Self {
        HistoryPool::new(store, DEFAULT_MAX_ROWS)
    }

    /// Runs `query` on a blocking thread once a slot is free, within `timeout` overall.
    async fn run<T: Send + 'static>(
        &self,
        timeout: Duration,
        query: impl FnOnce(&HistoryStore, u64) -> Result<T, HistoryError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let slot = tokio::time::timeout_at(deadline, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| ApiError::Timeout(timeout.as_millis()))?
            .map_err(|_| ApiError::Unavailable("the service is stopping".into()))?;
        let store = Arc::clone(&self.store);
        let max_rows = self.max_rows;
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            query(&store, max_rows)
        });
        match tokio::time::timeout_at(deadline, task).await {
            Err(_) => Err(ApiError::Timeout(timeout.as_millis())),
            Ok(Err(error)) => Err(ApiError::Internal(format!("history query failed: {error}"))),
            Ok(Ok(result)) => result.map_err(ApiError::from),
        }
    }
}

impl From<HistoryError> for ApiError {
    fn from(error: HistoryError) -> Self {
        match error {
            HistoryError::UnknownSymbol(symbol) => ApiError::UnknownSymbol(symbol),
            HistoryError::BadQuery(_) | HistoryError::TooManyRows { .. } => {
                ApiError::BadParameter(error.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

fn pool(state: &AppState) -> Result<&HistoryPool, ApiError> {
    state.history.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "history: this service has no history store (start it with --history DIR, or --record DIR)"
                .into(),
        )
    })
}

/// Parses `from`/`to`/`at` (see [`crate::history::parse_instant`]).
pub fn parse_instant(name: &str, text: &str) -> Result<i64, ApiError> {
    crate::history::parse_instant(name, text).map_err(ApiError::from)
}

fn parse_length(name: &'static str, text: &str) -> Result<i64, ApiError> {
    crate::history::parse_length(name, text).map_err(ApiError::from)
}

/// The bars a request names: `from` and `to` (ns, `to` after `from`), and the interval as asked
/// (default `1m`) and in ns.
fn bars_of(
    from: &str,
    to: &str,
    interval: Option<String>,
) -> Result<(i64, i64, String, i64), ApiError> {
    let from = parse_instant("from", from)?;
    let to = parse_instant("to", to)?;
    if to <= from {
        return Err(ApiError::BadParameter("to must be after from".into()));
    }
    let text = interval.unwrap_or_else(|| "1m".to_string());
    let nanos = parse_length("interval", &text)?;
    Ok((from, to, text, nanos))
}

/// `GET /v1/history`.
#[utoipa::path(
    get,
    path = "/v1/history",
    tag = "history",
    summary = "What the history store holds",
    description = "The directories read, every trade file in them (format, rows, symbols, whether \
        it is scanned lazily or held in memory), and per symbol its rows and time range.",
    params(super::stats::NoQuery),
    responses(
        (status = 200, description = "The store.", body = StoreSummary),
        (status = 404, description = "`not_found`: no history store is configured.", body = ErrorBody),
    ),
)]
pub async fn history(
    State(state): State<AppState>,
    ApiQuery(_): ApiQuery<super::stats::NoQuery>,
) -> Result<Json<StoreSummary>, ApiError> {
    let timeout = state.limits.timeout();
    let summary = pool(&state)?
        .run(timeout, |store, _| store.summary())
        .await?;
    Ok(Json(summary))
}

/// Query of `GET /v1/symbols/{symbol}/history/candles`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryCandlesQuery {
    /// Start: epoch ms or RFC 3339; rounded down to its bar's start.
    pub from: String,
    /// End (exclusive: bars that start before it): epoch ms or RFC 3339.
    pub to: String,
    /// Bar length: any whole number of milliseconds (`1m`, `90s`, `250ms`; default `1m`).
    pub interval: Option<String>,
    /// Most bars on this page: 1 to 10000 (default 1000); `next` says where the next one starts.
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

/// The body of `GET /v1/symbols/{symbol}/history/candles`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryCandles {
    /// The symbol.
    pub symbol: String,
    /// The interval, as asked.
    pub interval: String,
    /// The range's start as asked, epoch ms.
    pub from_ms: i64,
    /// The range's end as asked, epoch ms.
    pub to_ms: i64,
    /// The bars, oldest first, each whole (`[start, start + interval)`).
    pub candles: Vec<HistoryCandle>,
    /// The `from` of the next page when this one was cut at its limit, else null.
    pub next: Option<i64>,
}

/// `GET /v1/symbols/{symbol}/history/candles`.
#[utoipa::path(
    get,
    path = "/v1/symbols/{symbol}/history/candles",
    tag = "history",
    summary = "Bars of a past range, from the recordings",
    description = "Bars aligned to the epoch like the live ones, `[start, start + interval)`, for \
        every bar that starts in `[from, to)` (`from` rounded down to its bar's start), each \
        whole; intervals with no trade have no bar. Paginated: at most `limit` bars, and `next` \
        is the `from` of the next page.",
    params(("symbol" = String, Path, description = "The symbol."), HistoryCandlesQuery),
    responses(
        (status = 200, description = "The bars.", body = HistoryCandles),
        (status = 404, description = "`unknown_symbol` (no trade of it in the store), or no store.", body = ErrorBody),
    ),
)]
pub async fn history_candles(
    State(state): State<AppState>,
    ApiPath(symbol): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryCandlesQuery>,
) -> Result<Json<HistoryCandles>, ApiError> {
    let (from, to, interval_text, interval) = bars_of(&query.from, &query.to, query.interval)?;
    let limit = match query.limit {
        None => DEFAULT_HISTORY_CANDLES,
        Some(n) if (1..=MAX_CANDLES_PER_PAGE as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::BadParameter(format!(
                "limit must be 1 to {MAX_CANDLES_PER_PAGE}, not {n}"
            )));
        }
    };
    let timeout = state.limits.timeout();
    let wanted = symbol.clone();
    let page = pool(&state)?
        .run(timeout, move |store, max_rows| {
            crate::history::query::candles(store, &wanted, from, to, interval, limit, max_rows)
        })
        .await?;
    Ok(Json(HistoryCandles {
        symbol,
        interval: interval_text,
        from_ms: from.div_euclid(1_000_000),
        to_ms: to.div_euclid(1_000_000),
        candles: page.candles,
        next: page.next_ms,
    }))
}

/// Query of `GET /v1/symbols/{symbol}/history/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryStatsQuery {
    /// The instant: epoch ms or RFC 3339.
    pub at: String,
    /// The window: any whole number of milliseconds (default `1h`).
    pub window: Option<String>,
}

/// The body of `GET /v1/symbols/{symbol}/history/stats`: the live stats' shape, as of `at`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryStatsBody {
    /// The symbol.
    pub symbol: String,
    /// The instant asked, epoch ms.
    pub as_of_ms: i64,
    /// The latest price at or before it (null when the symbol had not traded yet).
    pub last_price: Option<f64>,
    /// That trade's time, epoch ms.
    pub last_ms: Option<i64>,
    /// The symbol's trades in the store at or before it.
    pub trade_count: u64,
    /// The window, keyed by its label as asked: the trades in `(at − window, at]`.
    pub windows: BTreeMap<String, WindowStats>,
}

/// `GET /v1/symbols/{symbol}/history/stats`.
#[utoipa::path(
    get,
    path = "/v1/symbols/{symbol}/history/stats",
    tag = "history",
    summary = "One window's statistics as of a past instant, from the recordings",
    params(("symbol" = String, Path, description = "The symbol."), HistoryStatsQuery),
    responses(
        (status = 200, description = "The statistics as of `at`.", body = HistoryStatsBody),
        (status = 404, description = "`unknown_symbol` (no trade of it in the store), or no store.", body = ErrorBody),
    ),
)]
pub async fn history_stats(
    State(state): State<AppState>,
    ApiPath(symbol): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryStatsQuery>,
) -> Result<Json<HistoryStatsBody>, ApiError> {
    let at = parse_instant("at", &query.at)?;
    let window_text = query.window.unwrap_or_else(|| "1h".to_string());
    let window = parse_length("window", &window_text)?;
    let timeout = state.limits.timeout();
    let wanted = symbol.clone();
    let stats = pool(&state)?
        .run(timeout, move |store, max_rows| {
            crate::history::query::stats(store, &wanted, at, window, max_rows)
        })
        .await?;
    Ok(Json(HistoryStatsBody {
        symbol,
        as_of_ms: at.div_euclid(1_000_000),
        last_price: stats.last.map(|(price, _)| price),
        last_ms: stats.last.map(|(_, ms)| ms),
        trade_count: stats.trade_count,
        windows: BTreeMap::from([(window_text, stats.window)]),
    }))
}

/// Query of `GET /v1/symbols/{symbol}/history/indicators/{name}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryIndicatorQuery {
    /// Start: epoch ms or RFC 3339; rounded down to its bar's start.
    pub from: String,
    /// End (exclusive): epoch ms or RFC 3339.
    pub to: String,
    /// Bar length: any whole number of milliseconds (default `1m`).
    pub interval: Option<String>,
    /// Period (SMA, EMA, RSI, BBANDS, ATR).
    pub period: Option<String>,
    /// MACD's fast period.
    pub fast: Option<String>,
    /// MACD's slow period.
    pub slow: Option<String>,
    /// MACD's signal period.
    pub signal: Option<String>,
    /// Bollinger bands' width in standard deviations.
    pub k: Option<String>,
}

/// The body of `GET /v1/symbols/{symbol}/history/indicators/{name}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryIndicatorBody {
    /// The symbol.
    pub symbol: String,
    /// The interval, as asked.
    pub interval: String,
    /// The indicator's name.
    pub indicator: &'static str,
    /// Its parameters, defaults filled in.
    #[schema(value_type = super::indicators::IndicatorParams)]
    pub params: crate::indicators::Indicator,
    /// The range's start as asked, epoch ms.
    pub from_ms: i64,
    /// The range's end as asked, epoch ms.
    pub to_ms: i64,
    /// Bars the series is computed over.
    pub candles: usize,
    /// The values, oldest first: one per bar from the first with enough bars before it.
    pub series: Vec<super::indicators::SeriesPoint>,
    /// Why the series is empty, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /v1/symbols/{symbol}/history/indicators/{name}`.
#[utoipa::path(
    get,
    path = "/v1/symbols/{symbol}/history/indicators/{name}",
    tag = "history",
    summary = "An indicator over the bars of a past range (TA-Lib's definitions)",
    description = "The live indicators' definitions and parameters, run over the history bars of \
        `[from, to)` (as `…/history/candles` makes them, at most 100,000): TA-Lib over the same \
        bar series gives the same values, so the first ones come once enough bars precede them.",
    params(
        ("symbol" = String, Path, description = "The symbol."),
        ("name" = String, Path, description = "`sma`, `ema`, `rsi`, `macd`, `bbands` or `atr`."),
        HistoryIndicatorQuery,
    ),
    responses(
        (status = 200, description = "The series.", body = HistoryIndicatorBody),
        (status = 400, description = "`unknown_indicator`, or `bad_parameter`.", body = ErrorBody),
        (status = 404, description = "`unknown_symbol` (no trade of it in the store), or no store.", body = ErrorBody),
    ),
)]
pub async fn history_indicator(
    State(state): State<AppState>,
    ApiPath((symbol, name)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<HistoryIndicatorQuery>,
) -> Result<Json<HistoryIndicatorBody>, ApiError> {
    let params = crate::indicators::RawParams {
        period: query.period.as_deref(),
        fast: query.fast.as_deref(),
        slow: query.slow.as_deref(),
        signal: query.signal.as_deref(),
        k: query.k.as_deref(),
    };
    let indicator = crate::indicators::Indicator::parse(&name, &params)
        .map_err(super::indicators::indicator_error)?;
    let (from, to, interval_text, interval) = bars_of(&query.from, &query.to, query.interval)?;
    let timeout = state.limits.timeout();
    let wanted = symbol.clone();
    let series = pool(&state)?
        .run(timeout, move |store, max_rows| {
            crate::history::query::indicator(
                store, &wanted, from, to, interval, indicator, max_rows,
            )
        })
        .await?;
    Ok(Json(HistoryIndicatorBody {
        symbol,
        interval: interval_text,
        indicator: indicator.name(),
        params: indicator,
        from_ms: from.div_euclid(1_000_000),
        to_ms: to.div_euclid(1_000_000),
        candles: series.candles,
        reason: series.reason(),
        series: series
            .points
            .iter()
            .map(|point| super::indicators::SeriesPoint {
                start_ms: point.start.div_euclid(1_000_000),
                value: point.value,
            })
            .collect(),
    }))
}
