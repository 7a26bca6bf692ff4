//! Prometheus metrics: one registry with every counter a user would ask about, served as text at
//! `GET /metrics`.
//!
//! Counters are shared handles (atomics): the analytics task adds per batch, sources add per
//! batch, the HTTP layer adds per request. Nothing here locks on the hot path. The process's own
//! figures (`process_*`: resident memory, CPU seconds, open file descriptors, start time) are
//! read when scraped, as Prometheus' client libraries name them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of per-feed counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FeedLabels {
    /// The feed's name as `/v1/feeds` shows it.
    pub feed: String,
}

/// Labels of the per-feed disconnect counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DisconnectLabels {
    /// The feed's name as `/v1/feeds` shows it.
    pub feed: String,
    /// Why the connection ended (`crate::health::Disconnect`'s names).
    pub reason: String,
}

/// Labels of the per-feed state gauge: one series per state, 1 for the current one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FeedStateLabels {
    /// The feed's short name.
    pub feed: String,
    /// A state as `/v1/feeds` names it.
    pub state: String,
}

/// Labels of the build information gauge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BuildLabels {
    /// The crate version.
    pub version: String,
}

/// Labels of the HTTP request duration histogram.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// Request method.
    pub method: String,
    /// The matched route, or `unmatched`.
    pub route: String,
}

/// Upper bounds of the HTTP request duration buckets, seconds.
pub const HTTP_DURATION_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    10.0,
];

fn http_duration_histogram() -> Histogram {
    Histogram::new(HTTP_DURATION_BUCKETS)
}

/// The largest value observed over a recent interval: the current period's and the previous
/// one's, so a value stays visible for one to two periods, then goes.
#[derive(Debug)]
pub struct RecentMax {
    period: Duration,
    state: Mutex<RecentMaxState>,
}

#[derive(Debug)]
struct RecentMaxState {
    started: Instant,
    current: f64,
    previous: f64,
}

impl RecentMax {
    /// A maximum over periods of `period`.
    pub fn new(period: Duration) -> Self {
        RecentMax {
            period,
            state: Mutex::new(RecentMaxState {
                started: Instant::now(),
                current: 0.0,
                previous: 0.0,
            }),
        }
    }

    /// Takes `value` observed at `now`; returns the recent maximum.
    pub fn observe(&self, value: f64, now: Instant) -> f64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(state.started);
        if elapsed >= self.period * 2 {
            state.previous = 0.0;
            state.current = 0.0;
            state.started = now;
        } else if elapsed >= self.period {
            state.previous = state.current;
            state.current = 0.0;
            state.started += self.period;
        }
        state.current = state.current.max(value);
        state.current.max(state.previous)
    }

    /// Forgets every value (for benches that measure one stretch).
    pub fn reset(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.current = 0.0;
        state.previous = 0.0;
        state.started = Instant::now();
    }
}

/// How long a freshness maximum stays in `tickstream_freshness_max_seconds`: one to two of these.
pub const FRESHNESS_MAX_PERIOD: Duration = Duration::from_secs(30);

/// The process's own metrics, read from the operating system at each scrape.
#[derive(Debug)]
struct ProcessCollector {
    system: Mutex<sysinfo::System>,
    pid: Option<sysinfo::Pid>,
}

impl ProcessCollector {
    fn new() -> Self {
        ProcessCollector {
            system: Mutex::new(sysinfo::System::new()),
            pid: sysinfo::get_current_pid().ok(),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let Some(pid) = self.pid else {
            return Ok(());
        };
        let (memory, cpu_ms, start) = {
            let mut system = self.system.lock().unwrap_or_else(|p| p.into_inner());
            system.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[pid]),
                true,
                sysinfo::ProcessRefreshKind::nothing()
                    .with_memory()
                    .with_cpu(),
            );
            let Some(process) = system.process(pid) else {
                return Ok(());
            };
            (
                process.memory(),
                process.accumulated_cpu_time(),
                process.start_time(),
            )
        };
        let gauge = |encoder: &mut DescriptorEncoder, name, help, value: f64| {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)
        };
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            memory as f64,
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, seconds",
            start as f64,
        )?;
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                fds.count() as f64,
            )?;
        }
        let metric = encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, seconds",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(cpu_ms as f64 / 1000.0).encode(metric)
    }
}

/// Labels of the HTTP request counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HttpLabels {
    /// Request method.
    pub method: String,
    /// The matched route (`/v1/symbols/{symbol}/stats`), or `unmatched`.
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of per-sink alert counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SinkLabels {
    /// `log`, `file`, `webhook`, or `core` (the channel out of the core).
    pub sink: String,
}

/// Labels of closed HTTP connections.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CloseLabels {
    /// `header_timeout`, `idle` or `stalled`.
    pub reason: &'static str,
}

/// Every metric of the service.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Trades applied by the analytics core.
    pub trades_processed: Counter,
    /// Trades dropped as late.
    pub trades_late: Counter,
    /// Trades dropped as duplicates.
    pub trades_duplicate: Counter,
    /// Batches processed by the analytics core.
    pub core_batches: Counter,
    /// Rows read, per feed.
    pub feed_rows: Family<FeedLabels, Counter>,
    /// Trades applied, per feed.
    pub feed_trades: Family<FeedLabels, Counter>,
    /// Malformed rows, per feed.
    pub feed_malformed: Family<FeedLabels, Counter>,
    /// Late trades, per feed.
    pub feed_late: Family<FeedLabels, Counter>,
    /// Duplicate trades, per feed.
    pub feed_duplicates: Family<FeedLabels, Counter>,
    /// Trades whose id was older than the duplicate filter's horizon, per feed.
    pub feed_ids_beyond_horizon: Family<FeedLabels, Counter>,
    /// Live feeds' ended connections, per feed and reason.
    pub feed_disconnects: Family<DisconnectLabels, Counter>,
    /// Live feeds' reconnections, per feed.
    pub feed_reconnects: Family<FeedLabels, Counter>,
    /// Live feeds' latest receive − exchange time, seconds, per feed.
    pub feed_lag: Family<FeedLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Each feed's state: 1 for the current one, 0 for the others.
    pub feed_state: Family<FeedStateLabels, Gauge>,
    /// HTTP requests served.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP connections open.
    pub http_connections: Gauge,
    /// HTTP connections refused (503) because the bound was reached.
    pub http_connections_refused: Counter,
    /// HTTP connections the service closed, per reason.
    pub http_connections_closed: Family<CloseLabels, Counter>,
    /// Errors accepting HTTP connections (e.g. out of file descriptors).
    pub http_accept_errors: Counter,
    /// HTTP request durations, per method and route.
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Symbols known.
    pub symbols: Gauge,
    /// The stream clock, seconds since the epoch.
    pub stream_clock: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The largest recent freshness, behind `freshness_max`.
    pub freshness_recent: RecentMax,
    /// Indicator requests answered from the cache (including those that waited for another
    /// reader's computation of the same key).
    pub indicator_cache_hits: Counter,
    /// Indicator requests that computed their result.
    pub indicator_cache_misses: Counter,
    /// Indicator results removed from the cache by its size or time bound.
    pub indicator_cache_evictions: Counter,
    /// Indicator computations run (one per miss).
    pub indicator_computations: Counter,
    /// Alerts fired by the rules.
    pub alerts_fired: Counter,
    /// Alerts a sink (or the channel out of the core) had no room for.
    pub alerts_dropped: Family<SinkLabels, Counter>,
    /// Alerts delivered, per sink.
    pub alerts_delivered: Family<SinkLabels, Counter>,
    /// Alerts a sink failed to deliver (after its retries), per sink.
    pub alert_sink_failures: Family<SinkLabels, Counter>,
    /// Webhook attempts retried.
    pub webhook_retries: Counter,
    /// Messages live-stream clients skipped because they read too slowly.
    pub stream_lagged: Counter,
    /// Live-stream clients connected.
    pub stream_clients: Gauge,
    /// Seconds from a live frame's arrival to its trade's statistics being published to readers.
    pub freshness: Histogram,
    /// The longest such time over the last 30 to 60 seconds.
    pub freshness_max: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Events waiting in the channel into the analytics core (at its last publication).
    pub core_queue_depth: Gauge,
    /// Alerts waiting in the channel out of the core (at its last publication).
    pub alert_queue_depth: Gauge,
    /// Cluster (ingest): messages acknowledged by JetStream.
    pub cluster_published: Counter,
    /// Cluster (ingest): messages JetStream's duplicate window dropped (a resend that had landed).
    pub cluster_duplicates: Counter,
    /// Cluster (ingest): messages sent again after a failed or unacknowledged publish.
    pub cluster_resent: Counter,
    /// Cluster (ingest): times the publish buffer was full and the sources were made to wait.
    pub cluster_buffer_full: Counter,
    /// Cluster (ingest): messages received from the sources and not yet acknowledged.
    pub cluster_buffered: Gauge,
    /// Cluster (node): messages consumed from the stream.
    pub cluster_consumed: Counter,
    /// Cluster (node): messages that were not valid ticks (counted and skipped).
    pub cluster_malformed: Counter,
    /// Cluster (node): partitions this node owns.
    pub cluster_partitions_owned: Gauge,
    /// Cluster (node): partitions taken (each rebuilt from the stream).
    pub cluster_partitions_taken: Counter,
    /// Cluster (node): partitions given up (to another node, or when a lease was lost).
    pub cluster_partitions_released: Counter,
}

/// Upper bounds of the freshness histogram's buckets, seconds: fine below a millisecond, where
/// the service should be.
pub const FRESHNESS_BUCKETS: [f64; 16] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_2, 0.000_3, 0.000_5, 0.000_75, 0.001, 0.002, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 1.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Counts a connection the service closed, by reason.
    pub fn http_closed(&self, reason: &'static str) {
        self.http_connections_closed
            .get_or_create(&CloseLabels { reason })
            .inc();
    }

    /// A registry with every metric registered.
    pub fn new() -> Self {
        // The process's own metrics keep their conventional names (`process_*`); the service's
        // are under `tickstream_`.
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector::new()));
        let registry = root.sub_registry_with_prefix("tickstream");
        let metrics = Metrics {
            registry: Registry::default(),
            trades_processed: Counter::default(),
            trades_late: Counter::default(),
            trades_duplicate: Counter::default(),
            core_batches: Counter::default(),
            feed_rows: Family::default(),
            feed_trades: Family::default(),
            feed_malformed: Family::default(),
            feed_late: Family::default(),
            feed_duplicates: Family::default(),
            feed_ids_beyond_horizon: Family::default(),
            feed_disconnects: Family::default(),
            feed_reconnects: Family::default(),
            feed_lag: Family::default(),
            feed_state: Family::default(),
            http_duration: Family::new_with_constructor(http_duration_histogram),
            stream_clock: Gauge::default(),
            freshness_recent: RecentMax::new(FRESHNESS_MAX_PERIOD),
            http_requests: Family::default(),
            http_connections: Gauge::default(),
            http_connections_refused: Counter::default(),
            http_connections_closed: Family::default(),
            http_accept_errors: Counter::default(),
            symbols: Gauge::default(),
            indicator_cache_hits: Counter::default(),
            indicator_cache_misses: Counter::default(),
            indicator_cache_evictions: Counter::default(),
            indicator_computations: Counter::default(),
            alerts_fired: Counter::default(),
            alerts_dropped: Family::default(),
            alerts_delivered: Family::default(),
            alert_sink_failures: Family::default(),
            webhook_retries: Counter::default(),
            stream_lagged: Counter::default(),
            stream_clients: Gauge::default(),
            freshness: Histogram::new(FRESHNESS_BUCKETS),
            freshness_max: Gauge::default(),
            core_queue_depth: Gauge::default(),
            alert_queue_depth: Gauge::default(),
            cluster_published: Counter::default(),
            cluster_duplicates: Counter::default(),
            cluster_resent: Counter::default(),
            cluster_buffer_full: Counter::default(),
            cluster_buffered: Gauge::default(),
            cluster_consumed: Counter::default(),
            cluster_malformed: Counter::default(),
            cluster_partitions_owned: Gauge::default(),
            cluster_partitions_taken: Counter::default(),
            cluster_partitions_released: Counter::default(),
        };
        let counters = [
            (
                "trades_processed",
                "Trades applied by the analytics core",
                &metrics.trades_processed,
            ),
            (
                "trades_late",
                "Trades dropped because they were older than the event-time clock by more than the allowed lateness",
                &metrics.trades_late,
            ),
            (
                "trades_duplicate",
                "Trades dropped because their feed had delivered the same trade id before",
                &metrics.trades_duplicate,
            ),
            (
                "core_batches",
                "Batches of events processed by the analytics core",
                &metrics.core_batches,
            ),
            (
                "indicator_cache_hits",
                "Indicator requests answered from the cache, including readers that waited for another's computation",
                &metrics.indicator_cache_hits,
            ),
            (
                "indicator_cache_misses",
                "Indicator requests that computed their result",
                &metrics.indicator_cache_misses,
            ),
            (
                "indicator_cache_evictions",
                "Indicator results removed from the cache by its size or time-to-live bound",
                &metrics.indicator_cache_evictions,
            ),
            (
                "indicator_computations",
                "Indicator computations run",
                &metrics.indicator_computations,
            ),
            (
                "alerts_fired",
                "Alerts fired by the rules",
                &metrics.alerts_fired,
            ),
            (
                "webhook_retries",
                "Webhook delivery attempts retried",
                &metrics.webhook_retries,
            ),
            (
                "stream_lagged",
                "Messages live-stream clients skipped because they read too slowly",
                &metrics.stream_lagged,
            ),
            (
                "http_connections_refused",
                "HTTP connections refused with 503 because as many as allowed were open",
                &metrics.http_connections_refused,
            ),
            (
                "http_accept_errors",
                "Errors accepting HTTP connections (such as running out of file descriptors)",
                &metrics.http_accept_errors,
            ),
            (
                "cluster_published",
                "Messages acknowledged by JetStream (ingest)",
                &metrics.cluster_published,
            ),
            (
                "cluster_duplicates",
                "Messages JetStream's duplicate window dropped: resends that had landed (ingest)",
                &metrics.cluster_duplicates,
            ),
            (
                "cluster_resent",
                "Messages sent again after a failed or unacknowledged publish (ingest)",
                &metrics.cluster_resent,
            ),
            (
                "cluster_buffer_full",
                "Times the publish buffer was full and the sources waited (ingest)",
                &metrics.cluster_buffer_full,
            ),
            (
                "cluster_consumed",
                "Messages consumed from the stream (node)",
                &metrics.cluster_consumed,
            ),
            (
                "cluster_malformed",
                "Messages on the stream that were not valid ticks, skipped (node)",
                &metrics.cluster_malformed,
            ),
            (
                "cluster_partitions_taken",
                "Partitions this node took, each rebuilt from the stream (node)",
                &metrics.cluster_partitions_taken,
            ),
            (
                "cluster_partitions_released",
                "Partitions this node gave up (node)",
                &metrics.cluster_partitions_released,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        let families = [
            (
                "feed_rows",
                "Rows or frames read, per feed",
                &metrics.feed_rows,
            ),
            (
                "feed_trades",
                "Trades applied, per feed",
                &metrics.feed_trades,
            ),
            (
                "feed_malformed",
                "Malformed rows or frames, per feed",
                &metrics.feed_malformed,
            ),
            (
                "feed_late",
                "Late trades dropped, per feed",
                &metrics.feed_late,
            ),
            (
                "feed_duplicates",
                "Duplicate trades dropped, per feed",
                &metrics.feed_duplicates,
            ),
            (
                "feed_ids_beyond_horizon",
                "Trades applied whose id was older than every id the duplicate filter remembers (a resend that old would not be caught), per feed",
                &metrics.feed_ids_beyond_horizon,
            ),
        ];
        for (name, help, family) in families {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "feed_disconnects",
            "Live feed connections ended (or never opened), per feed and reason",
            metrics.feed_disconnects.clone(),
        );
        let sink_families = [
            (
                "alerts_dropped",
                "Alerts dropped because a sink's queue (or the channel out of the core) was full",
                &metrics.alerts_dropped,
            ),
            (
                "alerts_delivered",
                "Alerts delivered, per sink",
                &metrics.alerts_delivered,
            ),
            (
                "alert_sink_failures",
                "Alerts a sink failed to deliver after its retries, per sink",
                &metrics.alert_sink_failures,
            ),
        ];
        for (name, help, family) in sink_families {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "stream_clients",
            "Live-stream clients connected",
            metrics.stream_clients.clone(),
        );
        registry.register(
            "http_connections",
            "HTTP connections open",
            metrics.http_connections.clone(),
        );
        registry.register(
            "http_connections_closed",
            "HTTP connections the service closed: a request head too slow (header_timeout), idle beyond the keep-alive timeout (idle), or a client not reading (stalled)",
            metrics.http_connections_closed.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests served, by method, route and status",
            metrics.http_requests.clone(),
        );
        registry.register("symbols", "Symbols known", metrics.symbols.clone());
        registry.register(
            "freshness_seconds",
            "Time from a live frame's arrival to its trade's statistics being visible to readers",
            metrics.freshness.clone(),
        );
        registry.register(
            "freshness_max_seconds",
            "The longest time from a live frame's arrival to its statistics being visible, over the last 30 to 60 seconds",
            metrics.freshness_max.clone(),
        );
        registry.register(
            "feed_reconnects",
            "Live feed reconnections, per feed",
            metrics.feed_reconnects.clone(),
        );
        registry.register(
            "feed_lag_seconds",
            "Receive time minus exchange time of a live feed's latest trade, seconds",
            metrics.feed_lag.clone(),
        );
        registry.register(
            "feed_state",
            "Each feed's state: 1 for the current one (starting, running, finished, failed, connecting, subscribing, live, backoff, circuit_open)",
            metrics.feed_state.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request durations, by method and route",
            metrics.http_duration.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("build_info", "The build: its version (always 1)", build);
        registry.register(
            "core_queue_depth",
            "Events waiting in the bounded channel into the analytics core",
            metrics.core_queue_depth.clone(),
        );
        registry.register(
            "alert_queue_depth",
            "Alerts waiting in the bounded channel out of the analytics core",
            metrics.alert_queue_depth.clone(),
        );
        registry.register(
            "cluster_buffered",
            "Messages received from the sources and not yet acknowledged by JetStream (ingest)",
            metrics.cluster_buffered.clone(),
        );
        registry.register(
            "cluster_partitions_owned",
            "Partitions this node owns (node)",
            metrics.cluster_partitions_owned.clone(),
        );
        registry.register(
            "stream_clock_timestamp_seconds",
            "The stream clock (the time every answer is as of), seconds since the epoch",
            metrics.stream_clock.clone(),
        );
        Metrics {
            registry: root,
            ..metrics
        }
    }

    /// The metrics in the Prometheus (OpenMetrics) text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Logs the accounts of a run once everything is drained: what came in, what was kept, what was
/// recorded (`recorded`: frames and trades written).
pub fn report_run(
    metrics: &Metrics,
    live: &[std::sync::Arc<crate::health::FeedStatus>],
    recorded: [u64; 2],
) {
    let sink = |name: &str| {
        let labels = SinkLabels { sink: name.into() };
        metrics.alerts_delivered.get_or_create(&labels).get()
    };
    let live_received: u64 = live.iter().map(|status| status.rows.get()).sum();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_registered_counters() {
        let metrics = Metrics::new();
        metrics.trades_processed.inc_by(3);
        metrics
            .feed_rows
            .get_or_create(&FeedLabels { feed: "a".into() })
            .inc();
        let text = metrics.encode().expect("encodes");
        assert!(
            text.contains("tickstream_trades_processed_total 3"),
            "{text}"
        );
        assert!(
            text.contains("tickstream_feed_rows_total{feed=\"a\"} 1"),
            "{text}"
        );
    }
}
