//! Binance's side of a mock connection: `SUBSCRIBE` acknowledged with `{"result":null,"id":…}`,
//! trades as combined-stream `trade` frames, a WebSocket ping every 20 s.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::feeds::venue::{BadRequest, ServedTrade, ServerSession, VenueServer};
use crate::model::Side;

/// A combined-stream trade frame, keys in Binance's order (`stream` first; `json!` would sort
/// them).
#[derive(Serialize)]
struct TradeFrame<'a> {
    stream: String,
    data: TradeData<'a>,
}

#[derive(Serialize)]
struct TradeData<'a> {
    #[serde(rename = "e")]
    event: &'static str,
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(rename = "s")]
    symbol: &'a str,
    #[serde(rename = "t")]
    trade_id: u64,
    #[serde(rename = "p")]
    price: String,
    #[serde(rename = "q")]
    quantity: String,
    #[serde(rename = "T")]
    trade_time: i64,
    #[serde(rename = "m")]
    buyer_is_maker: bool,
    #[serde(rename = "M")]
    best_match: bool,
}

/// The server side (Binance keeps no per-connection state beyond the subscriptions).
pub(super) struct Server;

#[derive(Deserialize)]
struct Request {
    method: String,
    #[serde(default)]
    params: Vec<String>,
    id: serde_json::Value,
}

impl VenueServer for Server {
    fn request(
        &mut self,
        text: &str,
        session: &mut ServerSession,
    ) -> Result<Vec<String>, BadRequest> {
        let request: Request = serde_json::from_str(text).map_err(|_| BadRequest::excerpt(text))?;
        if request.method != "SUBSCRIBE" {
            return Err(BadRequest(request.method));
        }
        for param in &request.params {
            if let Some((symbol, "trade" | "aggTrade")) = param.split_once('@') {
                session.symbols.insert(symbol.to_ascii_lowercase());
            }
        }
        Ok(vec![
            json!({ "result": null, "id": request.id }).to_string(),
        ])
    }

    fn trade(&mut self, trade: &ServedTrade<'_>) -> String {
        let ms = trade.ts.div_euclid(1_000_000);
        let frame = TradeFrame {
            stream: format!("{}@trade", trade.symbol.to_ascii_lowercase()),
            data: TradeData {
                event: "trade",
                event_time: ms,
                symbol: trade.symbol,
                trade_id: trade.id,
                price: trade.price.to_string(),
                quantity: trade.size.to_string(),
                trade_time: ms,
                buyer_is_maker: trade.side == Some(Side::Sell),
                best_match: true,
            },
        };
        serde_json::to_string(&frame).unwrap_or_default()
    }

    fn keepalives(&mut self, _session: &ServerSession) -> Vec<Message> {
        vec![Message::Ping(Vec::new().into())]
    }

    fn keepalive_every(&self) -> Duration {
        Duration::from_secs(20)
    }
}
