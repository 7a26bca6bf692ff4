//! Alpaca market data v2 stream (stocks): trades `t` and quotes `q`
//! (docs: <https://docs.alpaca.markets/docs/real-time-stock-pricing-data>).
//!
//! ```text
//! <- [{"T":"success","msg":"connected"}]
//! -> {"action":"auth","key":"…","secret":"…"}
//! <- [{"T":"success","msg":"authenticated"}]
//! -> {"action":"subscribe","trades":["AAPL"],"quotes":["AAPL"]}
//! <- [{"T":"subscription","trades":["AAPL"],"quotes":["AAPL"],"bars":[],…}]
//! <- [{"T":"t","i":96921,"S":"AAPL","x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"}]
//! <- [{"T":"q","S":"FAKEPACA","bx":"O","bp":133.85,"bs":4,"ax":"R","ap":135.77,"as":5,"c":["R"],"z":"A","t":"2024-07-24T07:56:53.639713735Z"}]
//! <- [{"T":"error","code":402,"msg":"auth failed"}]
//! ```
//!
//! Key and secret come from the environment (`APCA_API_KEY_ID`, `APCA_API_SECRET_KEY` by
//! default) and must arrive within 10 s of connecting. Errors (401 not authenticated, 402 auth
//! failed, 404 auth timeout, 405 symbol limit, 406 connection limit, 407 slow client, …) are
//! reported as feed errors; the venue closes the connection and the connector backs off. Trade
//! ids are per exchange (`x`), so the id kept for duplicate detection combines both, and there is
//! no gap check.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use crate::feeds::event::{FeedEvent, FrameError, ParseContext, rfc3339, trade_values};
use crate::feeds::venue::{CredentialsEnv, Provider, Subscription, Venue, VenueServer};
use crate::model::{Quote, Trade};

mod mock;

/// Alpaca market data v2, stocks (key and secret required).
#[derive(Debug, Clone, Copy)]
pub struct Alpaca;

/// The registered handle.
pub const PROVIDER: Provider = Provider::new(&Alpaca);

impl Venue for Alpaca {
    fn name(&self) -> &'static str {
        "alpaca"
    }

    fn default_url(&self) -> &'static str {
        DEFAULT_URL
    }

    fn default_channels(&self) -> &'static [&'static str] {
        &["trades", "quotes"]
    }

    fn credentials_env(&self) -> CredentialsEnv {
        CredentialsEnv {
            key: Some(DEFAULT_KEY_ENV),
            secret: Some(DEFAULT_SECRET_ENV),
        }
    }

    fn handshake(&self, subscription: &Subscription<'_>) -> Vec<String> {
        handshake(
            subscription.key(),
            subscription.secret(),
            subscription.symbols,
            subscription.channels,
        )
    }

    /// Ids are per exchange, not consecutive per symbol.
    fn sequential_trade_ids(&self) -> bool {
        false
    }

    /// Alpaca sends no heartbeat: quiet symbols outside market hours are silent for long.
    fn stale_after(&self) -> Duration {
        Duration::from_secs(300)
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
        Box::new(mock::Server::default())
    }
}

/// The free IEX feed; `…/v2/sip` for the consolidated tape, `…/v2/test` for the test stream.
pub const DEFAULT_URL: &str = "wss://stream.data.alpaca.markets/v2/iex";
/// The environment variable holding the API key id.
pub const DEFAULT_KEY_ENV: &str = "APCA_API_KEY_ID";
/// The environment variable holding the API secret.
pub const DEFAULT_SECRET_ENV: &str = "APCA_API_SECRET_KEY";

/// Authentication, then the subscription (`trades` and/or `quotes` channels).
pub fn handshake(key: &str, secret: &str, symbols: &[String], channels: &[String]) -> Vec<String> {
    let mut subscribe = serde_json::json!({ "action": "subscribe" });
    for channel in channels {
        subscribe[channel.as_str()] = serde_json::json!(symbols);
    }
    vec![
        serde_json::json!({ "action": "auth", "key": key, "secret": secret }).to_string(),
        subscribe.to_string(),
    ]
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "T", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "S", borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    msg: Option<Cow<'a, str>>,
    code: Option<i64>,
    i: Option<u64>,
    #[serde(borrow)]
    x: Option<Cow<'a, str>>,
    p: Option<f64>,
    s: Option<f64>,
    #[serde(borrow)]
    t: Option<Cow<'a, str>>,
    bp: Option<f64>,
    bs: Option<f64>,
    ap: Option<f64>,
    #[serde(rename = "as")]
    ask_size: Option<f64>,
}

/// Combines an exchange code and its trade id into one id (top byte: the exchange).
fn trade_id(exchange: Option<&str>, id: u64) -> u64 {
    let code = exchange.and_then(|x| x.bytes().next()).unwrap_or(0);
    (u64::from(code) << 56) | (id & 0x00FF_FFFF_FFFF_FFFF)
}

/// Parses one frame (a JSON array of messages) into `out`.
pub fn parse(
    text: &str,
    ctx: &mut ParseContext,
    out: &mut Vec<FeedEvent>,
) -> Result<(), FrameError> {
    let items: Vec<Item<'_>> =
        serde_json::from_str(text).map_err(|error| FrameError::Malformed(error.to_string()))?;
    for item in &items {
        match item.kind.as_ref() {
            "t" => {
                let price = item.p.ok_or(FrameError::MissingField("p"))?;
                let size = item.s.ok_or(FrameError::MissingField("s"))?;
                trade_values(price, size)?;
                let exchange_ts =
                    rfc3339("t", item.t.as_deref().ok_or(FrameError::MissingField("t"))?)?;
                ctx.saw_exchange_time(exchange_ts);
                let symbol = item
                    .symbol
                    .as_deref()
                    .ok_or(FrameError::MissingField("S"))?;
                out.push(FeedEvent::Trade(Trade {
                    symbol: ctx.symbol(symbol)?,
                    price,
                    size,
                    exchange_ts,
                    receive_ts: ctx.receive_ts,
                    feed: ctx.feed,
                    trade_id: item.i.map(|id| trade_id(item.x.as_deref(), id)),
                    side: None,
                }));
            }
            "q" => {
                let symbol = item
                    .symbol
                    .as_deref()
                    .ok_or(FrameError::MissingField("S"))?;
                let exchange_ts = item.t.as_deref().map(|t| rfc3339("t", t)).transpose()?;
                out.push(FeedEvent::Quote(Quote {
                    symbol: ctx.symbol(symbol)?,
                    bid: item.bp.ok_or(FrameError::MissingField("bp"))?,
                    bid_size: item.bs,
                    ask: item.ap.ok_or(FrameError::MissingField("ap"))?,
                    ask_size: item.ask_size,
                    exchange_ts: exchange_ts.or(ctx.last_exchange_ts),
                    receive_ts: ctx.receive_ts,
                    feed: ctx.feed,
                }));
            }
            "subscription" => out.push(FeedEvent::Ack),
            "error" => out.push(FeedEvent::ProviderError {
                code: item.code,
                message: item.msg.as_deref().unwrap_or_default().to_string(),
            }),
            // "success" (connected, authenticated), bars, statuses, corrections: not ours.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One frame through the venue's parser (the shared helper of every venue's tests).
    fn parse_one(text: &str) -> Result<Vec<FeedEvent>, FrameError> {
        crate::feeds::venue::parse_frames(&Alpaca, &[text])
    }

    #[test]
    fn documented_frames() {
        assert_eq!(
            parse_one(r#"[{"T":"success","msg":"connected"}]"#),
            Ok(vec![])
        );
        assert_eq!(
            parse_one(
                r#"[{"T":"subscription","trades":["AAPL"],"quotes":["AMD"],"bars":["*"],"updatedBars":[],"dailyBars":[],"statuses":[],"lulds":[],"corrections":["AAPL"],"cancelErrors":["AAPL"]}]"#
            ),
            Ok(vec![FeedEvent::Ack])
        );
        let events = parse_one(r#"[{"T":"t","i":96921,"S":"AAPL","x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"},{"T":"q","S":"FAKEPACA","bx":"O","bp":133.85,"bs":4,"ax":"R","ap":135.77,"as":5,"c":["R"],"z":"A","t":"2024-07-24T07:56:53.639713735Z"},{"T":"b","S":"FAKEPACA","o":132.65,"h":136,"l":132.12,"c":134.65,"v":205,"t":"2024-07-24T07:56:00Z","n":16,"vw":133.7}]"#).expect("parses");
        let FeedEvent::Trade(trade) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!((trade.price, trade.size), (126.55, 1.0));
        assert_eq!(trade.exchange_ts, 1_614_009_104_208_000_000);
        assert_eq!(trade.trade_id, Some((u64::from(b'D') << 56) | 96_921));
        let FeedEvent::Quote(quote) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (quote.bid, quote.bid_size, quote.ask, quote.ask_size),
            (133.85, Some(4.0), 135.77, Some(5.0))
        );
        assert_eq!(quote.exchange_ts, Some(1_721_807_813_639_713_735));
        assert_eq!(events.len(), 2, "bars are not ours");
    }

    #[test]
    fn errors_and_malformed_frames() {
        assert_eq!(
            parse_one(r#"[{"T":"error","code":402,"msg":"auth failed"}]"#),
            Ok(vec![FeedEvent::ProviderError {
                code: Some(402),
                message: "auth failed".into()
            }])
        );
        for frame in [
            r#"{"T":"t"}"#,
            r#"[{"T":"t","i":1,"S":"A","p":1,"t":"2021-02-22T15:51:44Z"}]"#,
            r#"[{"T":"t","i":1,"S":"A","p":"1","s":1,"t":"2021-02-22T15:51:44Z"}]"#,
            r#"[{"T":"t","i":1,"S":"A","p":1,"s":1,"t":"later"}]"#,
            r#"[{"T":"q","S":"A","bp":1}]"#,
        ] {
            assert!(parse_one(frame).is_err(), "{frame}");
        }
    }

    #[test]
    fn handshake_authenticates_then_subscribes() {
        assert_eq!(
            handshake(
                "id",
                "secret",
                &["AAPL".into()],
                &["trades".into(), "quotes".into()]
            ),
            [
                r#"{"action":"auth","key":"id","secret":"secret"}"#,
                r#"{"action":"subscribe","quotes":["AAPL"],"trades":["AAPL"]}"#,
            ]
        );
    }
}
