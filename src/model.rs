//! The normalized events every stage of the pipeline speaks: [`Trade`], [`Quote`], [`Symbol`],
//! [`FeedId`], [`CoreEvent`] (what the analytics core consumes)
//! and nanosecond [`Timestamp`]s.
//!
//! Sources (replay files, live WebSocket feeds, recovery) turn their own formats into these types;
//! nothing downstream of a source ever sees a provider's wire format.

use std::fmt;
use std::sync::Arc;

/// Nanoseconds since the Unix epoch, UTC. The API shows epoch milliseconds (`*_ms`).
pub type Timestamp = i64;

/// Nanoseconds in one millisecond.
pub const NANOS_PER_MILLI: i64 = 1_000_000;

/// Converts a nanosecond timestamp to whole epoch milliseconds (rounding towards the past).
pub fn to_millis(ts: Timestamp) -> i64 {
    ts.div_euclid(NANOS_PER_MILLI)
}

/// A ticker symbol as the venue spells it (`BTCUSDT`, `BTC-USD`, `AAPL`).
///
/// Cheap to clone (a shared string): sources intern each symbol once and every trade carries a
/// pointer to it, so the hot path never allocates a symbol.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(Arc<str>);

impl Symbol {
    /// Makes a symbol from its text.
    pub fn new(text: &str) -> Self {
        Symbol(Arc::from(text))
    }

    /// The symbol's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl std::borrow::Borrow<str> for Symbol {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Symbol {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Index of a feed (a replay source, a live connection, or the recovery) in the
/// [`FeedRegistry`](crate::health::FeedRegistry). Small and `Copy`, so every trade can carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeedId(pub u16);

impl FeedId {
    /// The position of this feed in the registry.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Which side took liquidity, when the venue says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The buyer was the taker (an uptick trade).
    Buy,
    /// The seller was the taker.
    Sell,
}

/// One trade, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    /// The traded symbol.
    pub symbol: Symbol,
    /// Price per unit.
    pub price: f64,
    /// Quantity traded (shares, coins, contracts).
    pub size: f64,
    /// When the venue says the trade happened: the event time that drives the stream clock.
    pub exchange_ts: Timestamp,
    /// When this process received it (for a replay: when the row was read).
    pub receive_ts: Timestamp,
    /// The feed that delivered it.
    pub feed: FeedId,
    /// The venue's trade id, when it has one; used to drop duplicates within a feed.
    pub trade_id: Option<u64>,
    /// The taker side, when the venue says.
    pub side: Option<Side>,
}

/// The best bid and offer of a symbol at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    /// The quoted symbol.
    pub symbol: Symbol,
    /// Best bid price.
    pub bid: f64,
    /// Size at the best bid, when the venue sends it.
    pub bid_size: Option<f64>,
    /// Best ask (offer) price.
    pub ask: f64,
    /// Size at the best ask, when the venue sends it.
    pub ask_size: Option<f64>,
    /// Event time: the venue's, or (for venues that send none, like Binance's `bookTicker`) the
    /// feed's latest exchange time; `None` before the feed has sent any.
    pub exchange_ts: Option<Timestamp>,
    /// When this process received it.
    pub receive_ts: Timestamp,
    /// The feed that delivered it.
    pub feed: FeedId,
}

/// Why a price or size cannot be part of a trade.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TradeValueError {
    /// Price is not a finite number above zero.
    #[error("price {0} is not a finite positive number")]
    Price(f64),
    /// Size is not a finite number at or above zero.
    #[error("size {0} is not a finite non-negative number")]
    Size(f64),
}

/// Checks the numbers of a trade before it enters the pipeline: a price must be finite and
/// positive, a size finite and not negative.
pub fn check_trade_values(price: f64, size: f64) -> Result<(), TradeValueError> {
    if !(price.is_finite() && price > 0.0) {
        return Err(TradeValueError::Price(price));
    }
    if !(size.is_finite() && size >= 0.0) {
        return Err(TradeValueError::Size(size));
    }
    Ok(())
}

/// The wall clock as a [`Timestamp`].
pub fn wall_clock_now() -> Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_nanos()).unwrap_or(i64::MAX)
}

/// What every source sends the analytics core: trades (merged in event time when they come from
/// several files), quotes, recovered trades, and a source's end.
#[derive(Debug)]
pub enum CoreEvent {
    /// Trades in event-time order.
    Trades(Vec<Trade>),
    /// Trades read back from the recording at start (`--recover`): applied like others, not
    /// logged again.
    Recovered(Vec<Trade>),
    /// Best bid/offer updates.
    Quotes(Vec<Quote>),
    /// Trades of a cluster partition, each with the cluster's event-time clock once it was
    /// seen (applied after moving the clock there: [`crate::cluster`]); `alerts: false` while a
    /// node rebuilds a partition's state from the stream (the previous owner delivered those).
    Clocked {
        /// `(clock, trade)`, in stream order.
        trades: Vec<(Timestamp, Trade)>,
        /// Whether alerts these trades fire are delivered.
        alerts: bool,
    },
    /// The cluster's clocks moved without a trade of this partition.
    Clock {
        /// The event-time clock.
        event: Timestamp,
        /// The stream clock (at or after `event`; later when a quiet live market moved it).
        now: Timestamp,
        /// Whether alerts the move fires are delivered.
        alerts: bool,
    },
    /// A source ended after the trades before this event: cleanly (`None`) or with an error.
    SourceEnded {
        /// The feed that ended.
        feed: FeedId,
        /// The error that ended it, if any.
        error: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_towards_the_past() {
        assert_eq!(to_millis(1_500_000), 1);
        assert_eq!(to_millis(-1), -1);
    }

    #[test]
    fn trade_values_are_checked() {
        assert!(check_trade_values(1.0, 0.0).is_ok());
        assert_eq!(
            check_trade_values(0.0, 1.0),
            Err(TradeValueError::Price(0.0))
        );
        assert!(check_trade_values(f64::NAN, 1.0).is_err());
        assert_eq!(
            check_trade_values(1.0, -1.0),
            Err(TradeValueError::Size(-1.0))
        );
        assert!(check_trade_values(1.0, f64::INFINITY).is_err());
    }
}
