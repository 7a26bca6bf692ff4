//! The fuzz targets' inputs as ordinary tests (the short version of `.ci/fuzz` that every
//! `cargo test` runs): every seed in `fuzz/corpus/<target>/` and every input a fuzzer once
//! crashed on in `fuzz/regressions/<target>/`, through the very code the targets run
//! (`fuzz/src/lib.rs`, included here): no panic, and every trade that comes out is fit for the
//! pipeline.

use std::path::{Path, PathBuf};

use tickstream::replay::ReplayFormat;

#[path = "../../fuzz/src/lib.rs"]
mod fuzz_support;

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

/// Runs every input of `target` through `run`; returns the trades they gave.
fn replay_inputs(target: &str, run: impl Fn(&[u8]) -> usize) -> usize {
    let inputs = inputs(target);
    assert!(inputs.len() >= 8, "{target}: seeds missing");
    inputs
        .iter()
        .map(|(path, bytes)| {
            eprintln!("{}", path.display());
            run(bytes)
        })
        .sum()
}

#[test]
fn every_provider_parser_survives_its_seed_corpus_and_regressions() {
    let targets = [
        ("provider_binance", tickstream::feeds::binance::PROVIDER),
        ("provider_coinbase", tickstream::feeds::coinbase::PROVIDER),
        (
            "provider_coinbase_exchange",
            tickstream::feeds::coinbase_exchange::PROVIDER,
        ),
        ("provider_kraken", tickstream::feeds::kraken::PROVIDER),
        ("provider_finnhub", tickstream::feeds::finnhub::PROVIDER),
        ("provider_alpaca", tickstream::feeds::alpaca::PROVIDER),
        ("provider_polygon", tickstream::feeds::polygon::PROVIDER),
    ];
    for (target, provider) in targets {
        let trades = replay_inputs(target, |bytes| fuzz_support::parse_frames(provider, bytes));
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
        let trades = replay_inputs(target, |bytes| fuzz_support::read_replay(format, bytes));
        assert!(
            trades >= 100,
            "{target}: only {trades} trades from the seeds"
        );
    }
}
