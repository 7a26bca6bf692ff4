//! What a provider's frame means once parsed: the vocabulary shared by every connector's parser.

use foldhash::{HashMap, HashMapExt};

use crate::model::{FeedId, Quote, Symbol, Timestamp, Trade};

/// One meaningful item of a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// A trade.
    Trade(Trade),
    /// A best bid/offer update.
    Quote(Quote),
    /// A keepalive from the venue (counts as life for stale-feed detection).
    Heartbeat,
    /// The venue acknowledged a subscription (or another request).
    Ack,
    /// The venue announced it is about to close the connection: reconnect now.
    ServerShutdown,
    /// The venue reported an error.
    ProviderError {
        /// The venue's code, when it has one.
        code: Option<i64>,
        /// The venue's message.
        message: String,
    },
}

/// Why a frame could not be parsed. The frame is counted and skipped; the feed goes on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    /// Not JSON, or not the JSON shape the provider documents.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A field that must be there is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field holds something it cannot hold.
    #[error("bad `{field}` value {value:?}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// What it held.
        value: String,
    },
}

/// What parsing needs besides the frame: who receives it, when, and the symbols seen so far.
#[derive(Debug)]
pub struct ParseContext {
    /// The feed the frame arrived on.
    pub feed: FeedId,
    /// When the frame arrived.
    pub receive_ts: Timestamp,
    /// The feed's latest exchange time, for events the venue sends without one.
    pub last_exchange_ts: Option<Timestamp>,
    /// Symbols met so far, interned (foldhash: every trade looks its symbol up here).
    symbols: HashMap<String, Symbol>,
    /// The last sequence number seen per stream (a product, a connection), for gap checks.
    sequences: HashMap<String, u64>,
    /// Sequence anomalies (gaps, or numbers going backwards) seen since last taken.
    gaps: u64,
}

impl ParseContext {
    /// A context for `feed`.
    pub fn new(feed: FeedId) -> Self {
        ParseContext {
            feed,
            receive_ts: 0,
            last_exchange_ts: None,
            symbols: HashMap::new(),
            sequences: HashMap::new(),
            gaps: 0,
        }
    }

    /// The interned symbol for `text` (allocates only the first time a symbol is seen); a blank
    /// symbol is a bad frame (found by fuzzing: it would enter the pipeline as a symbol no URL
    /// can name).
    pub fn symbol(&mut self, text: &str) -> Result<Symbol, FrameError> {
        if let Some(symbol) = self.symbols.get(text) {
            return Ok(symbol.clone());
        }
        if text.trim().is_empty() {
            return Err(FrameError::BadValue {
                field: "symbol",
                value: text.to_string(),
            });
        }
        let symbol = Symbol::new(text);
        self.symbols.insert(text.to_string(), symbol.clone());
        Ok(symbol)
    }

    /// Checks `sequence` of `stream` against the last one: with `contiguous` numbering a jump
    /// is a gap; either way a number that does not increase is counted.
    pub fn check_sequence(&mut self, stream: &str, sequence: u64, contiguous: bool) {
        let last = self.sequences.insert(stream.to_string(), sequence);
        if let Some(last) = last
            && (sequence <= last || (contiguous && sequence > last + 1))
        {
            self.gaps += 1;
        }
    }

    /// Sequence anomalies counted since the last call.
    pub fn take_gaps(&mut self) -> u64 {
        std::mem::take(&mut self.gaps)
    }

    /// Forgets sequence state (a new connection starts its own numbering).
    pub fn reset_sequences(&mut self) {
        self.sequences.clear();
    }

    /// Records an exchange time seen on the feed.
    pub fn saw_exchange_time(&mut self, ts: Timestamp) {
        self.last_exchange_ts = Some(self.last_exchange_ts.map_or(ts, |last| last.max(ts)));
    }
}

/// Parses an RFC 3339 time field (any offset, any fraction) into nanoseconds.
pub fn rfc3339(field: &'static str, text: &str) -> Result<Timestamp, FrameError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|time| time.timestamp_nanos_opt())
        .ok_or_else(|| FrameError::BadValue {
            field,
            value: text.to_string(),
        })
}

/// Converts an epoch-milliseconds field into nanoseconds, refusing values that overflow.
pub fn epoch_millis(field: &'static str, ms: i64) -> Result<Timestamp, FrameError> {
    ms.checked_mul(crate::model::NANOS_PER_MILLI)
        .ok_or_else(|| FrameError::BadValue {
            field,
            value: ms.to_string(),
        })
}

/// Checks a trade's price and size (see [`crate::model::check_trade_values`]).
pub fn trade_values(price: f64, size: f64) -> Result<(), FrameError> {
    crate::model::check_trade_values(price, size).map_err(|error| FrameError::BadValue {
        field: "price/size",
        value: error.to_string(),
    })
}

/// Parses a decimal string field into `f64` (correctly rounded).
pub fn decimal(field: &'static str, text: &str) -> Result<f64, FrameError> {
    text.parse::<f64>().map_err(|_| FrameError::BadValue {
        field,
        value: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_checks() {
        let mut ctx = ParseContext::new(FeedId(0));
        for sequence in [1, 2, 3, 5, 6] {
            ctx.check_sequence("a", sequence, true);
        }
        assert_eq!(ctx.take_gaps(), 1, "3 → 5 skipped 4");
        for sequence in [10, 20, 15, 30] {
            ctx.check_sequence("b", sequence, false);
        }
        assert_eq!(
            ctx.take_gaps(),
            1,
            "20 → 15 went backwards; jumps are allowed"
        );
        ctx.reset_sequences();
        ctx.check_sequence("a", 1, true);
        assert_eq!(ctx.take_gaps(), 0, "a new connection numbers afresh");
    }

    #[test]
    fn shared_field_parsers() {
        assert_eq!(
            rfc3339("t", "2021-02-22T15:51:44.208Z"),
            Ok(1_614_009_104_208_000_000)
        );
        assert!(rfc3339("t", "noon").is_err());
        assert_eq!(epoch_millis("t", 2), Ok(2_000_000));
        assert!(epoch_millis("t", i64::MAX).is_err());
        assert!(trade_values(1.0, 1.0).is_ok() && trade_values(-1.0, 1.0).is_err());
    }
}
