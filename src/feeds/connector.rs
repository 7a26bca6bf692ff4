//! A live feed connection as an async stream: connect, subscribe, read frames, parse them, and
//! reconnect with backoff when anything goes wrong.
//!
//! The stream yields a [`FeedBatch`] per burst of frames that carried trades or quotes. It never
//! ends on its own: a dead feed is retried on its own schedule ([`Backoff`]) while the rest of the
//! service goes on; dropping the stream stops it. The consumer's pace is the connection's pace:
//! nothing is read from the socket until the previous batch has been taken, so a slow core slows
//! the reads instead of growing a queue.
//!
//! Discipline, per connection:
//! - frames larger than the configured limit are refused by the WebSocket layer (the connection
//!   is dropped and retried);
//! - WebSocket pings are answered by the transport (tungstenite queues the pong and flushes it
//!   on the next read);
//! - silence longer than the provider's limit (any frame counts as life: data, heartbeats,
//!   pings, pongs) forces a reconnect;
//! - a frame that does not parse is counted and logged (rate-limited, with an excerpt), and the
//!   connection goes on;
//! - after a reconnect everything is subscribed again; trades already seen are dropped by the
//!   core (trade ids), and gaps in the venue's trade ids are counted.

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::feeds::event::{FeedEvent, ParseContext};
use crate::feeds::reconnect::{Backoff, ReconnectPolicy, Retry};
use crate::feeds::venue::{Credentials, Provider, Subscription};
use crate::health::{Disconnect, FeedState, FeedStatus};
use crate::model::{FeedId, Quote, Symbol, Trade, to_millis, wall_clock_now};
use crate::record::{Direction, FrameRecord, RecordSender, mask};

/// The WebSocket read buffer: what one read from the socket may take. Large enough that a
/// burst is read in a few calls, small enough that zeroing it (tungstenite does, before every
/// read) stays cheap.
const READ_BUFFER_BYTES: usize = 32 * 1024;
/// One configured live feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedSpec {
    /// Which provider.
    pub provider: Provider,
    /// Base URL (`wss://…`, or `ws://127.0.0.1:…` for the mock exchange).
    pub url: String,
    /// Symbols as the venue spells them.
    pub symbols: Vec<String>,
    /// Channels to subscribe.
    pub channels: Vec<String>,
    /// API credentials, read from the environment (never logged or shown).
    pub credentials: Option<Credentials>,
}

/// Connection limits and timing shared by all connectors.
#[derive(Debug, Clone)]
pub struct ConnectorSettings {
    /// Reconnect policy.
    pub reconnect: ReconnectPolicy,
    /// Override of the provider's stale-feed limit.
    pub stale_after: Option<Duration>,
    /// Largest accepted message (and frame), bytes.
    pub max_message_bytes: usize,
    /// How long to wait for the connection to open.
    pub connect_timeout: Duration,
    /// Where to record frames and connection markers (`--record`); backpressure when full.
    pub recorder: Option<RecordSender>,
    /// Stops the connector: an open connection is closed with a WebSocket close, then the
    /// stream ends.
    pub cancel: CancellationToken,
}

/// Longest wait for the venue's answer to our WebSocket close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

impl Default for ConnectorSettings {
    fn default() -> Self {
        ConnectorSettings {
            reconnect: ReconnectPolicy::default(),
            stale_after: None,
            max_message_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(10),
            recorder: None,
            cancel: CancellationToken::new(),
        }
    }
}

/// What the frames read together delivered.
#[derive(Debug, Default)]
pub struct FeedBatch {
    /// Trades, in the venue's order.
    pub trades: Vec<Trade>,
    /// Quotes.
    pub quotes: Vec<Quote>,
}

impl FeedBatch {
    /// Trades and quotes in the batch.
    pub fn len(&self) -> usize {
        self.trades.len() + self.quotes.len()
    }

    /// Whether it holds neither.
    pub fn is_empty(&self) -> bool {
        self.trades.is_empty() && self.quotes.is_empty()
    }
}

/// Most trades and quotes gathered into one batch from frames that have already arrived.
const MAX_BATCH_EVENTS: usize = 4096;

/// Parse errors logged one by one before switching to one line per this many.
const PARSE_ERRORS_LOGGED: u64 = 20;
const PARSE_ERROR_LOG_EVERY: u64 = 1000;
/// Characters of a bad frame shown in the log.
const EXCERPT_CHARS: usize = 200;

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
    Cancelled,
    Failed(Disconnect, String),
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The live stream of `spec`'s trades and quotes, tagged with `feed`; state and counters go to
/// `status`.
pub fn live_stream(
    spec: FeedSpec,
    settings: ConnectorSettings,
    feed: FeedId,
    status: Arc<FeedStatus>,
) -> impl Stream<Item = FeedBatch> + Send + 'static {
    let mut connector = Connector::new(spec, settings, feed, status);
    async_stream::stream! {
        loop {
            let started = Instant::now();
            let ended = match connector.connect().await {
                Err(ended) => ended,
                Ok(mut connection) => {
                    let ended = match connector.subscribe(&mut connection).await {
                        Err(ended) => ended,
                        Ok(()) => loop {
                            match connector.next_batch(&mut connection).await {
                                Ok(batch) => yield batch,
                                Err(ended) => break ended,
                            }
                        },
                    };
                    connector.close(connection, ended).await
                }
            };
            if !connector.back_off(ended, started).await {
                return;
            }
        }
    }
}

/// One feed across its connections: what outlives a reconnect.
struct Connector {
    spec: FeedSpec,
    settings: ConnectorSettings,
    status: Arc<FeedStatus>,
    backoff: Backoff,
    ctx: ParseContext,
    /// The last trade id per symbol, for gap checks on venues with consecutive ids.
    last_trade_ids: HashMap<Symbol, u64>,
    stale_after: Duration,
    url: String,
    config: WebSocketConfig,
    connections: u64,
    /// The credentials' values, masked out of recorded frames.
    secrets: Vec<String>,
    /// The parsed events of the current frame (reused).
    events: Vec<FeedEvent>,
}

/// One open connection.
struct Connection {
    socket: Socket,
    /// `<feed>-<n>`: how recordings name the connection.
    name: String,
    last_frame: Instant,
    app_ping: Option<tokio::time::Interval>,
    ping_id: u64,
    /// The venue's last error message, named in the disconnect reason.
    venue_error: Option<String>,
    /// The end a frame announced, taken after its batch is delivered.
    ending: Option<Ended>,
}

impl Connector {
    fn new(
        spec: FeedSpec,
        settings: ConnectorSettings,
        feed: FeedId,
        status: Arc<FeedStatus>,
    ) -> Self {
        let stale_after = settings
            .stale_after
            .unwrap_or_else(|| spec.provider.stale_after());
        let url = spec
            .provider
            .connect_url(&spec.url, spec.credentials.as_ref());
        // tungstenite zeroes its read buffer's free room, up to this size, before every read:
        // at the default 128 KiB that memset costs more than a small burst of frames.
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .max_message_size(Some(settings.max_message_bytes))
            .max_frame_size(Some(settings.max_message_bytes));
        let secrets = spec
            .credentials
            .iter()
            .flat_map(|c| std::iter::once(&c.key).chain(c.secret.iter()))
            .map(|secret| secret.expose().to_string())
            .collect();
        Connector {
            backoff: Backoff::new(settings.reconnect.clone()),
            ctx: ParseContext::new(feed),
            last_trade_ids: HashMap::new(),
            stale_after,
            url,
            config,
            connections: 0,
            secrets,
            events: Vec::new(),
            spec,
            settings,
            status,
        }
    }

    /// Opens a connection (bounded by the connect timeout).
    async fn connect(&mut self) -> Result<Connection, Ended> {
        self.status.set_state(FeedState::Connecting);
        let connected = tokio::select! {
            _ = self.settings.cancel.cancelled() => return Err(Ended::Cancelled),
            connected = tokio::time::timeout(
                self.settings.connect_timeout,
                tokio_tungstenite::connect_async_with_config(
                    self.url.as_str(),
                    Some(self.config),
                    true,
                ),
            ) => connected,
        };
        let socket = match connected {
            Err(_) => {
                return Err(Ended::Failed(
                    Disconnect::ConnectFailed,
                    "connect timed out".into(),
                ));
            }
            Ok(Err(error)) => {
                return Err(Ended::Failed(
                    Disconnect::ConnectFailed,
                    format!("connect failed: {error}"),
                ));
            }
            Ok(Ok((socket, _response))) => socket,
        };
        self.connections += 1;
        self.ctx.reset_sequences();
        let connection = Connection {
            socket,
            name: format!("{}-{}", self.status.name(), self.connections),
            last_frame: Instant::now(),
            app_ping: None,
            ping_id: 0,
            venue_error: None,
            ending: None,
        };
        let url = Some(self.spec.url.clone());
        self.record(&connection, Direction::Connect, None, url, wall_clock_now())
            .await;
        if self.connections > 1 {
            self.status.reconnected();
        }
        Ok(connection)
    }

    /// Sends the venue's handshake; starts the silence clock and the application pings.
    async fn subscribe(&mut self, connection: &mut Connection) -> Result<(), Ended> {
        self.status.set_state(FeedState::Subscribing);
        let subscription = Subscription {
            symbols: &self.spec.symbols,
            channels: &self.spec.channels,
            credentials: self.spec.credentials.as_ref(),
        };
        for request in self.spec.provider.handshake(&subscription) {
            if self.settings.recorder.is_some() {
                let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
                let masked = mask(&request, &secrets);
                self.record(
                    connection,
                    Direction::Out,
                    Some(masked),
                    None,
                    wall_clock_now(),
                )
                .await;
            }
            if let Err(error) = connection.socket.send(Message::text(request)).await {
                return Err(Ended::Failed(
                    Disconnect::SendFailed,
                    format!("subscribe failed: {error}"),
                ));
            }
        }
        if !self.spec.provider.acknowledges() {
            self.status.set_state(FeedState::Live);
        }
        connection.last_frame = Instant::now();
        connection.app_ping = self
            .spec
            .provider
            .app_ping_every()
            .map(|every| tokio::time::interval_at(Instant::now() + every, every));
        Ok(())
    }

    /// Reads frames until some carry trades or quotes, or the connection ends: the first frame
    /// is waited for, then every frame that has already arrived joins the same batch (up to
    /// [`MAX_BATCH_EVENTS`]), so that a burst costs one yield and one channel send, not one per
    /// frame. An end met after some trades is reported on the next call, after they are
    /// delivered.
    async fn next_batch(&mut self, connection: &mut Connection) -> Result<FeedBatch, Ended> {
        let mut batch = FeedBatch::default();
        loop {
            if let Some(ended) = connection.ending.take() {
                return Err(ended);
            }
            let mut next = Some(self.next_frame(connection).await?);
            let mut receive_ts = 0;
            while let Some(message) = next.take() {
                receive_ts = wall_clock_now();
                if let Err(ended) = self.take(message, receive_ts, connection, &mut batch).await {
                    connection.ending = Some(ended);
                    break;
                }
                if batch.len() >= MAX_BATCH_EVENTS || connection.ending.is_some() {
                    break;
                }
                next = match connection.socket.next().now_or_never().map(read_outcome) {
                    Some(Ok(message)) => Some(message),
                    Some(Err(ended)) => {
                        connection.ending = Some(ended);
                        None
                    }
                    None => None,
                };
            }
            self.status.saw_frame(to_millis(receive_ts));
            if !batch.is_empty() {
                if self.status.state() == FeedState::Subscribing {
                    self.status.set_state(FeedState::Live);
                }
                self.status.rows.inc_by(batch.trades.len() as u64);
                return Ok(batch);
            }
        }
    }

    /// Waits for the next frame, sending application pings when due; silence beyond the stale
    /// limit, a close or a read error ends the connection.
    async fn next_frame(&mut self, connection: &mut Connection) -> Result<Message, Ended> {
        loop {
            let Connection {
                socket,
                last_frame,
                app_ping,
                ..
            } = connection;
            // Silence is measured from the last frame, whatever we send meanwhile.
            let next = tokio::select! {
                // Stopping: the socket is then closed with a handshake.
                _ = self.settings.cancel.cancelled() => return Err(Ended::Cancelled),
                next = socket.next() => Some(next),
                _ = tokio::time::sleep_until(*last_frame + self.stale_after) => None,
                _ = async {
                    match app_ping.as_mut() {
                        Some(interval) => { interval.tick().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {
                    self.send_app_ping(connection).await?;
                    continue;
                }
            };
            connection.last_frame = Instant::now();
            return match next {
                None => {
                    let reason = format!("no frame for {:?}: stale feed", self.stale_after);
                    Err(Ended::Failed(Disconnect::Stale, reason))
                }
                Some(read) => read_outcome(read),
            };
        }
    }

    /// One frame: recorded when recording, its trades and quotes added to `batch`. A close
    /// frame ends the connection; pings (answered by the transport), pongs and binary frames
    /// are life only.
    async fn take(
        &mut self,
        message: Message,
        receive_ts: i64,
        connection: &mut Connection,
        batch: &mut FeedBatch,
    ) -> Result<(), Ended> {
        let text = match &message {
            Message::Text(text) => text.as_str(),
            Message::Close(frame) => {
                let reason = format!("closed by the venue: {frame:?}");
                return Err(Ended::Failed(Disconnect::Closed, reason));
            }
            _ => return Ok(()),
        };
        self.ctx.receive_ts = receive_ts;
        if self.settings.recorder.is_some() {
            let text = Some(text.to_string());
            self.record(connection, Direction::In, text, None, receive_ts)
                .await;
        }
        self.parse(text, connection, batch);
        Ok(())
    }

    async fn send_app_ping(&mut self, connection: &mut Connection) -> Result<(), Ended> {
        connection.ping_id += 1;
        if let Some(ping) = self.spec.provider.app_ping(connection.ping_id)
            && let Err(error) = connection.socket.send(Message::text(ping)).await
        {
            return Err(Ended::Failed(
                Disconnect::SendFailed,
                format!("ping failed: {error}"),
            ));
        }
        Ok(())
    }

    /// Parses one text frame: its trades and quotes added to `batch`, its control events applied
    /// to the feed's state. A frame that does not parse is counted, logged and skipped.
    fn parse(&mut self, text: &str, connection: &mut Connection, batch: &mut FeedBatch) {
        self.events.clear();
        let parsed = self
            .spec
            .provider
            .parse(text, &mut self.ctx, &mut self.events);
        let sequence_gaps = self.ctx.take_gaps();
        if sequence_gaps > 0 {
            self.status.gaps.fetch_add(sequence_gaps, Ordering::Relaxed);
        }
        if let Err(error) = parsed {
            self.status.malformed.inc();
            let count = self.status.malformed.get();
            if count <= PARSE_ERRORS_LOGGED || count.is_multiple_of(PARSE_ERROR_LOG_EVERY) {
                let feed = self.status.name();
                let excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
                tracing::warn!(
                    feed, parse_errors = count, %error, frame = %excerpt,
                    "skipping a frame that does not parse"
                );
            }
            return;
        }
        let sequential = self.spec.provider.sequential_trade_ids();
        for event in self.events.drain(..) {
            match event {
                FeedEvent::Trade(trade) => {
                    if let Some(id) = trade.trade_id.filter(|_| sequential) {
                        let last = self.last_trade_ids.insert(trade.symbol.clone(), id);
                        if last.is_some_and(|last| id > last + 1) {
                            self.status.gaps.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    self.status
                        .set_lag_ms((trade.receive_ts - trade.exchange_ts) / 1_000_000);
                    batch.trades.push(trade);
                }
                FeedEvent::Quote(quote) => {
                    self.status.quotes.fetch_add(1, Ordering::Relaxed);
                    batch.quotes.push(quote);
                }
                FeedEvent::Ack => self.status.set_state(FeedState::Live),
                FeedEvent::Heartbeat => {}
                FeedEvent::ServerShutdown => {
                    connection.ending = Some(Ended::Failed(
                        Disconnect::VenueShutdown,
                        "the venue announced a shutdown".into(),
                    ));
                }
                FeedEvent::ProviderError { code, message } => {
                    let feed = self.status.name();
                    tracing::warn!(feed, ?code, %message, "the venue reported an error");
                    let text = match code {
                        Some(code) => format!("venue error {code}: {message}"),
                        None => format!("venue error: {message}"),
                    };
                    self.status.set_error(text.clone());
                    connection.venue_error = Some(text);
                }
            }
        }
    }

    /// Closes the connection with a WebSocket close (bounded: a venue that does not answer is
    /// not waited for); the reason it ended names the venue's last error.
    async fn close(&mut self, mut connection: Connection, ended: Ended) -> Ended {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.socket.close(None)).await;
        if self.settings.recorder.is_some() {
            let reason = match &ended {
                Ended::Failed(_, reason) => reason.clone(),
                Ended::Cancelled => "stopped".to_string(),
            };
            self.record(
                &connection,
                Direction::Close,
                Some(reason),
                None,
                wall_clock_now(),
            )
            .await;
        }
        match (ended, connection.venue_error) {
            (Ended::Failed(_, reason), Some(error)) => Ended::Failed(
                Disconnect::VenueShutdown,
                format!("{reason} (after {error})"),
            ),
            (ended, _) => ended,
        }
    }

    /// Counts the end of a connection and waits out the backoff; `false` when stopping.
    async fn back_off(&mut self, ended: Ended, started: Instant) -> bool {
        let (kind, reason) = match ended {
            Ended::Cancelled => return false,
            Ended::Failed(kind, reason) => {
                self.status.disconnected(kind);
                (kind, reason)
            }
        };
        self.status.set_error(reason.clone());
        let retry = self.backoff.next(started.elapsed());
        let state = match retry {
            Retry::Backoff(_) => FeedState::Backoff,
            Retry::CircuitOpen(_) => {
                self.status.circuit_opens.fetch_add(1, Ordering::Relaxed);
                FeedState::CircuitOpen
            }
        };
        self.status.set_state(state);
        let (feed, delay, failures) = (self.status.name(), retry.delay(), self.backoff.failures());
        if kind == Disconnect::ConnectFailed {
            tracing::warn!(feed, %reason, ?delay, failures, "cannot connect; retrying");
        } else {
            tracing::warn!(feed, %reason, ?delay, failures, "feed disconnected; retrying");
        }
        tokio::select! {
            _ = self.settings.cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Sends a frame or marker to the recorder, if recording (backpressure when it is behind).
    async fn record(
        &self,
        connection: &Connection,
        dir: Direction,
        text: Option<String>,
        url: Option<String>,
        recv_ns: i64,
    ) {
        if let Some(recorder) = &self.settings.recorder {
            let line = FrameRecord {
                recv_ns,
                conn: connection.name.clone().into(),
                provider: self.spec.provider.name().into(),
                dir,
                text: text.map(Into::into),
                url: url.map(Into::into),
            };
            let _ = recorder.send(line).await;
        }
    }
}

/// What one read from the socket gave: a message, or how the connection ended.
fn read_outcome(
    read: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
) -> Result<Message, Ended> {
    match read {
        Some(Ok(message)) => Ok(message),
        Some(Err(error)) => {
            let kind = disconnect_of(&error);
            Err(Ended::Failed(kind, format!("read failed: {error}")))
        }
        None => Err(Ended::Failed(
            Disconnect::Closed,
            "connection closed".into(),
        )),
    }
}

/// The reason a read error ended a connection.
fn disconnect_of(error: &tokio_tungstenite::tungstenite::Error) -> Disconnect {
    use std::io::ErrorKind;
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match error {
        Error::ConnectionClosed | Error::AlreadyClosed => Disconnect::Closed,
        Error::Capacity(_) => Disconnect::TooLarge,
        Error::Utf8(_) => Disconnect::InvalidUtf8,
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Disconnect::Reset,
        Error::Protocol(_) => Disconnect::Protocol,
        Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::BrokenPipe
            ) =>
        {
            Disconnect::Reset
        }
        _ => Disconnect::Io,
    }
}
