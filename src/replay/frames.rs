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

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;

use serde::Deserialize;

use super::fields::RowError;
use super::{BatchSink, ReplaySource, RowLocation, Stop, open_text};
use crate::feeds::connector::Provider;
use crate::feeds::event::{FeedEvent, ParseContext};
use crate::model::FeedId;

#[derive(Deserialize)]
struct RawFrame<'a> {
    recv_ns: i64,
    #[serde(borrow)]
    conn: Cow<'a, str>,
    #[serde(borrow)]
    provider: Cow<'a, str>,
    #[serde(borrow)]
    dir: Cow<'a, str>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

/// Reads one pass of a raw-frame recording into `sink`.
pub fn read(source: &ReplaySource, sink: &mut BatchSink) -> Result<(), Stop> {
    sink.set_progress_total(source.check()?);
    let mut reader = std::io::BufReader::with_capacity(1 << 16, open_text(source)?);
    let mut contexts: HashMap<String, (Provider, ParseContext)> = HashMap::new();
    let mut events = Vec::new();
    let mut buffer = Vec::new();
    let mut line_number = 0u64;
    let mut bytes_read = 0u64;
    loop {
        buffer.clear();
        let read = reader
            .read_until(b'\n', &mut buffer)
            .map_err(|error| sink.read_error(error))?;
        if read == 0 {
            break;
        }
        line_number += 1;
        bytes_read += read as u64;
        if line_number % 4096 == 0 {
            sink.set_progress(bytes_read);
        }
        let location = RowLocation::Line(line_number);
        let Ok(line) = std::str::from_utf8(&buffer) else {
            sink.row(location, Err(RowError::Utf8("line")))?;
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        let frame: RawFrame<'_> = match serde_json::from_str(line) {
            Ok(frame) => frame,
            Err(error) => {
                sink.row(location, Err(RowError::Json(error.to_string())))?;
                continue;
            }
        };
        let (Some(text), "in") = (frame.text.as_deref(), frame.dir.as_ref()) else {
            sink.count_row();
            continue;
        };
        let Some(provider) = Provider::from_name(&frame.provider) else {
            let message = format!("unknown provider {:?}", frame.provider);
            sink.row(location, Err(RowError::Unreadable(message)))?;
            continue;
        };
        let (provider, ctx) = contexts
            .entry(frame.conn.into_owned())
            .or_insert_with(|| (provider, ParseContext::new(FeedId(0))));
        ctx.receive_ts = frame.recv_ns;
        events.clear();
        if let Err(error) = provider.parse(text, ctx, &mut events) {
            sink.row(location, Err(RowError::Unreadable(error.to_string())))?;
            continue;
        }
        sink.count_row();
        for event in events.drain(..) {
            if let FeedEvent::Trade(trade) = event {
                sink.push_trade(trade)?;
            }
        }
    }
    sink.set_progress(bytes_read);
    Ok(())
}
