//! The per-symbol analytics engine: every trade of every symbol goes through
//! [`Engine::apply`], which keeps the stream clock, drops late and duplicate trades, and updates
//! each symbol's rolling windows.
//!
//! The engine is synchronous and single-threaded by design (no `.await`, no locks): the async task
//! around it is a thin loop, and benches and tests drive it directly. Readers never touch it; they
//! read the [`SymbolSnapshot`]s it produces for the symbols that changed.
//!
//! Windows of symbols that stop trading still drain as the clock advances: every symbol is
//! scheduled (in a min-heap) for the stream time at which its oldest windowed trade expires, and
//! the engine evicts what is due in one pass every 1,024 trades, when the clock moves
//! without a trade, and before it hands out changed snapshots — so a symbol is marked changed when
//! its windows lose a trade, and memory follows the longest window. Reads are exact at the stream
//! clock at any time: a window not yet moved there finds its start by binary search.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use foldhash::{HashMap, HashMapExt, HashSet};
use smallvec::SmallVec;
use std::sync::Arc;

use crate::analytics::WindowSpec;
use crate::analytics::candles::{CandleSeries, CandleView, ClosedSequence, IntervalSpec};
use crate::analytics::window::{Entry, RollingWindow, TradeLog, WindowStats};
use crate::clock::{Admission, StreamClock};
use crate::model::{FeedId, Quote, Symbol, Timestamp, Trade};

/// How many recent trade ids per feed and symbol are remembered to detect duplicates, unless
/// configured otherwise (`--dedup-ids`).
pub const DEFAULT_DEDUP_CAPACITY: usize = 4096;

/// A trade moves the windows of its own symbol to the clock; the other symbols' windows are
/// brought there in one pass every this many applied trades (and before snapshots are taken), so
/// that a symbol whose trades expire one by one is visited once per pass rather than once per
/// expiry.
const SETTLE_EVERY: usize = 1024;

/// Closed candles kept per symbol and interval unless configured otherwise.
pub const DEFAULT_CANDLE_HISTORY: usize = 1000;

/// What happened to a trade handed to [`Engine::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied to the symbol's windows.
    Applied,
    /// Older than the stream clock by more than the allowed lateness: dropped.
    Late,
    /// A trade id this feed already delivered for this symbol: dropped.
    Duplicate,
}

/// Per-feed counts of what the engine did with that feed's trades since they were last taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedTally {
    /// Trades applied.
    pub applied: u64,
    /// Trades dropped as late.
    pub late: u64,
    /// Trades dropped as duplicates.
    pub duplicate: u64,
    /// Trades applied whose id is older than every id remembered for their feed and symbol
    /// (ids increasing): beyond the duplicate filter's horizon, so a resend could not be told.
    pub beyond_horizon: u64,
}

/// A symbol's published state: what readers (the HTTP API) see.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolSnapshot {
    /// The symbol.
    pub symbol: Symbol,
    /// Stream time the statistics are exact for, nanoseconds.
    pub as_of: Timestamp,
    /// Price of the latest trade (by event time); `None` before the first trade.
    pub last_price: Option<f64>,
    /// Event time of the latest trade.
    pub last_ts: Option<Timestamp>,
    /// The latest best bid and offer, if the symbol is quoted.
    pub quote: Option<Arc<Quote>>,
    /// Trades applied for this symbol since start.
    pub trade_count: u64,
    /// One entry per configured window, in configuration order (shared by every symbol whose
    /// windows are all empty).
    pub windows: Arc<[WindowStats]>,
    /// One entry per configured candle interval, in configuration order.
    pub candles: Vec<CandleView>,
}

/// One symbol's state, read in place: O(1) per field, no snapshot built.
#[derive(Debug, Clone, Copy)]
pub struct SymbolView<'a> {
    state: &'a SymbolState,
    index: usize,
    /// The stream time the view reads the windows at.
    now: Timestamp,
}

impl SymbolView<'_> {
    /// The symbol.
    pub fn symbol(&self) -> &Symbol {
        &self.state.symbol
    }

    /// The symbol's dense index in the engine (0, 1, 2, … in order of appearance; stable).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Price of the latest trade by event time.
    pub fn last_price(&self) -> Option<f64> {
        (self.state.trade_count > 0).then_some(self.state.last_price)
    }

    /// Event time of the latest trade.
    pub fn last_ts(&self) -> Option<Timestamp> {
        (self.state.trade_count > 0).then_some(self.state.last_ts)
    }

    /// Statistics of configured window `index` (empty if there is no such window).
    pub fn window(&self, index: usize) -> WindowStats {
        self.state
            .windows
            .get(index)
            .map_or_else(WindowStats::empty, |w| {
                w.stats(&self.state.trades, self.now)
            })
    }

    /// Volume of configured window `index` (0 if there is no such window).
    pub fn window_volume(&self, index: usize) -> f64 {
        self.state
            .windows
            .get(index)
            .map_or(0.0, |w| w.volume(&self.state.trades, self.now))
    }

    /// VWAP of configured window `index`.
    pub fn window_vwap(&self, index: usize) -> Option<f64> {
        self.state
            .windows
            .get(index)?
            .vwap(&self.state.trades, self.now)
    }

    /// change_pct of configured window `index`.
    pub fn window_change_pct(&self, index: usize) -> Option<f64> {
        self.state
            .windows
            .get(index)?
            .change_pct(&self.state.trades, self.now)
    }

    /// Candles of configured interval `index`.
    pub fn candles(&self, index: usize) -> Option<CandleView> {
        self.state.candles.get(index).map(CandleSeries::view)
    }

    /// Which closed candles interval `index` has at stream time `now` (cheaper than a view).
    pub fn closed_sequence(&self, index: usize, now: Timestamp) -> Option<ClosedSequence> {
        self.state.candles.get(index).map(|c| c.sequence(now))
    }
}

/// The last trade ids seen from one feed for one symbol, bounded.
///
/// Most venues number a symbol's trades in increasing order (Binance, Coinbase, Kraken): while
/// the ids only grow, the queue of recent ids is sorted, a new id above the last is new without
/// any lookup, and a resent one is found by binary search — 8 bytes per id. The first id that
/// arrives out of order (venues that interleave several exchanges' ids) switches this feed and
/// symbol to a hash set beside the queue for good.
#[derive(Debug, Default)]
struct RecentIds {
    /// The last ids, in arrival order (sorted while `seen` is `None`).
    order: VecDeque<u64>,
    /// Every id in `order`, once ids have arrived out of order.
    seen: Option<HashSet<u64>>,
}

impl RecentIds {
    fn contains(&self, id: u64) -> bool {
        match &self.seen {
            Some(seen) => seen.contains(&id),
            None => self
                .order
                .back()
                .is_some_and(|&last| id <= last && self.order.binary_search(&id).is_ok()),
        }
    }

    /// Whether `id` is older than every id remembered while they are in increasing order (a full
    /// queue only: beyond the horizon, a resend could not be told from a new trade).
    fn beyond_horizon(&self, id: u64, capacity: usize) -> bool {
        self.seen.is_none()
            && self.order.len() >= capacity
            && self.order.front().is_some_and(|&oldest| id < oldest)
    }

    /// Records `id`; returns false when it was already there.
    fn insert(&mut self, id: u64, capacity: usize) -> bool {
        if self.contains(id) {
            return false;
        }
        if self.seen.is_none() && self.order.back().is_some_and(|&last| id < last) {
            self.seen = Some(self.order.iter().copied().collect());
        }
        // The oldest goes first, so the queue never holds more than `capacity` (a push beyond
        // it would double the queue's allocation for one id).
        if self.order.len() >= capacity
            && let (Some(oldest), Some(seen)) = (self.order.pop_front(), &mut self.seen)
        {
            seen.remove(&oldest);
        }
        if let Some(seen) = &mut self.seen {
            seen.insert(id);
        }
        self.order.push_back(id);
        true
    }
}

/// Everything the engine keeps for one symbol.
#[derive(Debug)]
struct SymbolState {
    symbol: Symbol,
    /// Trades inside the longest window, sorted by (event time, arrival).
    trades: TradeLog,
    /// Inline for up to six windows (the default): every trade reads them, and a
    /// pointer away they would cost a cache miss per trade once symbols outnumber the cache.
    windows: SmallVec<[RollingWindow; 6]>,
    candles: Vec<CandleSeries>,
    next_seq: u64,
    last_price: f64,
    last_ts: Timestamp,
    trade_count: u64,
    /// Behind a pointer: most symbols are never quoted, and every trade reads this struct.
    quote: Option<Arc<Quote>>,
    /// The last trade ids of each feed that delivered this symbol (usually one).
    recent_ids: Vec<(FeedId, RecentIds)>,
    /// Earliest live entry of this symbol in the engine's expiry schedule (`i64::MAX`: none).
    scheduled: Timestamp,
    dirty: bool,
}

impl SymbolState {
    fn new(symbol: Symbol, windows: &[WindowSpec], candles: &CandleSettings) -> Self {
        SymbolState {
            symbol,
            trades: TradeLog::new(),
            windows: windows
                .iter()
                .map(|w| RollingWindow::new(w.length))
                .collect(),
            candles: candles
                .intervals
                .iter()
                .map(|i| CandleSeries::new(i.length, candles.history))
                .collect(),
            next_seq: 0,
            last_price: f64::NAN,
            last_ts: Timestamp::MIN,
            trade_count: 0,
            quote: None,
            recent_ids: Vec::new(),
            scheduled: Timestamp::MAX,
            dirty: false,
        }
    }

    fn recent_ids(&self, feed: FeedId) -> Option<&RecentIds> {
        self.recent_ids
            .iter()
            .find_map(|(f, recent)| (*f == feed).then_some(recent))
    }

    fn recent_ids_mut(&mut self, feed: FeedId) -> &mut RecentIds {
        let position = match self.recent_ids.iter().position(|(f, _)| *f == feed) {
            Some(position) => position,
            None => {
                self.recent_ids.push((feed, RecentIds::default()));
                self.recent_ids.len() - 1
            }
        };
        &mut self.recent_ids[position].1
    }

    fn evict_expired(&mut self, now: Timestamp) {
        for window in &mut self.windows {
            window.evict_expired(&self.trades, now);
        }
        let unused = self
            .windows
            .iter()
            .map(RollingWindow::start)
            .min()
            .unwrap_or(0);
        if unused > 0 {
            self.trades.drop_front(unused);
            for window in &mut self.windows {
                window.trades_dropped(unused);
            }
        }
    }

    fn insert(&mut self, trade: &Trade, now: Timestamp, in_order: bool) {
        let entry = Entry::new(trade.exchange_ts, self.next_seq, trade.price, trade.size);
        self.next_seq += 1;
        self.trade_count += 1;
        if trade.exchange_ts >= self.last_ts {
            self.last_ts = trade.exchange_ts;
            self.last_price = trade.price;
        }
        self.dirty = true;
        for series in &mut self.candles {
            series.add(trade.exchange_ts, trade.price, trade.size, now);
        }
        if in_order {
            self.trades.push(entry);
            for window in &mut self.windows {
                window.appended(entry.ts);
            }
            return;
        }
        if !self.windows.iter().any(|w| w.contains(entry.ts, now)) {
            return;
        }
        let position = self.trades.position_of(entry.ts);
        self.trades.insert(position, entry);
        for window in &mut self.windows {
            window.inserted(&self.trades, position, now);
        }
    }

    fn next_expiry(&self) -> Option<Timestamp> {
        self.windows
            .iter()
            .filter_map(RollingWindow::next_expiry)
            .min()
    }

    fn snapshot(&self, as_of: Timestamp, empty: &Arc<[WindowStats]>) -> SymbolSnapshot {
        let windows = if self.trades.is_empty() {
            Arc::clone(empty)
        } else {
            self.windows
                .iter()
                .map(|w| w.stats(&self.trades, as_of))
                .collect()
        };
        SymbolSnapshot {
            symbol: self.symbol.clone(),
            as_of,
            last_price: (self.trade_count > 0).then_some(self.last_price),
            last_ts: (self.trade_count > 0).then_some(self.last_ts),
            quote: self.quote.clone(),
            trade_count: self.trade_count,
            windows,
            candles: self.candles.iter().map(CandleSeries::view).collect(),
        }
    }
}

/// Which candles every symbol gets.
#[derive(Debug, Clone, Default)]
struct CandleSettings {
    intervals: Arc<[IntervalSpec]>,
    history: usize,
}

/// The synchronous analytics core: rolling windows for every symbol, as of the stream clock.
#[derive(Debug)]
pub struct Engine {
    windows: Arc<[WindowSpec]>,
    candles: CandleSettings,
    clock: StreamClock,
    symbols: Vec<SymbolState>,
    /// Symbol → dense index (foldhash: every trade looks its symbol up here).
    index: HashMap<Symbol, usize>,
    /// (expiry time, symbol index), earliest first; entries superseded by an earlier one for the
    /// same symbol are skipped when they surface.
    expiries: BinaryHeap<Reverse<(Timestamp, usize)>>,
    dirty: Vec<usize>,
    tallies: Vec<FeedTally>,
    dedup_capacity: usize,
    /// Trades applied since other symbols' windows were last brought to the clock.
    unsettled: usize,
    /// The statistics of every window of a symbol without trades in them, shared.
    empty_windows: Arc<[WindowStats]>,
}

impl Engine {
    /// An engine keeping `windows` (at least one) per symbol, admitting trades up to
    /// `allowed_lateness` nanoseconds behind the stream clock. It builds no candles unless
    /// [`with_candles`](Self::with_candles) says which.
    pub fn new(windows: Arc<[WindowSpec]>, allowed_lateness: i64) -> Self {
        Engine {
            candles: CandleSettings::default(),
            clock: StreamClock::new(allowed_lateness),
            symbols: Vec::new(),
            index: HashMap::new(),
            expiries: BinaryHeap::new(),
            dirty: Vec::new(),
            tallies: Vec::new(),
            dedup_capacity: DEFAULT_DEDUP_CAPACITY,
            unsettled: 0,
            empty_windows: windows.iter().map(|_| WindowStats::empty()).collect(),
            windows,
        }
    }

    /// Also builds candles for `intervals` per symbol, keeping the last `history` closed bars of
    /// each. Call before the first trade.
    pub fn with_candles(mut self, intervals: Arc<[IntervalSpec]>, history: usize) -> Self {
        self.candles = CandleSettings { intervals, history };
        self
    }

    /// Remembers the last `capacity` trade ids (at least one) per feed and symbol to detect
    /// duplicates. Call before the first trade.
    pub fn with_dedup_capacity(mut self, capacity: usize) -> Self {
        self.dedup_capacity = capacity.max(1);
        self
    }

    /// The configured windows, in order.
    pub fn windows(&self) -> &Arc<[WindowSpec]> {
        &self.windows
    }

    /// The stream clock, `None` before the first trade.
    pub fn now(&self) -> Option<Timestamp> {
        self.clock.now()
    }

    /// The event-time clock (the largest exchange time applied), `None` before the first trade.
    pub fn event_time(&self) -> Option<Timestamp> {
        self.clock.event_time()
    }

    /// Number of symbols seen.
    pub fn symbol_count(&self) -> usize {
        self.symbols.len()
    }

    /// Applies one trade: drops it if it is a duplicate or late, otherwise moves the clock and
    /// updates the symbol's windows (and evicts whatever the clock's move expired elsewhere).
    pub fn apply(&mut self, trade: &Trade) -> Outcome {
        let feed = trade.feed.index();
        if self.tallies.len() <= feed {
            self.tallies.resize(feed + 1, FeedTally::default());
        }
        // A trade id this feed already delivered for this symbol is a duplicate (e.g. resent
        // after a reconnect), however old it is.
        let known = self.index.get(&trade.symbol).copied();
        if let (Some(id), Some(index)) = (trade.trade_id, known)
            && self.symbols[index]
                .recent_ids(trade.feed)
                .is_some_and(|recent| recent.contains(id))
        {
            self.tallies[feed].duplicate += 1;
            return Outcome::Duplicate;
        }
        // Then lateness, still without touching any state: a late trade leaves no trace but its
        // count.
        if self.clock.classify(trade.exchange_ts) == Admission::Late {
            self.tallies[feed].late += 1;
            return Outcome::Late;
        }
        let symbol_index = match known {
            Some(index) => index,
            None => self.symbol_index(&trade.symbol),
        };
        if let Some(id) = trade.trade_id {
            let capacity = self.dedup_capacity;
            let recent = self.symbols[symbol_index].recent_ids_mut(trade.feed);
            if recent.beyond_horizon(id, capacity) {
                self.tallies[feed].beyond_horizon += 1;
            }
            recent.insert(id, capacity);
        }
        let admission = self.clock.observe(trade.exchange_ts);
        let now = self.clock.now().unwrap_or(trade.exchange_ts);
        let state = &mut self.symbols[symbol_index];
        let was_dirty = state.dirty;
        state.evict_expired(now);
        state.insert(trade, now, admission == Admission::InOrder);
        if !was_dirty {
            self.dirty.push(symbol_index);
        }
        self.reschedule(symbol_index);
        self.tallies[feed].applied += 1;
        self.unsettled += 1;
        if self.unsettled >= SETTLE_EVERY {
            self.expire_due(now);
        }
        Outcome::Applied
    }

    /// Records the latest best bid and offer of a symbol. Quotes do not move the stream clock
    /// and do not enter the windows.
    pub fn apply_quote(&mut self, quote: &Quote) {
        let index = self.symbol_index(&quote.symbol);
        let state = &mut self.symbols[index];
        state.quote = Some(Arc::new(quote.clone()));
        if !state.dirty {
            state.dirty = true;
            self.dirty.push(index);
        }
    }

    /// Moves the clocks as a trade at `ts` of a symbol this engine does not hold would have: an
    /// analytics node's partition hears the cluster's event-time clock this way, so its symbols'
    /// windows and lateness are judged as one process holding every symbol would judge them. A
    /// time the lateness no longer admits moves nothing.
    pub fn observe_event_time(&mut self, ts: Timestamp) {
        if self.clock.classify(ts) == Admission::Late {
            return;
        }
        if self.clock.observe(ts) == Admission::InOrder {
            self.unsettled += 1;
            if self.unsettled >= SETTLE_EVERY {
                self.expire_due(ts);
            }
        }
    }

    /// Moves the stream clock forward without a trade (a quiet market) and drains what expired.
    /// The event-time clock stays: a trade is never made late by this.
    pub fn advance_clock(&mut self, ts: Timestamp) {
        if self.clock.advance_to(ts) {
            self.expire_due(ts);
        }
    }

    /// The current snapshot of `symbol`, if it has traded.
    pub fn snapshot(&self, symbol: &str) -> Option<SymbolSnapshot> {
        let now = self.clock.now().unwrap_or(0);
        let index = *self.index.get(symbol)?;
        Some(self.symbols[index].snapshot(now, &self.empty_windows))
    }

    /// A read-only view of `symbol` as of the stream clock (what alert rules evaluate), if it has
    /// traded.
    pub fn view(&self, symbol: &str) -> Option<SymbolView<'_>> {
        let index = *self.index.get(symbol)?;
        Some(SymbolView {
            state: &self.symbols[index],
            index,
            now: self.clock.now().unwrap_or(0),
        })
    }

    /// Every symbol (with its dense index) and the event time of its latest trade (`None` before
    /// it has traded, e.g. a symbol known only from quotes).
    pub fn last_trades(&self) -> impl Iterator<Item = (usize, &Symbol, Option<Timestamp>)> + '_ {
        self.symbols
            .iter()
            .enumerate()
            .map(|(i, s)| (i, &s.symbol, (s.trade_count > 0).then_some(s.last_ts)))
    }

    /// Snapshots of every symbol that changed since the last call.
    pub fn take_changed(&mut self) -> Vec<SymbolSnapshot> {
        let now = self.clock.now().unwrap_or(0);
        self.expire_due(now);
        let mut changed = Vec::with_capacity(self.dirty.len());
        for index in self.dirty.drain(..) {
            let state = &mut self.symbols[index];
            state.dirty = false;
            changed.push(state.snapshot(now, &self.empty_windows));
        }
        changed
    }

    /// Per-feed tallies since the last call, indexed by [`FeedId`]; resets them.
    pub fn take_tallies(&mut self) -> Vec<FeedTally> {
        let empty = vec![FeedTally::default(); self.tallies.len()];
        std::mem::replace(&mut self.tallies, empty)
    }

    /// Trades held in symbols' deques plus high/low deque entries: what the memory use of the
    /// windows is proportional to.
    pub fn held_entries(&self) -> (usize, usize) {
        let trades = self.symbols.iter().map(|s| s.trades.len()).sum();
        let extrema = self
            .symbols
            .iter()
            .map(|s| s.trades.extremum_entries())
            .sum();
        (trades, extrema)
    }

    fn symbol_index(&mut self, symbol: &Symbol) -> usize {
        if let Some(&index) = self.index.get(symbol) {
            return index;
        }
        let index = self.symbols.len();
        self.symbols.push(SymbolState::new(
            symbol.clone(),
            &self.windows,
            &self.candles,
        ));
        self.index.insert(symbol.clone(), index);
        index
    }

    fn reschedule(&mut self, index: usize) {
        let state = &mut self.symbols[index];
        if let Some(expiry) = state.next_expiry()
            && expiry < state.scheduled
        {
            state.scheduled = expiry;
            self.expiries.push(Reverse((expiry, index)));
        }
    }

    fn expire_due(&mut self, now: Timestamp) {
        self.unsettled = 0;
        while let Some(&Reverse((expiry, index))) = self.expiries.peek() {
            if expiry > now {
                break;
            }
            self.expiries.pop();
            let state = &mut self.symbols[index];
            if state.scheduled != expiry {
                continue;
            }
            state.scheduled = Timestamp::MAX;
            state.evict_expired(now);
            if state.trades.is_empty() && self.clock.classify(state.last_ts) == Admission::Late {
                // No trade of it is left in any window, and a resend of any of its trades would
                // be late: a quiet symbol needs no memory of their ids.
                state.recent_ids = Vec::new();
            }
            if !state.dirty {
                state.dirty = true;
                self.dirty.push(index);
            }
            self.reschedule(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_find_resent_ids_in_order_and_out_of_order() {
        let mut ids = RecentIds::default();
        for id in [10, 11, 15, 20] {
            assert!(ids.insert(id, 3));
        }
        assert!(ids.seen.is_none(), "increasing ids need no set");
        assert!(
            !ids.insert(15, 3) && !ids.insert(20, 3),
            "resent ids are duplicates"
        );
        assert!(!ids.contains(10), "forgotten beyond the capacity");
        assert!(ids.insert(12, 3), "a new id below the last one");
        assert!(ids.seen.is_some(), "out of order: a set from now on");
        assert!(!ids.insert(12, 3) && !ids.insert(20, 3));
        assert!(ids.insert(21, 3));
        assert!(!ids.contains(15), "the set forgets what the queue drops");
        assert_eq!(ids.order.len(), 3);
    }

    const MS: i64 = 1_000_000;

    fn spec(label: &str, ms: i64) -> WindowSpec {
        WindowSpec {
            label: label.to_string(),
            length: ms * MS,
        }
    }

    fn trade(symbol: &str, ms: i64, price: f64) -> Trade {
        Trade {
            symbol: Symbol::new(symbol),
            price,
            size: 1.0,
            exchange_ts: ms * MS,
            receive_ts: ms * MS,
            feed: FeedId(0),
            trade_id: None,
            side: None,
        }
    }

    fn engine() -> Engine {
        Engine::new(
            Arc::from(vec![spec("1s", 1000), spec("10s", 10_000)]),
            1000 * MS,
        )
    }

    #[test]
    fn quiet_symbol_drains_as_the_clock_moves() {
        let mut engine = engine();
        engine.apply(&trade("A", 0, 10.0));
        engine.apply(&trade("B", 500, 20.0));
        engine.apply(&trade("B", 1500, 21.0));
        let a = engine.snapshot("A").expect("A traded");
        assert_eq!(a.as_of, 1500 * MS);
        assert_eq!(a.windows[0].count, 0, "A's 1s window emptied by B's trades");
        assert_eq!(a.windows[1].count, 1);
        engine.advance_clock(10_600 * MS);
        let a = engine.snapshot("A").expect("A traded");
        assert_eq!(a.windows[1].count, 0);
        assert_eq!(a.last_price, Some(10.0));
        let b = engine.snapshot("B").expect("B traded");
        assert_eq!(
            b.windows[1].count, 1,
            "B's 500 ms trade left the 10s window at 10.5 s"
        );
    }

    fn with_id(mut trade: Trade, id: u64) -> Trade {
        trade.trade_id = Some(id);
        trade
    }

    #[test]
    fn a_quiet_symbol_forgets_its_ids_only_once_a_resend_would_be_late() {
        for (lateness_ms, resend) in [(1000, Outcome::Late), (20_000, Outcome::Duplicate)] {
            let mut engine = Engine::new(
                Arc::from(vec![spec("1s", 1000), spec("10s", 10_000)]),
                lateness_ms * MS,
            );
            assert_eq!(
                engine.apply(&with_id(trade("A", 0, 10.0), 1)),
                Outcome::Applied
            );
            // B's trade moves the clock past A's longest window, and a publication settles
            // every symbol: A holds no trade.
            engine.apply(&with_id(trade("B", 10_500, 20.0), 1));
            engine.take_changed();
            let a = engine.snapshot("A").expect("A traded");
            assert_eq!(a.windows[1].count, 0);
            assert_eq!(
                engine.apply(&with_id(trade("A", 0, 10.0), 1)),
                resend,
                "lateness {lateness_ms} ms"
            );
        }
    }

    #[test]
    fn symbols_with_empty_windows_share_one_set_of_empty_statistics() {
        let mut engine = engine();
        engine.apply(&trade("A", 0, 10.0));
        engine.apply(&trade("C", 5, 10.0));
        engine.apply(&trade("B", 10_500, 20.0));
        engine.advance_clock(30_000 * MS);
        let (a, b) = (engine.snapshot("A"), engine.snapshot("B"));
        let (a, b) = (a.expect("A traded"), b.expect("B traded"));
        assert!(Arc::ptr_eq(&a.windows, &b.windows));
        assert_eq!(*a.windows, [WindowStats::empty(), WindowStats::empty()]);
        assert_eq!(a.last_price, Some(10.0));
    }

    #[test]
    fn late_and_reordered_trades() {
        let mut engine = engine();
        engine.apply(&trade("A", 5000, 10.0));
        assert_eq!(engine.apply(&trade("A", 3999, 99.0)), Outcome::Late);
        assert_eq!(engine.apply(&trade("A", 4500, 12.0)), Outcome::Applied);
        let a = engine.snapshot("A").expect("A traded");
        assert_eq!(
            a.windows[0].open,
            Some(12.0),
            "the reordered trade is the earliest"
        );
        assert_eq!(a.windows[0].close, Some(10.0));
        assert_eq!(a.last_price, Some(10.0));
        assert_eq!(a.windows[0].first_ms, Some(4500));
        let tallies = engine.take_tallies();
        assert_eq!(
            tallies[0],
            FeedTally {
                applied: 2,
                late: 1,
                duplicate: 0,
                beyond_horizon: 0,
            }
        );
    }

    #[test]
    fn a_quiet_market_advance_leaves_the_venues_next_trades_applied() {
        let mut engine = engine();
        engine.apply(&trade("A", 5000, 10.0));
        // A stall: the wall clock moves readers 3 s on, draining the 1 s window.
        engine.advance_clock(8000 * MS);
        assert_eq!(engine.snapshot("A").map(|a| a.windows[0].count), Some(0));
        // The venue resumes where it stopped: its trades are not late (event time is 5 s) …
        assert_eq!(engine.apply(&trade("A", 5100, 11.0)), Outcome::Applied);
        assert_eq!(engine.apply(&trade("A", 7500, 12.0)), Outcome::Applied);
        assert_eq!(engine.apply(&trade("A", 7900, 13.0)), Outcome::Applied);
        // … and the windows take back in those whose time is inside them.
        let a = engine.snapshot("A").expect("A traded");
        assert_eq!(a.as_of, 8000 * MS);
        assert_eq!(a.windows[0].count, 2, "7.5 s and 7.9 s are in (7 s, 8 s]");
        assert_eq!(a.windows[1].count, 4);
        assert_eq!(a.last_price, Some(13.0));
        // Lateness is still judged against event time (now 7.9 s).
        assert_eq!(engine.apply(&trade("A", 6899, 1.0)), Outcome::Late);
        assert_eq!(engine.apply(&trade("A", 8100, 14.0)), Outcome::Applied);
        assert_eq!(engine.now(), Some(8100 * MS));
    }

    #[test]
    fn duplicates_are_dropped_per_feed() {
        let mut engine = engine();
        let mut first = trade("A", 0, 10.0);
        first.trade_id = Some(7);
        assert_eq!(engine.apply(&first), Outcome::Applied);
        assert_eq!(engine.apply(&first), Outcome::Duplicate);
        let mut other_feed = first.clone();
        other_feed.feed = FeedId(1);
        assert_eq!(engine.apply(&other_feed), Outcome::Applied);
        assert_eq!(engine.snapshot("A").map(|s| s.trade_count), Some(2));
    }

    #[test]
    fn ids_older_than_the_horizon_are_counted() {
        let mut engine = engine().with_dedup_capacity(3);
        let with_id = |ms: i64, id: u64| {
            let mut t = trade("A", ms, 1.0);
            t.trade_id = Some(id);
            t
        };
        for (ms, id) in [(0, 10), (1, 11), (2, 12), (3, 13)] {
            assert_eq!(engine.apply(&with_id(ms, id)), Outcome::Applied);
        }
        // 11, 12, 13 remembered: 12 is a duplicate, 10 is beyond the horizon (applied, counted).
        assert_eq!(engine.apply(&with_id(4, 12)), Outcome::Duplicate);
        assert_eq!(engine.apply(&with_id(5, 10)), Outcome::Applied);
        let tallies = engine.take_tallies();
        assert_eq!(tallies[0].beyond_horizon, 1);
        assert_eq!(tallies[0].duplicate, 1);
    }

    #[test]
    fn changed_snapshots_are_taken_once() {
        let mut engine = engine();
        engine.apply(&trade("A", 0, 10.0));
        engine.apply(&trade("A", 1, 11.0));
        assert_eq!(engine.take_changed().len(), 1);
        assert!(engine.take_changed().is_empty());
        engine.advance_clock(1000 * MS);
        let changed = engine.take_changed();
        assert_eq!(changed.len(), 1, "the 1s window lost a trade");
        assert_eq!(changed[0].windows[0].count, 1);
    }
}
