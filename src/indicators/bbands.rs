//! Bollinger bands, as TA-Lib computes them (`TA_BBANDS` with a simple moving average): the
//! middle band is SMA(`period`); the bands are middle ± k·σ with σ the *population* standard
//! deviation of the window.
//!
//! σ is computed in two passes over each window (squared distances from the window's mean), not
//! from running sums of squares: at crypto prices (≈ 60,000) the mean of squares minus the square
//! of the mean loses almost every digit of a small variance. TA-Lib's current releases are
//! accurate here too; the golden tests show the two agree to about 1e-12 absolute on σ, far
//! inside 1e-9 relative on the bands. The cost is O(period) per value, which over the few
//! thousand candles a symbol holds is microseconds.

use crate::indicators::sma::sma;

/// The three bands, aligned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bands {
    /// middle + k·σ.
    pub upper: Vec<f64>,
    /// SMA.
    pub middle: Vec<f64>,
    /// middle − k·σ.
    pub lower: Vec<f64>,
}

/// Values needed before the first output, minus one.
pub fn lookback(period: usize) -> usize {
    period.saturating_sub(1)
}

/// BBANDS(`period`, `k`) of `values`; output `i` belongs to input `i + period − 1`.
pub fn bbands(values: &[f64], period: usize, k: f64) -> Bands {
    let period = period.max(1);
    let middle = sma(values, period);
    if middle.is_empty() {
        return Bands::default();
    }
    let n = period as f64;
    let mut upper = Vec::with_capacity(middle.len());
    let mut lower = Vec::with_capacity(middle.len());
    for (window, mean) in values.windows(period).zip(&middle) {
        let mut squares = 0.0;
        for value in window {
            let distance = value - mean;
            squares += distance * distance;
        }
        let width = (squares / n).sqrt() * k;
        upper.push(mean + width);
        lower.push(mean - width);
    }
    Bands {
        upper,
        middle,
        lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn population_deviation_around_the_sma() {
        let out = bbands(&[1.0, 3.0, 1.0, 3.0], 2, 2.0);
        assert_eq!(out.middle, vec![2.0, 2.0, 2.0]);
        assert_eq!(out.upper, vec![4.0, 4.0, 4.0], "σ of {{1, 3}} is 1");
        assert_eq!(out.lower, vec![0.0, 0.0, 0.0]);
        let flat = bbands(&[7.0; 5], 5, 2.0);
        assert_eq!((flat.upper[0], flat.lower[0]), (7.0, 7.0));
    }
}
