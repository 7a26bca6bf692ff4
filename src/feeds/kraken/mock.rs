//! Kraken's side of a mock connection: a `subscribe` per channel acknowledged per symbol with
//! `success`; trades as `trade` updates; a `heartbeat` every second; `{"method":"ping"}` answered
//! with `pong`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::feeds::venue::{BadRequest, ServedTrade, ServerSession, VenueServer, rfc3339_micros};
use crate::model::{Side, wall_clock_now};

/// The server side (no state beyond the subscriptions).
pub(super) struct Server;

#[derive(Deserialize)]
struct Request {
    method: String,
    params: Option<Params>,
    req_id: Option<u64>,
}

#[derive(Deserialize)]
struct Params {
    channel: String,
    #[serde(default)]
    symbol: Vec<String>,
}

impl VenueServer for Server {
    fn request(
        &mut self,
        text: &str,
        session: &mut ServerSession,
    ) -> Result<Vec<String>, BadRequest> {
        let request: Request = serde_json::from_str(text).map_err(|_| BadRequest::excerpt(text))?;
        let now = rfc3339_micros(wall_clock_now());
        match (request.method.as_str(), request.params) {
            ("ping", _) => Ok(vec![
                json!({
                    "method": "pong", "req_id": request.req_id, "time_in": now, "time_out": now,
                })
                .to_string(),
            ]),
            ("subscribe", Some(params)) => {
                if params.channel == "trade" {
                    session
                        .symbols
                        .extend(params.symbol.iter().map(|s| s.to_ascii_lowercase()));
                }
                Ok(params
                    .symbol
                    .iter()
                    .map(|symbol| {
                        json!({
                            "method": "subscribe",
                            "result": { "channel": params.channel, "symbol": symbol },
                            "success": true, "time_in": now, "time_out": now,
                            "req_id": request.req_id,
                        })
                        .to_string()
                    })
                    .collect())
            }
            _ => Err(BadRequest::excerpt(text)),
        }
    }

    fn trade(&mut self, trade: &ServedTrade<'_>) -> String {
        let side = if trade.side == Some(Side::Sell) {
            "sell"
        } else {
            "buy"
        };
        json!({
            "channel": "trade", "type": "update",
            "data": [{
                "symbol": trade.symbol, "side": side,
                "price": trade.price, "qty": trade.size, "ord_type": "limit",
                "trade_id": trade.id, "timestamp": rfc3339_micros(trade.ts),
            }],
        })
        .to_string()
    }

    fn keepalives(&mut self, _session: &ServerSession) -> Vec<Message> {
        vec![Message::text(r#"{"channel":"heartbeat"}"#)]
    }

    fn keepalive_every(&self) -> Duration {
        Duration::from_secs(1)
    }
}
