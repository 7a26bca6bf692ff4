//! History: the recordings (and any trade files the user names) as a store that polars queries
//! lazily — candles, the statistics of a window as of a past instant, and what the store holds.
//!
//! - [`store`]: the files (`--history DIR`, the `--record` directory by default), an index of
//!   each file's time range and symbols (built once per file version), and each file as a
//!   polars `LazyFrame` (`scan_parquet` with the filters pushed down and only the columns used;
//!   CSV and JSON lines through the replay readers).
//! - [`query`]: the answers, with the live API's definitions (DESIGN.md): epoch-aligned bars
//!   `[start, start + I)`, windows `(at − W, at]`, ties in arrival (file) order.
//!
//! Everything here is synchronous and CPU-bound: callers run it off the async runtime (the API
//! through a bounded pool of blocking threads, with a timeout).

pub mod command;
pub mod query;
pub mod store;

pub use query::{CandlePage, HistoryCandle, HistoryStats};
pub use store::{HistoryStore, SkippedFile, StoreSummary};

/// Most rows one query may scan (after the time and symbol filters), by default.
pub const DEFAULT_MAX_ROWS: u64 = 50_000_000;

/// Most bars one page of history candles holds.
pub const MAX_CANDLES_PER_PAGE: usize = 10_000;

/// Why a history query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A directory or file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file's contents cannot be used (its columns, or polars refusing it).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// polars failed while answering.
    #[error("the history query failed: {0}")]
    Polars(String),
    /// No trade of the symbol anywhere in the store.
    #[error("the history holds no trade of {0:?}")]
    UnknownSymbol(String),
    /// The question itself is wrong (an empty range, a zero interval).
    #[error("{0}")]
    BadQuery(String),
    /// The range holds more rows than a query may scan.
    #[error(
        "the query would scan {rows} rows, more than the limit of {limit}: narrow the time range"
    )]
    TooManyRows {
        /// Rows in range.
        rows: u64,
        /// The limit.
        limit: u64,
    },
}

impl From<polars::prelude::PolarsError> for HistoryError {
    fn from(error: polars::prelude::PolarsError) -> Self {
        HistoryError::Polars(error.to_string())
    }
}

/// Parses an instant: epoch milliseconds, or RFC 3339; returns epoch ns.
pub fn parse_instant(name: &str, text: &str) -> Result<i64, HistoryError> {
    let text = text.trim();
    let bad = || {
        HistoryError::BadQuery(format!(
            "{name} must be epoch milliseconds or RFC 3339 (2013-10-07T14:30:00Z), not {text:?}"
        ))
    };
    // An integer is epoch milliseconds here (the replay tells a unit by magnitude instead);
    // anything else is read as the replay reads RFC 3339.
    if let Ok(ms) = text.parse::<i64>() {
        return ms.checked_mul(1_000_000).ok_or_else(bad);
    }
    crate::replay::fields::parse_timestamp(text)
        .map(|(ts, _)| ts)
        .map_err(|_| bad())
}

/// Parses a bar or window length that must be a whole, positive number of milliseconds;
/// returns ns.
pub fn parse_length(name: &'static str, text: &str) -> Result<i64, HistoryError> {
    let length = crate::units::parse_duration(name, text)
        .map_err(|error| HistoryError::BadQuery(error.to_string()))?;
    let nanos = i64::try_from(length.as_nanos())
        .map_err(|_| HistoryError::BadQuery(format!("{name} {text:?} is too long")))?;
    if nanos <= 0 || nanos % 1_000_000 != 0 {
        return Err(HistoryError::BadQuery(format!(
            "{name} must be a positive whole number of milliseconds, not {text:?}"
        )));
    }
    Ok(nanos)
}
