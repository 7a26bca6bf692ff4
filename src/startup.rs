//! The one place that wires the service: it creates every channel and spawns every task.
//!
//! ```text
//! replay sources ──(bounded, 8 batches each)──► merge by event time ──► pace
//!      ──(bounded, CORE_CHANNEL_CAPACITY events: backpressure)──► analytics task (Engine)
//!      ──► snapshots (ArcSwap per symbol) ──► HTTP API (axum)
//! ```
//!
//! [`App::build`] validates the sources and binds the listener (port 0 allowed, so tests can run
//! many instances); [`App::run_until_stopped`] spawns the tasks, serves until the shutdown future
//! completes, then cancels every task through one token and waits for them (bounded by
//! [`DRAIN_DEADLINE`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::sink::{AlertLog, RECENT_ALERTS, STREAM_CAPACITY};
use crate::alerts::{AlertEvaluator, RuleBook};
use crate::analytics::Engine;
use crate::analytics::snapshot::{SnapshotPublisher, SnapshotStore};
use crate::api::{self, AppState};
use crate::config::{MockExchangeArgs, Settings};
use crate::feeds::connector::{ConnectorSettings, FeedSpec, Provider, live_stream};
use crate::feeds::{FeedDescription, FeedRegistry, FeedStatus};
use crate::indicators::cache::IndicatorCache;
use crate::ingest::{AnalyticsTask, LiveClock};
use crate::merge::{MergedEvent, merge_by_event_time};
use crate::metrics::Metrics;
use crate::mock_exchange::{MockExchange, MockFaults, MockOptions};
use crate::model::FeedId;
use crate::replay::{ReplayItem, ReplaySource, Speed, load_all, pace, replay_stream};
use crate::shutdown::DRAIN_DEADLINE;

/// Events (each a batch of up to [`crate::replay::BATCH_SIZE`] trades) queued for the analytics
/// task. When full, the sources wait: market data is never dropped on the way into the core.
pub const CORE_CHANNEL_CAPACITY: usize = 64;

/// How long a stopping live feed gets to close its connection and hand over its last trades.
const LIVE_STOP_GRACE: Duration = Duration::from_secs(2);

/// Most trades and quotes of a live feed's already-arrived frames sent to the core as one event.
const LIVE_EVENTS_PER_SEND: usize = 4096;

/// A built, not yet running service.
pub struct App {
    listener: TcpListener,
    settings: Settings,
    state: AppState,
    sources: Vec<(ReplaySource, Arc<FeedStatus>)>,
    live: Vec<(FeedSpec, Arc<FeedStatus>)>,
    demo_exchange: Option<MockExchange>,
}

impl App {
    /// Validates the settings' sources, binds the HTTP listener and registers the feeds.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        // TLS for wss:// feeds: rustls with the ring provider, whatever else the build links.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for source in &settings.sources {
            source.check()?;
        }
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let address = listener.local_addr()?;
        if !address.ip().is_loopback() && settings.api_token.is_none() {
            tracing::warn!(
                %address,
                "the HTTP API listens beyond loopback without an API token: anyone on the network can read it and edit the alert rules (set {})",
                crate::config::API_TOKEN_ENV
            );
        }
        let metrics = Arc::new(Metrics::new());
        let feeds = Arc::new(FeedRegistry::new());
        let mut feed_specs = settings.feeds.clone();
        let demo_exchange = if settings.demo {
            let (exchange, spec) = demo_exchange(&settings).await?;
            tracing::info!(url = %spec.url, "demo: the bundled sample is served by an in-process mock exchange");
            feed_specs.push(spec);
            Some(exchange)
        } else {
            None
        };
        let sources = settings
            .sources
            .iter()
            .map(|source| {
                let status = feeds.register(
                    format!("replay:{}", source.display_name()),
                    source.description(),
                    &metrics,
                );
                (source.clone(), status)
            })
            .collect();
        let live = feed_specs
            .iter()
            .map(|spec| {
                let status = feeds.register(
                    format!("{}:{}", spec.provider.name(), spec.symbols.join(",")),
                    FeedDescription {
                        kind: spec.provider.name().to_string(),
                        source: spec.url.clone(),
                        format: "websocket".to_string(),
                    },
                    &metrics,
                );
                (spec.clone(), status)
            })
            .collect();
        let indicators = IndicatorCache::new(settings.indicator_cache, Arc::clone(&metrics));
        let mut rules = RuleBook::new(
            &settings.alert_rules,
            Arc::clone(&settings.windows),
            Arc::clone(&settings.intervals),
        )
        .context("invalid alert rules")?;
        if let Some(path) = &settings.rules_file {
            if let Some(directory) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(directory)
                    .with_context(|| format!("cannot create {}", directory.display()))?;
            }
            rules = rules
                .persisted_in(path.clone())
                .context("cannot restore the alert rules edited over the API")?;
        }
        let (stream, _) = tokio::sync::broadcast::channel(STREAM_CAPACITY);
        let state = AppState {
            snapshots: Arc::new(SnapshotStore::new()),
            feeds,
            metrics,
            windows: Arc::clone(&settings.windows),
            intervals: Arc::clone(&settings.intervals),
            indicators,
            ready: Arc::new(AtomicBool::new(false)),
            rules: Arc::new(rules),
            alerts: Arc::new(AlertLog::new(RECENT_ALERTS)),
            stream,
            stream_throttle: settings.stream_throttle,
            stopping: CancellationToken::new(),
            api_token: settings.api_token.clone(),
            limits: crate::api::HttpLimits::new(settings.http_limits),
        };
        Ok(App {
            listener,
            settings,
            state,
            sources,
            live,
            demo_exchange,
        })
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The state the API reads (for in-process inspection).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs the pipeline and the API until `shutdown` completes, then stops everything.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            listener,
            settings,
            state,
            sources,
            live,
            demo_exchange,
        } = self;
        let cancel = state.stopping.clone();
        let metrics = Arc::clone(&state.metrics);
        let live_statuses: Vec<Arc<FeedStatus>> =
            live.iter().map(|(_, status)| Arc::clone(status)).collect();
        let tasks = TaskTracker::new();
        let (alerts_tx, sink_task) = crate::alerts::sink::start(
            &settings.sinks,
            state.stream.clone(),
            Arc::clone(&state.metrics),
        )
        .context("cannot start the alert sinks")?;
        let (events_tx, events_rx) = mpsc::channel(CORE_CHANNEL_CAPACITY);
        let (recorder, recorder_thread, trade_log, trade_log_thread) = match &settings.record {
            Some(directory) if !live.is_empty() => {
                let (frames, frames_thread) = crate::record::start(directory.clone())?;
                let (trades, trades_thread) =
                    crate::record::ticklog::start(crate::record::ticklog::TickLogSettings {
                        directory: directory.clone(),
                        fsync: settings.fsync,
                        feed_names: state
                            .feeds
                            .all()
                            .iter()
                            .map(|f| f.name().to_string())
                            .collect(),
                    })?;
                tracing::info!(directory = %directory.display(), fsync = ?settings.fsync, "recording the live feeds: raw frames, and every trade applied in the trade log");
                (
                    Some(frames),
                    Some(frames_thread),
                    Some(trades),
                    Some(trades_thread),
                )
            }
            _ => (None, None, None, None),
        };

        let engine = Engine::new(Arc::clone(&settings.windows), settings.allowed_lateness)
            .with_candles(Arc::clone(&settings.intervals), settings.candle_history)
            .with_dedup_capacity(settings.dedup_ids);
        let analytics = AnalyticsTask {
            engine,
            events: events_rx,
            publisher: SnapshotPublisher::new(Arc::clone(&state.snapshots)),
            feeds: Arc::clone(&state.feeds),
            metrics: Arc::clone(&state.metrics),
            evaluator: AlertEvaluator::new(Arc::clone(&state.rules)),
            alerts: alerts_tx,
            alert_log: Arc::clone(&state.alerts),
            pending_alerts: Vec::new(),
            stream: state.stream.clone(),
            live_clock: (!live.is_empty()).then(|| {
                LiveClock::new(
                    live.iter().map(|(_, status)| status.id()),
                    settings.allowed_lateness,
                )
            }),
            arrivals: Vec::new(),
            stream_batch: crate::ingest::StreamBatch::default(),
            log: trade_log.map(|sender| crate::ingest::TradeLog {
                sender,
                durable_before_publish: settings.fsync
                    == crate::record::ticklog::FsyncPolicy::Every,
                pending: Vec::new(),
            }),
        };
        spawn_reported(&tasks, "analytics", analytics.run(cancel.child_token()));
        if let Some(directory) = &settings.recover {
            // Applied before any live feed connects: the channel keeps them ahead of live trades.
            let feeds: Vec<(String, FeedId)> = live
                .iter()
                .map(|(_, status)| (status.name().to_string(), status.id()))
                .collect();
            let fallback = live.first().map_or(FeedId(0), |(_, status)| status.id());
            let recovered =
                crate::recover::recover(directory, recovery_horizon(&settings), &feeds, fallback)
                    .await
                    .context("cannot recover the recorded state")?;
            tracing::info!(
                directory = %directory.display(),
                parquet_files = recovered.files,
                log_segments = recovered.segments,
                torn_records = recovered.torn,
                damaged_records = recovered.corrupt,
                trades = recovered.trades.len(),
                older_than_horizon = recovered.older,
                "recovering the recorded state"
            );
            // What was recovered, and from where, is also a source in `/v1/feeds`.
            let status = state.feeds.register(
                format!("recover:{}", directory.display()),
                FeedDescription {
                    kind: "recovery".to_string(),
                    source: directory.display().to_string(),
                    format: format!(
                        "trade log: {} Parquet files, {} segments",
                        recovered.files, recovered.segments
                    ),
                },
                &state.metrics,
            );
            status.set_running();
            status.rows.inc_by(recovered.trades.len() as u64);
            status.malformed.inc_by(recovered.torn + recovered.corrupt);
            if recovered.older > 0 || recovered.torn + recovered.corrupt > 0 {
                status.set_error(format!(
                    "{} trades older than the state's horizon not applied; {} torn and {} damaged records skipped",
                    recovered.older, recovered.torn, recovered.corrupt
                ));
            }
            status.set_finished();
            let mut trades = recovered.trades.into_iter();
            loop {
                let batch: Vec<_> = trades.by_ref().take(crate::replay::BATCH_SIZE).collect();
                if batch.is_empty() {
                    break;
                }
                if events_tx.send(MergedEvent::Recovered(batch)).await.is_err() {
                    anyhow::bail!("the analytics task stopped during recovery");
                }
            }
        }
        if let Some(exchange) = demo_exchange {
            spawn_reported(&tasks, "mock-exchange", exchange.run(cancel.child_token()));
        }
        for (spec, status) in live {
            let connector = ConnectorSettings {
                recorder: recorder.clone(),
                reconnect: settings.reconnect.clone(),
                stale_after: settings.stale_after,
                cancel: cancel.child_token(),
                ..ConnectorSettings::default()
            };
            spawn_reported(
                &tasks,
                "feed",
                run_live(spec, connector, status, events_tx.clone()),
            );
        }
        if !sources.is_empty() {
            spawn_reported(
                &tasks,
                "progress",
                crate::replay::progress::report(
                    sources
                        .iter()
                        .map(|(_, status)| Arc::clone(status))
                        .collect(),
                    settings.progress,
                    cancel.child_token(),
                ),
            );
            spawn_reported(
                &tasks,
                "replay",
                run_replay(
                    sources,
                    settings.speed,
                    settings.max_pause,
                    events_tx,
                    cancel.child_token(),
                ),
            );
        } else {
            // Only the sources hold senders: once they stop, the analytics task sees the channel
            // close and knows it has drained everything.
            drop(events_tx);
        }
        tasks.close();

        state.ready.store(true, Ordering::Release);
        tracing::info!(address = %listener.local_addr()?, "serving the HTTP API");
        let ready = Arc::clone(&state.ready);
        let stop = cancel.clone();
        let router = api::router(state);
        // Small JSON answers: send them at once rather than waiting for Nagle's algorithm.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY on an HTTP connection");
            }
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                ready.store(false, Ordering::Release);
                stop.cancel();
            })
            .await
            .context("HTTP server failed")?;
        cancel.cancel();
        if tokio::time::timeout(DRAIN_DEADLINE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(deadline = ?DRAIN_DEADLINE, "tasks did not stop within the deadline");
        }
        // The analytics task has stopped and dropped its sender: the sinks drain and flush.
        match tokio::time::timeout(DRAIN_DEADLINE, sink_task).await {
            Ok(Ok(())) => tracing::debug!("alert sinks flushed"),
            Ok(Err(error)) => tracing::error!(%error, "the alert sink task failed"),
            Err(_) => {
                tracing::warn!(deadline = ?DRAIN_DEADLINE, "alert sinks did not drain within the deadline")
            }
        }
        // Every connector and the analytics task have stopped: the recorders drain what they
        // were sent, flush, and the trade log compacts its last segment.
        drop(recorder);
        let mut recorded = [0u64; 2];
        for (slot, what, thread) in [
            (0, "frames", recorder_thread),
            (1, "trades", trade_log_thread),
        ] {
            let Some(thread) = thread else { continue };
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(Ok(count))) => {
                    recorded[slot] = count;
                    tracing::info!(what, count, "recording flushed");
                }
                Ok(Ok(Err(error))) => tracing::error!(what, %error, "recording failed"),
                _ => tracing::error!(what, "a recorder thread panicked"),
            }
        }
        // The accounts of the run, once everything is drained: what came in, what was kept.
        let sink = |name: &str| {
            let labels = crate::metrics::SinkLabels { sink: name.into() };
            metrics.alerts_delivered.get_or_create(&labels).get()
        };
        let live_received: u64 = live_statuses.iter().map(|status| status.rows.get()).sum();
        tracing::info!(
            live_trades_received = live_received,
            trades_applied = metrics.trades_processed.get(),
            duplicates = metrics.trades_duplicate.get(),
            late = metrics.trades_late.get(),
            frames_recorded = recorded[0],
            trades_recorded = recorded[1],
            alerts_fired = metrics.alerts_fired.get(),
            alerts_written_to_file = sink("file"),
            "stopped"
        );
        Ok(())
    }
}

/// How far back `--recover` replays: the longest window or the longest interval's candle
/// history, whichever is longer, plus the allowed lateness.
fn recovery_horizon(settings: &Settings) -> i64 {
    let window = settings.windows.iter().map(|w| w.length).max().unwrap_or(0);
    let history = i64::try_from(settings.candle_history).unwrap_or(i64::MAX);
    let candles = settings
        .intervals
        .iter()
        .map(|interval| interval.length.saturating_mul(history))
        .max()
        .unwrap_or(0);
    window
        .max(candles)
        .saturating_add(settings.allowed_lateness)
}

/// Spawns `task` on the tracker; a panic is logged, never silent.
fn spawn_reported(
    tasks: &TaskTracker,
    name: &'static str,
    task: impl Future<Output = ()> + Send + 'static,
) {
    let inner = tokio::spawn(task);
    tasks.spawn(async move {
        if let Err(error) = inner.await
            && error.is_panic()
        {
            tracing::error!(task = name, %error, "task panicked");
        }
    });
}

/// Forwards one live feed's batches into the analytics channel.
#[tracing::instrument(name = "feed", skip_all, fields(feed = %status.name()))]
async fn run_live(
    spec: FeedSpec,
    connector: ConnectorSettings,
    status: Arc<FeedStatus>,
    events: mpsc::Sender<MergedEvent>,
) {
    status.set_running();
    let feed = status.id();
    let cancel = connector.cancel.clone();
    let mut batches = Box::pin(live_stream(spec, connector, feed, status));
    loop {
        // Once stopping, the connector closes its socket (a WebSocket close) and ends its
        // stream; a connector that does not end within the grace period is dropped.
        let batch = if cancel.is_cancelled() {
            match tokio::time::timeout(LIVE_STOP_GRACE, batches.next()).await {
                Ok(batch) => batch,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                _ = cancel.cancelled() => continue,
                batch = batches.next() => batch,
            }
        };
        let Some(mut batch) = batch else {
            return;
        };
        // Frames that have already arrived go in the same send: one channel hop (and one share
        // of a snapshot publication) per burst rather than per frame.
        let mut ended = false;
        while batch.trades.len() + batch.quotes.len() < LIVE_EVENTS_PER_SEND {
            match batches.next().now_or_never() {
                Some(Some(more)) => {
                    batch.trades.extend(more.trades);
                    batch.quotes.extend(more.quotes);
                }
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        let events_of_burst = [
            MergedEvent::Quotes(batch.quotes),
            MergedEvent::Trades(batch.trades),
        ];
        for event in events_of_burst {
            let empty = match &event {
                MergedEvent::Quotes(quotes) => quotes.is_empty(),
                MergedEvent::Trades(trades) | MergedEvent::Recovered(trades) => trades.is_empty(),
                MergedEvent::SourceEnded { .. } => false,
            };
            if empty {
                continue;
            }
            if events.send(event).await.is_err() {
                return;
            }
        }
        if ended {
            return;
        }
    }
}

/// The demo: the bundled sample in a mock exchange on a free loopback port, and the feed that
/// reads it through the real Binance connector.
async fn demo_exchange(settings: &Settings) -> anyhow::Result<(MockExchange, FeedSpec)> {
    let trades = load_all(ReplaySource::embedded_sample()).await?;
    let mut symbols: Vec<String> = trades.iter().map(|t| t.symbol.to_string()).collect();
    symbols.sort();
    symbols.dedup();
    let options = MockOptions {
        provider: Provider::Binance,
        speed: settings.speed,
        repeat: true,
        max_pause: settings.max_pause,
        ..MockOptions::default()
    };
    let exchange = MockExchange::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &trades, options)
        .await
        .context("cannot start the demo's mock exchange")?;
    let spec = FeedSpec {
        provider: Provider::Binance,
        url: exchange.url()?,
        symbols,
        channels: vec!["trade".to_string()],
        credentials: None,
    };
    Ok((exchange, spec))
}

/// Builds a mock exchange from the `mock-exchange` subcommand's options.
pub async fn mock_exchange_from_args(args: MockExchangeArgs) -> anyhow::Result<MockExchange> {
    let provider = Provider::from_name(&args.provider).with_context(|| {
        format!(
            "unknown provider {:?} (known: {})",
            args.provider,
            Provider::known_names()
        )
    })?;
    let speed: Speed = args.speed.parse()?;
    let listen = crate::config::parse_listen(&args.listen)?;
    let source = ReplaySource::from_path(&args.file)?;
    let max_pause = args
        .max_pause
        .as_deref()
        .map(|text| crate::config::parse_duration("max_pause", text))
        .transpose()?;
    let duration = |name: &'static str, text: &str| {
        crate::config::parse_duration(name, text).map_err(anyhow::Error::from)
    };
    let stall = args
        .stall
        .as_deref()
        .map(|text| {
            let (every, pause) = text
                .split_once(':')
                .with_context(|| format!("--stall wants N:DURATION, got {text:?}"))?;
            let every: u64 = every
                .parse()
                .with_context(|| format!("--stall: {every:?} is not a frame count"))?;
            anyhow::Ok((every, duration("stall", pause)?))
        })
        .transpose()?;
    let options = MockOptions {
        provider,
        speed,
        repeat: args.repeat,
        max_pause,
        shared_tape: args.shared_tape,
        faults: MockFaults {
            drop_every: args.drop_every,
            stall,
            garbage_every: args.garbage_every,
            refuse_for: args
                .refuse_for
                .as_deref()
                .map(|text| duration("refuse_for", text))
                .transpose()?,
            resend_on_connect: args.resend_on_connect,
        },
        ..MockOptions::default()
    };
    if source.format == crate::replay::ReplayFormat::RawFrames {
        let recording = crate::replay::read_text(&source)?;
        return Ok(MockExchange::bind_raw(listen, &recording, options).await?);
    }
    let trades = load_all(source).await?;
    Ok(MockExchange::bind(listen, &trades, options).await?)
}

type BoxedReplay = Pin<Box<dyn Stream<Item = ReplayItem> + Send>>;

/// Reads, merges and paces the replay sources into the analytics channel.
#[tracing::instrument(name = "replay", skip_all)]
async fn run_replay(
    sources: Vec<(ReplaySource, Arc<FeedStatus>)>,
    speed: Speed,
    max_pause: Option<Duration>,
    events: mpsc::Sender<MergedEvent>,
    cancel: CancellationToken,
) {
    let streams: Vec<(FeedId, BoxedReplay)> = sources
        .into_iter()
        .map(|(source, status)| {
            tracing::info!(source = %source.display_name(), format = source.format.name(), "replay started");
            status.set_running();
            let feed = status.id();
            let stream: BoxedReplay = Box::pin(replay_stream(source, feed, status));
            (feed, stream)
        })
        .collect();
    let merged = Box::pin(merge_by_event_time(streams));
    let mut paced = Box::pin(pace(merged, speed, max_pause));
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = paced.next() => event,
        };
        let Some(event) = event else {
            return;
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
