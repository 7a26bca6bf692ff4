//! Coinbase Advanced Trade's side of a mock connection: one subscribe per channel, each
//! acknowledged on the `subscriptions` channel; trades as `market_trades` messages; `heartbeats`
//! every second; `sequence_num` counts the connection's messages.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::feeds::venue::{BadRequest, ServedTrade, ServerSession, VenueServer, rfc3339_micros};
use crate::model::{Side, wall_clock_now};

/// The server side: the connection's message counter.
#[derive(Default)]
pub(super) struct Server {
    /// Messages sent so far.
    sequence_num: u64,
}

/// A Coinbase subscribe request (both APIs).
#[derive(Deserialize)]
pub(crate) struct Request {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub product_ids: Vec<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    pub channel: Option<String>,
}

/// The maker's side (what Coinbase reports) from the taker's.
pub(crate) fn maker_side(taker: Option<Side>) -> &'static str {
    match taker {
        Some(Side::Buy) => "sell",
        _ => "buy",
    }
}

impl Server {
    fn next_sequence(&mut self) -> u64 {
        self.sequence_num += 1;
        self.sequence_num - 1
    }
}

impl VenueServer for Server {
    fn request(
        &mut self,
        text: &str,
        session: &mut ServerSession,
    ) -> Result<Vec<String>, BadRequest> {
        let request: Request = serde_json::from_str(text).map_err(|_| BadRequest::excerpt(text))?;
        if request.kind != "subscribe" {
            return Err(BadRequest(request.kind));
        }
        let channel = request.channel.ok_or_else(|| BadRequest::excerpt(text))?;
        if channel == "market_trades" {
            session
                .symbols
                .extend(request.product_ids.iter().map(|p| p.to_ascii_lowercase()));
        }
        Ok(vec![
            json!({
                "channel": "subscriptions", "client_id": "",
                "timestamp": rfc3339_micros(wall_clock_now()),
                "sequence_num": self.next_sequence(),
                "events": [{ "subscriptions": { channel: request.product_ids } }],
            })
            .to_string(),
        ])
    }

    fn trade(&mut self, trade: &ServedTrade<'_>) -> String {
        let time = rfc3339_micros(trade.ts);
        json!({
            "channel": "market_trades", "client_id": "", "timestamp": time,
            "sequence_num": self.next_sequence(),
            "events": [{ "type": "update", "trades": [{
                "trade_id": trade.id.to_string(), "product_id": trade.symbol,
                "price": trade.price.to_string(), "size": trade.size.to_string(),
                "side": maker_side(trade.side).to_ascii_uppercase(), "time": time,
            }]}],
        })
        .to_string()
    }

    fn keepalives(&mut self, _session: &ServerSession) -> Vec<Message> {
        let now = rfc3339_micros(wall_clock_now());
        let sequence_num = self.next_sequence();
        vec![Message::text(
            json!({ "channel": "heartbeats", "client_id": "", "timestamp": now,
                    "sequence_num": sequence_num,
                    "events": [{ "current_time": now, "heartbeat_counter": self.sequence_num }] })
            .to_string(),
        )]
    }

    fn keepalive_every(&self) -> Duration {
        Duration::from_secs(1)
    }
}
