//! Candles: `GET /v1/symbols/{symbol}/candles?interval=1m&limit=100`, the last bars, oldest
//! first, the forming one last with `"closed": false`; and the loading of a symbol's candles
//! that the indicators ([`super::indicators`]) share.
//!
//! Whether a bar has closed is decided with the stream clock the snapshot is exact for, so a bar
//! closes for readers the moment the clock reaches its end, whether or not its symbol trades
//! again. Without `interval`, `1m` is used if configured, else the first configured interval.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::{ApiError, ApiPath, ApiQuery, AppState};
use crate::analytics::candles::MAX_CANDLE_HISTORY;
use crate::analytics::{Candle, CandleView, SymbolSnapshot};
use crate::indicators::cache::CacheKey;
use crate::indicators::{Indicator, IndicatorSeries};
use crate::model::{Symbol, Timestamp, to_millis};
use crate::units::parse_duration;

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
pub(super) fn interval_index(state: &AppState, label: Option<&str>) -> Result<usize, ApiError> {
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

/// `value` within `0..=max` (`default` when absent), or a 400 naming `name`.
pub(super) fn bounded(
    name: &str,
    value: Option<i64>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
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
pub(super) struct SymbolCandles {
    pub(super) snapshot: Arc<SymbolSnapshot>,
    pub(super) clock: Timestamp,
    interval: usize,
}

impl SymbolCandles {
    /// The snapshot of `symbol` with interval `interval`'s candles; 404 for an unknown symbol.
    pub(super) fn load(state: &AppState, symbol: &str, interval: usize) -> Result<Self, ApiError> {
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

    /// The interval's candles.
    pub(super) fn view(&self) -> &CandleView {
        // Checked in `load`.
        &self.snapshot.candles[self.interval]
    }

    /// The indicator over the closed bars, from the cache or computed once for every reader.
    pub(super) async fn indicator(
        &self,
        state: &AppState,
        indicator: Indicator,
    ) -> Arc<IndicatorSeries> {
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

    /// Start of the last closed bar, epoch ms.
    pub(super) fn last_closed_ms(&self) -> Option<i64> {
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
