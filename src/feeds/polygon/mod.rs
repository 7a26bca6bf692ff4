//! Polygon.io (now Massive) stocks WebSocket: trades `T` and quotes `Q`
//! (docs: <https://massive.com/docs/websocket/stocks/trades>).
//!
//! ```text
//! <- [{"ev":"status","status":"connected","message":"Connected Successfully"}]
//! -> {"action":"auth","params":"<API_KEY>"}
//! <- [{"ev":"status","status":"auth_success","message":"authenticated"}]
//! -> {"action":"subscribe","params":"T.AAPL,Q.AAPL"}
//! <- [{"ev":"status","status":"success","message":"subscribed to: T.AAPL"}]
//! <- [{"ev":"T","sym":"MSFT","x":4,"i":"12345","z":3,"p":114.125,"s":100,"c":[0,12],"t":1536036818784,"q":3681328}]
//! <- [{"ev":"Q","sym":"MSFT","bx":4,"bp":114.125,"bs":100,"ax":7,"ap":114.128,"as":160,"c":0,"t":1536036818784,"z":3}]
//! ```
//!
//! `t` is SIP time in epoch milliseconds. Trade ids (`i`, a string) are per exchange (`x`): the id
//! kept for duplicate detection combines both. The sequence `q` increases per symbol but is not
//! contiguous, so it is no gap signal. Errors arrive as statuses (`auth_failed`, `auth_timeout`,
//! `max_connections`) and are reported as feed errors. The API key comes from the environment
//! (`POLYGON_API_KEY` by default).

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use crate::feeds::event::{FeedEvent, FrameError, ParseContext, epoch_millis, trade_values};
use crate::feeds::venue::{CredentialsEnv, Provider, Subscription, Venue, VenueServer};
use crate::model::{Quote, Trade};

mod mock;

/// Polygon.io (Massive) stocks (API key required).
#[derive(Debug, Clone, Copy)]
pub struct Polygon;

/// The registered handle.
pub const PROVIDER: Provider = Provider::new(&Polygon);

impl Venue for Polygon {
    fn name(&self) -> &'static str {
        "polygon"
    }

    fn default_url(&self) -> &'static str {
        DEFAULT_URL
    }

    fn default_channels(&self) -> &'static [&'static str] {
        &["T", "Q"]
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["massive"]
    }

    fn credentials_env(&self) -> CredentialsEnv {
        CredentialsEnv {
            key: Some(DEFAULT_KEY_ENV),
            secret: None,
        }
    }

    fn handshake(&self, subscription: &Subscription<'_>) -> Vec<String> {
        handshake(
            subscription.key(),
            subscription.symbols,
            subscription.channels,
        )
    }

    /// Ids are per exchange, not consecutive per symbol.
    fn sequential_trade_ids(&self) -> bool {
        false
    }

    /// Polygon sends no heartbeat: quiet symbols outside market hours are silent for long.
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

/// The real-time stocks cluster.
pub const DEFAULT_URL: &str = "wss://socket.polygon.io/stocks";
/// The environment variable holding the API key.
pub const DEFAULT_KEY_ENV: &str = "POLYGON_API_KEY";

/// Authentication, then one subscription for every symbol × channel (`T`, `Q`).
pub fn handshake(key: &str, symbols: &[String], channels: &[String]) -> Vec<String> {
    let params: Vec<String> = channels
        .iter()
        .flat_map(|channel| {
            symbols
                .iter()
                .map(move |symbol| format!("{channel}.{symbol}"))
        })
        .collect();
    vec![
        serde_json::json!({ "action": "auth", "params": key }).to_string(),
        serde_json::json!({ "action": "subscribe", "params": params.join(",") }).to_string(),
    ]
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    ev: Cow<'a, str>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sym: Option<Cow<'a, str>>,
    x: Option<u64>,
    #[serde(borrow)]
    i: Option<Cow<'a, str>>,
    p: Option<f64>,
    s: Option<f64>,
    t: Option<i64>,
    q: Option<u64>,
    bp: Option<f64>,
    bs: Option<f64>,
    ap: Option<f64>,
    #[serde(rename = "as")]
    ask_size: Option<f64>,
}

/// Parses one frame (a JSON array of events) into `out`.
pub fn parse(
    text: &str,
    ctx: &mut ParseContext,
    out: &mut Vec<FeedEvent>,
) -> Result<(), FrameError> {
    let items: Vec<Item<'_>> =
        serde_json::from_str(text).map_err(|error| FrameError::Malformed(error.to_string()))?;
    for item in &items {
        match item.ev.as_ref() {
            "T" => {
                let price = item.p.ok_or(FrameError::MissingField("p"))?;
                let size = item.s.ok_or(FrameError::MissingField("s"))?;
                trade_values(price, size)?;
                let exchange_ts = epoch_millis("t", item.t.ok_or(FrameError::MissingField("t"))?)?;
                ctx.saw_exchange_time(exchange_ts);
                let symbol = item.sym.as_deref().ok_or(FrameError::MissingField("sym"))?;
                // `q` increases per symbol but skips numbers: only going backwards is counted.
                if let Some(sequence) = item.q {
                    ctx.check_sequence(symbol, sequence, false);
                }
                let id = item.i.as_deref().and_then(|i| i.parse::<u64>().ok());
                out.push(FeedEvent::Trade(Trade {
                    symbol: ctx.symbol(symbol)?,
                    price,
                    size,
                    exchange_ts,
                    receive_ts: ctx.receive_ts,
                    feed: ctx.feed,
                    trade_id: id
                        .map(|id| (item.x.unwrap_or(0) << 56) | (id & 0x00FF_FFFF_FFFF_FFFF)),
                    side: None,
                }));
            }
            "Q" => {
                let symbol = item.sym.as_deref().ok_or(FrameError::MissingField("sym"))?;
                let exchange_ts = item.t.map(|t| epoch_millis("t", t)).transpose()?;
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
            "status" => match item.status.as_deref() {
                Some("success") => out.push(FeedEvent::Ack),
                Some("connected" | "auth_success") => {}
                status => out.push(FeedEvent::ProviderError {
                    code: None,
                    message: format!(
                        "{}: {}",
                        status.unwrap_or("status"),
                        item.message.as_deref().unwrap_or_default()
                    ),
                }),
            },
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
        crate::feeds::venue::parse_frames(&Polygon, &[text])
    }

    #[test]
    fn documented_frames() {
        assert_eq!(
            parse_one(
                r#"[{"ev":"status","status":"connected","message":"Connected Successfully"}]"#
            ),
            Ok(vec![])
        );
        assert_eq!(
            parse_one(r#"[{"ev":"status","status":"success","message":"subscribed to: T.MSFT"}]"#),
            Ok(vec![FeedEvent::Ack])
        );
        let events = parse_one(r#"[{"ev":"T","sym":"MSFT","x":4,"i":"12345","z":3,"p":114.125,"s":100,"c":[0,12],"t":1536036818784,"q":3681328},{"ev":"Q","sym":"MSFT","bx":4,"bp":114.125,"bs":100,"ax":7,"ap":114.128,"as":160,"c":0,"t":1536036818784,"z":3},{"ev":"AM","sym":"GTE","v":4110,"av":9470157,"op":0.4372,"vw":0.4488,"o":0.4488,"c":0.4486,"h":0.4489,"l":0.4486,"a":0.4352,"z":685,"s":1610144640000,"e":1610144700000}]"#).expect("parses");
        let FeedEvent::Trade(trade) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (trade.price, trade.size, trade.exchange_ts),
            (114.125, 100.0, 1_536_036_818_784_000_000)
        );
        assert_eq!(trade.trade_id, Some((4 << 56) | 12_345));
        let FeedEvent::Quote(quote) = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (quote.bid, quote.ask, quote.ask_size),
            (114.125, 114.128, Some(160.0))
        );
        assert_eq!(events.len(), 2, "aggregates are not ours");
    }

    #[test]
    fn errors_and_malformed_frames() {
        assert_eq!(
            parse_one(
                r#"[{"ev":"status","status":"auth_failed","message":"authentication failed"}]"#
            ),
            Ok(vec![FeedEvent::ProviderError {
                code: None,
                message: "auth_failed: authentication failed".into()
            }])
        );
        for frame in [
            r#"{"ev":"T"}"#,
            r#"[{"ev":"T","sym":"A","p":1,"t":1}]"#,
            r#"[{"ev":"T","sym":"A","p":1,"s":1,"t":"1"}]"#,
            r#"[{"ev":"T","sym":"A","p":1,"s":1,"t":9223372036854775807}]"#,
            r#"[{"ev":"Q","sym":"A","ap":1}]"#,
        ] {
            assert!(parse_one(frame).is_err(), "{frame}");
        }
    }

    #[test]
    fn handshake_authenticates_then_subscribes() {
        assert_eq!(
            handshake(
                "k",
                &["AAPL".into(), "MSFT".into()],
                &["T".into(), "Q".into()]
            ),
            [
                r#"{"action":"auth","params":"k"}"#,
                r#"{"action":"subscribe","params":"T.AAPL,T.MSFT,Q.AAPL,Q.MSFT"}"#
            ]
        );
    }
}
