//! A live feed connection as an async stream: connect, subscribe, read frames, parse them, and
//! reconnect with backoff when anything goes wrong.
//!
//! The stream yields one [`FeedBatch`] per frame that carried trades or quotes. It never ends on
//! its own: a dead feed is retried on its own schedule ([`Backoff`]) while the rest of the
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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::feeds::event::{FeedEvent, FrameError, ParseContext};
use crate::feeds::reconnect::{Backoff, ReconnectPolicy, Retry};
use crate::feeds::{
    Disconnect, FeedState, FeedStatus, alpaca, binance, coinbase, finnhub, kraken, polygon,
};
use crate::model::{FeedId, Quote, Symbol, Trade, to_millis, wall_clock_now};
use crate::record::{Direction, FrameRecord, RecordSender, mask};

/// The market-data providers tickstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Binance spot combined streams.
    Binance,
    /// Coinbase Advanced Trade market data.
    Coinbase,
    /// Coinbase Exchange (the legacy public feed).
    CoinbaseExchange,
    /// Kraken spot v2.
    Kraken,
    /// Finnhub trades (API key required).
    Finnhub,
    /// Alpaca market data v2, stocks (key and secret required).
    Alpaca,
    /// Polygon.io (Massive) stocks (API key required).
    Polygon,
}

impl Provider {
    /// The provider's name in configuration and `/v1/feeds`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Binance => "binance",
            Provider::Coinbase => "coinbase",
            Provider::CoinbaseExchange => "coinbase-exchange",
            Provider::Kraken => "kraken",
            Provider::Finnhub => "finnhub",
            Provider::Alpaca => "alpaca",
            Provider::Polygon => "polygon",
        }
    }

    /// Every provider, for help texts.
    pub const ALL: [Provider; 7] = [
        Provider::Binance,
        Provider::Coinbase,
        Provider::CoinbaseExchange,
        Provider::Kraken,
        Provider::Finnhub,
        Provider::Alpaca,
        Provider::Polygon,
    ];

    /// The names [`from_name`](Self::from_name) knows, for error messages: `binance, …`.
    pub fn known_names() -> String {
        Provider::ALL.map(Provider::name).join(", ")
    }

    /// The environment variable that holds the API key, for providers that need one.
    pub fn default_key_env(self) -> Option<&'static str> {
        match self {
            Provider::Finnhub => Some(finnhub::DEFAULT_KEY_ENV),
            Provider::Alpaca => Some(alpaca::DEFAULT_KEY_ENV),
            Provider::Polygon => Some(polygon::DEFAULT_KEY_ENV),
            _ => None,
        }
    }

    /// The environment variable that holds the API secret, for providers that need one.
    pub fn default_secret_env(self) -> Option<&'static str> {
        match self {
            Provider::Alpaca => Some(alpaca::DEFAULT_SECRET_ENV),
            _ => None,
        }
    }

    /// Whether trade ids are consecutive per symbol (so a jump is a gap).
    fn sequential_trade_ids(self) -> bool {
        !matches!(
            self,
            Provider::Alpaca | Provider::Finnhub | Provider::Polygon
        )
    }

    /// Whether the venue acknowledges subscriptions (otherwise the feed is live once they are
    /// sent).
    fn acknowledges(self) -> bool {
        !matches!(self, Provider::Finnhub)
    }

    /// Parses a provider name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "binance" => Some(Provider::Binance),
            "coinbase" => Some(Provider::Coinbase),
            "coinbase-exchange" => Some(Provider::CoinbaseExchange),
            "kraken" => Some(Provider::Kraken),
            "finnhub" => Some(Provider::Finnhub),
            "alpaca" => Some(Provider::Alpaca),
            "polygon" | "massive" => Some(Provider::Polygon),
            _ => None,
        }
    }

    /// The provider's public endpoint.
    pub fn default_url(self) -> &'static str {
        match self {
            Provider::Binance => binance::DEFAULT_URL,
            Provider::Coinbase => coinbase::ADVANCED_TRADE_URL,
            Provider::CoinbaseExchange => coinbase::EXCHANGE_URL,
            Provider::Kraken => kraken::DEFAULT_URL,
            Provider::Finnhub => finnhub::DEFAULT_URL,
            Provider::Alpaca => alpaca::DEFAULT_URL,
            Provider::Polygon => polygon::DEFAULT_URL,
        }
    }

    /// Channels subscribed when none are configured.
    pub fn default_channels(self) -> Vec<String> {
        match self {
            Provider::Binance => vec!["trade".into(), "bookTicker".into()],
            Provider::Coinbase => vec!["market_trades".into(), "ticker".into()],
            Provider::CoinbaseExchange => vec!["matches".into(), "ticker".into()],
            Provider::Kraken => vec!["trade".into(), "ticker".into()],
            Provider::Finnhub => vec!["trade".into()],
            Provider::Alpaca => vec!["trades".into(), "quotes".into()],
            Provider::Polygon => vec!["T".into(), "Q".into()],
        }
    }

    /// How often the client must send an application-level ping, if the venue wants one.
    pub fn app_ping_every(self) -> Option<Duration> {
        match self {
            Provider::Kraken => Some(Duration::from_secs(10)),
            _ => None,
        }
    }

    /// The application-level ping with request id `id`.
    fn app_ping(self, id: u64) -> Option<String> {
        match self {
            Provider::Kraken => Some(kraken::ping(id)),
            _ => None,
        }
    }

    /// Silence after which a connection is considered dead.
    pub fn stale_after(self) -> Duration {
        match self {
            // Binance pings every 20 s even when a stream is quiet.
            Provider::Binance => Duration::from_secs(45),
            // Both Coinbase APIs send a heartbeat every second once subscribed.
            Provider::Coinbase | Provider::CoinbaseExchange => Duration::from_secs(10),
            // Heartbeats ~1/s once subscribed, pongs to our pings every 10 s.
            Provider::Kraken => Duration::from_secs(15),
            // Finnhub pings about once a minute, and its sockets are known to go silent.
            Provider::Finnhub => Duration::from_secs(90),
            // Alpaca sends no heartbeat: quiet symbols outside market hours are silent for long.
            Provider::Alpaca | Provider::Polygon => Duration::from_secs(300),
        }
    }

    fn connect_url(self, base: &str, credentials: Option<&Credentials>) -> String {
        match self {
            Provider::Binance => binance::stream_url(base),
            Provider::Finnhub => match credentials {
                Some(credentials) => finnhub::url_with_token(base, credentials.key.expose()),
                None => base.to_string(),
            },
            Provider::Coinbase
            | Provider::CoinbaseExchange
            | Provider::Kraken
            | Provider::Alpaca
            | Provider::Polygon => base.to_string(),
        }
    }

    fn handshake(self, spec: &FeedSpec) -> Vec<String> {
        match self {
            Provider::Polygon => {
                let key = spec.credentials.as_ref().map_or("", |c| c.key.expose());
                polygon::handshake(key, &spec.symbols, &spec.channels)
            }
            Provider::Alpaca => {
                let (key, secret) = spec.credentials.as_ref().map_or(("", ""), |c| {
                    (c.key.expose(), c.secret.as_ref().map_or("", Secret::expose))
                });
                alpaca::handshake(key, secret, &spec.symbols, &spec.channels)
            }
            Provider::Finnhub => finnhub::subscriptions(&spec.symbols),
            Provider::Kraken => kraken::subscriptions(&spec.symbols, &spec.channels),
            Provider::Binance => vec![binance::subscribe_request(&spec.symbols, &spec.channels, 1)],
            Provider::Coinbase => {
                coinbase::advanced_trade_subscriptions(&spec.symbols, &spec.channels)
            }
            Provider::CoinbaseExchange => {
                vec![coinbase::exchange_subscription(
                    &spec.symbols,
                    &spec.channels,
                )]
            }
        }
    }

    /// Parses one text frame of this provider into `out`.
    pub fn parse(
        self,
        text: &str,
        ctx: &mut ParseContext,
        out: &mut Vec<FeedEvent>,
    ) -> Result<(), FrameError> {
        match self {
            Provider::Binance => binance::parse(text, ctx, out),
            Provider::Coinbase => coinbase::parse_advanced_trade(text, ctx, out),
            Provider::CoinbaseExchange => coinbase::parse_exchange(text, ctx, out),
            Provider::Kraken => kraken::parse(text, ctx, out),
            Provider::Finnhub => finnhub::parse(text, ctx, out),
            Provider::Alpaca => alpaca::parse(text, ctx, out),
            Provider::Polygon => polygon::parse(text, ctx, out),
        }
    }
}

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

/// A secret string: its `Debug` shows nothing, and it is only read through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A feed's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// API key or token.
    pub key: Secret,
    /// API secret, for providers that have one.
    pub secret: Option<Secret>,
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

/// What one frame delivered.
#[derive(Debug, Default)]
pub struct FeedBatch {
    /// Trades, in the venue's order.
    pub trades: Vec<Trade>,
    /// Quotes.
    pub quotes: Vec<Quote>,
}

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

/// The live stream of `spec`'s trades and quotes, tagged with `feed`; state and counters go to
/// `status`.
pub fn live_stream(
    spec: FeedSpec,
    settings: ConnectorSettings,
    feed: FeedId,
    status: Arc<FeedStatus>,
) -> impl Stream<Item = FeedBatch> + Send + 'static {
    async_stream::stream! {
        let mut backoff = Backoff::new(settings.reconnect.clone());
        let mut ctx = ParseContext::new(feed);
        let mut last_trade_ids: HashMap<Symbol, u64> = HashMap::new();
        let stale_after = settings.stale_after.unwrap_or(spec.provider.stale_after());
        let url = spec.provider.connect_url(&spec.url, spec.credentials.as_ref());
        let config = WebSocketConfig::default()
            .max_message_size(Some(settings.max_message_bytes))
            .max_frame_size(Some(settings.max_message_bytes));
        let mut connections = 0u64;
        let secrets: Vec<String> = spec
            .credentials
            .iter()
            .flat_map(|c| std::iter::once(c.key.expose().to_string()).chain(c.secret.iter().map(|s| s.expose().to_string())))
            .collect();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        loop {
            status.set_state(FeedState::Connecting);
            let started = Instant::now();
            let connected = tokio::select! {
                _ = settings.cancel.cancelled() => return,
                connected = tokio::time::timeout(
                    settings.connect_timeout,
                    tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true),
                ) => connected,
            };
            let ended = match connected {
                Err(_) => Ended::Failed(Disconnect::ConnectFailed, "connect timed out".into()),
                Ok(Err(error)) => Ended::Failed(Disconnect::ConnectFailed, format!("connect failed: {error}")),
                Ok(Ok((mut socket, _response))) => {
                    connections += 1;
                    ctx.reset_sequences();
                    let conn = format!("{}-{connections}", status.name());
                    let record = |dir: Direction, text: Option<String>, url: Option<String>| FrameRecord {
                        recv_ns: wall_clock_now(),
                        conn: conn.clone(),
                        provider: spec.provider.name(),
                        dir,
                        text,
                        url,
                    };
                    if let Some(recorder) = &settings.recorder {
                        let _ = recorder.send(record(Direction::Connect, None, Some(spec.url.clone()))).await;
                    }
                    if connections > 1 {
                        status.reconnected();
                    }
                    status.set_state(FeedState::Subscribing);
                    let mut ended = None;
                    for request in spec.provider.handshake(&spec) {
                        if let Some(recorder) = &settings.recorder {
                            let masked = mask(&request, &secrets);
                            let _ = recorder.send(record(Direction::Out, Some(masked), None)).await;
                        }
                        if let Err(error) = socket.send(Message::text(request)).await {
                            ended = Some(Ended::Failed(Disconnect::SendFailed, format!("subscribe failed: {error}")));
                            break;
                        }
                    }
                    if ended.is_none() && !spec.provider.acknowledges() {
                        status.set_state(FeedState::Live);
                    }
                    let mut events = Vec::new();
                    let mut last_frame = Instant::now();
                    let mut app_ping = spec.provider.app_ping_every().map(|every| {
                        tokio::time::interval_at(Instant::now() + every, every)
                    });
                    let mut ping_id = 0u64;
                    let mut venue_error: Option<String> = None;
                    while ended.is_none() {
                        // Silence is measured from the last frame, whatever we send meanwhile.
                        let next = tokio::select! {
                            // Stopping: the loop ends and the socket is closed with a handshake.
                            _ = settings.cancel.cancelled() => {
                                ended = Some(Ended::Cancelled);
                                break;
                            }
                            next = socket.next() => Ok(next),
                            _ = tokio::time::sleep_until(last_frame + stale_after) => Err(()),
                            _ = async {
                                match app_ping.as_mut() {
                                    Some(interval) => { interval.tick().await; }
                                    None => std::future::pending::<()>().await,
                                }
                            } => {
                                ping_id += 1;
                                if let Some(ping) = spec.provider.app_ping(ping_id)
                                    && let Err(error) = socket.send(Message::text(ping)).await {
                                        ended = Some(Ended::Failed(Disconnect::SendFailed, format!("ping failed: {error}")));
                                    }
                                continue;
                            }
                        };
                        last_frame = Instant::now();
                        let message = match next {
                            Err(_) => {
                                ended = Some(Ended::Failed(Disconnect::Stale, format!("no frame for {stale_after:?}: stale feed")));
                                break;
                            }
                            Ok(None) => {
                                ended = Some(Ended::Failed(Disconnect::Closed, "connection closed".into()));
                                break;
                            }
                            Ok(Some(Err(error))) => {
                                ended = Some(Ended::Failed(Disconnect::of_read_error(&error), format!("read failed: {error}")));
                                break;
                            }
                            Ok(Some(Ok(message))) => message,
                        };
                        let receive_ts = wall_clock_now();
                        status.saw_frame(to_millis(receive_ts));
                        let text = match &message {
                            Message::Text(text) => text.as_str(),
                            Message::Close(frame) => {
                                ended = Some(Ended::Failed(Disconnect::Closed, format!("closed by the venue: {frame:?}")));
                                break;
                            }
                            // Pings (answered by the transport), pongs and binary frames: life only.
                            _ => continue,
                        };
                        ctx.receive_ts = receive_ts;
                        if let Some(recorder) = &settings.recorder {
                            let mut line = record(Direction::In, Some(text.to_string()), None);
                            line.recv_ns = receive_ts;
                            let _ = recorder.send(line).await;
                        }
                        events.clear();
                        let parsed = spec.provider.parse(text, &mut ctx, &mut events);
                        let sequence_gaps = ctx.take_gaps();
                        if sequence_gaps > 0 {
                            status.gaps.fetch_add(sequence_gaps, Ordering::Relaxed);
                        }
                        if let Err(error) = parsed {
                            status.malformed.inc();
                            let count = status.malformed.get();
                            if count <= PARSE_ERRORS_LOGGED || count.is_multiple_of(PARSE_ERROR_LOG_EVERY) {
                                let excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
                                tracing::warn!(feed = status.name(), parse_errors = count, %error, frame = %excerpt, "skipping a frame that does not parse");
                            }
                            continue;
                        }
                        let mut batch = FeedBatch::default();
                        for event in events.drain(..) {
                            match event {
                                FeedEvent::Trade(trade) => {
                                    if let Some(id) = trade.trade_id.filter(|_| spec.provider.sequential_trade_ids()) {
                                        let last = last_trade_ids.insert(trade.symbol.clone(), id);
                                        if last.is_some_and(|last| id > last + 1) {
                                            status.gaps.fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                    status.set_lag_ms((trade.receive_ts - trade.exchange_ts) / 1_000_000);
                                    batch.trades.push(trade);
                                }
                                FeedEvent::Quote(quote) => {
                                    status.quotes.fetch_add(1, Ordering::Relaxed);
                                    batch.quotes.push(quote);
                                }
                                FeedEvent::Ack => status.set_state(FeedState::Live),
                                FeedEvent::Heartbeat => {}
                                FeedEvent::ServerShutdown => {
                                    ended = Some(Ended::Failed(Disconnect::VenueShutdown, "the venue announced a shutdown".into()));
                                }
                                FeedEvent::ProviderError { code, message } => {
                                    tracing::warn!(feed = status.name(), ?code, %message, "the venue reported an error");
                                    let text = match code {
                                        Some(code) => format!("venue error {code}: {message}"),
                                        None => format!("venue error: {message}"),
                                    };
                                    status.set_error(text.clone());
                                    venue_error = Some(text);
                                }
                            }
                        }
                        if !batch.trades.is_empty() || !batch.quotes.is_empty() {
                            if status.state() == FeedState::Subscribing {
                                status.set_state(FeedState::Live);
                            }
                            status.rows.inc_by(batch.trades.len() as u64);
                            yield batch;
                        }
                    }
                    // A WebSocket close (bounded: a venue that does not answer is not waited
                    // for).
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
                    if let Some(recorder) = &settings.recorder {
                        let reason = match &ended {
                            Some(Ended::Failed(_, reason)) => reason.clone(),
                            _ => "stopped".to_string(),
                        };
                        let _ = recorder.send(record(Direction::Close, Some(reason), None)).await;
                    }
                    match (ended, venue_error) {
                        (Some(Ended::Failed(_, reason)), Some(error)) => {
                            Ended::Failed(Disconnect::VenueShutdown, format!("{reason} (after {error})"))
                        }
                        (ended, _) => ended.unwrap_or(Ended::Cancelled),
                    }
                }
            };
            let (kind, reason) = match ended {
                Ended::Cancelled => return,
                Ended::Failed(kind, reason) => {
                    status.disconnected(kind);
                    (kind, reason)
                }
            };
            status.set_error(reason.clone());
            let retry = backoff.next(started.elapsed());
            let state = match retry {
                Retry::Backoff(_) => FeedState::Backoff,
                Retry::CircuitOpen(_) => {
                    status.circuit_opens.fetch_add(1, Ordering::Relaxed);
                    FeedState::CircuitOpen
                }
            };
            status.set_state(state);
            if kind == Disconnect::ConnectFailed {
                tracing::warn!(feed = status.name(), %reason, delay = ?retry.delay(), failures = backoff.failures(), "cannot connect; retrying");
            } else {
                tracing::warn!(feed = status.name(), %reason, delay = ?retry.delay(), failures = backoff.failures(), "feed disconnected; retrying");
            }
            tokio::select! {
                _ = settings.cancel.cancelled() => return,
                _ = tokio::time::sleep(retry.delay()) => {}
            }
        }
    }
}
