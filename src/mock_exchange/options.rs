//! How the mock exchange serves (pace, repetition, the shared tape), the faults it injects, and
//! what it counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::feeds::Provider;
use crate::feeds::venue::BadRequest;
use crate::replay::Speed;

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
