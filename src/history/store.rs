//! The history store: trade files in directories, indexed, each readable as a polars
//! `LazyFrame` of `ts` (epoch ns), `price`, `size` for one symbol and a time range.
//!
//! The files: every `.parquet`/`.pq`, `.csv` and `.jsonl`/`.ndjson`/`.json` (optionally `.gz` or
//! `.zst`) in a directory or in its partitions one level below (`YYYY-MM-DD` or Hive-style
//! `key=value` directories; other subdirectories are not read), with the replay's columns — the
//! trade log's compacted `<UTC day>/trades-<UTC start>.parquet` (hourly, in applied order) and
//! its open `ticks-*.jsonl` segment among them; raw-frame recordings (`*.frames.jsonl`) and unfinished writes
//! (`*.partial`) are not trades and are left out.
//!
//! Each file version (path, length, modification time) is indexed once: its rows and its first
//! and last time (one pass over `ts`), so a query opens only the files whose time range it
//! overlaps. Per symbol ranges (a pass over `symbol` too) are computed only when needed:
//! `/v1/history`, or telling a symbol the store never held from a range without its trades. Parquet files whose `ts` is a Datetime or integer epoch
//! times and whose prices and sizes are numbers are scanned lazily (`scan_parquet`): the symbol
//! and time filters are given to the scan in the file's own units, so row groups whose
//! statistics exclude the range are skipped, and only `ts`, `symbol`, `price` and `size` are
//! read. Any other file (CSV, JSON lines, Parquet with text times or prices) is read once by the
//! replay's own readers — the same parsing as `--replay` — and held in memory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use polars::prelude::*;
use serde::Serialize;

use super::HistoryError;
use crate::replay::{ReplayFormat, ReplayInput, ReplaySource};

/// One symbol's part of a file, or of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SymbolRange {
    /// Trades.
    pub rows: u64,
    /// The earliest trade's time, epoch ms.
    pub from_ms: i64,
    /// The latest trade's time, epoch ms.
    pub to_ms: i64,
}

impl SymbolRange {
    fn merge(&mut self, other: &SymbolRange) {
        self.rows += other.rows;
        self.from_ms = self.from_ms.min(other.from_ms);
        self.to_ms = self.to_ms.max(other.to_ms);
    }
}

/// How a file's trades are read.
#[derive(Debug, Clone)]
enum Access {
    /// `scan_parquet`; `ts` is raw values that times `to_nanos` give epoch ns (a Datetime of
    /// any unit, or integer epoch times whose unit its magnitude told).
    /// `schema` is the file's: consecutive files with the same one are scanned together.
    Scan {
        time_type: DataType,
        to_nanos: i64,
        schema: SchemaRef,
    },
    /// Read by the replay readers: `ts` (ns), `symbol`, `price`, `size`, in file order.
    Loaded(DataFrame),
}

/// One indexed file.
#[derive(Debug, Clone)]
pub struct FileIndex {
    /// Where it is.
    pub path: PathBuf,
    /// Its format.
    pub format: ReplayFormat,
    /// Trades in it (0 when not indexed).
    pub rows: u64,
    /// The earliest trade's time, epoch ns.
    pub first_ns: Option<i64>,
    /// The latest trade's time, epoch ns.
    pub last_ns: Option<i64>,
    /// Per symbol: trades and time range — for a scanned file, computed the first time it is
    /// needed (`/v1/history`, or telling an unknown symbol from an empty range), since it reads
    /// the whole symbol column.
    symbols: std::sync::OnceLock<BTreeMap<String, SymbolRange>>,
    access: Access,
}

/// What the store holds (`GET /v1/history`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoreSummary {
    /// The directories read.
    #[schema(value_type = Vec<String>)]
    pub directories: Vec<PathBuf>,
    /// Trades in all files.
    pub rows: u64,
    /// The earliest trade, epoch ms (null when empty).
    pub from_ms: Option<i64>,
    /// The latest trade, epoch ms.
    pub to_ms: Option<i64>,
    /// Per symbol.
    pub symbols: BTreeMap<String, SymbolRange>,
    /// Per file.
    pub files: Vec<FileSummary>,
    /// Files in the directories that are not readable trade files, left out (with why).
    pub skipped: Vec<SkippedFile>,
}

/// A file the store left out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SkippedFile {
    /// The file.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// Why it could not be read as trades.
    pub error: String,
}

/// One file of a [`StoreSummary`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileSummary {
    /// The file.
    #[schema(value_type = String)]
    pub path: PathBuf,
    /// `parquet`, `csv` or `jsonl`.
    pub format: &'static str,
    /// Trades.
    pub rows: u64,
    /// Symbols.
    pub symbols: usize,
    /// Whether queries scan it lazily (Parquet with typed columns) or hold it in memory.
    pub scanned: bool,
}

/// An indexed file — or why it could not be read — with the version (length, modification time)
/// it was indexed at.
type Indexed = (u64, Option<SystemTime>, Result<Arc<FileIndex>, Arc<str>>);

/// The store: its directories and the index of their files.
#[derive(Debug)]
pub struct HistoryStore {
    directories: Vec<PathBuf>,
    index: Mutex<HashMap<PathBuf, Indexed>>,
    /// Whether Parquet files are indexed (their rows and time range read) before a query uses
    /// them: worth it for a service that answers many; a one-shot query lets the scan's row-group
    /// statistics do the pruning instead.
    indexed: bool,
}

const NANOS_PER_MS: i64 = 1_000_000;

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> HistoryError + '_ {
    move |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> HistoryError {
    HistoryError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Whether a directory is a partition the store reads: a day (`YYYY-MM-DD`, the recorder's) or
/// a Hive-style `key=value` directory. Other subdirectories (a user's outputs) are not history.
fn is_partition(path: &Path) -> bool {
    crate::record::is_day_partition(path)
        || path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.split_once('='))
            .is_some_and(|(key, value)| {
                !key.is_empty() && !value.is_empty() && !key.starts_with('.')
            })
}

/// Whether a directory entry is a trade file of the store.
fn is_trade_file(path: &Path) -> Option<ReplayFormat> {
    let name = path.file_name()?.to_str()?;
    if name.ends_with(".partial") || name.starts_with('.') {
        return None;
    }
    match ReplayFormat::from_path(path)? {
        ReplayFormat::RawFrames => None,
        format => Some(format),
    }
}

impl HistoryStore {
    /// A store over `directories` (files are found and indexed when queried).
    pub fn new(directories: Vec<PathBuf>) -> Self {
        HistoryStore {
            directories,
            index: Mutex::new(HashMap::new()),
            indexed: true,
        }
    }

    /// A store for one query (the command line): Parquet files are not indexed first — each is
    /// scanned with the query's filters, its row groups pruned by their statistics — and files
    /// are taken in name order (the recorder names them by their UTC start).
    pub fn for_one_query(directories: Vec<PathBuf>) -> Self {
        HistoryStore {
            indexed: false,
            ..HistoryStore::new(directories)
        }
    }

    /// The directories read.
    pub fn directories(&self) -> &[PathBuf] {
        &self.directories
    }

    /// Every trade file now in the directories, indexed (a new or changed file is read once),
    /// oldest first.
    pub fn files(&self) -> Result<Vec<Arc<FileIndex>>, HistoryError> {
        let mut found = Vec::new();
        for directory in &self.directories {
            let mut pending = vec![(directory.clone(), true)];
            while let Some((directory, top)) = pending.pop() {
                let entries = match std::fs::read_dir(&directory) {
                    Ok(entries) => entries,
                    // A recording directory the recorder has not made yet holds nothing yet; a
                    // partition removed meanwhile neither.
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(io_error(&directory)(error)),
                };
                for entry in entries {
                    let entry = entry.map_err(io_error(&directory))?;
                    let path = entry.path();
                    let Ok(metadata) = entry.metadata() else {
                        continue; // removed meanwhile (a compacted segment)
                    };
                    if metadata.is_dir() {
                        // Partitions (the recorder's days, or `key=value`): one level down.
                        if top && is_partition(&path) {
                            pending.push((path, false));
                        }
                        continue;
                    }
                    let Some(format) = is_trade_file(&path) else {
                        continue;
                    };
                    if metadata.is_file() {
                        found.push((path, format, metadata.len(), metadata.modified().ok()));
                    }
                }
            }
        }
        let mut files = Vec::with_capacity(found.len());
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.retain(|path, _| found.iter().any(|(p, ..)| p == path));
        for (path, format, length, modified) in found {
            let cached = index
                .get(&path)
                .filter(|(l, m, _)| *l == length && *m == modified)
                .map(|(_, _, file)| file.clone());
            let file = match cached {
                Some(file) => file,
                None => {
                    let file = match index_file(&path, format, self.indexed) {
                        Ok(file) => Ok(Arc::new(file)),
                        // A segment the trade log compacted and removed while we read it.
                        Err(HistoryError::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            continue;
                        }
                        // Not a trade file (another program's output beside the recordings):
                        // said once per version of the file, and left out.
                        Err(error) => {
                            tracing::warn!(
                                file = %path.display(),
                                %error,
                                "leaving a file that is not a readable trade file out of the history"
                            );
                            Err(Arc::<str>::from(error.to_string()))
                        }
                    };
                    index.insert(path.clone(), (length, modified, file.clone()));
                    file
                }
            };
            if let Ok(file) = file {
                files.push(file);
            }
        }
        files.sort_by(|a, b| (a.first_ns, &a.path).cmp(&(b.first_ns, &b.path)));
        Ok(files)
    }

    /// What the store holds.
    pub fn summary(&self) -> Result<StoreSummary, HistoryError> {
        let files = self.files()?;
        let mut symbols: BTreeMap<String, SymbolRange> = BTreeMap::new();
        for file in &files {
            for (symbol, range) in file.symbols()? {
                symbols
                    .entry(symbol.clone())
                    .and_modify(|r| r.merge(range))
                    .or_insert(*range);
            }
        }
        let mut skipped: Vec<SkippedFile> = self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(path, (_, _, file))| {
                file.as_ref().err().map(|error| SkippedFile {
                    path: path.clone(),
                    error: error.to_string(),
                })
            })
            .collect();
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(StoreSummary {
            directories: self.directories.clone(),
            skipped,
            rows: files.iter().map(|f| f.rows).sum(),
            from_ms: symbols.values().map(|r| r.from_ms).min(),
            to_ms: symbols.values().map(|r| r.to_ms).max(),
            symbols,
            files: files
                .iter()
                .map(|f| {
                    Ok(FileSummary {
                        path: f.path.clone(),
                        format: f.format.name(),
                        rows: f.rows,
                        symbols: f.symbols()?.len(),
                        scanned: matches!(f.access, Access::Scan { .. }),
                    })
                })
                .collect::<Result<_, HistoryError>>()?,
        })
    }

    /// Every trade of `symbol` with a time in `[from_ns, to_ns)`, in arrival order (files
    /// oldest first, rows in file order), as `ts` (epoch ns), `price`, `size`.
    pub fn trades(
        &self,
        symbol: &str,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<LazyFrame, HistoryError> {
        let files = self.files()?;
        let wanted = [symbol.to_string()];
        Ok(self.scan(&files, Some(&wanted), from_ns, to_ns)?.select([
            col("ts"),
            col("price"),
            col("size"),
        ]))
    }

    /// Like [`trades`](Self::trades), over only the files `keep` accepts.
    pub fn trades_where(
        &self,
        symbol: &str,
        from_ns: i64,
        to_ns: i64,
        keep: impl Fn(&FileIndex) -> bool,
    ) -> Result<LazyFrame, HistoryError> {
        let files: Vec<Arc<FileIndex>> = self.files()?.into_iter().filter(|f| keep(f)).collect();
        let wanted = [symbol.to_string()];
        Ok(self.scan(&files, Some(&wanted), from_ns, to_ns)?.select([
            col("ts"),
            col("price"),
            col("size"),
        ]))
    }

    /// `symbol`'s trades in the indexed files that end before `boundary_ns`, from the index
    /// alone (each file's symbol ranges are read once per file version): how many, and the
    /// time (ms) of the latest.
    pub fn counted_before(
        &self,
        symbol: &str,
        boundary_ns: i64,
    ) -> Result<(u64, Option<i64>), HistoryError> {
        let mut rows = 0;
        let mut latest = None;
        for file in self.files()? {
            if !file.ends_before(boundary_ns) {
                continue;
            }
            if let Some(range) = file.symbols()?.get(symbol) {
                rows += range.rows;
                latest = latest.max(Some(range.to_ms));
            }
        }
        Ok((rows, latest))
    }

    /// Whether any file holds a trade of `symbol` (what tells an unknown symbol from a range
    /// without trades).
    pub fn holds(&self, symbol: &str) -> Result<bool, HistoryError> {
        for file in self.files()? {
            if file.symbols()?.contains_key(symbol) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// At least as many rows as [`trades`](Self::trades) would give for `symbol` in
    /// `[from_ns, to_ns)`, from the index alone: the symbol's rows in each file whose range
    /// overlaps when the file's symbols are known, else all the file's rows.
    pub fn rows_at_most(
        &self,
        symbol: &str,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<u64, HistoryError> {
        Ok(self
            .files()?
            .iter()
            .filter(|file| file.overlaps(from_ns, to_ns))
            .map(|file| match file.symbols.get() {
                Some(symbols) => symbols.get(symbol).map_or(0, |range| range.rows),
                None => file.rows,
            })
            .sum())
    }

    /// Every trade of `symbols` (all when `None`) with a time in `[from_ns, to_ns)`, in arrival
    /// order, as `ts` (epoch ns), `symbol`, `price`, `size`.
    pub fn all_trades(
        &self,
        symbols: Option<&[String]>,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<LazyFrame, HistoryError> {
        let files = self.files()?;
        self.scan(&files, symbols, from_ns, to_ns)
    }

    fn scan(
        &self,
        files: &[Arc<FileIndex>],
        symbols: Option<&[String]>,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<LazyFrame, HistoryError> {
        let mut frames = Vec::new();
        // Consecutive Parquet files with one schema are one multi-file scan: polars reads them
        // in parallel, in order, each pruned by its own statistics.
        let mut group: Vec<&FileIndex> = Vec::new();
        for file in files {
            if !file.overlaps(from_ns, to_ns) {
                continue;
            }
            // A file whose symbols are known and hold none of those asked is skipped.
            if let (Some(known), Some(wanted)) = (file.symbols.get(), symbols)
                && !wanted.iter().any(|s| known.contains_key(s))
            {
                continue;
            }
            if let Some(last) = group.last()
                && !last.scans_with(file)
            {
                frames.push(trades_of(&group, symbols, from_ns, to_ns)?);
                group.clear();
            }
            group.push(file);
        }
        if !group.is_empty() {
            frames.push(trades_of(&group, symbols, from_ns, to_ns)?);
        }
        if frames.is_empty() {
            return Ok(empty_trades());
        }
        Ok(concat(
            frames,
            UnionArgs {
                parallel: true,
                rechunk: false,
                to_supertypes: true,
                maintain_order: true,
                ..Default::default()
            },
        )?)
    }
}

/// The trades of `group` (files that [`FileIndex::scans_with`] each other, or one file) of
/// `symbols` (all when `None`) within `[from_ns, to_ns)`, as `ts` (ns), `symbol`, `price`, `size`,
/// in file then row order.
fn trades_of(
    group: &[&FileIndex],
    symbols: Option<&[String]>,
    from_ns: i64,
    to_ns: i64,
) -> Result<LazyFrame, HistoryError> {
    let symbol_filter = |column: Expr| -> Option<Expr> {
        symbols?
            .iter()
            .map(|s| column.clone().eq(lit(s.as_str())))
            .reduce(|a, b| a.or(b))
    };
    let Some(first) = group.first() else {
        return Ok(empty_trades());
    };
    match &first.access {
        Access::Scan {
            time_type,
            to_nanos,
            ..
        } => {
            let paths = group
                .iter()
                .map(|file| PlRefPath::try_from_path(&file.path))
                .collect::<Result<Vec<_>, _>>()?;
            let low = lit(raw_at_least(from_ns, *to_nanos)).cast(time_type.clone());
            let high = lit(raw_at_least(to_ns, *to_nanos)).cast(time_type.clone());
            let mut filter = col("ts").gt_eq(low).and(col("ts").lt(high));
            if let Some(symbols) = symbol_filter(col("symbol").cast(DataType::String)) {
                filter = symbols.and(filter);
            }
            Ok(LazyFrame::scan_parquet_files(
                paths.into_iter().collect(),
                ScanArgsParquet::default(),
            )?
            .filter(filter)
            .select([
                (col("ts").cast(DataType::Int64) * lit(*to_nanos)).alias("ts"),
                col("symbol").cast(DataType::String),
                col("price").cast(DataType::Float64),
                col("size").cast(DataType::Float64),
            ]))
        }
        Access::Loaded(frame) => {
            let mut filter = col("ts").gt_eq(lit(from_ns)).and(col("ts").lt(lit(to_ns)));
            if let Some(symbols) = symbol_filter(col("symbol")) {
                filter = symbols.and(filter);
            }
            Ok(frame.clone().lazy().filter(filter).select([
                col("ts"),
                col("symbol"),
                col("price"),
                col("size"),
            ]))
        }
    }
}

/// A frame of no trades with the query columns.
fn empty_trades() -> LazyFrame {
    df!(
        "ts" => Vec::<i64>::new(),
        "symbol" => Vec::<String>::new(),
        "price" => Vec::<f64>::new(),
        "size" => Vec::<f64>::new(),
    )
    .unwrap_or_default()
    .lazy()
}

/// `value` in raw units of `to_nanos` ns, rounded up: the smallest raw value whose time is at
/// least `value` ns.
fn raw_at_least(value: i64, to_nanos: i64) -> i64 {
    let quotient = value.div_euclid(to_nanos);
    if value.rem_euclid(to_nanos) == 0 {
        quotient
    } else {
        quotient + 1
    }
}

impl FileIndex {
    /// Whether the file may hold trades within `[from_ns, to_ns)` (a file not indexed may).
    fn overlaps(&self, from_ns: i64, to_ns: i64) -> bool {
        match (self.first_ns, self.last_ns) {
            (Some(first), Some(last)) => last >= from_ns && first < to_ns,
            _ => self.rows == 0 && matches!(self.access, Access::Scan { .. }),
        }
    }

    /// Whether the file is indexed and its last trade is before `boundary_ns`.
    pub fn ends_before(&self, boundary_ns: i64) -> bool {
        self.last_ns.is_some_and(|last| last < boundary_ns)
    }

    /// Per symbol: its trades and time range (read once per file version).
    pub fn symbols(&self) -> Result<&BTreeMap<String, SymbolRange>, HistoryError> {
        if let Some(symbols) = self.symbols.get() {
            return Ok(symbols);
        }
        let computed = symbol_ranges(&self.path, &self.access)?;
        Ok(self.symbols.get_or_init(|| computed))
    }

    /// Whether `other` is read in one scan with this file (both Parquet with one schema).
    fn scans_with(&self, other: &FileIndex) -> bool {
        match (&self.access, &other.access) {
            (Access::Scan { schema: a, .. }, Access::Scan { schema: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// How a Parquet file's columns allow a lazy scan, if they do.
fn scan_access(path: &Path) -> Result<Option<Access>, HistoryError> {
    let pl_path = PlRefPath::try_from_path(path)?;
    let schema = LazyFrame::scan_parquet(pl_path, ScanArgsParquet::default())?
        .collect_schema()
        .map_err(|e| file_error(path, e))?;
    let numeric = |name: &str| {
        schema
            .get(name)
            .is_some_and(|t| t.is_primitive_numeric() || matches!(t, DataType::Decimal(..)))
    };
    let symbol_ok = schema
        .get("symbol")
        .is_some_and(|t| matches!(t, DataType::String | DataType::Categorical(..)));
    if !symbol_ok || !numeric("price") || !numeric("size") {
        return Ok(None);
    }
    let access = match schema.get("ts") {
        Some(DataType::Datetime(unit, zone)) => {
            let to_nanos = match unit {
                TimeUnit::Nanoseconds => 1,
                TimeUnit::Microseconds => 1_000,
                TimeUnit::Milliseconds => 1_000_000,
            };
            Access::Scan {
                time_type: DataType::Datetime(*unit, zone.clone()),
                to_nanos,
                schema: schema.clone(),
            }
        }
        Some(t) if t.is_integer() => {
            // The replay tells an integer's unit by its magnitude; one file has one unit.
            let pl_path = PlRefPath::try_from_path(path)?;
            let first = LazyFrame::scan_parquet(pl_path, ScanArgsParquet::default())?
                .select([col("ts").cast(DataType::Int64)])
                .limit(1)
                .collect()?;
            let value = first
                .column("ts")
                .ok()
                .and_then(|c| c.i64().ok().and_then(|c| c.get(0)));
            let Some(value) = value else {
                return Ok(None);
            };
            let Ok((nanos, _)) = crate::replay::fields::epoch_to_nanos(value) else {
                return Ok(None);
            };
            Access::Scan {
                time_type: DataType::Int64,
                to_nanos: if value == 0 { 1 } else { nanos / value },
                schema: schema.clone(),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(access))
}

/// Indexes one file: how to read it, its rows and time range (and, for a file held in
/// memory, its symbols' ranges at once).
fn index_file(path: &Path, format: ReplayFormat, indexed: bool) -> Result<FileIndex, HistoryError> {
    let access = match format {
        ReplayFormat::Parquet => scan_access(path)?,
        _ => None,
    };
    let access = match access {
        Some(access) => access,
        None => Access::Loaded(load(path, format)?),
    };
    if !indexed && matches!(access, Access::Scan { .. }) {
        return Ok(FileIndex {
            path: path.to_path_buf(),
            format,
            rows: 0,
            first_ns: None,
            last_ns: None,
            symbols: std::sync::OnceLock::new(),
            access,
        });
    }
    let totals = times(path, &access)?
        .select([
            len().cast(DataType::UInt64).alias("rows"),
            col("ts").min().alias("first"),
            col("ts").max().alias("last"),
        ])
        .collect()
        .map_err(|e| file_error(path, e))?;
    let rows = totals.column("rows")?.u64()?.get(0).unwrap_or(0);
    let first_ns = totals.column("first")?.i64()?.get(0);
    let last_ns = totals.column("last")?.i64()?.get(0);
    let symbols = std::sync::OnceLock::new();
    if matches!(access, Access::Loaded(_)) {
        let _ = symbols.set(symbol_ranges(path, &access)?);
    }
    Ok(FileIndex {
        path: path.to_path_buf(),
        format,
        rows,
        first_ns,
        last_ns,
        symbols,
        access,
    })
}

/// A file's `ts` (epoch ns) and `symbol` columns.
fn times(path: &Path, access: &Access) -> Result<LazyFrame, HistoryError> {
    Ok(match access {
        Access::Scan { to_nanos, .. } => {
            LazyFrame::scan_parquet(PlRefPath::try_from_path(path)?, ScanArgsParquet::default())?
                .select([
                    col("symbol").cast(DataType::String),
                    (col("ts").cast(DataType::Int64) * lit(*to_nanos)).alias("ts"),
                ])
        }
        Access::Loaded(frame) => frame.clone().lazy().select([col("symbol"), col("ts")]),
    })
}

/// Per symbol of a file: trades and time range.
fn symbol_ranges(
    path: &Path,
    access: &Access,
) -> Result<BTreeMap<String, SymbolRange>, HistoryError> {
    let per_symbol = times(path, access)?
        .group_by([col("symbol")])
        .agg([
            len().cast(DataType::UInt64).alias("rows"),
            col("ts").min().alias("first"),
            col("ts").max().alias("last"),
        ])
        .collect()
        .map_err(|e| file_error(path, e))?;
    let symbols_column = per_symbol.column("symbol")?.str()?.clone();
    let rows_column = per_symbol.column("rows")?.u64()?.clone();
    let first_column = per_symbol.column("first")?.i64()?.clone();
    let last_column = per_symbol.column("last")?.i64()?.clone();
    let mut symbols = BTreeMap::new();
    for row in 0..per_symbol.height() {
        let (Some(symbol), Some(rows), Some(first), Some(last)) = (
            symbols_column.get(row),
            rows_column.get(row),
            first_column.get(row),
            last_column.get(row),
        ) else {
            continue;
        };
        symbols.insert(
            symbol.to_string(),
            SymbolRange {
                rows,
                from_ms: first.div_euclid(NANOS_PER_MS),
                to_ms: last.div_euclid(NANOS_PER_MS),
            },
        );
    }
    Ok(symbols)
}

/// Reads a file with the replay's readers into `ts` (ns), `symbol`, `price`, `size`.
fn load(path: &Path, format: ReplayFormat) -> Result<DataFrame, HistoryError> {
    let source = ReplaySource {
        input: ReplayInput::File(path.to_path_buf()),
        format,
        repeat: false,
        ts_unit: None,
    };
    let read = async move { crate::replay::load_all(source).await };
    let trades = match tokio::runtime::Handle::try_current() {
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(read)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_error(path))?
            .block_on(read),
    }
    .map_err(|e| file_error(path, e))?;
    let frame = df!(
        "ts" => trades.iter().map(|t| t.exchange_ts).collect::<Vec<_>>(),
        "symbol" => trades.iter().map(|t| t.symbol.as_str()).collect::<Vec<_>>(),
        "price" => trades.iter().map(|t| t.price).collect::<Vec<_>>(),
        "size" => trades.iter().map(|t| t.size).collect::<Vec<_>>(),
    )?;
    Ok(frame)
}
