//! Where the core publishes per-symbol snapshots for readers.
//!
//! An analytics task is the only writer of its symbols. After each batch it swaps in a new
//! [`SymbolSnapshot`] for every symbol that changed ([`arc_swap::ArcSwap`], one slot per symbol)
//! and then publishes its stream clock. HTTP handlers load those slots without ever taking a lock
//! the core needs per trade: the map of slots is write-locked only when a new symbol appears.
//!
//! One process usually has one writer. An analytics node of a cluster has one per partition it
//! owns, each with its own clock: a symbol's answers are as of its writer's clock, and a writer
//! whose partition moves away takes its symbols out ([`SnapshotPublisher::retire`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;

use crate::analytics::SymbolSnapshot;
use crate::model::{Symbol, Timestamp};

/// Marks "no event yet" in the published clock.
const NO_CLOCK: i64 = i64::MIN;

type Slot = Arc<ArcSwap<SymbolSnapshot>>;

/// A writer's stream clock, shared by its symbols' entries.
type Clock = Arc<AtomicI64>;

/// The latest snapshot of every symbol, and the stream clock they are exact for.
#[derive(Debug)]
pub struct SnapshotStore {
    slots: RwLock<BTreeMap<Symbol, (Slot, Clock)>>,
    clock: AtomicI64,
}

impl Default for SnapshotStore {
    fn default() -> Self {
        SnapshotStore {
            slots: RwLock::new(BTreeMap::new()),
            clock: AtomicI64::new(NO_CLOCK),
        }
    }
}

impl SnapshotStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stream clock of the last published batch, `None` before the first trade.
    pub fn clock(&self) -> Option<Timestamp> {
        match self.clock.load(Ordering::Acquire) {
            NO_CLOCK => None,
            ts => Some(ts),
        }
    }

    /// The latest snapshot of `symbol`, with the stream time it is exact for (which may be later
    /// than the snapshot's own `as_of`: a symbol that did not change stays exact as the clock
    /// advances, because the core republishes every symbol whose windows the clock changes).
    pub fn get(&self, symbol: &str) -> Option<(Arc<SymbolSnapshot>, Timestamp)> {
        let (slot, clock) = self.read_slots().get(symbol).cloned()?;
        let snapshot = slot.load_full();
        let as_of = match clock.load(Ordering::Acquire) {
            NO_CLOCK => snapshot.as_of,
            clock => clock.max(snapshot.as_of),
        };
        Some((snapshot, as_of))
    }

    /// Every symbol's latest snapshot, sorted by symbol, with the stream time they are exact for.
    pub fn all(&self) -> (Vec<Arc<SymbolSnapshot>>, Option<Timestamp>) {
        let clock = self.clock();
        let snapshots: Vec<_> = self
            .read_slots()
            .values()
            .map(|(s, _)| s.load_full())
            .collect();
        let as_of = snapshots.iter().map(|s| s.as_of).max().max(clock);
        (snapshots, as_of)
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.read_slots().len()
    }

    /// Whether no symbol has traded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read_slots(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Symbol, (Slot, Clock)>> {
        // A poisoned lock only means a writer panicked between two map operations; the map itself
        // is always consistent, so readers go on.
        self.slots
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The writer's side of a [`SnapshotStore`]: caches each symbol's slot so that publishing takes
/// no lock except when a symbol is new.
#[derive(Debug)]
pub struct SnapshotPublisher {
    store: Arc<SnapshotStore>,
    slots: HashMap<Symbol, Slot>,
    clock: Clock,
}

impl SnapshotPublisher {
    /// A publisher into `store`.
    pub fn new(store: Arc<SnapshotStore>) -> Self {
        SnapshotPublisher {
            store,
            slots: HashMap::new(),
            clock: Arc::new(AtomicI64::new(NO_CLOCK)),
        }
    }

    /// The store published into.
    pub fn store(&self) -> &Arc<SnapshotStore> {
        &self.store
    }

    /// Takes this writer's symbols out of the store (its partition moved to another node).
    pub fn retire(&mut self) {
        let mut slots = self
            .store
            .slots
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (symbol, _) in self.slots.drain() {
            if slots
                .get(&symbol)
                .is_some_and(|(_, clock)| Arc::ptr_eq(clock, &self.clock))
            {
                slots.remove(&symbol);
            }
        }
    }

    /// Publishes changed snapshots, then the clock they are exact for.
    pub fn publish(&mut self, snapshots: Vec<SymbolSnapshot>, clock: Option<Timestamp>) {
        self.publish_each(snapshots, clock, |_| {});
    }

    /// [`publish`](Self::publish), handing each published snapshot to `each` as well (the live
    /// stream).
    pub fn publish_each(
        &mut self,
        snapshots: Vec<SymbolSnapshot>,
        clock: Option<Timestamp>,
        mut each: impl FnMut(&Arc<SymbolSnapshot>),
    ) {
        for snapshot in snapshots {
            let snapshot = Arc::new(snapshot);
            each(&snapshot);
            if let Some(slot) = self.slots.get(&snapshot.symbol) {
                slot.store(snapshot);
                continue;
            }
            let symbol = snapshot.symbol.clone();
            let slot: Slot = Arc::new(ArcSwap::new(snapshot));
            self.store
                .slots
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(symbol.clone(), (Arc::clone(&slot), Arc::clone(&self.clock)));
            self.slots.insert(symbol, slot);
        }
        if let Some(clock) = clock {
            self.clock.store(clock, Ordering::Release);
            self.store.clock.fetch_max(clock, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(symbol: &str, as_of: i64) -> SymbolSnapshot {
        SymbolSnapshot {
            symbol: Symbol::new(symbol),
            as_of,
            last_price: Some(1.0),
            last_ts: Some(as_of),
            quote: None,
            trade_count: 1,
            windows: Arc::from([]),
            candles: Vec::new(),
        }
    }

    #[test]
    fn readers_see_published_snapshots_as_of_the_clock() {
        let store = Arc::new(SnapshotStore::new());
        let mut publisher = SnapshotPublisher::new(Arc::clone(&store));
        assert!(store.get("A").is_none());
        publisher.publish(vec![snapshot("B", 5), snapshot("A", 5)], Some(5));
        publisher.publish(vec![snapshot("B", 9)], Some(9));
        let (a, as_of) = store.get("A").expect("published");
        assert_eq!((a.as_of, as_of), (5, 9));
        let (all, clock) = store.all();
        let names: Vec<_> = all.iter().map(|s| s.symbol.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        assert_eq!(clock, Some(9));
    }
}
