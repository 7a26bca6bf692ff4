//! Error-free arithmetic for the windows' running sums: TwoSum, TwoProduct, a double-double
//! number, and the compensated sum every prefix is made of.

/// Splits `a + b` into the rounded sum and its exact rounding error (Knuth's TwoSum).
#[inline]
pub(super) fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let sum = a + b;
    let b_part = sum - a;
    let error = (a - (sum - b_part)) + (b - b_part);
    (sum, error)
}

/// TwoSum for `|a| >= |b|` (Dekker's FastTwoSum).
#[inline]
pub(super) fn fast_two_sum(a: f64, b: f64) -> (f64, f64) {
    let sum = a + b;
    (sum, b - (sum - a))
}

/// Splits `a × b` into the rounded product and its exact rounding error (Dekker's TwoProduct,
/// without FMA so that it is fast on every target).
#[inline]
pub(super) fn two_product(a: f64, b: f64) -> (f64, f64) {
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
pub(super) struct DoubleDouble {
    pub(super) high: f64,
    pub(super) low: f64,
}

impl DoubleDouble {
    pub(super) fn new(high: f64, low: f64) -> Self {
        let (high, low) = fast_two_sum(high, low);
        DoubleDouble { high, low }
    }

    pub(super) fn product(a: f64, b: f64) -> Self {
        let (high, low) = two_product(a, b);
        DoubleDouble::new(high, low)
    }

    pub(super) fn add(self, other: DoubleDouble) -> Self {
        let (high, error) = two_sum(self.high, other.high);
        DoubleDouble::new(high, error + (self.low + other.low))
    }

    pub(super) fn scale(self, factor: f64) -> Self {
        let (high, error) = two_product(self.high, factor);
        DoubleDouble::new(high, error + self.low * factor)
    }

    pub(super) fn value(self) -> f64 {
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
    pub(super) sum: f64,
    pub(super) compensation: f64,
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

    pub(super) fn difference(&self, earlier: &CompensatedSum) -> DoubleDouble {
        let (high, error) = two_sum(self.sum, -earlier.sum);
        DoubleDouble::new(high, error + (self.compensation - earlier.compensation))
    }
}

/// The running sums of a [`TradeLog`], up to some point of it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Prefix {
    /// Σ size.
    pub(super) volume: CompensatedSum,
    /// Σ price × size.
    pub(super) notional: CompensatedSum,
    /// Σ (price − reference): shifting by a price near the mean keeps the variance well
    /// conditioned at high price levels.
    pub(super) shifted: CompensatedSum,
    /// Σ (price − reference)².
    pub(super) squares: CompensatedSum,
}

impl Prefix {
    #[inline]
    pub(super) fn add(&mut self, price: f64, size: f64, reference: f64) {
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
