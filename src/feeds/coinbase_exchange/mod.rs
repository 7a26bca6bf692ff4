//! Coinbase Exchange, the legacy public feed (provider `coinbase-exchange`,
//! <https://docs.cdp.coinbase.com/exchange/docs/websocket-overview>): one subscribe with every
//! channel (`matches`, `ticker`, `heartbeat`), acknowledged by `subscriptions`; trades are
//! `match` (and one `last_match` after subscribing):
//!
//! ```text
//! {"type":"match","trade_id":1568268,"maker_order_id":"…","taker_order_id":"…","side":"sell",
//!  "size":"450","price":"0.791","product_id":"SKL-USD","sequence":201390075,"time":"2021-04-17T16:43:37.121358Z"}
//! ```
//!
//! `side` is the maker's; `sequence` is per product across all channels, so with a few channels
//! subscribed it skips numbers: a match whose sequence does not increase is counted as a gap,
//! and the connector checks trade ids for jumps. Prices and sizes are decimal strings, times
//! RFC 3339 with microseconds.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use crate::feeds::coinbase::{malformed, optional_decimal, trade};
use crate::feeds::event::{FeedEvent, FrameError, ParseContext, decimal, rfc3339};
use crate::feeds::venue::{Provider, Subscription, Venue, VenueServer};
use crate::model::Quote;

mod mock;

/// The Exchange public feed.
pub const EXCHANGE_URL: &str = "wss://ws-feed.exchange.coinbase.com";

/// Coinbase Exchange (the legacy public feed).
#[derive(Debug, Clone, Copy)]
pub struct CoinbaseExchange;

/// The registered handle.
pub const PROVIDER: Provider = Provider::new(&CoinbaseExchange);

impl Venue for CoinbaseExchange {
    fn name(&self) -> &'static str {
        "coinbase-exchange"
    }

    fn default_url(&self) -> &'static str {
        EXCHANGE_URL
    }

    fn default_channels(&self) -> &'static [&'static str] {
        &["matches", "ticker"]
    }

    fn handshake(&self, subscription: &Subscription<'_>) -> Vec<String> {
        vec![exchange_subscription(
            subscription.symbols,
            subscription.channels,
        )]
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
        parse_exchange(text, ctx, out)
    }

    fn server(&self) -> Box<dyn VenueServer> {
        Box::new(mock::Server::default())
    }
}

/// The Exchange subscription: every channel in one message, plus `heartbeat`.
pub fn exchange_subscription(products: &[String], channels: &[String]) -> String {
    let mut channels: Vec<&str> = channels.iter().map(String::as_str).collect();
    if !channels.contains(&"heartbeat") {
        channels.push("heartbeat");
    }
    serde_json::json!({ "type": "subscribe", "product_ids": products, "channels": channels })
        .to_string()
}

#[derive(Deserialize)]
struct ExchangeMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    product_id: Option<Cow<'a, str>>,
    trade_id: Option<u64>,
    sequence: Option<u64>,
    #[serde(borrow)]
    side: Option<Cow<'a, str>>,
    #[serde(borrow)]
    size: Option<Cow<'a, str>>,
    #[serde(borrow)]
    price: Option<Cow<'a, str>>,
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    best_bid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    best_bid_size: Option<Cow<'a, str>>,
    #[serde(borrow)]
    best_ask: Option<Cow<'a, str>>,
    #[serde(borrow)]
    best_ask_size: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
}

fn required<'a>(
    value: &'a Option<Cow<'a, str>>,
    field: &'static str,
) -> Result<&'a str, FrameError> {
    value.as_deref().ok_or(FrameError::MissingField(field))
}

/// Parses one Exchange-feed frame into `out`.
pub fn parse_exchange(
    text: &str,
    ctx: &mut ParseContext,
    out: &mut Vec<FeedEvent>,
) -> Result<(), FrameError> {
    let m: ExchangeMessage<'_> = serde_json::from_str(text).map_err(malformed)?;
    match m.kind.as_ref() {
        "match" | "last_match" => {
            let trade_id = m.trade_id.ok_or(FrameError::MissingField("trade_id"))?;
            // The product's sequence spans every channel, so with only some channels subscribed
            // it skips numbers; among matches it must still increase.
            if let (Some(sequence), Some(product)) = (m.sequence, m.product_id.as_deref()) {
                ctx.check_sequence(product, sequence, false);
            }
            out.push(FeedEvent::Trade(trade(
                ctx,
                required(&m.product_id, "product_id")?,
                required(&m.price, "price")?,
                required(&m.size, "size")?,
                required(&m.time, "time")?,
                trade_id,
                m.side.as_deref().unwrap_or_default(),
            )?));
        }
        "ticker" => {
            let (Some(bid), Some(ask)) = (&m.best_bid, &m.best_ask) else {
                return Ok(());
            };
            let exchange_ts = m.time.as_deref().map(|t| rfc3339("time", t)).transpose()?;
            out.push(FeedEvent::Quote(Quote {
                symbol: ctx.symbol(required(&m.product_id, "product_id")?)?,
                bid: decimal("best_bid", bid)?,
                bid_size: optional_decimal("best_bid_size", &m.best_bid_size)?,
                ask: decimal("best_ask", ask)?,
                ask_size: optional_decimal("best_ask_size", &m.best_ask_size)?,
                exchange_ts: exchange_ts.or(ctx.last_exchange_ts),
                receive_ts: ctx.receive_ts,
                feed: ctx.feed,
            }));
        }
        "heartbeat" => out.push(FeedEvent::Heartbeat),
        "subscriptions" => out.push(FeedEvent::Ack),
        "error" => out.push(FeedEvent::ProviderError {
            code: None,
            message: [m.message.as_deref(), m.reason.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": "),
        }),
        // Unknown message types must be ignored (Coinbase's rule): level2, snapshot, status, …
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::venue::parse_frames;
    use crate::model::{FeedId, Side};

    #[test]
    fn exchange_match_last_match_and_ticker_from_a_real_session() {
        let events = parse_frames(&CoinbaseExchange, &[
            r#"{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BAND-GBP"]}]}"#,
            r#"{"type":"ticker","sequence":333938798,"product_id":"BAND-GBP","price":"14.7775","open_24h":"14.6647","volume_24h":"94381.28000000","low_24h":"14.3691","high_24h":"16.55","volume_30d":"2295579.57000000","best_bid":"14.7550","best_ask":"14.8060","side":"buy","time":"2021-04-17T16:43:30.244075Z","trade_id":881613,"last_size":"0.04"}"#,
            r#"{"type":"last_match","trade_id":881613,"maker_order_id":"27fff20b-af29-4f45-8744-56dd1ef57dc0","taker_order_id":"1da6ce16-c8da-4732-9f71-6049f4c6aaf8","side":"sell","size":"0.04","price":"14.7775","product_id":"BAND-GBP","sequence":333938798,"time":"2021-04-17T16:43:30.244075Z"}"#,
            r#"{"type":"l2update","product_id":"BAND-GBP","changes":[["buy","14.7550","0.0"]],"time":"2021-04-17T16:43:37.2Z"}"#,
            r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}"#,
        ])
        .expect("parses");
        assert_eq!(events[0], FeedEvent::Ack);
        let FeedEvent::Quote(quote) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (quote.bid, quote.ask, quote.bid_size),
            (14.755, 14.806, None)
        );
        assert_eq!(quote.exchange_ts, Some(1_618_677_810_244_075_000));
        let FeedEvent::Trade(trade) = &events[2] else {
            panic!("{events:?}")
        };
        assert_eq!(trade.symbol.as_str(), "BAND-GBP");
        assert_eq!(
            (trade.price, trade.size, trade.trade_id),
            (14.7775, 0.04, Some(881_613))
        );
        assert_eq!(
            trade.side,
            Some(Side::Buy),
            "the maker sold, so the taker bought"
        );
        assert_eq!(events[3], FeedEvent::Heartbeat);
        assert_eq!(events.len(), 4, "l2update ignored");
    }

    #[test]
    fn exchange_sequences_must_increase_among_matches() {
        let mut ctx = ParseContext::new(FeedId(0));
        let mut out = Vec::new();
        for sequence in [10, 12, 11] {
            let frame = format!(
                r#"{{"type":"match","trade_id":{sequence},"side":"buy","size":"1","price":"1","product_id":"X","sequence":{sequence},"time":"2021-04-17T16:43:37Z"}}"#
            );
            parse_exchange(&frame, &mut ctx, &mut out).expect("parses");
        }
        assert_eq!(
            ctx.take_gaps(),
            1,
            "12 → 11 went backwards; 10 → 12 is a skip, not a gap"
        );
    }

    #[test]
    fn errors_and_malformed_frames() {
        assert_eq!(
            parse_frames(
                &CoinbaseExchange,
                &[
                    r#"{"type":"error","message":"Failed to subscribe","reason":"BAD-USD is not a valid product"}"#
                ]
            ),
            Ok(vec![FeedEvent::ProviderError {
                code: None,
                message: "Failed to subscribe: BAD-USD is not a valid product".into()
            }])
        );
        let exchange_bad = [
            "{",
            r#"{"type":"match","product_id":"X","price":"1","size":"1","time":"2021-04-17T16:43:30Z","side":"buy"}"#,
            r#"{"type":"match","trade_id":1,"product_id":"X","price":"one","size":"1","time":"2021-04-17T16:43:30Z","side":"buy"}"#,
            r#"{"type":"match","trade_id":1,"product_id":"X","price":"1","size":"1","time":"yesterday","side":"buy"}"#,
            r#"{"type":"match","trade_id":"1","product_id":"X","price":"1","size":"1","time":"2021-04-17T16:43:30Z","side":"buy"}"#,
            r#"{"type":7}"#,
        ];
        for frame in exchange_bad {
            assert!(
                parse_frames(&CoinbaseExchange, &[frame]).is_err(),
                "{frame}"
            );
        }
    }

    #[test]
    fn subscription() {
        let products = vec!["BTC-USD".to_string()];
        assert_eq!(
            exchange_subscription(&products, &["matches".into(), "ticker".into()]),
            r#"{"channels":["matches","ticker","heartbeat"],"product_ids":["BTC-USD"],"type":"subscribe"}"#
        );
    }
}
