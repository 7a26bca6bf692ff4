//! Prometheus metrics: one registry with every counter a user would ask about, served as text at
//! `GET /metrics`.
//!
//! Counters are shared handles (atomics): the analytics task adds per batch, sources add per
//! batch, the HTTP layer adds per request. Nothing here locks on the hot path.

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
    /// Why the connection ended (`crate::feeds::Disconnect`'s names).
    pub reason: String,
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
    /// HTTP requests served.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Symbols known.
    pub symbols: Gauge,
    /// The stream clock, epoch milliseconds.
    pub stream_clock_ms: Gauge,
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
    /// The longest such time seen, seconds.
    pub freshness_max: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Events waiting in the channel into the analytics core (at its last publication).
    pub core_queue_depth: Gauge,
    /// Alerts waiting in the channel out of the core (at its last publication).
    pub alert_queue_depth: Gauge,
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
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tickstream");
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
            http_requests: Family::default(),
            symbols: Gauge::default(),
            stream_clock_ms: Gauge::default(),
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
        };
        let counters = [
            (
                "trades_processed",
                "Trades applied by the analytics core",
                &metrics.trades_processed,
            ),
            (
                "trades_late",
                "Trades dropped because they were older than the stream clock by more than the allowed lateness",
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
            "The longest time from a live frame's arrival to its statistics being visible",
            metrics.freshness_max.clone(),
        );
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
            "stream_clock_ms",
            "The stream clock (largest event time seen), epoch milliseconds",
            metrics.stream_clock_ms.clone(),
        );
        Metrics {
            registry,
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
