//! The fuzz targets' inputs as ordinary tests (the short version of `.ci/fuzz` that every
//! `cargo test` runs): every seed in `fuzz/corpus/<target>/` and every input a fuzzer once
//! crashed on in `fuzz/regressions/<target>/`, through the same parser or reader as the target,
//! with the same invariants: no panic, and every trade that comes out is fit for the pipeline.

use std::path::{Path, PathBuf};

use tickstream::feeds::connector::Provider;
use tickstream::feeds::event::{FeedEvent, ParseContext};
use tickstream::model::{FeedId, Trade, check_trade_values};
use tickstream::replay::{ReplayFormat, read_bytes};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every input kept for `target`: its seeds and its regressions.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut inputs = Vec::new();
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(folder).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let bytes = std::fs::read(&path).expect("readable input");
            inputs.push((path, bytes));
        }
    }
    inputs.sort();
    inputs
}

fn assert_valid(trade: &Trade, input: &Path) {
    assert!(
        check_trade_values(trade.price, trade.size).is_ok() && !trade.symbol.as_str().is_empty(),
        "{}: a parser let through {trade:?}",
        input.display()
    );
}

#[test]
fn every_provider_parser_survives_its_seed_corpus_and_regressions() {
    let targets = [
        ("provider_binance", Provider::Binance),
        ("provider_coinbase", Provider::Coinbase),
        ("provider_coinbase_exchange", Provider::CoinbaseExchange),
        ("provider_kraken", Provider::Kraken),
        ("provider_finnhub", Provider::Finnhub),
        ("provider_alpaca", Provider::Alpaca),
        ("provider_polygon", Provider::Polygon),
    ];
    for (target, provider) in targets {
        let inputs = inputs(target);
        assert!(inputs.len() >= 10, "{target}: seeds missing");
        let mut trades = 0;
        for (path, bytes) in &inputs {
            let mut ctx = ParseContext::new(FeedId(0));
            let mut events = Vec::new();
            for frame in bytes.split(|&byte| byte == b'\n') {
                let Ok(text) = std::str::from_utf8(frame) else {
                    continue;
                };
                events.clear();
                if provider.parse(text, &mut ctx, &mut events).is_ok() {
                    for event in &events {
                        if let FeedEvent::Trade(trade) = event {
                            assert_valid(trade, path);
                            trades += 1;
                        }
                    }
                }
            }
        }
        // The seeds are real frames: most of them must parse into trades.
        assert!(
            trades >= 100,
            "{target}: only {trades} trades from the seeds"
        );
    }
}

#[test]
fn every_replay_reader_survives_its_seed_corpus_and_regressions() {
    let targets = [
        ("replay_csv", ReplayFormat::Csv),
        ("replay_jsonl", ReplayFormat::JsonLines),
        ("replay_frames", ReplayFormat::RawFrames),
    ];
    for (target, format) in targets {
        let inputs = inputs(target);
        assert!(inputs.len() >= 8, "{target}: seeds missing");
        let mut trades = 0;
        for (path, bytes) in &inputs {
            // A reader may refuse a whole input (no header, say) but must not panic.
            if let Ok(outcome) = read_bytes(format, bytes) {
                assert!(outcome.malformed <= outcome.rows, "{}", path.display());
                for trade in &outcome.trades {
                    assert_valid(trade, path);
                }
                trades += outcome.trades.len();
            }
        }
        assert!(
            trades >= 100,
            "{target}: only {trades} trades from the seeds"
        );
    }
}
