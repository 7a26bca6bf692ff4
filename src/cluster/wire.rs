//! What travels on the stream: one JSON object per message, flat and short-keyed.
//!
//! - a trade: `{"s":symbol,"p":price,"q":size,"t":exchange ns,"r":receive ns,"f":feed,"i":id?,
//!   "d":"buy"|"sell"?,"c":clock ns}` — `c` is the ingest's event-time clock once it has seen this
//!   trade: an analytics node moves its partition's clock there before applying the trade, so
//!   lateness and windows are judged exactly as one process judging every symbol would;
//! - a quote: `{"s","b":bid,"bs"?,"a":ask,"as"?,"t"?,"r","f"}`;
//! - a clock message (on `ticks.<p>.$clock`): `{"e":event-time clock,"n":stream clock}` — sent
//!   to every partition when a source ends and while the clock moves without trades in it.
//!
//! The feed is the ingest's name for it (`binance:BTCUSDT`, `replay:day.csv`); each node
//! registers the names it sees. The JetStream message id of a trade with a venue id is
//! `<feed>|<symbol>|<id>`: a resend after an ingest reconnect is dropped by the stream's duplicate
//! window.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::model::{Side, Timestamp};

/// A message on the stream, as written and read.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WireTick<'a> {
    /// The symbol (trades and quotes).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub s: Option<Cow<'a, str>>,
    /// The trade's price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<f64>,
    /// The trade's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<f64>,
    /// The venue's time (ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t: Option<Timestamp>,
    /// When the ingest received it (ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<Timestamp>,
    /// The feed's name at the ingest.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub f: Option<Cow<'a, str>>,
    /// The venue's trade id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i: Option<u64>,
    /// The taker side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<WireSide>,
    /// The ingest's event-time clock with this trade seen (ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c: Option<Timestamp>,
    /// A quote's bid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<f64>,
    /// A quote's bid size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bs: Option<f64>,
    /// A quote's ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a: Option<f64>,
    /// A quote's ask size.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "as")]
    pub a_s: Option<f64>,
    /// A clock message's event-time clock (ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<Timestamp>,
    /// A clock message's stream clock (ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<Timestamp>,
}

/// The taker side on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireSide {
    /// The buyer took.
    Buy,
    /// The seller took.
    Sell,
}

impl From<Side> for WireSide {
    fn from(side: Side) -> Self {
        match side {
            Side::Buy => WireSide::Buy,
            Side::Sell => WireSide::Sell,
        }
    }
}

impl From<WireSide> for Side {
    fn from(side: WireSide) -> Self {
        match side {
            WireSide::Buy => Side::Buy,
            WireSide::Sell => Side::Sell,
        }
    }
}

/// What a message on the stream is.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<'a> {
    /// A trade and the ingest's event-time clock with it seen.
    Trade {
        /// The symbol.
        symbol: Cow<'a, str>,
        /// Price.
        price: f64,
        /// Size.
        size: f64,
        /// The venue's time.
        exchange_ts: Timestamp,
        /// When the ingest received it.
        receive_ts: Timestamp,
        /// The feed's name.
        feed: Cow<'a, str>,
        /// The venue's id.
        id: Option<u64>,
        /// The taker side.
        side: Option<Side>,
        /// The ingest's event-time clock.
        clock: Timestamp,
    },
    /// A quote.
    Quote {
        /// The symbol.
        symbol: Cow<'a, str>,
        /// Best bid.
        bid: f64,
        /// Size at the bid.
        bid_size: Option<f64>,
        /// Best ask.
        ask: f64,
        /// Size at the ask.
        ask_size: Option<f64>,
        /// The venue's time.
        exchange_ts: Option<Timestamp>,
        /// When the ingest received it.
        receive_ts: Timestamp,
        /// The feed's name.
        feed: Cow<'a, str>,
    },
    /// The clocks moved.
    Clock {
        /// The event-time clock.
        event: Timestamp,
        /// The stream clock (at or after `event`).
        now: Timestamp,
    },
}

/// Why a message could not be read (counted and skipped by the node).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not the JSON of a message.
    #[error("not a tick message: {0}")]
    Json(#[from] serde_json::Error),
    /// A field the message's kind needs is missing or not a valid value.
    #[error("a tick message without a valid {0}")]
    Missing(&'static str),
}

impl<'a> WireTick<'a> {
    /// Reads a message.
    pub fn decode(bytes: &'a [u8]) -> Result<Decoded<'a>, WireError> {
        let tick: WireTick<'a> = serde_json::from_slice(bytes)?;
        tick.into_decoded()
    }

    fn into_decoded(self) -> Result<Decoded<'a>, WireError> {
        if let Some(event) = self.e {
            return Ok(Decoded::Clock {
                event,
                now: self.n.unwrap_or(event).max(event),
            });
        }
        let symbol = self.s.ok_or(WireError::Missing("symbol"))?;
        let feed = self.f.ok_or(WireError::Missing("feed"))?;
        let receive_ts = self.r.ok_or(WireError::Missing("receive time"))?;
        if let (Some(bid), Some(ask)) = (self.b, self.a) {
            return Ok(Decoded::Quote {
                symbol,
                bid,
                bid_size: self.bs,
                ask,
                ask_size: self.a_s,
                exchange_ts: self.t,
                receive_ts,
                feed,
            });
        }
        let price = self.p.ok_or(WireError::Missing("price"))?;
        let size = self.q.ok_or(WireError::Missing("size"))?;
        crate::model::check_trade_values(price, size)
            .map_err(|_| WireError::Missing("price and size"))?;
        let exchange_ts = self.t.ok_or(WireError::Missing("time"))?;
        Ok(Decoded::Trade {
            symbol,
            price,
            size,
            exchange_ts,
            receive_ts,
            feed,
            id: self.i,
            side: self.d.map(Side::from),
            clock: self.c.unwrap_or(exchange_ts),
        })
    }
}

/// Writes a trade message.
pub fn encode_trade(trade: &crate::model::Trade, feed: &str, clock: Timestamp, out: &mut Vec<u8>) {
    let tick = WireTick {
        s: Some(Cow::Borrowed(trade.symbol.as_str())),
        p: Some(trade.price),
        q: Some(trade.size),
        t: Some(trade.exchange_ts),
        r: Some(trade.receive_ts),
        f: Some(Cow::Borrowed(feed)),
        i: trade.trade_id,
        d: trade.side.map(WireSide::from),
        c: Some(clock),
        ..WireTick::default()
    };
    // Writing JSON into a Vec cannot fail for these types.
    let _ = serde_json::to_writer(out, &tick);
}

/// Writes a quote message.
pub fn encode_quote(quote: &crate::model::Quote, feed: &str, out: &mut Vec<u8>) {
    let tick = WireTick {
        s: Some(Cow::Borrowed(quote.symbol.as_str())),
        b: Some(quote.bid),
        bs: quote.bid_size,
        a: Some(quote.ask),
        a_s: quote.ask_size,
        t: quote.exchange_ts,
        r: Some(quote.receive_ts),
        f: Some(Cow::Borrowed(feed)),
        ..WireTick::default()
    };
    let _ = serde_json::to_writer(out, &tick);
}

/// Writes a clock message.
pub fn encode_clock(event: Timestamp, now: Timestamp, out: &mut Vec<u8>) {
    let tick = WireTick {
        e: Some(event),
        n: Some(now.max(event)),
        ..WireTick::default()
    };
    let _ = serde_json::to_writer(out, &tick);
}

/// The JetStream message id of a trade: `<feed>|<symbol>|<id>`, when the venue gave an id.
pub fn message_id(feed: &str, symbol: &str, id: Option<u64>) -> Option<String> {
    id.map(|id| format!("{feed}|{symbol}|{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FeedId, Quote, Symbol, Trade};

    #[test]
    fn trades_quotes_and_clocks_round_trip() {
        let trade = Trade {
            symbol: Symbol::new("BRK.B \"x\""),
            price: 412.5,
            size: 0.1 + 0.2,
            exchange_ts: 1_700_000_000_123_456_789,
            receive_ts: 1_700_000_000_200_000_000,
            feed: FeedId(3),
            trade_id: Some(u64::MAX),
            side: Some(Side::Sell),
        };
        let mut out = Vec::new();
        encode_trade(&trade, "binance:BTCUSDT", trade.exchange_ts + 5, &mut out);
        match WireTick::decode(&out).expect("decodes") {
            Decoded::Trade {
                symbol,
                price,
                size,
                exchange_ts,
                receive_ts,
                feed,
                id,
                side,
                clock,
            } => {
                assert_eq!(symbol, "BRK.B \"x\"");
                assert_eq!(price.to_bits(), trade.price.to_bits());
                assert_eq!(size.to_bits(), trade.size.to_bits());
                assert_eq!(
                    (exchange_ts, receive_ts),
                    (trade.exchange_ts, trade.receive_ts)
                );
                assert_eq!(feed, "binance:BTCUSDT");
                assert_eq!((id, side), (Some(u64::MAX), Some(Side::Sell)));
                assert_eq!(clock, trade.exchange_ts + 5);
            }
            other => panic!("{other:?}"),
        }
        let quote = Quote {
            symbol: Symbol::new("IBM"),
            bid: 1.0,
            bid_size: None,
            ask: 2.0,
            ask_size: Some(3.0),
            exchange_ts: None,
            receive_ts: 9,
            feed: FeedId(0),
        };
        out.clear();
        encode_quote(&quote, "f", &mut out);
        assert!(matches!(
            WireTick::decode(&out).expect("decodes"),
            Decoded::Quote {
                bid: 1.0,
                ask: 2.0,
                bid_size: None,
                ask_size: Some(3.0),
                exchange_ts: None,
                receive_ts: 9,
                ..
            }
        ));
        out.clear();
        encode_clock(10, 5, &mut out);
        assert_eq!(
            WireTick::decode(&out).expect("decodes"),
            Decoded::Clock { event: 10, now: 10 }
        );
    }

    #[test]
    fn bad_messages_are_errors() {
        assert!(WireTick::decode(b"not json").is_err());
        assert!(WireTick::decode(br#"{"s":"IBM","f":"x","r":1,"q":1,"t":1}"#).is_err());
        assert!(WireTick::decode(br#"{"s":"IBM","f":"x","r":1,"p":-1,"q":1,"t":1}"#).is_err());
        assert!(WireTick::decode(br#"{"p":1}"#).is_err());
        assert_eq!(message_id("f", "IBM", Some(7)).as_deref(), Some("f|IBM|7"));
        assert_eq!(message_id("f", "IBM", None), None);
    }
}
