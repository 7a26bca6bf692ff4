//! OHLCV candles per symbol and interval, built trade by trade.
//!
//! Bars are aligned to the epoch: a bar of interval `I` starting at `start = ⌊t / I⌋·I` holds the
//! trades with event time in `[start, start + I)`. An interval without trades has no bar. A bar is
//! *closed* once the stream clock reaches its end; the series never needs the clock to tell it
//! so: the bar still being filled (the *forming* bar) is kept apart from the closed ones, and
//! readers decide with the clock they read whether it has closed ([`CandleView::closed`]). So a
//! symbol that stops trading does not need to be touched for its last bar to close.
//!
//! Closed bars are shared with readers ([`bars`]): a snapshot for readers is a cheap clone, and
//! the memory a series takes grows with the bars it has. The last `history` closed bars are kept.
//!
//! A trade admitted within the allowed lateness may belong to a bar that has already closed: it
//! amends that bar (or creates it, if its interval had no trade yet), and the series'
//! [`revision`](CandleView::revision) moves, so anything computed from the closed bars (the
//! indicator cache) knows it is out of date.

mod bars;

use bars::Bars;

use crate::analytics::window::CompensatedSum;
use crate::model::Timestamp;
use crate::units::{UnitError, duration_nanos, parse_duration};

/// Nanoseconds per millisecond.
const NANOS_PER_MILLI: i64 = 1_000_000;

/// Closed bars a series may hold beyond its history before the oldest are dropped in one go.
const TRIM_SLACK: usize = 32;

/// One configured candle interval: its label as configured (`1m`) and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalSpec {
    /// The label as configured, used in API requests and responses.
    pub label: String,
    /// Length in nanoseconds: a positive whole number of milliseconds.
    pub length: i64,
}

/// Most candles a symbol may keep per interval (memory: about 96 bytes each).
pub const MAX_CANDLE_HISTORY: usize = 100_000;

impl IntervalSpec {
    /// Parses candle intervals: each a positive whole number of milliseconds, no two alike, at
    /// least one.
    pub fn parse_list(labels: &[String]) -> Result<Vec<IntervalSpec>, UnitError> {
        if labels.is_empty() {
            return Err(UnitError::new(
                "intervals",
                "at least one interval is needed",
            ));
        }
        let mut intervals: Vec<IntervalSpec> = Vec::with_capacity(labels.len());
        for label in labels {
            let label = label.trim();
            let length = duration_nanos("intervals", parse_duration("intervals", label)?)?;
            if length <= 0 || length % 1_000_000 != 0 {
                return Err(UnitError::new(
                    "intervals",
                    format!("{label:?} is not a positive whole number of milliseconds"),
                ));
            }
            if let Some(same) = intervals
                .iter()
                .find(|i| i.length == length || i.label == label)
            {
                return Err(UnitError::new(
                    "intervals",
                    format!("{label:?} and {:?} are the same interval", same.label),
                ));
            }
            intervals.push(IntervalSpec {
                label: label.to_string(),
                length,
            });
        }
        Ok(intervals)
    }
}

/// One OHLCV bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candle {
    /// Start of the bar's interval, nanoseconds since the epoch.
    pub start: Timestamp,
    /// Event time of the trade that set `open` (the earliest).
    pub open_ts: Timestamp,
    /// Event time of the trade that set `close` (the latest; the last to arrive among equals).
    pub close_ts: Timestamp,
    /// Price of the earliest trade.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Price of the latest trade.
    pub close: f64,
    /// Sum of sizes, compensated like the windows' sums ([`volume`](Self::volume)).
    volume: CompensatedSum,
    /// Sum of price × size, compensated ([`notional`](Self::notional)).
    notional: CompensatedSum,
    /// Number of trades.
    pub count: u64,
}

impl Candle {
    fn first(start: Timestamp, ts: Timestamp, price: f64, size: f64) -> Self {
        Candle {
            start,
            open_ts: ts,
            close_ts: ts,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: CompensatedSum::of(size),
            notional: CompensatedSum::of(price * size),
            count: 1,
        }
    }

    fn add(&mut self, ts: Timestamp, price: f64, size: f64) {
        if ts < self.open_ts {
            self.open_ts = ts;
            self.open = price;
        }
        if ts >= self.close_ts {
            self.close_ts = ts;
            self.close = price;
        }
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.volume.add(size);
        self.notional.add(price * size);
        self.count += 1;
    }

    /// A bar made from its totals (as a batch computation gives them, e.g. the history's):
    /// the open and close times are not known and are set to the bar's start.
    #[allow(clippy::too_many_arguments)]
    pub fn from_totals(
        start: Timestamp,
        open: f64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
        notional: f64,
        count: u64,
    ) -> Self {
        Candle {
            start,
            open_ts: start,
            close_ts: start,
            open,
            high,
            low,
            close,
            volume: CompensatedSum::of(volume),
            notional: CompensatedSum::of(notional),
            count,
        }
    }

    /// Start of the bar in milliseconds since the epoch.
    pub fn start_ms(&self) -> i64 {
        self.start.div_euclid(NANOS_PER_MILLI)
    }

    /// Volume-weighted average price; `None` when the volume is zero.
    pub fn vwap(&self) -> Option<f64> {
        let volume = self.volume();
        (volume > 0.0).then(|| self.notional() / volume)
    }

    /// Sum of sizes: exact to the last place, however many trades (error-free additions).
    pub fn volume(&self) -> f64 {
        self.volume.value()
    }

    /// Sum of price × size, summed like [`volume`](Self::volume).
    pub fn notional(&self) -> f64 {
        self.notional.value()
    }
}

/// The candles of one symbol for one interval, as the analytics core keeps them.
#[derive(Debug, Clone)]
pub struct CandleSeries {
    length: i64,
    history: usize,
    closed: Bars,
    forming: Option<Candle>,
    revision: u64,
}

impl CandleSeries {
    /// An empty series of bars `length` nanoseconds long (positive), keeping `history` closed
    /// bars (at least one).
    pub fn new(length: i64, history: usize) -> Self {
        CandleSeries {
            length: length.max(1),
            history: history.max(1),
            closed: Bars::default(),
            forming: None,
            revision: 0,
        }
    }

    /// Adds a trade applied by the core; `now` is the stream clock after it.
    pub fn add(&mut self, ts: Timestamp, price: f64, size: f64, now: Timestamp) {
        // Most trades fall in the forming bar: no division for them.
        let start = match &self.forming {
            Some(forming) if ts >= forming.start && ts - forming.start < self.length => {
                forming.start
            }
            _ => ts.div_euclid(self.length) * self.length,
        };
        match &mut self.forming {
            Some(forming) if start == forming.start => {
                if forming.start + self.length <= now {
                    // Readers may already have seen this bar as closed.
                    self.revision += 1;
                }
                forming.add(ts, price, size);
            }
            Some(forming) if start > forming.start => {
                let done = *forming;
                *forming = Candle::first(start, ts, price, size);
                self.push_closed(done);
            }
            Some(_) => self.amend_closed(start, ts, price, size),
            None => match self.closed.last() {
                Some(last) if start <= last.start => self.amend_closed(start, ts, price, size),
                _ => self.forming = Some(Candle::first(start, ts, price, size)),
            },
        }
    }

    /// What readers get: an O(1) copy of the series.
    pub fn view(&self) -> CandleView {
        CandleView {
            length: self.length,
            history: self.history,
            closed: self.closed.clone(),
            forming: self.forming,
            revision: self.revision,
        }
    }

    /// Which closed bars there are at stream time `now` (the same as the view's, without one).
    pub fn sequence(&self, now: Timestamp) -> ClosedSequence {
        let forming_closed = self
            .forming
            .as_ref()
            .filter(|f| f.start.saturating_add(self.length) <= now);
        let last = forming_closed.or(self.closed.last());
        ClosedSequence {
            last_start: last.map_or(Timestamp::MIN, |c| c.start),
            revision: self.revision,
        }
    }

    fn push_closed(&mut self, candle: Candle) {
        self.closed.push_back(candle);
        self.trim();
    }

    /// Drops the oldest bars beyond `history`, a batch at a time: readers already see only the
    /// last `history` ([`CandleView::closed`]), and one split of the persistent vector costs
    /// about what a single `pop_front` does.
    fn trim(&mut self) {
        let len = self.closed.len();
        if len > self.history + TRIM_SLACK {
            self.closed.keep_last(self.history);
        }
    }

    fn amend_closed(&mut self, start: Timestamp, ts: Timestamp, price: f64, size: f64) {
        self.revision += 1;
        let position = self.closed.position(start);
        match position {
            Ok(index) => {
                if let Some(candle) = self.closed.get_mut(index) {
                    candle.add(ts, price, size);
                }
            }
            Err(index) => {
                if index + self.history <= self.closed.len() {
                    // Older than every bar readers see: it would never show.
                    return;
                }
                self.closed
                    .insert(index, Candle::first(start, ts, price, size));
                self.trim();
            }
        }
    }
}

/// A reader's copy of one symbol's candles for one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct CandleView {
    length: i64,
    history: usize,
    closed: Bars,
    forming: Option<Candle>,
    revision: u64,
}

/// Identifies one state of a series' closed bars: equal sequences mean equal closed bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClosedSequence {
    /// Start of the last closed bar, nanoseconds (`i64::MIN` when none).
    pub last_start: Timestamp,
    /// Amendments of closed bars so far.
    pub revision: u64,
}

impl CandleView {
    /// The interval's length, nanoseconds.
    pub fn length(&self) -> i64 {
        self.length
    }

    /// Counts amendments of closed bars by trades that arrived late (within the lateness).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn forming_closed(&self, clock: Timestamp) -> Option<&Candle> {
        self.forming
            .as_ref()
            .filter(|f| f.start.saturating_add(self.length) <= clock)
    }

    /// The closed bars as of stream time `clock`, oldest first, at most `history` of them.
    pub fn closed(&self, clock: Timestamp) -> impl DoubleEndedIterator<Item = &Candle> + '_ {
        let extra = self.forming_closed(clock);
        let total = self.closed.len() + usize::from(extra.is_some());
        let skip = total.saturating_sub(self.history);
        self.closed.iter().skip(skip).chain(extra)
    }

    /// Number of closed bars as of `clock`.
    pub fn closed_count(&self, clock: Timestamp) -> usize {
        let total = self.closed.len() + usize::from(self.forming_closed(clock).is_some());
        total.min(self.history)
    }

    /// The bar still forming at `clock`, if any.
    pub fn forming(&self, clock: Timestamp) -> Option<&Candle> {
        self.forming
            .as_ref()
            .filter(|f| f.start.saturating_add(self.length) > clock)
    }

    /// Which closed bars there are at `clock`.
    pub fn sequence(&self, clock: Timestamp) -> ClosedSequence {
        let last = self.closed(clock).next_back();
        ClosedSequence {
            last_start: last.map_or(Timestamp::MIN, |c| c.start),
            revision: self.revision,
        }
    }

    /// The last `limit` bars at `clock`, oldest first, each with whether it is closed; the
    /// forming bar, if any, is last.
    pub fn recent(&self, clock: Timestamp, limit: usize) -> Vec<(Candle, bool)> {
        let forming = self.forming(clock).copied();
        let closed_wanted = limit.saturating_sub(usize::from(forming.is_some()));
        let closed_count = self.closed_count(clock);
        let mut bars: Vec<(Candle, bool)> = self
            .closed(clock)
            .skip(closed_count.saturating_sub(closed_wanted))
            .map(|c| (*c, true))
            .collect();
        if limit > 0 {
            bars.extend(forming.map(|f| (f, false)));
        }
        bars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn bars(view: &CandleView, clock: Timestamp) -> Vec<(i64, f64, f64, f64, f64, u64, bool)> {
        view.recent(clock, usize::MAX)
            .into_iter()
            .map(|(c, closed)| {
                (
                    c.start / SEC,
                    c.open,
                    c.high,
                    c.low,
                    c.close,
                    c.count,
                    closed,
                )
            })
            .collect()
    }

    #[test]
    fn bars_are_epoch_aligned_and_close_with_the_clock() {
        let mut series = CandleSeries::new(60 * SEC, 10);
        series.add(61 * SEC, 10.0, 1.0, 61 * SEC);
        series.add(62 * SEC, 12.0, 1.0, 62 * SEC);
        series.add(119 * SEC, 9.0, 2.0, 119 * SEC);
        let view = series.view();
        assert_eq!(
            bars(&view, 119 * SEC),
            vec![(60, 10.0, 12.0, 9.0, 9.0, 3, false)]
        );
        // The clock reaching the end closes it, without a trade.
        assert_eq!(
            bars(&view, 120 * SEC),
            vec![(60, 10.0, 12.0, 9.0, 9.0, 3, true)]
        );
        let candle = view.recent(120 * SEC, 1)[0].0;
        assert_eq!(candle.volume(), 4.0);
        assert_eq!(candle.vwap(), Some((10.0 + 12.0 + 18.0) / 4.0));
        // A gap: no bar for the empty minutes.
        series.add(300 * SEC, 5.0, 1.0, 300 * SEC);
        let view = series.view();
        assert_eq!(
            bars(&view, 300 * SEC),
            vec![
                (60, 10.0, 12.0, 9.0, 9.0, 3, true),
                (300, 5.0, 5.0, 5.0, 5.0, 1, false)
            ]
        );
        assert_eq!(view.closed_count(300 * SEC), 1);
        assert_eq!(
            view.recent(300 * SEC, 1).len(),
            1,
            "limit counts the forming bar"
        );
    }

    #[test]
    fn late_trades_amend_closed_bars_and_move_the_revision() {
        let mut series = CandleSeries::new(SEC, 10);
        series.add(SEC + 100, 1.0, 1.0, SEC + 100);
        series.add(3 * SEC, 3.0, 1.0, 3 * SEC);
        let before = series.view().sequence(3 * SEC);
        // Into the closed bar at 1 s, earlier than its open: new open.
        series.add(SEC, 0.5, 1.0, 3 * SEC);
        // Into the empty bar at 2 s: a new closed bar between the two.
        series.add(2 * SEC + 5, 2.0, 1.0, 3 * SEC);
        let view = series.view();
        let after = view.sequence(3 * SEC);
        assert_eq!(
            after.last_start,
            2 * SEC,
            "the new bar at 2 s is the last closed"
        );
        assert_eq!(after.revision, before.revision + 2, "two amendments");
        let starts: Vec<_> = view.closed(3 * SEC).map(|c| c.start / SEC).collect();
        assert_eq!(starts, vec![1, 2]);
        let first = view.closed(3 * SEC).next().copied();
        assert_eq!(
            first.map(|c| (c.count, c.open, c.close)),
            Some((2, 0.5, 1.0))
        );
    }

    #[test]
    fn keeps_the_last_history_bars() {
        let mut series = CandleSeries::new(SEC, 3);
        for second in 0..10 {
            series.add(second * SEC, second as f64, 1.0, second * SEC);
        }
        let view = series.view();
        let closed: Vec<_> = view.closed(9 * SEC).map(|c| c.close).collect();
        assert_eq!(closed, vec![6.0, 7.0, 8.0]);
        // Once the clock closes the forming bar, still three.
        let closed: Vec<_> = view.closed(10 * SEC).map(|c| c.close).collect();
        assert_eq!(closed, vec![7.0, 8.0, 9.0]);
        assert_eq!(view.sequence(10 * SEC).last_start, 9 * SEC);
        for clock in [9 * SEC, 10 * SEC] {
            assert_eq!(series.sequence(clock), view.sequence(clock));
        }
    }

    #[test]
    fn an_earlier_open_wins_and_the_last_equal_time_closes() {
        let mut series = CandleSeries::new(SEC, 3);
        series.add(500, 2.0, 1.0, 500);
        series.add(100, 1.0, 1.0, 500);
        series.add(500, 3.0, 1.0, 500);
        let bar = series.view().recent(500, 1)[0].0;
        assert_eq!(
            (bar.open, bar.close, bar.low, bar.high),
            (1.0, 3.0, 1.0, 3.0)
        );
    }

    #[test]
    fn volume_and_notional_are_summed_exactly() {
        // Ten trades of 0.1: a plain running sum says 0.9999999999999999.
        let mut series = CandleSeries::new(1_000, 10);
        for ts in 0..10 {
            series.add(ts, 3.0, 0.1, ts);
        }
        let view = series.view();
        let candle = view.forming.expect("one bar");
        assert_eq!(candle.volume(), 1.0);
        // Each product 3 × 0.1 rounds to 0.30000000000000004; their sum is kept exactly.
        assert_eq!(candle.notional(), 10.0 * (3.0 * 0.1));
        assert_ne!((0..10).fold(0.0, |sum: f64, _| sum + 0.1), 1.0);
    }
}
