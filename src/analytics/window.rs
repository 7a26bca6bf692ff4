//! Rolling statistics over one trailing time window, updated incrementally.
//!
//! A [`RollingWindow`] does not own trades: the symbol keeps one deque of the trades inside its
//! longest window, sorted by event time (ties in arrival order), and every window of that symbol
//! is a suffix of it, marked by a start index. Adding or evicting a trade is O(1) amortized:
//!
//! - sums (volume, notional, and prices shifted by a reference for the variance) are
//!   [`CompensatedSum`]s, whose error-free additions and subtractions do not drift however many
//!   trades pass through; the window re-bases (recomputes its sums from the trades it holds, with
//!   a reference price near the current mean) after it has evicted as many trades as it holds,
//!   which bounds any residual error and keeps the shifted variance well conditioned;
//! - high and low come from monotonic deques ([`Extremum`]) of (time, price), which also accept
//!   an insertion behind the newest trade (a reordered trade within the allowed lateness).
//!
//! This module never reads a clock: callers pass the stream time.

use std::collections::VecDeque;

use serde::Serialize;

use crate::model::{Timestamp, to_millis};

/// One trade as the windows keep it: event time, arrival sequence number, price and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// Event time (exchange time), nanoseconds.
    pub ts: Timestamp,
    /// Arrival order within the symbol; breaks ties between equal event times.
    pub seq: u64,
    /// Price.
    pub price: f64,
    /// Size.
    pub size: f64,
}

impl Entry {
    fn key(&self) -> (Timestamp, u64) {
        (self.ts, self.seq)
    }
}

/// A running sum that supports adding and subtracting without drift.
///
/// Each addition is an error-free transformation (Knuth's TwoSum): the rounding error of the
/// floating-point sum is computed exactly and accumulated separately, so the value stays within a
/// few units in the last place of the exact sum of the terms, however long the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    /// Adds `x`.
    #[inline]
    pub fn add(&mut self, x: f64) {
        let sum = self.sum + x;
        let x_part = sum - self.sum;
        let error = (self.sum - (sum - x_part)) + (x - x_part);
        self.sum = sum;
        self.compensation += error;
    }

    /// Subtracts `x`.
    #[inline]
    pub fn sub(&mut self, x: f64) {
        self.add(-x);
    }

    /// The current value.
    #[inline]
    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// Which extreme an [`Extremum`] tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extreme {
    /// The largest price.
    High,
    /// The smallest price.
    Low,
}

/// A monotonic deque giving the highest (or lowest) price in a window in O(1) amortized.
///
/// Entries are ordered by (time, sequence) and their prices are strictly decreasing (for
/// [`Extreme::High`]) from front to back: an entry is dropped as soon as a later entry is at least
/// as extreme, because it can never be the answer again.
#[derive(Debug, Clone)]
pub struct Extremum {
    kind: Extreme,
    entries: VecDeque<(Timestamp, u64, f64)>,
}

impl Extremum {
    /// An empty deque for `kind`.
    pub fn new(kind: Extreme) -> Self {
        Extremum {
            kind,
            entries: VecDeque::new(),
        }
    }

    /// Whether `later` makes `earlier` useless.
    #[inline]
    fn dominates(&self, later: f64, earlier: f64) -> bool {
        match self.kind {
            Extreme::High => later >= earlier,
            Extreme::Low => later <= earlier,
        }
    }

    /// Adds a trade; it may be older than entries already held (a reordered trade).
    pub fn insert(&mut self, entry: &Entry) {
        let key = entry.key();
        let position = match self.entries.back() {
            Some(&(ts, seq, _)) if (ts, seq) > key => self
                .entries
                .partition_point(|&(ts, seq, _)| (ts, seq) < key),
            _ => self.entries.len(),
        };
        if let Some(&(_, _, later)) = self.entries.get(position) {
            if self.dominates(later, entry.price) {
                return;
            }
        }
        let mut first_dominated = position;
        while first_dominated > 0
            && self.dominates(entry.price, self.entries[first_dominated - 1].2)
        {
            first_dominated -= 1;
        }
        if position == self.entries.len() {
            self.entries.truncate(first_dominated);
            self.entries.push_back((entry.ts, entry.seq, entry.price));
        } else {
            self.entries.drain(first_dominated..position);
            self.entries
                .insert(first_dominated, (entry.ts, entry.seq, entry.price));
        }
    }

    /// Called when `entry`, the oldest trade in the window, leaves it.
    #[inline]
    pub fn evict(&mut self, entry: &Entry) {
        if let Some(&(_, seq, _)) = self.entries.front() {
            if seq == entry.seq {
                self.entries.pop_front();
            }
        }
    }

    /// The extreme price, `None` when the window is empty.
    #[inline]
    pub fn value(&self) -> Option<f64> {
        self.entries.front().map(|&(_, _, price)| price)
    }

    fn clear(&mut self) {
        self.entries.clear();
    }

    /// Entries currently held (for memory accounting).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The statistics of one window at one stream time, as DESIGN.md defines them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    /// Number of trades.
    pub count: u64,
    /// Σ size.
    pub volume: f64,
    /// Σ price × size.
    pub notional: f64,
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
            notional: 0.0,
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

/// A window re-bases after evicting at least this many trades even when it holds fewer.
const REBASE_MIN_EVICTIONS: usize = 64;

/// The running state of one trailing window `(T − length, T]` over a symbol's trades.
#[derive(Debug, Clone)]
pub struct RollingWindow {
    length: Timestamp,
    /// Index in the symbol's trade deque of the first trade inside the window.
    start: usize,
    count: usize,
    volume: CompensatedSum,
    notional: CompensatedSum,
    /// Σ (price − reference): shifting by a price near the mean keeps the variance formula from
    /// cancelling catastrophically at high price levels.
    shifted_sum: CompensatedSum,
    /// Σ (price − reference)².
    shifted_squares: CompensatedSum,
    reference: f64,
    evicted_since_rebase: usize,
    high: Extremum,
    low: Extremum,
}

impl RollingWindow {
    /// An empty window of `length` nanoseconds.
    pub fn new(length: Timestamp) -> Self {
        RollingWindow {
            length,
            start: 0,
            count: 0,
            volume: CompensatedSum::default(),
            notional: CompensatedSum::default(),
            shifted_sum: CompensatedSum::default(),
            shifted_squares: CompensatedSum::default(),
            reference: 0.0,
            evicted_since_rebase: 0,
            high: Extremum::new(Extreme::High),
            low: Extremum::new(Extreme::Low),
        }
    }

    /// The window's length in nanoseconds.
    pub fn length(&self) -> Timestamp {
        self.length
    }

    /// Index of the window's first trade in the symbol's deque.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Number of trades inside.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether a trade at `ts` belongs in the window at stream time `now`.
    #[inline]
    pub fn contains(&self, ts: Timestamp, now: Timestamp) -> bool {
        ts > now.saturating_sub(self.length)
    }

    /// When the oldest trade inside will leave the window: the stream time at which
    /// [`evict_expired`](Self::evict_expired) next has work. `None` when empty.
    pub fn next_expiry(&self, trades: &VecDeque<Entry>) -> Option<Timestamp> {
        if self.count == 0 {
            return None;
        }
        trades
            .get(self.start)
            .map(|first| first.ts.saturating_add(self.length))
    }

    /// Adds a trade already inserted into `trades` at an index at or after `start`.
    #[inline]
    pub fn add(&mut self, entry: &Entry) {
        if self.count == 0 {
            self.reference = entry.price;
        }
        self.count += 1;
        self.accumulate(entry);
        self.high.insert(entry);
        self.low.insert(entry);
    }

    #[inline]
    fn accumulate(&mut self, entry: &Entry) {
        let shifted = entry.price - self.reference;
        self.volume.add(entry.size);
        self.notional.add(entry.price * entry.size);
        self.shifted_sum.add(shifted);
        self.shifted_squares.add(shifted * shifted);
    }

    #[inline]
    fn remove(&mut self, entry: &Entry) {
        let shifted = entry.price - self.reference;
        self.volume.sub(entry.size);
        self.notional.sub(entry.price * entry.size);
        self.shifted_sum.sub(shifted);
        self.shifted_squares.sub(shifted * shifted);
        self.high.evict(entry);
        self.low.evict(entry);
    }

    /// Records that a trade outside this window was inserted before its start.
    #[inline]
    pub fn shift_start(&mut self) {
        self.start += 1;
    }

    /// Records that `n` trades were removed from the front of the symbol's deque (all of them
    /// before this window's start).
    #[inline]
    pub fn trades_dropped(&mut self, n: usize) {
        self.start -= n;
    }

    /// Evicts the trades that have left `(now − length, now]`.
    pub fn evict_expired(&mut self, trades: &VecDeque<Entry>, now: Timestamp) {
        let cutoff = now.saturating_sub(self.length);
        let mut evicted = 0;
        while let Some(entry) = trades.get(self.start) {
            if entry.ts > cutoff {
                break;
            }
            self.remove(entry);
            self.start += 1;
            evicted += 1;
        }
        if evicted == 0 {
            return;
        }
        self.count -= evicted;
        if self.count == 0 {
            self.reset();
        } else {
            self.evicted_since_rebase += evicted;
            if self.evicted_since_rebase >= self.count.max(REBASE_MIN_EVICTIONS) {
                self.rebase(trades);
            }
        }
    }

    fn reset(&mut self) {
        self.volume = CompensatedSum::default();
        self.notional = CompensatedSum::default();
        self.shifted_sum = CompensatedSum::default();
        self.shifted_squares = CompensatedSum::default();
        self.evicted_since_rebase = 0;
        self.high.clear();
        self.low.clear();
    }

    /// Recomputes the sums from the trades inside, shifted by the current mean.
    fn rebase(&mut self, trades: &VecDeque<Entry>) {
        self.reference = self.mean();
        self.volume = CompensatedSum::default();
        self.notional = CompensatedSum::default();
        self.shifted_sum = CompensatedSum::default();
        self.shifted_squares = CompensatedSum::default();
        for entry in trades.range(self.start..) {
            self.accumulate(entry);
        }
        self.evicted_since_rebase = 0;
    }

    fn mean(&self) -> f64 {
        self.reference + self.shifted_sum.value() / self.count as f64
    }

    /// Σ size of the window (what a volume rule reads, without computing every statistic).
    pub fn volume(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.volume.value()
        }
    }

    /// The window's VWAP, if its volume is positive.
    pub fn vwap(&self) -> Option<f64> {
        let volume = self.volume();
        (volume > 0.0).then(|| self.notional.value() / volume)
    }

    /// The window's change in percent (close / open − 1) × 100, if it holds a trade.
    pub fn change_pct(&self, trades: &VecDeque<Entry>) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let (first, last) = (trades.get(self.start)?, trades.back()?);
        Some((last.price / first.price - 1.0) * 100.0)
    }

    /// The window's statistics; `trades` is the symbol's deque.
    pub fn stats(&self, trades: &VecDeque<Entry>) -> WindowStats {
        let (Some(first), Some(last)) = (trades.get(self.start), trades.back()) else {
            return WindowStats::empty();
        };
        if self.count == 0 {
            return WindowStats::empty();
        }
        let count = self.count as f64;
        let volume = self.volume.value();
        let notional = self.notional.value();
        let stddev = (self.count >= 2).then(|| {
            let shifted_sum = self.shifted_sum.value();
            let squares = self.shifted_squares.value() - shifted_sum * shifted_sum / count;
            (squares.max(0.0) / (count - 1.0)).sqrt()
        });
        WindowStats {
            count: self.count as u64,
            volume,
            notional,
            vwap: (volume > 0.0).then(|| notional / volume),
            open: Some(first.price),
            high: self.high.value(),
            low: self.low.value(),
            close: Some(last.price),
            mean: Some(self.mean()),
            stddev,
            change: Some(last.price - first.price),
            change_pct: Some((last.price / first.price - 1.0) * 100.0),
            first_ms: Some(to_millis(first.ts)),
            last_ms: Some(to_millis(last.ts)),
        }
    }

    /// Entries held by the high and low deques (for memory accounting).
    pub fn extremum_entries(&self) -> usize {
        self.high.len() + self.low.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts: i64, seq: u64, price: f64) -> Entry {
        Entry {
            ts,
            seq,
            price,
            size: 1.0,
        }
    }

    #[test]
    fn compensated_sum_does_not_drift() {
        // A sliding window of 1000 values, each an exact multiple of 2^-20, so that the exact
        // window sum is known from integers; the running sums are far above 2^33, where adding
        // such values rounds.
        let scale = (1u64 << 20) as f64;
        let units: Vec<i64> = (0..200_000i64)
            .map(|i| (i * 7_919_000_003) % 1_000_000_000_000 + 10_000_000_000_000)
            .collect();
        let mut compensated = CompensatedSum::default();
        let mut naive = 0.0f64;
        let mut exact: i128 = 0;
        let mut worst_naive = 0.0f64;
        for (i, &unit) in units.iter().enumerate() {
            compensated.add(unit as f64 / scale);
            naive += unit as f64 / scale;
            exact += i128::from(unit);
            if i >= 1000 {
                let old = units[i - 1000];
                compensated.sub(old as f64 / scale);
                naive -= old as f64 / scale;
                exact -= i128::from(old);
            }
            let exact = exact as f64 / scale;
            assert!(
                (compensated.value() - exact).abs() <= exact * f64::EPSILON,
                "at {i}"
            );
            worst_naive = worst_naive.max((naive - exact).abs() / exact);
        }
        assert!(
            worst_naive > 4.0 * f64::EPSILON,
            "the naive sum drifts: {worst_naive:e}"
        );
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
        // Evict the first five: only 6.0 remains.
        for e in &entries[..5] {
            high.evict(e);
            low.evict(e);
        }
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
        high.evict(&a);
        assert_eq!(high.value(), Some(4.0));
        high.evict(&late);
        assert_eq!(high.value(), Some(3.0));
        // A reordered trade dominated by a later one is not kept.
        let dominated = entry(25, 3, 2.0);
        high.insert(&dominated);
        assert_eq!(high.len(), 1);
    }

    #[test]
    fn window_evicts_and_empties() {
        let mut trades = VecDeque::new();
        let mut window = RollingWindow::new(10);
        for (i, (ts, price)) in [(1, 10.0), (5, 12.0), (9, 11.0)].into_iter().enumerate() {
            let e = entry(ts, i as u64, price);
            window.evict_expired(&trades, ts);
            trades.push_back(e);
            window.add(&e);
        }
        let stats = window.stats(&trades);
        assert_eq!(stats.count, 3);
        assert_eq!(stats.high, Some(12.0));
        assert_eq!(stats.open, Some(10.0));
        assert_eq!(stats.close, Some(11.0));
        assert_eq!(stats.mean, Some(11.0));
        assert_eq!(stats.stddev, Some(1.0));
        window.evict_expired(&trades, 11);
        assert_eq!(window.stats(&trades).count, 2);
        assert_eq!(window.next_expiry(&trades), Some(15));
        window.evict_expired(&trades, 100);
        assert_eq!(window.stats(&trades), WindowStats::empty());
        assert_eq!(window.next_expiry(&trades), None);
    }
}
