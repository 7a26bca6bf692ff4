//! What the fuzz targets run: the product's parsers and readers on arbitrary bytes, and the
//! invariants every output must keep. A panic here (or in the product) is a finding. The
//! integration tests include this file too (`tests/it/fuzz_regressions.rs`), to replay the seeds
//! and past crashes through exactly the same code.

use tickstream::feeds::Provider;
use tickstream::feeds::event::{FeedEvent, ParseContext};
use tickstream::model::{FeedId, Trade, check_trade_values};
use tickstream::replay::{ReplayFormat, read_bytes};

/// A trade that left a parser must be fit for the pipeline.
fn assert_valid(trade: &Trade) {
    assert!(
        check_trade_values(trade.price, trade.size).is_ok(),
        "a parser let through {trade:?}"
    );
    assert!(
        !trade.symbol.as_str().trim().is_empty(),
        "blank symbol: {trade:?}"
    );
}

/// Parses `data` as `provider`'s frames, one per line, through one context; returns the trades
/// parsed.
pub fn parse_frames(provider: Provider, data: &[u8]) -> usize {
    let mut trades = 0;
    let mut ctx = ParseContext::new(FeedId(0));
    let mut events = Vec::new();
    for frame in data.split(|&byte| byte == b'\n') {
        let Ok(text) = std::str::from_utf8(frame) else {
            continue;
        };
        events.clear();
        if provider.parse(text, &mut ctx, &mut events).is_ok() {
            for event in &events {
                if let FeedEvent::Trade(trade) = event {
                    assert_valid(trade);
                    trades += 1;
                }
            }
        }
        let _ = ctx.take_gaps();
    }
    trades
}

/// Reads `data` as one replay file in `format`; returns the trades read (none when the reader
/// refuses the whole input, which it may, as long as it does not panic).
pub fn read_replay(format: ReplayFormat, data: &[u8]) -> usize {
    match read_bytes(format, data) {
        Ok(outcome) => {
            assert!(outcome.malformed <= outcome.rows, "{outcome:?}");
            outcome.trades.iter().for_each(assert_valid);
            outcome.trades.len()
        }
        Err(_) => 0,
    }
}
