//! The mock exchange: serves recorded trades over a real local WebSocket in a provider's wire
//! format, with that provider's handshake, so the real connector runs against it unchanged and
//! the whole live path works offline.
//!
//! Binance: a client connects to `/stream`, sends
//! `{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}` and gets `{"result":null,"id":1}`;
//! then every recorded trade of a subscribed symbol arrives as a combined-stream `trade` frame,
//! paced by the configured speed, with WebSocket pings at the configured interval. Each
//! connection is served the recording from its start (trade ids are stable: the file's own, or
//! numbered per symbol from 1), so a reconnecting client sees trades it already has again — the
//! case the connector's duplicate detection exists for. After the last trade the connection stays
//! open with pings only (or starts over with `repeat`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::feeds::connector::Provider;
use crate::model::Trade;
use crate::replay::Speed;

/// How the mock exchange serves.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Wire format and handshake.
    pub provider: Provider,
    /// Pace of the recorded trades.
    pub speed: Speed,
    /// Interval of WebSocket pings to clients.
    pub ping_every: Duration,
    /// Start over at the end of the recording.
    pub repeat: bool,
    /// How long a client has to subscribe.
    pub subscribe_timeout: Duration,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            provider: Provider::Binance,
            speed: Speed::Max,
            ping_every: Duration::from_secs(20),
            repeat: false,
            subscribe_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a mock connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// WebSocket failure.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The client did not subscribe in time.
    #[error("no subscription within {0:?}")]
    SubscribeTimeout(Duration),
    /// The client's request was not a subscription.
    #[error("unexpected request: {0}")]
    BadRequest(String),
}

/// A bound, not yet serving, mock exchange.
pub struct MockExchange {
    listener: TcpListener,
    frames: Arc<Vec<RecordedFrame>>,
    options: MockOptions,
}

/// One trade, pre-rendered in the provider's format.
#[derive(Debug)]
struct RecordedFrame {
    stream: String,
    event_ts: i64,
    text: String,
}

/// Renders trades as Binance combined-stream `trade` frames, numbering trade ids per symbol when
/// the recording has none.
fn binance_frames(trades: &[Trade]) -> Vec<RecordedFrame> {
    let mut next_ids: HashMap<&str, u64> = HashMap::new();
    trades
        .iter()
        .map(|trade| {
            let counter = next_ids.entry(trade.symbol.as_str()).or_insert(1);
            let id = trade.trade_id.unwrap_or(*counter);
            *counter = id + 1;
            let stream = format!("{}@trade", trade.symbol.as_str().to_ascii_lowercase());
            let ms = trade.exchange_ts.div_euclid(1_000_000);
            let text = serde_json::json!({
                "stream": stream,
                "data": {
                    "e": "trade", "E": ms, "s": trade.symbol.as_str(), "t": id,
                    "p": trade.price.to_string(), "q": trade.size.to_string(), "T": ms,
                    "m": trade.side == Some(crate::model::Side::Sell), "M": true,
                }
            })
            .to_string();
            RecordedFrame {
                stream,
                event_ts: trade.exchange_ts,
                text,
            }
        })
        .collect()
}

#[derive(Deserialize)]
struct Subscribe {
    method: String,
    #[serde(default)]
    params: Vec<String>,
    id: serde_json::Value,
}

impl MockExchange {
    /// Binds `address` (port 0 allowed) to serve `trades`.
    pub async fn bind(
        address: SocketAddr,
        trades: &[Trade],
        options: MockOptions,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let frames = match options.provider {
            Provider::Binance => binance_frames(trades),
        };
        Ok(MockExchange {
            listener,
            frames: Arc::new(frames),
            options,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The base URL a connector should use.
    pub fn url(&self) -> std::io::Result<String> {
        Ok(format!("ws://{}", self.local_addr()?))
    }

    /// Serves until `cancel` fires; each connection on its own task.
    pub async fn run(self, cancel: CancellationToken) {
        let connections = tokio_util::task::TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "mock exchange: accept failed");
                    continue;
                }
            };
            let frames = Arc::clone(&self.frames);
            let options = self.options.clone();
            let cancel = cancel.child_token();
            connections.spawn(async move {
                if let Err(error) = serve(stream, frames, options, cancel).await {
                    tracing::debug!(%peer, %error, "mock exchange: connection ended");
                }
            });
        }
        connections.close();
        connections.wait().await;
    }
}

async fn serve(
    stream: TcpStream,
    frames: Arc<Vec<RecordedFrame>>,
    options: MockOptions,
    cancel: CancellationToken,
) -> Result<(), MockError> {
    let _ = stream.set_nodelay(true);
    let socket = tokio_tungstenite::accept_async(stream).await?;
    let (mut sink, mut source) = socket.split();
    let subscribed: HashSet<String> = loop {
        let message = tokio::time::timeout(options.subscribe_timeout, source.next())
            .await
            .map_err(|_| MockError::SubscribeTimeout(options.subscribe_timeout))?;
        let Some(message) = message else {
            return Ok(());
        };
        let Message::Text(text) = message? else {
            continue;
        };
        let request: Subscribe = serde_json::from_str(text.as_str())
            .map_err(|_| MockError::BadRequest(text.as_str().chars().take(200).collect()))?;
        if request.method != "SUBSCRIBE" {
            return Err(MockError::BadRequest(request.method));
        }
        let ack = serde_json::json!({ "result": null, "id": request.id }).to_string();
        sink.send(Message::text(ack)).await?;
        break request
            .params
            .into_iter()
            .map(|p| p.to_ascii_lowercase())
            .collect();
    };
    // Drain what the client sends (pongs, close) so the transport answers its pings.
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    });
    let mut ping = tokio::time::interval(options.ping_every);
    ping.tick().await;
    let result = async {
        loop {
            let start = Instant::now();
            let first_ts = frames.first().map_or(0, |f| f.event_ts);
            for frame in frames.iter().filter(|f| subscribed.contains(&f.stream)) {
                if let Speed::Factor(factor) = options.speed {
                    let offset = (frame.event_ts - first_ts).max(0) as f64 / 1e9 / factor;
                    let due = start + Duration::from_secs_f64(offset);
                    loop {
                        tokio::select! {
                            _ = cancel.cancelled() => return Ok(()),
                            _ = tokio::time::sleep_until(due) => break,
                            _ = ping.tick() => sink.send(Message::Ping(Vec::new().into())).await?,
                        }
                    }
                }
                if cancel.is_cancelled() || reader.is_finished() {
                    return Ok(());
                }
                sink.send(Message::text(frame.text.clone())).await?;
            }
            if !options.repeat {
                break;
            }
        }
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = ping.tick() => {
                    if reader.is_finished() {
                        return Ok(());
                    }
                    sink.send(Message::Ping(Vec::new().into())).await?;
                }
            }
        }
    }
    .await;
    let _ = sink.close().await;
    reader.abort();
    result
}
