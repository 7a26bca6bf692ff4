//! The live fan-out: what the live stream carries ([`StreamEvent`]), how the analytics task
//! gathers snapshots into one message per period ([`StreamBatch`]), and how each client follows
//! the broadcast ([`forward`]): filtered, throttled and conflated per symbol into the client's own
//! bounded queue, so the broadcast never waits for a client. Transport-neutral: the SSE handler
//! (`api/stream.rs`) encodes what a client's queue holds.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::alerts::Alert;
use crate::analytics::SymbolSnapshot;
use crate::analytics::snapshot::SnapshotStore;
use crate::metrics::Metrics;
use crate::model::Symbol;

/// Messages (alerts, and publications of changed snapshots) the live stream buffers for its
/// slowest client's forwarding task before that task skips ahead (and resynchronizes from the
/// latest snapshots). Small: each publication can hold a snapshot of every symbol.
pub const STREAM_CAPACITY: usize = 256;

/// What the live stream carries.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// An alert, as it fired.
    Alert(Arc<Alert>),
    /// The snapshots of one publication (clients throttle these per symbol): one message per
    /// publication, so a publication wakes each client once however many symbols changed.
    Stats(Arc<[Arc<SymbolSnapshot>]>),
}

/// Least time between two publications on the live stream: each wakes every stream client, so
/// at full replay speed (thousands of publications a second) they are gathered, the latest
/// snapshot per symbol, into one message per period.
pub const STREAM_BATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// The snapshots gathered for the live stream since its last message, the latest per symbol.
#[derive(Debug)]
pub struct StreamBatch {
    latest: HashMap<Symbol, Arc<SymbolSnapshot>>,
    sent_at: tokio::time::Instant,
}

impl Default for StreamBatch {
    fn default() -> Self {
        StreamBatch {
            latest: HashMap::new(),
            sent_at: tokio::time::Instant::now(),
        }
    }
}

impl StreamBatch {
    /// When the gathered snapshots are due, if any are waiting.
    pub fn due(&self) -> Option<tokio::time::Instant> {
        (!self.latest.is_empty()).then_some(self.sent_at + STREAM_BATCH_EVERY)
    }

    /// Gathers `snapshot`, replacing any earlier one of its symbol.
    pub fn add(&mut self, snapshot: &Arc<SymbolSnapshot>) {
        self.latest
            .insert(snapshot.symbol.clone(), Arc::clone(snapshot));
    }

    /// Sends the gathered snapshots as one message.
    pub fn send(&mut self, stream: &broadcast::Sender<StreamEvent>) {
        self.sent_at = tokio::time::Instant::now();
        if self.latest.is_empty() {
            return;
        }
        let batch: Arc<[Arc<SymbolSnapshot>]> =
            self.latest.drain().map(|(_, snapshot)| snapshot).collect();
        let _ = stream.send(StreamEvent::Stats(batch));
    }
}

/// An event waiting in a client's queue: shared with every other client until it is encoded.
#[derive(Debug)]
pub enum Outgoing {
    /// An alert.
    Alert(Arc<Alert>),
    /// A symbol's latest snapshot.
    Stats(Arc<SymbolSnapshot>),
    /// Events this client missed.
    Lagged(u64),
}

/// What a client's forwarding task reads besides the broadcast.
#[derive(Debug, Clone)]
pub struct Client {
    /// Least time between two `stats` events of one symbol.
    pub throttle: Duration,
    /// Ends the stream when the service stops.
    pub stopping: CancellationToken,
    /// Where lagged events are counted.
    pub metrics: Arc<Metrics>,
    /// Every symbol's latest snapshot, for a client that fell behind the broadcast.
    pub snapshots: Arc<SnapshotStore>,
}

/// What one client asked for.
pub struct Filter {
    /// Alerts wanted.
    pub alerts: bool,
    /// Stats wanted.
    pub stats: bool,
    /// Whether a symbol is watched.
    pub watched: Box<dyn Fn(&str) -> bool + Send>,
}

/// What became of an event offered to a client's queue.
enum Offer {
    Queued,
    /// The queue is full: the event comes back.
    Full(Outgoing),
    /// The client is gone.
    Closed,
}

/// Follows the broadcast for one client until it disconnects or the service stops.
///
/// Stats are conflated per symbol: one that cannot be queued (or is held back by the throttle)
/// waits in `pending`, replaced by any newer one of its symbol, so a stalled client holds at most
/// one snapshot per symbol besides its queue. Alerts that do not fit are dropped. Both are counted
/// as lagged.
pub async fn forward(
    client: Client,
    mut receiver: broadcast::Receiver<StreamEvent>,
    queue: mpsc::Sender<Outgoing>,
    filter: Filter,
) {
    let throttle = client.throttle;
    let mut last_sent: HashMap<Symbol, Instant> = HashMap::new();
    let mut pending: HashMap<Symbol, Arc<SymbolSnapshot>> = HashMap::new();
    let mut flush = tokio::time::interval((throttle / 4).max(Duration::from_millis(5)));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let offer = |event: Outgoing| match queue.try_send(event) {
        Ok(()) => Offer::Queued,
        Err(TrySendError::Full(event)) => Offer::Full(event),
        Err(TrySendError::Closed(_)) => Offer::Closed,
    };
    loop {
        let open = tokio::select! {
            _ = client.stopping.cancelled() => false,
            _ = queue.closed() => false,
            message = receiver.recv() => match message {
                Ok(StreamEvent::Alert(alert)) => {
                    if filter.alerts && (filter.watched)(alert.symbol.as_str()) {
                        match offer(Outgoing::Alert(alert)) {
                            Offer::Queued => true,
                            Offer::Full(_) => {
                                client.metrics.stream_lagged.inc();
                                true
                            }
                            Offer::Closed => false,
                        }
                    } else {
                        true
                    }
                }
                Ok(StreamEvent::Stats(published)) => {
                    let mut open = true;
                    let now = Instant::now();
                    for snapshot in published.iter().filter(|_| filter.stats) {
                        if !(filter.watched)(snapshot.symbol.as_str()) {
                            continue;
                        }
                        let due = last_sent
                            .get(&snapshot.symbol)
                            .is_none_or(|sent| now.duration_since(*sent) >= throttle);
                        if !due {
                            pending.insert(snapshot.symbol.clone(), Arc::clone(snapshot));
                            continue;
                        }
                        match offer(Outgoing::Stats(Arc::clone(snapshot))) {
                            Offer::Queued => {
                                last_sent.insert(snapshot.symbol.clone(), now);
                                pending.remove(&snapshot.symbol);
                            }
                            Offer::Full(_) => {
                                client.metrics.stream_lagged.inc();
                                pending.insert(snapshot.symbol.clone(), Arc::clone(snapshot));
                            }
                            Offer::Closed => open = false,
                        }
                    }
                    open
                }
                Err(RecvError::Lagged(missed)) => {
                    // Only if this task itself falls behind the broadcast: it skips ahead, and
                    // every watched symbol's latest snapshot becomes pending, so the client still
                    // ends up with the current state of each.
                    client.metrics.stream_lagged.inc_by(missed);
                    if filter.stats {
                        let (latest, _) = client.snapshots.all();
                        for snapshot in latest {
                            if (filter.watched)(snapshot.symbol.as_str()) {
                                pending.insert(snapshot.symbol.clone(), snapshot);
                            }
                        }
                    }
                    !matches!(offer(Outgoing::Lagged(missed)), Offer::Closed)
                }
                Err(RecvError::Closed) => false,
            },
            _ = flush.tick(), if !pending.is_empty() => {
                let now = Instant::now();
                let due: Vec<Symbol> = pending
                    .keys()
                    .filter(|s| last_sent.get(*s).is_none_or(|sent| now.duration_since(*sent) >= throttle))
                    .cloned()
                    .collect();
                let mut open = true;
                for symbol in due {
                    let Some(snapshot) = pending.remove(&symbol) else { continue };
                    match offer(Outgoing::Stats(snapshot)) {
                        Offer::Queued => {
                            last_sent.insert(symbol, now);
                        }
                        Offer::Full(Outgoing::Stats(snapshot)) => {
                            // Still full: it waits (and may be superseded) until the client reads.
                            pending.insert(symbol, snapshot);
                            break;
                        }
                        Offer::Full(_) => break,
                        Offer::Closed => {
                            open = false;
                            break;
                        }
                    }
                }
                open
            }
        };
        if !open {
            break;
        }
    }
}
