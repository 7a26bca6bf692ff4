//! A series' closed bars, shared with readers: cheap to copy for a snapshot, and proportional to
//! the bars a symbol actually has.
//!
//! A series without bars allocates nothing. While it has few they are a plain vector behind an `Arc`, copied when the core
//! changes it while a reader holds the previous one (at most [`FEW`] bars). Past that they move to
//! a persistent vector ([`imbl::Vector`]), whose snapshot is an O(1) clone and whose append copies
//! at most one chunk — but whose first chunk takes room for 64 bars (6 KB) however many there are.
//! So a quiet symbol with a handful of bars costs a few hundred bytes, not 6 KB per interval.

use std::sync::Arc;

use imbl::Vector;

use super::Candle;

/// Bars kept in the copied vector before moving to the persistent one.
const FEW: usize = 32;

/// Closed bars, oldest first.
#[derive(Debug, Clone, Default)]
pub(super) enum Bars {
    /// None yet (no allocation).
    #[default]
    None,
    /// Up to [`FEW`] bars, copied on write when shared.
    Few(Arc<Vec<Candle>>),
    /// More, in a persistent vector.
    Many(Vector<Candle>),
}

impl PartialEq for Bars {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Bars {
    /// Number of bars.
    pub(super) fn len(&self) -> usize {
        match self {
            Bars::None => 0,
            Bars::Few(bars) => bars.len(),
            Bars::Many(bars) => bars.len(),
        }
    }

    /// The newest bar.
    pub(super) fn last(&self) -> Option<&Candle> {
        match self {
            Bars::None => None,
            Bars::Few(bars) => bars.last(),
            Bars::Many(bars) => bars.last(),
        }
    }

    /// The bars, oldest first.
    pub(super) fn iter(&self) -> Iter<'_> {
        match self {
            Bars::None => Iter::Few([].iter()),
            Bars::Few(bars) => Iter::Few(bars.iter()),
            Bars::Many(bars) => Iter::Many(bars.iter()),
        }
    }

    /// Appends a bar after every bar held.
    pub(super) fn push_back(&mut self, candle: Candle) {
        let len = self.len();
        self.insert(len, candle);
    }

    /// Where a bar starting at `start` is (`Ok`) or would go (`Err`).
    pub(super) fn position(&self, start: i64) -> Result<usize, usize> {
        match self {
            Bars::None => Err(0),
            Bars::Few(bars) => bars.binary_search_by_key(&start, |c| c.start),
            Bars::Many(bars) => bars.binary_search_by_key(&start, |c| c.start),
        }
    }

    /// The bar at `index`, to amend.
    pub(super) fn get_mut(&mut self, index: usize) -> Option<&mut Candle> {
        match self {
            Bars::None => None,
            Bars::Few(bars) => Arc::make_mut(bars).get_mut(index),
            Bars::Many(bars) => bars.get_mut(index),
        }
    }

    /// Inserts a bar at `index` (bars stay sorted by start).
    pub(super) fn insert(&mut self, index: usize, candle: Candle) {
        match self {
            Bars::None => *self = Bars::Few(Arc::new(vec![candle])),
            Bars::Few(bars) if bars.len() < FEW => match Arc::get_mut(bars) {
                Some(bars) => bars.insert(index, candle),
                None => {
                    // Shared with a reader: a copy of exactly the size needed.
                    let mut copy = Vec::with_capacity(bars.len() + 1);
                    copy.extend_from_slice(&bars[..index]);
                    copy.push(candle);
                    copy.extend_from_slice(&bars[index..]);
                    *bars = Arc::new(copy);
                }
            },
            Bars::Few(bars) => {
                let mut many: Vector<Candle> = bars.iter().copied().collect();
                many.insert(index, candle);
                *self = Bars::Many(many);
            }
            Bars::Many(bars) => bars.insert(index, candle),
        }
    }

    /// Keeps only the newest `keep` bars.
    pub(super) fn keep_last(&mut self, keep: usize) {
        let len = self.len();
        if keep >= len {
            return;
        }
        match self {
            Bars::None => {}
            Bars::Few(bars) => {
                Arc::make_mut(bars).drain(..len - keep);
            }
            Bars::Many(bars) if keep <= FEW => {
                *self = Bars::Few(Arc::new(bars.iter().skip(len - keep).copied().collect()));
            }
            Bars::Many(bars) => *bars = bars.split_off(len - keep),
        }
    }
}

/// The bars of [`Bars::iter`], oldest first.
pub(super) enum Iter<'a> {
    Few(std::slice::Iter<'a, Candle>),
    Many(imbl::vector::Iter<'a, Candle, imbl::shared_ptr::DefaultSharedPtr>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Candle;

    fn next(&mut self) -> Option<&'a Candle> {
        match self {
            Iter::Few(bars) => bars.next(),
            Iter::Many(bars) => bars.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Few(bars) => bars.size_hint(),
            Iter::Many(bars) => bars.size_hint(),
        }
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Few(bars) => bars.next_back(),
            Iter::Many(bars) => bars.next_back(),
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(start: i64) -> Candle {
        Candle::first(start, start, 1.0, 1.0)
    }

    fn starts(bars: &Bars) -> Vec<i64> {
        bars.iter().map(|c| c.start).collect()
    }

    #[test]
    fn bars_move_to_the_persistent_vector_past_few_and_back_when_trimmed() {
        let mut bars = Bars::default();
        for start in 0..(FEW as i64) {
            bars.push_back(bar(start * 10));
        }
        assert!(matches!(bars, Bars::Few(_)));
        let reader = bars.clone();
        bars.push_back(bar(FEW as i64 * 10));
        assert!(matches!(bars, Bars::Many(_)));
        assert_eq!(reader.len(), FEW, "a reader's copy does not change");
        assert_eq!(bars.len(), FEW + 1);
        bars.insert(1, bar(5));
        assert_eq!(&starts(&bars)[..3], &[0, 5, 10]);
        assert_eq!(bars.position(5), Ok(1));
        assert_eq!(bars.position(6), Err(2));
        bars.keep_last(3);
        assert!(matches!(bars, Bars::Few(_)));
        let expected: Vec<i64> = (FEW as i64 - 2..=FEW as i64).map(|s| s * 10).collect();
        assert_eq!(starts(&bars), expected);
        assert_eq!(
            bars.iter().next_back().map(|c| c.start),
            Some(FEW as i64 * 10)
        );
    }

    #[test]
    fn a_shared_small_vector_is_copied_not_changed() {
        let mut bars = Bars::default();
        bars.push_back(bar(0));
        let reader = bars.clone();
        if let Some(candle) = bars.get_mut(0) {
            candle.count = 7;
        }
        assert_eq!(reader.iter().next().map(|c| c.count), Some(1));
        assert_eq!(bars.iter().next().map(|c| c.count), Some(7));
        assert!(reader != bars);
    }
}
