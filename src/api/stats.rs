//! Symbols and their rolling statistics.
//!
//! - `GET /v1/symbols`: every symbol with last price, last trade time and trade count.
//! - `GET /v1/symbols/{symbol}/stats[?window=1m]`: every window (or one) of a symbol.
//! - `GET /v1/stats?window=1m&sort=change_pct&order=desc&limit=10`: one window of every symbol,
//!   ranked (top movers, most active).

use std::cmp::Ordering;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::{ApiError, ApiPath, ApiQuery, AppState};
use crate::analytics::{SymbolSnapshot, WindowSpec, WindowStats};
use crate::model::{Symbol, Timestamp, to_millis};

/// Rows returned by `/v1/stats` when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest accepted `limit`.
pub const MAX_LIMIT: usize = 10_000;

/// A symbol in `GET /v1/symbols`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SymbolSummary {
    /// The symbol.
    #[schema(value_type = String)]
    pub symbol: Symbol,
    /// Latest price (null before the first trade).
    pub last_price: Option<f64>,
    /// Event time of the latest trade, epoch ms.
    pub last_ms: Option<i64>,
    /// Trades since start.
    pub trade_count: u64,
}

/// The body of `GET /v1/symbols`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SymbolList {
    /// Stream time of the answer, epoch ms.
    pub as_of_ms: Option<i64>,
    /// Number of symbols.
    pub count: usize,
    /// The symbols, sorted.
    pub symbols: Vec<SymbolSummary>,
}

fn as_of_ms(as_of: Option<Timestamp>) -> Option<i64> {
    as_of.map(to_millis)
}

/// `GET /v1/symbols`.
#[utoipa::path(
    get,
    path = "/v1/symbols",
    tag = "statistics",
    summary = "Every symbol with its latest price",
    params(NoQuery),
    responses((status = 200, description = "The symbols, sorted.", body = SymbolList)),
)]
pub async fn symbols(State(state): State<AppState>) -> Json<SymbolList> {
    let (snapshots, as_of) = state.snapshots.all();
    let symbols: Vec<SymbolSummary> = snapshots
        .iter()
        .map(|snapshot| SymbolSummary {
            symbol: snapshot.symbol.clone(),
            last_price: snapshot.last_price,
            last_ms: snapshot.last_ts.map(to_millis),
            trade_count: snapshot.trade_count,
        })
        .collect();
    Json(SymbolList {
        as_of_ms: as_of_ms(as_of),
        count: symbols.len(),
        symbols,
    })
}

/// Query of `GET /v1/symbols/{symbol}/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SymbolStatsQuery {
    /// One configured window, by its label or any spelling of its duration (`1m`, `60s`); all
    /// windows when absent.
    pub window: Option<String>,
}

/// Windows keyed by label, in configured order.
#[derive(Debug)]
pub struct WindowMap(Vec<(String, WindowStats)>);

impl Serialize for WindowMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (label, stats) in &self.0 {
            map.serialize_entry(label, stats)?;
        }
        map.end()
    }
}

/// The body of `GET /v1/symbols/{symbol}/stats`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SymbolStats {
    /// The symbol.
    #[schema(value_type = String)]
    pub symbol: Symbol,
    /// Stream time the statistics are exact for, epoch ms.
    pub as_of_ms: i64,
    /// Latest price (null before the first trade).
    pub last_price: Option<f64>,
    /// Event time of the latest trade, epoch ms.
    pub last_ms: Option<i64>,
    /// Trades since start.
    pub trade_count: u64,
    /// Statistics per window, keyed by the window's configured label, in configured order.
    #[schema(value_type = std::collections::BTreeMap<String, WindowStats>)]
    pub windows: WindowMap,
    /// The latest best bid and offer (the body of `GET /v1/symbols/{symbol}/quote`); absent
    /// until the symbol's first quote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<QuoteView>,
}

/// Finds a configured window's position: by its configured label, or by any spelling of the
/// same duration (`60s` for `1m`), as candle intervals and alert rules are found.
fn window_index(state: &AppState, label: &str) -> Result<usize, ApiError> {
    state
        .windows
        .iter()
        .position(|w| w.label == label)
        .or_else(|| {
            let length = crate::units::parse_duration("window", label)
                .ok()?
                .as_nanos();
            state
                .windows
                .iter()
                .position(|w| u128::try_from(w.length).is_ok_and(|l| l == length))
        })
        .ok_or_else(|| {
            let known: Vec<&str> = state.windows.iter().map(|w| w.label.as_str()).collect();
            ApiError::BadParameter(format!(
                "unknown window {label:?}; configured windows: {}",
                known.join(", ")
            ))
        })
}

/// `GET /v1/symbols/{symbol}/stats`.
#[utoipa::path(
    get,
    path = "/v1/symbols/{symbol}/stats",
    tag = "statistics",
    summary = "Rolling statistics of one symbol, every window or one",
    params(("symbol" = String, Path, description = "The symbol, as its venue spells it."), SymbolStatsQuery),
    responses(
        (status = 200, description = "The statistics as of the stream clock.", body = SymbolStats),
        (status = 404, description = "`unknown_symbol`.", body = ErrorBody),
    ),
)]
pub async fn symbol_stats(
    State(state): State<AppState>,
    ApiPath(symbol): ApiPath<String>,
    ApiQuery(query): ApiQuery<SymbolStatsQuery>,
) -> Result<Json<SymbolStats>, ApiError> {
    let only = query
        .window
        .as_deref()
        .map(|label| window_index(&state, label))
        .transpose()?;
    let (snapshot, as_of) = state
        .snapshots
        .get(&symbol)
        .ok_or_else(|| ApiError::UnknownSymbol(symbol.clone()))?;
    Ok(Json(SymbolStats::new(
        &snapshot,
        as_of,
        &state.windows,
        only,
    )))
}

impl SymbolStats {
    /// The statistics of `snapshot` as of stream time `as_of`: every window, or only window
    /// `only`.
    pub fn new(
        snapshot: &SymbolSnapshot,
        as_of: Timestamp,
        windows: &[WindowSpec],
        only: Option<usize>,
    ) -> Self {
        let windows = windows
            .iter()
            .zip(snapshot.windows.iter())
            .enumerate()
            .filter(|(index, _)| only.is_none_or(|only| only == *index))
            .map(|(_, (spec, stats))| (spec.label.clone(), stats.clone()))
            .collect();
        SymbolStats {
            symbol: snapshot.symbol.clone(),
            as_of_ms: to_millis(as_of),
            last_price: snapshot.last_price,
            last_ms: snapshot.last_ts.map(to_millis),
            trade_count: snapshot.trade_count,
            windows: WindowMap(windows),
            quote: snapshot.quote.as_deref().map(QuoteView::new),
        }
    }
}

/// The body of `GET /v1/symbols/{symbol}/quote`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Quote)]
pub struct QuoteView {
    /// The symbol.
    #[schema(value_type = String)]
    pub symbol: Symbol,
    /// Best bid.
    pub bid: f64,
    /// Size at the best bid (null when the venue does not send it).
    pub bid_size: Option<f64>,
    /// Best ask.
    pub ask: f64,
    /// Size at the best ask (null when the venue does not send it).
    pub ask_size: Option<f64>,
    /// (bid + ask) / 2.
    pub mid: f64,
    /// ask − bid.
    pub spread: f64,
    /// spread / mid in basis points.
    pub spread_bps: f64,
    /// Event time of the quote (the venue's, or its feed's latest exchange time), epoch ms.
    pub ts_ms: Option<i64>,
    /// When it was received, epoch ms.
    pub receive_ms: i64,
}

/// `GET /v1/symbols/{symbol}/quote`: the latest best bid and offer.
#[utoipa::path(
    get,
    path = "/v1/symbols/{symbol}/quote",
    tag = "statistics",
    summary = "The latest best bid and offer",
    params(("symbol" = String, Path, description = "The symbol."), NoQuery),
    responses(
        (status = 200, description = "The latest quote.", body = QuoteView),
        (status = 404, description = "`unknown_symbol`, or `no_quote` before the symbol's first quote.", body = ErrorBody),
    ),
)]
pub async fn symbol_quote(
    State(state): State<AppState>,
    ApiPath(symbol): ApiPath<String>,
    ApiQuery(_): ApiQuery<NoQuery>,
) -> Result<Json<QuoteView>, ApiError> {
    let (snapshot, _) = state
        .snapshots
        .get(&symbol)
        .ok_or_else(|| ApiError::UnknownSymbol(symbol.clone()))?;
    let quote = snapshot
        .quote
        .as_ref()
        .ok_or_else(|| ApiError::NoQuote(symbol.clone()))?;
    Ok(Json(QuoteView::new(quote)))
}

impl QuoteView {
    /// The view of `quote`, with its mid and spread.
    pub fn new(quote: &crate::model::Quote) -> Self {
        let mid = (quote.bid + quote.ask) / 2.0;
        let spread = quote.ask - quote.bid;
        QuoteView {
            symbol: quote.symbol.clone(),
            bid: quote.bid,
            bid_size: quote.bid_size,
            ask: quote.ask,
            ask_size: quote.ask_size,
            mid,
            spread,
            spread_bps: if mid > 0.0 {
                spread / mid * 10_000.0
            } else {
                0.0
            },
            ts_ms: quote.exchange_ts.map(to_millis),
            receive_ms: to_millis(quote.receive_ts),
        }
    }
}

/// An endpoint without query parameters (unknown keys are a 400).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NoQuery {}

/// Fields `/v1/stats` can sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    /// Symbol name.
    Symbol,
    /// Trade count.
    Count,
    /// Volume.
    Volume,
    /// Notional.
    Notional,
    /// VWAP.
    Vwap,
    /// Open.
    Open,
    /// High.
    High,
    /// Low.
    Low,
    /// Close.
    Close,
    /// Mean.
    Mean,
    /// Standard deviation.
    Stddev,
    /// Change.
    Change,
    /// Change in percent.
    ChangePct,
    /// Earliest trade time.
    FirstMs,
    /// Latest trade time.
    LastMs,
}

impl SortField {
    fn value(self, stats: &WindowStats) -> Option<f64> {
        match self {
            SortField::Symbol => None,
            SortField::Count => Some(stats.count as f64),
            SortField::Volume => Some(stats.volume),
            SortField::Notional => stats.notional,
            SortField::Vwap => stats.vwap,
            SortField::Open => stats.open,
            SortField::High => stats.high,
            SortField::Low => stats.low,
            SortField::Close => stats.close,
            SortField::Mean => stats.mean,
            SortField::Stddev => stats.stddev,
            SortField::Change => stats.change,
            SortField::ChangePct => stats.change_pct,
            SortField::FirstMs => stats.first_ms.map(|v| v as f64),
            SortField::LastMs => stats.last_ms.map(|v| v as f64),
        }
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// Query of `GET /v1/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AllStatsQuery {
    /// One configured window, by label or any spelling of its duration (default: the first
    /// configured window).
    pub window: Option<String>,
    /// Sort field (default `symbol`).
    pub sort: Option<SortField>,
    /// Sort order (default `asc` for `symbol`, `desc` otherwise).
    pub order: Option<SortOrder>,
    /// Rows to return, 1 to 10000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

/// A row of `GET /v1/stats`: the symbol, its latest price and the window's statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct RankedStats {
    /// The symbol.
    #[schema(value_type = String)]
    pub symbol: Symbol,
    /// Latest price.
    pub last_price: Option<f64>,
    /// The window's statistics.
    #[serde(flatten)]
    pub stats: WindowStats,
}

/// The body of `GET /v1/stats`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllStats {
    /// Stream time, epoch ms.
    pub as_of_ms: Option<i64>,
    /// The window.
    pub window: String,
    /// The sort field.
    pub sort: SortField,
    /// The sort order.
    pub order: SortOrder,
    /// Symbols before the limit was applied.
    pub total: usize,
    /// The ranked rows.
    pub symbols: Vec<RankedStats>,
}

/// `GET /v1/stats`.
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "statistics",
    summary = "One window of every symbol, ranked (top movers)",
    params(AllStatsQuery),
    responses((status = 200, description = "The ranked rows, nulls last.", body = AllStats)),
)]
pub async fn all_stats(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AllStatsQuery>,
) -> Result<Json<AllStats>, ApiError> {
    let index = match query.window.as_deref() {
        Some(label) => window_index(&state, label)?,
        None => 0,
    };
    let limit = match query.limit {
        None => DEFAULT_LIMIT,
        Some(limit) => usize::try_from(limit)
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                ApiError::BadParameter(format!("limit {limit} is out of range 1..={MAX_LIMIT}"))
            })?,
    };
    let sort = query.sort.unwrap_or(SortField::Symbol);
    let order = query.order.unwrap_or(if sort == SortField::Symbol {
        SortOrder::Asc
    } else {
        SortOrder::Desc
    });
    let (snapshots, as_of) = state.snapshots.all();
    let mut rows: Vec<&Arc<SymbolSnapshot>> = snapshots.iter().collect();
    rows.sort_by(|a, b| compare(a, b, index, sort, order));
    let total = rows.len();
    let symbols = rows
        .into_iter()
        .take(limit)
        .filter_map(|snapshot| {
            snapshot.windows.get(index).map(|stats| RankedStats {
                symbol: snapshot.symbol.clone(),
                last_price: snapshot.last_price,
                stats: stats.clone(),
            })
        })
        .collect();
    Ok(Json(AllStats {
        as_of_ms: as_of_ms(as_of),
        window: state.windows[index].label.clone(),
        sort,
        order,
        total,
        symbols,
    }))
}

/// Orders two snapshots by one window's field; nulls last in either order, ties by symbol.
fn compare(
    a: &SymbolSnapshot,
    b: &SymbolSnapshot,
    index: usize,
    sort: SortField,
    order: SortOrder,
) -> Ordering {
    let by_symbol = a.symbol.cmp(&b.symbol);
    if sort == SortField::Symbol {
        return match order {
            SortOrder::Asc => by_symbol,
            SortOrder::Desc => by_symbol.reverse(),
        };
    }
    let value = |s: &SymbolSnapshot| s.windows.get(index).and_then(|w| sort.value(w));
    match (value(a), value(b)) {
        (Some(x), Some(y)) => {
            let ordering = x.total_cmp(&y);
            let ordering = match order {
                SortOrder::Asc => ordering,
                SortOrder::Desc => ordering.reverse(),
            };
            ordering.then(by_symbol)
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => by_symbol,
    }
}
