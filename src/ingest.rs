//! The analytics task: the thin async loop around the synchronous [`Engine`].
//!
//! It takes merged events from a bounded channel (backpressure: when it falls behind, sources
//! wait), applies them, and after each burst publishes the snapshots of the symbols that changed,
//! the stream clock, and the per-feed counters. While the sources keep the channel full, it
//! publishes only as often as keeps publication within a share of its time ([`Pacing`]): with
//! many symbols, one snapshot per changed symbol per burst would otherwise cost more than the
//! trades themselves. A source's end is acted on only after its trades
//! are applied and published, so a feed shown `finished` means its trades are all in the answers.
//!
//! With live feeds, a quiet market must not freeze the answers: every [`QUIET_TICK`] the task
//! also moves the stream clock to the wall clock corrected by the most lagging live feed's
//! measured offset (the median of its recent receive − exchange times) and by the allowed
//! lateness, so windows drain while nothing trades. That advance moves only what readers see:
//! lateness is judged against the event-time clock alone (see [`crate::clock`]), so the trades a
//! venue delivers after a stall, a reconnect, a slow consumer or a burst are applied.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::alerts::sink::AlertLog;
use crate::alerts::{Alert, AlertEvaluator};
use crate::analytics::snapshot::SnapshotPublisher;
use crate::analytics::{Engine, Outcome};
use crate::fanout::{StreamBatch, StreamEvent};
use crate::health::FeedRegistry;
use crate::metrics::Metrics;
use crate::model::CoreEvent;
use crate::model::FeedId;

/// Events drained from the channel before publishing snapshots (or, under load, deciding whether
/// to): lets a burst share one publication.
const EVENTS_PER_PUBLISH: usize = 64;

/// Under load, the time between publications is at least this many times what the last one
/// took: publication takes at most a tenth of the core's time.
const PUBLISH_SPACING_FACTOR: u32 = 9;

/// When to publish while the channel still holds events: once the time since the last
/// publication is [`PUBLISH_SPACING_FACTOR`] times what it took. With 100 symbols a publication
/// takes tens of microseconds, so readers stay that fresh; with 10,000 symbols all changing, a
/// few milliseconds, and one publication then covers many trades of each symbol. An empty channel
/// always publishes at once, so a live market below the core's capacity sees no delay.
#[derive(Debug)]
struct Pacing {
    /// When the last publication ended.
    since: std::time::Instant,
    /// What it took.
    cost: std::time::Duration,
}

impl Pacing {
    fn new() -> Self {
        Pacing {
            since: std::time::Instant::now(),
            cost: std::time::Duration::ZERO,
        }
    }

    /// Whether a publication is due though more events wait.
    fn due(&self) -> bool {
        self.since.elapsed() >= self.cost * PUBLISH_SPACING_FACTOR
    }

    /// Records a publication that started at `start` and just ended.
    fn published(&mut self, start: std::time::Instant) {
        self.since = std::time::Instant::now();
        self.cost = self.since - start;
    }
}

/// How often a quiet live market moves the stream clock.
pub const QUIET_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Recent receive − exchange offsets kept per live feed.
const OFFSET_SAMPLES: usize = 64;

/// The wall-clock estimate of the venues' time, from the live feeds' measured offsets.
#[derive(Debug)]
pub struct LiveClock {
    /// Offsets (ns) of the latest trades, per live feed.
    offsets: std::collections::HashMap<FeedId, std::collections::VecDeque<i64>>,
    allowed_lateness: i64,
}

impl LiveClock {
    /// A clock for the live `feeds`, trailing by `allowed_lateness` nanoseconds.
    pub fn new(feeds: impl IntoIterator<Item = FeedId>, allowed_lateness: i64) -> Self {
        LiveClock {
            offsets: feeds
                .into_iter()
                .map(|feed| (feed, std::collections::VecDeque::new()))
                .collect(),
            allowed_lateness,
        }
    }

    /// Takes the offset of a trade; returns whether it came from a live feed.
    pub fn observe(&mut self, trade: &crate::model::Trade) -> bool {
        let Some(samples) = self.offsets.get_mut(&trade.feed) else {
            return false;
        };
        if samples.len() == OFFSET_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(trade.receive_ts - trade.exchange_ts);
        true
    }

    /// The venues' time at wall time `now`, as far as it can be told (`None` before any live
    /// trade).
    pub fn estimate(&self, now: i64) -> Option<i64> {
        let lag = self
            .offsets
            .values()
            .filter(|samples| !samples.is_empty())
            .map(|samples| {
                let mut sorted: Vec<i64> = samples.iter().copied().collect();
                sorted.sort_unstable();
                sorted[sorted.len() / 2]
            })
            .max()?;
        Some(
            now.saturating_sub(lag)
                .saturating_sub(self.allowed_lateness),
        )
    }
}

/// The analytics task: the core, and where its results go. Built with [`AnalyticsTask::new`].
pub struct AnalyticsTask {
    /// The core.
    engine: Engine,
    /// Events from the sources.
    events: mpsc::Receiver<CoreEvent>,
    /// Where snapshots go.
    publisher: SnapshotPublisher,
    /// Feed states and counters.
    feeds: Arc<FeedRegistry>,
    /// Service metrics.
    metrics: Arc<Metrics>,
    /// The alert rules, evaluated as trades are applied.
    evaluator: AlertEvaluator,
    /// To the alert sink task (`try_send`: the core never waits; a full channel is counted).
    alerts: mpsc::Sender<Arc<Alert>>,
    /// The recent alerts `GET /v1/alerts` reads, recorded before the snapshots are published.
    alert_log: Arc<AlertLog>,
    /// Alerts fired since the last publication.
    pending_alerts: Vec<Alert>,
    /// The live stream: changed snapshots go there when a client listens.
    stream: tokio::sync::broadcast::Sender<StreamEvent>,
    /// With live feeds: the wall-clock estimate that keeps a quiet market's clock moving.
    live_clock: Option<LiveClock>,
    /// Arrival times (wall clock, ns) of the live trades applied since the last publication.
    arrivals: Vec<i64>,
    /// Changed snapshots waiting for the next message on the live stream.
    stream_batch: StreamBatch,
    /// The durable trade log (`--record`): every trade applied goes there before it is
    /// published.
    log: Option<TradeLog>,
    /// A cluster partition's task: its symbols leave the snapshot store when it ends.
    retire_on_end: bool,
}

/// Where the analytics task's results go.
pub struct Outlets {
    /// Where snapshots go.
    pub publisher: SnapshotPublisher,
    /// Feed states and counters.
    pub feeds: Arc<FeedRegistry>,
    /// Service metrics.
    pub metrics: Arc<Metrics>,
    /// To the alert sink task.
    pub alerts: mpsc::Sender<Arc<Alert>>,
    /// The recent alerts, for `GET /v1/alerts`.
    pub alert_log: Arc<AlertLog>,
    /// The live stream.
    pub stream: tokio::sync::broadcast::Sender<StreamEvent>,
}

impl AnalyticsTask {
    /// A task applying `events` to `engine`, evaluating alerts with `evaluator`, publishing to
    /// `outlets`.
    pub fn new(
        engine: Engine,
        evaluator: AlertEvaluator,
        events: mpsc::Receiver<CoreEvent>,
        outlets: Outlets,
    ) -> Self {
        let Outlets {
            publisher,
            feeds,
            metrics,
            alerts,
            alert_log,
            stream,
        } = outlets;
        AnalyticsTask {
            engine,
            events,
            publisher,
            feeds,
            metrics,
            evaluator,
            alerts,
            alert_log,
            pending_alerts: Vec::new(),
            stream,
            live_clock: None,
            arrivals: Vec::new(),
            stream_batch: StreamBatch::default(),
            log: None,
            retire_on_end: false,
        }
    }

    /// Takes this task's symbols out of the snapshot store when it ends (a cluster partition
    /// that moved to another node: its owner answers for them now).
    pub fn retiring_on_end(mut self) -> Self {
        self.retire_on_end = true;
        self
    }

    /// Keeps a quiet market's stream clock moving with the live `feeds`' measured offsets.
    pub fn with_live_clock(mut self, feeds: &[FeedId], allowed_lateness: i64) -> Self {
        if !feeds.is_empty() {
            self.live_clock = Some(LiveClock::new(feeds.iter().copied(), allowed_lateness));
        }
        self
    }

    /// Logs every applied trade to `sender` before publishing it; with `durable_before_publish`
    /// (`--fsync every`) waits until it is on disk.
    pub fn with_trade_log(
        mut self,
        sender: crate::record::ticklog::TickLogSender,
        durable_before_publish: bool,
    ) -> Self {
        self.log = Some(TradeLog {
            sender,
            durable_before_publish,
            pending: Vec::new(),
        });
        self
    }
}

/// The core's side of the durable trade log.
#[derive(Debug)]
struct TradeLog {
    /// To the writer thread (backpressure: the core waits, the log never drops a trade).
    sender: crate::record::ticklog::TickLogSender,
    /// Whether each batch must be durable before it is published (`--fsync every`).
    durable_before_publish: bool,
    /// Trades applied since the last hand-over.
    pending: Vec<crate::model::Trade>,
}

impl TradeLog {
    /// Hands the pending trades to the writer; with `durable_before_publish`, returns once they
    /// are on disk.
    async fn write(&mut self) {
        use crate::record::ticklog::LogMessage;
        if self.pending.is_empty() {
            return;
        }
        let trades = std::mem::take(&mut self.pending);
        if self.durable_before_publish {
            let (ack, done) = tokio::sync::oneshot::channel();
            if self
                .sender
                .send(LogMessage::TradesDurable(trades, ack))
                .await
                .is_ok()
            {
                let _ = done.await;
            }
        } else if self.sender.send(LogMessage::Trades(trades)).await.is_err() {
            tracing::error!("the trade log stopped; applied trades are no longer logged");
        }
    }
}

impl AnalyticsTask {
    /// Runs until the channel closes: every source is done, or, after `cancel` fired, every
    /// source has stopped and everything they had sent is applied (the drain at shutdown).
    #[tracing::instrument(name = "analytics", skip_all)]
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut ended: Vec<(FeedId, Option<String>)> = Vec::new();
        let mut quiet = tokio::time::interval(QUIET_TICK);
        quiet.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut draining = false;
        let mut pacing = Pacing::new();
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled(), if !draining => {
                    draining = true;
                    continue;
                }
                event = self.events.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
                _ = async {
                    match self.stream_batch.due() {
                        Some(due) => tokio::time::sleep_until(due).await,
                        None => std::future::pending::<()>().await,
                    }
                } => {
                    self.stream_batch.send(&self.stream);
                    continue;
                }
                _ = quiet.tick(), if self.live_clock.is_some() && !draining => {
                    let estimate = self
                        .live_clock
                        .as_ref()
                        .and_then(|clock| clock.estimate(crate::model::wall_clock_now()));
                    if let Some(estimate) = estimate
                        && self.engine.now().is_some_and(|now| estimate > now) {
                            self.engine.advance_clock(estimate);
                            self.evaluator.on_clock(&self.engine, &mut self.pending_alerts);
                            self.publish(&mut ended);
                        }
                    continue;
                }
            };
            self.handle(first, &mut ended);
            for _ in 1..EVENTS_PER_PUBLISH {
                match self.events.try_recv() {
                    Ok(event) => self.handle(event, &mut ended),
                    Err(_) => break,
                }
            }
            if !self.events.is_empty() && !pacing.due() {
                continue;
            }
            let start = std::time::Instant::now();
            // Logged before published: what readers see is in the log (durably, with
            // `--fsync every`).
            if let Some(log) = &mut self.log {
                log.write().await;
            }
            self.publish(&mut ended);
            pacing.published(start);
        }
        if let Some(log) = &mut self.log {
            log.write().await;
        }
        self.publish(&mut ended);
        self.stream_batch.send(&self.stream);
        if self.retire_on_end {
            self.publisher.retire();
        }
        tracing::debug!("analytics task stopped");
    }

    /// Hands the alerts fired since the last call to the sink task, and picks up rule edits.
    fn send_alerts(&mut self) {
        self.metrics
            .alerts_fired
            .inc_by(self.pending_alerts.len() as u64);
        for alert in self.pending_alerts.drain(..) {
            let alert = self.alert_log.record(alert);
            if self.alerts.try_send(alert).is_err() {
                self.metrics
                    .alerts_dropped
                    .get_or_create(&crate::metrics::SinkLabels {
                        sink: "core".to_string(),
                    })
                    .inc();
            }
        }
        self.evaluator.refresh();
    }

    fn handle(&mut self, event: CoreEvent, ended: &mut Vec<(FeedId, Option<String>)>) {
        let recovered = matches!(event, CoreEvent::Recovered(_));
        match event {
            CoreEvent::Trades(trades) | CoreEvent::Recovered(trades) => {
                let logged = !recovered && self.log.is_some();
                for trade in &trades {
                    if self.engine.apply(trade) == Outcome::Applied {
                        if logged && let Some(log) = &mut self.log {
                            log.pending.push(trade.clone());
                        }
                        self.evaluator.on_trade(
                            &self.engine,
                            trade.symbol.as_str(),
                            trade.exchange_ts,
                            &mut self.pending_alerts,
                        );
                    }
                }
                if let Some(clock) = &mut self.live_clock {
                    for trade in &trades {
                        if clock.observe(trade) {
                            self.arrivals.push(trade.receive_ts);
                        }
                    }
                }
            }
            CoreEvent::Clocked { trades, alerts } => {
                let before = self.pending_alerts.len();
                for (clock, trade) in &trades {
                    self.engine.observe_event_time(*clock);
                    if self.engine.apply(trade) == Outcome::Applied {
                        self.evaluator.on_trade(
                            &self.engine,
                            trade.symbol.as_str(),
                            trade.exchange_ts,
                            &mut self.pending_alerts,
                        );
                    }
                }
                if !alerts {
                    self.pending_alerts.truncate(before);
                }
            }
            CoreEvent::Clock { event, now, alerts } => {
                let before = self.pending_alerts.len();
                self.engine.observe_event_time(event);
                if self.engine.now().is_some_and(|current| now > current) {
                    self.engine.advance_clock(now);
                }
                // The other partitions' trades moved the clock: `stale` rules are checked at it,
                // as one process checks them after every trade.
                self.evaluator
                    .on_clock(&self.engine, &mut self.pending_alerts);
                if !alerts {
                    self.pending_alerts.truncate(before);
                }
            }
            CoreEvent::Quotes(quotes) => {
                for quote in &quotes {
                    self.engine.apply_quote(quote);
                }
            }
            CoreEvent::SourceEnded { feed, error } => ended.push((feed, error)),
        }
        self.metrics.core_batches.inc();
    }

    /// Records how long the live trades just published took from their frame's arrival.
    /// The maximum shown is over the last 30 to 60 seconds, so it is updated even when nothing
    /// arrived.
    fn observe_freshness(&mut self) {
        let now = crate::model::wall_clock_now();
        let mut longest = 0;
        for arrival in self.arrivals.drain(..) {
            let age = now.saturating_sub(arrival).max(0);
            longest = longest.max(age);
            self.metrics.freshness.observe(age as f64 * 1e-9);
        }
        let recent = self
            .metrics
            .freshness_recent
            .observe(longest as f64 * 1e-9, std::time::Instant::now());
        self.metrics.freshness_max.set(recent);
    }

    fn publish(&mut self, ended: &mut Vec<(FeedId, Option<String>)>) {
        self.send_alerts();
        let changed = self.engine.take_changed();
        let stream = &self.stream;
        if stream.receiver_count() > 0 {
            let batch = &mut self.stream_batch;
            self.publisher
                .publish_each(changed, self.engine.now(), |snapshot| {
                    batch.add(snapshot);
                });
            if batch
                .due()
                .is_some_and(|due| due <= tokio::time::Instant::now())
            {
                batch.send(stream);
            }
        } else {
            self.publisher.publish(changed, self.engine.now());
        }
        self.observe_freshness();
        let depth = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.core_queue_depth.set(depth(self.events.len()));
        self.metrics
            .alert_queue_depth
            .set(depth(self.alerts.max_capacity() - self.alerts.capacity()));
        for (index, tally) in self.engine.take_tallies().into_iter().enumerate() {
            let Some(feed) = u16::try_from(index)
                .ok()
                .and_then(|i| self.feeds.get(FeedId(i)))
            else {
                continue;
            };
            feed.trades.inc_by(tally.applied);
            feed.late.inc_by(tally.late);
            feed.duplicates.inc_by(tally.duplicate);
            feed.ids_beyond_horizon.inc_by(tally.beyond_horizon);
            self.metrics.trades_processed.inc_by(tally.applied);
            self.metrics.trades_late.inc_by(tally.late);
            self.metrics.trades_duplicate.inc_by(tally.duplicate);
        }
        // From the store: a cluster node's partitions each have a task of their own.
        let store = self.publisher.store();
        self.metrics
            .symbols
            .set(i64::try_from(store.len()).unwrap_or(i64::MAX));
        if let Some(now) = store.clock() {
            self.metrics.stream_clock.set(now as f64 * 1e-9);
        }
        for (feed_id, error) in ended.drain(..) {
            let Some(feed) = self.feeds.get(feed_id) else {
                continue;
            };
            match error {
                None => {
                    feed.set_finished();
                    let seconds = feed.running_for_ms() as f64 / 1000.0;
                    let rows = feed.rows.get();
                    tracing::info!(
                        feed = feed.name(),
                        rows,
                        trades = feed.trades.get(),
                        malformed = feed.malformed.get(),
                        late = feed.late.get(),
                        duplicates = feed.duplicates.get(),
                        seconds = format!("{seconds:.2}"),
                        rows_per_s = (rows as f64 / seconds.max(1e-3)).round(),
                        "replay finished; serving its final state"
                    );
                }
                Some(message) => {
                    tracing::error!(feed = feed.name(), error = %message, "replay failed");
                    feed.set_failed(message);
                }
            }
        }
    }
}
