//! The analytics node: owns partitions by lease ([`super::lease`]) and runs a core per owned
//! partition — today's [`AnalyticsTask`] and [`Engine`], on a thread of its own — fed by a durable
//! pull consumer of the partition's subjects.
//!
//! Taking a partition: the node creates its consumer `p<partition>-<node>` starting at (now −
//! the state's horizon) — the longest window, or the longest interval's candle history, plus the
//! allowed lateness — and applies everything from there (the tickerplant-log pattern), so its
//! windows, candles and indicators are exact once it has caught up: no trade lost, none counted
//! twice (the core's own duplicate filter sees each venue id once). While it rebuilds, alerts
//! of messages the previous owner had applied are not delivered again. Giving a partition up:
//! the consumer stops, the core drains and takes its symbols out of the snapshot store, and the
//! progress is written for the next owner.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::lease::{LeaseShared, Owned, Progress};
use super::{ClusterError, STREAM, partition, wire};
use crate::alerts::sink::AlertLog;
use crate::alerts::{Alert, AlertEvaluator, RuleBook};
use crate::analytics::Engine;
use crate::analytics::snapshot::{SnapshotPublisher, SnapshotStore};
use crate::fanout::StreamEvent;
use crate::health::{FeedDescription, FeedRegistry, FeedStatus};
use crate::ingest::{AnalyticsTask, Outlets};
use crate::metrics::Metrics;
use crate::model::{CoreEvent, FeedId, Quote, Symbol, Trade};

/// Makes an empty core with the service's settings.
pub type EngineFactory = Arc<dyn Fn() -> Engine + Send + Sync>;

/// Messages asked of the server per pull.
const PULL_BATCH: usize = 1024;
/// How long a partition gathers the messages that trickle in after one before handing them to
/// its core (each hand-over wakes the core's thread): the most it delays a live trade.
const LINGER: Duration = Duration::from_millis(2);
/// Events handed to a partition's core in one message at most.
const EVENT_TRADES: usize = 1024;

/// What every partition task of a node shares.
pub struct NodeContext {
    /// JetStream.
    pub js: jetstream::Context,
    /// This node's name.
    pub node: String,
    /// How far back a partition's state reaches.
    pub horizon: Duration,
    /// Makes a partition's core (the configured windows, candles, lateness, duplicates).
    pub engine: EngineFactory,
    /// The alert rules.
    pub rules: Arc<RuleBook>,
    /// Where snapshots go.
    pub snapshots: Arc<SnapshotStore>,
    /// Feeds, as the ingest names them.
    pub feeds: Arc<FeedRegistry>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// To the alert sink task.
    pub alerts: mpsc::Sender<Arc<Alert>>,
    /// The recent alerts.
    pub alert_log: Arc<AlertLog>,
    /// The live stream.
    pub stream: tokio::sync::broadcast::Sender<StreamEvent>,
    /// Shared with the lease task.
    pub leases: Arc<LeaseShared>,
    /// The node's feed ids by the ingest's names.
    feed_ids: Mutex<HashMap<String, (FeedId, Arc<FeedStatus>)>>,
}

impl NodeContext {
    /// A context; see the fields.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        js: jetstream::Context,
        node: String,
        horizon: Duration,
        engine: EngineFactory,
        rules: Arc<RuleBook>,
        snapshots: Arc<SnapshotStore>,
        feeds: Arc<FeedRegistry>,
        metrics: Arc<Metrics>,
        alerts: mpsc::Sender<Arc<Alert>>,
        alert_log: Arc<AlertLog>,
        stream: tokio::sync::broadcast::Sender<StreamEvent>,
        leases: Arc<LeaseShared>,
    ) -> Self {
        NodeContext {
            js,
            node,
            horizon,
            engine,
            rules,
            snapshots,
            feeds,
            metrics,
            alerts,
            alert_log,
            stream,
            leases,
            feed_ids: Mutex::new(HashMap::new()),
        }
    }

    /// The node's feed for the ingest's feed `name`, registered the first time any partition
    /// sees it.
    fn feed(&self, name: &str) -> (FeedId, Arc<FeedStatus>) {
        let mut feeds = self.feed_ids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(feed) = feeds.get(name) {
            return feed.clone();
        }
        let status = self.feeds.register(
            name.to_string(),
            FeedDescription {
                kind: "cluster".to_string(),
                source: format!("nats: {STREAM}"),
                format: "ticks".to_string(),
            },
            &self.metrics,
        );
        status.set_running();
        let feed = (status.id(), status);
        feeds.insert(name.to_string(), feed.clone());
        feed
    }

    fn set_progress(&self, partition: u32, progress: Option<Progress>) {
        let mut all = self
            .leases
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match progress {
            Some(progress) => {
                all.insert(partition, progress);
            }
            None => {
                all.remove(&partition);
            }
        }
    }

    /// The partition has caught up with the stream: this node answers for it from now on, and
    /// serves the queries other nodes forward.
    fn start_serving(&self, partition: u32, stop: &CancellationToken) {
        let newly = self
            .leases
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition);
        if !newly {
            return;
        }
        tracing::info!(partition, "partition caught up with the stream: serving it");
        let Some(client) = self.leases.client.get().cloned() else {
            return;
        };
        let leases = Arc::clone(&self.leases);
        let stop = stop.clone();
        tokio::spawn(async move {
            // The API sets its responder when it starts serving.
            let responder = loop {
                if let Some(responder) = leases.responder.get() {
                    break Arc::clone(responder);
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    () = stop.cancelled() => return,
                }
            };
            super::query::serve(client, partition, responder, stop).await;
        });
    }

    fn stop_serving(&self, partition: u32) {
        self.leases
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&partition);
    }

    fn set_running(&self, partition: u32, running: bool) {
        let mut all = self
            .leases
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if running {
            all.insert(partition);
        } else {
            all.remove(&partition);
        }
        self.metrics
            .cluster_partitions_owned
            .set(i64::try_from(all.len()).unwrap_or(i64::MAX));
    }
}

/// Runs the node's partitions as `owned` says until `cancel`; then stops them all.
pub async fn run(
    context: Arc<NodeContext>,
    mut owned: watch::Receiver<BTreeMap<u32, Owned>>,
    cancel: CancellationToken,
) {
    let mut running: BTreeMap<u32, (CancellationToken, tokio::task::JoinHandle<()>)> =
        BTreeMap::new();
    loop {
        let wanted = owned.borrow_and_update().clone();
        running.retain(|partition, (stop, task)| {
            let keep = wanted.contains_key(partition) && !task.is_finished();
            if !keep {
                stop.cancel();
            }
            keep || !task.is_finished()
        });
        for (partition, takeover) in &wanted {
            if running.contains_key(partition) {
                continue;
            }
            let stop = cancel.child_token();
            let task = tokio::spawn(run_partition(
                Arc::clone(&context),
                *partition,
                *takeover,
                stop.clone(),
            ));
            running.insert(*partition, (stop, task));
        }
        tokio::select! {
            changed = owned.changed() => if changed.is_err() { break },
            () = cancel.cancelled() => break,
            // Look again for finished tasks (a partition whose consumer failed is restarted).
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    for (_, (stop, task)) in running {
        stop.cancel();
        let _ = task.await;
    }
}

/// One owned partition: a consumer and a core, until `stop`.
async fn run_partition(
    context: Arc<NodeContext>,
    partition: u32,
    owned: Owned,
    stop: CancellationToken,
) {
    context.set_running(partition, true);
    context.metrics.cluster_partitions_taken.inc();
    let (events, core_done) = match start_core(&context) {
        Ok(core) => core,
        Err(error) => {
            tracing::error!(partition, %error, "cannot start a partition's core");
            context.set_running(partition, false);
            return;
        }
    };
    let applied = match consume(&context, partition, owned, &events, &stop).await {
        Ok(applied) => applied,
        Err(error) => {
            tracing::error!(partition, %error, "consuming a partition failed; it is retried");
            0
        }
    };
    // Answered elsewhere from now on; the core drains what it was sent, publishes, and takes
    // its symbols out of the store.
    context.stop_serving(partition);
    drop(events);
    let _ = core_done.await;
    if applied > 0
        && let Ok(config) = context.js.get_key_value(super::CONFIG_BUCKET).await
    {
        let _ = config
            .put(format!("progress.{partition}"), applied.to_string().into())
            .await;
    }
    if let Ok(stream) = context.js.get_stream(STREAM).await {
        let _ = stream
            .delete_consumer(&consumer_name(partition, &context.node))
            .await;
    }
    context.set_progress(partition, None);
    context.set_running(partition, false);
    context.metrics.cluster_partitions_released.inc();
    tracing::info!(partition, "partition released");
}

/// A partition's core on a thread of its own; returns its channel and its end.
fn start_core(
    context: &NodeContext,
) -> std::io::Result<(mpsc::Sender<CoreEvent>, tokio::sync::oneshot::Receiver<()>)> {
    let engine = (context.engine)();
    let (events_tx, events_rx) = mpsc::channel(crate::sources::CORE_CHANNEL_CAPACITY);
    let outlets = Outlets {
        publisher: SnapshotPublisher::new(Arc::clone(&context.snapshots)),
        feeds: Arc::clone(&context.feeds),
        metrics: Arc::clone(&context.metrics),
        alerts: context.alerts.clone(),
        alert_log: Arc::clone(&context.alert_log),
        stream: context.stream.clone(),
    };
    let task = AnalyticsTask::new(
        engine,
        AlertEvaluator::new(Arc::clone(&context.rules)),
        events_rx,
        outlets,
    )
    .retiring_on_end();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, finished) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tickstream-partition".to_string())
        .spawn(move || {
            // Stops when its channel closes; never cancelled from outside.
            runtime.block_on(task.run(CancellationToken::new()));
            let _ = done.send(());
        })?;
    Ok((events_tx, finished))
}

fn consumer_name(partition: u32, node: &str) -> String {
    format!("p{partition}-{node}")
}

/// Consumes a partition into its core until `stop`; returns the last sequence applied.
async fn consume(
    context: &NodeContext,
    partition: u32,
    owned: Owned,
    events: &mpsc::Sender<CoreEvent>,
    stop: &CancellationToken,
) -> Result<u64, ClusterError> {
    let stream = loop {
        match context.js.get_stream(STREAM).await {
            Ok(stream) => break stream,
            Err(error) => {
                tracing::info!(%error, "waiting for the stream");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => return Ok(0),
                }
            }
        }
    };
    let name = consumer_name(partition, &context.node);
    let rebuild_until = stream
        .get_info()
        .await
        .map_err(|e| ClusterError::jetstream("reading the stream", e))?
        .state
        .last_sequence;
    let start = chrono::Utc::now()
        - chrono::Duration::from_std(context.horizon).unwrap_or(chrono::Duration::days(1));
    let mut applied = 0u64;
    let mut deliver = consumer::DeliverPolicy::ByStartTime { start_time: start };
    let mut symbols: HashMap<String, Symbol> = HashMap::new();
    let mut caught_up = false;
    tracing::info!(partition, rebuild_until, from = %start, "taking a partition: rebuilding its state from the stream");
    'consumer: loop {
        // A consumer of this node's from before (a restart) is replaced: it starts over.
        let _ = stream.delete_consumer(&name).await;
        let pull = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: partition::partition_filter(partition),
                deliver_policy: deliver,
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(300),
                ..Default::default()
            })
            .await
            .map_err(|e| ClusterError::jetstream("creating a partition's consumer", e))?;
        if pull.cached_info().num_pending == 0 {
            // Nothing to rebuild (a partition without messages in the horizon).
            context.set_progress(
                partition,
                Some(Progress {
                    applied,
                    pending: 0,
                    rebuilding: false,
                }),
            );
            context.start_serving(partition, stop);
        }
        let mut messages = pull
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
            .map_err(|e| ClusterError::jetstream("pulling a partition", e))?;
        let mut batch = Batch::default();
        loop {
            let first = tokio::select! {
                message = messages.next() => message,
                () = stop.cancelled() => return Ok(applied),
            };
            let mut next = first;
            let mut taken = 0;
            let linger_until = tokio::time::Instant::now() + LINGER;
            // Where the partition stands after this gathering (published once for all of it).
            let mut progress: Option<Progress> = None;
            let publish = |taken: usize, progress: Option<Progress>| {
                context.metrics.cluster_consumed.inc_by(taken as u64);
                if progress.is_some() {
                    context.set_progress(partition, progress);
                }
            };
            loop {
                match next {
                    Some(Ok(message)) => {
                        // The reply subject carries the sequence; JetStream always sets it.
                        let (sequence, pending) = message.info().map_or((applied + 1, 0), |info| {
                            (info.stream_sequence, info.pending)
                        });
                        let alerts = sequence > owned.delivered;
                        match wire::WireTick::decode(&message.payload) {
                            Ok(decoded) => {
                                batch
                                    .add(decoded, alerts, context, &mut symbols, events)
                                    .await;
                            }
                            Err(error) => {
                                context.metrics.cluster_malformed.inc();
                                tracing::debug!(%error, sequence, "skipping a malformed message");
                            }
                        }
                        applied = sequence;
                        if pending == 0 {
                            caught_up = true;
                        }
                        progress = Some(Progress {
                            applied,
                            pending,
                            rebuilding: sequence < rebuild_until && pending > 0,
                        });
                    }
                    Some(Err(error)) => {
                        tracing::warn!(partition, %error, "pulling a partition");
                        publish(taken, progress);
                        batch.flush(events).await;
                        if applied > 0 {
                            deliver = consumer::DeliverPolicy::ByStartSequence {
                                start_sequence: applied + 1,
                            };
                        }
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(500)) => {}
                            () = stop.cancelled() => return Ok(applied),
                        }
                        continue 'consumer;
                    }
                    None => {
                        publish(taken, progress);
                        batch.flush(events).await;
                        if applied > 0 {
                            deliver = consumer::DeliverPolicy::ByStartSequence {
                                start_sequence: applied + 1,
                            };
                        }
                        continue 'consumer;
                    }
                }
                taken += 1;
                if taken >= EVENT_TRADES {
                    break;
                }
                match messages.next().now_or_never() {
                    Some(message) => next = message,
                    // Live: the messages trickle in. They are gathered for up to `LINGER` after
                    // the first, so the core wakes once for many rather than once for each.
                    None => match tokio::time::timeout_at(linger_until, messages.next()).await {
                        Ok(message) => next = message,
                        Err(_) => break,
                    },
                }
            }
            publish(taken, progress);
            batch.flush(events).await;
            if events.is_closed() {
                return Ok(applied);
            }
            if caught_up {
                context.start_serving(partition, stop);
            }
        }
    }
}

/// Trades gathered for the partition's core.
#[derive(Default)]
struct Batch {
    trades: Vec<(i64, Trade)>,
    alerts: bool,
    /// This partition's copy of the node's feeds (no lock per message), with the messages of
    /// each not yet counted (counted once per gathering, not per message: every partition
    /// counts into the same feeds).
    feeds: HashMap<String, (FeedId, Arc<FeedStatus>, u64)>,
}

impl Batch {
    /// The node's id of the ingest's feed `name`; the message is one of its rows (what
    /// `/v1/feeds` and `/readyz` read), counted at the next [`Batch::flush`].
    fn feed_id(&mut self, context: &NodeContext, name: &str) -> FeedId {
        let (id, _, uncounted) = match self.feeds.get_mut(name) {
            Some(feed) => feed,
            None => self.feeds.entry(name.to_string()).or_insert_with(|| {
                let (id, status) = context.feed(name);
                (id, status, 0)
            }),
        };
        *uncounted += 1;
        *id
    }

    /// Counts the rows of each feed seen since the last time.
    fn count_rows(&mut self) {
        for (_, status, uncounted) in self.feeds.values_mut() {
            if *uncounted > 0 {
                status.rows.inc_by(*uncounted);
                *uncounted = 0;
            }
        }
    }
}

impl Batch {
    async fn add(
        &mut self,
        decoded: wire::Decoded<'_>,
        alerts: bool,
        context: &NodeContext,
        symbols: &mut HashMap<String, Symbol>,
        events: &mpsc::Sender<CoreEvent>,
    ) {
        let mut symbol_of = |text: &str| -> Symbol {
            if let Some(symbol) = symbols.get(text) {
                return symbol.clone();
            }
            let symbol = Symbol::new(text);
            symbols.insert(text.to_string(), symbol.clone());
            symbol
        };
        if alerts != self.alerts {
            self.flush(events).await;
            self.alerts = alerts;
        }
        match decoded {
            wire::Decoded::Trade {
                symbol,
                price,
                size,
                exchange_ts,
                receive_ts,
                feed,
                id,
                side,
                clock,
            } => {
                let trade = Trade {
                    symbol: symbol_of(&symbol),
                    price,
                    size,
                    exchange_ts,
                    receive_ts,
                    feed: self.feed_id(context, &feed),
                    trade_id: id,
                    side,
                };
                self.trades.push((clock, trade));
            }
            wire::Decoded::Quote {
                symbol,
                bid,
                bid_size,
                ask,
                ask_size,
                exchange_ts,
                receive_ts,
                feed,
            } => {
                self.flush(events).await;
                let quote = Quote {
                    symbol: symbol_of(&symbol),
                    bid,
                    bid_size,
                    ask,
                    ask_size,
                    exchange_ts,
                    receive_ts,
                    feed: self.feed_id(context, &feed),
                };
                let _ = events.send(CoreEvent::Quotes(vec![quote])).await;
            }
            wire::Decoded::Clock { event, now } => {
                self.flush(events).await;
                let _ = events.send(CoreEvent::Clock { event, now, alerts }).await;
            }
        }
    }

    async fn flush(&mut self, events: &mpsc::Sender<CoreEvent>) {
        self.count_rows();
        if self.trades.is_empty() {
            return;
        }
        let trades = std::mem::take(&mut self.trades);
        let _ = events
            .send(CoreEvent::Clocked {
                trades,
                alerts: self.alerts,
            })
            .await;
    }
}
