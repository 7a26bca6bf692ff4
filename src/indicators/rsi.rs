//! Relative strength index, as TA-Lib computes it (`TA_RSI`, classic compatibility, no unstable
//! period): the average gain and loss of the first `period` changes seed Wilder's smoothing
//! (`avg = (avg·(period − 1) + x) / period`), so the first output belongs to input `period`.
//! Like TA-Lib, an average gain plus loss within 1e-8 of zero gives 0.

/// Values needed before the first output, minus one.
pub fn lookback(period: usize) -> usize {
    period
}

/// TA-Lib's `TA_IS_ZERO`.
fn is_zero(value: f64) -> bool {
    -0.000_000_01 < value && value < 0.000_000_01
}

fn index(gain: f64, loss: f64) -> f64 {
    let total = gain + loss;
    if is_zero(total) {
        0.0
    } else {
        100.0 * (gain / total)
    }
}

/// RSI(`period`) of `values`; output `i` belongs to input `i + period`. `period` at least 2.
pub fn rsi(values: &[f64], period: usize) -> Vec<f64> {
    let period = period.max(2);
    if values.len() <= period {
        return Vec::new();
    }
    let n = period as f64;
    let (mut gain, mut loss) = (0.0, 0.0);
    for pair in values[..=period].windows(2) {
        let change = pair[1] - pair[0];
        if change < 0.0 {
            loss -= change;
        } else {
            gain += change;
        }
    }
    gain /= n;
    loss /= n;
    let mut out = Vec::with_capacity(values.len() - period);
    out.push(index(gain, loss));
    for pair in values[period..].windows(2) {
        let change = pair[1] - pair[0];
        loss *= n - 1.0;
        gain *= n - 1.0;
        if change < 0.0 {
            loss -= change;
        } else {
            gain += change;
        }
        loss /= n;
        gain /= n;
        out.push(index(gain, loss));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilder_smoothing_after_a_simple_seed() {
        // Changes: +1, -1, +2 → seed gain 1/2, loss 1/2 → 50; then gain (0.5+2)/2, loss 0.5/2.
        let out = rsi(&[1.0, 2.0, 1.0, 3.0], 2);
        assert_eq!(out[0], 50.0);
        assert_eq!(out[1], 100.0 * (1.25 / (1.25 + 0.25)));
        assert_eq!(rsi(&[5.0, 5.0, 5.0], 2), vec![0.0], "flat: TA-Lib gives 0");
        assert!(rsi(&[1.0, 2.0], 2).is_empty());
    }
}
