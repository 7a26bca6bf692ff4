//! What the fuzz targets run: the product's parsers and readers on arbitrary bytes, and the
//! invariants every output must keep. A panic here (or in the product) is a finding.

use tickstream::feeds::connector::Provider;
use tickstream::feeds::event::{FeedEvent, ParseContext};
use tickstream::model::{FeedId, Trade, check_trade_values};
use tickstream::replay::{ReplayFormat, read_bytes};

/// A trade that left a parser must be fit for the pipeline.
fn assert_valid(trade: &Trade) {
    assert!(
        check_trade_values(trade.price, trade.size).is_ok(),
        "a parser let through {trade:?}"
    );
    assert!(!trade.symbol.as_str().is_empty(), "empty symbol: {trade:?}");
}

/// Parses `data` as `provider`'s frames, one per line, through one context.
pub fn parse_frames(provider: Provider, data: &[u8]) {
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
                }
            }
        }
        let _ = ctx.take_gaps();
    }
}

/// Reads `data` as one replay file in `format`.
pub fn read_replay(format: ReplayFormat, data: &[u8]) {
    if let Ok(outcome) = read_bytes(format, data) {
        assert!(outcome.malformed <= outcome.rows, "{outcome:?}");
        outcome.trades.iter().for_each(assert_valid);
    }
}
