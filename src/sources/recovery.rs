//! Restart without losing state (`--recover DIR`): before the live feeds connect, the trades the
//! trade log wrote to `DIR` ([`crate::record::ticklog`]: compacted `trades-*.parquet` and the
//! `ticks-*.jsonl` segments a crash left open, up to their last complete record) are read back
//! and applied, so the windows, candles and indicators after a restart — clean or a crash — are
//! those of a service that never stopped, but for what the crash kept from the log (at most its
//! last flush interval), which a venue's resend after the reconnection brings back — the
//! tickerplant-log pattern.
//!
//! Only what the state can still hold is replayed: trades within the *horizon* of the newest
//! recorded one, the longest window or the candle history of the longest interval
//! (`candle_history` × interval), whichever is longer, plus the allowed lateness. Trades are
//! applied in the order they were recorded, which is the order they were first applied, and each
//! under the live feed of the same name that delivered it, so a venue that sends them again after
//! the restart has them dropped as duplicates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::*;
use tokio::sync::mpsc;

use crate::health::{FeedDescription, FeedRegistry, FeedStatus};
use crate::metrics::Metrics;
use crate::model::{CoreEvent, FeedId, Timestamp, Trade};
use crate::replay::{ReplayError, ReplaySource, load_all};
use crate::sources::SourceError;

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
    /// A trade-log segment cannot be read.
    #[error(transparent)]
    Segment(#[from] crate::record::RecordError),
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
    /// Compacted trade files (Parquet) read.
    pub files: usize,
    /// Trade-log segments read (left open by a crash).
    pub segments: usize,
    /// Segments whose last record was torn by the crash (skipped).
    pub torn: u64,
    /// Damaged records inside segments (skipped).
    pub corrupt: u64,
    /// Recorded trades older than the horizon, not applied.
    pub older: u64,
}

/// The recorder's trade files and log segments in `directory`, oldest first (their names carry
/// their start time after the prefix).
fn trade_files(directory: &Path) -> Result<Vec<PathBuf>, RecoverError> {
    let mut files =
        crate::record::files_named(directory, &[("trades-", ".parquet"), ("ticks-", ".jsonl")])
            .map_err(|source| RecoverError::List {
                path: directory.to_path_buf(),
                source,
            })?;
    files.sort_by_key(|path| {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let stamp = name
            .trim_start_matches("trades-")
            .trim_start_matches("ticks-")
            .to_string();
        (stamp, name.to_string())
    });
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
    let feed_of = |name: &str| {
        feeds
            .iter()
            .find(|(feed, _)| feed == name)
            .map_or(fallback, |(_, id)| *id)
    };
    for path in trade_files(directory)? {
        if path.extension().is_some_and(|e| e == "jsonl") {
            let segment = path.clone();
            let read =
                tokio::task::spawn_blocking(move || crate::record::ticklog::read_segment(&segment))
                    .await
                    .map_err(|error| {
                        RecoverError::Segment(crate::record::RecordError::Io {
                            path: path.clone(),
                            source: std::io::Error::other(error),
                        })
                    })??;
            recovered.segments += 1;
            recovered.torn += u64::from(read.torn);
            recovered.corrupt += read.corrupt;
            let mut symbols: std::collections::HashMap<String, crate::model::Symbol> =
                std::collections::HashMap::new();
            for record in read.records {
                let symbol = symbols
                    .entry(record.symbol.clone())
                    .or_insert_with(|| crate::model::Symbol::new(&record.symbol))
                    .clone();
                recovered.trades.push(Trade {
                    symbol,
                    price: record.price,
                    size: record.size,
                    exchange_ts: record.ts,
                    receive_ts: record.ts,
                    feed: feed_of(&record.feed),
                    trade_id: record.id,
                    side: None,
                });
            }
            continue;
        }
        let mut trades = load_all(ReplaySource::from_path(&path)?).await?;
        let names = feed_names(&path, trades.len())?;
        for (trade, name) in trades
            .iter_mut()
            .zip(names.into_iter().chain(std::iter::repeat(None)))
        {
            trade.feed = name.as_deref().map_or(fallback, feed_of);
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

/// Reads the recorded state in `directory` and sends it to the core as
/// [`CoreEvent::Recovered`] batches, before any live feed connects (the channel keeps them
/// ahead of live trades). What was recovered, and from where, is also a source in `/v1/feeds`.
pub async fn send(
    directory: &Path,
    horizon: Timestamp,
    live: &[Arc<FeedStatus>],
    registry: &FeedRegistry,
    metrics: &Metrics,
    events: &mpsc::Sender<CoreEvent>,
) -> Result<(), SourceError> {
    let feeds: Vec<(String, FeedId)> = live
        .iter()
        .map(|status| (status.name().to_string(), status.id()))
        .collect();
    let fallback = live.first().map_or(FeedId(0), |status| status.id());
    let recovered = recover(directory, horizon, &feeds, fallback).await?;
    tracing::info!(
        directory = %directory.display(),
        parquet_files = recovered.files,
        log_segments = recovered.segments,
        torn_records = recovered.torn,
        damaged_records = recovered.corrupt,
        trades = recovered.trades.len(),
        older_than_horizon = recovered.older,
        "recovering the recorded state"
    );
    let status = registry.register(
        format!("recover:{}", directory.display()),
        FeedDescription {
            kind: "recovery".to_string(),
            source: directory.display().to_string(),
            format: format!(
                "trade log: {} Parquet files, {} segments",
                recovered.files, recovered.segments
            ),
        },
        metrics,
    );
    status.set_running();
    status.rows.inc_by(recovered.trades.len() as u64);
    status.malformed.inc_by(recovered.torn + recovered.corrupt);
    if recovered.older > 0 || recovered.torn + recovered.corrupt > 0 {
        status.set_error(format!(
            "{} trades older than the state's horizon not applied; {} torn and {} damaged records skipped",
            recovered.older, recovered.torn, recovered.corrupt
        ));
    }
    status.set_finished();
    let mut trades = recovered.trades.into_iter();
    loop {
        let batch: Vec<_> = trades.by_ref().take(crate::replay::BATCH_SIZE).collect();
        if batch.is_empty() {
            return Ok(());
        }
        if events.send(CoreEvent::Recovered(batch)).await.is_err() {
            return Err(SourceError::CoreStopped);
        }
    }
}
