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

use std::collections::VecDeque;

use serde::Serialize;

use crate::model::{Timestamp, to_millis};

/// Splits `a + b` into the rounded sum and its exact rounding error (Knuth's TwoSum).
#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let sum = a + b;
    let b_part = sum - a;
    let error = (a - (sum - b_part)) + (b - b_part);
    (sum, error)
}

/// TwoSum for `|a| >= |b|` (Dekker's FastTwoSum).
#[inline]
fn fast_two_sum(a: f64, b: f64) -> (f64, f64) {
    let sum = a + b;
    (sum, b - (sum - a))
}

/// Splits `a × b` into the rounded product and its exact rounding error (Dekker's TwoProduct,
/// without FMA so that it is fast on every target).
#[inline]
fn two_product(a: f64, b: f64) -> (f64, f64) {
    /// 2^27 + 1: splits a double into two halves of 26 bits.
    const SPLITTER: f64 = 134_217_729.0;
    fn split(x: f64) -> (f64, f64) {
        let c = SPLITTER * x;
        let high = c - (c - x);
        (high, x - high)
    }
    let product = a * b;
    let (a_high, a_low) = split(a);
    let (b_high, b_low) = split(b);
    let error = ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low;
    (product, error)
}

/// A number held as an unevaluated sum `high + low` (about 106 significant bits), for the few
/// operations a window read needs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct DoubleDouble {
    high: f64,
    low: f64,
}

impl DoubleDouble {
    fn new(high: f64, low: f64) -> Self {
        let (high, low) = fast_two_sum(high, low);
        DoubleDouble { high, low }
    }

    fn product(a: f64, b: f64) -> Self {
        let (high, low) = two_product(a, b);
        DoubleDouble::new(high, low)
    }

    fn add(self, other: DoubleDouble) -> Self {
        let (high, error) = two_sum(self.high, other.high);
        DoubleDouble::new(high, error + (self.low + other.low))
    }

    fn scale(self, factor: f64) -> Self {
        let (high, error) = two_product(self.high, factor);
        DoubleDouble::new(high, error + self.low * factor)
    }

    fn value(self) -> f64 {
        self.high + self.low
    }
}

/// A running sum that never drifts, however many terms pass through it.
///
/// Each addition is an error-free transformation (Knuth's TwoSum): the rounding error of the
/// floating-point sum is computed exactly and accumulated separately. The difference of two
/// snapshots of the same sum ([`since`](Self::since)) — the sum of the terms added in between —
/// is exact to a few units in its own last place, even when it is tiny beside the running total.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    /// A sum of the one term `x`.
    pub fn of(x: f64) -> Self {
        CompensatedSum {
            sum: x,
            compensation: 0.0,
        }
    }

    /// Adds `x`.
    #[inline]
    pub fn add(&mut self, x: f64) {
        let (sum, error) = two_sum(self.sum, x);
        self.sum = sum;
        self.compensation += error;
    }

    /// The current value.
    #[inline]
    pub fn value(&self) -> f64 {
        self.sum + self.compensation
    }

    /// The sum of the terms added since `earlier` (a former value of this sum).
    pub fn since(&self, earlier: &CompensatedSum) -> f64 {
        self.difference(earlier).value()
    }

    fn difference(&self, earlier: &CompensatedSum) -> DoubleDouble {
        let (high, error) = two_sum(self.sum, -earlier.sum);
        DoubleDouble::new(high, error + (self.compensation - earlier.compensation))
    }
}

/// The running sums of a [`TradeLog`], up to some point of it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Prefix {
    /// Σ size.
    volume: CompensatedSum,
    /// Σ price × size.
    notional: CompensatedSum,
    /// Σ (price − reference): shifting by a price near the mean keeps the variance well
    /// conditioned at high price levels.
    shifted: CompensatedSum,
    /// Σ (price − reference)².
    squares: CompensatedSum,
}

impl Prefix {
    #[inline]
    fn add(&mut self, price: f64, size: f64, reference: f64) {
        let shifted = price - reference;
        self.volume.add(size);
        self.notional.add(price * size);
        self.shifted.add(shifted);
        // The square's own rounding error goes in too: over many trades far from the reference
        // those errors would add up to a visible standard deviation of equal prices.
        let (square, error) = two_product(shifted, shifted);
        self.squares.add(square);
        self.squares.compensation += error;
    }
}

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

    fn key(&self) -> (Timestamp, u64) {
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

/// Which extreme an [`Extremum`] tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extreme {
    /// The largest price.
    High,
    /// The smallest price.
    Low,
}

/// A monotonic deque giving the highest (or lowest) price of any suffix of a trade log.
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
        if let Some(&(_, _, later)) = self.entries.get(position)
            && self.dominates(later, entry.price)
        {
            return;
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

    /// Drops the entries of trades before `ts`, once the log's oldest trade is at `ts`. Entries
    /// of dropped trades at exactly `ts` may stay a while: reads skip them
    /// ([`value_from`](Self::value_from) starts at the window's first trade).
    #[inline]
    pub fn evict_before(&mut self, ts: Timestamp) {
        while self
            .entries
            .front()
            .is_some_and(|&(front, _, _)| front < ts)
        {
            self.entries.pop_front();
        }
    }

    /// The extreme price of every entry held, `None` when empty.
    #[inline]
    pub fn value(&self) -> Option<f64> {
        self.entries.front().map(|&(_, _, price)| price)
    }

    /// The extreme price among the trades at or after `key` (time, sequence): the first entry
    /// held at or after it, since every entry is the extreme of everything from it on.
    pub fn value_from(&self, key: (Timestamp, u64)) -> Option<f64> {
        let position = self
            .entries
            .partition_point(|&(ts, seq, _)| (ts, seq) < key);
        self.entries.get(position).map(|&(_, _, price)| price)
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
    times: VecDeque<Timestamp>,
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
            self.segments.clear();
            self.dropped_since_rebase = 0;
            self.high.clear();
            self.low.clear();
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
    use super::*;

    fn entry(ts: i64, seq: u64, price: f64) -> Entry {
        Entry::new(ts, seq, price, 1.0)
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
