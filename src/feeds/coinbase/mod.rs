//! Coinbase Advanced Trade (provider `coinbase`, <https://docs.cdp.coinbase.com/advanced-trade/docs/ws-overview>):
//! one subscribe message per channel (`market_trades`, `ticker`, and `heartbeats`, which keeps
//! idle channels from being closed after 60–90 s):
//!
//! ```text
//! {"type":"subscribe","product_ids":["BTC-USD"],"channel":"market_trades"}
//! {"channel":"market_trades","client_id":"","timestamp":"2026-04-07T14:30:02.789012Z","sequence_num":5,
//!  "events":[{"type":"update","trades":[{"trade_id":"995098700","product_id":"BTC-USD",
//!  "price":"68900.50","size":"0.00150000","side":"BUY","time":"2026-04-07T14:30:02.789012Z"}]}]}
//! ```
//!
//! Trades of one event are listed newest first: they are put back in trade-id order. `side` is
//! the maker's, so the taker is the other side. `sequence_num` counts every message of the
//! connection: a jump is a gap. Prices and sizes are decimal strings, times RFC 3339 with
//! microseconds. The legacy Exchange feed is its own venue, [`crate::feeds::coinbase_exchange`];
//! the two share the trade fields below.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use crate::feeds::event::{FeedEvent, FrameError, ParseContext, decimal, rfc3339, trade_values};
use crate::feeds::venue::{Provider, Subscription, Venue, VenueServer};
use crate::model::{Quote, Side, Trade};

pub(crate) mod mock;

/// The Advanced Trade market-data endpoint.
pub const ADVANCED_TRADE_URL: &str = "wss://advanced-trade-ws.coinbase.com";

/// Coinbase Advanced Trade market data.
#[derive(Debug, Clone, Copy)]
pub struct Coinbase;

/// The registered handle.
pub const PROVIDER: Provider = Provider::new(&Coinbase);

impl Venue for Coinbase {
    fn name(&self) -> &'static str {
        "coinbase"
    }

    fn default_url(&self) -> &'static str {
        ADVANCED_TRADE_URL
    }

    fn default_channels(&self) -> &'static [&'static str] {
        &["market_trades", "ticker"]
    }

    fn handshake(&self, subscription: &Subscription<'_>) -> Vec<String> {
        advanced_trade_subscriptions(subscription.symbols, subscription.channels)
    }

    /// A heartbeat every second once subscribed.
    fn stale_after(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn parse(
        &self,
        text: &str,
        ctx: &mut ParseContext,
        out: &mut Vec<FeedEvent>,
    ) -> Result<(), FrameError> {
        parse_advanced_trade(text, ctx, out)
    }

    fn server(&self) -> Box<dyn VenueServer> {
        Box::new(mock::Server::default())
    }
}

/// Advanced Trade subscriptions: one message per channel, plus `heartbeats`.
pub fn advanced_trade_subscriptions(products: &[String], channels: &[String]) -> Vec<String> {
    let mut channels: Vec<&str> = channels.iter().map(String::as_str).collect();
    if !channels.contains(&"heartbeats") {
        channels.push("heartbeats");
    }
    channels
        .into_iter()
        .map(|channel| {
            serde_json::json!({ "type": "subscribe", "product_ids": products, "channel": channel })
                .to_string()
        })
        .collect()
}

pub(crate) fn malformed(error: serde_json::Error) -> FrameError {
    FrameError::Malformed(error.to_string())
}

/// The taker side from the maker side Coinbase reports.
pub(crate) fn taker_side(maker_side: &str) -> Option<Side> {
    match maker_side.to_ascii_lowercase().as_str() {
        "buy" => Some(Side::Sell),
        "sell" => Some(Side::Buy),
        _ => None,
    }
}

/// A trade from the fields both Coinbase APIs send.
#[allow(clippy::too_many_arguments)]
pub(crate) fn trade(
    ctx: &mut ParseContext,
    product: &str,
    price: &str,
    size: &str,
    time_text: &str,
    trade_id: u64,
    maker_side: &str,
) -> Result<Trade, FrameError> {
    let price = decimal("price", price)?;
    let size = decimal("size", size)?;
    trade_values(price, size)?;
    let exchange_ts = rfc3339("time", time_text)?;
    ctx.saw_exchange_time(exchange_ts);
    Ok(Trade {
        symbol: ctx.symbol(product)?,
        price,
        size,
        exchange_ts,
        receive_ts: ctx.receive_ts,
        feed: ctx.feed,
        trade_id: Some(trade_id),
        side: taker_side(maker_side),
    })
}

/// An optional decimal field.
pub(crate) fn optional_decimal(
    field: &'static str,
    value: &Option<Cow<'_, str>>,
) -> Result<Option<f64>, FrameError> {
    value
        .as_deref()
        .map(|text| decimal(field, text))
        .transpose()
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    sequence_num: Option<u64>,
    #[serde(default, borrow)]
    events: Vec<AdvancedEvent<'a>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AdvancedEvent<'a> {
    #[serde(default, borrow)]
    trades: Vec<AdvancedTrade<'a>>,
    #[serde(default, borrow)]
    tickers: Vec<AdvancedTicker<'a>>,
}

#[derive(Deserialize)]
struct AdvancedTrade<'a> {
    #[serde(borrow)]
    trade_id: Cow<'a, str>,
    #[serde(borrow)]
    product_id: Cow<'a, str>,
    #[serde(borrow)]
    price: Cow<'a, str>,
    #[serde(borrow)]
    size: Cow<'a, str>,
    #[serde(borrow)]
    side: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

#[derive(Deserialize)]
struct AdvancedTicker<'a> {
    #[serde(borrow)]
    product_id: Cow<'a, str>,
    #[serde(borrow)]
    best_bid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    best_bid_quantity: Option<Cow<'a, str>>,
    #[serde(borrow)]
    best_ask: Option<Cow<'a, str>>,
    #[serde(borrow)]
    best_ask_quantity: Option<Cow<'a, str>>,
}

/// Parses one Advanced Trade frame into `out`.
pub fn parse_advanced_trade(
    text: &str,
    ctx: &mut ParseContext,
    out: &mut Vec<FeedEvent>,
) -> Result<(), FrameError> {
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(malformed)?;
    if envelope.kind.as_deref() == Some("error") {
        out.push(FeedEvent::ProviderError {
            code: None,
            message: envelope.message.map(Cow::into_owned).unwrap_or_default(),
        });
        return Ok(());
    }
    let channel = envelope
        .channel
        .as_deref()
        .ok_or(FrameError::MissingField("channel"))?;
    // `sequence_num` numbers every message of the connection: a jump means lost messages.
    if let Some(sequence) = envelope.sequence_num {
        ctx.check_sequence("connection", sequence, true);
    }
    match channel {
        "market_trades" => {
            for event in &envelope.events {
                let first = out.len();
                for t in &event.trades {
                    let trade_id = t
                        .trade_id
                        .parse::<u64>()
                        .map_err(|_| FrameError::BadValue {
                            field: "trade_id",
                            value: t.trade_id.to_string(),
                        })?;
                    out.push(FeedEvent::Trade(trade(
                        ctx,
                        &t.product_id,
                        &t.price,
                        &t.size,
                        &t.time,
                        trade_id,
                        &t.side,
                    )?));
                }
                // Newest first on the wire: back to the order they happened.
                out[first..].sort_by_key(|event| match event {
                    FeedEvent::Trade(trade) => (trade.exchange_ts, trade.trade_id),
                    _ => (0, None),
                });
            }
        }
        "ticker" | "ticker_batch" => {
            let envelope_ts = envelope
                .timestamp
                .as_deref()
                .map(|t| rfc3339("timestamp", t))
                .transpose()?;
            for event in &envelope.events {
                for t in &event.tickers {
                    let (Some(bid), Some(ask)) = (&t.best_bid, &t.best_ask) else {
                        continue;
                    };
                    out.push(FeedEvent::Quote(Quote {
                        symbol: ctx.symbol(&t.product_id)?,
                        bid: decimal("best_bid", bid)?,
                        bid_size: optional_decimal("best_bid_quantity", &t.best_bid_quantity)?,
                        ask: decimal("best_ask", ask)?,
                        ask_size: optional_decimal("best_ask_quantity", &t.best_ask_quantity)?,
                        exchange_ts: envelope_ts.or(ctx.last_exchange_ts),
                        receive_ts: ctx.receive_ts,
                        feed: ctx.feed,
                    }));
                }
            }
        }
        "heartbeats" => out.push(FeedEvent::Heartbeat),
        "subscriptions" => out.push(FeedEvent::Ack),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::venue::parse_frames;
    use crate::model::FeedId;

    #[test]
    fn advanced_trade_batches_are_put_back_in_order() {
        let events = parse_frames(&Coinbase, &[
            r#"{"channel":"market_trades","client_id":"","timestamp":"2026-04-07T14:30:02.9Z","sequence_num":5,"events":[{"type":"update","trades":[{"trade_id":"995098702","product_id":"BTC-USD","price":"68901.00","size":"0.1","side":"SELL","time":"2026-04-07T14:30:02.800000Z"},{"trade_id":"995098700","product_id":"BTC-USD","price":"68900.50","size":"0.00150000","side":"BUY","time":"2026-04-07T14:30:02.789012Z"}]}]}"#,
            r#"{"channel":"ticker","client_id":"","timestamp":"2026-04-07T14:30:03.000000Z","sequence_num":12,"events":[{"type":"snapshot","tickers":[{"type":"ticker","product_id":"BTC-USD","price":"68900.50","volume_24_h":"15328.12345678","low_24_h":"67500.00","high_24_h":"69200.00","low_52_w":"25000.00","high_52_w":"73800.00","price_percent_chg_24_h":"1.85","best_bid":"68900.00","best_bid_quantity":"1.50000000","best_ask":"68901.00","best_ask_quantity":"0.50000000"}]}]}"#,
            r#"{"channel":"heartbeats","client_id":"","timestamp":"2026-04-07T14:30:10.000000Z","sequence_num":0,"events":[{"current_time":"2026-04-07 14:30:10.000000000+00:00","heartbeat_counter":42}]}"#,
        ])
        .expect("parses");
        let ids: Vec<Option<u64>> = events
            .iter()
            .filter_map(|e| {
                if let FeedEvent::Trade(t) = e {
                    Some(t.trade_id)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(ids, [Some(995_098_700), Some(995_098_702)]);
        let FeedEvent::Trade(first) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(first.side, Some(Side::Sell), "maker BUY: taker sold");
        let FeedEvent::Quote(quote) = &events[2] else {
            panic!("{events:?}")
        };
        assert_eq!((quote.bid_size, quote.ask_size), (Some(1.5), Some(0.5)));
        assert_eq!(quote.exchange_ts, Some(1_775_572_203_000_000_000));
        assert_eq!(events[3], FeedEvent::Heartbeat);
    }

    #[test]
    fn advanced_trade_sequence_gaps_are_counted() {
        let mut ctx = ParseContext::new(FeedId(0));
        let mut out = Vec::new();
        for sequence in [0, 1, 3] {
            let frame =
                format!(r#"{{"channel":"heartbeats","sequence_num":{sequence},"events":[]}}"#);
            parse_advanced_trade(&frame, &mut ctx, &mut out).expect("parses");
        }
        assert_eq!(ctx.take_gaps(), 1, "message 2 was lost");
    }

    #[test]
    fn errors_and_malformed_frames() {
        let advanced_bad = [
            r#"{"events":[]}"#,
            r#"{"channel":"market_trades","events":[{"trades":[{"trade_id":"x","product_id":"A","price":"1","size":"1","side":"BUY","time":"2026-04-07T14:30:02Z"}]}]}"#,
            r#"{"channel":"market_trades","events":[{"trades":[{"trade_id":"1","product_id":"A","price":"1","size":"-1","side":"BUY","time":"2026-04-07T14:30:02Z"}]}]}"#,
            r#"{"channel":"market_trades","events":[{"trades":[{"trade_id":"1"}]}]}"#,
        ];
        for frame in advanced_bad {
            assert!(parse_frames(&Coinbase, &[frame]).is_err(), "{frame}");
        }
    }

    #[test]
    fn subscriptions() {
        let products = vec!["BTC-USD".to_string()];
        let advanced = advanced_trade_subscriptions(&products, &["market_trades".into()]);
        assert_eq!(
            advanced,
            [
                r#"{"channel":"market_trades","product_ids":["BTC-USD"],"type":"subscribe"}"#,
                r#"{"channel":"heartbeats","product_ids":["BTC-USD"],"type":"subscribe"}"#,
            ]
        );
    }
}
