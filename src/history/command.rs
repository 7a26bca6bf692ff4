//! History on the command line: `tickstream query candles|stats|indicators` gives the HTTP
//! history's answers without a server, as a table, CSV, JSON or Parquet; `tickstream export`
//! writes a range of the store to one Parquet file for pandas, DuckDB or polars users.

use std::io::Write;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::{HistoryError, HistoryStore, parse_instant, parse_length};

/// The command line's queries scan what they are asked to.
const UNLIMITED: u64 = u64::MAX;
use crate::indicators::{Indicator, IndicatorValue, RawParams};

/// How answers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Comma-separated, with a header.
    Csv,
    /// A JSON array of objects, one per row.
    Json,
    /// Apache Parquet (needs an output file).
    Parquet,
}

/// What to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// Bars of `[from, to)`.
    Candles {
        /// Start.
        from: String,
        /// End (exclusive).
        to: String,
        /// Bar length.
        interval: String,
    },
    /// One window as of an instant.
    Stats {
        /// The instant.
        at: String,
        /// The window.
        window: String,
    },
    /// An indicator over the bars of `[from, to)`.
    Indicator {
        /// Start.
        from: String,
        /// End (exclusive).
        to: String,
        /// Bar length.
        interval: String,
        /// `sma`, `ema`, `rsi`, `macd`, `bbands` or `atr`.
        name: String,
        /// `period`, `fast`, `slow`, `signal`, `k` as given.
        params: [Option<String>; 5],
    },
}

/// A query from the command line.
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// The store's directories.
    pub history: Vec<PathBuf>,
    /// The symbol.
    pub symbol: String,
    /// The question.
    pub question: Question,
    /// How to write the answer.
    pub format: Format,
    /// Where (standard output when `None`).
    pub output: Option<PathBuf>,
}

/// One value of an answer's table.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Int(i64),
    Float(f64),
    Null,
}

/// An answer as a table.
#[derive(Debug, Clone)]
struct Table {
    columns: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

fn float(value: Option<f64>) -> Cell {
    value.map_or(Cell::Null, Cell::Float)
}

/// Answers `request` and writes the answer; returns the rows written.
pub fn query(request: &QueryRequest) -> Result<usize, HistoryError> {
    // One query: no index first, and no row limit (the user asked for what it costs).
    let store = HistoryStore::for_one_query(request.history.clone());
    let symbol = request.symbol.as_str();
    let table = match &request.question {
        Question::Candles { from, to, interval } => {
            let (from, to) = (parse_instant("from", from)?, parse_instant("to", to)?);
            let interval = parse_length("interval", interval)?;
            let mut rows = Vec::new();
            let mut start = from;
            loop {
                let page = super::query::candles(
                    &store,
                    symbol,
                    start,
                    to,
                    interval,
                    super::MAX_CANDLES_PER_PAGE,
                    UNLIMITED,
                )?;
                for c in &page.candles {
                    rows.push(vec![
                        Cell::Int(c.start_ms),
                        Cell::Float(c.open),
                        Cell::Float(c.high),
                        Cell::Float(c.low),
                        Cell::Float(c.close),
                        Cell::Float(c.volume),
                        float(c.vwap),
                        Cell::Int(i64::try_from(c.count).unwrap_or(i64::MAX)),
                    ]);
                }
                match page.next_ms {
                    Some(next) => start = next.saturating_mul(1_000_000),
                    None => break,
                }
            }
            Table {
                columns: vec![
                    "start_ms", "open", "high", "low", "close", "volume", "vwap", "count",
                ],
                rows,
            }
        }
        Question::Stats { at, window } => {
            let at_ns = parse_instant("at", at)?;
            let window_ns = parse_length("window", window)?;
            let stats = super::query::stats(&store, symbol, at_ns, window_ns, UNLIMITED)?;
            let w = &stats.window;
            let ms = |v: Option<i64>| v.map_or(Cell::Null, Cell::Int);
            Table {
                columns: vec![
                    "as_of_ms",
                    "last_price",
                    "last_ms",
                    "trade_count",
                    "count",
                    "volume",
                    "notional",
                    "vwap",
                    "open",
                    "high",
                    "low",
                    "close",
                    "mean",
                    "stddev",
                    "change",
                    "change_pct",
                    "first_ms",
                    "last_trade_ms",
                ],
                rows: vec![vec![
                    Cell::Int(at_ns.div_euclid(1_000_000)),
                    float(stats.last.map(|(p, _)| p)),
                    ms(stats.last.map(|(_, t)| t)),
                    Cell::Int(i64::try_from(stats.trade_count).unwrap_or(i64::MAX)),
                    Cell::Int(i64::try_from(w.count).unwrap_or(i64::MAX)),
                    Cell::Float(w.volume),
                    float(w.notional),
                    float(w.vwap),
                    float(w.open),
                    float(w.high),
                    float(w.low),
                    float(w.close),
                    float(w.mean),
                    float(w.stddev),
                    float(w.change),
                    float(w.change_pct),
                    ms(w.first_ms),
                    ms(w.last_ms),
                ]],
            }
        }
        Question::Indicator {
            from,
            to,
            interval,
            name,
            params,
        } => {
            let [period, fast, slow, signal, k] = params;
            let raw = RawParams {
                period: period.as_deref(),
                fast: fast.as_deref(),
                slow: slow.as_deref(),
                signal: signal.as_deref(),
                k: k.as_deref(),
            };
            let indicator = Indicator::parse(name, &raw)
                .map_err(|error| HistoryError::BadQuery(error.to_string()))?;
            let (from, to) = (parse_instant("from", from)?, parse_instant("to", to)?);
            let interval = parse_length("interval", interval)?;
            let series =
                super::query::indicator(&store, symbol, from, to, interval, indicator, UNLIMITED)?;
            let columns: Vec<&'static str> = match indicator {
                Indicator::Macd { .. } => vec!["start_ms", "macd", "signal", "hist"],
                Indicator::Bbands { .. } => vec!["start_ms", "upper", "middle", "lower"],
                _ => vec!["start_ms", indicator.name()],
            };
            let rows = series
                .points
                .iter()
                .map(|point| {
                    let mut row = vec![Cell::Int(point.start.div_euclid(1_000_000))];
                    match point.value {
                        IndicatorValue::Single(v) => row.push(Cell::Float(v)),
                        IndicatorValue::Macd { macd, signal, hist } => {
                            row.extend([Cell::Float(macd), Cell::Float(signal), Cell::Float(hist)]);
                        }
                        IndicatorValue::Bands {
                            upper,
                            middle,
                            lower,
                        } => row.extend([
                            Cell::Float(upper),
                            Cell::Float(middle),
                            Cell::Float(lower),
                        ]),
                    }
                    row
                })
                .collect();
            Table { columns, rows }
        }
    };
    let rows = table.rows.len();
    write(&table, request.format, request.output.as_deref())?;
    Ok(rows)
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> HistoryError + '_ {
    move |source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn text(cell: &Cell) -> String {
    match cell {
        Cell::Int(v) => v.to_string(),
        Cell::Float(v) => v.to_string(),
        Cell::Null => String::new(),
    }
}

fn frame(table: &Table) -> Result<DataFrame, HistoryError> {
    let columns = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let ints = table
                .rows
                .iter()
                .all(|r| matches!(r[i], Cell::Int(_) | Cell::Null));
            if ints {
                let values: Vec<Option<i64>> = table
                    .rows
                    .iter()
                    .map(|r| match r[i] {
                        Cell::Int(v) => Some(v),
                        _ => None,
                    })
                    .collect();
                Column::new((*name).into(), values)
            } else {
                let values: Vec<Option<f64>> = table
                    .rows
                    .iter()
                    .map(|r| match r[i] {
                        Cell::Float(v) => Some(v),
                        Cell::Int(v) => Some(v as f64),
                        Cell::Null => None,
                    })
                    .collect();
                Column::new((*name).into(), values)
            }
        })
        .collect();
    Ok(DataFrame::new(table.rows.len(), columns)?)
}

fn write(table: &Table, format: Format, output: Option<&Path>) -> Result<(), HistoryError> {
    if format == Format::Parquet {
        let path = output
            .ok_or_else(|| HistoryError::BadQuery("--format parquet needs --output FILE".into()))?;
        let mut frame = frame(table)?;
        let file = std::fs::File::create(path).map_err(io_error(path))?;
        ParquetWriter::new(file).finish(&mut frame)?;
        return Ok(());
    }
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(io_error(path))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let target = output.map_or_else(|| PathBuf::from("<stdout>"), Path::to_path_buf);
    let fail = io_error(&target);
    match format {
        Format::Csv => {
            writeln!(out, "{}", table.columns.join(",")).map_err(&fail)?;
            for row in &table.rows {
                let line: Vec<String> = row.iter().map(text).collect();
                writeln!(out, "{}", line.join(",")).map_err(&fail)?;
            }
        }
        Format::Json => {
            let rows: Vec<serde_json::Map<String, serde_json::Value>> = table
                .rows
                .iter()
                .map(|row| {
                    table
                        .columns
                        .iter()
                        .zip(row)
                        .map(|(name, cell)| {
                            let value = match cell {
                                Cell::Int(v) => serde_json::Value::from(*v),
                                Cell::Float(v) => serde_json::Number::from_f64(*v)
                                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
                                Cell::Null => serde_json::Value::Null,
                            };
                            (name.to_string(), value)
                        })
                        .collect()
                })
                .collect();
            serde_json::to_writer(&mut out, &rows)
                .map_err(|error| fail(std::io::Error::other(error)))?;
            writeln!(out).map_err(&fail)?;
        }
        Format::Table | Format::Parquet => {
            let cells: Vec<Vec<String>> = table
                .rows
                .iter()
                .map(|row| row.iter().map(text).collect())
                .collect();
            let widths: Vec<usize> = table
                .columns
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    cells
                        .iter()
                        .map(|r| r[i].len())
                        .chain([name.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |values: Vec<String>| -> String {
                values
                    .iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:>w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            writeln!(
                out,
                "{}",
                line(table.columns.iter().map(|c| c.to_string()).collect())
            )
            .map_err(&fail)?;
            for row in cells {
                writeln!(out, "{}", line(row)).map_err(&fail)?;
            }
        }
    }
    out.flush().map_err(&fail)?;
    Ok(())
}

/// Writes every trade of `[from, to)` (of `symbols`, or all) to one Parquet file: `ts` (a
/// nanosecond Datetime), `symbol`, `price`, `size`, in arrival order. Returns the rows written.
pub fn export(
    history: &[PathBuf],
    from: &str,
    to: &str,
    symbols: Option<&[String]>,
    output: &Path,
) -> Result<usize, HistoryError> {
    let (from, to) = (parse_instant("from", from)?, parse_instant("to", to)?);
    if to <= from {
        return Err(HistoryError::BadQuery("to must be after from".into()));
    }
    let store = HistoryStore::for_one_query(history.to_vec());
    let mut frame = store
        .all_trades(symbols, from, to)?
        .sort(
            ["ts"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .with_column(col("ts").cast(DataType::Datetime(TimeUnit::Nanoseconds, None)))
        .collect()?;
    let partial = output.with_extension("parquet.partial");
    let file = std::fs::File::create(&partial).map_err(io_error(&partial))?;
    ParquetWriter::new(file).finish(&mut frame)?;
    std::fs::rename(&partial, output).map_err(io_error(output))?;
    Ok(frame.height())
}
