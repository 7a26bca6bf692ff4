//! Memoized indicator results: a [`moka`] cache shared by every HTTP reader.
//!
//! A result is keyed by symbol, interval, indicator with its parameters, and the
//! [`ClosedSequence`] of the candles it was computed from, so it is valid exactly until the next
//! candle closes (or a late trade amends a closed one): a new sequence is a new key, and the old
//! entry is never read again and ages out. Concurrent readers of a missing key are coalesced by
//! moka into one computation (single flight); the others wait for it. Eviction is LRU (rather
//! than moka's default frequency-based admission, which could keep superseded entries that were
//! read often in place of the current ones), bounded by entry count and time to live.
//!
//! Hits, misses (= computations) and evictions are counted in [`Metrics`].

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;

use crate::analytics::candles::ClosedSequence;
use crate::indicators::{Indicator, IndicatorSeries};
use crate::metrics::Metrics;
use crate::model::Symbol;

/// Default capacity of the indicator cache, in results (each a few kilobytes at most).
pub const DEFAULT_INDICATOR_CACHE_CAPACITY: u64 = 10_000;
/// Default time an indicator result may stay cached; results are keyed by the closed candles
/// they were computed from, so this only bounds how long unused ones stay.
pub const DEFAULT_INDICATOR_CACHE_TTL: Duration = Duration::from_secs(300);

/// Bounds of the indicator cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Most results held (0: nothing is kept, every request computes).
    pub capacity: u64,
    /// Longest time a result stays.
    pub time_to_live: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            capacity: DEFAULT_INDICATOR_CACHE_CAPACITY,
            time_to_live: DEFAULT_INDICATOR_CACHE_TTL,
        }
    }
}

/// What a cached result is computed from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The symbol.
    pub symbol: Symbol,
    /// Index of the interval among the configured ones.
    pub interval: usize,
    /// The indicator and its parameters.
    pub indicator: Indicator,
    /// Which closed candles.
    pub sequence: ClosedSequence,
}

/// The shared indicator cache.
#[derive(Clone)]
pub struct IndicatorCache {
    cache: Cache<CacheKey, Arc<IndicatorSeries>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for IndicatorCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndicatorCache")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl IndicatorCache {
    /// A cache bounded by `settings`, counting into `metrics`.
    pub fn new(settings: CacheSettings, metrics: Arc<Metrics>) -> Self {
        let evictions = metrics.indicator_cache_evictions.clone();
        let cache = Cache::builder()
            .max_capacity(settings.capacity)
            .time_to_live(settings.time_to_live)
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(move |_key, _value, cause: RemovalCause| {
                if cause.was_evicted() {
                    evictions.inc();
                }
            })
            .build();
        IndicatorCache { cache, metrics }
    }

    /// The result for `key`, computed by `compute` over the candles it names if no reader has
    /// computed it yet; concurrent callers with the same key share one computation.
    pub async fn get_or_compute(
        &self,
        key: CacheKey,
        compute: impl FnOnce() -> IndicatorSeries,
    ) -> Arc<IndicatorSeries> {
        let metrics = &self.metrics;
        let entry = self
            .cache
            .entry(key)
            .or_insert_with(async move {
                metrics.indicator_computations.inc();
                Arc::new(compute())
            })
            .await;
        if entry.is_fresh() {
            metrics.indicator_cache_misses.inc();
        } else {
            metrics.indicator_cache_hits.inc();
        }
        entry.into_value()
    }

    /// Entries held (approximate: moka applies pending work lazily).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Applies moka's pending maintenance (evictions), for tests and metrics.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn key(symbol: &str, last_start: i64) -> CacheKey {
        CacheKey {
            symbol: Symbol::new(symbol),
            interval: 0,
            indicator: Indicator::Rsi { period: 14 },
            sequence: ClosedSequence {
                last_start,
                revision: 0,
            },
        }
    }

    fn empty() -> IndicatorSeries {
        Indicator::Rsi { period: 14 }.compute(&[])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_readers_share_one_computation() {
        let metrics = Arc::new(Metrics::new());
        let cache = IndicatorCache::new(CacheSettings::default(), Arc::clone(&metrics));
        let computations = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let readers: Vec<_> = (0..16)
            .map(|_| {
                let (cache, computations, barrier) = (
                    cache.clone(),
                    Arc::clone(&computations),
                    Arc::clone(&barrier),
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache
                        .get_or_compute(key("IBM", 60), || {
                            computations.fetch_add(1, Ordering::SeqCst);
                            // Slow enough that every reader arrives while it runs.
                            std::thread::sleep(Duration::from_millis(100));
                            empty()
                        })
                        .await
                })
            })
            .collect();
        for reader in readers {
            reader.await.expect("reader");
        }
        assert_eq!(computations.load(Ordering::SeqCst), 1);
        assert_eq!(metrics.indicator_cache_misses.get(), 1);
        assert_eq!(metrics.indicator_cache_hits.get(), 15);
        // A new closed candle is a new key: computed again.
        cache.get_or_compute(key("IBM", 120), empty).await;
        assert_eq!(metrics.indicator_computations.get(), 2);
    }

    #[tokio::test]
    async fn bounded_and_evictions_counted() {
        let metrics = Arc::new(Metrics::new());
        let settings = CacheSettings {
            capacity: 4,
            ..CacheSettings::default()
        };
        let cache = IndicatorCache::new(settings, Arc::clone(&metrics));
        for minute in 0..20 {
            cache.get_or_compute(key("IBM", minute), empty).await;
            cache.run_pending_tasks().await;
        }
        assert!(cache.entry_count() <= 4, "{}", cache.entry_count());
        assert!(metrics.indicator_cache_evictions.get() >= 16);
        // Capacity 0: nothing kept, every read computes.
        let uncached = IndicatorCache::new(
            CacheSettings {
                capacity: 0,
                ..CacheSettings::default()
            },
            Arc::new(Metrics::new()),
        );
        for _ in 0..3 {
            uncached.get_or_compute(key("IBM", 0), empty).await;
            uncached.run_pending_tasks().await;
        }
        assert_eq!(uncached.metrics.indicator_computations.get(), 3);
    }
}
