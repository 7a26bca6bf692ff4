//! The durable trade log: every trade the analytics core applies, appended in the order it was
//! applied, readable after a crash up to its last complete record — the tickerplant's log.
//!
//! The log is a series of segments, `DIR/ticks-<UTC start>.jsonl`: one JSON object per trade and
//! line (`{"ts":<ns>,"symbol":…,"price":…,"size":…,"id":…,"feed":…}`), written by one thread.
//! The writer hands its buffer to the operating system at least every [`FLUSH_EVERY`] (a killed
//! process loses at most the trades applied since), and makes it durable (`fsync`) on the
//! configured [`FsyncPolicy`]: after every batch, every interval (default 1 s: a power cut loses
//! at most that), or never (the operating system's own schedule). With `every`, the core waits
//! for each batch to be on disk before it publishes it, so nothing a reader has seen is lost.
//!
//! A segment rotates past [`SEGMENT_TRADES`] trades or at the top of each hour, and a closed one
//! is compacted into `DIR/<UTC day>/trades-<UTC start>.parquet` — one directory per day it was
//! recorded, `YYYY-MM-DD` — (the columns `--replay` and the history read: `ts` as a nanosecond
//! Datetime, `symbol`, `price`, `size`, `id`, `feed`), fsynced, then the segment is removed. Segments left by a crash are compacted when the writer starts. A torn
//! last record (a line cut by the crash) is detected and skipped, never fatal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::RecordError;
use crate::model::Trade;

/// The longest a written trade waits in the writer's buffer before the operating system has it.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Trades per segment at most; a segment also closes at the top of each hour and at shutdown.
pub const SEGMENT_TRADES: usize = 1_000_000;
/// Messages queued for the writer; beyond it the core waits (the log never drops a trade).
pub const LOG_CHANNEL_CAPACITY: usize = 64;
/// The default interval of [`FsyncPolicy::Interval`].
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(1);

/// When the log is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch; the core publishes a batch only once it is durable.
    Every,
    /// At most this long after a write.
    Interval(Duration),
    /// Left to the operating system.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "every" => Ok(FsyncPolicy::Every),
            "interval" => Ok(FsyncPolicy::Interval(DEFAULT_FSYNC_INTERVAL)),
            "never" => Ok(FsyncPolicy::Never),
            other => Err(format!(
                "{other:?} is not an fsync policy: expected every, interval or never"
            )),
        }
    }
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Event time, nanoseconds since the epoch.
    pub ts: i64,
    /// The symbol.
    pub symbol: String,
    /// Price.
    pub price: f64,
    /// Size.
    pub size: f64,
    /// The venue's trade id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The name of the feed that delivered it (`binance:BTCUSDT`).
    pub feed: String,
}

/// A [`LogRecord`] as written, borrowing its text from the trade and the settings: the same
/// JSON, without two allocations per trade.
#[derive(Serialize)]
struct LogRecordRef<'a> {
    ts: i64,
    symbol: &'a str,
    price: f64,
    size: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    feed: &'a str,
}

/// What the core sends the writer.
#[derive(Debug)]
pub enum LogMessage {
    /// Trades applied, in order.
    Trades(Vec<Trade>),
    /// Trades applied; answer once they are durable (`--fsync every`).
    TradesDurable(Vec<Trade>, oneshot::Sender<()>),
}

/// Where the core sends what it applied.
pub type TickLogSender = mpsc::Sender<LogMessage>;

/// What a segment held when read back.
#[derive(Debug, Default)]
pub struct SegmentRead {
    /// The complete records, in order.
    pub records: Vec<LogRecord>,
    /// A torn last record (cut by a crash), skipped.
    pub torn: bool,
    /// Complete lines that did not parse (damage inside the file), skipped.
    pub corrupt: u64,
}

/// Reads the records of a segment's bytes: every complete line that parses, in order; a last
/// line without its newline is kept only if it is a whole record.
pub fn parse_segment(bytes: &[u8]) -> SegmentRead {
    let mut read = SegmentRead::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let line = &rest[..end];
                rest = &rest[end + 1..];
                (line, true)
            }
            None => {
                let line = rest;
                rest = &[];
                (line, false)
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<LogRecord>(line) {
            Ok(record) => read.records.push(record),
            Err(_) if !complete => read.torn = true,
            Err(_) => read.corrupt += 1,
        }
    }
    read
}

/// Reads a segment file.
pub fn read_segment(path: &Path) -> Result<SegmentRead, RecordError> {
    let bytes = std::fs::read(path).map_err(|source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_segment(&bytes))
}

/// The segments in `directory`, oldest first (their names carry their start time).
pub fn segments(directory: &Path) -> Result<Vec<PathBuf>, RecordError> {
    let mut files =
        super::files_named(directory, &[("ticks-", ".jsonl")]).map_err(io_error(directory))?;
    files.sort();
    Ok(files)
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `records` as `parquet` (fsynced): the compacted form of a segment.
pub fn write_parquet(path: &Path, records: &[LogRecord]) -> Result<(), RecordError> {
    use polars::prelude::*;
    let polars_error = |error: PolarsError| RecordError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(error),
    };
    let ts: Vec<i64> = records.iter().map(|r| r.ts).collect();
    let columns = vec![
        Int64Chunked::from_vec("ts".into(), ts)
            .into_datetime(TimeUnit::Nanoseconds, None)
            .into_column(),
        Column::new(
            "symbol".into(),
            records
                .iter()
                .map(|r| r.symbol.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "price".into(),
            records.iter().map(|r| r.price).collect::<Vec<_>>(),
        ),
        Column::new(
            "size".into(),
            records.iter().map(|r| r.size).collect::<Vec<_>>(),
        ),
        Column::new(
            "id".into(),
            records.iter().map(|r| r.id).collect::<Vec<_>>(),
        ),
        Column::new(
            "feed".into(),
            records.iter().map(|r| r.feed.as_str()).collect::<Vec<_>>(),
        ),
    ];
    let mut frame = DataFrame::new(records.len(), columns).map_err(polars_error)?;
    let partial = path.with_extension("parquet.partial");
    let file = std::fs::File::create(&partial).map_err(io_error(&partial))?;
    ParquetWriter::new(&file)
        .finish(&mut frame)
        .map_err(polars_error)?;
    file.sync_all().map_err(io_error(&partial))?;
    std::fs::rename(&partial, path).map_err(io_error(path))?;
    sync_directory(path);
    Ok(())
}

/// Makes a rename or removal in `path`'s directory durable (best effort: not every platform can).
fn sync_directory(path: &Path) {
    if let Some(directory) = path.parent()
        && let Ok(handle) = std::fs::File::open(directory)
    {
        let _ = handle.sync_all();
    }
}

/// Compacts a closed segment into its Parquet file and removes it; returns the records it held.
pub fn compact(segment: &Path) -> Result<u64, RecordError> {
    let read = read_segment(segment)?;
    if read.torn || read.corrupt > 0 {
        tracing::warn!(
            segment = %segment.display(),
            torn = read.torn,
            corrupt = read.corrupt,
            "skipping damaged records of a trade-log segment"
        );
    }
    if !read.records.is_empty() {
        let name = segment
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("ticks-unknown.jsonl");
        let stem = name.trim_start_matches("ticks-").trim_end_matches(".jsonl");
        let directory = match (segment.parent(), day_of_stamp(stem)) {
            (Some(parent), Some(day)) => parent.join(day),
            (Some(parent), None) => parent.to_path_buf(),
            (None, _) => PathBuf::new(),
        };
        if !directory.as_os_str().is_empty() && !directory.is_dir() {
            std::fs::create_dir_all(&directory).map_err(io_error(&directory))?;
            sync_directory(&directory);
        }
        write_parquet(
            &directory.join(format!("trades-{stem}.parquet")),
            &read.records,
        )?;
    }
    std::fs::remove_file(segment).map_err(io_error(segment))?;
    sync_directory(segment);
    Ok(read.records.len() as u64)
}

/// The day partition (`YYYY-MM-DD`, UTC) of a segment named by its start `stamp`
/// (`YYYYMMDDTHHMMSS.fffZ`); `None` for a name that does not start with a date.
pub fn day_of_stamp(stamp: &str) -> Option<String> {
    let date = chrono::NaiveDate::parse_from_str(stamp.get(..8)?, "%Y%m%d").ok()?;
    Some(date.format("%Y-%m-%d").to_string())
}

/// The open segment.
struct Segment {
    path: PathBuf,
    writer: std::io::BufWriter<std::fs::File>,
    trades: usize,
    hour: DateTime<Utc>,
}

impl Segment {
    fn open(directory: &Path, now: DateTime<Utc>) -> Result<Segment, RecordError> {
        let path = directory.join(format!("ticks-{}.jsonl", now.format("%Y%m%dT%H%M%S%.3fZ")));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        sync_directory(&path);
        Ok(Segment {
            path,
            writer: std::io::BufWriter::with_capacity(1 << 16, file),
            trades: 0,
            hour: super::hour_of(now),
        })
    }

    fn flush(&mut self) -> Result<(), RecordError> {
        self.writer.flush().map_err(io_error(&self.path))
    }

    fn sync(&mut self) -> Result<(), RecordError> {
        self.flush()?;
        self.writer
            .get_ref()
            .sync_data()
            .map_err(io_error(&self.path))
    }

    /// Closes the segment (durably) and compacts it.
    fn close(mut self) -> Result<(), RecordError> {
        self.sync()?;
        drop(self.writer);
        compact(&self.path)?;
        Ok(())
    }
}

/// The writer's settings.
#[derive(Debug, Clone)]
pub struct TickLogSettings {
    /// Where the segments and Parquet files go.
    pub directory: PathBuf,
    /// When the log is made durable.
    pub fsync: FsyncPolicy,
    /// Feed names by [`crate::model::FeedId`] index.
    pub feed_names: Vec<String>,
}

/// Starts the writer thread: compacts segments a crash left, then appends what the core sends
/// until every sender is dropped, and closes (compacts) the last segment. Returns the sender and
/// the thread's handle, which yields the number of trades written.
pub fn start(
    settings: TickLogSettings,
) -> Result<
    (
        TickLogSender,
        std::thread::JoinHandle<Result<u64, RecordError>>,
    ),
    RecordError,
> {
    std::fs::create_dir_all(&settings.directory).map_err(io_error(&settings.directory))?;
    for segment in segments(&settings.directory)? {
        let records = compact(&segment)?;
        tracing::info!(segment = %segment.display(), records, "compacted a trade-log segment left by an earlier run");
    }
    let (sender, receiver) = mpsc::channel(LOG_CHANNEL_CAPACITY);
    let directory = settings.directory.clone();
    let handle = std::thread::Builder::new()
        .name("trade-log".into())
        .spawn(move || write(settings, receiver))
        .map_err(io_error(&directory))?;
    Ok((sender, handle))
}

fn write(
    settings: TickLogSettings,
    mut receiver: mpsc::Receiver<LogMessage>,
) -> Result<u64, RecordError> {
    let mut written = 0u64;
    let mut segment: Option<Segment> = None;
    let mut line = Vec::with_capacity(256);
    let mut unflushed_since: Option<Instant> = None;
    let mut unsynced_since: Option<Instant> = None;
    loop {
        // Wait for the next message, but no longer than the next flush or fsync is due.
        let deadline = [
            unflushed_since.map(|t| t + FLUSH_EVERY),
            match settings.fsync {
                FsyncPolicy::Interval(every) => unsynced_since.map(|t| t + every),
                _ => None,
            },
        ]
        .into_iter()
        .flatten()
        .min();
        let message = match deadline {
            None => receiver.blocking_recv(),
            Some(deadline) => match receiver.try_recv() {
                Ok(message) => Some(message),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Nothing waiting: sleep a little towards the deadline, then do what is due.
                    let left = deadline.saturating_duration_since(Instant::now());
                    std::thread::sleep(left.min(Duration::from_millis(5)));
                    continue_due(
                        &mut segment,
                        &settings,
                        &mut unflushed_since,
                        &mut unsynced_since,
                    )?;
                    continue;
                }
            },
        };
        let Some(message) = message else { break };
        let (trades, durable) = match message {
            LogMessage::Trades(trades) => (trades, None),
            LogMessage::TradesDurable(trades, ack) => (trades, Some(ack)),
        };
        let now = Utc::now();
        if segment
            .as_ref()
            .is_some_and(|s| s.trades >= SEGMENT_TRADES || super::hour_of(now) != s.hour)
            && let Some(closing) = segment.take()
        {
            closing.close()?;
        }
        if segment.is_none() {
            segment = Some(Segment::open(&settings.directory, now)?);
        }
        let Some(open) = segment.as_mut() else {
            continue;
        };
        for trade in &trades {
            line.clear();
            let record = LogRecordRef {
                ts: trade.exchange_ts,
                symbol: trade.symbol.as_str(),
                price: trade.price,
                size: trade.size,
                id: trade.trade_id,
                feed: settings
                    .feed_names
                    .get(trade.feed.index())
                    .map_or("", String::as_str),
            };
            serde_json::to_writer(&mut line, &record).map_err(|error| RecordError::Io {
                path: open.path.clone(),
                source: std::io::Error::other(error),
            })?;
            line.push(b'\n');
            open.writer.write_all(&line).map_err(io_error(&open.path))?;
        }
        open.trades += trades.len();
        written += trades.len() as u64;
        let now = Instant::now();
        unflushed_since.get_or_insert(now);
        unsynced_since.get_or_insert(now);
        if let Some(ack) = durable {
            open.sync()?;
            unflushed_since = None;
            unsynced_since = None;
            let _ = ack.send(());
        } else if settings.fsync == FsyncPolicy::Every {
            open.sync()?;
            unflushed_since = None;
            unsynced_since = None;
        }
        // A steady stream of batches must not hold the buffer past its flush interval.
        continue_due(
            &mut segment,
            &settings,
            &mut unflushed_since,
            &mut unsynced_since,
        )?;
    }
    if let Some(last) = segment.take() {
        last.close()?;
    }
    Ok(written)
}

/// Flushes or fsyncs the open segment if that is due.
fn continue_due(
    segment: &mut Option<Segment>,
    settings: &TickLogSettings,
    unflushed_since: &mut Option<Instant>,
    unsynced_since: &mut Option<Instant>,
) -> Result<(), RecordError> {
    let Some(open) = segment.as_mut() else {
        *unflushed_since = None;
        *unsynced_since = None;
        return Ok(());
    };
    let now = Instant::now();
    if let (FsyncPolicy::Interval(every), Some(since)) = (settings.fsync, *unsynced_since)
        && now >= since + every
    {
        open.sync()?;
        *unflushed_since = None;
        *unsynced_since = None;
        return Ok(());
    }
    if unflushed_since.is_some_and(|since| now >= since + FLUSH_EVERY) {
        open.flush()?;
        *unflushed_since = None;
        if settings.fsync == FsyncPolicy::Never {
            *unsynced_since = None;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: i64) -> LogRecord {
        LogRecord {
            ts: 1_700_000_000_000_000_000 + i,
            symbol: "BTCUSDT".into(),
            price: 60_000.0 + i as f64 * 0.01,
            size: 0.001 * (i + 1) as f64,
            id: Some(i as u64),
            feed: "binance:BTCUSDT".into(),
        }
    }

    fn encode(records: &[LogRecord]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for record in records {
            serde_json::to_writer(&mut bytes, record).expect("encodes");
            bytes.push(b'\n');
        }
        bytes
    }

    #[test]
    fn a_segment_is_compacted_into_the_day_it_was_recorded() {
        let dir = tempfile::tempdir().expect("dir");
        let segment = dir.path().join("ticks-20261202T230000.000Z.jsonl");
        let records: Vec<LogRecord> = (0..3).map(record).collect();
        std::fs::write(&segment, encode(&records)).expect("write");
        assert_eq!(compact(&segment).expect("compacts"), 3);
        assert!(!segment.exists());
        let file = dir
            .path()
            .join("2026-12-02")
            .join("trades-20261202T230000.000Z.parquet");
        assert!(file.is_file(), "{file:?}");
        let found = super::super::files_named(dir.path(), &[("trades-", ".parquet")]);
        assert_eq!(found.expect("lists"), vec![file]);
        assert_eq!(day_of_stamp("unknown"), None);
    }

    #[test]
    fn a_torn_last_record_is_skipped_at_every_byte_offset() {
        let records: Vec<LogRecord> = (0..5).map(record).collect();
        let whole = encode(&records);
        let last_start = encode(&records[..4]).len();
        for cut in last_start..=whole.len() {
            let read = parse_segment(&whole[..cut]);
            assert_eq!(read.corrupt, 0, "cut at {cut}");
            let complete = cut >= whole.len() - 1;
            let expected = if complete { 5 } else { 4 };
            assert_eq!(read.records.len(), expected, "cut at {cut}");
            assert_eq!(read.records[..4], records[..4], "cut at {cut}");
            assert_eq!(read.torn, !complete && cut > last_start, "cut at {cut}");
        }
    }

    #[test]
    fn damage_inside_a_segment_is_counted_and_skipped() {
        let records: Vec<LogRecord> = (0..3).map(record).collect();
        let mut bytes = encode(&records[..1]);
        bytes.extend_from_slice(b"\0\0\0\0\n");
        bytes.extend(encode(&records[1..]));
        let read = parse_segment(&bytes);
        assert_eq!(read.records, records);
        assert_eq!(read.corrupt, 1);
        assert!(!read.torn);
    }

    #[test]
    fn records_round_trip_their_floats_exactly() {
        let record = LogRecord {
            price: 0.1 + 0.2,
            size: 1.0 / 3.0,
            ..record(7)
        };
        let read = parse_segment(&encode(std::slice::from_ref(&record)));
        assert_eq!(read.records, [record]);
    }

    #[test]
    fn the_borrowed_record_writes_the_same_json() {
        for id in [Some(42), None] {
            let owned = LogRecord { id, ..record(3) };
            let borrowed = LogRecordRef {
                ts: owned.ts,
                symbol: &owned.symbol,
                price: owned.price,
                size: owned.size,
                id: owned.id,
                feed: &owned.feed,
            };
            assert_eq!(
                serde_json::to_string(&borrowed).expect("encodes"),
                serde_json::to_string(&owned).expect("encodes")
            );
        }
    }

    #[test]
    fn fsync_policies_parse() {
        assert_eq!("every".parse(), Ok(FsyncPolicy::Every));
        assert_eq!(
            "interval".parse(),
            Ok(FsyncPolicy::Interval(DEFAULT_FSYNC_INTERVAL))
        );
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
