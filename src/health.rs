//! The health of every source (replay files, live feeds, the recovery): the registry of
//! [`FeedStatus`]es, each a source's state and counters, updated by the source and by the
//! analytics core, read by `GET /v1/feeds` and `GET /metrics`. It drives no socket and reads no
//! file, so the API can show it without knowing how sources work.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use crate::metrics::{DisconnectLabels, FeedLabels, Metrics};
use crate::model::{FeedId, to_millis, wall_clock_now};

/// The lifecycle of a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedState {
    /// Registered, not yet producing.
    Starting,
    /// Producing trades.
    Running,
    /// A replay that reached its end; its trades are all applied.
    Finished,
    /// Stopped by an error it cannot recover from (see `error`).
    Failed,
    /// A live feed opening its connection.
    Connecting,
    /// Connected, waiting for the venue to acknowledge the subscription.
    Subscribing,
    /// Connected and subscribed.
    Live,
    /// Waiting before the next connection attempt.
    Backoff,
    /// Too many consecutive failures: waiting longer before trying again.
    CircuitOpen,
}

impl FeedState {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => FeedState::Starting,
            1 => FeedState::Running,
            2 => FeedState::Finished,
            4 => FeedState::Connecting,
            5 => FeedState::Subscribing,
            6 => FeedState::Live,
            7 => FeedState::Backoff,
            8 => FeedState::CircuitOpen,
            _ => FeedState::Failed,
        }
    }

    /// The state's name, as `/v1/feeds` and the `state` label say it.
    pub fn name(self) -> &'static str {
        match self {
            FeedState::Starting => "starting",
            FeedState::Running => "running",
            FeedState::Finished => "finished",
            FeedState::Failed => "failed",
            FeedState::Connecting => "connecting",
            FeedState::Subscribing => "subscribing",
            FeedState::Live => "live",
            FeedState::Backoff => "backoff",
            FeedState::CircuitOpen => "circuit_open",
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            FeedState::Starting => 0,
            FeedState::Running => 1,
            FeedState::Finished => 2,
            FeedState::Failed => 3,
            FeedState::Connecting => 4,
            FeedState::Subscribing => 5,
            FeedState::Live => 6,
            FeedState::Backoff => 7,
            FeedState::CircuitOpen => 8,
        }
    }
}

/// Why a live feed's connection ended, or never opened: the `reason` of its disconnect counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The connection could not be opened (refused, timed out, failed handshake).
    ConnectFailed,
    /// The venue closed the connection (a close frame, or the end of the stream).
    Closed,
    /// The connection was dropped without a closing handshake (reset, or closed mid-message).
    Reset,
    /// No frame for longer than the feed's stale limit.
    Stale,
    /// A frame or message over the size limit.
    TooLarge,
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// Any other WebSocket protocol violation.
    Protocol,
    /// Any other I/O error.
    Io,
    /// The venue announced a shutdown or rejected us (an error followed by a close).
    VenueShutdown,
    /// A subscription or ping could not be sent.
    SendFailed,
}

impl Disconnect {
    /// Every reason, in the order of the counters.
    pub const ALL: [Disconnect; 10] = [
        Disconnect::ConnectFailed,
        Disconnect::Closed,
        Disconnect::Reset,
        Disconnect::Stale,
        Disconnect::TooLarge,
        Disconnect::InvalidUtf8,
        Disconnect::Protocol,
        Disconnect::Io,
        Disconnect::VenueShutdown,
        Disconnect::SendFailed,
    ];

    /// The reason's name in `/v1/feeds` and `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Disconnect::ConnectFailed => "connect_failed",
            Disconnect::Closed => "closed",
            Disconnect::Reset => "reset",
            Disconnect::Stale => "stale",
            Disconnect::TooLarge => "too_large",
            Disconnect::InvalidUtf8 => "invalid_utf8",
            Disconnect::Protocol => "protocol",
            Disconnect::Io => "io",
            Disconnect::VenueShutdown => "venue_shutdown",
            Disconnect::SendFailed => "send_failed",
        }
    }

    fn index(self) -> usize {
        Disconnect::ALL
            .iter()
            .position(|&reason| reason == self)
            .unwrap_or(0)
    }
}

/// What a feed is, for display: kind, source and format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedDescription {
    /// `replay` (and, with live connectors, the provider's name).
    pub kind: String,
    /// The file path, or `embedded:<name>` for the bundled sample.
    pub source: String,
    /// `csv`, `jsonl` or `parquet`.
    pub format: String,
}

/// A feed's state and counters. Shared: the source, the core and the API hold it.
#[derive(Debug)]
pub struct FeedStatus {
    id: FeedId,
    name: String,
    description: FeedDescription,
    state: AtomicU8,
    error: Mutex<Option<String>>,
    /// Rows (or frames) read.
    pub rows: Counter,
    /// Trades applied by the core.
    pub trades: Counter,
    /// Rows that did not parse.
    pub malformed: Counter,
    /// Trades dropped as late.
    pub late: Counter,
    /// Trades dropped as duplicates.
    pub duplicates: Counter,
    /// Trades applied whose id was older than the duplicate filter's horizon.
    pub ids_beyond_horizon: Counter,
    /// Bytes (or, for Parquet, rows) of the current pass read so far.
    pub progress_done: AtomicU64,
    /// Total bytes (or rows) of one pass.
    pub progress_total: AtomicU64,
    /// Completed passes over the file (a looping replay starts a new pass at the end).
    pub passes: AtomicU64,
    /// Live feeds: reconnections after the first connection.
    pub reconnects: AtomicU64,
    /// Live feeds: frames received.
    pub frames: AtomicU64,
    /// Live feeds: quotes received.
    pub quotes: AtomicU64,
    /// Live feeds: gaps in the venue's trade ids or sequence numbers.
    pub gaps: AtomicU64,
    /// Live feeds: times the circuit breaker opened.
    pub circuit_opens: AtomicU64,
    /// Live feeds: ended connections, by [`Disconnect`] (in `Disconnect::ALL`'s order).
    disconnects: Vec<Counter>,
    /// The feed's short name: its label in `/metrics`.
    metrics_label: String,
    /// One gauge per state this kind of feed has: 1 for the current state.
    state_gauges: Vec<(FeedState, prometheus_client::metrics::gauge::Gauge)>,
    /// Live feeds: the latest lag, seconds.
    lag_gauge: prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>,
    /// Live feeds: reconnections, as a metric.
    reconnect_counter: Counter,
    connected_ms: AtomicI64,
    last_frame_ms: AtomicI64,
    lag_ms: AtomicI64,
    started_ms: AtomicI64,
    ended_ms: AtomicI64,
}

impl FeedStatus {
    /// The feed's id.
    pub fn id(&self) -> FeedId {
        self.id
    }

    /// The feed's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The feed's short name, its `feed` label in `/metrics`: the provider of a live feed, the
    /// file name of a replay (`-2`, `-3`, … when several share one).
    pub fn metrics_label(&self) -> &str {
        &self.metrics_label
    }

    /// Wall-clock milliseconds since the feed started running (0 before).
    pub fn running_for_ms(&self) -> i64 {
        match self.started_ms.load(Ordering::Relaxed) {
            0 => 0,
            started => (to_millis(wall_clock_now()) - started).max(0),
        }
    }

    /// Counts a reconnection (a live feed's connection after its first).
    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        self.reconnect_counter.inc();
    }

    /// The feed's state.
    pub fn state(&self) -> FeedState {
        FeedState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Whether the source has delivered data (a row, a trade or a quote) or has ended: what
    /// `/readyz` waits for.
    pub fn has_delivered(&self) -> bool {
        self.rows.get() > 0
            || self.quotes.load(Ordering::Relaxed) > 0
            || matches!(self.state(), FeedState::Finished | FeedState::Failed)
    }

    /// Sets a live feed's connection state.
    pub fn set_state(&self, state: FeedState) {
        if state == FeedState::Live {
            self.connected_ms
                .store(to_millis(wall_clock_now()), Ordering::Relaxed);
        }
        let before = self.store_state(state);
        if before == state {
            return;
        }
        // The life of a live feed, at INFO (backoff and the circuit breaker are logged with
        // their reason by the connector).
        match state {
            FeedState::Connecting => tracing::info!(feed = self.name(), "connecting"),
            FeedState::Subscribing => tracing::info!(feed = self.name(), "connected; subscribing"),
            FeedState::Live => tracing::info!(feed = self.name(), "subscribed; live"),
            _ => {}
        }
    }

    /// Records a frame received at `receive_ms` (wall clock).
    pub fn saw_frame(&self, receive_ms: i64) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.last_frame_ms.store(receive_ms, Ordering::Relaxed);
    }

    /// Counts a connection that ended (or never opened) for `reason`.
    pub fn disconnected(&self, reason: Disconnect) {
        if let Some(counter) = self.disconnects.get(reason.index()) {
            counter.inc();
        }
    }

    /// Connections ended for `reason` so far.
    pub fn disconnects(&self, reason: Disconnect) -> u64 {
        self.disconnects.get(reason.index()).map_or(0, Counter::get)
    }

    /// Records the latest exchange-to-receive lag, milliseconds.
    pub fn set_lag_ms(&self, lag_ms: i64) {
        self.lag_ms.store(lag_ms, Ordering::Relaxed);
        self.lag_gauge.set(lag_ms as f64 / 1000.0);
    }

    /// Marks the feed running.
    pub fn set_running(&self) {
        self.started_ms
            .store(to_millis(wall_clock_now()), Ordering::Relaxed);
        self.store_state(FeedState::Running);
    }

    /// Stores `state`; returns the one before. The state gauges follow.
    fn store_state(&self, state: FeedState) -> FeedState {
        let before = FeedState::from_u8(self.state.swap(state.as_u8(), Ordering::AcqRel));
        if before != state {
            for (gauge_state, gauge) in &self.state_gauges {
                gauge.set(i64::from(*gauge_state == state));
            }
        }
        before
    }

    /// Marks the feed finished (all its trades applied).
    pub fn set_finished(&self) {
        self.ended_ms
            .store(to_millis(wall_clock_now()), Ordering::Relaxed);
        self.store_state(FeedState::Finished);
    }

    /// Records the latest error of a feed that goes on (a live feed's last disconnect reason).
    pub fn set_error(&self, message: String) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
    }

    /// Marks the feed failed with the error's message.
    pub fn set_failed(&self, message: String) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
        self.ended_ms
            .store(to_millis(wall_clock_now()), Ordering::Relaxed);
        self.store_state(FeedState::Failed);
    }

    /// A point-in-time view for the API.
    pub fn view(&self) -> FeedView {
        let done = self.progress_done.load(Ordering::Relaxed);
        let total = self.progress_total.load(Ordering::Relaxed);
        let state = self.state();
        let fraction = match state {
            FeedState::Finished => 1.0,
            _ if total == 0 => 0.0,
            _ => (done as f64 / total as f64).min(1.0),
        };
        let millis = |cell: &AtomicI64| Some(cell.load(Ordering::Relaxed)).filter(|&v| v != 0);
        FeedView {
            id: self.id.0,
            name: self.name.clone(),
            metrics_label: self.metrics_label.clone(),
            kind: self.description.kind.clone(),
            source: self.description.source.clone(),
            format: self.description.format.clone(),
            state,
            error: self.error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            rows_read: self.rows.get(),
            trades: self.trades.get(),
            malformed: self.malformed.get(),
            late: self.late.get(),
            duplicates: self.duplicates.get(),
            ids_beyond_horizon: self.ids_beyond_horizon.get(),
            progress: (self.description.kind == "replay").then(|| ReplayProgress {
                done,
                total,
                fraction,
                passes: self.passes.load(Ordering::Relaxed),
            }),
            started_ms: millis(&self.started_ms),
            ended_ms: millis(&self.ended_ms),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            quotes: self.quotes.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            disconnects: Disconnect::ALL
                .iter()
                .map(|&reason| (reason.name(), self.disconnects(reason)))
                .filter(|&(_, count)| count > 0)
                .collect(),
            circuit_opens: self.circuit_opens.load(Ordering::Relaxed),
            connected_since_ms: millis(&self.connected_ms),
            last_frame_age_ms: millis(&self.last_frame_ms)
                .map(|last| (to_millis(wall_clock_now()) - last).max(0)),
            lag_ms: millis(&self.lag_ms).filter(|_| self.frames.load(Ordering::Relaxed) > 0),
        }
    }
}

/// How far a replay has read.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayProgress {
    /// Bytes (CSV, JSON lines) or rows (Parquet) of the current pass read.
    pub done: u64,
    /// Bytes or rows in one pass.
    pub total: u64,
    /// done / total, 1 once finished.
    pub fraction: f64,
    /// Completed passes (looping replays).
    pub passes: u64,
}

/// A feed as `GET /v1/feeds` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Feed)]
pub struct FeedView {
    /// The feed's id.
    pub id: u16,
    /// The feed's name.
    pub name: String,
    /// Its short name: the `feed` label of its series in `/metrics`.
    pub metrics_label: String,
    /// What kind of feed.
    pub kind: String,
    /// Where it reads from.
    pub source: String,
    /// The input format.
    pub format: String,
    /// Lifecycle state.
    pub state: FeedState,
    /// The error that failed it, or a live feed's latest disconnect reason.
    pub error: Option<String>,
    /// Rows read.
    pub rows_read: u64,
    /// Trades applied.
    pub trades: u64,
    /// Malformed rows skipped.
    pub malformed: u64,
    /// Late trades dropped.
    pub late: u64,
    /// Duplicate trades dropped.
    pub duplicates: u64,
    /// Trades applied whose id was older than every id the duplicate filter remembers for
    /// their feed and symbol (`--dedup-ids`): a resend that old would not be caught.
    pub ids_beyond_horizon: u64,
    /// Replay progress (replays only).
    pub progress: Option<ReplayProgress>,
    /// When it started, wall clock epoch milliseconds.
    pub started_ms: Option<i64>,
    /// When it finished or failed.
    pub ended_ms: Option<i64>,
    /// Live feeds: reconnections.
    pub reconnects: u64,
    /// Live feeds: frames received.
    pub frames: u64,
    /// Live feeds: quotes received.
    pub quotes: u64,
    /// Live feeds: sequence or trade-id gaps.
    pub gaps: u64,
    /// Live feeds: ended connections by reason (only the reasons seen): `connect_failed`,
    /// `closed`, `reset`, `stale`, `too_large`, `invalid_utf8`, `protocol`, `io`,
    /// `venue_shutdown`, `send_failed`.
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    pub disconnects: std::collections::BTreeMap<&'static str, u64>,
    /// Live feeds: times the circuit breaker opened.
    pub circuit_opens: u64,
    /// Live feeds: when the current connection went live (wall clock, epoch ms).
    pub connected_since_ms: Option<i64>,
    /// Live feeds: milliseconds since the last frame.
    pub last_frame_age_ms: Option<i64>,
    /// Live feeds: receive time − exchange time of the latest trade, milliseconds.
    pub lag_ms: Option<i64>,
}

/// Every feed of the service, by [`FeedId`].
#[derive(Debug, Default)]
pub struct FeedRegistry {
    feeds: RwLock<Vec<Arc<FeedStatus>>>,
}

impl FeedRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a feed; its counters are also exported in `metrics` under its name.
    pub fn register(
        &self,
        name: String,
        description: FeedDescription,
        metrics: &Metrics,
    ) -> Arc<FeedStatus> {
        let mut feeds = self.feeds.write().unwrap_or_else(|p| p.into_inner());
        let id = FeedId(u16::try_from(feeds.len()).unwrap_or(u16::MAX));
        let base = if description.kind == "replay" {
            std::path::Path::new(&description.source)
                .file_name()
                .map_or_else(
                    || description.source.clone(),
                    |n| n.to_string_lossy().into_owned(),
                )
        } else {
            description.kind.clone()
        };
        let taken = feeds
            .iter()
            .filter(|feed| {
                feed.metrics_label == base || feed.metrics_label.starts_with(&format!("{base}-"))
            })
            .count();
        let metrics_label = if taken == 0 {
            base
        } else {
            format!("{base}-{}", taken + 1)
        };
        let labels = FeedLabels {
            feed: metrics_label.clone(),
        };
        let states: &[FeedState] = if description.kind == "replay" {
            &[
                FeedState::Starting,
                FeedState::Running,
                FeedState::Finished,
                FeedState::Failed,
            ]
        } else {
            &[
                FeedState::Starting,
                FeedState::Running,
                FeedState::Connecting,
                FeedState::Subscribing,
                FeedState::Live,
                FeedState::Backoff,
                FeedState::CircuitOpen,
            ]
        };
        let state_gauges = states
            .iter()
            .map(|&state| {
                let gauge = metrics
                    .feed_state
                    .get_or_create(&crate::metrics::FeedStateLabels {
                        feed: metrics_label.clone(),
                        state: state.name().to_string(),
                    })
                    .clone();
                gauge.set(i64::from(state == FeedState::Starting));
                (state, gauge)
            })
            .collect();
        let live = description.kind != "replay";
        // Replays have no connections: no disconnect counters in `/metrics` for them.
        let disconnects = if description.kind == "replay" {
            Vec::new()
        } else {
            Disconnect::ALL
                .iter()
                .map(|reason| {
                    let labels = DisconnectLabels {
                        feed: labels.feed.clone(),
                        reason: reason.name().to_string(),
                    };
                    metrics.feed_disconnects.get_or_create(&labels).clone()
                })
                .collect()
        };
        let status = Arc::new(FeedStatus {
            id,
            name,
            description,
            state: AtomicU8::new(FeedState::Starting.as_u8()),
            error: Mutex::new(None),
            rows: metrics.feed_rows.get_or_create(&labels).clone(),
            trades: metrics.feed_trades.get_or_create(&labels).clone(),
            malformed: metrics.feed_malformed.get_or_create(&labels).clone(),
            late: metrics.feed_late.get_or_create(&labels).clone(),
            duplicates: metrics.feed_duplicates.get_or_create(&labels).clone(),
            ids_beyond_horizon: metrics
                .feed_ids_beyond_horizon
                .get_or_create(&labels)
                .clone(),
            progress_done: AtomicU64::new(0),
            progress_total: AtomicU64::new(0),
            passes: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            quotes: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            circuit_opens: AtomicU64::new(0),
            disconnects,
            state_gauges,
            lag_gauge: if live {
                metrics.feed_lag.get_or_create(&labels).clone()
            } else {
                Default::default()
            },
            reconnect_counter: if live {
                metrics.feed_reconnects.get_or_create(&labels).clone()
            } else {
                Counter::default()
            },
            metrics_label,
            connected_ms: AtomicI64::new(0),
            last_frame_ms: AtomicI64::new(0),
            lag_ms: AtomicI64::new(0),
            started_ms: AtomicI64::new(0),
            ended_ms: AtomicI64::new(0),
        });
        feeds.push(Arc::clone(&status));
        status
    }

    /// The feed with `id`.
    pub fn get(&self, id: FeedId) -> Option<Arc<FeedStatus>> {
        self.feeds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id.index())
            .cloned()
    }

    /// Every feed, in registration order.
    pub fn all(&self) -> Vec<Arc<FeedStatus>> {
        self.feeds.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
