//! The polars batch oracle: rolling-window statistics and candles computed independently of the
//! product, and the comparisons with what the service answers.

use std::collections::HashMap;

use super::*;
use polars::prelude::*;
use tickstream::analytics::{WindowSpec, WindowStats};
use tickstream::model::Trade;

/// The trades as a polars frame: `ts_ms` (i64), `symbol`, `price`, `size`.
pub fn trades_frame(trades: &[Trade]) -> DataFrame {
    df!(
        "ts_ms" => trades.iter().map(|t| t.exchange_ts / 1_000_000).collect::<Vec<i64>>(),
        "symbol" => trades.iter().map(|t| t.symbol.as_str().to_string()).collect::<Vec<String>>(),
        "price" => trades.iter().map(|t| t.price).collect::<Vec<f64>>(),
        "size" => trades.iter().map(|t| t.size).collect::<Vec<f64>>(),
    )
    .expect("frame")
}

/// The aggregations DESIGN.md defines, as polars expressions.
fn aggregations() -> Vec<Expr> {
    vec![
        len().cast(DataType::Int64).alias("count"),
        col("size").sum().alias("volume"),
        (col("price") * col("size")).sum().alias("notional"),
        col("price").first().alias("open"),
        col("price").max().alias("high"),
        col("price").min().alias("low"),
        col("price").last().alias("close"),
        col("price").mean().alias("mean"),
        col("price").std(1).alias("stddev"),
        col("ts_ms").first().alias("first_ms"),
        col("ts_ms").last().alias("last_ms"),
    ]
}

/// A column cast to f64.
fn f64_column(frame: &DataFrame, name: &str) -> Vec<Option<f64>> {
    frame
        .column(name)
        .expect(name)
        .cast(&DataType::Float64)
        .expect("cast")
        .f64()
        .expect("f64")
        .iter()
        .collect()
}

/// A column cast to i64.
fn i64_column(frame: &DataFrame, name: &str) -> Vec<Option<i64>> {
    frame
        .column(name)
        .expect(name)
        .cast(&DataType::Int64)
        .expect("cast")
        .i64()
        .expect("i64")
        .iter()
        .collect()
}

/// A string column, no nulls.
fn str_column(frame: &DataFrame, name: &str) -> Vec<String> {
    frame
        .column(name)
        .expect(name)
        .str()
        .expect("str")
        .iter()
        .map(|s| s.expect(name).to_string())
        .collect()
}

/// Reads the aggregated frame into `(symbol, key) → stats`, `key` taken from `key_column`.
fn collect_stats(
    frame: &DataFrame,
    key_column: Option<&str>,
) -> HashMap<(String, i64), WindowStats> {
    let f64s = |name: &str| f64_column(frame, name);
    let i64s = |name: &str| i64_column(frame, name);
    let symbols = str_column(frame, "symbol");
    let keys = key_column.map(i64s);
    let (count, volume, notional) = (i64s("count"), f64s("volume"), f64s("notional"));
    let (open, high, low, close) = (f64s("open"), f64s("high"), f64s("low"), f64s("close"));
    let (mean, stddev) = (f64s("mean"), f64s("stddev"));
    let (first_ms, last_ms) = (i64s("first_ms"), i64s("last_ms"));
    let mut out = HashMap::new();
    for row in 0..frame.height() {
        let volume_row = volume[row].expect("volume");
        let notional_row = notional[row].expect("notional");
        let stats = WindowStats {
            count: count[row].expect("count") as u64,
            volume: volume_row,
            notional: (count[row].expect("count") > 0).then_some(notional_row),
            vwap: (volume_row > 0.0).then(|| notional_row / volume_row),
            open: open[row],
            high: high[row],
            low: low[row],
            close: close[row],
            mean: mean[row],
            stddev: stddev[row],
            change: open[row].zip(close[row]).map(|(o, c)| c - o),
            change_pct: open[row]
                .zip(close[row])
                .map(|(o, c)| (c / o - 1.0) * 100.0),
            first_ms: first_ms[row],
            last_ms: last_ms[row],
        };
        let key = keys.as_ref().map_or(0, |keys| keys[row].expect("key"));
        out.insert((symbols[row].clone(), key), stats);
    }
    out
}

/// polars' batch `rolling` (by time, closed right) per symbol: for every (symbol, timestamp) of
/// the trades, the statistics of the window ending at that timestamp.
pub fn rolling_oracle(
    frame: &DataFrame,
    window: &WindowSpec,
) -> HashMap<(String, i64), WindowStats> {
    let period = polars::time::Duration::parse(&format!("{}ns", window.length));
    let options = RollingGroupOptions {
        index_column: "ts".into(),
        period,
        offset: -period,
        closed_window: polars::time::ClosedWindow::Right,
    };
    let result = frame
        .clone()
        .lazy()
        .with_column(
            (col("ts_ms") * lit(1_000_000i64))
                .cast(DataType::Datetime(TimeUnit::Nanoseconds, None))
                .alias("ts"),
        )
        .rolling(col("ts"), [col("symbol")], options)
        .agg(aggregations())
        .with_column(col("ts").cast(DataType::Int64).alias("key_ns"))
        .collect()
        .expect("rolling");
    collect_stats(&result, Some("key_ns"))
        .into_iter()
        .map(|((symbol, ns), stats)| ((symbol, ns / 1_000_000), stats))
        .collect()
}

/// polars filter + group-by: every symbol's statistics for the window `(now − W, now]`
/// (symbols with no trade inside are absent).
pub fn window_at(
    frame: &DataFrame,
    window: &WindowSpec,
    now_ms: i64,
) -> HashMap<String, WindowStats> {
    let length_ms = window.length / 1_000_000;
    let result = frame
        .clone()
        .lazy()
        .filter(
            col("ts_ms")
                .gt(lit(now_ms - length_ms))
                .and(col("ts_ms").lt_eq(lit(now_ms))),
        )
        .group_by_stable([col("symbol")])
        .agg(aggregations())
        .collect()
        .expect("filter");
    collect_stats(&result, None)
        .into_iter()
        .map(|((symbol, _), stats)| (symbol, stats))
        .collect()
}

fn close_relative(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= tolerance * expected.abs().max(f64::MIN_POSITIVE)
}

/// Asserts `actual` equals `expected` to DESIGN.md's tolerances: counts, prices and times
/// exactly; sums, VWAP and mean within 1e-10 relative; stddev within 1e-9 of the price level.
pub fn assert_window_matches(actual: &WindowStats, expected: &WindowStats, context: &str) {
    assert_eq!(actual.count, expected.count, "count, {context}");
    assert_eq!(actual.open, expected.open, "open, {context}");
    assert_eq!(actual.high, expected.high, "high, {context}");
    assert_eq!(actual.low, expected.low, "low, {context}");
    assert_eq!(actual.close, expected.close, "close, {context}");
    assert_eq!(actual.first_ms, expected.first_ms, "first_ms, {context}");
    assert_eq!(actual.last_ms, expected.last_ms, "last_ms, {context}");
    assert_eq!(actual.change, expected.change, "change, {context}");
    assert_eq!(
        actual.change_pct, expected.change_pct,
        "change_pct, {context}"
    );
    let pairs = [
        ("volume", Some(actual.volume), Some(expected.volume)),
        ("notional", actual.notional, expected.notional),
        ("vwap", actual.vwap, expected.vwap),
        ("mean", actual.mean, expected.mean),
    ];
    for (name, a, e) in pairs {
        match (a, e) {
            (Some(a), Some(e)) => assert!(
                close_relative(a, e, 1e-10),
                "{name}: {a} vs {e} (relative {:e}), {context}",
                (a - e).abs() / e.abs()
            ),
            (a, e) => assert!(
                a.is_none() && e.is_none() || a == e,
                "{name}: {a:?} vs {e:?}, {context}"
            ),
        }
    }
    match (actual.stddev, expected.stddev) {
        (Some(a), Some(e)) => {
            let level = expected.close.unwrap_or(1.0).abs();
            assert!(
                (a - e).abs() <= 1e-9 * level,
                "stddev: {a} vs {e} (abs {:e}, level {level}), {context}",
                (a - e).abs()
            );
        }
        (a, e) => assert_eq!(a, e, "stddev, {context}"),
    }
}

/// Asserts that every window of a `/v1/symbols/{symbol}/stats` body equals polars' batch
/// statistics of `frame` at the body's own `as_of_ms`.
pub fn assert_stats_body_matches(body: &serde_json::Value, frame: &DataFrame, context: &str) {
    let symbol = body["symbol"].as_str().expect("symbol");
    let as_of = body["as_of_ms"].as_i64().expect("as_of_ms");
    let served = body["windows"].as_object().expect("windows");
    assert!(!served.is_empty(), "{context}: no windows");
    for window in default_windows().iter() {
        let Some(actual) = served.get(&window.label) else {
            continue;
        };
        let actual: WindowStats = serde_json::from_value::<WindowStatsBody>(actual.clone())
            .expect("window shape")
            .into();
        let expected = window_at(frame, window, as_of)
            .remove(symbol)
            .unwrap_or_else(WindowStats::empty);
        assert_window_matches(
            &actual,
            &expected,
            &format!("{context} {symbol} {} at {as_of}", window.label),
        );
    }
}

/// A window as the API writes it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowStatsBody {
    count: u64,
    volume: f64,
    notional: Option<f64>,
    vwap: Option<f64>,
    open: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    close: Option<f64>,
    mean: Option<f64>,
    stddev: Option<f64>,
    change: Option<f64>,
    change_pct: Option<f64>,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
}

impl From<WindowStatsBody> for WindowStats {
    fn from(w: WindowStatsBody) -> Self {
        WindowStats {
            count: w.count,
            volume: w.volume,
            notional: w.notional,
            vwap: w.vwap,
            open: w.open,
            high: w.high,
            low: w.low,
            close: w.close,
            mean: w.mean,
            stddev: w.stddev,
            change: w.change,
            change_pct: w.change_pct,
            first_ms: w.first_ms,
            last_ms: w.last_ms,
        }
    }
}

/// One bar as polars computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CandleRow {
    /// Start, epoch ms.
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
    /// Sum of price × size.
    pub notional: f64,
    /// Trades.
    pub count: u64,
}

/// polars' `group_by_dynamic` per symbol: epoch-aligned bars of `interval_ns`, `[start, end)`,
/// none for an interval without trades. Bars of each symbol are sorted by start.
pub fn candle_oracle(frame: &DataFrame, interval_ns: i64) -> HashMap<String, Vec<CandleRow>> {
    let every = polars::time::Duration::parse(&format!("{interval_ns}ns"));
    let options = DynamicGroupOptions {
        index_column: "ts".into(),
        every,
        period: every,
        offset: polars::time::Duration::parse("0ns"),
        label: Label::Left,
        include_boundaries: false,
        closed_window: polars::time::ClosedWindow::Left,
        start_by: StartBy::WindowBound,
    };
    let result = frame
        .clone()
        .lazy()
        .with_column(
            (col("ts_ms") * lit(1_000_000i64))
                .cast(DataType::Datetime(TimeUnit::Nanoseconds, None))
                .alias("ts"),
        )
        .sort(
            ["ts"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .group_by_dynamic(col("ts"), [col("symbol")], options)
        .agg([
            col("price").first().alias("open"),
            col("price").max().alias("high"),
            col("price").min().alias("low"),
            col("price").last().alias("close"),
            col("size").sum().alias("volume"),
            (col("price") * col("size")).sum().alias("notional"),
            len().cast(DataType::Int64).alias("count"),
        ])
        .with_column((col("ts").cast(DataType::Int64) / lit(1_000_000i64)).alias("start_ms"))
        .sort(["symbol", "start_ms"], SortMultipleOptions::default())
        .collect()
        .expect("group_by_dynamic");
    let f64s = |name: &str| -> Vec<f64> {
        f64_column(&result, name)
            .into_iter()
            .map(|v| v.expect(name))
            .collect()
    };
    let i64s = |name: &str| -> Vec<i64> {
        i64_column(&result, name)
            .into_iter()
            .map(|v| v.expect(name))
            .collect()
    };
    let symbols = str_column(&result, "symbol");
    let (start, count) = (i64s("start_ms"), i64s("count"));
    let (open, high, low, close) = (f64s("open"), f64s("high"), f64s("low"), f64s("close"));
    let (volume, notional) = (f64s("volume"), f64s("notional"));
    let mut out: HashMap<String, Vec<CandleRow>> = HashMap::new();
    for row in 0..result.height() {
        out.entry(symbols[row].clone())
            .or_default()
            .push(CandleRow {
                start_ms: start[row],
                open: open[row],
                high: high[row],
                low: low[row],
                close: close[row],
                volume: volume[row],
                notional: notional[row],
                count: count[row] as u64,
            });
    }
    out
}

/// Relative closeness for sums.
pub fn close_enough(actual: f64, expected: f64, relative: f64) -> bool {
    (actual - expected).abs() <= relative * expected.abs().max(1e-300)
}

/// Asserts a service bar (JSON or engine, as a row) equals polars': prices and counts exactly,
/// volume to 1e-12, notional to 1e-9 (over HTTP it is rebuilt from VWAP × volume).
pub fn assert_candle_matches(actual: &CandleRow, expected: &CandleRow, context: &str) {
    assert_eq!(actual.start_ms, expected.start_ms, "{context}: start");
    assert_eq!(
        (
            actual.open,
            actual.high,
            actual.low,
            actual.close,
            actual.count
        ),
        (
            expected.open,
            expected.high,
            expected.low,
            expected.close,
            expected.count
        ),
        "{context} at {}: open, high, low, close, count",
        expected.start_ms
    );
    assert!(
        close_enough(actual.volume, expected.volume, 1e-12),
        "{context} at {}: volume {} vs {}",
        expected.start_ms,
        actual.volume,
        expected.volume
    );
    assert!(
        close_enough(actual.notional, expected.notional, 1e-9),
        "{context} at {}: notional {} vs {}",
        expected.start_ms,
        actual.notional,
        expected.notional
    );
}
