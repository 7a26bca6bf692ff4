//! Finnhub WebSocket trades (docs: <https://finnhub.io/docs/api/websocket-trades>).
//!
//! The API key travels in the URL (`wss://ws.finnhub.io?token=<key>`): it is added when
//! connecting and never shown (`/v1/feeds` shows the URL without it). Then one subscribe per
//! symbol, without acknowledgement:
//!
//! ```text
//! {"type":"subscribe","symbol":"AAPL"}
//! {"data":[{"c":["1","8","24","12"],"p":122.1,"s":"TSLA","t":1672348887195,"v":1},
//!          {"c":["1","24","12"],"p":129.58,"s":"AAPL","t":1672348887666,"v":1}],"type":"trade"}
//! {"type":"ping"}
//! {"msg":"Subscribing to too many symbols","type":"error"}
//! ```
//!
//! `t` is epoch milliseconds; `v = 0` marks a price update from a venue without trade prints,
//! not a trade: it is skipped. Finnhub has no trade ids (no duplicate or gap check) and is known
//! to go silent without closing: the stale-feed timer reconnects it.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use crate::feeds::event::{FeedEvent, FrameError, ParseContext, epoch_millis, trade_values};
use crate::feeds::venue::{
    Credentials, CredentialsEnv, Provider, Subscription, Venue, VenueServer,
};
use crate::model::Trade;

mod mock;

/// Finnhub trades (API key required).
#[derive(Debug, Clone, Copy)]
pub struct Finnhub;

/// The registered handle.
pub const PROVIDER: Provider = Provider::new(&Finnhub);

impl Venue for Finnhub {
    fn name(&self) -> &'static str {
        "finnhub"
    }

    fn default_url(&self) -> &'static str {
        DEFAULT_URL
    }

    fn default_channels(&self) -> &'static [&'static str] {
        &["trade"]
    }

    fn credentials_env(&self) -> CredentialsEnv {
        CredentialsEnv {
            key: Some(DEFAULT_KEY_ENV),
            secret: None,
        }
    }

    fn connect_url(&self, base: &str, credentials: Option<&Credentials>) -> String {
        match credentials {
            Some(credentials) => url_with_token(base, credentials.key.expose()),
            None => base.to_string(),
        }
    }

    fn handshake(&self, subscription: &Subscription<'_>) -> Vec<String> {
        subscriptions(subscription.symbols)
    }

    /// Finnhub sends no acknowledgement: the feed is live once the subscriptions are sent.
    fn acknowledges(&self) -> bool {
        false
    }

    /// Finnhub's trades carry no id.
    fn sequential_trade_ids(&self) -> bool {
        false
    }

    /// Finnhub pings about once a minute, and its sockets are known to go silent.
    fn stale_after(&self) -> Duration {
        Duration::from_secs(90)
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
pub const DEFAULT_URL: &str = "wss://ws.finnhub.io";

/// The environment variable holding the API key, unless configured otherwise.
pub const DEFAULT_KEY_ENV: &str = "FINNHUB_TOKEN";

/// The URL with the API key.
pub fn url_with_token(base: &str, token: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    // An HTTP request target needs a path: `wss://ws.finnhub.io` → `wss://ws.finnhub.io/?token=…`.
    let host_and_path = base.split_once("://").map_or(base, |(_, rest)| rest);
    let slash = if host_and_path.contains('/') { "" } else { "/" };
    format!("{base}{slash}{separator}token={token}")
}

/// One subscribe per symbol.
pub fn subscriptions(symbols: &[String]) -> Vec<String> {
    symbols
        .iter()
        .map(|symbol| serde_json::json!({ "type": "subscribe", "symbol": symbol }).to_string())
        .collect()
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    data: Vec<Print<'a>>,
    #[serde(borrow)]
    msg: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Print<'a> {
    #[serde(rename = "s", borrow)]
    symbol: Cow<'a, str>,
    #[serde(rename = "p")]
    price: f64,
    #[serde(rename = "v")]
    volume: f64,
    #[serde(rename = "t")]
    time_ms: i64,
}

/// Parses one frame into `out`.
pub fn parse(
    text: &str,
    ctx: &mut ParseContext,
    out: &mut Vec<FeedEvent>,
) -> Result<(), FrameError> {
    let message: Message<'_> =
        serde_json::from_str(text).map_err(|error| FrameError::Malformed(error.to_string()))?;
    match message.kind.as_ref() {
        "trade" => {
            for print in &message.data {
                if print.volume == 0.0 {
                    continue;
                }
                trade_values(print.price, print.volume)?;
                let exchange_ts = epoch_millis("t", print.time_ms)?;
                ctx.saw_exchange_time(exchange_ts);
                out.push(FeedEvent::Trade(Trade {
                    symbol: ctx.symbol(&print.symbol)?,
                    price: print.price,
                    size: print.volume,
                    exchange_ts,
                    receive_ts: ctx.receive_ts,
                    feed: ctx.feed,
                    trade_id: None,
                    side: None,
                }));
            }
            // A batch may mix symbols and times: put it in event-time order.
            out.sort_by_key(|event| match event {
                FeedEvent::Trade(trade) => trade.exchange_ts,
                _ => i64::MIN,
            });
        }
        "ping" => out.push(FeedEvent::Heartbeat),
        "error" => out.push(FeedEvent::ProviderError {
            code: None,
            message: message.msg.map(Cow::into_owned).unwrap_or_default(),
        }),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One frame through the venue's parser (the shared helper of every venue's tests).
    fn parse_one(text: &str) -> Result<Vec<FeedEvent>, FrameError> {
        crate::feeds::venue::parse_frames(&Finnhub, &[text])
    }

    #[test]
    fn documented_frames() {
        let events = parse_one(r#"{"data":[{"c":["1","24","12"],"p":129.58,"s":"AAPL","t":1672348887666,"v":1},{"c":["1","8","24","12"],"p":122.1,"s":"TSLA","t":1672348887195,"v":1},{"c":null,"p":1.0712,"s":"OANDA:EUR_USD","t":1672348887000,"v":0}],"type":"trade"}"#).expect("parses");
        let symbols: Vec<&str> = events
            .iter()
            .filter_map(|e| {
                if let FeedEvent::Trade(t) = e {
                    Some(t.symbol.as_str())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            symbols,
            ["TSLA", "AAPL"],
            "event-time order; the v = 0 price update skipped"
        );
        assert_eq!(
            parse_one(r#"{"type":"ping"}"#),
            Ok(vec![FeedEvent::Heartbeat])
        );
        assert_eq!(
            parse_one(r#"{"msg":"Subscribing to too many symbols","type":"error"}"#),
            Ok(vec![FeedEvent::ProviderError {
                code: None,
                message: "Subscribing to too many symbols".into()
            }])
        );
    }

    #[test]
    fn malformed_frames() {
        for frame in [
            "[]",
            r#"{"data":[{"p":"1","s":"A","t":1,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"s":"A","v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":-1,"s":"A","t":1,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"s":"A","t":9223372036854775807,"v":1}],"type":"trade"}"#,
            // Found by fuzzing (fuzz/regressions/provider_finnhub/blank-symbol).
            r#"{"data":[{"p":1,"s":"","t":1,"v":1}],"type":"trade"}"#,
            r#"{"data":[{"p":1,"s":"  ","t":1,"v":1}],"type":"trade"}"#,
        ] {
            assert!(parse_one(frame).is_err(), "{frame}");
        }
    }

    #[test]
    fn token_and_subscriptions() {
        assert_eq!(
            url_with_token("wss://ws.finnhub.io", "k"),
            "wss://ws.finnhub.io/?token=k"
        );
        assert_eq!(
            url_with_token("ws://127.0.0.1:9/x?a=1", "k"),
            "ws://127.0.0.1:9/x?a=1&token=k"
        );
        assert_eq!(
            subscriptions(&["AAPL".into()]),
            [r#"{"symbol":"AAPL","type":"subscribe"}"#]
        );
    }
}
