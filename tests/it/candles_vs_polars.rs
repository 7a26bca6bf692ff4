//! Candles from the analytics core against polars' `group_by_dynamic` on real recorded trades:
//! every bar of every symbol for the default intervals, in order and with the arrival order
//! perturbed within the allowed lateness (late trades amend bars that had already closed).

use std::sync::Arc;

use tickstream::analytics::{Candle, Engine, IntervalSpec, Outcome};
use tickstream::model::Trade;

use crate::support::*;

fn intervals(labels: &[&str]) -> Arc<[IntervalSpec]> {
    let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
    tickstream::config::parse_intervals(&labels)
        .expect("valid intervals")
        .into()
}

fn row(candle: &Candle) -> CandleRow {
    CandleRow {
        start_ms: candle.start_ms(),
        open: candle.open,
        high: candle.high,
        low: candle.low,
        close: candle.close,
        volume: candle.volume(),
        notional: candle.notional(),
        count: candle.count,
    }
}

/// Compares every bar the engine holds (closing the forming one) with polars; returns bars
/// compared.
fn compare_all(
    engine: &Engine,
    trades: &[Trade],
    intervals: &[IntervalSpec],
    context: &str,
) -> usize {
    let frame = trades_frame(trades);
    let mut compared = 0;
    for (i, interval) in intervals.iter().enumerate() {
        let expected = candle_oracle(&frame, interval.length);
        assert!(!expected.is_empty());
        for (symbol, bars) in &expected {
            let snapshot = engine.snapshot(symbol).expect("traded");
            let view = &snapshot.candles[i];
            let actual: Vec<CandleRow> = view.closed(i64::MAX).map(row).collect();
            assert_eq!(
                actual.len(),
                bars.len(),
                "{context}: {symbol} {} bars",
                interval.label
            );
            for (actual, expected) in actual.iter().zip(bars) {
                let context = format!("{context}: {symbol} {}", interval.label);
                assert_candle_matches(actual, expected, &context);
                compared += 1;
            }
        }
    }
    compared
}

fn engine_for(intervals: &Arc<[IntervalSpec]>) -> Engine {
    Engine::new(default_windows(), 1_000_000_000).with_candles(Arc::clone(intervals), 1_000_000)
}

#[test]
fn equities_and_btcusdt_candles_match_group_by_dynamic() {
    let intervals = intervals(&["1s", "1m", "5m"]);
    for name in [EQUITIES, BTCUSDT] {
        let trades = load_trades(name);
        let mut engine = engine_for(&intervals);
        for trade in &trades {
            assert_eq!(engine.apply(trade), Outcome::Applied);
        }
        let compared = compare_all(&engine, &trades, &intervals, name);
        assert!(compared > 300, "{name}: only {compared} bars compared");
    }
}

#[test]
fn reordered_arrivals_within_the_lateness_amend_closed_bars() {
    let intervals = intervals(&["1s", "10s", "1m"]);
    let trades = load_trades(EQUITIES);
    let mut engine = engine_for(&intervals);
    // Blocks of 800 ms of event time arrive newest first (equal times keep their order), so many
    // trades land in 1 s bars the clock has already closed.
    let block_of = |t: &Trade| t.exchange_ts / 800_000_000;
    let mut start = 0;
    let mut amended_revisions = 0;
    while start < trades.len() {
        let block = block_of(&trades[start]);
        let end = trades[start..]
            .iter()
            .position(|t| block_of(t) != block)
            .map_or(trades.len(), |n| start + n);
        let mut arrival: Vec<&Trade> = trades[start..end].iter().collect();
        arrival.sort_by_key(|t| std::cmp::Reverse(t.exchange_ts));
        for trade in arrival {
            assert_eq!(engine.apply(trade), Outcome::Applied);
        }
        start = end;
    }
    for symbol in ["IBM", "AIG"] {
        let snapshot = engine.snapshot(symbol).expect("traded");
        amended_revisions += snapshot.candles[0].revision();
    }
    assert!(
        amended_revisions > 100,
        "only {amended_revisions} amendments of closed bars"
    );
    compare_all(&engine, &trades, &intervals, "reordered");
}

#[test]
fn the_last_n_bars_are_kept_and_the_forming_one_closes_with_the_clock() {
    let intervals = intervals(&["1m"]);
    let trades = load_trades(EQUITIES);
    let mut engine =
        Engine::new(default_windows(), 1_000_000_000).with_candles(Arc::clone(&intervals), 50);
    for trade in &trades {
        engine.apply(trade);
    }
    let expected = candle_oracle(&trades_frame(&trades), 60_000_000_000);
    let now = engine.now().expect("clock");
    let mut forming_seen = 0;
    for symbol in ["IBM", "AIG"] {
        let bars = &expected[symbol];
        let view = &engine.snapshot(symbol).expect("traded").candles[0];
        // At the clock: 50 closed bars, then the forming one if the clock is still inside the
        // symbol's last minute (a symbol whose last trade is older has it closed already).
        let recent = view.recent(now, usize::MAX);
        let last_end_ms = bars[bars.len() - 1].start_ms + 60_000;
        let forming = last_end_ms > now / 1_000_000;
        forming_seen += usize::from(forming);
        assert_eq!(recent.len(), 50 + usize::from(forming), "{symbol}");
        assert!(recent[..50].iter().all(|(_, closed)| *closed));
        if forming {
            assert_eq!(recent[50], (*view.forming(now).expect("forming"), false));
        } else {
            assert!(view.forming(now).is_none());
        }
        let tail = &bars[bars.len() - recent.len()..];
        for ((candle, _), expected) in recent.iter().zip(tail) {
            assert_candle_matches(&row(candle), expected, symbol);
        }
        // Once the clock passes the end of the last minute, it is closed; still 50 kept.
        let closed: Vec<CandleRow> = view.closed(i64::MAX).map(row).collect();
        assert_eq!(closed.len(), 50);
        assert_eq!(closed[49], bars[bars.len() - 1]);
    }
    assert!(
        forming_seen > 0,
        "the symbol that traded last has a forming bar"
    );
}
