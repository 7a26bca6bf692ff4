//! Shared test support, in three rooms:
//!
//! - here: the recorded data, loaded independently of the product's readers;
//! - [`oracles`]: the polars batch oracle for windows and candles, and the comparisons;
//! - [`app`]: the real service, in process on a random loopback port ([`app::TestApp`]) or as
//!   the built binary;
//! - [`peers`]: what the service talks to: the mock exchange;
//! - [`sse`]: Server-Sent Events as the wire carries them.

pub mod app;
pub mod oracles;
pub mod peers;
pub mod sse;

pub use app::*;
pub use oracles::*;
pub use peers::*;
pub use sse::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tickstream::analytics::WindowSpec;
use tickstream::model::{FeedId, Symbol, Trade};

/// Path of a file in `data/`.
pub fn data_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

/// The IBM and AIG trades of 2013-10-07.
pub const EQUITIES: &str = "ibm_aig_20131007_trades.csv";

/// Binance BTCUSDT trades of 2024-08-08 (up to 735 in one millisecond).
pub const BTCUSDT: &str = "btcusdt_20240808_trades.csv";

/// Loads a `ts,symbol,price,size` CSV with a plain split (not the product's reader).
pub fn load_trades(name: &str) -> Vec<Trade> {
    let text = std::fs::read_to_string(data_path(name)).expect("data file readable");
    let mut symbols: HashMap<String, Symbol> = HashMap::new();
    text.lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let ms: i64 = fields[0].parse().expect("ts");
            let symbol = symbols
                .entry(fields[1].to_string())
                .or_insert_with(|| Symbol::new(fields[1]))
                .clone();
            Trade {
                symbol,
                price: fields[2].parse().expect("price"),
                size: fields[3].parse().expect("size"),
                exchange_ts: ms * 1_000_000,
                receive_ts: ms * 1_000_000,
                feed: FeedId(0),
                trade_id: None,
                side: None,
            }
        })
        .collect()
}

/// The default windows as specs.
pub fn default_windows() -> Arc<[WindowSpec]> {
    tickstream::config::parse_windows(&tickstream::config::DEFAULT_WINDOWS.map(String::from))
        .expect("valid defaults")
        .into()
}

/// Writes `dir/many.csv`: `trades` trades one millisecond apart, `symbols` symbols (`S0000`, …)
/// trading in turn; returns its path.
pub fn symbols_in_turn_csv(dir: &Path, trades: u64, symbols: u64) -> PathBuf {
    let mut csv = String::from("ts,symbol,price,size\n");
    for i in 0..trades {
        csv.push_str(&format!(
            "{},S{:04},{}.5,{}\n",
            1_700_000_000_000 + i,
            i % symbols,
            10 + i % 7,
            1 + i % 5
        ));
    }
    let path = dir.join("many.csv");
    std::fs::write(&path, csv).expect("write");
    path
}

/// Owned arguments for [`start_binary`].
pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}
