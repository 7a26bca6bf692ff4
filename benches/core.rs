//! Trades per second through the analytics core (default six windows and default candle
//! intervals), on the recorded data in `data/` and on generated streams of 100 and of 10,000
//! symbols (the same million trades, 20 µs apart, spread over more symbols); and the
//! same without candles, to show what they cost; and with the alert rules of a typical
//! configuration evaluated after every trade.
//!
//! Run with `cargo bench --bench core`.

mod fixtures;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_main};
use fixtures::{generated, generated_every, recorded};
use tickstream::alerts::{AlertEvaluator, RuleBook, RuleSpec};
use tickstream::analytics::{DEFAULT_CANDLE_HISTORY, Engine, IntervalSpec, Outcome, WindowSpec};
use tickstream::config::{DEFAULT_INTERVALS, DEFAULT_WINDOWS, parse_intervals, parse_windows};
use tickstream::model::Trade;

fn windows() -> Arc<[WindowSpec]> {
    parse_windows(&DEFAULT_WINDOWS.map(String::from))
        .expect("valid defaults")
        .into()
}

fn intervals() -> Arc<[IntervalSpec]> {
    parse_intervals(&DEFAULT_INTERVALS.map(String::from))
        .expect("valid defaults")
        .into()
}

/// The engine as the service runs it: default windows and candles.
fn engine(candles: bool) -> Engine {
    let engine = Engine::new(windows(), 1_000_000_000);
    if candles {
        engine.with_candles(intervals(), DEFAULT_CANDLE_HISTORY)
    } else {
        engine
    }
}

fn run(c: &mut Criterion, name: &str, trades: &[Trade]) {
    run_with(c, name, trades, true);
}

fn run_with(c: &mut Criterion, name: &str, trades: &[Trade], candles: bool) {
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(trades.len() as u64));
    group.bench_function(name, |b| {
        b.iter_batched(
            || engine(candles),
            |mut engine| {
                for trade in trades {
                    black_box(engine.apply(trade));
                }
                engine
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// A typical configuration's rules: one per kind, most on every symbol.
const RULES: [&str; 6] = [
    r#"{"kind":"price_above","symbol":"IBM","threshold":183}"#,
    r#"{"kind":"change_pct","symbol":"*","window":"1m","threshold":0.15}"#,
    r#"{"kind":"volume","symbol":"*","window":"1m","threshold":40000}"#,
    r#"{"kind":"vwap_deviation","symbol":"*","window":"5m","threshold":0.12}"#,
    r#"{"kind":"indicator","symbol":"*","indicator":"rsi","interval":"1m","params":{"period":14},"below":30}"#,
    r#"{"kind":"stale","symbol":"*","after":"2m"}"#,
];

fn run_with_rules(c: &mut Criterion, name: &str, trades: &[Trade]) {
    let specs: Vec<RuleSpec> = RULES
        .iter()
        .map(|r| serde_json::from_str(r).expect("rule"))
        .collect();
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(trades.len() as u64));
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                let book = RuleBook::new(&specs, windows(), intervals()).expect("rules");
                (
                    engine(true),
                    AlertEvaluator::new(Arc::new(book)),
                    Vec::new(),
                )
            },
            |(mut engine, mut evaluator, mut alerts)| {
                for trade in trades {
                    if engine.apply(trade) == Outcome::Applied {
                        evaluator.on_trade(
                            &engine,
                            trade.symbol.as_str(),
                            trade.exchange_ts,
                            &mut alerts,
                        );
                    }
                }
                (engine, evaluator, alerts)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn core(c: &mut Criterion) {
    run(
        c,
        "equities_ibm_aig",
        &recorded("ibm_aig_20131007_trades.csv"),
    );
    run(
        c,
        "binance_btcusdt",
        &recorded("btcusdt_20240808_trades.csv"),
    );
    run(c, "generated_100_symbols", &generated(100, 1_000_000));
    run(c, "generated_10000_symbols", &generated(10_000, 1_000_000));
    // The replay bench's file: 5 M trades, 1.5 ms apart, 2 h, the 1 h window full then sliding.
    run(
        c,
        "generated_100_symbols_2h",
        &generated_every(100, 5_000_000, 1_500_000),
    );
    run_with_rules(
        c,
        "equities_ibm_aig_with_alert_rules",
        &recorded("ibm_aig_20131007_trades.csv"),
    );
    run_with(
        c,
        "equities_ibm_aig_windows_only",
        &recorded("ibm_aig_20131007_trades.csv"),
        false,
    );
}

/// The criterion entry points (generated, so undocumented).
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::core);
}

criterion_main!(harness::benches);
