//! Indicators over the closed candles of an interval, through the shared cache:
//!
//! - `GET /v1/symbols/{symbol}/indicators/{name}?interval=1m&period=14[&series=N]`: one
//!   indicator.
//! - `GET /v1/symbols/{symbol}/indicators?interval=1m`: every indicator with its defaults.

use axum::Json;
use axum::extract::State;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};

use super::candles::{SymbolCandles, bounded, interval_index};
use super::error::ErrorBody;
use super::{ApiError, ApiPath, ApiQuery, AppState};
use crate::analytics::candles::MAX_CANDLE_HISTORY;
use crate::indicators::{Indicator, IndicatorError, IndicatorValue, RawParams};
use crate::model::{Symbol, to_millis};

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

/// The API error of an invalid indicator request.
pub(super) fn indicator_error(error: IndicatorError) -> ApiError {
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
