//! Binance spot market streams: `trade`, `aggTrade` and `bookTicker` over the combined-stream
//! endpoint (docs: <https://github.com/binance/binance-spot-api-docs/blob/master/web-socket-streams.md>).
//!
//! The connector connects to `<base>/stream` and subscribes with
//! `{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}`, acknowledged by
//! `{"result":null,"id":1}`. Every data frame is wrapped:
//!
//! ```text
//! {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,
//!  "p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}
//! {"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000",
//!  "B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}
//! {"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}
//! ```
//!
//! Prices and sizes are decimal strings; `T` (trade time, ms) is the event time; `m` = the buyer
//! is the maker, so the taker sold. `bookTicker` carries no time at all: its quotes are stamped
//! with the feed's latest exchange time. Pings are WebSocket ping frames (every 20 s; a pong within
//! a minute), answered by the transport.

use std::borrow::Cow;
use std::time::Duration;

use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::feeds::event::{
    FeedEvent, FrameError, ParseContext, decimal, epoch_millis, trade_values,
};
use crate::feeds::venue::{Provider, Subscription, Venue, VenueServer};
use crate::model::{Quote, Side, Trade};

mod fast;
mod mock;

/// Binance spot combined streams.
#[derive(Debug, Clone, Copy)]
pub struct Binance;

/// The registered handle.
pub const PROVIDER: Provider = Provider::new(&Binance);

impl Venue for Binance {
    fn name(&self) -> &'static str {
        "binance"
    }

    fn default_url(&self) -> &'static str {
        DEFAULT_URL
    }

    fn default_channels(&self) -> &'static [&'static str] {
        &["trade", "bookTicker"]
    }

    fn connect_url(&self, base: &str, _credentials: Option<&crate::feeds::Credentials>) -> String {
        stream_url(base)
    }

    fn handshake(&self, subscription: &Subscription<'_>) -> Vec<String> {
        vec![subscribe_request(
            subscription.symbols,
            subscription.channels,
            1,
        )]
    }

    /// Binance pings every 20 s even when a stream is quiet.
    fn stale_after(&self) -> Duration {
        Duration::from_secs(45)
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

/// The public market-data endpoint.
pub const DEFAULT_URL: &str = "wss://stream.binance.com:9443";

/// The combined-stream URL for a base URL (`wss://stream.binance.com:9443` → `…/stream`).
pub fn stream_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/stream") {
        base.to_string()
    } else {
        format!("{base}/stream")
    }
}

/// The SUBSCRIBE request for `symbols` × `channels` (stream names are lower case).
pub fn subscribe_request(symbols: &[String], channels: &[String], id: u64) -> String {
    let params: Vec<String> = symbols
        .iter()
        .flat_map(|symbol| {
            channels
                .iter()
                .map(move |channel| format!("{}@{channel}", symbol.to_ascii_lowercase()))
        })
        .collect();
    serde_json::json!({ "method": "SUBSCRIBE", "params": params, "id": id }).to_string()
}

/// A combined-stream frame, read in one pass: Binance sends `stream` before `data`, so the
/// payload is read straight into its channel's type; in any other order it is kept raw and read
/// once the stream is known.
#[derive(Default)]
struct Frame<'a> {
    stream: Option<Cow<'a, str>>,
    data: Option<Data<'a>>,
    /// Whether a non-null `id` came (a request's answer).
    id: bool,
    code: Option<i64>,
    msg: Option<Cow<'a, str>>,
}

/// A frame's payload.
enum Data<'a> {
    Trade(TradePayload<'a>),
    AggTrade(AggTradePayload<'a>),
    BookTicker(BookTickerPayload<'a>),
    /// Read before its stream's name, or of a stream that is not read here.
    Raw(&'a RawValue),
}

/// The keys of a frame.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Key {
    Stream,
    Data,
    Id,
    Code,
    Msg,
    #[serde(other)]
    Other,
}

/// A string that borrows from the frame unless it has escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The channel of a stream name: `btcusdt@trade` → `trade`.
fn channel(stream: &str) -> &str {
    stream
        .rsplit_once('@')
        .map_or(stream, |(_, channel)| channel)
}

/// Reads a payload as its channel's type (kept raw when the channel is unknown or not read here).
struct DataSeed<'s, 'a>(Option<&'s str>, PhantomData<Data<'a>>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for DataSeed<'_, 'a> {
    type Value = Data<'a>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Data<'a>, D::Error> {
        Ok(match self.0 {
            Some("trade") => Data::Trade(Deserialize::deserialize(deserializer)?),
            Some("aggTrade") => Data::AggTrade(Deserialize::deserialize(deserializer)?),
            Some("bookTicker") => Data::BookTicker(Deserialize::deserialize(deserializer)?),
            _ => Data::Raw(Deserialize::deserialize(deserializer)?),
        })
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Frame<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FrameVisitor(PhantomData))
    }
}

struct FrameVisitor<'a>(PhantomData<Frame<'a>>);

impl<'de: 'a, 'a> Visitor<'de> for FrameVisitor<'a> {
    type Value = Frame<'a>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a Binance frame (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Frame<'a>, A::Error> {
        let mut frame = Frame::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Stream => frame.stream = Some(map.next_value::<Text<'a>>()?.0),
                Key::Data => {
                    let channel = frame.stream.as_deref().map(channel);
                    frame.data = Some(map.next_value_seed(DataSeed(channel, PhantomData))?);
                }
                Key::Id => frame.id = map.next_value::<Option<IgnoredAny>>()?.is_some(),
                Key::Code => frame.code = map.next_value()?,
                Key::Msg => frame.msg = map.next_value::<Option<Text<'a>>>()?.map(|t| t.0),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(frame)
    }
}

#[derive(Deserialize)]
struct EventType<'a> {
    #[serde(rename = "e", borrow)]
    event: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TradePayload<'a> {
    #[serde(rename = "s", borrow)]
    symbol: Cow<'a, str>,
    #[serde(rename = "t")]
    trade_id: u64,
    #[serde(rename = "p", borrow)]
    price: Cow<'a, str>,
    #[serde(rename = "q", borrow)]
    quantity: Cow<'a, str>,
    #[serde(rename = "T")]
    trade_time: i64,
    #[serde(rename = "m")]
    buyer_is_maker: bool,
}

#[derive(Deserialize)]
struct AggTradePayload<'a> {
    #[serde(rename = "s", borrow)]
    symbol: Cow<'a, str>,
    #[serde(rename = "a")]
    aggregate_id: u64,
    #[serde(rename = "p", borrow)]
    price: Cow<'a, str>,
    #[serde(rename = "q", borrow)]
    quantity: Cow<'a, str>,
    #[serde(rename = "T")]
    trade_time: i64,
    #[serde(rename = "m")]
    buyer_is_maker: bool,
}

#[derive(Deserialize)]
struct BookTickerPayload<'a> {
    #[serde(rename = "s", borrow)]
    symbol: Cow<'a, str>,
    #[serde(rename = "b", borrow)]
    bid: Cow<'a, str>,
    #[serde(rename = "B", borrow)]
    bid_size: Cow<'a, str>,
    #[serde(rename = "a", borrow)]
    ask: Cow<'a, str>,
    #[serde(rename = "A", borrow)]
    ask_size: Cow<'a, str>,
}

fn malformed(error: serde_json::Error) -> FrameError {
    FrameError::Malformed(error.to_string())
}

fn trade(
    ctx: &mut ParseContext,
    symbol: &str,
    price: &str,
    quantity: &str,
    trade_time: i64,
    trade_id: u64,
    buyer_is_maker: bool,
) -> Result<FeedEvent, FrameError> {
    let price = decimal("p", price)?;
    let size = decimal("q", quantity)?;
    trade_values(price, size)?;
    let exchange_ts = epoch_millis("T", trade_time)?;
    ctx.saw_exchange_time(exchange_ts);
    Ok(FeedEvent::Trade(Trade {
        symbol: ctx.symbol(symbol)?,
        price,
        size,
        exchange_ts,
        receive_ts: ctx.receive_ts,
        feed: ctx.feed,
        trade_id: Some(trade_id),
        side: Some(if buyer_is_maker {
            Side::Sell
        } else {
            Side::Buy
        }),
    }))
}

/// Parses one text frame into `out`: a trade frame in Binance's own layout straight from its
/// bytes ([`fast`]), anything else with the general parser.
pub fn parse(
    text: &str,
    ctx: &mut ParseContext,
    out: &mut Vec<FeedEvent>,
) -> Result<(), FrameError> {
    if let Some(t) = fast::trade(text) {
        out.push(trade(
            ctx,
            t.symbol,
            t.price,
            t.quantity,
            t.trade_time,
            t.trade_id,
            t.buyer_is_maker,
        )?);
        return Ok(());
    }
    parse_general(text, ctx, out)
}

/// Parses any frame with `serde_json`.
fn parse_general(
    text: &str,
    ctx: &mut ParseContext,
    out: &mut Vec<FeedEvent>,
) -> Result<(), FrameError> {
    let frame: Frame<'_> = serde_json::from_str(text).map_err(malformed)?;
    if let Some(code) = frame.code {
        out.push(FeedEvent::ProviderError {
            code: Some(code),
            message: frame.msg.map(Cow::into_owned).unwrap_or_default(),
        });
        return Ok(());
    }
    let Some(data) = frame.data else {
        if frame.id {
            out.push(FeedEvent::Ack);
            return Ok(());
        }
        return Err(FrameError::MissingField("data"));
    };
    // A payload read before its stream's name: read again, now that the channel is known.
    let data = match data {
        Data::Raw(raw) => {
            let stream = frame.stream.as_deref().unwrap_or_default();
            let mut payload = serde_json::Deserializer::from_str(raw.get());
            match DataSeed(Some(channel(stream)), PhantomData)
                .deserialize(&mut payload)
                .map_err(malformed)?
            {
                Data::Raw(raw) => {
                    let kind: EventType<'_> = serde_json::from_str(raw.get()).map_err(malformed)?;
                    if kind.event.as_deref() == Some("serverShutdown") {
                        out.push(FeedEvent::ServerShutdown);
                    }
                    // Other streams (depth, kline, …) are not ours to interpret: skipped, not
                    // errors.
                    return Ok(());
                }
                data => data,
            }
        }
        data => data,
    };
    match data {
        Data::Trade(p) => out.push(trade(
            ctx,
            &p.symbol,
            &p.price,
            &p.quantity,
            p.trade_time,
            p.trade_id,
            p.buyer_is_maker,
        )?),
        Data::AggTrade(p) => out.push(trade(
            ctx,
            &p.symbol,
            &p.price,
            &p.quantity,
            p.trade_time,
            p.aggregate_id,
            p.buyer_is_maker,
        )?),
        Data::BookTicker(p) => out.push(FeedEvent::Quote(Quote {
            symbol: ctx.symbol(&p.symbol)?,
            bid: decimal("b", &p.bid)?,
            bid_size: Some(decimal("B", &p.bid_size)?),
            ask: decimal("a", &p.ask)?,
            ask_size: Some(decimal("A", &p.ask_size)?),
            exchange_ts: ctx.last_exchange_ts,
            receive_ts: ctx.receive_ts,
            feed: ctx.feed,
        })),
        Data::Raw(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FeedId;

    fn parse_one(text: &str) -> Result<Vec<FeedEvent>, FrameError> {
        let mut ctx = ParseContext::new(FeedId(3));
        ctx.receive_ts = 42;
        let mut out = Vec::new();
        parse(text, &mut ctx, &mut out).map(|()| out)
    }

    #[test]
    fn real_trade_frame() {
        let events = parse_one(r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#).expect("parses");
        let [FeedEvent::Trade(trade)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(trade.symbol.as_str(), "BTCUSDT");
        assert_eq!(trade.price, 61837.63);
        assert_eq!(trade.size, 0.02);
        assert_eq!(trade.exchange_ts, 1_723_161_255_342_000_000);
        assert_eq!(trade.receive_ts, 42);
        assert_eq!(trade.trade_id, Some(3_735_683_259));
        assert_eq!(trade.side, Some(Side::Sell));
        assert_eq!(trade.feed, FeedId(3));
    }

    #[test]
    fn payload_before_its_stream_name_reads_the_same() {
        let stream_first = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#;
        let data_first = r#"{"data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true},"stream":"btcusdt@trade"}"#;
        let shutdown =
            r#"{"data":{"e":"serverShutdown","E":1770123456789},"stream":"!serverShutdown"}"#;
        assert_eq!(
            format!("{:?}", parse_one(stream_first)),
            format!("{:?}", parse_one(data_first))
        );
        assert!(matches!(
            parse_one(shutdown).as_deref(),
            Ok([FeedEvent::ServerShutdown])
        ));
    }

    #[test]
    fn agg_trade_and_book_ticker() {
        let mut ctx = ParseContext::new(FeedId(0));
        let mut out = Vec::new();
        parse(r#"{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}"#, &mut ctx, &mut out).expect("parses");
        parse(r#"{"stream":"nknusdt@aggTrade","data":{"e":"aggTrade","E":1633998523963,"s":"NKNUSDT","a":15683430,"p":"0.35280000","q":"58.00000000","f":19862790,"l":19862790,"T":1633998523963,"m":false,"M":true}}"#, &mut ctx, &mut out).expect("parses");
        parse(r#"{"stream":"btcusdt@bookTicker","data":{"u":50093239219,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.60520000"}}"#, &mut ctx, &mut out).expect("parses");
        let FeedEvent::Quote(before) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(before.exchange_ts, None, "no exchange time seen yet");
        assert_eq!(
            (before.bid, before.ask, before.ask_size),
            (61837.63, 61837.64, Some(1.54698))
        );
        let FeedEvent::Trade(agg) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (agg.trade_id, agg.side),
            (Some(15_683_430), Some(Side::Buy))
        );
        let FeedEvent::Quote(after) = &out[2] else {
            panic!("{out:?}")
        };
        assert_eq!(
            after.exchange_ts,
            Some(1_633_998_523_963_000_000),
            "stamped with the feed's latest exchange time"
        );
    }

    #[test]
    fn control_frames() {
        assert_eq!(
            parse_one(r#"{"result":null,"id":1}"#),
            Ok(vec![FeedEvent::Ack])
        );
        assert_eq!(
            parse_one(r#"{"code":2,"msg":"Invalid request: unknown variant","id":5}"#),
            Ok(vec![FeedEvent::ProviderError {
                code: Some(2),
                message: "Invalid request: unknown variant".into()
            }])
        );
        assert_eq!(
            parse_one(
                r#"{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}"#
            ),
            Ok(vec![FeedEvent::ServerShutdown])
        );
        assert_eq!(
            parse_one(
                r#"{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1","2"]],"a":[]}}"#
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let cases = [
            "",
            "not json",
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"61837.63","q":"0.02","T":1,"m":tr"#,
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"abc","q":"0.02","T":1,"m":true}}"#,
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"1","q":"0.02","m":true}}"#,
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":"x","p":"1","q":"1","T":1,"m":true}}"#,
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"-1","q":"1","T":1,"m":true}}"#,
            r#"{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"1","q":"1","T":9223372036854775807,"m":true}}"#,
            r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":1.5,"B":"1","a":"2","A":"1"}}"#,
            r#"{"stream":"btcusdt@trade"}"#,
            r#"[1,2,3]"#,
        ];
        for case in cases {
            assert!(parse_one(case).is_err(), "{case:?} should not parse");
        }
    }

    #[test]
    fn subscription() {
        let request = subscribe_request(
            &["BTCUSDT".into(), "ETHUSDT".into()],
            &["trade".into(), "bookTicker".into()],
            1,
        );
        assert_eq!(
            request,
            r#"{"id":1,"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@bookTicker","ethusdt@trade","ethusdt@bookTicker"]}"#
        );
        assert_eq!(
            stream_url("wss://stream.binance.com:9443/"),
            "wss://stream.binance.com:9443/stream"
        );
    }
}
