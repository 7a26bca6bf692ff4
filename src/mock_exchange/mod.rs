//! The mock exchange: serves recorded trades over a real local WebSocket in a provider's wire
//! format, with that provider's handshake, so the real connector runs against it unchanged and
//! the whole live path works offline.
//!
//! Formats and handshakes:
//! - `binance`: the client connects to `/stream` and sends
//!   `{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}`, acknowledged with
//!   `{"result":null,"id":1}`; trades are combined-stream `trade` frames; keepalive is a WebSocket
//!   ping every 20 s.
//! - `coinbase-exchange`: `{"type":"subscribe","product_ids":[…],"channels":["matches",…]}`,
//!   acknowledged with `subscriptions`; trades are `match` messages with a per-product `sequence`;
//!   a `heartbeat` per product every second.
//! - `coinbase` (Advanced Trade): one `{"type":"subscribe","product_ids":[…],"channel":…}` per
//!   channel, each acknowledged on the `subscriptions` channel; trades are `market_trades`
//!   messages; `heartbeats` every second; `sequence_num` counts the connection's messages.
//!
//! - `kraken` (v2): `{"method":"subscribe","params":{"channel":"trade","symbol":[…]},"req_id":1}`
//!   per channel, acknowledged with `success`; trades are `trade` updates; a `heartbeat` every
//!   second; `{"method":"ping"}` is answered with `pong`.
//!
//! - `finnhub`: `{"type":"subscribe","symbol":"AAPL"}` per symbol, no acknowledgement (the
//!   `token` in the URL is accepted whatever it is); trades are `trade` batches of one print;
//!   `{"type":"ping"}` every second.
//!
//! - `alpaca`: `[{"T":"success","msg":"connected"}]` on connect; `{"action":"auth",…}` answered
//!   with `authenticated` (or, with `reject_auth`, `[{"T":"error","code":402,"msg":"auth failed"}]`
//!   and a close, as the venue does); `{"action":"subscribe","trades":[…]}` answered with the whole
//!   `subscription`; trades are `[{"T":"t",…}]`; WebSocket pings every 20 s.
//!
//! - `polygon`: `[{"ev":"status","status":"connected",…}]` on connect; `{"action":"auth",…}`
//!   answered with `auth_success` (or `auth_failed` and a close); `{"action":"subscribe",
//!   "params":"T.AAPL"}` answered per param with `success`; trades are `[{"ev":"T",…}]`;
//!   WebSocket pings every 20 s.
//!
//! Faults can be injected ([`MockFaults`]): connections dropped every N trade frames, stalls,
//! garbage frames, refused connections, and a resend of recent trades on reconnect; with
//! `shared_tape` all connections follow one tape, like a live venue. [`MockStats`] counts what
//! was sent, so a test can check the service's counts exactly.
//!
//! Client frames are bounded ([`MAX_CLIENT_MESSAGE_BYTES`]); a client that sends a frame too
//! large, invalid UTF-8 or any other protocol violation is disconnected and counted.
//!
//! A raw-frame recording (`*.frames.jsonl`) can be served instead of trades: its received frames
//! go out verbatim, paced by their receive times, to a client once it has subscribed.
//!
//! Subscriptions are accepted at any time. Each connection is served the recording from its start
//! (trade ids are stable: the file's own, or numbered per symbol from 1), so a reconnecting
//! client sees trades it already has again — the case the connector's duplicate detection exists
//! for. After the last trade the connection stays open with keepalives only, or starts over with
//! `repeat`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::feeds::connector::Provider;
use crate::model::{Side, Trade};
use crate::replay::Speed;

/// Trade frames written before a flush when frames are due back to back (at full speed): one
/// socket write per burst rather than per frame, small enough to keep a burst's latency low.
const FRAMES_PER_FLUSH: usize = 64;

/// Largest frame or message a client may send (subscriptions are a few hundred bytes).
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 << 10;

/// How long a dropped connection waits for its client to close before letting go.
const DROP_LINGER: Duration = Duration::from_secs(5);

/// The garbage frames injected by [`MockFaults::garbage_every`], in turn: text no provider
/// parses (truncated JSON, not JSON, control characters).
const GARBAGE: [&str; 3] = [
    r#"{"stream":"btcusdt@trade","data":{"e":"trade","p":"#,
    "garbage: this is not a market-data frame",
    "\u{0}\u{1}\u{2}\u{7f}",
];

/// Faults the mock exchange injects, to exercise the connectors' recovery. All off by default.
#[derive(Debug, Clone, Default)]
pub struct MockFaults {
    /// Drop each connection after it has sent this many trade frames: the frames are flushed,
    /// then the TCP connection is shut down without a WebSocket closing handshake.
    pub drop_every: Option<u64>,
    /// After every this many trade frames, go silent (no trades, no keepalives) for the
    /// duration.
    pub stall: Option<(u64, Duration)>,
    /// After every this many trade frames, send one garbage text frame.
    pub garbage_every: Option<u64>,
    /// Refuse connections (closed before the WebSocket handshake) for this long after the
    /// exchange starts serving.
    pub refuse_for: Option<Duration>,
    /// With `shared_tape`: a new connection is first sent this many of the tape's latest
    /// trades again (the duplicates a venue's replay-on-reconnect produces).
    pub resend_on_connect: usize,
}

/// What the mock exchange has done, for exact checks in tests.
#[derive(Debug, Default)]
pub struct MockStats {
    /// WebSocket connections accepted.
    pub connections: AtomicU64,
    /// Connections refused (`refuse_for`).
    pub refused: AtomicU64,
    /// Connections dropped (`drop_every`).
    pub dropped: AtomicU64,
    /// Stalls (`stall`).
    pub stalls: AtomicU64,
    /// Trade frames written, resends included.
    pub trades_sent: AtomicU64,
    /// Garbage frames written.
    pub garbage_sent: AtomicU64,
    /// The furthest tape position sent (over all passes): the distinct trade frames sent, when
    /// every trade is subscribed.
    pub furthest: AtomicU64,
    /// Clients disconnected for a protocol violation (frame too large, invalid UTF-8, …).
    pub client_errors: AtomicU64,
}

impl MockStats {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// A plain copy of the counters.
    pub fn snapshot(&self) -> MockCounts {
        MockCounts {
            connections: Self::get(&self.connections),
            refused: Self::get(&self.refused),
            dropped: Self::get(&self.dropped),
            stalls: Self::get(&self.stalls),
            trades_sent: Self::get(&self.trades_sent),
            garbage_sent: Self::get(&self.garbage_sent),
            furthest: Self::get(&self.furthest),
            client_errors: Self::get(&self.client_errors),
        }
    }
}

/// A copy of [`MockStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MockCounts {
    /// WebSocket connections accepted.
    pub connections: u64,
    /// Connections refused.
    pub refused: u64,
    /// Connections dropped.
    pub dropped: u64,
    /// Stalls.
    pub stalls: u64,
    /// Trade frames written, resends included.
    pub trades_sent: u64,
    /// Garbage frames written.
    pub garbage_sent: u64,
    /// The furthest tape position sent.
    pub furthest: u64,
    /// Clients disconnected for a protocol violation.
    pub client_errors: u64,
}

/// How the mock exchange serves.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// Wire format and handshake.
    pub provider: Provider,
    /// Pace of the recorded trades.
    pub speed: Speed,
    /// Keepalive interval (Binance: WebSocket pings; Coinbase: heartbeat messages); `None`
    /// for the provider's own (20 s, 1 s).
    pub keepalive_every: Option<Duration>,
    /// Start over at the end of the recording; each pass moves event times forward by whole
    /// days (covering the recording's span) and trade ids past the previous pass's, like the
    /// next session of a live venue.
    pub repeat: bool,
    /// Longest wall-clock wait between two trades; longer gaps are shortened in wall time only.
    pub max_pause: Option<Duration>,
    /// How long a client has to subscribe.
    pub subscribe_timeout: Duration,
    /// Refuse every authentication (providers that authenticate).
    pub reject_auth: bool,
    /// One tape for all connections, like a live venue: a connection is served from where the
    /// tape stands (not from the recording's start), and the tape moves only while a
    /// subscribed connection is served, so no trade is skipped while nobody listens.
    pub shared_tape: bool,
    /// Faults to inject.
    pub faults: MockFaults,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            provider: Provider::Binance,
            speed: Speed::Max,
            keepalive_every: None,
            repeat: false,
            max_pause: None,
            subscribe_timeout: Duration::from_secs(10),
            reject_auth: false,
            shared_tape: false,
            faults: MockFaults::default(),
        }
    }
}

/// Why a mock connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// WebSocket failure.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The client broke the WebSocket protocol (frame too large, invalid UTF-8, …).
    #[error("client protocol violation: {0}")]
    ClientViolation(tokio_tungstenite::tungstenite::Error),
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
    stats: Arc<MockStats>,
}

/// What the mock serves: a recorded trade with its trade id (rendered per pass in the
/// provider's format), or a raw frame served verbatim at its recorded receive time.
#[derive(Debug)]
enum RecordedFrame {
    Trade { trade_id: u64, trade: Trade },
    Raw { recv_ns: i64, text: String },
}

impl RecordedFrame {
    /// The time the frame is paced by.
    fn time(&self) -> i64 {
        match self {
            RecordedFrame::Trade { trade, .. } => trade.exchange_ts,
            RecordedFrame::Raw { recv_ns, .. } => *recv_ns,
        }
    }
}

/// The recording with trade ids, numbered per symbol when it has none.
fn recorded_frames(trades: &[Trade]) -> Vec<RecordedFrame> {
    let mut next_ids: HashMap<&str, u64> = HashMap::new();
    trades
        .iter()
        .map(|trade| {
            let counter = next_ids.entry(trade.symbol.as_str()).or_insert(1);
            let trade_id = trade.trade_id.unwrap_or(*counter);
            *counter = trade_id + 1;
            RecordedFrame::Trade {
                trade_id,
                trade: trade.clone(),
            }
        })
        .collect()
}

/// The recorded trades as `provider`'s trade frames, exactly as the mock exchange sends them
/// (for benches and tools).
pub fn render_trade_frames(provider: Provider, trades: &[Trade]) -> Vec<String> {
    let mut session = Session::default();
    recorded_frames(trades)
        .iter()
        .map(|frame| session.trade_text(provider, frame, 0, 0))
        .collect()
}

/// How far each repeated pass moves: whole days covering the recording's span, and past the
/// largest trade id.
fn pass_shift(frames: &[RecordedFrame]) -> (i64, u64) {
    const DAY: i64 = 86_400 * 1_000_000_000;
    let first = frames.iter().map(RecordedFrame::time).min().unwrap_or(0);
    let last = frames.iter().map(RecordedFrame::time).max().unwrap_or(0);
    let max_id = frames
        .iter()
        .filter_map(|f| match f {
            RecordedFrame::Trade { trade_id, .. } => Some(*trade_id),
            RecordedFrame::Raw { .. } => None,
        })
        .max()
        .unwrap_or(0);
    let days = last.saturating_sub(first) / DAY;
    (days.saturating_add(1).saturating_mul(DAY), max_id)
}

impl MockExchange {
    /// Binds `address` (port 0 allowed) to serve `trades`.
    pub async fn bind(
        address: SocketAddr,
        trades: &[Trade],
        options: MockOptions,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let frames = recorded_frames(trades);
        Ok(MockExchange {
            listener,
            frames: Arc::new(frames),
            options,
            stats: Arc::default(),
        })
    }

    /// Binds `address` to serve a raw-frame recording (`*.frames.jsonl`): the `in` frames of
    /// `options.provider`, verbatim and paced by their receive times, once (no `repeat`: the
    /// frames would repeat their own times and ids).
    pub async fn bind_raw(
        address: SocketAddr,
        recording: &str,
        options: MockOptions,
    ) -> std::io::Result<Self> {
        #[derive(Deserialize)]
        struct Line {
            recv_ns: i64,
            provider: String,
            dir: String,
            text: Option<String>,
        }
        let frames = recording
            .lines()
            .filter_map(|line| serde_json::from_str::<Line>(line).ok())
            .filter(|line| {
                line.dir == "in" && Provider::from_name(&line.provider) == Some(options.provider)
            })
            .filter_map(|line| {
                line.text.map(|text| RecordedFrame::Raw {
                    recv_ns: line.recv_ns,
                    text,
                })
            })
            .collect();
        let listener = TcpListener::bind(address).await?;
        Ok(MockExchange {
            listener,
            frames: Arc::new(frames),
            options: MockOptions {
                repeat: false,
                ..options
            },
            stats: Arc::default(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The exchange's counters (shared: they keep counting while it runs).
    pub fn stats(&self) -> Arc<MockStats> {
        Arc::clone(&self.stats)
    }

    /// The base URL a connector should use.
    pub fn url(&self) -> std::io::Result<String> {
        Ok(format!("ws://{}", self.local_addr()?))
    }

    /// Serves until `cancel` fires; each connection on its own task.
    pub async fn run(self, cancel: CancellationToken) {
        let connections = tokio_util::task::TaskTracker::new();
        let started = Instant::now();
        let tape = Arc::new(AtomicU64::new(0));
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
            if self
                .options
                .faults
                .refuse_for
                .is_some_and(|refuse_for| started.elapsed() < refuse_for)
            {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                drop(stream);
                continue;
            }
            let connection = Connection {
                frames: Arc::clone(&self.frames),
                options: self.options.clone(),
                stats: Arc::clone(&self.stats),
                tape: Arc::clone(&tape),
            };
            let cancel = cancel.child_token();
            connections.spawn(async move {
                match connection.serve(stream, cancel).await {
                    Err(MockError::ClientViolation(error)) => {
                        tracing::warn!(%peer, %error, "mock exchange: client disconnected for a protocol violation");
                    }
                    Err(error) => {
                        tracing::debug!(%peer, %error, "mock exchange: connection ended");
                    }
                    Ok(()) => {}
                }
            });
        }
        // The address is free at once (a restarted exchange can bind it again) while the open
        // connections finish.
        let MockExchange { listener, .. } = self;
        drop(listener);
        connections.close();
        connections.wait().await;
    }
}

/// What one connection has asked for, and the counters its messages carry.
#[derive(Debug, Default)]
struct Session {
    /// Symbols (lower case) whose trades are wanted.
    symbols: HashSet<String>,
    /// Advanced Trade: messages sent so far.
    sequence_num: u64,
    /// Coinbase Exchange: per-product message sequence.
    sequences: HashMap<String, u64>,
    /// Coinbase Exchange: per-product last trade id, for heartbeats.
    last_trade_ids: HashMap<String, u64>,
    /// Alpaca: authenticated.
    authenticated: bool,
    /// Alpaca: refuse authentication.
    reject_auth: bool,
    /// Close the connection once the replies are sent.
    closing: bool,
}

#[derive(Deserialize)]
struct BinanceRequest {
    method: String,
    #[serde(default)]
    params: Vec<String>,
    id: serde_json::Value,
}

#[derive(Deserialize)]
struct AlpacaRequest {
    action: String,
    #[serde(default)]
    trades: Vec<String>,
    #[serde(default)]
    quotes: Vec<String>,
}

#[derive(Deserialize)]
struct PolygonRequest {
    action: String,
    #[serde(default)]
    params: String,
}

#[derive(Deserialize)]
struct FinnhubRequest {
    #[serde(rename = "type")]
    kind: String,
    symbol: String,
}

#[derive(Deserialize)]
struct KrakenRequest {
    method: String,
    params: Option<KrakenParams>,
    req_id: Option<u64>,
}

#[derive(Deserialize)]
struct KrakenParams {
    channel: String,
    #[serde(default)]
    symbol: Vec<String>,
}

#[derive(Deserialize)]
struct CoinbaseRequest {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    product_ids: Vec<String>,
    #[serde(default)]
    channels: Vec<String>,
    channel: Option<String>,
}

fn rfc3339(ts: i64) -> String {
    DateTime::from_timestamp_nanos(ts).to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The maker's side (what Coinbase reports) from the taker's.
fn maker_side(taker: Option<Side>) -> &'static str {
    match taker {
        Some(Side::Buy) => "sell",
        _ => "buy",
    }
}

impl Session {
    /// Handles a client request; returns the replies.
    fn request(&mut self, provider: Provider, text: &str) -> Result<Vec<String>, MockError> {
        let bad = || MockError::BadRequest(text.chars().take(200).collect());
        match provider {
            Provider::Binance => {
                let request: BinanceRequest = serde_json::from_str(text).map_err(|_| bad())?;
                if request.method != "SUBSCRIBE" {
                    return Err(MockError::BadRequest(request.method));
                }
                for param in &request.params {
                    if let Some((symbol, "trade" | "aggTrade")) = param.split_once('@') {
                        self.symbols.insert(symbol.to_ascii_lowercase());
                    }
                }
                Ok(vec![
                    json!({ "result": null, "id": request.id }).to_string(),
                ])
            }
            Provider::Polygon => {
                let request: PolygonRequest = serde_json::from_str(text).map_err(|_| bad())?;
                let status = |status: &str, message: String| {
                    json!([{ "ev": "status", "status": status, "message": message }]).to_string()
                };
                match request.action.as_str() {
                    "auth" if self.reject_auth => {
                        self.closing = true;
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
                                self.symbols.insert(symbol.to_ascii_lowercase());
                            }
                            status("success", format!("subscribed to: {param}"))
                        })
                        .collect()),
                    _ => Ok(vec![status("error", "not authorized".into())]),
                }
            }
            Provider::Alpaca => {
                let request: AlpacaRequest = serde_json::from_str(text).map_err(|_| bad())?;
                let reply = match request.action.as_str() {
                    "auth" if self.reject_auth => {
                        self.closing = true;
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
                        self.symbols
                            .extend(request.trades.iter().map(|s| s.to_ascii_lowercase()));
                        json!([{ "T": "subscription", "trades": request.trades,
                                 "quotes": request.quotes, "bars": [] }])
                    }
                    _ => json!([{ "T": "error", "code": 400, "msg": "invalid syntax" }]),
                };
                Ok(vec![reply.to_string()])
            }
            Provider::Finnhub => {
                let request: FinnhubRequest = serde_json::from_str(text).map_err(|_| bad())?;
                match request.kind.as_str() {
                    "subscribe" => {
                        self.symbols.insert(request.symbol.to_ascii_lowercase());
                    }
                    "unsubscribe" => {
                        self.symbols.remove(&request.symbol.to_ascii_lowercase());
                    }
                    _ => return Err(bad()),
                }
                Ok(Vec::new())
            }
            Provider::Kraken => {
                let request: KrakenRequest = serde_json::from_str(text).map_err(|_| bad())?;
                let now = rfc3339(crate::model::wall_clock_now());
                match (request.method.as_str(), request.params) {
                    ("ping", _) => Ok(vec![json!({
                        "method": "pong", "req_id": request.req_id, "time_in": now, "time_out": now,
                    })
                    .to_string()]),
                    ("subscribe", Some(params)) => {
                        if params.channel == "trade" {
                            self.symbols
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
                    _ => Err(bad()),
                }
            }
            Provider::CoinbaseExchange => {
                let request: CoinbaseRequest = serde_json::from_str(text).map_err(|_| bad())?;
                if request.kind != "subscribe" {
                    return Err(MockError::BadRequest(request.kind));
                }
                if request.channels.iter().any(|c| c == "matches") {
                    self.symbols
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
            Provider::Coinbase => {
                let request: CoinbaseRequest = serde_json::from_str(text).map_err(|_| bad())?;
                if request.kind != "subscribe" {
                    return Err(MockError::BadRequest(request.kind));
                }
                let channel = request.channel.ok_or_else(bad)?;
                if channel == "market_trades" {
                    self.symbols
                        .extend(request.product_ids.iter().map(|p| p.to_ascii_lowercase()));
                }
                self.sequence_num += 1;
                Ok(vec![
                    json!({
                        "channel": "subscriptions", "client_id": "",
                        "timestamp": rfc3339(crate::model::wall_clock_now()),
                        "sequence_num": self.sequence_num - 1,
                        "events": [{ "subscriptions": { channel: request.product_ids } }],
                    })
                    .to_string(),
                ])
            }
        }
    }

    /// Whether `frame` is subscribed.
    fn wants(&self, frame: &RecordedFrame) -> bool {
        match frame {
            RecordedFrame::Trade { trade, .. } => self
                .symbols
                .contains(&trade.symbol.as_str().to_ascii_lowercase()),
            // A raw recording is served whole to a client that subscribed to anything.
            RecordedFrame::Raw { .. } => !self.symbols.is_empty(),
        }
    }

    /// `frame` in the provider's format, shifted by `time_offset` ns and `id_offset`.
    fn trade_text(
        &mut self,
        provider: Provider,
        frame: &RecordedFrame,
        time_offset: i64,
        id_offset: u64,
    ) -> String {
        let (trade, trade_id) = match frame {
            RecordedFrame::Trade { trade, trade_id } => (trade, *trade_id),
            RecordedFrame::Raw { text, .. } => return text.clone(),
        };
        let ts = trade.exchange_ts.saturating_add(time_offset);
        let id = trade_id.saturating_add(id_offset);
        let symbol = trade.symbol.as_str();
        match provider {
            Provider::Binance => {
                let ms = ts.div_euclid(1_000_000);
                json!({
                    "stream": format!("{}@trade", symbol.to_ascii_lowercase()),
                    "data": {
                        "e": "trade", "E": ms, "s": symbol, "t": id,
                        "p": trade.price.to_string(), "q": trade.size.to_string(), "T": ms,
                        "m": trade.side == Some(Side::Sell), "M": true,
                    }
                })
                .to_string()
            }
            Provider::CoinbaseExchange => {
                let sequence = self.sequences.entry(symbol.to_string()).or_insert(1_000);
                *sequence += 1;
                self.last_trade_ids.insert(symbol.to_string(), id);
                json!({
                    "type": "match", "trade_id": id,
                    "maker_order_id": format!("maker-{id}"), "taker_order_id": format!("taker-{id}"),
                    "side": maker_side(trade.side), "size": trade.size.to_string(),
                    "price": trade.price.to_string(), "product_id": symbol,
                    "sequence": *sequence, "time": rfc3339(ts),
                })
                .to_string()
            }
            Provider::Polygon => json!([{
                "ev": "T", "sym": symbol, "x": 4, "i": id.to_string(), "z": 3,
                "p": trade.price, "s": trade.size, "c": [0],
                "t": ts.div_euclid(1_000_000), "q": id,
            }])
            .to_string(),
            Provider::Alpaca => json!([{
                "T": "t", "i": id, "S": symbol, "x": "V", "p": trade.price, "s": trade.size,
                "t": rfc3339(ts), "c": ["@"], "z": "C",
            }])
            .to_string(),
            Provider::Finnhub => json!({
                "type": "trade",
                "data": [{
                    "s": symbol, "p": trade.price, "v": trade.size,
                    "t": ts.div_euclid(1_000_000), "c": ["1"],
                }],
            })
            .to_string(),
            Provider::Kraken => json!({
                "channel": "trade", "type": "update",
                "data": [{
                    "symbol": symbol, "side": if trade.side == Some(Side::Sell) { "sell" } else { "buy" },
                    "price": trade.price, "qty": trade.size, "ord_type": "limit",
                    "trade_id": id, "timestamp": rfc3339(ts),
                }],
            })
            .to_string(),
            Provider::Coinbase => {
                self.sequence_num += 1;
                json!({
                    "channel": "market_trades", "client_id": "", "timestamp": rfc3339(ts),
                    "sequence_num": self.sequence_num - 1,
                    "events": [{ "type": "update", "trades": [{
                        "trade_id": id.to_string(), "product_id": symbol,
                        "price": trade.price.to_string(), "size": trade.size.to_string(),
                        "side": maker_side(trade.side).to_ascii_uppercase(), "time": rfc3339(ts),
                    }]}],
                })
                .to_string()
            }
        }
    }

    /// The keepalive messages due now.
    fn keepalives(&mut self, provider: Provider) -> Vec<Message> {
        let now = rfc3339(crate::model::wall_clock_now());
        match provider {
            Provider::Binance | Provider::Alpaca | Provider::Polygon => {
                vec![Message::Ping(Vec::new().into())]
            }
            Provider::Kraken => vec![Message::text(r#"{"channel":"heartbeat"}"#)],
            Provider::Finnhub => vec![Message::text(r#"{"type":"ping"}"#)],
            Provider::CoinbaseExchange => {
                let mut products: Vec<&String> = self.symbols.iter().collect();
                products.sort();
                products
                    .into_iter()
                    .map(|product| {
                        let last = self
                            .last_trade_ids
                            .get(&product.to_ascii_uppercase())
                            .copied()
                            .unwrap_or(0);
                        Message::text(
                            json!({ "type": "heartbeat", "sequence": 0, "last_trade_id": last,
                                    "product_id": product.to_ascii_uppercase(), "time": now })
                            .to_string(),
                        )
                    })
                    .collect()
            }
            Provider::Coinbase => {
                self.sequence_num += 1;
                vec![Message::text(
                    json!({ "channel": "heartbeats", "client_id": "", "timestamp": now,
                            "sequence_num": self.sequence_num - 1,
                            "events": [{ "current_time": now, "heartbeat_counter": self.sequence_num }] })
                    .to_string(),
                )]
            }
        }
    }
}

fn default_keepalive(provider: Provider) -> Duration {
    match provider {
        Provider::Binance | Provider::Alpaca | Provider::Polygon => Duration::from_secs(20),
        Provider::Coinbase | Provider::CoinbaseExchange | Provider::Kraken | Provider::Finnhub => {
            Duration::from_secs(1)
        }
    }
}

/// One client connection and what it shares with the exchange.
struct Connection {
    frames: Arc<Vec<RecordedFrame>>,
    options: MockOptions,
    stats: Arc<MockStats>,
    /// The shared tape's position (`shared_tape`): the next frame, over all passes.
    tape: Arc<AtomicU64>,
}

/// A client's read error: a protocol violation is counted apart from a plain disconnect.
fn client_error(stats: &MockStats, error: tokio_tungstenite::tungstenite::Error) -> MockError {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Capacity(_) | Error::Utf8(_) | Error::Protocol(_) => {
            stats.client_errors.fetch_add(1, Ordering::Relaxed);
            MockError::ClientViolation(error)
        }
        error => MockError::WebSocket(error),
    }
}

impl Connection {
    /// Serves one client until it leaves, `cancel` fires or a fault drops it.
    async fn serve(self, stream: TcpStream, cancel: CancellationToken) -> Result<(), MockError> {
        let Connection {
            frames,
            options,
            stats,
            tape,
        } = self;
        let _ = stream.set_nodelay(true);
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_CLIENT_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE_BYTES));
        let mut socket = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let provider = options.provider;
        let faults = &options.faults;
        let mut session = Session {
            reject_auth: options.reject_auth,
            ..Session::default()
        };
        let greeting = match provider {
            Provider::Alpaca => Some(json!([{ "T": "success", "msg": "connected" }])),
            Provider::Polygon => Some(json!([{ "ev": "status", "status": "connected",
                                                "message": "Connected Successfully" }])),
            _ => None,
        };
        if let Some(greeting) = greeting {
            socket.send(Message::text(greeting.to_string())).await?;
        }
        let subscribe_deadline = Instant::now() + options.subscribe_timeout;
        let mut keepalive = tokio::time::interval(
            options
                .keepalive_every
                .unwrap_or(default_keepalive(provider)),
        );
        keepalive.tick().await;
        let (day_shift, id_shift) = pass_shift(&frames);
        let length = frames.len().max(1) as u64;
        let mut pass = 0u64;
        let mut next = 0usize;
        let mut sent_this_pass = 0usize;
        let mut positioned = false;
        // Trade frames sent on this connection (the faults count them).
        let mut sent = 0u64;
        // (event time, wall time) the pacing is anchored at.
        let mut anchor: Option<(i64, Instant)> = None;
        let mut unflushed = 0usize;
        loop {
            let subscribed = !session.symbols.is_empty();
            if subscribed && !positioned {
                positioned = true;
                if options.shared_tape {
                    let start = tape
                        .load(Ordering::Acquire)
                        .saturating_sub(faults.resend_on_connect as u64);
                    pass = start / length;
                    next = usize::try_from(start % length).unwrap_or(0);
                }
            }
            // The next subscribed frame and when it is due; `None`: nothing to send now.
            while subscribed && next < frames.len() && !session.wants(&frames[next]) {
                next += 1;
            }
            if next == frames.len() && options.repeat && sent_this_pass > 0 {
                pass += 1;
                next = 0;
                sent_this_pass = 0;
                continue;
            }
            let time_offset = day_shift.saturating_mul(i64::try_from(pass).unwrap_or(i64::MAX));
            let due = (subscribed && next < frames.len()).then(|| match options.speed {
                Speed::Max => Instant::now(),
                Speed::Factor(factor) => {
                    let ts = frames[next].time().saturating_add(time_offset);
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
                    due
                }
            });
            // Frames are written without flushing while more are due at once (at full speed, up
            // to FRAMES_PER_FLUSH), and flushed before any wait: one write per burst, not per
            // frame.
            if unflushed > 0
                && (unflushed >= FRAMES_PER_FLUSH || due.is_none_or(|due| due > Instant::now()))
            {
                socket.flush().await?;
                unflushed = 0;
            }
            // A frame already due is sent without a timer: timers tick in milliseconds, and one
            // per frame would cap the mock at a thousand frames a second.
            let frame_ready = async {
                if let Some(due) = due.filter(|due| *due > Instant::now()) {
                    tokio::time::sleep_until(due).await;
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                message = socket.next() => match message {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Err(error)) => return Err(client_error(&stats, error)),
                    Some(Ok(Message::Text(text))) => {
                        for reply in session.request(provider, text.as_str())? {
                            socket.send(Message::text(reply)).await?;
                        }
                        if session.closing {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep_until(subscribe_deadline), if !subscribed => {
                    return Err(MockError::SubscribeTimeout(options.subscribe_timeout));
                }
                _ = keepalive.tick() => {
                    for message in session.keepalives(provider) {
                        socket.send(message).await?;
                    }
                }
                _ = frame_ready, if due.is_some() => {
                    let text = session.trade_text(provider, &frames[next], time_offset, id_shift.saturating_mul(pass));
                    socket.feed(Message::text(text)).await?;
                    unflushed += 1;
                    next += 1;
                    sent_this_pass += 1;
                    sent += 1;
                    stats.trades_sent.fetch_add(1, Ordering::Relaxed);
                    let position = pass * length + next as u64;
                    stats.furthest.fetch_max(position, Ordering::Relaxed);
                    if options.shared_tape {
                        tape.fetch_max(position, Ordering::AcqRel);
                    }
                    let every = |n: Option<u64>| n.is_some_and(|n| n > 0 && sent.is_multiple_of(n));
                    if every(faults.garbage_every) {
                        let garbage = GARBAGE[(stats.garbage_sent.fetch_add(1, Ordering::Relaxed) % GARBAGE.len() as u64) as usize];
                        socket.feed(Message::text(garbage)).await?;
                        unflushed += 1;
                    }
                    if let Some((stall_every, stall_for)) = faults.stall
                        && every(Some(stall_every)) {
                            socket.flush().await?;
                            unflushed = 0;
                            stats.stalls.fetch_add(1, Ordering::Relaxed);
                            // Silent, not deaf: a client that gives up during the stall
                            // ends the connection at once (nothing is sent into a closed one).
                            let stall_end = tokio::time::sleep(stall_for);
                            tokio::pin!(stall_end);
                            loop {
                                tokio::select! {
                                    _ = cancel.cancelled() => return Ok(()),
                                    _ = &mut stall_end => break,
                                    message = socket.next() => match message {
                                        None | Some(Ok(Message::Close(_))) => return Ok(()),
                                        Some(Err(error)) => return Err(client_error(&stats, error)),
                                        Some(Ok(_)) => {}
                                    },
                                }
                            }
                            // Keepalives missed during the stall are not sent in a burst.
                            keepalive.reset();
                        }
                    if every(faults.drop_every) {
                        socket.flush().await?;
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        return drop_connection(socket).await;
                    }
                }
            }
        }
        let _ = socket.flush().await;
        let _ = socket.close(None).await;
        Ok(())
    }
}

/// Drops a connection without a WebSocket closing handshake: the TCP connection is shut down
/// after everything written, then the client has [`DROP_LINGER`] to close its end (closing ours
/// first with unread bytes would reset the connection and could discard frames in flight).
async fn drop_connection(
    mut socket: tokio_tungstenite::WebSocketStream<TcpStream>,
) -> Result<(), MockError> {
    let stream = socket.get_mut();
    let _ = stream.shutdown().await;
    let linger = async {
        let mut buffer = [0u8; 4096];
        loop {
            match tokio::io::AsyncReadExt::read(stream, &mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(DROP_LINGER, linger).await;
    Ok(())
}
