//! Restart without losing state (`--recover DIR`): before the live feeds connect, the trades the
//! recorder wrote to `DIR` (`trades-*.parquet`, see [`crate::record`]) are read back and applied,
//! so the windows, candles and indicators after a restart are those of a service that never
//! stopped — the tickerplant-log pattern.
//!
//! Only what the state can still hold is replayed: trades within the *horizon* of the newest
//! recorded one, the longest window or the candle history of the longest interval
//! (`candle_history` × interval), whichever is longer, plus the allowed lateness. Trades are
//! applied in the order they were recorded, which is the order they were first applied, and each
//! under the live feed of the same name that delivered it, so a venue that sends them again after
//! the restart has them dropped as duplicates.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::model::{FeedId, Timestamp, Trade};
use crate::replay::{ReplayError, ReplaySource, load_all};

/// Why recovery failed: the service does not start on a half-read state.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The directory cannot be listed.
    #[error("{path}: cannot list the recording directory: {source}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A trade file cannot be read.
    #[error(transparent)]
    Read(#[from] ReplayError),
    /// A trade file's `feed` column cannot be read.
    #[error("{path}: cannot read the feed column: {message}")]
    FeedColumn {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The trades to apply before the live feeds start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Within the horizon, in recorded order, tagged with their live feed.
    pub trades: Vec<Trade>,
    /// Trade files read.
    pub files: usize,
    /// Recorded trades older than the horizon, not applied.
    pub older: u64,
}

/// The recorder's trade files in `directory`, oldest first (their names carry their start time).
fn trade_files(directory: &Path) -> Result<Vec<PathBuf>, RecoverError> {
    let entries = std::fs::read_dir(directory).map_err(|source| RecoverError::List {
        path: directory.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("trades-") && name.ends_with(".parquet"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The `feed` column of a trade file (empty names when a file has none).
fn feed_names(path: &Path, rows: usize) -> Result<Vec<Option<String>>, RecoverError> {
    let error = |message: String| RecoverError::FeedColumn {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let frame = ParquetReader::new(file)
        .with_columns(Some(vec!["feed".to_string()]))
        .finish();
    let Ok(frame) = frame else {
        // Files recorded before the column existed: no feed to attribute.
        return Ok(vec![None; rows]);
    };
    let column = frame.column("feed").map_err(|e| error(e.to_string()))?;
    let names = column.str().map_err(|e| error(e.to_string()))?;
    Ok((0..names.len())
        .map(|row| names.get(row).map(str::to_string))
        .collect())
}

/// Reads the trades of `directory` within `horizon` of the newest; `feeds` maps the recorded feed
/// names to this run's feeds (trades of a feed not configured now go to `fallback`).
pub async fn recover(
    directory: &Path,
    horizon: Timestamp,
    feeds: &[(String, FeedId)],
    fallback: FeedId,
) -> Result<Recovered, RecoverError> {
    let mut recovered = Recovered::default();
    for path in trade_files(directory)? {
        let mut trades = load_all(ReplaySource::from_path(&path)?).await?;
        let names = feed_names(&path, trades.len())?;
        for (trade, name) in trades
            .iter_mut()
            .zip(names.into_iter().chain(std::iter::repeat(None)))
        {
            trade.feed = name
                .and_then(|name| feeds.iter().find(|(feed, _)| *feed == name))
                .map_or(fallback, |(_, id)| *id);
        }
        recovered.trades.append(&mut trades);
        recovered.files += 1;
    }
    let newest = recovered.trades.iter().map(|t| t.exchange_ts).max();
    if let Some(newest) = newest {
        let oldest_kept = newest.saturating_sub(horizon);
        let before = recovered.trades.len();
        recovered
            .trades
            .retain(|trade| trade.exchange_ts >= oldest_kept);
        recovered.older = (before - recovered.trades.len()) as u64;
    }
    Ok(recovered)
}
