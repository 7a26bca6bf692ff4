//! `GET /v1/stream/ws`: the live stream over a WebSocket — the same events and filters as
//! `/v1/stream`, as JSON text messages, with subscriptions changed without reconnecting.
//!
//! ```text
//! ← {"event":"subscribed","id":"1764655200000000-0","symbols":["IBM"],"events":["alert","stats"]}
//! ← {"event":"stats","id":"1764655200000000-0","data":{"symbol":"IBM",…}}
//! → {"op":"subscribe","symbols":["AIG"]}
//! ← {"event":"subscribed","id":"…","symbols":["AIG","IBM"],"events":["alert","stats"]}
//! ← {"event":"alert","id":"1764655200000000-7","data":{"id":7,"rule_id":"ibm-185",…}}
//! ```
//!
//! Client messages: `{"op":"subscribe","symbols":[…]}` adds symbols, `{"op":"unsubscribe",
//! "symbols":[…]}` removes them, `{"op":"set","symbols":[…]|null,"events":["alert","stats"]}`
//! replaces the whole filter (`null`: every symbol). Each is answered with `subscribed` and the
//! filter now in force, or with `{"event":"error","error":{"code","message"}}`, and the stream
//! goes on. Newly watched symbols get their latest stats at once. `last_event_id=` in the URL
//! resumes like SSE's `Last-Event-ID`.
//!
//! The upgrade is answered here with tokio-tungstenite (which the feeds use) rather than axum's
//! `ws` feature, which would build a second, older tungstenite. A client that leaves a message
//! unsent for the stall timeout is disconnected; the service stopping closes with 1001.

use std::collections::BTreeSet;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::server::ConnectionHandle;
use super::stream::{StreamQuery, Subscription, encode, resumed, subscribe};
use super::{ApiError, ApiQuery, AppState};
use crate::fanout::{Cursor, Filter, MAX_STREAM_SYMBOLS};

/// The largest message a client may send (subscriptions are small).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// What a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    /// Watch these symbols too.
    Subscribe { symbols: Vec<String> },
    /// Stop watching these symbols.
    Unsubscribe { symbols: Vec<String> },
    /// Replace the filter.
    Set {
        symbols: Option<Vec<String>>,
        #[serde(default)]
        events: Option<Vec<String>>,
    },
}

/// The answer to a subscription change: the filter in force.
#[derive(Debug, Serialize)]
struct Subscribed<'a> {
    event: &'static str,
    id: String,
    symbols: Option<&'a BTreeSet<String>>,
    events: Vec<&'static str>,
}

/// A subscription change refused.
#[derive(Debug, Serialize)]
struct Refused {
    event: &'static str,
    error: super::error::ErrorDetail,
}

fn refused(message: String) -> String {
    let body = Refused {
        event: "error",
        error: super::error::ErrorDetail {
            code: "bad_parameter",
            message,
        },
    };
    serde_json::to_string(&body).unwrap_or_default()
}

fn subscribed(filter: &Filter, id: Cursor) -> String {
    let mut events = Vec::new();
    if filter.alerts {
        events.push("alert");
    }
    if filter.stats {
        events.push("stats");
    }
    let body = Subscribed {
        event: "subscribed",
        id: id.to_string(),
        symbols: filter.symbols.as_ref(),
        events,
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// `filter` changed as `message` asks.
fn apply(filter: &Filter, message: ClientMessage) -> Result<Filter, String> {
    let mut next = filter.clone();
    let clean = |symbols: Vec<String>| -> BTreeSet<String> {
        symbols
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    match message {
        ClientMessage::Subscribe { symbols } => {
            if let Some(watched) = &mut next.symbols {
                watched.extend(clean(symbols));
            }
        }
        ClientMessage::Unsubscribe { symbols } => match &mut next.symbols {
            Some(watched) => {
                for symbol in clean(symbols) {
                    watched.remove(&symbol);
                }
            }
            None => {
                return Err(
                    "every symbol is watched: choose some with {\"op\":\"set\",\"symbols\":[…]}"
                        .to_string(),
                );
            }
        },
        ClientMessage::Set { symbols, events } => {
            next.symbols = symbols.map(clean);
            if let Some(events) = events {
                let (alerts, stats) = Filter::events(events.iter().map(String::as_str))
                    .map_err(|error| error.to_string())?;
                next.alerts = alerts;
                next.stats = stats;
            }
        }
    }
    if next
        .symbols
        .as_ref()
        .is_some_and(|s| s.len() > MAX_STREAM_SYMBOLS)
    {
        return Err(format!(
            "a stream may watch at most {MAX_STREAM_SYMBOLS} symbols"
        ));
    }
    Ok(next)
}

/// The value of `Sec-WebSocket-Accept` for a valid upgrade request.
fn accept_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(ApiError::BadParameter(
            "this endpoint is a WebSocket: send `Connection: Upgrade` and `Upgrade: websocket` (or use /v1/stream for Server-Sent Events)".to_string(),
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(ApiError::BadParameter(
            "Sec-WebSocket-Version must be 13".to_string(),
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| ApiError::BadParameter("Sec-WebSocket-Key is missing".to_string()))?;
    Ok(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// `GET /v1/stream/ws`.
#[utoipa::path(
    get,
    path = "/v1/stream/ws",
    tag = "stream",
    summary = "The live stream over a WebSocket",
    description = "Upgrade to a WebSocket carrying the events of `/v1/stream` as JSON text messages \
        `{\"event\",\"id\",\"data\"}` (`alert`, `stats`, `lagged`; `id` as SSE's). The query's \
        `symbols`, `events` and `last_event_id` set the first filter and resume point. Send \
        `{\"op\":\"subscribe\",\"symbols\":[…]}`, `{\"op\":\"unsubscribe\",\"symbols\":[…]}` or \
        `{\"op\":\"set\",\"symbols\":[…]|null,\"events\":[…]}` to change the filter; each is \
        answered with `{\"event\":\"subscribed\",\"id\",\"symbols\",\"events\"}` (also sent \
        first) or `{\"event\":\"error\",\"error\":{\"code\",\"message\"}}`.",
    params(StreamQuery),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol."),
        (status = 400, description = "Not a WebSocket upgrade, or a bad filter or event id.", body = super::error::ErrorBody),
    ),
)]
pub async fn stream_ws(
    State(state): State<AppState>,
    connection: Option<Extension<ConnectionHandle>>,
    ApiQuery(query): ApiQuery<StreamQuery>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(query.symbols.as_deref(), query.events.as_deref())?;
    let resumed = resumed(request.headers(), query.last_event_id.as_deref())?;
    let accept = accept_key(request.headers())?;
    let upgrade = hyper::upgrade::on(&mut request);
    let connection = connection.map(|Extension(c)| c);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_CLIENT_MESSAGE))
                    .max_frame_size(Some(MAX_CLIENT_MESSAGE));
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                session(socket, state, filter, resumed, connection).await;
            }
            Err(error) => tracing::debug!(%error, "a WebSocket upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    Ok(response)
}

/// Serves one WebSocket client until it leaves, stalls, or the service stops.
async fn session<S>(
    socket: WebSocketStream<S>,
    state: AppState,
    filter: Filter,
    resumed: Option<Cursor>,
    connection: Option<ConnectionHandle>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = socket.split();
    let (filters, filter_rx) = watch::channel(filter);
    let Subscription { mut events, start } = subscribe(&state, filter_rx, resumed, connection);
    let run = start.run;
    let mut cursor = start;
    let stall = state.stall;
    let send = |text: String| Message::text(text);
    let mut outgoing = Some(send(subscribed(&filters.borrow(), cursor)));
    loop {
        if let Some(message) = outgoing.take() {
            match tokio::time::timeout(stall, sink.send(message)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, "a WebSocket stream client is gone");
                    return;
                }
                Err(_) => {
                    state.metrics.http_closed("stalled");
                    tracing::debug!("a WebSocket stream client stopped reading: disconnected");
                    return;
                }
            }
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    let (kind, data) = encode(&event, &state);
                    cursor = Cursor { run, alert: event.cursor() };
                    outgoing = Some(send(format!(
                        "{{\"event\":\"{kind}\",\"id\":\"{cursor}\",\"data\":{data}}}"
                    )));
                }
                None => {
                    // The service is stopping (or the client stalled): say so and go.
                    let frame = CloseFrame { code: CloseCode::Away, reason: "the service is stopping".into() };
                    let _ = tokio::time::timeout(stall, sink.send(Message::Close(Some(frame)))).await;
                    return;
                }
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let answer = match serde_json::from_str::<ClientMessage>(text.as_str()) {
                        Ok(change) => {
                            let now = filters.borrow().clone();
                            match apply(&now, change) {
                                Ok(next) => {
                                    let answer = subscribed(&next, cursor);
                                    filters.send_replace(next);
                                    answer
                                }
                                Err(message) => refused(message),
                            }
                        }
                        Err(error) => refused(format!("not a subscription change: {error}")),
                    };
                    outgoing = Some(send(answer));
                }
                Some(Ok(Message::Binary(_))) => {
                    outgoing = Some(send(refused("send JSON text messages".to_string())));
                }
                Some(Ok(Message::Close(_))) | None => return,
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::debug!(%error, "a WebSocket stream client sent a bad frame");
                    return;
                }
            },
        }
    }
}
