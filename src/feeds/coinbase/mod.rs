//! Coinbase, both public WebSocket APIs:
//!
//! - **Advanced Trade** (provider `coinbase`, <https://docs.cdp.coinbase.com/advanced-trade/docs/ws-overview>):
//!   one subscribe message per channel (`market_trades`, `ticker`, and `heartbeats`, which keeps
//!   idle channels from being closed after 60–90 s):
//!   ```text
//!   {"type":"subscribe","product_ids":["BTC-USD"],"channel":"market_trades"}
//!   {"channel":"market_trades","client_id":"","timestamp":"2026-04-07T14:30:02.789012Z","sequence_num":5,
//!    "events":[{"type":"update","trades":[{"trade_id":"995098700","product_id":"BTC-USD",
//!    "price":"68900.50","size":"0.00150000","side":"BUY","time":"2026-04-07T14:30:02.789012Z"}]}]}
//!   ```
//!   Trades of one event are listed newest first: they are put back in trade-id order. `side` is
//!   the maker's, so the taker is the other side. `sequence_num` counts every message of the
//!   connection: a jump is a gap.
//! - **Exchange** (provider `coinbase-exchange`, <https://docs.cdp.coinbase.com/exchange/docs/websocket-overview>):
//!   one subscribe with every channel (`matches`, `ticker`, `heartbeat`), acknowledged by
//!   `subscriptions`; trades are `match` (and one `last_match` after subscribing):
//!   ```text
//!   {"type":"match","trade_id":1568268,"maker_order_id":"…","taker_order_id":"…","side":"sell",
//!    "size":"450","price":"0.791","product_id":"SKL-USD","sequence":201390075,"time":"2021-04-17T16:43:37.121358Z"}
//!   ```
//!   `side` is the maker's; `sequence` is per product across all channels, so with a few channels
//!   subscribed it skips numbers: a match whose sequence does not increase is counted as a gap,
//!   and the connector checks trade ids for jumps.
//!
//! Prices and sizes are decimal strings, times RFC 3339 with microseconds.

use std::borrow::Cow;

use serde::Deserialize;

use crate::feeds::event::{FeedEvent, FrameError, ParseContext, decimal, rfc3339, trade_values};
use crate::model::{Quote, Side, Trade};

/// The Advanced Trade market-data endpoint.
pub const ADVANCED_TRADE_URL: &str = "wss://advanced-trade-ws.coinbase.com";
/// The Exchange public feed.
pub const EXCHANGE_URL: &str = "wss://ws-feed.exchange.coinbase.com";

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

/// The Exchange subscription: every channel in one message, plus `heartbeat`.
pub fn exchange_subscription(products: &[String], channels: &[String]) -> String {
    let mut channels: Vec<&str> = channels.iter().map(String::as_str).collect();
    if !channels.contains(&"heartbeat") {
        channels.push("heartbeat");
    }
    serde_json::json!({ "type": "subscribe", "product_ids": products, "channels": channels })
        .to_string()
}

fn malformed(error: serde_json::Error) -> FrameError {
    FrameError::Malformed(error.to_string())
}

/// The taker side from the maker side Coinbase reports.
fn taker_side(maker_side: &str) -> Option<Side> {
    match maker_side.to_ascii_lowercase().as_str() {
        "buy" => Some(Side::Sell),
        "sell" => Some(Side::Buy),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn trade(
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

// ---- Exchange feed -------------------------------------------------------------------------

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

fn optional_decimal(
    field: &'static str,
    value: &Option<Cow<'_, str>>,
) -> Result<Option<f64>, FrameError> {
    value
        .as_deref()
        .map(|text| decimal(field, text))
        .transpose()
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

// ---- Advanced Trade ------------------------------------------------------------------------

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
    use crate::model::FeedId;

    fn run(
        parse: fn(&str, &mut ParseContext, &mut Vec<FeedEvent>) -> Result<(), FrameError>,
        frames: &[&str],
    ) -> Result<Vec<FeedEvent>, FrameError> {
        let mut ctx = ParseContext::new(FeedId(1));
        let mut out = Vec::new();
        for frame in frames {
            parse(frame, &mut ctx, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn exchange_match_last_match_and_ticker_from_a_real_session() {
        let events = run(parse_exchange, &[
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
    fn advanced_trade_batches_are_put_back_in_order() {
        let events = run(parse_advanced_trade, &[
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
        assert_eq!(
            run(
                parse_exchange,
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
            assert!(run(parse_exchange, &[frame]).is_err(), "{frame}");
        }
        let advanced_bad = [
            r#"{"events":[]}"#,
            r#"{"channel":"market_trades","events":[{"trades":[{"trade_id":"x","product_id":"A","price":"1","size":"1","side":"BUY","time":"2026-04-07T14:30:02Z"}]}]}"#,
            r#"{"channel":"market_trades","events":[{"trades":[{"trade_id":"1","product_id":"A","price":"1","size":"-1","side":"BUY","time":"2026-04-07T14:30:02Z"}]}]}"#,
            r#"{"channel":"market_trades","events":[{"trades":[{"trade_id":"1"}]}]}"#,
        ];
        for frame in advanced_bad {
            assert!(run(parse_advanced_trade, &[frame]).is_err(), "{frame}");
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
        assert_eq!(
            exchange_subscription(&products, &["matches".into(), "ticker".into()]),
            r#"{"channels":["matches","ticker","heartbeat"],"product_ids":["BTC-USD"],"type":"subscribe"}"#
        );
    }
}
