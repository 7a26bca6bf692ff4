//! Simple moving average, as TA-Lib computes it (`TA_SMA`): a running sum over the last `period`
//! values, the value leaving the window subtracted after each output.

/// Values needed before the first output, minus one (TA-Lib's "lookback").
pub fn lookback(period: usize) -> usize {
    period.saturating_sub(1)
}

/// SMA(`period`) of `values`; output `i` belongs to input `i + lookback(period)`. Empty when
/// there are too few values. `period` must be at least 1.
pub fn sma(values: &[f64], period: usize) -> Vec<f64> {
    let period = period.max(1);
    if values.len() < period {
        return Vec::new();
    }
    let divisor = period as f64;
    let mut total: f64 = values[..period - 1].iter().sum();
    let mut out = Vec::with_capacity(values.len() - period + 1);
    for (newest, oldest) in values[period - 1..].iter().zip(values) {
        total += newest;
        out.push(total / divisor);
        total -= oldest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_each_window() {
        assert_eq!(sma(&[1.0, 2.0, 3.0, 4.0], 2), vec![1.5, 2.5, 3.5]);
        assert_eq!(sma(&[1.0, 2.0, 3.0], 3), vec![2.0]);
        assert!(sma(&[1.0, 2.0], 3).is_empty());
        assert_eq!(lookback(30), 29);
    }
}
