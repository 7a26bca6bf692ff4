//! Binance's side of a mock connection: `SUBSCRIBE` acknowledged with `{"result":null,"id":…}`,
//! trades as combined-stream `trade` frames, a WebSocket ping every 20 s.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::feeds::venue::{BadRequest, ServedTrade, ServerSession, VenueServer};
use crate::model::Side;

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
        json!({
            "stream": format!("{}@trade", trade.symbol.to_ascii_lowercase()),
            "data": {
                "e": "trade", "E": ms, "s": trade.symbol, "t": trade.id,
                "p": trade.price.to_string(), "q": trade.size.to_string(), "T": ms,
                "m": trade.side == Some(Side::Sell), "M": true,
            }
        })
        .to_string()
    }

    fn keepalives(&mut self, _session: &ServerSession) -> Vec<Message> {
        vec![Message::Ping(Vec::new().into())]
    }

    fn keepalive_every(&self) -> Duration {
        Duration::from_secs(20)
    }
}
