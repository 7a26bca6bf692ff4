//! Rolling statistics over trailing time windows, updated incrementally.
//!
//! A symbol keeps one [`TradeLog`]: the trades inside its longest window, sorted by event time
//! (ties in arrival order). Every window of that symbol is a suffix of the log, marked by a start
//! index ([`RollingWindow`]), so adding a trade costs the same whatever the number of windows:
//!
//! - each entry carries the running sums of everything logged before it (volume, notional, and
//!   prices shifted by a reference for the variance), so a window's sums are the log's totals
//!   minus the prefix at the window's start — no per-window arithmetic on add or evict. The sums
//!   are [`CompensatedSum`]s (error-free additions), and the difference of two is taken in
//!   double-double precision, so a one-second window read out of an hour of prefix is still exact
//!   to a few units in the last place; the log re-bases its prefixes (recomputes them from the
//!   trades it holds, with a reference near the current mean) after dropping as many trades as
//!   it holds, which keeps them small;
//! - high and low come from one monotonic deque each ([`Extremum`]) over the whole log: the
//!   highest price of any suffix is the first deque entry at or after the suffix's start, found
//!   by binary search when a window is read. The deques also accept an insertion behind the
//!   newest trade (a reordered trade within the allowed lateness).
//!
//! Adding a trade is O(1) amortized, evicting is O(1) per trade and window (a start index moves),
//! reading a window is O(log n). This module never reads a clock: callers pass the stream time.

//!
//! - `sums`: the error-free arithmetic of the running sums.
//! - `extremum`: the high and low deques.
//! - `log`: the trade log with its segments of running sums.

mod extremum;
mod log;
mod sums;

use serde::Serialize;

use crate::model::Timestamp;

pub use extremum::{Extreme, Extremum};
pub use log::{Entry, TradeLog};
pub use sums::CompensatedSum;

/// The statistics of one window at one stream time, as DESIGN.md defines them.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowStats {
    /// Number of trades.
    pub count: u64,
    /// Σ size.
    pub volume: f64,
    /// Σ price × size (null when the window is empty).
    pub notional: Option<f64>,
    /// notional / volume; null when volume is 0.
    pub vwap: Option<f64>,
    /// Price of the earliest trade.
    pub open: Option<f64>,
    /// Highest price.
    pub high: Option<f64>,
    /// Lowest price.
    pub low: Option<f64>,
    /// Price of the latest trade.
    pub close: Option<f64>,
    /// Σ price / count.
    pub mean: Option<f64>,
    /// Sample standard deviation of price (ddof 1); null when count < 2.
    pub stddev: Option<f64>,
    /// close − open.
    pub change: Option<f64>,
    /// (close / open − 1) × 100.
    pub change_pct: Option<f64>,
    /// Event time of the earliest trade, epoch milliseconds.
    pub first_ms: Option<i64>,
    /// Event time of the latest trade, epoch milliseconds.
    pub last_ms: Option<i64>,
}

impl WindowStats {
    /// The statistics of an empty window: count 0, volume 0, nulls elsewhere.
    pub fn empty() -> Self {
        WindowStats {
            count: 0,
            volume: 0.0,
            notional: None,
            vwap: None,
            open: None,
            high: None,
            low: None,
            close: None,
            mean: None,
            stddev: None,
            change: None,
            change_pct: None,
            first_ms: None,
            last_ms: None,
        }
    }
}

/// One trailing window `(T − length, T]` over a symbol's [`TradeLog`]: where in the log it
/// starts.
#[derive(Debug, Clone)]
pub struct RollingWindow {
    length: Timestamp,
    /// Index in the log of the first trade inside the window (= the log's length when empty).
    start: usize,
    /// When the first trade inside leaves the window (`Timestamp::MAX` when empty), so that the
    /// clock's moves cost nothing until then.
    expires_at: Timestamp,
}

impl RollingWindow {
    /// An empty window of `length` nanoseconds.
    pub fn new(length: Timestamp) -> Self {
        RollingWindow {
            length,
            start: 0,
            expires_at: Timestamp::MAX,
        }
    }

    /// The window's length in nanoseconds.
    pub fn length(&self) -> Timestamp {
        self.length
    }

    /// Index of the window's first trade in the log.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Whether a trade at `ts` belongs in the window at stream time `now`.
    #[inline]
    pub fn contains(&self, ts: Timestamp, now: Timestamp) -> bool {
        ts > now.saturating_sub(self.length)
    }

    /// When the oldest trade inside will leave the window: the stream time at which
    /// [`evict_expired`](Self::evict_expired) next has work. `None` when empty.
    #[inline]
    pub fn next_expiry(&self) -> Option<Timestamp> {
        (self.expires_at != Timestamp::MAX).then_some(self.expires_at)
    }

    /// Records that a trade was appended to the log (at or after every trade inside).
    #[inline]
    pub fn appended(&mut self, ts: Timestamp) {
        if self.expires_at == Timestamp::MAX {
            self.expires_at = ts.saturating_add(self.length);
        }
    }

    /// Records that a trade was inserted into the log at `position`, before the newest trade.
    pub fn inserted(&mut self, log: &TradeLog, position: usize, now: Timestamp) {
        let Some(ts) = log.time(position) else {
            return;
        };
        if !self.contains(ts, now) {
            // Older than the window: it went in before the window's first trade.
            self.start += 1;
        } else if position <= self.start {
            self.start = position;
            self.expires_at = ts.saturating_add(self.length);
        }
    }

    /// Records that `n` trades were removed from the front of the log (all of them before this
    /// window's start).
    #[inline]
    pub fn trades_dropped(&mut self, n: usize) {
        self.start -= n;
    }

    /// Moves the start past the trades that have left `(now − length, now]`.
    #[inline]
    pub fn evict_expired(&mut self, log: &TradeLog, now: Timestamp) {
        if now < self.expires_at {
            return;
        }
        let cutoff = now.saturating_sub(self.length);
        while let Some(ts) = log.time(self.start) {
            if ts > cutoff {
                self.expires_at = ts.saturating_add(self.length);
                return;
            }
            self.start += 1;
        }
        self.expires_at = Timestamp::MAX;
    }

    /// Index of the window's first trade at stream time `now`, which may be past
    /// [`start`](Self::start) if the window has not been brought to `now` (reads are exact
    /// either way: a binary search finds trades that have expired since).
    #[inline]
    pub fn start_at(&self, log: &TradeLog, now: Timestamp) -> usize {
        if now < self.expires_at {
            return self.start;
        }
        let cutoff = now.saturating_sub(self.length);
        log.times.partition_point(|&t| t <= cutoff).max(self.start)
    }

    /// Number of trades inside at stream time `now`.
    pub fn count(&self, log: &TradeLog, now: Timestamp) -> usize {
        log.len().saturating_sub(self.start_at(log, now))
    }

    /// Σ size of the window at `now` (what a volume rule reads, without computing every
    /// statistic).
    pub fn volume(&self, log: &TradeLog, now: Timestamp) -> f64 {
        log.volume_from(self.start_at(log, now))
    }

    /// The window's VWAP at `now`, if its volume is positive.
    pub fn vwap(&self, log: &TradeLog, now: Timestamp) -> Option<f64> {
        log.vwap_from(self.start_at(log, now))
    }

    /// The window's change in percent (close / open − 1) × 100 at `now`, if it holds a trade.
    pub fn change_pct(&self, log: &TradeLog, now: Timestamp) -> Option<f64> {
        log.change_pct_from(self.start_at(log, now))
    }

    /// The window's statistics at `now`.
    pub fn stats(&self, log: &TradeLog, now: Timestamp) -> WindowStats {
        log.stats_from(self.start_at(log, now))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::sums::DoubleDouble;
    use super::*;

    fn entry(ts: i64, seq: u64, price: f64) -> Entry {
        Entry::new(ts, seq, price, 1.0)
    }

    #[test]
    fn an_emptied_log_gives_its_memory_back() {
        let mut log = TradeLog::new();
        for k in 0..1000 {
            log.push(Entry::new(k, k as u64, 10.0 + (k % 7) as f64, 1.0));
        }
        log.drop_front(999);
        assert_eq!(log.len(), 1);
        assert!(log.times.capacity() > 0);
        log.drop_front(1);
        assert!(log.is_empty());
        assert_eq!(
            log.times.capacity(),
            0,
            "a quiet symbol keeps no trade buffer"
        );
        assert_eq!(log.extremum_entries(), 0);
    }
    #[test]
    fn differences_of_running_sums_do_not_drift() {
        // A sliding window of 1000 values, each an exact multiple of 2^-20, so that the exact
        // window sum is known from integers; the running sums are far above 2^33, where adding
        // such values rounds.
        let scale = (1u64 << 20) as f64;
        let units: Vec<i64> = (0..200_000i64)
            .map(|i| (i * 7_919_000_003) % 1_000_000_000_000 + 10_000_000_000_000)
            .collect();
        let mut running = CompensatedSum::default();
        let mut history = VecDeque::new();
        let mut naive = 0.0f64;
        let mut naive_history = VecDeque::new();
        let mut exact: i128 = 0;
        let mut worst_naive = 0.0f64;
        for (i, &unit) in units.iter().enumerate() {
            history.push_back(running);
            naive_history.push_back(naive);
            running.add(unit as f64 / scale);
            naive += unit as f64 / scale;
            exact += i128::from(unit);
            if i >= 1000 {
                exact -= i128::from(units[i - 1000]);
                history.pop_front();
                naive_history.pop_front();
            }
            let (Some(start), Some(naive_start)) = (history.front(), naive_history.front()) else {
                continue;
            };
            let exact = exact as f64 / scale;
            let window = running.since(start);
            assert!((window - exact).abs() <= exact * f64::EPSILON, "at {i}");
            worst_naive = worst_naive.max(((naive - naive_start) - exact).abs() / exact);
        }
        assert!(
            worst_naive > 4.0 * f64::EPSILON,
            "the naive difference drifts: {worst_naive:e}"
        );
    }

    #[test]
    fn double_double_products_are_exact() {
        let (a, b) = (1.0 + f64::EPSILON, 1.0 - f64::EPSILON);
        let product = DoubleDouble::product(a, b);
        // (1 + e)(1 − e) = 1 − e², which a double cannot hold.
        assert_eq!(product.high, 1.0);
        assert_eq!(product.low, -f64::EPSILON * f64::EPSILON);
    }

    #[test]
    fn extremum_tracks_high_and_low_in_order() {
        let mut high = Extremum::new(Extreme::High);
        let mut low = Extremum::new(Extreme::Low);
        let prices = [5.0, 3.0, 4.0, 4.0, 1.0, 6.0];
        let entries: Vec<Entry> = prices
            .iter()
            .enumerate()
            .map(|(i, &p)| entry(i as i64, i as u64, p))
            .collect();
        for e in &entries {
            high.insert(e);
            low.insert(e);
        }
        assert_eq!(high.value(), Some(6.0));
        assert_eq!(low.value(), Some(1.0));
        assert_eq!(low.value_from((2, 2)), Some(1.0));
        assert_eq!(low.value_from((5, 5)), Some(6.0));
        assert_eq!(high.value_from((6, 0)), None);
        // The first five leave: only 6.0 remains.
        high.evict_before(5);
        low.evict_before(5);
        assert_eq!(high.value(), Some(6.0));
        assert_eq!(low.value(), Some(6.0));
    }

    #[test]
    fn extremum_accepts_a_reordered_trade() {
        let mut high = Extremum::new(Extreme::High);
        let a = entry(10, 0, 5.0);
        let b = entry(30, 1, 3.0);
        let late = entry(20, 2, 4.0);
        high.insert(&a);
        high.insert(&b);
        high.insert(&late);
        assert_eq!(high.value(), Some(5.0));
        assert_eq!(high.value_from(late.key()), Some(4.0));
        high.evict_before(late.ts);
        assert_eq!(high.value(), Some(4.0));
        high.evict_before(b.ts);
        assert_eq!(high.value(), Some(3.0));
        // A reordered trade dominated by a later one is not kept.
        let dominated = entry(25, 3, 2.0);
        high.insert(&dominated);
        assert_eq!(high.len(), 1);
    }

    /// Moves every window to `now` and drops what no window holds, as the engine does.
    fn advance(log: &mut TradeLog, windows: &mut [RollingWindow], now: Timestamp) {
        for window in windows.iter_mut() {
            window.evict_expired(log, now);
        }
        let unused = windows.iter().map(RollingWindow::start).min().unwrap_or(0);
        log.drop_front(unused);
        for window in windows.iter_mut() {
            window.trades_dropped(unused);
        }
    }

    #[test]
    fn windows_evict_and_empty() {
        let mut log = TradeLog::new();
        let mut windows = [RollingWindow::new(10), RollingWindow::new(5)];
        for (i, (ts, price)) in [(1, 10.0), (5, 12.0), (9, 11.0)].into_iter().enumerate() {
            advance(&mut log, &mut windows, ts);
            log.push(entry(ts, i as u64, price));
            for window in &mut windows {
                window.appended(ts);
            }
        }
        let stats = windows[0].stats(&log, 9);
        assert_eq!(stats.count, 3);
        assert_eq!(stats.high, Some(12.0));
        assert_eq!(stats.open, Some(10.0));
        assert_eq!(stats.close, Some(11.0));
        assert_eq!(stats.mean, Some(11.0));
        assert_eq!(stats.stddev, Some(1.0));
        let short = windows[1].stats(&log, 9);
        assert_eq!(
            (short.count, short.high, short.low),
            (2, Some(12.0), Some(11.0))
        );
        // Read at a later time without moving the windows: still exact.
        let later = windows[1].stats(&log, 13);
        assert_eq!(
            (later.count, later.open, later.high),
            (1, Some(11.0), Some(11.0))
        );
        assert_eq!(windows[0].count(&log, 100), 0);
        advance(&mut log, &mut windows, 11);
        assert_eq!(windows[0].stats(&log, 11).count, 2);
        assert_eq!(windows[0].next_expiry(), Some(15));
        assert_eq!(windows[1].stats(&log, 11).count, 1);
        assert_eq!(log.len(), 2, "the first trade left every window");
        advance(&mut log, &mut windows, 100);
        assert_eq!(windows[0].stats(&log, 100), WindowStats::empty());
        assert_eq!(windows[0].next_expiry(), None);
        assert!(log.is_empty());
    }

    #[test]
    fn a_reordered_trade_moves_the_later_running_sums() {
        let mut log = TradeLog::new();
        let mut window = RollingWindow::new(100);
        for (seq, ts) in [10, 30].into_iter().enumerate() {
            log.push(Entry::new(ts, seq as u64, 2.0, 1.0));
            window.appended(ts);
        }
        let position = log.position_of(20);
        assert_eq!(position, 1);
        log.insert(position, Entry::new(20, 2, 5.0, 3.0));
        window.inserted(&log, position, 30);
        let stats = window.stats(&log, 30);
        assert_eq!(stats.count, 3);
        assert_eq!(stats.volume, 5.0);
        assert_eq!(stats.notional, Some(19.0));
        assert_eq!(stats.high, Some(5.0));
        assert_eq!((stats.open, stats.close), (Some(2.0), Some(2.0)));
        // From the reordered trade on: 5 × 3 + 2 × 1 over 4.
        assert_eq!(log.vwap_from(1), Some(17.0 / 4.0));
    }

    #[test]
    fn stddev_of_equal_prices_far_from_the_reference_is_zero() {
        let mut log = TradeLog::new();
        log.push(Entry::new(0, 0, 100.0, 1.0));
        for seq in 1..1000 {
            log.push(Entry::new(seq, seq as u64, 60_000.1, 0.001));
        }
        // The last 999 trades, 59,900 away from the reference price.
        let stats = log.stats_from(1);
        let stddev = stats.stddev.unwrap_or(f64::NAN);
        assert!(stddev < 1e-9, "stddev {stddev:e}");
        let mean = stats.mean.unwrap_or(f64::NAN);
        assert!((mean - 60_000.1).abs() < 1e-10, "mean {mean}");
    }

    /// The statistics of `trades` computed directly: two passes, sums in `f64` (the trades are
    /// ordinary: near one price level and one size).
    fn direct(trades: &[(f64, f64)]) -> (f64, f64, f64, Option<f64>) {
        let n = trades.len() as f64;
        let volume: f64 = trades.iter().map(|t| t.1).sum();
        let notional: f64 = trades.iter().map(|t| t.0 * t.1).sum();
        let mean = trades.iter().map(|t| t.0).sum::<f64>() / n;
        let stddev = (trades.len() >= 2)
            .then(|| (trades.iter().map(|t| (t.0 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        (volume, notional, mean, stddev)
    }

    #[test]
    fn an_outlier_of_any_magnitude_leaves_no_trace_in_windows_without_it() {
        let magnitudes = [
            f64::MIN_POSITIVE,
            1e-300,
            1e-12,
            1e-3,
            1.0,
            6e9,
            1e100,
            1e200,
            f64::MAX,
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for &outlier_price in &magnitudes {
            for &outlier_size in &magnitudes {
                for level in [0.0123, 100.5, 60_000.0, 3e7] {
                    let ordinary = |rng: &mut fastrand::Rng| {
                        (level * (1.0 + (rng.f64() - 0.5) * 1e-6), 0.001 + rng.f64())
                    };
                    let mut log = TradeLog::new();
                    let mut all = Vec::new();
                    let mut seq = 0u64;
                    let mut add = |log: &mut TradeLog, trade: (f64, f64)| {
                        log.push(Entry::new(seq as i64, seq, trade.0, trade.1));
                        all.push(trade);
                        seq += 1;
                    };
                    for _ in 0..500 {
                        add(&mut log, ordinary(&mut rng));
                    }
                    add(&mut log, (outlier_price, outlier_size));
                    for _ in 0..300 {
                        add(&mut log, ordinary(&mut rng));
                    }
                    let context = format!("{outlier_price:e} × {outlier_size:e} at {level}");
                    let check = |log: &TradeLog, start: usize, trades: &[(f64, f64)]| {
                        let stats = log.stats_from(start);
                        let (volume, notional, mean, stddev) = direct(trades);
                        assert_eq!(stats.count, trades.len() as u64, "{context}");
                        let close = |a: Option<f64>, e: f64, tolerance: f64| {
                            a.is_some_and(|a| (a - e).abs() <= tolerance * e.abs())
                        };
                        assert!(
                            close(Some(stats.volume), volume, 1e-12),
                            "{context}: {stats:?}"
                        );
                        assert!(
                            close(stats.notional, notional, 1e-12),
                            "{context}: {stats:?}"
                        );
                        assert!(close(stats.vwap, notional / volume, 1e-12), "{context}");
                        assert!(close(stats.mean, mean, 1e-12), "{context}: {stats:?}");
                        let (Some(actual), Some(expected)) = (stats.stddev, stddev) else {
                            panic!("{context}: {stats:?}");
                        };
                        assert!(
                            (actual - expected).abs() <= 1e-9 * level,
                            "{context}: stddev {actual:e} vs {expected:e}"
                        );
                    };
                    // A window that starts after the outlier, while the log still holds it.
                    check(&log, 501, &all[501..]);
                    check(&log, 700, &all[700..]);
                    // The outlier leaves the log.
                    log.drop_front(450);
                    check(&log, 51, &all[501..]);
                    log.drop_front(60);
                    check(&log, 0, &all[510..]);
                    // And the log takes more ordinary trades afterwards.
                    for _ in 0..100 {
                        let trade = ordinary(&mut rng);
                        log.push(Entry::new(seq as i64, seq, trade.0, trade.1));
                        all.push(trade);
                        seq += 1;
                    }
                    check(&log, 0, &all[510..]);
                    check(&log, 250, &all[760..]);
                }
            }
        }
    }

    #[test]
    fn a_reordered_outlier_gets_a_segment_of_its_own() {
        let mut log = TradeLog::new();
        for seq in 0..100u64 {
            log.push(Entry::new(
                seq as i64 * 10,
                seq,
                100.0 + seq as f64 * 0.01,
                1.0,
            ));
        }
        let position = log.position_of(505);
        log.insert(position, Entry::new(505, 100, 1e200, 1e200));
        let after = log.stats_from(position + 1);
        assert_eq!(after.count, 49);
        let mean: f64 = (51..100).map(|i| 100.0 + i as f64 * 0.01).sum::<f64>() / 49.0;
        assert!((after.mean.unwrap_or(f64::NAN) - mean).abs() < 1e-10);
        assert_eq!(after.volume, 49.0);
        let with = log.stats_from(0);
        assert_eq!(with.count, 101);
        assert_eq!(
            with.notional, None,
            "Σ price × size overflows: null, not infinity"
        );
    }
}
