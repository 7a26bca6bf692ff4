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
    /// Start over at the end of the recording; each pass moves event times forward by whole
    /// days (covering the recording's span) and trade ids past the previous pass's, like the
    /// next session of a live venue.
    pub repeat: bool,
    /// Longest wall-clock wait between two trades; longer gaps are shortened in wall time only.
    pub max_pause: Option<Duration>,
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
            max_pause: None,
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

/// One recorded trade with its stream name and trade id, rendered per pass.
#[derive(Debug)]
struct RecordedFrame {
    stream: String,
    trade_id: u64,
    trade: Trade,
}

/// The recording as Binance `trade` streams, numbering trade ids per symbol when it has none.
fn binance_frames(trades: &[Trade]) -> Vec<RecordedFrame> {
    let mut next_ids: HashMap<&str, u64> = HashMap::new();
    trades
        .iter()
        .map(|trade| {
            let counter = next_ids.entry(trade.symbol.as_str()).or_insert(1);
            let trade_id = trade.trade_id.unwrap_or(*counter);
            *counter = trade_id + 1;
            RecordedFrame {
                stream: format!("{}@trade", trade.symbol.as_str().to_ascii_lowercase()),
                trade_id,
                trade: trade.clone(),
            }
        })
        .collect()
}

/// A Binance combined-stream `trade` frame for `frame`, shifted by `time_offset` ns and
/// `id_offset`.
fn binance_trade_text(frame: &RecordedFrame, time_offset: i64, id_offset: u64) -> String {
    let trade = &frame.trade;
    let ms = (trade.exchange_ts + time_offset).div_euclid(1_000_000);
    serde_json::json!({
        "stream": frame.stream,
        "data": {
            "e": "trade", "E": ms, "s": trade.symbol.as_str(), "t": frame.trade_id + id_offset,
            "p": trade.price.to_string(), "q": trade.size.to_string(), "T": ms,
            "m": trade.side == Some(crate::model::Side::Sell), "M": true,
        }
    })
    .to_string()
}

/// How far each repeated pass moves: whole days covering the recording's span, and past the
/// largest trade id.
fn pass_shift(frames: &[RecordedFrame]) -> (i64, u64) {
    const DAY: i64 = 86_400 * 1_000_000_000;
    let first = frames
        .iter()
        .map(|f| f.trade.exchange_ts)
        .min()
        .unwrap_or(0);
    let last = frames
        .iter()
        .map(|f| f.trade.exchange_ts)
        .max()
        .unwrap_or(0);
    let max_id = frames.iter().map(|f| f.trade_id).max().unwrap_or(0);
    (((last - first) / DAY + 1) * DAY, max_id)
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
    let (day_shift, id_shift) = pass_shift(&frames);
    let result = async {
        let mut pass = 0u64;
        loop {
            let time_offset = day_shift.saturating_mul(i64::try_from(pass).unwrap_or(i64::MAX));
            let id_offset = id_shift.saturating_mul(pass);
            // (event time, wall time) the pacing is anchored at.
            let mut anchor: Option<(i64, Instant)> = None;
            let mut sent = 0usize;
            for frame in frames.iter().filter(|f| subscribed.contains(&f.stream)) {
                sent += 1;
                if let Speed::Factor(factor) = options.speed {
                    let ts = frame.trade.exchange_ts;
                    let (anchor_ts, anchor_wall) = *anchor.get_or_insert((ts, Instant::now()));
                    let offset = (ts - anchor_ts).max(0) as f64 / 1e9 / factor;
                    let mut due = anchor_wall + Duration::from_secs_f64(offset);
                    if let Some(limit) = options.max_pause {
                        let now = Instant::now();
                        if due > now + limit {
                            due = now + limit;
                            anchor = Some((ts, due));
                        }
                    }
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
                let text = binance_trade_text(frame, time_offset, id_offset);
                sink.send(Message::text(text)).await?;
            }
            // Nothing subscribed has trades: idle instead of spinning through empty passes.
            if !options.repeat || sent == 0 {
                break;
            }
            pass += 1;
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
