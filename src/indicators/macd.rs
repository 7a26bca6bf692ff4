//! Moving average convergence/divergence, as TA-Lib computes it (`TA_MACD`): the slow EMA is
//! seeded with the SMA of the first `slow` values; the fast EMA is seeded where the slow one
//! starts (with the SMA of the `fast` values ending there); the line is fast − slow; the signal
//! is the EMA(`signal`) of the line, seeded with the SMA of its first `signal` values. TA-Lib
//! reports all three from the first signal value on, so the first output belongs to input
//! `slow − 1 + signal − 1`.

use crate::indicators::ema::ema_from;

/// The three outputs, aligned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MacdSeries {
    /// fast EMA − slow EMA.
    pub macd: Vec<f64>,
    /// EMA of the line.
    pub signal: Vec<f64>,
    /// line − signal.
    pub hist: Vec<f64>,
}

/// Values needed before the first output, minus one. `fast < slow`.
pub fn lookback(slow: usize, signal: usize) -> usize {
    slow.saturating_sub(1) + signal.saturating_sub(1)
}

/// MACD(`fast`, `slow`, `signal`) of `values`; output `i` belongs to input
/// `i + lookback(slow, signal)`. Requires `1 ≤ fast < slow` and `signal ≥ 1`.
pub fn macd(values: &[f64], fast: usize, slow: usize, signal: usize) -> MacdSeries {
    let (fast, slow, signal) = (fast.max(1), slow.max(2), signal.max(1));
    if values.len() <= lookback(slow, signal) {
        return MacdSeries::default();
    }
    let slow_ema = ema_from(values, slow, slow - 1);
    let fast_ema = ema_from(values, fast, slow - 1);
    let line: Vec<f64> = fast_ema.iter().zip(&slow_ema).map(|(f, s)| f - s).collect();
    let signal_line = ema_from(&line, signal, signal - 1);
    let line = line[signal - 1..].to_vec();
    let hist = line.iter().zip(&signal_line).map(|(m, s)| m - s).collect();
    MacdSeries {
        macd: line,
        signal: signal_line,
        hist,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_start_together() {
        let values: Vec<f64> = (0..40).map(|i| (i as f64 * 0.7).sin() + 10.0).collect();
        let out = macd(&values, 12, 26, 9);
        assert_eq!(out.macd.len(), 40 - 33);
        assert_eq!(out.signal.len(), out.macd.len());
        assert_eq!(out.hist[0], out.macd[0] - out.signal[0]);
        assert!(macd(&values[..33], 12, 26, 9).macd.is_empty());
        assert_eq!(macd(&values[..34], 12, 26, 9).macd.len(), 1);
    }
}
