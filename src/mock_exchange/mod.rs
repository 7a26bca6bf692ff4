//! The mock exchange: serves recorded trades over a real local WebSocket in a provider's wire
//! format, with that provider's handshake, so the real connector runs against it unchanged and
//! the whole live path works offline.
//!
//! What is common to every venue lives here: the listener, one task per connection, pacing by
//! the recording's times, the shared tape, faults and counters. What differs (the handshake,
//! the trade frames, the keepalives) is the venue's server side, in its folder of
//! [`crate::feeds`] (`mock.rs`, behind [`crate::feeds::venue::VenueServer`]).
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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::feeds::Provider;
use crate::feeds::venue::{BadRequest, ServedTrade, ServerSession, VenueServer};
use crate::model::Trade;
use crate::record::{Direction, FrameRecord};
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
            provider: crate::feeds::binance::PROVIDER,
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
    /// The client's request was not one the venue understands.
    #[error(transparent)]
    BadRequest(#[from] BadRequest),
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
    let mut session = Session::new(provider, false);
    recorded_frames(trades)
        .iter()
        .map(|frame| session.frame_text(frame, 0, 0))
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
        let frames = recording
            .lines()
            .filter_map(|line| serde_json::from_str::<FrameRecord<'_>>(line).ok())
            .filter(|line| {
                line.dir == Direction::In
                    && Provider::from_name(&line.provider) == Some(options.provider)
            })
            .filter_map(|line| {
                line.text.map(|text| RecordedFrame::Raw {
                    recv_ns: line.recv_ns,
                    text: text.into_owned(),
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

/// One connection's protocol: the venue's side of it, and what every venue shares.
struct Session {
    server: Box<dyn VenueServer>,
    shared: ServerSession,
}

impl Session {
    fn new(provider: Provider, reject_auth: bool) -> Self {
        Session {
            server: provider.server(),
            shared: ServerSession {
                reject_auth,
                ..ServerSession::default()
            },
        }
    }

    /// Whether `frame` is subscribed.
    fn wants(&self, frame: &RecordedFrame) -> bool {
        match frame {
            RecordedFrame::Trade { trade, .. } => self
                .shared
                .symbols
                .contains(&trade.symbol.as_str().to_ascii_lowercase()),
            // A raw recording is served whole to a client that subscribed to anything.
            RecordedFrame::Raw { .. } => !self.shared.symbols.is_empty(),
        }
    }

    /// `frame` in the venue's format, shifted by `time_offset` ns and `id_offset`.
    fn frame_text(&mut self, frame: &RecordedFrame, time_offset: i64, id_offset: u64) -> String {
        match frame {
            RecordedFrame::Trade { trade, trade_id } => self.server.trade(&ServedTrade {
                symbol: trade.symbol.as_str(),
                price: trade.price,
                size: trade.size,
                side: trade.side,
                ts: trade.exchange_ts.saturating_add(time_offset),
                id: trade_id.saturating_add(id_offset),
            }),
            RecordedFrame::Raw { text, .. } => text.clone(),
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
        let mut session = Session::new(provider, options.reject_auth);
        if let Some(greeting) = session.server.greeting() {
            socket.send(Message::text(greeting)).await?;
        }
        let subscribe_deadline = Instant::now() + options.subscribe_timeout;
        let mut keepalive = tokio::time::interval(
            options
                .keepalive_every
                .unwrap_or_else(|| session.server.keepalive_every()),
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
            let subscribed = !session.shared.symbols.is_empty();
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
                        for reply in session.server.request(text.as_str(), &mut session.shared)? {
                            socket.send(Message::text(reply)).await?;
                        }
                        if session.shared.closing {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep_until(subscribe_deadline), if !subscribed => {
                    return Err(MockError::SubscribeTimeout(options.subscribe_timeout));
                }
                _ = keepalive.tick() => {
                    for message in session.server.keepalives(&session.shared) {
                        socket.send(message).await?;
                    }
                }
                _ = frame_ready, if due.is_some() => {
                    let text = session.frame_text(&frames[next], time_offset, id_shift.saturating_mul(pass));
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
