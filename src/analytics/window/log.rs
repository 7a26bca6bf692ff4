//! A symbol's trade log: the trades inside its longest window, their event times in a dense
//! queue, the running sums per segment, and the high and low deques.

use std::collections::VecDeque;

use super::WindowStats;
use super::extremum::{Extreme, Extremum};
use super::sums::{DoubleDouble, Prefix};
use crate::model::{Timestamp, to_millis};

/// One trade to log: event time, arrival sequence number, price, size.
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
    /// A trade to log.
    pub fn new(ts: Timestamp, seq: u64, price: f64, size: f64) -> Self {
        Entry {
            ts,
            seq,
            price,
            size,
        }
    }

    pub(super) fn key(&self) -> (Timestamp, u64) {
        (self.ts, self.seq)
    }
}

/// A trade as the log keeps it (its event time is in the log's separate, dense time queue).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Logged {
    seq: u64,
    price: f64,
    size: f64,
    /// Running sums of every logged trade before this one.
    before: Prefix,
}
/// The log re-bases after dropping at least this many trades even when it holds fewer.
const REBASE_MIN_DROPS: usize = 64;

/// A trade whose price is more than this factor away from its segment's reference price starts
/// a segment of its own (and so does the next ordinary trade after it).
const PRICE_SPAN: f64 = 256.0;

/// A trade whose size is more than this factor away from its segment's first size starts a
/// segment.
const SIZE_SPAN: f64 = 4_294_967_296.0;

/// A run of consecutive trades of a [`TradeLog`] whose running sums are kept together.
///
/// Each trade's `before` prefix counts the trades of its own segment only, so a window's sums
/// are read segment by segment and a trade far from the others (an absurd print, or a size
/// beyond any other) sits in a segment of its own: a window that does not hold it never touches
/// its sums, and leaves no trace of it, whatever its magnitude.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Index in the log of the segment's first trade.
    first: usize,
    /// Running sums of every trade of the segment (including trades dropped from the log's
    /// front since the last re-base: prefixes are differences, so they cancel).
    total: Prefix,
    /// The price the segment's variance sums are shifted by.
    reference: f64,
    /// The size of the segment's first trade.
    size_scale: f64,
}

impl Segment {
    fn starting(first: usize, reference: f64, size_scale: f64) -> Self {
        Segment {
            first,
            total: Prefix::default(),
            reference,
            size_scale,
        }
    }

    /// Whether a trade belongs with this segment's sums without costing their precision.
    #[inline]
    fn fits(&self, price: f64, size: f64) -> bool {
        let ratio = price / self.reference;
        let size_ratio = size / self.size_scale;
        let shifted = price - self.reference;
        (1.0 / PRICE_SPAN..=PRICE_SPAN).contains(&ratio)
            && (1.0 / SIZE_SPAN..=SIZE_SPAN).contains(&size_ratio)
            && (self.total.notional.sum + price * size).is_finite()
            && (self.total.squares.sum + shifted * shifted).is_finite()
            && (self.total.volume.sum + size).is_finite()
    }
}

/// The sums of one segment's share of a window, as read.
#[derive(Debug, Clone, Copy)]
struct Part {
    count: f64,
    reference: f64,
    volume: DoubleDouble,
    notional: DoubleDouble,
    shifted: DoubleDouble,
    squares: DoubleDouble,
}

/// A symbol's trades inside its longest window, with the running sums and extremes every window
/// of the symbol reads.
#[derive(Debug, Clone)]
pub struct TradeLog {
    /// Event times of the trades, sorted (ties in arrival order): apart from the rest so that
    /// the windows' evictions, which read only times, scan eight trades per cache line.
    pub(super) times: VecDeque<Timestamp>,
    /// The trades, in the same order.
    entries: VecDeque<Logged>,
    /// The segments, in order; the first starts at index 0 whenever the log holds a trade.
    segments: VecDeque<Segment>,
    dropped_since_rebase: usize,
    high: Extremum,
    low: Extremum,
}

impl Default for TradeLog {
    fn default() -> Self {
        TradeLog::new()
    }
}

impl TradeLog {
    /// An empty log.
    pub fn new() -> Self {
        TradeLog {
            times: VecDeque::new(),
            entries: VecDeque::new(),
            segments: VecDeque::new(),
            dropped_since_rebase: 0,
            high: Extremum::new(Extreme::High),
            low: Extremum::new(Extreme::Low),
        }
    }

    /// Number of trades held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no trade is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Event time of the trade at `index` (0 = oldest).
    #[inline]
    pub fn time(&self, index: usize) -> Option<Timestamp> {
        self.times.get(index).copied()
    }

    /// Index at which a trade at `ts` goes: after every trade at or before `ts`.
    pub fn position_of(&self, ts: Timestamp) -> usize {
        match self.times.back() {
            Some(&last) if last > ts => self.times.partition_point(|&t| t <= ts),
            _ => self.times.len(),
        }
    }

    /// Appends a trade at or after every trade held.
    #[inline]
    pub fn push(&mut self, entry: Entry) {
        let index = self.entries.len();
        let segment = match self.segments.back_mut() {
            Some(segment) if segment.fits(entry.price, entry.size) => segment,
            _ => {
                self.segments
                    .push_back(Segment::starting(index, entry.price, entry.size));
                let Some(segment) = self.segments.back_mut() else {
                    unreachable!("a segment was just pushed");
                };
                segment
            }
        };
        let before = segment.total;
        segment
            .total
            .add(entry.price, entry.size, segment.reference);
        self.high.insert(&entry);
        self.low.insert(&entry);
        self.times.push_back(entry.ts);
        self.entries.push_back(Logged {
            seq: entry.seq,
            price: entry.price,
            size: entry.size,
            before,
        });
    }

    /// Index of the segment holding the trade at `index`.
    #[inline]
    fn segment_of(&self, index: usize) -> usize {
        if self.segments.len() == 1 {
            return 0;
        }
        self.segments
            .partition_point(|s| s.first <= index)
            .saturating_sub(1)
    }

    /// Inserts a trade at `position` (from [`position_of`](Self::position_of)): the running sums
    /// of every later trade of its segment move by its amounts.
    pub fn insert(&mut self, position: usize, entry: Entry) {
        if position >= self.entries.len() {
            self.push(entry);
            return;
        }
        let k = self.segment_of(position);
        let end = self
            .segments
            .get(k + 1)
            .map_or(self.entries.len(), |next| next.first);
        let segment = self.segments[k];
        let before = self.entries[position].before;
        for later in self.entries.range_mut(position..end) {
            later.before.add(entry.price, entry.size, segment.reference);
        }
        self.segments[k]
            .total
            .add(entry.price, entry.size, segment.reference);
        for later in self.segments.range_mut(k + 1..) {
            later.first += 1;
        }
        self.high.insert(&entry);
        self.low.insert(&entry);
        self.times.insert(position, entry.ts);
        self.entries.insert(
            position,
            Logged {
                seq: entry.seq,
                price: entry.price,
                size: entry.size,
                before,
            },
        );
        if !segment.fits(entry.price, entry.size) {
            // Far from its neighbours: the segments are drawn again so that it gets its own.
            self.rebase();
        }
    }

    /// Drops the `n` oldest trades (no window may still start before index `n`).
    pub fn drop_front(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.entries.drain(..n);
        self.times.drain(..n);
        // Only times are read: the dropped trades themselves are not touched again.
        if let Some(&oldest) = self.times.front() {
            self.high.evict_before(oldest);
            self.low.evict_before(oldest);
        }
        let capacity = self.entries.capacity();
        if capacity > 1024 && self.entries.len() < capacity / 4 {
            self.entries.shrink_to(capacity / 2);
            self.times.shrink_to(capacity / 2);
        }
        if self.entries.is_empty() {
            // Nothing left in the longest window: a quiet symbol gives its memory back.
            *self = TradeLog::new();
            return;
        }
        // Segments wholly dropped go, with their sums: nothing of them is left to read.
        while self.segments.get(1).is_some_and(|next| next.first <= n) {
            self.segments.pop_front();
        }
        for segment in &mut self.segments {
            segment.first = segment.first.saturating_sub(n);
        }
        self.dropped_since_rebase += n;
        if self.dropped_since_rebase >= self.entries.len().max(REBASE_MIN_DROPS) {
            self.rebase();
        }
    }

    /// Draws the segments again over the trades held and recomputes their running sums, each
    /// shifted by its segment's mean price.
    fn rebase(&mut self) {
        let mut bounds: Vec<(usize, f64)> = Vec::new();
        let mut current: Option<Segment> = None;
        let mut price_sum = 0.0;
        for (index, entry) in self.entries.iter().enumerate() {
            match current {
                Some(segment) if segment.fits(entry.price, entry.size) => {
                    price_sum += entry.price;
                }
                _ => {
                    if let Some(segment) = current {
                        bounds.push((segment.first, price_sum));
                    }
                    current = Some(Segment::starting(index, entry.price, entry.size));
                    price_sum = entry.price;
                }
            }
        }
        let Some(last) = current else {
            self.segments.clear();
            self.dropped_since_rebase = 0;
            return;
        };
        bounds.push((last.first, price_sum));
        self.segments.clear();
        for (k, &(first, price_sum)) in bounds.iter().enumerate() {
            let end = bounds.get(k + 1).map_or(self.entries.len(), |next| next.0);
            let first_entry = &self.entries[first];
            let mean = price_sum / (end - first) as f64;
            // The mean of far-apart prices may not be representable as a useful reference.
            let reference = if mean.is_finite() && mean > 0.0 {
                mean
            } else {
                first_entry.price
            };
            let mut segment = Segment::starting(first, reference, first_entry.size);
            for entry in self.entries.range_mut(first..end) {
                entry.before = segment.total;
                segment.total.add(entry.price, entry.size, reference);
            }
            self.segments.push_back(segment);
        }
        self.dropped_since_rebase = 0;
    }

    /// The sums of the trades from index `start` on, one part per segment.
    fn parts_from(&self, start: usize) -> impl Iterator<Item = Part> + '_ {
        let k = if start < self.entries.len() {
            self.segment_of(start)
        } else {
            self.segments.len()
        };
        (k..self.segments.len()).map(move |j| {
            let segment = &self.segments[j];
            let end = self
                .segments
                .get(j + 1)
                .map_or(self.entries.len(), |next| next.first);
            let from = start.max(segment.first);
            let before = self
                .entries
                .get(from)
                .map_or(Prefix::default(), |e| e.before);
            let total = &segment.total;
            Part {
                count: (end - from) as f64,
                reference: segment.reference,
                volume: total.volume.difference(&before.volume),
                notional: total.notional.difference(&before.notional),
                shifted: total.shifted.difference(&before.shifted),
                squares: total.squares.difference(&before.squares),
            }
        })
    }

    /// Σ size and Σ price × size of the trades from index `start` on.
    fn volume_notional_from(&self, start: usize) -> (f64, f64) {
        let mut parts = self.parts_from(start);
        let Some(first) = parts.next() else {
            return (0.0, 0.0);
        };
        let (volume, notional) = parts.fold((first.volume, first.notional), |(v, n), part| {
            (v.add(part.volume), n.add(part.notional))
        });
        (volume.value(), notional.value())
    }

    /// Σ size of the trades from index `start` on.
    pub fn volume_from(&self, start: usize) -> f64 {
        self.volume_notional_from(start).0
    }

    /// VWAP of the trades from index `start` on, if their volume is positive.
    pub fn vwap_from(&self, start: usize) -> Option<f64> {
        if start >= self.entries.len() {
            return None;
        }
        let (volume, notional) = self.volume_notional_from(start);
        (volume > 0.0)
            .then(|| notional / volume)
            .filter(|v| v.is_finite())
    }

    /// (last / first − 1) × 100 over the trades from index `start` on.
    pub fn change_pct_from(&self, start: usize) -> Option<f64> {
        let (first, last) = (self.entries.get(start)?, self.entries.back()?);
        Some((last.price / first.price - 1.0) * 100.0)
    }

    /// Mean price and Σ (price − mean)² of the trades from index `start` on (at least one).
    fn moments_from(&self, start: usize) -> (f64, f64) {
        // Each part: its mean and its sum of squared deviations from that mean,
        // Σ (x − m)² = Σx² − 2mΣx + n·m² for the shifted prices x, in double-double so that
        // nothing cancels; then the parts combine by Chan et al.'s pairwise update.
        let mut count = 0.0;
        let mut mean = 0.0;
        let mut deviation = 0.0;
        for part in self.parts_from(start) {
            let mean_shift = part.shifted.value() / part.count;
            let part_deviation = part
                .squares
                .add(part.shifted.scale(-2.0 * mean_shift))
                .add(DoubleDouble::product(mean_shift, mean_shift).scale(part.count))
                .value()
                .max(0.0);
            let part_mean = part.reference + mean_shift;
            if count == 0.0 {
                (count, mean, deviation) = (part.count, part_mean, part_deviation);
                continue;
            }
            let total = count + part.count;
            let delta = part_mean - mean;
            mean += delta * (part.count / total);
            deviation += part_deviation + delta * delta * (count * part.count / total);
            count = total;
        }
        (mean, deviation)
    }

    /// The statistics of the trades from index `start` on.
    pub fn stats_from(&self, start: usize) -> WindowStats {
        let (Some(first), Some(last)) = (self.entries.get(start), self.entries.back()) else {
            return WindowStats::empty();
        };
        let (Some(first_ts), Some(last_ts)) = (self.time(start), self.times.back().copied()) else {
            return WindowStats::empty();
        };
        let count = (self.entries.len() - start) as f64;
        let (volume, notional) = self.volume_notional_from(start);
        let (mean, deviation) = self.moments_from(start);
        let finite = |x: f64| Some(x).filter(|x| x.is_finite());
        WindowStats {
            count: self.entries.len() as u64 - start as u64,
            volume,
            notional: finite(notional),
            vwap: (volume > 0.0).then(|| notional / volume).and_then(finite),
            open: Some(first.price),
            high: self.high.value_from((first_ts, first.seq)),
            low: self.low.value_from((first_ts, first.seq)),
            close: Some(last.price),
            mean: finite(mean),
            stddev: (count >= 2.0)
                .then(|| (deviation / (count - 1.0)).sqrt())
                .and_then(finite),
            change: finite(last.price - first.price),
            change_pct: finite((last.price / first.price - 1.0) * 100.0),
            first_ms: Some(to_millis(first_ts)),
            last_ms: Some(to_millis(last_ts)),
        }
    }

    /// Entries held by the high and low deques (for memory accounting).
    pub fn extremum_entries(&self) -> usize {
        self.high.len() + self.low.len()
    }
}
