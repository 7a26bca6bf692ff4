//! The one place that wires the service: it builds every task and channel, and nothing else
//! (the task bodies live with their stage).
//!
//! ```text
//! sources (recovery, live feeds, replays) ──(CORE_CHANNEL_CAPACITY events: backpressure)──►
//!   analytics task (Engine, alerts, trade log) ──► snapshots ──► HTTP API (axum)
//!                                              └─► alert sinks, live stream
//! ```
//!
//! [`App::build`] validates the sources and binds the listener (port 0 allowed, so tests can run
//! many instances); [`App::run_until_stopped`] spawns the tasks, serves until the shutdown future
//! completes, then cancels every task through one token and waits for them (bounded by
//! [`DRAIN_DEADLINE`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::alerts::sink::{AlertLog, RECENT_ALERTS};
use crate::alerts::{AlertEvaluator, RuleBook};
use crate::analytics::Engine;
use crate::analytics::snapshot::{SnapshotPublisher, SnapshotStore};
use crate::api::{self, AppState, SharedState};
use crate::cluster::Role;
use crate::config::Settings;
use crate::fanout::STREAM_CAPACITY;
use crate::health::FeedRegistry;
use crate::indicators::cache::IndicatorCache;
use crate::ingest::{AnalyticsTask, Outlets};
use crate::metrics::Metrics;
use crate::record::Recorders;
use crate::shutdown::{DRAIN_DEADLINE, spawn_reported, spawn_reported_on_thread};
use crate::sources::{CORE_CHANNEL_CAPACITY, Sources};

/// A built, not yet running service.
pub struct App {
    listener: TcpListener,
    settings: Settings,
    state: AppState,
    sources: Sources,
}

impl App {
    /// Validates the settings' sources, binds the HTTP listener and registers the feeds.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        // TLS for wss:// feeds: rustls with the ring provider, whatever else the build links.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for source in &settings.sources.replays {
            source.check()?;
        }
        let listener = TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http.listen))?;
        let address = listener.local_addr()?;
        if !address.ip().is_loopback() && settings.http.api_token.is_none() {
            tracing::warn!(%address, "the HTTP API listens beyond loopback without an API token: anyone on the network can read it and edit the alert rules (set {})", crate::config::API_TOKEN_ENV);
        }
        let metrics = Arc::new(Metrics::new());
        let feeds = Arc::new(FeedRegistry::new());
        let source_settings = settings.source_settings();
        let sources = Sources::register(
            &settings.sources.replays,
            settings.sources.feeds.clone(),
            settings.sources.demo,
            source_settings,
            &feeds,
            &metrics,
        )
        .await?;
        let rules = RuleBook::open(
            &settings.alerts.rules,
            Arc::clone(&settings.analytics.windows),
            Arc::clone(&settings.analytics.intervals),
            settings.recording.rules_file.as_deref(),
        )
        .context("cannot load the alert rules")?;
        let state = AppState::new(SharedState {
            snapshots: Arc::new(SnapshotStore::new()),
            feeds,
            indicators: IndicatorCache::new(settings.indicators, Arc::clone(&metrics)),
            metrics,
            windows: Arc::clone(&settings.analytics.windows),
            intervals: Arc::clone(&settings.analytics.intervals),
            candle_history: settings.analytics.candle_history,
            ready: Arc::new(AtomicBool::new(false)),
            rules: Arc::new(rules),
            alerts: Arc::new(AlertLog::new(RECENT_ALERTS)),
            stream: tokio::sync::broadcast::channel(STREAM_CAPACITY).0,
            remote_stats: Arc::default(),
            stream_throttle: settings.http.stream_throttle,
            stall: settings.http.server.stall,
            stopping: tokio_util::sync::CancellationToken::new(),
            api_token: settings.http.api_token.clone(),
            limits: crate::api::HttpLimits::new(settings.http.limits),
            cors: settings.http.cors.clone(),
            cluster: settings
                .cluster
                .as_ref()
                .filter(|cluster| cluster.role == Role::Node)
                .map(|_| Arc::new(crate::cluster::lease::LeaseShared::default())),
            history: (!settings.recording.history.is_empty()).then(|| {
                crate::api::history::HistoryPool::with_defaults(crate::history::HistoryStore::new(
                    settings.recording.history.clone(),
                ))
            }),
        });
        Ok(App {
            listener,
            settings,
            state,
            sources,
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
        } = self;
        let cancel = state.stopping.clone();
        let live = sources.live();
        let tasks = TaskTracker::new();
        let metrics = Arc::clone(&state.metrics);
        let (alerts, sink_task) = crate::alerts::sink::start(
            &settings.alerts.sinks,
            state.stream.clone(),
            Arc::clone(&metrics),
        )
        .context("cannot start the alert sinks")?;
        let recorders = match &settings.recording.record {
            Some(directory) if !live.is_empty() => {
                let names = state
                    .feeds
                    .all()
                    .iter()
                    .map(|f| f.name().to_string())
                    .collect();
                let recorders = Recorders::start(directory, settings.recording.fsync, names)?;
                tracing::info!(directory = %directory.display(), fsync = ?settings.recording.fsync, "recording the live feeds: raw frames, and every trade applied in the trade log");
                Some(recorders)
            }
            _ => None,
        };
        let (events_tx, events_rx) = mpsc::channel(CORE_CHANNEL_CAPACITY);
        // The core, as configured: one per process, or one per partition an analytics node owns.
        let analytics = settings.analytics.clone();
        let make_engine: crate::cluster::node::EngineFactory = Arc::new(move || {
            Engine::new(Arc::clone(&analytics.windows), analytics.allowed_lateness)
                .with_candles(Arc::clone(&analytics.intervals), analytics.candle_history)
                .with_dedup_capacity(analytics.dedup_ids)
        });
        let (recorder, recorder_threads) = match settings.cluster.clone() {
            None => {
                let engine = make_engine();
                let outlets = Outlets {
                    publisher: SnapshotPublisher::new(Arc::clone(&state.snapshots)),
                    feeds: Arc::clone(&state.feeds),
                    metrics: Arc::clone(&metrics),
                    alerts,
                    alert_log: Arc::clone(&state.alerts),
                    stream: state.stream.clone(),
                };
                let evaluator = AlertEvaluator::new(Arc::clone(&state.rules));
                let mut analytics = AnalyticsTask::new(engine, evaluator, events_rx, outlets)
                    .with_live_clock(&sources.live_ids(), settings.analytics.allowed_lateness);
                let recording = match recorders {
                    Some(Recorders {
                        frames,
                        trades,
                        threads,
                    }) => {
                        let durable =
                            settings.recording.fsync == crate::record::ticklog::FsyncPolicy::Every;
                        analytics = analytics.with_trade_log(trades, durable);
                        (Some(frames), Some(threads))
                    }
                    None => (None, None),
                };
                spawn_reported_on_thread(&tasks, "analytics", analytics.run(cancel.child_token()))?;
                recording
            }
            Some(cluster) if cluster.role == Role::Ingest => {
                // An ingest fires no alerts: its sink task ends as soon as it is asked to.
                drop(alerts);
                let ingest = crate::cluster::IngestStart {
                    cluster,
                    horizon: crate::cluster::horizon(settings.recovery_horizon()),
                    lateness: settings.analytics.allowed_lateness,
                    events: events_rx,
                    feeds: Arc::clone(&state.feeds),
                    metrics: Arc::clone(&metrics),
                    live: sources.live_ids(),
                    windows: Arc::clone(&settings.analytics.windows),
                    intervals: Arc::clone(&settings.analytics.intervals),
                }
                .run(cancel.child_token());
                spawn_reported_on_thread(&tasks, "publisher", ingest)?;
                // The stream is the trade log: only raw frames are recorded here.
                match recorders {
                    Some(Recorders {
                        frames, threads, ..
                    }) => (Some(frames), Some(threads)),
                    None => (None, None),
                }
            }
            Some(cluster) => {
                drop(events_rx);
                let node = crate::cluster::NodeStart {
                    cluster,
                    horizon: crate::cluster::horizon(settings.recovery_horizon()),
                    engine: Arc::clone(&make_engine),
                    http: listener.local_addr()?.to_string(),
                    rules: Arc::clone(&state.rules),
                    snapshots: Arc::clone(&state.snapshots),
                    feeds: Arc::clone(&state.feeds),
                    metrics: Arc::clone(&metrics),
                    alerts,
                    alert_log: Arc::clone(&state.alerts),
                    stream: state.stream.clone(),
                    leases: state.cluster.clone().unwrap_or_default(),
                    stats: {
                        let (store, windows) =
                            (Arc::clone(&state.snapshots), Arc::clone(&state.windows));
                        Arc::new(move |snapshot| {
                            crate::api::stream::stats_json(snapshot, &store, &windows)
                        })
                    },
                    remote_stats: Arc::clone(&state.remote_stats),
                };
                spawn_reported(&tasks, "cluster-node", node.run(cancel.child_token()));
                (None, None)
            }
        };
        // Only the sources hold senders: once they stop, the analytics task sees the channel
        // close and knows it has drained everything.
        let feeds = Arc::clone(&state.feeds);
        sources
            .start(events_tx, recorder, &feeds, &metrics, &tasks, &cancel)
            .await?;
        tasks.close();

        state.ready.store(true, Ordering::Release);
        tracing::info!(address = %listener.local_addr()?, "serving the HTTP API");
        let ready = Arc::clone(&state.ready);
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown => {}
                () = stop.cancelled() => {}
            }
            ready.store(false, Ordering::Release);
            stop.cancel();
        });
        api::serve(
            listener,
            state,
            settings.http.server,
            cancel.clone(),
            DRAIN_DEADLINE,
        )
        .await;
        cancel.cancel();
        if tokio::time::timeout(DRAIN_DEADLINE, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(deadline = ?DRAIN_DEADLINE, "tasks did not stop within the deadline");
        }
        // The analytics task has stopped and dropped its sender: the sinks drain and flush.
        crate::alerts::sink::drain(sink_task, DRAIN_DEADLINE).await;
        // Every connector and the analytics task have stopped: the recorders drain and flush.
        let recorded = match recorder_threads {
            Some(threads) => threads.finish().await,
            None => [0, 0],
        };
        crate::metrics::report_run(&metrics, &live, recorded);
        Ok(())
    }
}
