//! The monotonic deques that give the highest and lowest price of any suffix of a trade log.

use std::collections::VecDeque;

use super::log::Entry;
use crate::model::Timestamp;

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

    /// Entries currently held (for memory accounting).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
