//! The analytics core: synchronous, per-symbol state updated trade by trade.
//!
//! - [`window`]: rolling statistics over one trailing window (exact, O(1) amortized).
//! - [`candles`]: OHLCV bars per interval, epoch-aligned, closed by the stream clock.
//! - [`engine`]: the stream clock, late and duplicate handling, every symbol's windows, and the
//!   snapshots handed to readers.
//! - [`snapshot`]: where the core publishes those snapshots for lock-free readers.
//!
//! Nothing here awaits or reads the wall clock; the task that drives the engine is
//! [`crate::ingest`], spawned by [`crate::startup`].

pub mod candles;
pub mod engine;
pub mod snapshot;
pub mod window;

pub use candles::{Candle, CandleView, IntervalSpec};
pub use engine::{DEFAULT_CANDLE_HISTORY, Engine, FeedTally, Outcome, SymbolSnapshot, SymbolView};
pub use window::WindowStats;

/// One configured trailing window: its label as written in the configuration (`1m`) and its
/// length in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// The label as configured, used as the key in API responses.
    pub label: String,
    /// Length in nanoseconds (positive).
    pub length: i64,
}
