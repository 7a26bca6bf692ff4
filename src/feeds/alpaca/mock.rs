//! Alpaca's side of a mock connection: `[{"T":"success","msg":"connected"}]` on connect;
//! `{"action":"auth",…}` answered with `authenticated` (or, when told to reject it,
//! `[{"T":"error","code":402,"msg":"auth failed"}]` and a close, as the venue does);
//! `{"action":"subscribe","trades":[…]}` answered with the whole `subscription`; trades as
//! `[{"T":"t",…}]`; WebSocket pings every 20 s.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::feeds::venue::{BadRequest, ServedTrade, ServerSession, VenueServer, rfc3339_micros};

/// The server side: whether the client has authenticated.
#[derive(Default)]
pub(super) struct Server {
    authenticated: bool,
}

#[derive(Deserialize)]
struct Request {
    action: String,
    #[serde(default)]
    trades: Vec<String>,
    #[serde(default)]
    quotes: Vec<String>,
}

impl VenueServer for Server {
    fn greeting(&mut self) -> Option<String> {
        Some(json!([{ "T": "success", "msg": "connected" }]).to_string())
    }

    fn request(
        &mut self,
        text: &str,
        session: &mut ServerSession,
    ) -> Result<Vec<String>, BadRequest> {
        let request: Request = serde_json::from_str(text).map_err(|_| BadRequest::excerpt(text))?;
        let reply = match request.action.as_str() {
            "auth" if session.reject_auth => {
                session.closing = true;
                json!([{ "T": "error", "code": 402, "msg": "auth failed" }])
            }
            "auth" => {
                self.authenticated = true;
                json!([{ "T": "success", "msg": "authenticated" }])
            }
            "subscribe" if !self.authenticated => {
                json!([{ "T": "error", "code": 401, "msg": "not authenticated" }])
            }
            "subscribe" => {
                session
                    .symbols
                    .extend(request.trades.iter().map(|s| s.to_ascii_lowercase()));
                json!([{ "T": "subscription", "trades": request.trades,
                         "quotes": request.quotes, "bars": [] }])
            }
            _ => json!([{ "T": "error", "code": 400, "msg": "invalid syntax" }]),
        };
        Ok(vec![reply.to_string()])
    }

    fn trade(&mut self, trade: &ServedTrade<'_>) -> String {
        json!([{
            "T": "t", "i": trade.id, "S": trade.symbol, "x": "V", "p": trade.price,
            "s": trade.size, "t": rfc3339_micros(trade.ts), "c": ["@"], "z": "C",
        }])
        .to_string()
    }

    fn keepalives(&mut self, _session: &ServerSession) -> Vec<Message> {
        vec![Message::Ping(Vec::new().into())]
    }

    fn keepalive_every(&self) -> Duration {
        Duration::from_secs(20)
    }
}
