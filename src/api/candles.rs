//! Candles and the indicators computed over them.
//!
//! - `GET /v1/symbols/{symbol}/candles?interval=1m&limit=100`: the last bars, oldest first, the
//!   forming one last with `"closed": false`.
//! - `GET /v1/symbols/{symbol}/indicators/{name}?interval=1m&period=14[&series=N]`: one
//!   indicator over the closed bars of an interval, through the shared cache.
//! - `GET /v1/symbols/{symbol}/indicators?interval=1m`: every indicator with its defaults.
//!
//! Whether a bar has closed is decided with the stream clock the snapshot is exact for, so a bar
//! closes for readers the moment the clock reaches its end, whether or not its symbol trades
//! again. Without `interval`, `1m` is used if configured, else the first configured interval.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::{ApiError, ApiPath, ApiQuery, AppState};
use crate::analytics::{Candle, CandleView, SymbolSnapshot};
use crate::config::{MAX_CANDLE_HISTORY, parse_duration};
use crate::indicators::cache::CacheKey;
use crate::indicators::{Indicator, IndicatorError, IndicatorSeries, IndicatorValue, RawParams};
use crate::model::{Symbol, Timestamp, to_millis};

/// Bars returned when no `limit` is given.
pub const DEFAULT_CANDLE_LIMIT: usize = 100;
/// Largest accepted `limit` (every closed bar a symbol can hold, plus the forming one).
pub const MAX_CANDLE_LIMIT: usize = MAX_CANDLE_HISTORY + 1;

/// The interval used when a request names none, if configured.
const PREFERRED_INTERVAL: &str = "1m";

/// Query of `GET /v1/symbols/{symbol}/candles`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CandlesQuery {
    /// A configured interval, by label or any spelling of its duration (default `1m` if
    /// configured, else the first).
    pub interval: Option<String>,
    /// Most bars returned, the forming one included: 1 to 100001 (default 100).
    #[param(minimum = 1, maximum = 100001)]
    pub limit: Option<i64>,
}

/// The parameters of an indicator, its defaults filled in: `period` (SMA, EMA, RSI, BBANDS,
/// ATR), `fast`, `slow`, `signal` (MACD), `k` (BBANDS). Only for the description: the values are
/// written by [`Indicator`]'s own serialization.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct IndicatorParams {
    /// Bars (SMA, EMA, RSI, BBANDS, ATR).
    period: Option<usize>,
    /// Fast EMA period (MACD).
    fast: Option<usize>,
    /// Slow EMA period (MACD).
    slow: Option<usize>,
    /// Signal EMA period (MACD).
    signal: Option<usize>,
    /// Standard deviations (BBANDS).
    k: Option<f64>,
}

/// One bar in a response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Candle)]
pub struct CandleBody {
    /// Start of the bar, epoch ms.
    pub start_ms: i64,
    /// First price.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Last price.
    pub close: f64,
    /// Sum of sizes.
    pub volume: f64,
    /// Volume-weighted average price (null if the volume is zero).
    pub vwap: Option<f64>,
    /// Trades.
    pub count: u64,
    /// Whether the stream clock has reached the bar's end.
    pub closed: bool,
}

impl CandleBody {
    fn new(candle: &Candle, closed: bool) -> Self {
        CandleBody {
            start_ms: candle.start_ms(),
            open: candle.open,
            high: candle.high,
            low: candle.low,
            close: candle.close,
            volume: candle.volume(),
            vwap: candle.vwap(),
            count: candle.count,
            closed,
        }
    }
}

/// The body of `GET /v1/symbols/{symbol}/candles`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Candles)]
pub struct CandlesBody {
    /// The symbol.
    #[schema(value_type = String)]
    pub symbol: Symbol,
    /// The interval's label.
    pub interval: String,
    /// Stream time the answer is exact for, epoch ms.
    pub as_of_ms: i64,
    /// The bars, oldest first.
    pub candles: Vec<CandleBody>,
}

/// Finds the interval a request names (or the default one): by its configured label, or by any
/// spelling of the same duration (`60s` for `1m`).
fn interval_index(state: &AppState, label: Option<&str>) -> Result<usize, ApiError> {
    let intervals = &state.intervals;
    let found = match label {
        Some(label) => intervals.iter().position(|i| i.label == label).or_else(|| {
            let length = parse_duration("interval", label).ok()?.as_nanos();
            intervals
                .iter()
                .position(|i| u128::try_from(i.length).is_ok_and(|l| l == length))
        }),
        None => intervals
            .iter()
            .position(|i| i.label == PREFERRED_INTERVAL)
            .or(if intervals.is_empty() { None } else { Some(0) }),
    };
    found.ok_or_else(|| {
        let known: Vec<&str> = intervals.iter().map(|i| i.label.as_str()).collect();
        ApiError::BadParameter(format!(
            "unknown interval {:?}; configured intervals: {}",
            label.unwrap_or_default(),
            known.join(", ")
        ))
    })
}

fn bounded(name: &str, value: Option<i64>, default: usize, max: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(value) => usize::try_from(value)
            .ok()
            .filter(|v| (1..=max).contains(v))
            .ok_or_else(|| {
                ApiError::BadParameter(format!("{name} {value} is out of range 1..={max}"))
            }),
    }
}

/// A symbol's snapshot, the clock it is exact for, and its candles for one interval.
struct SymbolCandles {
    snapshot: Arc<SymbolSnapshot>,
    clock: Timestamp,
    interval: usize,
}

impl SymbolCandles {
    fn load(state: &AppState, symbol: &str, interval: usize) -> Result<Self, ApiError> {
        let (snapshot, clock) = state
            .snapshots
            .get(symbol)
            .ok_or_else(|| ApiError::UnknownSymbol(symbol.to_string()))?;
        if snapshot.candles.get(interval).is_none() {
            return Err(ApiError::Internal(format!(
                "no candles for interval #{interval} of {symbol}"
            )));
        }
        Ok(SymbolCandles {
            snapshot,
            clock,
            interval,
        })
    }

    fn view(&self) -> &CandleView {
        // Checked in `load`.
        &self.snapshot.candles[self.interval]
    }

    /// The indicator over the closed bars, from the cache or computed once for every reader.
    async fn indicator(&self, state: &AppState, indicator: Indicator) -> Arc<IndicatorSeries> {
        let view = self.view();
        let key = CacheKey {
            symbol: self.snapshot.symbol.clone(),
            interval: self.interval,
            indicator,
            sequence: view.sequence(self.clock),
        };
        state
            .indicators
            .get_or_compute(key, || {
                let closed: Vec<Candle> = view.closed(self.clock).copied().collect();
                indicator.compute(&closed)
            })
            .await
    }

    fn last_closed_ms(&self) -> Option<i64> {
        self.view()
            .closed(self.clock)
            .next_back()
            .map(Candle::start_ms)
    }
}

/// `GET /v1/symbols/{symbol}/candles`.
#[utoipa::path(
    get,
    path = "/v1/symbols/{symbol}/candles",
    tag = "candles",
    summary = "The last OHLCV bars of one interval, the forming one last",
    params(("symbol" = String, Path, description = "The symbol."), CandlesQuery),
    responses(
        (status = 200, description = "The bars, oldest first.", body = CandlesBody),
        (status = 404, description = "`unknown_symbol`.", body = ErrorBody),
    ),
)]
pub async fn candles(
    State(state): State<AppState>,
    ApiPath(symbol): ApiPath<String>,
    ApiQuery(query): ApiQuery<CandlesQuery>,
) -> Result<Json<CandlesBody>, ApiError> {
    let interval = interval_index(&state, query.interval.as_deref())?;
    let limit = bounded("limit", query.limit, DEFAULT_CANDLE_LIMIT, MAX_CANDLE_LIMIT)?;
    let loaded = SymbolCandles::load(&state, &symbol, interval)?;
    let candles = loaded
        .view()
        .recent(loaded.clock, limit)
        .iter()
        .map(|(candle, closed)| CandleBody::new(candle, *closed))
        .collect();
    Ok(Json(CandlesBody {
        symbol: loaded.snapshot.symbol.clone(),
        interval: state.intervals[interval].label.clone(),
        as_of_ms: to_millis(loaded.clock),
        candles,
    }))
}

/// Query of `GET /v1/symbols/{symbol}/indicators/{name}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IndicatorQuery {
    /// A configured interval, by label or any spelling of its duration.
    pub interval: Option<String>,
    /// Period (SMA, EMA, RSI, BBANDS, ATR).
    pub period: Option<String>,
    /// Fast EMA period (MACD).
    pub fast: Option<String>,
    /// Slow EMA period (MACD).
    pub slow: Option<String>,
    /// Signal EMA period (MACD).
    pub signal: Option<String>,
    /// Standard deviations (BBANDS).
    pub k: Option<String>,
    /// Also return the last N values (0 to 100000).
    #[param(minimum = 0, maximum = 100000)]
    pub series: Option<i64>,
}

/// One value of an indicator's series.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeriesPoint {
    /// Start of the candle the value belongs to, epoch ms.
    pub start_ms: i64,
    /// The value.
    pub value: IndicatorValue,
}

/// The body of `GET /v1/symbols/{symbol}/indicators/{name}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IndicatorResult)]
pub struct IndicatorBody {
    /// The symbol.
    #[schema(value_type = String)]
    pub symbol: Symbol,
    /// The interval's label.
    pub interval: String,
    /// The indicator's name.
    pub indicator: &'static str,
    /// Its parameters, defaults filled in.
    #[schema(value_type = IndicatorParams)]
    pub params: Indicator,
    /// The stream clock the answer is as of, epoch ms.
    pub as_of_ms: i64,
    /// Start of the last closed candle (the one the value belongs to), epoch ms; null before
    /// the first closes.
    pub bar_ms: Option<i64>,
    /// Closed candles the value is computed over.
    pub candles: usize,
    /// The latest value: a number, an object for multi-output indicators, or null.
    pub value: Option<IndicatorValue>,
    /// Why `value` is null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last values, oldest first, when `series` was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Vec<SeriesPoint>>,
}

fn indicator_error(error: IndicatorError) -> ApiError {
    match error {
        IndicatorError::Unknown(_) => ApiError::UnknownIndicator(error.to_string()),
        _ => ApiError::BadParameter(error.to_string()),
    }
}

/// `GET /v1/symbols/{symbol}/indicators/{name}`.
#[utoipa::path(
    get,
    path = "/v1/symbols/{symbol}/indicators/{name}",
    tag = "indicators",
    summary = "One indicator over the closed bars of an interval (TA-Lib's definitions)",
    params(
        ("symbol" = String, Path, description = "The symbol."),
        ("name" = String, Path, description = "`sma`, `ema`, `rsi`, `macd`, `bbands` or `atr`."),
        IndicatorQuery,
    ),
    responses(
        (status = 200, description = "The latest value (null with a reason when there are too few bars), and the series if asked.", body = IndicatorBody),
        (status = 400, description = "`unknown_indicator`, or `bad_parameter` for a parameter out of range.", body = ErrorBody),
        (status = 404, description = "`unknown_symbol`.", body = ErrorBody),
    ),
)]
pub async fn indicator(
    State(state): State<AppState>,
    ApiPath((symbol, name)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<IndicatorQuery>,
) -> Result<Json<IndicatorBody>, ApiError> {
    let params = RawParams {
        period: query.period.as_deref(),
        fast: query.fast.as_deref(),
        slow: query.slow.as_deref(),
        signal: query.signal.as_deref(),
        k: query.k.as_deref(),
    };
    let indicator = Indicator::parse(&name, &params).map_err(indicator_error)?;
    let interval = interval_index(&state, query.interval.as_deref())?;
    let series_len = query
        .series
        .map(|n| bounded("series", Some(n), 0, MAX_CANDLE_HISTORY))
        .transpose()?;
    let loaded = SymbolCandles::load(&state, &symbol, interval)?;
    let computed = loaded.indicator(&state, indicator).await;
    let series = series_len.map(|n| {
        let skip = computed.points.len().saturating_sub(n);
        computed.points[skip..]
            .iter()
            .map(|point| SeriesPoint {
                start_ms: to_millis(point.start),
                value: point.value,
            })
            .collect()
    });
    Ok(Json(IndicatorBody {
        symbol: loaded.snapshot.symbol.clone(),
        interval: state.intervals[interval].label.clone(),
        indicator: indicator.name(),
        params: indicator,
        as_of_ms: to_millis(loaded.clock),
        bar_ms: loaded.last_closed_ms(),
        candles: computed.candles,
        value: computed.last().map(|p| p.value),
        reason: computed.reason(),
        series,
    }))
}

/// Query of `GET /v1/symbols/{symbol}/indicators`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AllIndicatorsQuery {
    /// A configured interval, by label or any spelling of its duration.
    pub interval: Option<String>,
}

/// One indicator in `GET /v1/symbols/{symbol}/indicators`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IndicatorEntry {
    /// Its parameters (the defaults).
    #[schema(value_type = IndicatorParams)]
    pub params: Indicator,
    /// The latest value, or null.
    pub value: Option<IndicatorValue>,
    /// Why `value` is null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Indicators keyed by name, in the order of [`crate::indicators::NAMES`].
#[derive(Debug)]
pub struct IndicatorMap(Vec<(&'static str, IndicatorEntry)>);

impl Serialize for IndicatorMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, entry) in &self.0 {
            map.serialize_entry(name, entry)?;
        }
        map.end()
    }
}

/// The body of `GET /v1/symbols/{symbol}/indicators`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IndicatorResults)]
pub struct AllIndicatorsBody {
    /// The symbol.
    #[schema(value_type = String)]
    pub symbol: Symbol,
    /// The interval's label.
    pub interval: String,
    /// The stream clock the answer is as of, epoch ms.
    pub as_of_ms: i64,
    /// Start of the last closed candle, epoch ms; null before the first closes.
    pub bar_ms: Option<i64>,
    /// Closed candles the values are computed over.
    pub candles: usize,
    /// Every indicator with its default parameters, keyed by name (`sma`, `ema`, `rsi`, `macd`,
    /// `bbands`, `atr`).
    #[schema(value_type = std::collections::BTreeMap<String, IndicatorEntry>)]
    pub indicators: IndicatorMap,
}

/// `GET /v1/symbols/{symbol}/indicators`.
#[utoipa::path(
    get,
    path = "/v1/symbols/{symbol}/indicators",
    tag = "indicators",
    summary = "Every indicator with its default parameters",
    params(("symbol" = String, Path, description = "The symbol."), AllIndicatorsQuery),
    responses(
        (status = 200, description = "The latest value of each.", body = AllIndicatorsBody),
        (status = 404, description = "`unknown_symbol`.", body = ErrorBody),
    ),
)]
pub async fn all_indicators(
    State(state): State<AppState>,
    ApiPath(symbol): ApiPath<String>,
    ApiQuery(query): ApiQuery<AllIndicatorsQuery>,
) -> Result<Json<AllIndicatorsBody>, ApiError> {
    let interval = interval_index(&state, query.interval.as_deref())?;
    let loaded = SymbolCandles::load(&state, &symbol, interval)?;
    let mut entries = Vec::with_capacity(crate::indicators::NAMES.len());
    for indicator in Indicator::defaults() {
        let computed = loaded.indicator(&state, indicator).await;
        entries.push((
            indicator.name(),
            IndicatorEntry {
                params: indicator,
                value: computed.last().map(|p| p.value),
                reason: computed.reason(),
            },
        ));
    }
    Ok(Json(AllIndicatorsBody {
        symbol: loaded.snapshot.symbol.clone(),
        interval: state.intervals[interval].label.clone(),
        as_of_ms: to_millis(loaded.clock),
        bar_ms: loaded.last_closed_ms(),
        candles: loaded.view().closed_count(loaded.clock),
        indicators: IndicatorMap(entries),
    }))
}
