//! The history's answers, with the live definitions (DESIGN.md): bars aligned to the epoch,
//! `[start, start + I)`; a window as of `at` holds the trades in `(at − W, at]`; open and close
//! are the earliest and latest trade, ties in arrival order.

use polars::prelude::*;
use serde::Serialize;

use super::{HistoryError, HistoryStore, MAX_CANDLES_PER_PAGE};
use crate::analytics::{Candle, WindowStats};

const NANOS_PER_MS: i64 = 1_000_000;

/// One bar of history (the live candle's fields; every history bar is closed).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HistoryCandle {
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
}

/// One page of history bars.
#[derive(Debug, Clone, PartialEq)]
pub struct CandlePage {
    /// The bars, oldest first.
    pub candles: Vec<HistoryCandle>,
    /// The start of the next bar when the page was cut at its limit: the `from` of the next
    /// page.
    pub next_ms: Option<i64>,
}

/// A symbol's statistics over one window as of a past instant.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryStats {
    /// The latest trade at or before the instant: its price and time (epoch ms).
    pub last: Option<(f64, i64)>,
    /// The symbol's trades in the store at or before the instant.
    pub trade_count: u64,
    /// The window `(at − W, at]`.
    pub window: WindowStats,
}

fn column_f64(frame: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, HistoryError> {
    Ok(frame
        .column(name)?
        .cast(&DataType::Float64)?
        .f64()?
        .iter()
        .collect())
}

fn column_i64(frame: &DataFrame, name: &str) -> Result<Vec<Option<i64>>, HistoryError> {
    Ok(frame
        .column(name)?
        .cast(&DataType::Int64)?
        .i64()?
        .iter()
        .collect())
}

/// Refuses a scan of more than `max_rows` rows: free when the index bounds the rows below the
/// limit, one counting pass over the range otherwise.
fn check_rows(
    store: &HistoryStore,
    symbol: &str,
    (from_ns, to_ns): (i64, i64),
    frame: &LazyFrame,
    max_rows: u64,
) -> Result<(), HistoryError> {
    if max_rows == u64::MAX || store.rows_at_most(symbol, from_ns, to_ns)? <= max_rows {
        return Ok(());
    }
    let counted = frame
        .clone()
        .select([len().cast(DataType::UInt64).alias("rows")])
        .collect()?;
    let rows = counted.column("rows")?.u64()?.get(0).unwrap_or(0);
    if rows > max_rows {
        return Err(HistoryError::TooManyRows {
            rows,
            limit: max_rows,
        });
    }
    Ok(())
}

/// The bars of `symbol` that start in `[from, to)` — `from` rounded down to its bar's start —
/// each whole, at most `limit` of them.
pub fn candles(
    store: &HistoryStore,
    symbol: &str,
    from_ns: i64,
    to_ns: i64,
    interval_ns: i64,
    limit: usize,
    max_rows: u64,
) -> Result<CandlePage, HistoryError> {
    let limit = limit.clamp(1, MAX_CANDLES_PER_PAGE);
    let (bars, next) = bars(store, symbol, from_ns, to_ns, interval_ns, limit, max_rows)?;
    Ok(CandlePage {
        candles: bars
            .iter()
            .map(|bar| HistoryCandle {
                start_ms: bar.start.div_euclid(NANOS_PER_MS),
                open: bar.open,
                high: bar.high,
                low: bar.low,
                close: bar.close,
                volume: bar.volume(),
                vwap: bar.vwap(),
                count: bar.count,
            })
            .collect(),
        next_ms: next.map(|start| start.div_euclid(NANOS_PER_MS)),
    })
}

/// Most bars an indicator may be computed over.
pub const MAX_INDICATOR_BARS: usize = 100_000;

/// `indicator` over the bars of `[from, to)` (as [`candles`] makes them): TA-Lib's conventions
/// over that bar series, so its first values come once enough bars have closed.
#[allow(clippy::too_many_arguments)]
pub fn indicator(
    store: &HistoryStore,
    symbol: &str,
    from_ns: i64,
    to_ns: i64,
    interval_ns: i64,
    indicator: crate::indicators::Indicator,
    max_rows: u64,
) -> Result<crate::indicators::IndicatorSeries, HistoryError> {
    let (bars, next) = bars(
        store,
        symbol,
        from_ns,
        to_ns,
        interval_ns,
        MAX_INDICATOR_BARS,
        max_rows,
    )?;
    if next.is_some() {
        return Err(HistoryError::BadQuery(format!(
            "the range holds more than {MAX_INDICATOR_BARS} bars: narrow it or widen the interval"
        )));
    }
    Ok(indicator.compute(&bars))
}

/// At most `limit` bars of `[from, to)`, and the start of the next one (ns) if there are more.
fn bars(
    store: &HistoryStore,
    symbol: &str,
    from_ns: i64,
    to_ns: i64,
    interval_ns: i64,
    limit: usize,
    max_rows: u64,
) -> Result<(Vec<Candle>, Option<i64>), HistoryError> {
    if interval_ns <= 0 {
        return Err(HistoryError::BadQuery("interval must be positive".into()));
    }
    if to_ns <= from_ns {
        return Err(HistoryError::BadQuery("to must be after from".into()));
    }
    let start = from_ns.div_euclid(interval_ns) * interval_ns;
    let end = to_ns
        .div_euclid(interval_ns)
        .saturating_add(i64::from(to_ns.rem_euclid(interval_ns) != 0))
        .saturating_mul(interval_ns);
    let trades = store.trades(symbol, start, end)?;
    check_rows(store, symbol, (start, end), &trades, max_rows)?;
    let bars = trades
        .sort(
            ["ts"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        // The bar's start, ⌊ts / I⌋·I: polars' integer division truncates, so a time before the
        // epoch that is not on a boundary steps one bar back.
        .with_column((col("ts") / lit(interval_ns) * lit(interval_ns)).alias("truncated"))
        .with_column(
            when(col("ts").lt(col("truncated")))
                .then(col("truncated") - lit(interval_ns))
                .otherwise(col("truncated"))
                .alias("start"),
        )
        .filter(col("start").lt(lit(to_ns)))
        .group_by_stable([col("start")])
        .agg([
            col("price").first().alias("open"),
            col("price").max().alias("high"),
            col("price").min().alias("low"),
            col("price").last().alias("close"),
            col("size").sum().alias("volume"),
            (col("price") * col("size")).sum().alias("notional"),
            len().cast(DataType::UInt64).alias("count"),
        ])
        .limit(u32::try_from(limit + 1).unwrap_or(u32::MAX))
        .collect()?;
    let starts = column_i64(&bars, "start")?;
    let [open, high, low, close, volume, notional] =
        ["open", "high", "low", "close", "volume", "notional"].map(|name| column_f64(&bars, name));
    let (open, high, low, close, volume, notional) =
        (open?, high?, low?, close?, volume?, notional?);
    let counts: Vec<Option<u64>> = bars.column("count")?.u64()?.iter().collect();
    let mut candles = Vec::with_capacity(starts.len().min(limit));
    let mut next = None;
    for row in 0..starts.len() {
        let Some(start) = starts[row] else { continue };
        if candles.len() == limit {
            next = Some(start);
            break;
        }
        candles.push(Candle::from_totals(
            start,
            open[row].unwrap_or(f64::NAN),
            high[row].unwrap_or(f64::NAN),
            low[row].unwrap_or(f64::NAN),
            close[row].unwrap_or(f64::NAN),
            volume[row].unwrap_or(0.0),
            notional[row].unwrap_or(0.0),
            counts[row].unwrap_or(0),
        ));
    }
    if candles.is_empty() && !store.holds(symbol)? {
        return Err(HistoryError::UnknownSymbol(symbol.to_string()));
    }
    Ok((candles, next))
}

/// `symbol`'s statistics over the window `(at − W, at]`, with its latest trade and trade count
/// as of `at`.
pub fn stats(
    store: &HistoryStore,
    symbol: &str,
    at_ns: i64,
    window_ns: i64,
    max_rows: u64,
) -> Result<HistoryStats, HistoryError> {
    if window_ns <= 0 {
        return Err(HistoryError::BadQuery("window must be positive".into()));
    }
    let after_at = at_ns.saturating_add(1);
    let window_from = at_ns.saturating_sub(window_ns).saturating_add(1);
    let trades = store.trades(symbol, window_from, after_at)?;
    check_rows(store, symbol, (window_from, after_at), &trades, max_rows)?;
    let result = trades
        .sort(
            ["ts"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .select([
            len().cast(DataType::UInt64).alias("count"),
            col("size").sum().alias("volume"),
            (col("price") * col("size")).sum().alias("notional"),
            col("price").first().alias("open"),
            col("price").max().alias("high"),
            col("price").min().alias("low"),
            col("price").last().alias("close"),
            col("price").mean().alias("mean"),
            col("price").std(1).alias("stddev"),
            col("ts").first().alias("first"),
            col("ts").last().alias("last"),
        ])
        .collect()?;
    let count = result.column("count")?.u64()?.get(0).unwrap_or(0);
    let f = |name: &str| -> Result<Option<f64>, HistoryError> {
        Ok(column_f64(&result, name)?.first().copied().flatten())
    };
    let i = |name: &str| -> Result<Option<i64>, HistoryError> {
        Ok(column_i64(&result, name)?.first().copied().flatten())
    };
    let window = if count == 0 {
        WindowStats::empty()
    } else {
        let volume = f("volume")?.unwrap_or(0.0);
        let notional = f("notional")?;
        let (open, close) = (f("open")?, f("close")?);
        WindowStats {
            count,
            volume,
            notional,
            vwap: (volume != 0.0)
                .then(|| notional.map(|n| n / volume))
                .flatten(),
            open,
            high: f("high")?,
            low: f("low")?,
            close,
            mean: f("mean")?,
            stddev: if count < 2 { None } else { f("stddev")? },
            change: open.zip(close).map(|(o, c)| c - o),
            change_pct: open.zip(close).map(|(o, c)| (c / o - 1.0) * 100.0),
            first_ms: i("first")?.map(|t| t.div_euclid(NANOS_PER_MS)),
            last_ms: i("last")?.map(|t| t.div_euclid(NANOS_PER_MS)),
        }
    };
    // Everything up to `at`: its count and latest trade. The files that end before the window
    // are counted from the index; the rest are scanned up to `at`. The latest trade is the
    // window's when it is not empty, else the scanned rest's, else in the latest counted file.
    let (counted, counted_latest_ms) = store.counted_before(symbol, window_from)?;
    let rest = store
        .trades_where(symbol, i64::MIN, after_at, |file| {
            !file.ends_before(window_from)
        })?
        .sort(
            ["ts"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .select([
            len().cast(DataType::UInt64).alias("count"),
            col("price").last().alias("price"),
            col("ts").last().alias("ts"),
        ])
        .collect()?;
    let trade_count = counted + rest.column("count")?.u64()?.get(0).unwrap_or(0);
    if trade_count == 0 && !store.holds(symbol)? {
        return Err(HistoryError::UnknownSymbol(symbol.to_string()));
    }
    let last_of = |frame: &DataFrame| -> Result<Option<(f64, i64)>, HistoryError> {
        Ok(column_f64(frame, "price")?
            .first()
            .copied()
            .flatten()
            .zip(column_i64(frame, "ts")?.first().copied().flatten())
            .map(|(price, ts)| (price, ts.div_euclid(NANOS_PER_MS))))
    };
    let last = match last_of(&rest)? {
        Some(last) => Some(last),
        None => match counted_latest_ms {
            // The counted files whose range ends at that millisecond hold it.
            Some(latest_ms) => {
                let from = latest_ms.saturating_mul(NANOS_PER_MS);
                let tail = store
                    .trades_where(symbol, from, window_from, |file| {
                        file.ends_before(window_from)
                    })?
                    .sort(
                        ["ts"],
                        SortMultipleOptions::default().with_maintain_order(true),
                    )
                    .select([
                        col("price").last().alias("price"),
                        col("ts").last().alias("ts"),
                    ])
                    .collect()?;
                last_of(&tail)?
            }
            None => None,
        },
    };
    Ok(HistoryStats {
        last,
        trade_count,
        window,
    })
}
