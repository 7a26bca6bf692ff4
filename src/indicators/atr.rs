//! Average true range, as TA-Lib computes it (`TA_ATR`): the true range of a bar is
//! max(high − low, |high − previous close|, |low − previous close|), so the first bar has none;
//! the first ATR is the mean of the first `period` true ranges, then Wilder's smoothing
//! (`atr = (atr·(period − 1) + tr) / period`). The first output belongs to input `period`.

/// Values needed before the first output, minus one.
pub fn lookback(period: usize) -> usize {
    period
}

/// True range of bar `i` (≥ 1), as TA-Lib's `TA_TRANGE` computes it.
fn true_range(high: &[f64], low: &[f64], close: &[f64], i: usize) -> f64 {
    let previous_close = close[i - 1];
    let mut greatest = high[i] - low[i];
    let to_high = (previous_close - high[i]).abs();
    if to_high > greatest {
        greatest = to_high;
    }
    let to_low = (low[i] - previous_close).abs();
    if to_low > greatest {
        greatest = to_low;
    }
    greatest
}

/// ATR(`period`) of bars given as parallel slices; output `i` belongs to bar `i + period`.
/// With `period` 1 it is the true range itself.
pub fn atr(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Vec<f64> {
    let period = period.max(1);
    let bars = high.len().min(low.len()).min(close.len());
    if bars <= period {
        return Vec::new();
    }
    let ranges: Vec<f64> = (1..bars).map(|i| true_range(high, low, close, i)).collect();
    if period == 1 {
        return ranges;
    }
    let n = period as f64;
    let mut total = 0.0;
    for range in &ranges[..period] {
        total += range;
    }
    let mut average = total / n;
    let mut out = Vec::with_capacity(bars - period);
    out.push(average);
    for range in &ranges[period..] {
        average *= n - 1.0;
        average += range;
        average /= n;
        out.push(average);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_range_reaches_for_the_previous_close() {
        let high = [10.0, 11.0, 12.0, 15.0];
        let low = [9.0, 10.0, 11.5, 14.0];
        let close = [9.5, 10.5, 11.75, 14.5];
        // TRs: 1.5 (11 − 9.5), 1.5 (12 − 10.5), 3.25 (15 − 11.75).
        let out = atr(&high, &low, &close, 2);
        assert_eq!(out[0], 1.5);
        assert_eq!(out[1], (1.5 + 3.25) / 2.0);
        assert_eq!(atr(&high, &low, &close, 1).len(), 3);
        assert!(atr(&high[..2], &low[..2], &close[..2], 2).is_empty());
    }
}
