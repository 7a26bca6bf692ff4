//! The analytics core against polars' batch computation on real recorded trades.
//!
//! Every field of every window is compared:
//! - after the last trade of every (symbol, millisecond) — against polars `rolling` (closed
//!   right), whose row for the last trade of a timestamp holds every trade of that timestamp;
//! - at regular checkpoints for *every* symbol, including those that did not just trade (windows
//!   emptied or thinned by the clock advancing) — against a polars filter and group-by;
//! - with the arrival order perturbed within the allowed lateness.

use std::collections::HashMap;

use tickstream::analytics::{Engine, WindowStats};
use tickstream::model::Trade;

use crate::support::*;

/// Index of the last trade of every (symbol, timestamp).
fn last_of_each_timestamp(trades: &[Trade]) -> HashMap<(String, i64), usize> {
    trades
        .iter()
        .enumerate()
        .map(|(index, t)| ((t.symbol.to_string(), t.exchange_ts / 1_000_000), index))
        .collect()
}

fn check_against_rolling(name: &str) -> usize {
    let trades = load_trades(name);
    let windows = default_windows();
    let frame = trades_frame(&trades);
    let oracles: Vec<_> = windows.iter().map(|w| rolling_oracle(&frame, w)).collect();
    let last = last_of_each_timestamp(&trades);
    let mut engine = Engine::new(windows.clone(), 1_000_000_000);
    let mut compared = 0;
    for (index, trade) in trades.iter().enumerate() {
        engine.apply(trade);
        let key = (trade.symbol.to_string(), trade.exchange_ts / 1_000_000);
        if last[&key] != index {
            continue;
        }
        let snapshot = engine.snapshot(trade.symbol.as_str()).expect("traded");
        for (w, window) in windows.iter().enumerate() {
            let expected = &oracles[w][&key];
            let context = format!("{name} {} at {} ms, window {}", key.0, key.1, window.label);
            assert_window_matches(&snapshot.windows[w], expected, &context);
            compared += 1;
        }
    }
    compared
}

#[test]
fn equities_match_polars_rolling_at_every_timestamp() {
    let compared = check_against_rolling(EQUITIES);
    assert!(compared > 100_000, "compared {compared} windows");
}

#[test]
fn btcusdt_with_ties_matches_polars_rolling_at_every_timestamp() {
    let compared = check_against_rolling(BTCUSDT);
    assert!(compared > 10_000, "compared {compared} windows");
}

/// Compares every symbol's windows with polars at the engine's current clock.
fn check_all_symbols_at_clock(
    engine: &Engine,
    frame: &polars::prelude::DataFrame,
    symbols: &[String],
    context: &str,
) -> usize {
    let now_ms = engine.now().expect("clock") / 1_000_000;
    let mut emptied = 0;
    for (w, window) in engine.windows().iter().enumerate() {
        let expected = window_at(frame, window, now_ms);
        for symbol in symbols {
            let Some(snapshot) = engine.snapshot(symbol) else {
                continue;
            };
            let expected = expected
                .get(symbol)
                .cloned()
                .unwrap_or_else(WindowStats::empty);
            if expected.count == 0 {
                emptied += 1;
            }
            let context = format!(
                "{context}: {symbol} at {now_ms} ms, window {}",
                window.label
            );
            assert_window_matches(&snapshot.windows[w], &expected, &context);
        }
    }
    emptied
}

#[test]
fn every_symbol_matches_at_checkpoints_including_windows_emptied_by_the_clock() {
    let trades = load_trades(EQUITIES);
    let frame = trades_frame(&trades);
    let symbols = ["AIG".to_string(), "IBM".to_string()];
    let mut engine = Engine::new(default_windows(), 1_000_000_000);
    let mut emptied = 0;
    let mut due = false;
    for (index, trade) in trades.iter().enumerate() {
        engine.apply(trade);
        due |= index % 997 == 0;
        // Only once every trade of this millisecond is in: the batch side sees them all.
        let timestamp_complete = trades
            .get(index + 1)
            .is_none_or(|next| next.exchange_ts != trade.exchange_ts);
        if due && timestamp_complete {
            emptied += check_all_symbols_at_clock(&engine, &frame, &symbols, "checkpoint");
            due = false;
        }
    }
    // A gap longer than every window: the clock moves on with no trade, and all windows empty.
    let end = engine.now().expect("clock");
    for step_ms in [500, 5_000, 59_000, 3_600_000] {
        engine.advance_clock(end + step_ms * 1_000_000);
        emptied += check_all_symbols_at_clock(&engine, &frame, &symbols, "after the last trade");
    }
    let snapshot = engine.snapshot("IBM").expect("traded");
    assert!(snapshot.windows.iter().all(|w| *w == WindowStats::empty()));
    assert!(emptied > 20, "checkpoints saw {emptied} empty windows");
}

#[test]
fn reordering_within_the_lateness_gives_the_same_windows() {
    let trades = load_trades(EQUITIES);
    let frame = trades_frame(&trades);
    let symbols = ["AIG".to_string(), "IBM".to_string()];
    let mut engine = Engine::new(default_windows(), 1_000_000_000);
    // Blocks of 800 ms of event time arrive newest timestamp first (trades sharing a timestamp
    // keep their order), so most trades arrive behind the clock but within the 1 s lateness.
    let block_of = |t: &Trade| t.exchange_ts / 800_000_000;
    let mut start = 0;
    let mut blocks = 0;
    let mut reordered = 0;
    while start < trades.len() {
        let block = block_of(&trades[start]);
        let end = trades[start..]
            .iter()
            .position(|t| block_of(t) != block)
            .map_or(trades.len(), |n| start + n);
        let mut arrival: Vec<&Trade> = trades[start..end].iter().collect();
        arrival.sort_by_key(|t| std::cmp::Reverse(t.exchange_ts));
        for trade in &arrival {
            if engine.now().is_some_and(|now| trade.exchange_ts < now) {
                reordered += 1;
            }
            assert_eq!(engine.apply(trade), tickstream::analytics::Outcome::Applied);
        }
        blocks += 1;
        if blocks % 53 == 0 {
            check_all_symbols_at_clock(&engine, &frame, &symbols, "reordered");
        }
        start = end;
    }
    check_all_symbols_at_clock(&engine, &frame, &symbols, "reordered, at the end");
    assert!(
        reordered > 1000,
        "only {reordered} trades arrived out of order"
    );
}

/// Why the windows compensate: a naive running sum of squares, updated the same way, misses
/// the stddev tolerance on this very data.
#[test]
fn naive_running_sum_of_squares_fails_the_stddev_tolerance() {
    let trades = load_trades(BTCUSDT);
    let window_ns = 60_000_000_000i64;
    let mut start = 0;
    let (mut sum, mut squares) = (0.0f64, 0.0f64);
    let mut worst = 0.0f64;
    for (index, trade) in trades.iter().enumerate() {
        sum += trade.price;
        squares += trade.price * trade.price;
        while trades[start].exchange_ts <= trade.exchange_ts - window_ns {
            sum -= trades[start].price;
            squares -= trades[start].price * trades[start].price;
            start += 1;
        }
        let n = (index + 1 - start) as f64;
        if n < 2.0 {
            continue;
        }
        let naive = ((squares - sum * sum / n) / (n - 1.0)).max(0.0).sqrt();
        let prices: Vec<f64> = trades[start..=index].iter().map(|t| t.price).collect();
        let mean = prices.iter().sum::<f64>() / n;
        let exact = (prices.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        worst = worst.max((naive - exact).abs() / trade.price);
    }
    assert!(worst > 1e-9, "naive error {worst:e} would pass");
}
