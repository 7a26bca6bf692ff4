//! Finnhub's side of a mock connection: `{"type":"subscribe","symbol":…}` per symbol with no
//! acknowledgement (the `token` in the URL is accepted whatever it is); trades as `trade`
//! batches of one print; `{"type":"ping"}` every second.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::feeds::venue::{BadRequest, ServedTrade, ServerSession, VenueServer};

/// The server side (no state beyond the subscriptions).
pub(super) struct Server;

#[derive(Deserialize)]
struct Request {
    #[serde(rename = "type")]
    kind: String,
    symbol: String,
}

impl VenueServer for Server {
    fn request(
        &mut self,
        text: &str,
        session: &mut ServerSession,
    ) -> Result<Vec<String>, BadRequest> {
        let request: Request = serde_json::from_str(text).map_err(|_| BadRequest::excerpt(text))?;
        match request.kind.as_str() {
            "subscribe" => {
                session.symbols.insert(request.symbol.to_ascii_lowercase());
            }
            "unsubscribe" => {
                session.symbols.remove(&request.symbol.to_ascii_lowercase());
            }
            _ => return Err(BadRequest::excerpt(text)),
        }
        Ok(Vec::new())
    }

    fn trade(&mut self, trade: &ServedTrade<'_>) -> String {
        json!({
            "type": "trade",
            "data": [{
                "s": trade.symbol, "p": trade.price, "v": trade.size,
                "t": trade.ts.div_euclid(1_000_000), "c": ["1"],
            }],
        })
        .to_string()
    }

    fn keepalives(&mut self, _session: &ServerSession) -> Vec<Message> {
        vec![Message::text(r#"{"type":"ping"}"#)]
    }

    fn keepalive_every(&self) -> Duration {
        Duration::from_secs(1)
    }
}
