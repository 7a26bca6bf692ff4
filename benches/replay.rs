//! File replay at full speed: trades per second from a large generated file (5 M trades over 100
//! symbols, 2 hours of event time) in each replay format — CSV, JSON lines, Parquet — through the
//! whole service (`App` with the file as its replay source at `--speed max`: reader thread,
//! channel, analytics task with the default windows and candles, publication), timed until the
//! core has applied every trade, beside the limit measured on the same file in the same run: the
//! plain library alone (`csv` / `serde_json` into a borrowed struct; polars reading the same four
//! columns a row group at a time), every row counted and dropped. One more scenario puts the
//! whole service on 2 M trades over 10,000 symbols beside the same over 100 symbols (CSV).
//!
//! Each scenario alternates limit and service `RUNS` times and prints the medians, their ratio,
//! and the product's reader alone (its batches counted and dropped) for where the time goes.
//!
//! Run with `cargo bench --bench replay [FILTER]` (it first writes the files, ~0.8 GB in all, to
//! a temporary directory, and removes them at the end).

mod fixtures;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fixtures::{alternate, generated_every, scenario_filter, service_until_applied};
use polars::prelude::{Column, DataFrame, ParquetReader, ParquetWriter, SerReader};
use tickstream::config::ServeArgs;
use tickstream::health::FeedRegistry;
use tickstream::metrics::Metrics;
use tickstream::model::Trade;
use tickstream::replay::{ReplaySource, replay_stream};
use tokio_stream::StreamExt;

/// Trades in each file.
const TRADES: usize = 5_000_000;
/// Symbols they are spread over.
const SYMBOLS: usize = 100;
/// 1.5 ms apart: 5 M trades span about 2 hours, so the 1 h window fills and then slides.
const SPACING_NS: i64 = 1_500_000;
/// Trades in the many-symbols scenario.
const MANY_TRADES: usize = 2_000_000;
/// Symbols in the many-symbols scenario.
const MANY_SYMBOLS: usize = 10_000;
/// Limit and service runs per scenario (alternating).
const RUNS: usize = 3;

fn millis(trade: &Trade) -> i64 {
    trade.exchange_ts / 1_000_000
}

/// Writes `trades` to `path` as text, one `line` per trade after an optional header.
fn write_text(
    path: &Path,
    header: Option<&str>,
    trades: &[Trade],
    line: impl Fn(&Trade) -> String,
) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for text in header
        .map(String::from)
        .into_iter()
        .chain(trades.iter().map(line))
    {
        writeln!(out, "{text}").expect("write");
    }
    out.flush().expect("flush");
}

/// Writes `trades` as CSV to `path`; prices with two decimals, as a venue would print them.
fn write_csv(path: &Path, trades: &[Trade]) {
    write_text(path, Some("ts,symbol,price,size"), trades, |t| {
        format!(
            "{},{},{:.2},{}",
            millis(t),
            t.symbol.as_str(),
            t.price,
            t.size
        )
    });
}

/// Writes the three files (prices with two decimals, as a venue would print them); returns
/// the CSV, JSON lines and Parquet paths.
fn write_files(dir: &Path, trades: &[Trade]) -> [PathBuf; 3] {
    let csv = dir.join("trades.csv");
    write_csv(&csv, trades);
    let jsonl = dir.join("trades.jsonl");
    write_text(&jsonl, None, trades, |t| {
        format!(
            r#"{{"ts":{},"symbol":"{}","price":{:.2},"size":{}}}"#,
            millis(t),
            t.symbol.as_str(),
            t.price,
            t.size
        )
    });

    let parquet = dir.join("trades.parquet");
    let columns = vec![
        Column::new("ts".into(), trades.iter().map(millis).collect::<Vec<_>>()),
        Column::new(
            "symbol".into(),
            trades.iter().map(|t| t.symbol.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "price".into(),
            trades
                .iter()
                .map(|t| (t.price * 100.0).round() / 100.0)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "size".into(),
            trades.iter().map(|t| t.size).collect::<Vec<_>>(),
        ),
    ];
    let mut frame = DataFrame::new(trades.len(), columns).expect("frame");
    ParquetWriter::new(std::fs::File::create(&parquet).expect("create parquet"))
        .finish(&mut frame)
        .expect("write parquet");
    [csv, jsonl, parquet]
}

/// The product's reader for `path` alone, every batch counted and dropped.
async fn reader_alone(path: &Path, trades: usize) -> Duration {
    let metrics = Metrics::new();
    let registry = FeedRegistry::new();
    let source = ReplaySource::from_path(path).expect("source");
    let status = registry.register(source.display_name(), source.description(), &metrics);
    let start = Instant::now();
    let mut stream = Box::pin(replay_stream(source, status.id(), status));
    let mut count = 0;
    while let Some(batch) = stream.next().await {
        count += batch.expect("batch").len();
    }
    let elapsed = start.elapsed();
    assert_eq!(count, trades);
    elapsed
}

/// A trade row as the plain libraries read it, borrowing its symbol.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read, never used: the limit measures the parse
struct PlainRow<'a> {
    ts: i64,
    symbol: &'a str,
    price: f64,
    size: f64,
}

/// The plain-library limit for JSON lines: a buffered reader's lines into `serde_json`, each
/// into a borrowed struct, nothing else.
fn plain_jsonl(path: &Path, trades: usize) -> Duration {
    use std::io::BufRead;
    let start = Instant::now();
    let file = std::fs::File::open(path).expect("open");
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut line = String::new();
    let mut count = 0;
    while reader.read_line(&mut line).expect("read") > 0 {
        let row: PlainRow<'_> = serde_json::from_str(&line).expect("row");
        std::hint::black_box(&row);
        count += 1;
        line.clear();
    }
    let elapsed = start.elapsed();
    assert_eq!(count, trades);
    elapsed
}

/// The plain-library limit for CSV: the `csv` crate's byte records, each deserialized into a
/// borrowed struct, nothing else.
fn plain_csv(path: &Path, trades: usize) -> Duration {
    let start = Instant::now();
    let mut reader = csv::Reader::from_path(path).expect("open");
    let headers = reader.byte_headers().expect("headers").clone();
    let mut record = csv::ByteRecord::new();
    let mut count = 0;
    while reader.read_byte_record(&mut record).expect("read") {
        let row: PlainRow<'_> = record.deserialize(Some(&headers)).expect("row");
        std::hint::black_box(&row);
        count += 1;
    }
    let elapsed = start.elapsed();
    assert_eq!(count, trades);
    elapsed
}

/// The plain-library limit for Parquet: polars reading the same four columns a row group at a
/// time (memory bounded by a row group), every row counted and dropped.
fn plain_parquet(path: &Path, trades: usize) -> Duration {
    let start = Instant::now();
    let open = || std::fs::File::open(path).expect("open");
    let mut reader = ParquetReader::new(open());
    let metadata = reader.get_metadata().expect("metadata").clone();
    let mut offset = 0;
    let mut count = 0;
    for group in &metadata.row_groups {
        let rows = group.num_rows();
        let mut reader = ParquetReader::new(open())
            .with_columns(Some(
                ["ts", "symbol", "price", "size"].map(String::from).to_vec(),
            ))
            .with_slice(Some((offset, rows)));
        reader.set_metadata(metadata.clone());
        let frame = reader.finish().expect("row group");
        std::hint::black_box(&frame);
        count += frame.height();
        offset += rows;
    }
    let elapsed = start.elapsed();
    assert_eq!(count, trades);
    elapsed
}

/// The whole service replaying `path` at full speed, until the core has applied `trades`.
async fn whole_service(path: &Path, trades: usize) -> Duration {
    let args = ServeArgs {
        replay: vec![path.to_path_buf()],
        speed: Some("max".into()),
        ..ServeArgs::default()
    };
    service_until_applied(args, trades as u64, Duration::from_millis(1)).await
}

/// One row of the table: the limit, the whole service, and the product's reader alone, each a
/// file of `trades` trades.
struct Scenario {
    name: &'static str,
    limit_name: &'static str,
    trades: usize,
    limit: Box<dyn Fn(&tokio::runtime::Runtime) -> Duration>,
    service: PathBuf,
}

fn rate(trades: usize, elapsed: Duration) -> f64 {
    trades as f64 / elapsed.as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let filter = scenario_filter();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let [csv, jsonl, parquet] =
        write_files(dir.path(), &generated_every(SYMBOLS, TRADES, SPACING_NS));
    let few = dir.path().join("few.csv");
    write_csv(&few, &generated_every(SYMBOLS, MANY_TRADES, SPACING_NS));
    let many = dir.path().join("many.csv");
    write_csv(
        &many,
        &generated_every(MANY_SYMBOLS, MANY_TRADES, SPACING_NS),
    );
    let plain = |name: &'static str,
                 limit_name: &'static str,
                 path: &PathBuf,
                 read: fn(&Path, usize) -> Duration| {
        let limit_path = path.clone();
        Scenario {
            name,
            limit_name,
            trades: TRADES,
            limit: Box::new(move |_| read(&limit_path, TRADES)),
            service: path.clone(),
        }
    };
    let few_path = few.clone();
    let scenarios = [
        plain(
            "csv, 5 M trades, 100 symbols",
            "`csv` into a borrowed struct",
            &csv,
            plain_csv,
        ),
        plain(
            "jsonl, 5 M trades, 100 symbols",
            "`serde_json` into a borrowed struct",
            &jsonl,
            plain_jsonl,
        ),
        plain(
            "parquet, 5 M trades, 100 symbols",
            "polars, by row group, same columns",
            &parquet,
            plain_parquet,
        ),
        Scenario {
            name: "csv, 2 M trades, 10,000 symbols",
            limit_name: "the service on the same trades over 100 symbols",
            trades: MANY_TRADES,
            limit: Box::new(move |runtime| runtime.block_on(whole_service(&few_path, MANY_TRADES))),
            service: many,
        },
    ];
    println!(
        "| scenario | tickstream (trades/s) | limit (trades/s) | ratio | the product's reader alone |"
    );
    println!("|---|---|---|---|---|");
    for scenario in &scenarios {
        if filter
            .as_ref()
            .is_some_and(|f| !scenario.name.contains(f.as_str()))
        {
            continue;
        }
        let (limit, product) = alternate(
            RUNS,
            || rate(scenario.trades, (scenario.limit)(&runtime)),
            || {
                let elapsed = runtime.block_on(whole_service(&scenario.service, scenario.trades));
                rate(scenario.trades, elapsed)
            },
        );
        let reader = rate(
            scenario.trades,
            runtime.block_on(reader_alone(&scenario.service, scenario.trades)),
        );
        println!(
            "| {} | {:.3} M | {:.3} M ({}) | {:.2} | {:.3} M |",
            scenario.name,
            product / 1e6,
            limit / 1e6,
            scenario.limit_name,
            product / limit,
            reader / 1e6,
        );
    }
}
