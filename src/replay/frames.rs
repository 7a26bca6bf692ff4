//! Raw-frame recordings (`*.frames.jsonl`): what a WebSocket feed delivered, one frame per line,
//! replayed through the provider's real parser so that a replay exercises the live path's code.
//!
//! ```text
//! {"recv_ns":1723161254087896567,"conn":"binance-1","provider":"binance","dir":"connect","url":"wss://stream.binance.com:9443/stream"}
//! {"recv_ns":1723161254087896568,"conn":"binance-1","provider":"binance","dir":"in","text":"{\"stream\":\"btcusdt@trade\",\"data\":{…}}"}
//! ```
//!
//! `dir` is `in` (a frame received), `out` (a frame sent), `connect` or `close` (markers); only
//! `in` frames are parsed, each connection (`conn`) with its own parsing state. A line that is
//! not such an object, names an unknown provider, or holds a frame the provider's parser rejects
//! is counted as malformed and skipped. Trades go on; quotes are not replayed.

use std::collections::HashMap;

use super::fields::RowError;
use super::{BatchSink, ReplaySource, Stop, for_each_line};
use crate::feeds::Provider;
use crate::feeds::event::{FeedEvent, ParseContext};
use crate::model::FeedId;
use crate::record::{Direction, FrameRecord};

/// Reads one pass of a raw-frame recording into `sink`.
pub fn read(source: &ReplaySource, sink: &mut BatchSink) -> Result<(), Stop> {
    let mut contexts: HashMap<String, (Provider, ParseContext)> = HashMap::new();
    let mut events = Vec::new();
    for_each_line(source, sink, |sink, location, line| {
        let frame: FrameRecord<'_> = match serde_json::from_str(line) {
            Ok(frame) => frame,
            Err(error) => return sink.row(location, Err(RowError::Json(error.to_string()))),
        };
        let (Some(text), Direction::In) = (frame.text.as_deref(), frame.dir) else {
            sink.count_row();
            return Ok(());
        };
        let Some(provider) = Provider::from_name(&frame.provider) else {
            let message = format!("unknown provider {:?}", frame.provider);
            return sink.row(location, Err(RowError::Unreadable(message)));
        };
        let (provider, ctx) = contexts
            .entry(frame.conn.into_owned())
            .or_insert_with(|| (provider, ParseContext::new(FeedId(0))));
        ctx.receive_ts = frame.recv_ns;
        events.clear();
        if let Err(error) = provider.parse(text, ctx, &mut events) {
            return sink.row(location, Err(RowError::Unreadable(error.to_string())));
        }
        sink.count_row();
        for event in events.drain(..) {
            if let FeedEvent::Trade(trade) = event {
                sink.push_trade(trade)?;
            }
        }
        Ok(())
    })
}
