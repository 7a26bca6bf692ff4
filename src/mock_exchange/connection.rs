//! One client connection: the venue's protocol session, pacing by the recording's times, the
//! shared tape, and the injected faults.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::options::{MockError, MockOptions, MockStats};
use super::{RecordedFrame, pass_shift};
use crate::feeds::Provider;
use crate::feeds::venue::{ServedTrade, ServerSession, VenueServer};
use crate::replay::Speed;

/// Trade frames written before a flush when frames are due back to back (at full speed): one
/// socket write per burst rather than per frame, small enough to keep a burst's latency low.
const FRAMES_PER_FLUSH: usize = 64;

/// Largest frame or message a client may send (subscriptions are a few hundred bytes).
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 << 10;

/// The read buffer for what clients send (a larger message still arrives whole: the buffer
/// grows for it).
const CLIENT_READ_BUFFER_BYTES: usize = 4 << 10;

/// How long a dropped connection waits for its client to close before letting go.
const DROP_LINGER: Duration = Duration::from_secs(5);

/// The garbage frames injected by [`MockFaults::garbage_every`], in turn: text no provider
/// parses (truncated JSON, not JSON, control characters).
const GARBAGE: [&str; 3] = [
    r#"{"stream":"btcusdt@trade","data":{"e":"trade","p":"#,
    "garbage: this is not a market-data frame",
    "\u{0}\u{1}\u{2}\u{7f}",
];

/// One connection's protocol: the venue's side of it, and what every venue shares.
pub(super) struct Session {
    server: Box<dyn VenueServer>,
    shared: ServerSession,
}

impl Session {
    pub(super) fn new(provider: Provider, reject_auth: bool) -> Self {
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
    pub(super) fn frame_text(
        &mut self,
        frame: &RecordedFrame,
        time_offset: i64,
        id_offset: u64,
    ) -> String {
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
pub(super) struct Connection {
    pub(super) frames: Arc<Vec<RecordedFrame>>,
    pub(super) options: MockOptions,
    pub(super) stats: Arc<MockStats>,
    /// The shared tape's position (`shared_tape`): the next frame, over all passes.
    pub(super) tape: Arc<AtomicU64>,
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
    pub(super) async fn serve(
        self,
        stream: TcpStream,
        cancel: CancellationToken,
    ) -> Result<(), MockError> {
        let Connection {
            frames,
            options,
            stats,
            tape,
        } = self;
        let _ = stream.set_nodelay(true);
        // Clients send little (subscriptions, pings), and tungstenite zeroes the read buffer's
        // free room before every read: a small buffer keeps polling for them cheap.
        let config = WebSocketConfig::default()
            .read_buffer_size(CLIENT_READ_BUFFER_BYTES)
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
