//! Replay: recorded trades from files, as async streams of trade batches.
//!
//! Each [`ReplaySource`] (CSV, JSON lines or Parquet, with the columns `ts,symbol,price,size` and
//! an optional `id`) is read on its own thread (file I/O and Parquet decoding must not block
//! the runtime) that parses rows into batches and hands them over a bounded channel to an
//! `async-stream` stream: a slow consumer slows the reader, never grows memory. A row that does not
//! parse is counted as malformed and logged with its line (or row) number, and the replay goes on;
//! a file that cannot be opened or read is a [`ReplayError`].
//!
//! - [`fields`]: parsing of one row's fields, shared by the formats.
//! - [`csv`], [`jsonl`], [`parquet`]: the formats of normalized trades.
//! - [`frames`]: raw WebSocket frames as received, replayed through the real parsers.
//! - [`pace`](mod@pace): replay speed (as fast as possible, real time, N×).
//! - [`progress`]: bars on a terminal, progress lines in logs.

pub mod csv;
pub mod fields;
pub mod frames;
pub mod jsonl;
pub mod merge;
pub mod pace;
pub mod parquet;
pub mod progress;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio_stream::Stream;

use crate::health::{FeedDescription, FeedStatus};
use crate::model::{FeedId, Symbol, Timestamp, Trade};
use fields::{RawTrade, RowError};

pub use pace::{Speed, pace};

/// Trades per batch handed from a reader to the pipeline.
pub const BATCH_SIZE: usize = 1024;

/// Batches buffered between a reader thread and its stream: enough to keep the pipeline busy
/// while the reader parses, small enough to bound memory (≤ 8 × [`BATCH_SIZE`] trades).
const READ_AHEAD_BATCHES: usize = 8;

/// The sample data compiled into the binary: the default source when none is configured.
pub const EMBEDDED_SAMPLE_NAME: &str = "ibm_aig_20131007_trades.csv";

/// The bytes of [`EMBEDDED_SAMPLE_NAME`].
pub const EMBEDDED_SAMPLE: &[u8] = include_bytes!("../../data/ibm_aig_20131007_trades.csv");

/// The recorded-trade file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
    /// Apache Parquet (read with polars).
    Parquet,
    /// Raw WebSocket frames as received (`*.frames.jsonl`), replayed through the providers'
    /// parsers.
    RawFrames,
}

/// How a recorded file is compressed, from its last extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`.gz`; concatenated members are read as one stream).
    Gzip,
    /// Zstandard (`.zst`).
    Zstd,
}

impl Compression {
    /// The compression a file name says, if any.
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".gz") {
            Some(Compression::Gzip)
        } else if name.ends_with(".zst") {
            Some(Compression::Zstd)
        } else {
            None
        }
    }
}

impl ReplayFormat {
    /// Guesses the format from a file name: `.csv`, `.jsonl`/`.ndjson`/`.json`,
    /// `.parquet`/`.pq`, `.frames.jsonl`, each optionally followed by `.gz` or `.zst`.
    pub fn from_path(path: &Path) -> Option<Self> {
        let mut name = path.file_name()?.to_str()?.to_ascii_lowercase();
        for suffix in [".gz", ".zst"] {
            if let Some(stripped) = name.strip_suffix(suffix) {
                name = stripped.to_string();
            }
        }
        if name.ends_with(".frames.jsonl") {
            return Some(ReplayFormat::RawFrames);
        }
        let extension = Path::new(&name).extension()?.to_str()?.to_string();
        match extension.as_str() {
            "csv" => Some(ReplayFormat::Csv),
            "jsonl" | "ndjson" | "json" => Some(ReplayFormat::JsonLines),
            "parquet" | "pq" => Some(ReplayFormat::Parquet),
            _ => None,
        }
    }

    /// The format's short name.
    pub fn name(self) -> &'static str {
        match self {
            ReplayFormat::Csv => "csv",
            ReplayFormat::JsonLines => "jsonl",
            ReplayFormat::Parquet => "parquet",
            ReplayFormat::RawFrames => "frames",
        }
    }
}

/// Where a replay reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayInput {
    /// A file on disk.
    File(PathBuf),
    /// Bytes in memory (CSV, JSON lines or raw frames), e.g. a fuzzer's input.
    Memory {
        /// A name for display.
        name: String,
        /// The contents.
        bytes: Arc<[u8]>,
    },
    /// Standard input (`-`): CSV, JSON lines or raw frames, told from its first bytes.
    Stdin,
    /// Bytes compiled into the binary (CSV or JSON lines).
    Embedded {
        /// A name for display.
        name: &'static str,
        /// The contents.
        bytes: &'static [u8],
    },
}

/// A recorded file to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySource {
    /// Where to read.
    pub input: ReplayInput,
    /// How to parse it.
    pub format: ReplayFormat,
    /// Start over at the end, shifting event times forward by whole days each pass, so the
    /// stream clock keeps advancing.
    pub repeat: bool,
    /// The unit of integer timestamps, when forced (`--ts-unit`); told by magnitude otherwise.
    pub ts_unit: Option<fields::EpochUnit>,
}

/// A replay that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file name says no known format.
    #[error(
        "{path}: unknown replay format (expected .csv, .jsonl, .ndjson, .json, .parquet, .pq or .frames.jsonl, the text ones optionally .gz or .zst; or - for standard input)"
    )]
    UnknownFormat {
        /// The path.
        path: PathBuf,
    },
    /// The file cannot be opened.
    #[error("{path}: cannot open: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading failed part-way.
    #[error("{source_name}: read failed: {message}")]
    Read {
        /// The file or embedded name.
        source_name: String,
        /// What went wrong.
        message: String,
    },
    /// A required column is absent.
    #[error("{source_name}: no `{column}` column (expected ts,symbol,price,size)")]
    MissingColumn {
        /// The file or embedded name.
        source_name: String,
        /// The missing column.
        column: &'static str,
    },
    /// A column has a type that cannot hold its field.
    #[error("{source_name}: column `{column}` has unsupported type {dtype}")]
    ColumnType {
        /// The file or embedded name.
        source_name: String,
        /// The column.
        column: &'static str,
        /// Its type.
        dtype: String,
    },
    /// Integer timestamps of different units (told by magnitude) in one file.
    #[error(
        "{source_name}: {location} has an epoch time in {found} where the file's first was in {first}: a file's integer timestamps must share one unit"
    )]
    MixedTimeUnits {
        /// The file or embedded name.
        source_name: String,
        /// Where the odd row is.
        location: String,
        /// The unit of the file's first integer timestamp.
        first: &'static str,
        /// The unit of this one.
        found: &'static str,
    },
    /// The file holds no trade at all (no bytes, or only blank lines).
    #[error(
        "{source_name}: the file is empty (expected a header row ts,symbol,price,size and trades)"
    )]
    Empty {
        /// The file or embedded name.
        source_name: String,
    },
    /// Parquet needs to seek: it is read from plain files only.
    #[error(
        "{path}: a compressed Parquet file cannot be read in place; decompress it first (Parquet compresses its own pages)"
    )]
    CompressedParquet {
        /// The path.
        path: PathBuf,
    },
    /// Parquet is only read from files.
    #[error("{source_name}: embedded Parquet is not supported")]
    EmbeddedParquet {
        /// The embedded name.
        source_name: String,
    },
}

impl ReplaySource {
    /// A source for the file at `path`, with the format from its extension.
    pub fn from_path(path: impl Into<PathBuf>) -> Result<Self, ReplayError> {
        let path = path.into();
        if path.as_os_str() == "-" {
            return Ok(ReplaySource {
                input: ReplayInput::Stdin,
                // Told from the first bytes when reading starts (see `sniff_stdin`).
                format: ReplayFormat::Csv,
                repeat: false,
                ts_unit: None,
            });
        }
        let format = ReplayFormat::from_path(&path)
            .ok_or_else(|| ReplayError::UnknownFormat { path: path.clone() })?;
        if format == ReplayFormat::Parquet && Compression::of(&path).is_some() {
            return Err(ReplayError::CompressedParquet { path });
        }
        Ok(ReplaySource {
            input: ReplayInput::File(path),
            format,
            repeat: false,
            ts_unit: None,
        })
    }

    /// The bundled sample (IBM and AIG trades of 2013-10-07), looping.
    pub fn embedded_sample() -> Self {
        ReplaySource {
            input: ReplayInput::Embedded {
                name: EMBEDDED_SAMPLE_NAME,
                bytes: EMBEDDED_SAMPLE,
            },
            format: ReplayFormat::Csv,
            repeat: true,
            ts_unit: None,
        }
    }

    /// The path or `embedded:<name>`.
    pub fn display_name(&self) -> String {
        match &self.input {
            ReplayInput::File(path) => path.display().to_string(),
            ReplayInput::Embedded { name, .. } => format!("embedded:{name}"),
            ReplayInput::Stdin => "stdin".to_string(),
            ReplayInput::Memory { name, .. } => format!("memory:{name}"),
        }
    }

    /// How `/v1/feeds` describes this source.
    pub fn description(&self) -> FeedDescription {
        FeedDescription {
            kind: "replay".to_string(),
            source: self.display_name(),
            format: if self.input == ReplayInput::Stdin {
                "auto".to_string()
            } else {
                self.format.name().to_string()
            },
        }
    }

    /// Checks that the source can be opened; returns its size in bytes. Called at startup so
    /// that a missing file stops the service with a clear error before it serves.
    pub fn check(&self) -> Result<u64, ReplayError> {
        match &self.input {
            // Read as it comes: nothing to check ahead, no size known.
            ReplayInput::Stdin => Ok(0),
            ReplayInput::File(path) => {
                let open_error = |source| ReplayError::Open {
                    path: path.clone(),
                    source,
                };
                let file = std::fs::File::open(path).map_err(open_error)?;
                let metadata = file.metadata().map_err(open_error)?;
                if metadata.is_dir() {
                    return Err(open_error(std::io::Error::other("is a directory")));
                }
                self.check_start()?;
                // Progress counts bytes of the text read: unknown in advance when compressed.
                Ok(if Compression::of(path).is_some() {
                    0
                } else {
                    metadata.len()
                })
            }
            ReplayInput::Embedded { name, bytes } => {
                if self.format == ReplayFormat::Parquet {
                    return Err(ReplayError::EmbeddedParquet {
                        source_name: (*name).to_string(),
                    });
                }
                Ok(bytes.len() as u64)
            }
            ReplayInput::Memory { name, bytes } => {
                if self.format == ReplayFormat::Parquet {
                    return Err(ReplayError::EmbeddedParquet {
                        source_name: name.clone(),
                    });
                }
                Ok(bytes.len() as u64)
            }
        }
    }
}

impl ReplaySource {
    /// Reads the start of a text source: an empty file (or only blank lines) is an error of its
    /// own, and a CSV file's first row must be a header naming the required columns — so a file
    /// that can hold no trade stops the service at start-up rather than later in its log.
    fn check_start(&self) -> Result<(), ReplayError> {
        use std::io::{BufRead, Read};
        let empty = || ReplayError::Empty {
            source_name: self.display_name(),
        };
        if self.format == ReplayFormat::Parquet {
            return match &self.input {
                ReplayInput::File(path) => match std::fs::metadata(path) {
                    Ok(metadata) if metadata.len() == 0 => Err(empty()),
                    _ => Ok(()),
                },
                _ => Ok(()),
            };
        }
        let mut reader = std::io::BufReader::new(open_text(self)?);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = reader
                .by_ref()
                .take(1 << 20)
                .read_until(b'\n', &mut line)
                .map_err(|error| ReplayError::Read {
                    source_name: self.display_name(),
                    message: error.to_string(),
                })?;
            if read == 0 {
                return Err(empty());
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        if self.format == ReplayFormat::Csv {
            let mut header = ::csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(line.as_slice());
            let record = header.byte_headers().map_err(|error| ReplayError::Read {
                source_name: self.display_name(),
                message: error.to_string(),
            })?;
            csv::Columns::from_header(record, &self.display_name())?;
        }
        Ok(())
    }
}

/// An item of a replay stream: a batch of trades, or the error that ended the replay.
pub type ReplayItem = Result<Vec<Trade>, ReplayError>;

/// The stream of `source`'s trades, tagged with `feed`, in file order. Counters and progress go
/// to `status`. The stream ends after the last row (or, when repeating, never); a fatal error is
/// its last item.
pub fn replay_stream(
    source: ReplaySource,
    feed: FeedId,
    status: Arc<FeedStatus>,
) -> impl Stream<Item = ReplayItem> + Send + 'static {
    async_stream::stream! {
        let (sender, mut batches) = mpsc::channel(READ_AHEAD_BATCHES);
        let name = source.display_name();
        // A plain thread, not `spawn_blocking`: polars decides how to block by looking for a
        // tokio runtime on its thread, and must not find one.
        let panic_sender = sender.clone();
        let spawned = std::thread::Builder::new()
            .name("replay-reader".into())
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    read_source(&source, feed, status, sender)
                }));
                if outcome.is_err() {
                    let _ = panic_sender.blocking_send(Err(ReplayError::Read {
                        source_name: source.display_name(),
                        message: "the reader panicked".to_string(),
                    }));
                }
            });
        if let Err(error) = spawned {
            yield Err(ReplayError::Read {
                source_name: name,
                message: format!("cannot start a reader thread: {error}"),
            });
            return;
        }
        while let Some(item) = batches.recv().await {
            yield item;
        }
    }
}

/// Reads a whole (non-repeating) source into memory: for the mock exchange and tools.
pub async fn load_all(source: ReplaySource) -> Result<Vec<Trade>, ReplayError> {
    let metrics = crate::metrics::Metrics::new();
    let registry = crate::health::FeedRegistry::new();
    let source = ReplaySource {
        repeat: false,
        ..source
    };
    source.check()?;
    let status = registry.register(source.display_name(), source.description(), &metrics);
    let mut stream = Box::pin(replay_stream(source, status.id(), status));
    let mut trades = Vec::new();
    while let Some(item) = tokio_stream::StreamExt::next(&mut stream).await {
        trades.extend(item?);
    }
    Ok(trades)
}

/// What [`read_bytes`] found.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// The trades, in input order.
    pub trades: Vec<Trade>,
    /// Rows (or lines) read.
    pub rows: u64,
    /// Rows that did not parse (counted and skipped).
    pub malformed: u64,
}

/// Reads `bytes` in `format` (CSV, JSON lines or raw frames; not Parquet) with the same reader a
/// replay uses, on the calling thread: for fuzzing and tools. Call it from a plain thread, not
/// from inside an async runtime.
pub fn read_bytes(format: ReplayFormat, bytes: &[u8]) -> Result<ReadOutcome, ReplayError> {
    let source = ReplaySource {
        input: ReplayInput::Memory {
            name: "input".into(),
            bytes: Arc::from(bytes),
        },
        format,
        repeat: false,
        ts_unit: None,
    };
    let size = source.check()?;
    let metrics = crate::metrics::Metrics::new();
    let registry = crate::health::FeedRegistry::new();
    let status = registry.register(source.display_name(), source.description(), &metrics);
    // One slot per possible batch (a batch holds at least one trade, a trade at least one
    // byte), so the reader never waits for a consumer that runs only after it.
    let capacity = usize::try_from(size)
        .unwrap_or(usize::MAX >> 4)
        .min(usize::MAX >> 4)
        + 4;
    let (sender, mut receiver) = mpsc::channel(capacity);
    read_source(&source, status.id(), Arc::clone(&status), sender);
    let mut outcome = ReadOutcome::default();
    while let Ok(item) = receiver.try_recv() {
        outcome.trades.extend(item?);
    }
    outcome.rows = status.rows.get();
    outcome.malformed = status.malformed.get();
    Ok(outcome)
}

/// Reads every pass of `source` on the current (blocking) thread.
fn read_source(
    source: &ReplaySource,
    feed: FeedId,
    status: Arc<FeedStatus>,
    sender: mpsc::Sender<ReplayItem>,
) {
    let mut sink = BatchSink::new(feed, status, sender, source.display_name());
    sink.forced_unit = source.ts_unit;
    let sniffed;
    let source = if source.input == ReplayInput::Stdin {
        sniffed = ReplaySource {
            format: sniff_stdin(),
            ..source.clone()
        };
        tracing::info!(format = sniffed.format.name(), "reading standard input");
        &sniffed
    } else {
        source
    };
    loop {
        sink.begin_pass();
        let result = match source.format {
            ReplayFormat::Csv => csv::read(source, &mut sink),
            ReplayFormat::JsonLines => jsonl::read(source, &mut sink),
            ReplayFormat::Parquet => parquet::read(source, &mut sink),
            ReplayFormat::RawFrames => frames::read(source, &mut sink),
        };
        match result {
            Ok(()) => {}
            Err(Stop::Disconnected) => return,
            Err(Stop::Failed(error)) => {
                // The trades read before the failure still count; then the error ends the stream.
                if sink.flush().is_ok() {
                    let _ = sink.send(Err(error));
                }
                return;
            }
        }
        if sink.flush().is_err() {
            return;
        }
        let Some(period) = sink.end_pass() else {
            return;
        };
        if !source.repeat {
            return;
        }
        sink.offset = sink.offset.saturating_add(period);
    }
}

/// Why a reader stops early.
#[derive(Debug)]
pub enum Stop {
    /// The stream was dropped: nobody wants more trades.
    Disconnected,
    /// The file failed.
    Failed(ReplayError),
}

impl From<ReplayError> for Stop {
    fn from(error: ReplayError) -> Self {
        Stop::Failed(error)
    }
}

/// Where a malformed row was found.
#[derive(Debug, Clone, Copy)]
pub enum RowLocation {
    /// A line of a text file (1-based).
    Line(u64),
    /// A row of a Parquet file (1-based).
    Row(u64),
}

impl std::fmt::Display for RowLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowLocation::Line(n) => write!(f, "line {n}"),
            RowLocation::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// Malformed rows logged one by one before switching to one line per this many.
const MALFORMED_LOGGED_INDIVIDUALLY: u64 = 20;
const MALFORMED_LOG_EVERY: u64 = 1000;

/// Collects parsed rows into batches, interns symbols, counts rows and malformed rows, and sends
/// full batches to the stream.
pub struct BatchSink {
    feed: FeedId,
    status: Arc<FeedStatus>,
    sender: mpsc::Sender<ReplayItem>,
    source_name: String,
    batch: Vec<Trade>,
    symbols: HashMap<String, Symbol>,
    /// Added to every event time (looping passes).
    offset: Timestamp,
    rows_unreported: u64,
    pass_min_ts: Timestamp,
    pass_max_ts: Timestamp,
    pass_trades: u64,
    /// The unit of the file's integer timestamps, once its first one is read.
    ts_unit: Option<fields::EpochUnit>,
    /// The unit integer timestamps are read in whatever their magnitude (`--ts-unit`).
    forced_unit: Option<fields::EpochUnit>,
}

impl BatchSink {
    fn new(
        feed: FeedId,
        status: Arc<FeedStatus>,
        sender: mpsc::Sender<ReplayItem>,
        source_name: String,
    ) -> Self {
        BatchSink {
            feed,
            status,
            sender,
            source_name,
            batch: Vec::with_capacity(BATCH_SIZE),
            symbols: HashMap::new(),
            offset: 0,
            ts_unit: None,
            forced_unit: None,
            rows_unreported: 0,
            pass_min_ts: Timestamp::MAX,
            pass_max_ts: Timestamp::MIN,
            pass_trades: 0,
        }
    }

    /// The name of the source, for errors.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Sets the size of one pass (bytes or rows) for progress.
    pub fn set_progress_total(&self, total: u64) {
        self.status.progress_total.store(total, Ordering::Relaxed);
    }

    /// Records how far the pass has read (bytes or rows).
    pub fn set_progress(&self, done: u64) {
        self.status.progress_done.store(done, Ordering::Relaxed);
    }

    fn begin_pass(&mut self) {
        self.pass_min_ts = Timestamp::MAX;
        self.pass_max_ts = Timestamp::MIN;
        self.pass_trades = 0;
        self.set_progress(0);
    }

    /// Ends a pass; returns how far to shift the next pass (whole days covering the pass's
    /// span), `None` if the pass had no trades (nothing to repeat).
    fn end_pass(&mut self) -> Option<Timestamp> {
        const DAY: Timestamp = 86_400 * 1_000_000_000;
        self.status.passes.fetch_add(1, Ordering::Relaxed);
        if self.pass_trades == 0 {
            return None;
        }
        // Saturating: a file may hold times from both ends of the range (found by fuzzing).
        let span = self.pass_max_ts.saturating_sub(self.pass_min_ts);
        Some((span / DAY).saturating_add(1).saturating_mul(DAY))
    }

    /// Takes one row: a trade to batch, or a malformed row to count and log.
    pub fn row(
        &mut self,
        location: RowLocation,
        parsed: Result<RawTrade<'_>, RowError>,
    ) -> Result<(), Stop> {
        self.rows_unreported += 1;
        match parsed {
            Ok(mut raw) => {
                if let (Some(unit), Some(forced)) = (raw.ts_unit, self.forced_unit) {
                    // Read in the unit given: the magnitude said `unit`, the value is the same.
                    if unit != forced {
                        match forced.to_nanos(raw.ts / unit.nanos()) {
                            Ok(ts) => raw.ts = ts,
                            Err(error) => return self.row(location, Err(error)),
                        }
                    }
                } else if let Some(unit) = raw.ts_unit {
                    match self.ts_unit {
                        None => {
                            self.ts_unit = Some(unit);
                            tracing::info!(
                                source = %self.source_name,
                                unit = unit.name(),
                                "integer timestamps read as epoch {}, by their magnitude",
                                unit.name()
                            );
                        }
                        Some(first) if first != unit => {
                            return Err(Stop::Failed(ReplayError::MixedTimeUnits {
                                source_name: self.source_name.clone(),
                                location: location.to_string(),
                                first: first.name(),
                                found: unit.name(),
                            }));
                        }
                        Some(_) => {}
                    }
                }
                self.push(raw)
            }
            Err(error) => {
                self.status.malformed.inc();
                let malformed = self.status.malformed.get();
                if malformed <= MALFORMED_LOGGED_INDIVIDUALLY
                    || malformed.is_multiple_of(MALFORMED_LOG_EVERY)
                {
                    tracing::warn!(
                        source = %self.source_name,
                        %location,
                        malformed_so_far = malformed,
                        "skipping malformed row: {error}"
                    );
                }
                Ok(())
            }
        }
    }

    fn push(&mut self, raw: RawTrade<'_>) -> Result<(), Stop> {
        let symbol = match self.symbols.get(raw.symbol.as_ref()) {
            Some(symbol) => symbol.clone(),
            None => {
                let symbol = Symbol::new(raw.symbol.trim());
                self.symbols.insert(raw.symbol.into_owned(), symbol.clone());
                symbol
            }
        };
        self.push_trade(Trade {
            symbol,
            price: raw.price,
            size: raw.size,
            exchange_ts: raw.ts,
            // A recording of normalized trades keeps no separate receive time.
            receive_ts: raw.ts,
            feed: self.feed,
            trade_id: raw.trade_id,
            side: None,
        })
    }

    /// Takes a trade already parsed (from a raw frame): tags it with this feed and the pass's
    /// time offset, and batches it.
    pub fn push_trade(&mut self, mut trade: Trade) -> Result<(), Stop> {
        self.pass_min_ts = self.pass_min_ts.min(trade.exchange_ts);
        self.pass_max_ts = self.pass_max_ts.max(trade.exchange_ts);
        self.pass_trades += 1;
        trade.exchange_ts = trade.exchange_ts.saturating_add(self.offset);
        trade.receive_ts = trade.receive_ts.saturating_add(self.offset);
        trade.feed = self.feed;
        self.batch.push(trade);
        if self.batch.len() >= BATCH_SIZE {
            self.flush()?;
        }
        Ok(())
    }

    /// Counts a row read whose trades (if any) went through [`push_trade`](Self::push_trade):
    /// a raw frame, which may also carry no trade at all (a control frame, a quote).
    pub fn count_row(&mut self) {
        self.rows_unreported += 1;
    }

    /// Sends the batch so far.
    pub fn flush(&mut self) -> Result<(), Stop> {
        self.status
            .rows
            .inc_by(std::mem::take(&mut self.rows_unreported));
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_SIZE));
        self.send(Ok(batch))
    }

    fn send(&self, item: ReplayItem) -> Result<(), Stop> {
        self.sender
            .blocking_send(item)
            .map_err(|_| Stop::Disconnected)
    }

    /// A read error for this source.
    pub fn read_error(&self, message: impl std::fmt::Display) -> Stop {
        Stop::Failed(ReplayError::Read {
            source_name: self.source_name.clone(),
            message: message.to_string(),
        })
    }
}

/// Reads a line-oriented source (JSON lines, raw frames): calls `each` with every non-blank
/// line and its location, counts a line that is not UTF-8 as malformed, and keeps the progress.
fn for_each_line(
    source: &ReplaySource,
    sink: &mut BatchSink,
    mut each: impl FnMut(&mut BatchSink, RowLocation, &str) -> Result<(), Stop>,
) -> Result<(), Stop> {
    use std::io::BufRead;
    sink.set_progress_total(source.check()?);
    let mut reader = std::io::BufReader::with_capacity(1 << 16, open_text(source)?);
    let mut buffer = Vec::new();
    let mut line_number = 0u64;
    let mut bytes_read = 0u64;
    loop {
        buffer.clear();
        let read = reader
            .read_until(b'\n', &mut buffer)
            .map_err(|error| sink.read_error(error))?;
        if read == 0 {
            break;
        }
        line_number += 1;
        bytes_read += read as u64;
        if line_number.is_multiple_of(4096) {
            sink.set_progress(bytes_read);
        }
        let location = RowLocation::Line(line_number);
        match std::str::from_utf8(&buffer) {
            Ok(line) if line.trim().is_empty() => {}
            Ok(line) => each(sink, location, line)?,
            Err(_) => sink.row(location, Err(RowError::Utf8("line")))?,
        }
    }
    sink.set_progress(bytes_read);
    Ok(())
}

/// The format of standard input, told from its first bytes without consuming them: a JSON object
/// is a raw frame when it has `recv_ns` and `provider`, otherwise a JSON line; anything else is
/// CSV.
fn sniff_stdin() -> ReplayFormat {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    let Ok(start) = lock.fill_buf() else {
        return ReplayFormat::Csv;
    };
    let text = String::from_utf8_lossy(start);
    let text = text.trim_start();
    let first_line = text.lines().next().unwrap_or_default();
    if !text.starts_with('{') {
        ReplayFormat::Csv
    } else if first_line.contains("\"recv_ns\"") && first_line.contains("\"provider\"") {
        ReplayFormat::RawFrames
    } else {
        ReplayFormat::JsonLines
    }
}

/// The whole text of a source (decompressed): for the mock exchange's raw-frame recordings.
pub fn read_text(source: &ReplaySource) -> Result<String, ReplayError> {
    use std::io::Read;
    let mut text = String::new();
    open_text(source)?
        .read_to_string(&mut text)
        .map_err(|error| ReplayError::Read {
            source_name: source.display_name(),
            message: error.to_string(),
        })?;
    Ok(text)
}

/// Opens a text source (file or embedded bytes) as a buffered reader, decompressing a `.gz` or
/// `.zst` file.
fn open_text(source: &ReplaySource) -> Result<Box<dyn std::io::Read + Send>, ReplayError> {
    match &source.input {
        ReplayInput::File(path) => {
            let file = std::fs::File::open(path).map_err(|error| ReplayError::Open {
                path: path.clone(),
                source: error,
            })?;
            let file = std::io::BufReader::with_capacity(1 << 16, file);
            Ok(match Compression::of(path) {
                None => Box::new(file),
                Some(Compression::Gzip) => Box::new(std::io::BufReader::with_capacity(
                    1 << 16,
                    flate2::bufread::MultiGzDecoder::new(file),
                )),
                Some(Compression::Zstd) => Box::new(std::io::BufReader::with_capacity(
                    1 << 16,
                    zstd::stream::read::Decoder::with_buffer(file).map_err(|error| {
                        ReplayError::Open {
                            path: path.clone(),
                            source: error,
                        }
                    })?,
                )),
            })
        }
        ReplayInput::Embedded { bytes, .. } => Ok(Box::new(*bytes)),
        ReplayInput::Memory { bytes, .. } => Ok(Box::new(std::io::Cursor::new(Arc::clone(bytes)))),
        ReplayInput::Stdin => Ok(Box::new(std::io::stdin())),
    }
}
