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

mod connection;
mod options;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::feeds::Provider;
use crate::model::Trade;
use crate::record::{Direction, FrameRecord};

pub use connection::MAX_CLIENT_MESSAGE_BYTES;
pub use options::{MockCounts, MockError, MockFaults, MockOptions, MockStats};

use connection::{Connection, Session};

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
pub(super) enum RecordedFrame {
    Trade { trade_id: u64, trade: Trade },
    Raw { recv_ns: i64, text: String },
}

impl RecordedFrame {
    /// The time the frame is paced by.
    pub(super) fn time(&self) -> i64 {
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
pub(super) fn pass_shift(frames: &[RecordedFrame]) -> (i64, u64) {
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
