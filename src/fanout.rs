//! The live fan-out: what the live stream carries ([`StreamEvent`]), how the analytics task
//! gathers snapshots into one message per period ([`StreamBatch`]), and how each client follows
//! the broadcast ([`forward`]): filtered, throttled and conflated per symbol into the client's own
//! bounded queue, so the broadcast never waits for a client; alerts are taken from the log of
//! recent alerts after the client's [`Cursor`], so none is lost to a slow or reconnecting client.
//! Transport-neutral: the SSE and WebSocket handlers (`api/stream.rs`, `api/stream_ws.rs`) encode
//! what a client's queue holds.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::alerts::Alert;
use crate::alerts::sink::AlertLog;
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
    /// Statistics of symbols another cluster node owns, as that node encoded them (a scale-out
    /// node's stream carries every symbol, as one process's does).
    Remote(Arc<[Arc<RemoteStats>]>),
}

/// A symbol's statistics as another cluster node encoded them: the body of its
/// `GET /v1/symbols/{s}/stats`, passed on as it came.
#[derive(Debug)]
pub struct RemoteStats {
    /// The symbol.
    pub symbol: Symbol,
    /// The statistics, as JSON.
    pub body: Box<serde_json::value::RawValue>,
}

/// A symbol's statistics on the live stream: a snapshot of this process's core, or what another
/// node sent.
#[derive(Debug, Clone)]
pub enum Stats {
    /// This process's snapshot (encoded when the client reads it).
    Local(Arc<SymbolSnapshot>),
    /// Another node's encoded statistics.
    Remote(Arc<RemoteStats>),
}

impl Stats {
    /// The symbol.
    pub fn symbol(&self) -> &Symbol {
        match self {
            Stats::Local(snapshot) => &snapshot.symbol,
            Stats::Remote(remote) => &remote.symbol,
        }
    }
}

/// The latest statistics other cluster nodes sent, per symbol: what a client that starts or
/// resumes is brought up to date with for the symbols this node does not own. Empty on a single
/// node.
#[derive(Debug, Default)]
pub struct RemoteLatest {
    latest: Mutex<HashMap<Symbol, Arc<RemoteStats>>>,
}

impl RemoteLatest {
    /// Keeps `received` as the latest of their symbols.
    pub fn update(&self, received: &[Arc<RemoteStats>]) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        for stats in received {
            latest.insert(stats.symbol.clone(), Arc::clone(stats));
        }
    }

    /// The latest statistics of every symbol received.
    pub fn all(&self) -> Vec<Arc<RemoteStats>> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest.values().cloned().collect()
    }
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

/// Where a client's stream stands: the service's run ([`AlertLog::run`]) and the id of the last
/// alert the client has had or passed over (not watched). It is the SSE `id:` of every event (and
/// the `id` of every WebSocket message); a client that reconnects with it (`Last-Event-ID`) gets
/// the alerts after it that the log still holds. Written `RUN-ALERT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The run of the service that issued it.
    pub run: u64,
    /// The last alert id passed.
    pub alert: u64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.run, self.alert)
    }
}

/// Why a stream request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamRequestError {
    /// A resume point that this service never issued.
    #[error("last event id {0:?} is not RUN-ALERT (two integers), as this service sends them")]
    Cursor(String),
    /// No symbols, or too many.
    #[error("symbols must list 1 to {MAX_STREAM_SYMBOLS} symbols")]
    Symbols,
    /// An event kind other than `alert` or `stats`.
    #[error("unknown event kind {0:?}; expected alert, stats")]
    EventKind(String),
}

impl std::str::FromStr for Cursor {
    type Err = StreamRequestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || StreamRequestError::Cursor(text.chars().take(64).collect());
        let (run, alert) = text.trim().split_once('-').ok_or_else(bad)?;
        Ok(Cursor {
            run: run.parse().map_err(|_| bad())?,
            alert: alert.parse().map_err(|_| bad())?,
        })
    }
}

impl Cursor {
    /// The first alert id after which a client resuming from `resumed` (or a new one, `None`)
    /// is served from `log`: the alerts of this run after its cursor; every alert the log holds
    /// when the cursor is from an earlier run (ids start again at 1 in each run); none before it
    /// connected for a new client.
    pub fn start(resumed: Option<Cursor>, log: &AlertLog) -> u64 {
        match resumed {
            Some(cursor) if cursor.run == log.run() => cursor.alert.min(log.last_id()),
            Some(_) => 0,
            None => log.last_id(),
        }
    }
}

/// Most symbols one stream may filter on.
pub const MAX_STREAM_SYMBOLS: usize = 1_000;

/// What one client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Alerts wanted.
    pub alerts: bool,
    /// Stats wanted.
    pub stats: bool,
    /// The symbols watched; every symbol when `None`.
    pub symbols: Option<BTreeSet<String>>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            alerts: true,
            stats: true,
            symbols: None,
        }
    }
}

impl Filter {
    /// The filter of a request's `symbols` and `events` lists (comma-separated; absent: all).
    pub fn parse(
        symbols: Option<&str>,
        events: Option<&str>,
    ) -> Result<Filter, StreamRequestError> {
        let symbols = symbols
            .map(|list| Filter::symbols(list.split(',')))
            .transpose()?;
        let (alerts, stats) = match events {
            None => (true, true),
            Some(list) => Filter::events(list.split(','))?,
        };
        Ok(Filter {
            alerts,
            stats,
            symbols,
        })
    }

    /// A symbol set from its names (blank ones skipped): 1 to [`MAX_STREAM_SYMBOLS`].
    pub fn symbols<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeSet<String>, StreamRequestError> {
        let set: BTreeSet<String> = names
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if set.is_empty() || set.len() > MAX_STREAM_SYMBOLS {
            return Err(StreamRequestError::Symbols);
        }
        Ok(set)
    }

    /// Whether alerts and stats are wanted, from event kind names (`alert`, `stats`).
    pub fn events<'a>(
        kinds: impl IntoIterator<Item = &'a str>,
    ) -> Result<(bool, bool), StreamRequestError> {
        let (mut alerts, mut stats) = (false, false);
        for kind in kinds.into_iter().map(str::trim) {
            match kind {
                "alert" | "alerts" => alerts = true,
                "stats" => stats = true,
                other => return Err(StreamRequestError::EventKind(other.to_string())),
            }
        }
        Ok((alerts, stats))
    }

    /// Whether `symbol` is watched.
    pub fn watches(&self, symbol: &str) -> bool {
        self.symbols.as_ref().is_none_or(|s| s.contains(symbol))
    }
}

/// An event waiting in a client's queue: shared with every other client until it is encoded.
/// Each carries the client's cursor's alert id as of that event.
#[derive(Debug)]
pub enum Outgoing {
    /// An alert (its id is the cursor).
    Alert(Arc<Alert>),
    /// A symbol's latest statistics.
    Stats {
        /// The statistics.
        snapshot: Stats,
        /// The cursor's alert id.
        cursor: u64,
    },
    /// Events this client missed: alerts the log no longer held, or stats it read too slowly
    /// for (the next `stats` of each symbol brings it up to date).
    Lagged {
        /// How many.
        missed: u64,
        /// The cursor's alert id.
        cursor: u64,
    },
}

impl Outgoing {
    /// The alert id of the cursor as of this event.
    pub fn cursor(&self) -> u64 {
        match self {
            Outgoing::Alert(alert) => alert.id,
            Outgoing::Stats { cursor, .. } | Outgoing::Lagged { cursor, .. } => *cursor,
        }
    }
}

/// What a client's forwarding task reads besides the broadcast.
#[derive(Debug, Clone)]
pub struct Client {
    /// Least time between two `stats` events of one symbol.
    pub throttle: Duration,
    /// How long the client's queue may stay full (the client not reading) before the client is
    /// disconnected.
    pub stall: Duration,
    /// Ends the stream when the service stops.
    pub stopping: CancellationToken,
    /// Where lagged events are counted.
    pub metrics: Arc<Metrics>,
    /// Every symbol's latest snapshot, for a client that fell behind the broadcast.
    pub snapshots: Arc<SnapshotStore>,
    /// The latest statistics of the symbols other cluster nodes own (empty on a single node).
    pub remote: Arc<RemoteLatest>,
    /// The recent alerts, which the client is served from.
    pub alerts: Arc<AlertLog>,
}

/// Where a client's stream starts.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// Alerts after this id are sent (see [`Cursor::start`]).
    pub after: u64,
    /// Send every watched symbol's latest snapshot first (a resuming client), rather than only
    /// what changes from now on.
    pub snapshots: bool,
}

/// Why a client's forwarding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The service is stopping.
    Stopping,
    /// The client is gone (its queue closed).
    Gone,
    /// The client's queue stayed full for the stall time: it is to be disconnected.
    Stalled,
}

/// Alerts taken from the log at a time.
const ALERT_BATCH: usize = 64;

/// What became of an event offered to a client's queue.
enum Offer {
    Queued,
    /// The queue is full: the event comes back.
    Full(Outgoing),
    /// The client is gone.
    Closed,
}

/// One client's forwarding state.
struct Forwarder {
    client: Client,
    queue: mpsc::Sender<Outgoing>,
    filter: Filter,
    /// When each symbol's last `stats` event was queued.
    last_sent: HashMap<Symbol, Instant>,
    /// Stats held back by the throttle or a full queue: the latest per symbol.
    pending: HashMap<Symbol, Stats>,
    /// The last alert id queued or passed over.
    delivered: u64,
    /// An alert is waiting for room in the queue.
    alerts_waiting: bool,
    /// Since when the queue has been full.
    full_since: Option<Instant>,
}

impl Forwarder {
    fn offer(&mut self, event: Outgoing) -> Offer {
        match self.queue.try_send(event) {
            Ok(()) => {
                self.full_since = None;
                Offer::Queued
            }
            Err(TrySendError::Full(event)) => {
                self.full_since.get_or_insert_with(Instant::now);
                Offer::Full(event)
            }
            Err(TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// Queues the alerts after `delivered` that the client watches, from the log, until the
    /// queue is full. Returns whether the client is still there.
    fn pump_alerts(&mut self) -> bool {
        loop {
            let (alerts, missed) = self.client.alerts.after(self.delivered, ALERT_BATCH);
            if missed > 0 {
                self.delivered += missed;
                self.client.metrics.stream_lagged.inc_by(missed);
                let cursor = self.delivered;
                if let Offer::Closed = self.offer(Outgoing::Lagged { missed, cursor }) {
                    return false;
                }
            }
            let whole_batch = alerts.len() == ALERT_BATCH;
            for alert in alerts {
                if !(self.filter.alerts && self.filter.watches(alert.symbol.as_str())) {
                    self.delivered = alert.id;
                    continue;
                }
                let id = alert.id;
                match self.offer(Outgoing::Alert(alert)) {
                    Offer::Queued => self.delivered = id,
                    Offer::Full(_) => {
                        self.alerts_waiting = true;
                        return true;
                    }
                    Offer::Closed => return false,
                }
            }
            if !whole_batch {
                self.alerts_waiting = false;
                return true;
            }
        }
    }

    /// Queues `snapshot` if its symbol is due, or holds it as pending. Returns whether the
    /// client is still there.
    fn offer_stats(&mut self, snapshot: Stats, now: Instant) -> bool {
        let throttle = self.client.throttle;
        let symbol = snapshot.symbol().clone();
        let due = self
            .last_sent
            .get(&symbol)
            .is_none_or(|sent| now.duration_since(*sent) >= throttle);
        if !due {
            self.pending.insert(symbol, snapshot);
            return true;
        }
        let event = Outgoing::Stats {
            snapshot,
            cursor: self.delivered,
        };
        match self.offer(event) {
            Offer::Queued => {
                self.last_sent.insert(symbol.clone(), now);
                self.pending.remove(&symbol);
                true
            }
            Offer::Full(Outgoing::Stats { snapshot, .. }) => {
                self.client.metrics.stream_lagged.inc();
                self.pending.insert(symbol, snapshot);
                true
            }
            Offer::Full(_) => true,
            Offer::Closed => false,
        }
    }

    /// Queues the pending stats that are due, until the queue is full.
    fn flush_pending(&mut self, now: Instant) -> bool {
        let throttle = self.client.throttle;
        let due: Vec<Symbol> = self
            .pending
            .keys()
            .filter(|s| {
                self.last_sent
                    .get(*s)
                    .is_none_or(|sent| now.duration_since(*sent) >= throttle)
            })
            .cloned()
            .collect();
        for symbol in due {
            let Some(snapshot) = self.pending.remove(&symbol) else {
                continue;
            };
            let cursor = self.delivered;
            match self.offer(Outgoing::Stats { snapshot, cursor }) {
                Offer::Queued => {
                    self.last_sent.insert(symbol, now);
                }
                Offer::Full(Outgoing::Stats { snapshot, .. }) => {
                    // Still full: it waits (and may be superseded) until the client reads.
                    self.pending.insert(symbol, snapshot);
                    return true;
                }
                Offer::Full(_) => return true,
                Offer::Closed => return false,
            }
        }
        true
    }

    /// Holds the latest snapshot of every watched symbol that `was` did not watch (every one
    /// when `was` is `None`) as pending.
    fn catch_up(&mut self, was: Option<&Filter>) {
        if !self.filter.stats {
            return;
        }
        let (latest, _) = self.client.snapshots.all();
        let local: std::collections::HashSet<Symbol> =
            latest.iter().map(|s| s.symbol.clone()).collect();
        // Other nodes' symbols, then this node's (which win: a partition that moved here may
        // still have its previous owner's last statistics among the remote ones).
        let remote = self
            .client
            .remote
            .all()
            .into_iter()
            .filter(|r| !local.contains(&r.symbol));
        let all = remote
            .map(Stats::Remote)
            .chain(latest.into_iter().map(Stats::Local));
        for snapshot in all {
            let symbol = snapshot.symbol().as_str();
            let new = was.is_none_or(|was| !(was.stats && was.watches(symbol)));
            if new && self.filter.watches(symbol) {
                self.pending.insert(snapshot.symbol().clone(), snapshot);
            }
        }
    }

    fn on_stats(&mut self, published: impl Iterator<Item = Stats>) -> bool {
        if !self.filter.stats {
            return true;
        }
        let now = Instant::now();
        for snapshot in published {
            if self.filter.watches(snapshot.symbol().as_str()) && !self.offer_stats(snapshot, now) {
                return false;
            }
        }
        true
    }

    /// Work left for the timer: pending stats, waiting alerts, or a full queue to watch.
    fn busy(&self) -> bool {
        !self.pending.is_empty() || self.alerts_waiting || self.full_since.is_some()
    }
}

/// Follows the broadcast for one client until it disconnects, stalls or the service stops.
///
/// Alerts come from the [`AlertLog`] (the broadcast only wakes the task): each client takes the
/// ones after its cursor as its queue has room, so a slow client gets every alert late rather
/// than losing any, and a resuming client gets the ones it missed; only alerts the log no longer
/// holds are lost (a `Lagged` event says how many). Stats are conflated per symbol: one that
/// cannot be queued (or is held back by the throttle) waits in `pending`, replaced by any newer
/// one of its symbol, so a stalled client holds at most one snapshot per watched symbol besides
/// its queue. A queue that stays full for [`Client::stall`] ends the forwarding with
/// [`Ended::Stalled`]. The filter may change while the stream runs (the WebSocket stream's
/// subscriptions): newly watched symbols get their latest snapshot.
pub async fn forward(
    client: Client,
    mut receiver: broadcast::Receiver<StreamEvent>,
    queue: mpsc::Sender<Outgoing>,
    mut filters: watch::Receiver<Filter>,
    start: Start,
) -> Ended {
    let throttle = client.throttle;
    let stall = client.stall;
    let mut flush = tokio::time::interval((throttle / 4).max(Duration::from_millis(5)));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let filter = filters.borrow_and_update().clone();
    let mut forwarder = Forwarder {
        client,
        queue,
        filter,
        last_sent: HashMap::new(),
        pending: HashMap::new(),
        delivered: start.after,
        alerts_waiting: false,
        full_since: None,
    };
    if start.snapshots {
        forwarder.catch_up(None);
    }
    let mut filters_open = true;
    if !forwarder.pump_alerts() {
        return Ended::Gone;
    }
    loop {
        let stopping = forwarder.client.stopping.clone();
        let busy = forwarder.busy();
        let open = tokio::select! {
            _ = stopping.cancelled() => return Ended::Stopping,
            _ = forwarder.queue.closed() => return Ended::Gone,
            changed = filters.changed(), if filters_open => {
                if changed.is_ok() {
                    let was = std::mem::replace(&mut forwarder.filter, filters.borrow_and_update().clone());
                    forwarder.pending.retain(|symbol, _| forwarder.filter.stats && forwarder.filter.watches(symbol.as_str()));
                    forwarder.catch_up(Some(&was));
                } else {
                    filters_open = false;
                }
                true
            }
            message = receiver.recv() => match message {
                Ok(StreamEvent::Alert(_)) => forwarder.pump_alerts(),
                Ok(StreamEvent::Stats(published)) => {
                    forwarder.on_stats(published.iter().cloned().map(Stats::Local))
                }
                Ok(StreamEvent::Remote(published)) => {
                    forwarder.on_stats(published.iter().cloned().map(Stats::Remote))
                }
                Err(RecvError::Lagged(missed)) => {
                    // Only if this task itself falls behind the broadcast: it skips ahead, and
                    // every watched symbol's latest snapshot becomes pending, so the client still
                    // ends up with the current state of each; alerts come from the log anyway.
                    forwarder.client.metrics.stream_lagged.inc_by(missed);
                    forwarder.catch_up(None);
                    let cursor = forwarder.delivered;
                    !matches!(forwarder.offer(Outgoing::Lagged { missed, cursor }), Offer::Closed)
                        && forwarder.pump_alerts()
                }
                Err(RecvError::Closed) => return Ended::Stopping,
            },
            _ = flush.tick(), if busy => {
                if forwarder.queue.capacity() > 0 {
                    forwarder.full_since = None;
                }
                if forwarder.full_since.is_some_and(|since| since.elapsed() >= stall) {
                    return Ended::Stalled;
                }
                let now = Instant::now();
                (!forwarder.alerts_waiting || forwarder.pump_alerts()) && forwarder.flush_pending(now)
            }
        };
        if !open {
            return Ended::Gone;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: u64, symbol: &str) -> Arc<Alert> {
        Arc::new(Alert {
            id,
            rule_id: "r".into(),
            symbol: Symbol::new(symbol),
            kind: "price_above",
            value: 2.0,
            threshold: 1.0,
            ts_ms: i64::try_from(id).unwrap_or(0),
            message: "m".into(),
        })
    }

    fn client(log: &Arc<AlertLog>, stall: Duration) -> Client {
        Client {
            throttle: Duration::from_millis(250),
            stall,
            stopping: CancellationToken::new(),
            metrics: Arc::new(Metrics::new()),
            snapshots: Arc::new(SnapshotStore::new()),
            remote: Arc::new(RemoteLatest::default()),
            alerts: Arc::clone(log),
        }
    }

    #[test]
    fn cursors_read_back_what_they_write_and_refuse_anything_else() {
        let cursor = Cursor {
            run: 1_764_655_200_000_000,
            alert: 42,
        };
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
        for bad in ["", "12", "a-1", "1-b", "1-2-3", "-1", "1--1"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
        let log = AlertLog::new(10);
        for id in 1..=3 {
            log.push(alert(id, "A"));
        }
        let here = |alert| {
            Some(Cursor {
                run: log.run(),
                alert,
            })
        };
        assert_eq!(Cursor::start(None, &log), 3, "a new client: from now");
        assert_eq!(Cursor::start(here(1), &log), 1, "this run: after its id");
        assert_eq!(Cursor::start(here(99), &log), 3, "never beyond the newest");
        let other = Some(Cursor { run: 7, alert: 2 });
        assert_eq!(
            Cursor::start(other, &log),
            0,
            "another run: everything held"
        );
    }

    #[test]
    fn filters_parse_their_lists_and_refuse_unknown_kinds() {
        let filter = Filter::parse(Some(" IBM, AIG ,"), Some("alert")).expect("valid");
        assert!(filter.alerts && !filter.stats);
        assert!(filter.watches("IBM") && filter.watches("AIG") && !filter.watches("X"));
        assert!(Filter::parse(None, None).expect("valid").watches("X"));
        assert_eq!(
            Filter::parse(Some(" , "), None),
            Err(StreamRequestError::Symbols)
        );
        assert_eq!(
            Filter::parse(None, Some("alert,trades")),
            Err(StreamRequestError::EventKind("trades".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_client_gets_every_watched_alert_late_rather_than_losing_any() {
        let log = Arc::new(AlertLog::new(100));
        let (stream, receiver) = broadcast::channel(4);
        let (queue, mut events) = mpsc::channel(2);
        let filter = Filter::parse(Some("A"), Some("alert")).expect("filter");
        let (_keep, filters) = watch::channel(filter);
        let task = tokio::spawn(forward(
            client(&log, Duration::from_secs(3600)),
            receiver,
            queue,
            filters,
            Start {
                after: 0,
                snapshots: false,
            },
        ));
        // Twenty alerts fire at once, half of another symbol; the broadcast (4) overflows too.
        for id in 1..=20 {
            let fired = alert(id, if id % 2 == 0 { "A" } else { "B" });
            log.push(Arc::clone(&fired));
            let _ = stream.send(StreamEvent::Alert(fired));
        }
        let mut got = Vec::new();
        while got.len() < 10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(event) = events.recv().await {
                match event {
                    Outgoing::Alert(alert) => got.push(alert.id),
                    Outgoing::Lagged { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(got, (1..=10).map(|i| 2 * i).collect::<Vec<_>>());
        drop(events);
        assert_eq!(task.await.expect("joined"), Ended::Gone);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_whose_queue_stays_full_is_ended_as_stalled() {
        let log = Arc::new(AlertLog::new(100));
        let (stream, receiver) = broadcast::channel(16);
        let (queue, events) = mpsc::channel(2);
        let (_keep, filters) = watch::channel(Filter::default());
        let started = Instant::now();
        let task = tokio::spawn(forward(
            client(&log, Duration::from_secs(30)),
            receiver,
            queue,
            filters,
            Start {
                after: 0,
                snapshots: false,
            },
        ));
        for id in 1..=5 {
            let fired = alert(id, "A");
            log.push(Arc::clone(&fired));
            let _ = stream.send(StreamEvent::Alert(fired));
        }
        assert_eq!(task.await.expect("joined"), Ended::Stalled);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
            "{waited:?}"
        );
        drop(events);
    }
}
