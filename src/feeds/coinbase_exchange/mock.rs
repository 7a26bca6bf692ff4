//! Coinbase Exchange's side of a mock connection: one subscribe with every channel,
//! acknowledged with `subscriptions`; trades as `match` messages with a per-product `sequence`;
//! a `heartbeat` per product every second.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::feeds::coinbase::mock::{Request, maker_side};
use crate::feeds::venue::{BadRequest, ServedTrade, ServerSession, VenueServer, rfc3339_micros};
use crate::model::wall_clock_now;

/// The server side: per-product sequences and last trade ids.
#[derive(Default)]
pub(super) struct Server {
    /// Per-product message sequence.
    sequences: HashMap<String, u64>,
    /// Per-product last trade id, for heartbeats.
    last_trade_ids: HashMap<String, u64>,
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
        if request.channels.iter().any(|c| c == "matches") {
            session
                .symbols
                .extend(request.product_ids.iter().map(|p| p.to_ascii_lowercase()));
        }
        let channels: Vec<_> = request
            .channels
            .iter()
            .map(|name| json!({ "name": name, "product_ids": request.product_ids }))
            .collect();
        Ok(vec![
            json!({ "type": "subscriptions", "channels": channels }).to_string(),
        ])
    }

    fn trade(&mut self, trade: &ServedTrade<'_>) -> String {
        let sequence = self
            .sequences
            .entry(trade.symbol.to_string())
            .or_insert(1_000);
        *sequence += 1;
        let sequence = *sequence;
        self.last_trade_ids
            .insert(trade.symbol.to_string(), trade.id);
        let id = trade.id;
        json!({
            "type": "match", "trade_id": id,
            "maker_order_id": format!("maker-{id}"), "taker_order_id": format!("taker-{id}"),
            "side": maker_side(trade.side), "size": trade.size.to_string(),
            "price": trade.price.to_string(), "product_id": trade.symbol,
            "sequence": sequence, "time": rfc3339_micros(trade.ts),
        })
        .to_string()
    }

    fn keepalives(&mut self, session: &ServerSession) -> Vec<Message> {
        let now = rfc3339_micros(wall_clock_now());
        let mut products: Vec<&String> = session.symbols.iter().collect();
        products.sort();
        products
            .into_iter()
            .map(|product| {
                let product = product.to_ascii_uppercase();
                let last = self.last_trade_ids.get(&product).copied().unwrap_or(0);
                Message::text(
                    json!({ "type": "heartbeat", "sequence": 0, "last_trade_id": last,
                            "product_id": product, "time": now })
                    .to_string(),
                )
            })
            .collect()
    }

    fn keepalive_every(&self) -> Duration {
        Duration::from_secs(1)
    }
}
