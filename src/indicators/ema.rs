//! Exponential moving average, as TA-Lib computes it (`TA_EMA`, classic compatibility):
//! k = 2 / (period + 1), seeded with the SMA of the first `period` values, so the first output
//! belongs to input `period − 1`.

/// Values needed before the first output, minus one.
pub fn lookback(period: usize) -> usize {
    period.saturating_sub(1)
}

/// TA-Lib's smoothing factor for a period: 2 / (period + 1).
pub fn smoothing(period: usize) -> f64 {
    2.0 / (period as f64 + 1.0)
}

/// EMA(`period`) of `values`; output `i` belongs to input `i + lookback(period)`.
pub fn ema(values: &[f64], period: usize) -> Vec<f64> {
    ema_from(values, period.max(1), period.max(1) - 1)
}

/// The EMA of `values` whose first output belongs to input `first` (at least `period − 1`), seeded
/// with the SMA of the `period` values ending there, as TA-Lib's internal EMA does when asked to
/// start late (MACD seeds its fast EMA where the slow one starts).
pub(crate) fn ema_from(values: &[f64], period: usize, first: usize) -> Vec<f64> {
    let period = period.max(1);
    if first + 1 < period || values.len() <= first {
        return Vec::new();
    }
    let k = smoothing(period);
    let seed_start = first + 1 - period;
    let mut total = 0.0;
    for value in &values[seed_start..=first] {
        total += value;
    }
    let mut previous = total / period as f64;
    let mut out = Vec::with_capacity(values.len() - first);
    out.push(previous);
    for value in &values[first + 1..] {
        previous = (value - previous) * k + previous;
        out.push(previous);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_with_the_sma_then_smooths() {
        let out = ema(&[1.0, 2.0, 3.0, 6.0], 3);
        assert_eq!(out[0], 2.0);
        assert_eq!(out[1], (6.0 - 2.0) * 0.5 + 2.0);
        assert!(ema(&[1.0, 2.0], 3).is_empty());
        // Seeded later: the SMA of the 2 values ending at input 3.
        assert_eq!(ema_from(&[1.0, 2.0, 3.0, 6.0], 2, 3), vec![4.5]);
    }
}
