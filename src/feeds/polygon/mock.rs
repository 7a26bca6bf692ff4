//! Polygon's side of a mock connection: `[{"ev":"status","status":"connected",…}]` on connect;
//! `{"action":"auth",…}` answered with `auth_success` (or `auth_failed` and a close);
//! `{"action":"subscribe","params":"T.AAPL"}` answered per param with `success`; trades as
//! `[{"ev":"T",…}]`; WebSocket pings every 20 s.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::feeds::venue::{BadRequest, ServedTrade, ServerSession, VenueServer};

/// The server side: whether the client has authenticated.
#[derive(Default)]
pub(super) struct Server {
    authenticated: bool,
}

#[derive(Deserialize)]
struct Request {
    action: String,
    #[serde(default)]
    params: String,
}

fn status(status: &str, message: String) -> String {
    json!([{ "ev": "status", "status": status, "message": message }]).to_string()
}

impl VenueServer for Server {
    fn greeting(&mut self) -> Option<String> {
        Some(
            json!([{ "ev": "status", "status": "connected",
                     "message": "Connected Successfully" }])
            .to_string(),
        )
    }

    fn request(
        &mut self,
        text: &str,
        session: &mut ServerSession,
    ) -> Result<Vec<String>, BadRequest> {
        let request: Request = serde_json::from_str(text).map_err(|_| BadRequest::excerpt(text))?;
        match request.action.as_str() {
            "auth" if session.reject_auth => {
                session.closing = true;
                Ok(vec![status("auth_failed", "authentication failed".into())])
            }
            "auth" => {
                self.authenticated = true;
                Ok(vec![status("auth_success", "authenticated".into())])
            }
            "subscribe" if self.authenticated => Ok(request
                .params
                .split(',')
                .map(str::trim)
                .filter(|param| !param.is_empty())
                .map(|param| {
                    if let Some(symbol) = param.strip_prefix("T.") {
                        session.symbols.insert(symbol.to_ascii_lowercase());
                    }
                    status("success", format!("subscribed to: {param}"))
                })
                .collect()),
            _ => Ok(vec![status("error", "not authorized".into())]),
        }
    }

    fn trade(&mut self, trade: &ServedTrade<'_>) -> String {
        json!([{
            "ev": "T", "sym": trade.symbol, "x": 4, "i": trade.id.to_string(), "z": 3,
            "p": trade.price, "s": trade.size, "c": [0],
            "t": trade.ts.div_euclid(1_000_000), "q": trade.id,
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
