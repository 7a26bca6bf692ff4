//! The analytics core: synchronous, per-symbol state updated trade by trade.
//!
//! - [`window`]: rolling statistics over one trailing window (exact, O(1) amortized).
//! - [`candles`]: OHLCV bars per interval, epoch-aligned, closed by the stream clock.
//! - [`engine`]: the stream clock, late and duplicate handling, every symbol's windows, and the
//!   snapshots handed to readers.
//! - [`snapshot`]: where the core publishes those snapshots for lock-free readers.
//!
//! Nothing here awaits or reads the wall clock; the task that drives the engine is
//! [`crate::ingest`], spawned by [`crate::startup`]. The core knows no HTTP, sockets, alerts or
//! configuration (see `ARCHITECTURE.md`).

pub mod candles;
pub mod engine;
pub mod snapshot;
pub mod window;

pub use candles::{Candle, CandleView, IntervalSpec};
pub use engine::{DEFAULT_CANDLE_HISTORY, Engine, FeedTally, Outcome, SymbolSnapshot, SymbolView};
pub use window::WindowStats;

use crate::units::{UnitError, duration_nanos, parse_duration};

/// Default trailing windows.
pub const DEFAULT_WINDOWS: [&str; 6] = ["1s", "10s", "1m", "5m", "15m", "1h"];
/// Default candle intervals.
pub const DEFAULT_INTERVALS: [&str; 3] = ["1s", "1m", "5m"];
/// Default allowed lateness.
pub const DEFAULT_LATENESS: &str = "1s";

/// One configured trailing window: its label as written in the configuration (`1m`) and its
/// length in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// The label as configured, used as the key in API responses.
    pub label: String,
    /// Length in nanoseconds (positive).
    pub length: i64,
}

impl WindowSpec {
    /// Parses window labels (`1s`, `1m`, …) into specs: each a positive duration, no two of the
    /// same length, at least one.
    pub fn parse_list(labels: &[String]) -> Result<Vec<WindowSpec>, UnitError> {
        if labels.is_empty() {
            return Err(UnitError::new("windows", "at least one window is needed"));
        }
        let mut windows: Vec<WindowSpec> = Vec::with_capacity(labels.len());
        for label in labels {
            let label = label.trim();
            let length = duration_nanos("windows", parse_duration("windows", label)?)?;
            if length <= 0 {
                return Err(UnitError::new(
                    "windows",
                    format!("{label:?} is not a positive duration"),
                ));
            }
            if let Some(same) = windows.iter().find(|w| w.length == length) {
                return Err(UnitError::new(
                    "windows",
                    format!("{label:?} and {:?} are the same window", same.label),
                ));
            }
            windows.push(WindowSpec {
                label: label.to_string(),
                length,
            });
        }
        Ok(windows)
    }
}
