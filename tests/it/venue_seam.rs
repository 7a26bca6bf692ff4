//! The venue seam, proved from outside: a toy venue written against the public API only
//! (`impl Venue` and `impl VenueServer`), served by the mock exchange and read by the real
//! connector, with a forced reconnect. Nothing in the crate knows this venue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tickstream::feeds::Provider;
use tickstream::feeds::connector::{ConnectorSettings, FeedSpec, live_stream};
use tickstream::feeds::event::{FeedEvent, FrameError, ParseContext};
use tickstream::feeds::reconnect::ReconnectPolicy;
use tickstream::feeds::venue::{
    BadRequest, ServedTrade, ServerSession, Subscription, Venue, VenueServer,
};
use tickstream::health::{FeedDescription, FeedRegistry};
use tickstream::metrics::Metrics;
use tickstream::mock_exchange::{MockFaults, MockOptions};
use tickstream::model::Trade;
use tokio_stream::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{EQUITIES, load_trades, start_mock};

/// A line protocol: the client sends `SUB IBM,AIG`, the venue answers `OK`, then sends
/// `T|symbol|price|size|epoch ms|id` per trade and `HB` every 100 ms.
struct Toy;

impl Venue for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }

    fn default_url(&self) -> &'static str {
        "ws://127.0.0.1:1"
    }

    fn default_channels(&self) -> &'static [&'static str] {
        &["trades"]
    }

    fn handshake(&self, subscription: &Subscription<'_>) -> Vec<String> {
        vec![format!("SUB {}", subscription.symbols.join(","))]
    }

    fn stale_after(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn parse(
        &self,
        text: &str,
        ctx: &mut ParseContext,
        out: &mut Vec<FeedEvent>,
    ) -> Result<(), FrameError> {
        let bad = |field: &'static str| FrameError::BadValue {
            field,
            value: text.to_string(),
        };
        match text {
            "OK" => out.push(FeedEvent::Ack),
            "HB" => out.push(FeedEvent::Heartbeat),
            _ => {
                let fields: Vec<&str> = text.split('|').collect();
                let ["T", symbol, price, size, ms, id] = fields.as_slice() else {
                    return Err(FrameError::Malformed(text.to_string()));
                };
                let exchange_ts = ms.parse::<i64>().map_err(|_| bad("ms"))? * 1_000_000;
                out.push(FeedEvent::Trade(Trade {
                    symbol: ctx.symbol(symbol)?,
                    price: price.parse().map_err(|_| bad("price"))?,
                    size: size.parse().map_err(|_| bad("size"))?,
                    exchange_ts,
                    receive_ts: ctx.receive_ts,
                    feed: ctx.feed,
                    trade_id: Some(id.parse().map_err(|_| bad("id"))?),
                    side: None,
                }));
            }
        }
        Ok(())
    }

    fn server(&self) -> Box<dyn VenueServer> {
        Box::new(ToyServer)
    }
}

struct ToyServer;

impl VenueServer for ToyServer {
    fn request(
        &mut self,
        text: &str,
        session: &mut ServerSession,
    ) -> Result<Vec<String>, BadRequest> {
        let symbols = text
            .strip_prefix("SUB ")
            .ok_or_else(|| BadRequest(text.to_string()))?;
        session
            .symbols
            .extend(symbols.split(',').map(str::to_ascii_lowercase));
        Ok(vec!["OK".to_string()])
    }

    fn trade(&mut self, trade: &ServedTrade<'_>) -> String {
        format!(
            "T|{}|{}|{}|{}|{}",
            trade.symbol,
            trade.price,
            trade.size,
            trade.ts / 1_000_000,
            trade.id
        )
    }

    fn keepalives(&mut self, _session: &ServerSession) -> Vec<Message> {
        vec![Message::text("HB")]
    }

    fn keepalive_every(&self) -> Duration {
        Duration::from_millis(100)
    }
}

static TOY: Toy = Toy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_venue_from_outside_the_crate_is_served_and_read_through_a_reconnect() {
    let mut trades = load_trades(EQUITIES);
    trades.truncate(5_000);
    let provider = Provider::new(&TOY);
    let options = MockOptions {
        provider,
        // One tape like a live venue, dropped every 700 frames and resending its latest 50 to
        // the next connection.
        shared_tape: true,
        faults: MockFaults {
            drop_every: Some(700),
            resend_on_connect: 50,
            ..MockFaults::default()
        },
        ..MockOptions::default()
    };
    let (address, stop_mock) =
        start_mock("127.0.0.1:0".parse().expect("addr"), &trades, options).await;
    let metrics = Metrics::new();
    let registry = FeedRegistry::new();
    let description = FeedDescription {
        kind: "toy".into(),
        source: "mock".into(),
        format: "websocket".into(),
    };
    let status = registry.register("toy".into(), description, &metrics);
    let spec = FeedSpec {
        provider,
        url: format!("ws://{address}"),
        symbols: vec!["IBM".into(), "AIG".into()],
        channels: vec!["trades".into()],
        credentials: None,
    };
    let settings = ConnectorSettings {
        reconnect: ReconnectPolicy {
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            ..ReconnectPolicy::default()
        },
        ..ConnectorSettings::default()
    };
    let mut stream = Box::pin(live_stream(
        spec,
        settings,
        status.id(),
        Arc::clone(&status),
    ));
    // A reconnect is sent trades it has seen again: keep the first sighting of each (symbol,
    // id), which is the recording's order.
    let mut seen: HashMap<(String, u64), Trade> = HashMap::new();
    let mut order = Vec::new();
    while seen.len() < trades.len() {
        let batch = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the toy feed keeps delivering")
            .expect("the stream never ends on its own");
        for trade in batch.trades {
            let key = (
                trade.symbol.to_string(),
                trade.trade_id.expect("toy trades carry ids"),
            );
            if let std::collections::hash_map::Entry::Vacant(slot) = seen.entry(key.clone()) {
                order.push(key);
                slot.insert(trade);
            }
        }
    }
    stop_mock.cancel();
    let mut next_ids: HashMap<&str, u64> = HashMap::new();
    for (expected, key) in trades.iter().zip(&order) {
        let id = next_ids.entry(expected.symbol.as_str()).or_insert(1);
        assert_eq!(key, &(expected.symbol.to_string(), *id));
        *id += 1;
        let actual = &seen[key];
        assert_eq!(
            (actual.price, actual.size, actual.exchange_ts),
            (expected.price, expected.size, expected.exchange_ts),
            "{key:?}"
        );
    }
    let view = status.view();
    assert!(
        view.reconnects >= 1,
        "the forced drops reconnected: {view:?}"
    );
    assert_eq!(view.malformed, 0, "{view:?}");
}
