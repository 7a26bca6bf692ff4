//! Kraken spot WebSocket v2: `trade` and `ticker` (docs: <https://docs.kraken.com/api/docs/websocket-v2/trade>).
//!
//! ```text
//! {"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD"],"snapshot":true},"req_id":1}
//! {"method":"subscribe","result":{"channel":"trade","symbol":"BTC/USD","snapshot":true},"success":true,
//!  "time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z","req_id":1}
//! {"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,
//!  "qty":6423.46326,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"}]}
//! {"channel":"heartbeat"}
//! {"method":"ping","req_id":101}  ->  {"method":"pong","req_id":101,"time_in":"…","time_out":"…"}
//! ```
//!
//! Prices and quantities are JSON numbers; `side` is the taker's; `trade_id` is sequential per
//! pair (a jump is a gap). A subscription sends a snapshot of the last 50 trades first (`type`
//! `snapshot`): after a reconnect those are trades already seen, dropped as duplicates.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use crate::feeds::event::{FeedEvent, FrameError, ParseContext, rfc3339, trade_values};
use crate::feeds::venue::{Provider, Subscription, Venue, VenueServer};
use crate::model::{Quote, Side, Trade};

mod mock;

/// Kraken spot v2.
#[derive(Debug, Clone, Copy)]
pub struct Kraken;

/// The registered handle.
pub const PROVIDER: Provider = Provider::new(&Kraken);

impl Venue for Kraken {
    fn name(&self) -> &'static str {
        "kraken"
    }

    fn default_url(&self) -> &'static str {
        DEFAULT_URL
    }

    fn default_channels(&self) -> &'static [&'static str] {
        &["trade", "ticker"]
    }

    fn handshake(&self, subscription: &Subscription<'_>) -> Vec<String> {
        subscriptions(subscription.symbols, subscription.channels)
    }

    fn app_ping_every(&self) -> Option<Duration> {
        Some(Duration::from_secs(10))
    }

    fn app_ping(&self, id: u64) -> Option<String> {
        Some(ping(id))
    }

    /// Heartbeats about once a second once subscribed, pongs to our pings every 10 s.
    fn stale_after(&self) -> Duration {
        Duration::from_secs(15)
    }

    fn parse(
        &self,
        text: &str,
        ctx: &mut ParseContext,
        out: &mut Vec<FeedEvent>,
    ) -> Result<(), FrameError> {
        parse(text, ctx, out)
    }

    fn server(&self) -> Box<dyn VenueServer> {
        Box::new(mock::Server)
    }
}

/// The public endpoint.
pub const DEFAULT_URL: &str = "wss://ws.kraken.com/v2";

/// One subscribe request per channel.
pub fn subscriptions(symbols: &[String], channels: &[String]) -> Vec<String> {
    channels
        .iter()
        .enumerate()
        .map(|(i, channel)| {
            let mut params = serde_json::json!({ "channel": channel, "symbol": symbols });
            if channel == "trade" {
                params["snapshot"] = serde_json::Value::Bool(true);
            }
            serde_json::json!({ "method": "subscribe", "params": params, "req_id": i + 1 })
                .to_string()
        })
        .collect()
}

/// The application-level ping.
pub fn ping(req_id: u64) -> String {
    serde_json::json!({ "method": "ping", "req_id": req_id }).to_string()
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    success: Option<bool>,
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Vec<Item<'a>>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    side: Option<Cow<'a, str>>,
    price: Option<f64>,
    qty: Option<f64>,
    trade_id: Option<u64>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    bid: Option<f64>,
    bid_qty: Option<f64>,
    ask: Option<f64>,
    ask_qty: Option<f64>,
}

/// Parses one frame into `out`.
pub fn parse(
    text: &str,
    ctx: &mut ParseContext,
    out: &mut Vec<FeedEvent>,
) -> Result<(), FrameError> {
    let message: Message<'_> =
        serde_json::from_str(text).map_err(|error| FrameError::Malformed(error.to_string()))?;
    if let Some(method) = message.method.as_deref() {
        match (method, message.success) {
            ("pong", _) => out.push(FeedEvent::Heartbeat),
            (_, Some(false)) => out.push(FeedEvent::ProviderError {
                code: None,
                message: message.error.map(Cow::into_owned).unwrap_or_default(),
            }),
            ("subscribe", _) => out.push(FeedEvent::Ack),
            _ => {}
        }
        return Ok(());
    }
    match message.channel.as_deref() {
        Some("trade") => {
            for item in &message.data {
                let symbol = item
                    .symbol
                    .as_deref()
                    .ok_or(FrameError::MissingField("symbol"))?;
                let price = item.price.ok_or(FrameError::MissingField("price"))?;
                let size = item.qty.ok_or(FrameError::MissingField("qty"))?;
                trade_values(price, size)?;
                let exchange_ts = rfc3339(
                    "timestamp",
                    item.timestamp
                        .as_deref()
                        .ok_or(FrameError::MissingField("timestamp"))?,
                )?;
                ctx.saw_exchange_time(exchange_ts);
                out.push(FeedEvent::Trade(Trade {
                    symbol: ctx.symbol(symbol)?,
                    price,
                    size,
                    exchange_ts,
                    receive_ts: ctx.receive_ts,
                    feed: ctx.feed,
                    trade_id: Some(item.trade_id.ok_or(FrameError::MissingField("trade_id"))?),
                    side: match item.side.as_deref() {
                        Some("buy") => Some(Side::Buy),
                        Some("sell") => Some(Side::Sell),
                        _ => None,
                    },
                }));
            }
        }
        Some("ticker") => {
            for item in &message.data {
                let (Some(bid), Some(ask)) = (item.bid, item.ask) else {
                    continue;
                };
                let exchange_ts = item
                    .timestamp
                    .as_deref()
                    .map(|t| rfc3339("timestamp", t))
                    .transpose()?;
                out.push(FeedEvent::Quote(Quote {
                    symbol: ctx.symbol(
                        item.symbol
                            .as_deref()
                            .ok_or(FrameError::MissingField("symbol"))?,
                    )?,
                    bid,
                    bid_size: item.bid_qty,
                    ask,
                    ask_size: item.ask_qty,
                    exchange_ts: exchange_ts.or(ctx.last_exchange_ts),
                    receive_ts: ctx.receive_ts,
                    feed: ctx.feed,
                }));
            }
        }
        Some("heartbeat") => out.push(FeedEvent::Heartbeat),
        Some(_) => {}
        None => return Err(FrameError::MissingField("channel")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames through the venue's parser with one context (the shared helper of every venue's
    /// tests).
    fn parse_all(frames: &[&str]) -> Result<Vec<FeedEvent>, FrameError> {
        crate::feeds::venue::parse_frames(&Kraken, frames)
    }

    #[test]
    fn documented_frames() {
        let events = parse_all(&[
            r#"{"method":"subscribe","result":{"channel":"trade","symbol":"BTC/USD","snapshot":true},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z","req_id":1}"#,
            r#"{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"}]}"#,
            r#"{"channel":"ticker","type":"update","data":[{"symbol":"MATIC/USD","bid":0.5146,"bid_qty":100.0,"ask":0.5148,"ask_qty":50.5,"last":0.5147,"volume":1000.0,"vwap":0.51,"low":0.5,"high":0.52,"change":0.01,"change_pct":1.98}]}"#,
            r#"{"channel":"heartbeat"}"#,
            r#"{"method":"pong","req_id":101,"time_in":"2023-09-24T14:10:23.799685Z","time_out":"2023-09-24T14:10:23.799703Z"}"#,
            r#"{"channel":"status","type":"update","data":[{"version":"2.0.0","system":"online","api_version":"v2","connection_id":1,"protocol":"ws"}]}"#,
        ])
        .expect("parses");
        assert_eq!(events[0], FeedEvent::Ack);
        let FeedEvent::Trade(trade) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (trade.price, trade.size, trade.trade_id, trade.side),
            (0.5147, 6423.46326, Some(4_665_846), Some(Side::Buy))
        );
        assert_eq!(trade.exchange_ts, 1_695_628_116_925_533_000);
        let FeedEvent::Quote(quote) = &events[2] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (quote.bid, quote.ask_size, quote.exchange_ts),
            (0.5146, Some(50.5), Some(trade.exchange_ts))
        );
        assert_eq!(&events[3..], [FeedEvent::Heartbeat, FeedEvent::Heartbeat]);
    }

    #[test]
    fn errors_and_malformed_frames() {
        assert_eq!(
            parse_all(&[
                r#"{"error":"Currency pair not supported","method":"subscribe","success":false,"req_id":1}"#
            ]),
            Ok(vec![FeedEvent::ProviderError {
                code: None,
                message: "Currency pair not supported".into()
            }])
        );
        for frame in [
            "",
            r#"{"data":[]}"#,
            r#"{"channel":"trade","data":[{"symbol":"A","side":"buy","price":"1","qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
            r#"{"channel":"trade","data":[{"symbol":"A","side":"buy","price":1,"qty":1,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
            r#"{"channel":"trade","data":[{"symbol":"A","side":"buy","price":0,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
            r#"{"channel":"trade","data":[{"symbol":"A","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"soon"}]}"#,
        ] {
            assert!(parse_all(&[frame]).is_err(), "{frame}");
        }
    }

    #[test]
    fn requests() {
        assert_eq!(
            subscriptions(&["BTC/USD".into()], &["trade".into(), "ticker".into()]),
            [
                r#"{"method":"subscribe","params":{"channel":"trade","snapshot":true,"symbol":["BTC/USD"]},"req_id":1}"#,
                r#"{"method":"subscribe","params":{"channel":"ticker","symbol":["BTC/USD"]},"req_id":2}"#,
            ]
        );
        assert_eq!(ping(7), r#"{"method":"ping","req_id":7}"#);
    }
}
