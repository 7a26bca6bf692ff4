//! File replay at full speed: trades per second from a large generated file (5 M trades over 100
//! symbols, 2 hours of event time) in each replay format — CSV, JSON lines, Parquet — through the
//! whole service (`App` with the file as its replay source at `--speed max`: reader thread,
//! channel, analytics task with the default windows and candles, publication), timed until the
//! core has applied every trade; beside the limit, measured on the same file in the same run:
//! the same reader only reading and parsing it (the replay stream, its batches counted and
//! dropped), and for CSV and JSON lines the plain library alone (`csv` / `serde_json` into a
//! borrowed struct, every row counted and dropped).
//!
//! Run with `cargo bench --bench replay` (it first writes the three files, ~0.7 GB in all, to a
//! temporary directory, and removes them at the end).

mod fixtures;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_main};
use fixtures::{generated_every, service_until_applied};
use polars::prelude::{Column, DataFrame, ParquetWriter};
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

/// Writes the three files; prices with two decimals, as a venue would print them.
fn write_files(dir: &Path, trades: &[Trade]) -> Vec<(&'static str, PathBuf)> {
    let csv = dir.join("trades.csv");
    write_text(&csv, Some("ts,symbol,price,size"), trades, |t| {
        format!(
            "{},{},{:.2},{}",
            millis(t),
            t.symbol.as_str(),
            t.price,
            t.size
        )
    });
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
    vec![("csv", csv), ("jsonl", jsonl), ("parquet", parquet)]
}

/// The limit: the product's reader for `path`, every batch counted and dropped.
async fn parse_only(path: &Path) -> Duration {
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
    assert_eq!(count, TRADES);
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
fn plain_jsonl(path: &Path) -> Duration {
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
    assert_eq!(count, TRADES);
    elapsed
}

/// The plain-library limit for CSV: the `csv` crate's byte records, each deserialized into a
/// borrowed struct, nothing else.
fn plain_csv(path: &Path) -> Duration {
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
    assert_eq!(count, TRADES);
    elapsed
}

/// The whole service replaying `path` at full speed, until the core has applied every trade.
async fn whole_service(path: &Path) -> Duration {
    let args = ServeArgs {
        replay: vec![path.to_path_buf()],
        speed: Some("max".into()),
        ..ServeArgs::default()
    };
    service_until_applied(args, TRADES as u64, Duration::from_millis(1)).await
}

fn replay(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let files = write_files(dir.path(), &generated_every(SYMBOLS, TRADES, SPACING_NS));
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(TRADES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (format, path) in &files {
        let plain: Option<fn(&Path) -> Duration> = match *format {
            "csv" => Some(plain_csv),
            "jsonl" => Some(plain_jsonl),
            _ => None,
        };
        if let Some(plain) = plain {
            group.bench_function(format!("{format}/plain_library"), |b| {
                b.iter_custom(|n| (0..n).map(|_| plain(path)).sum())
            });
        }
        group.bench_function(format!("{format}/parse_only"), |b| {
            b.iter_custom(|n| (0..n).map(|_| runtime.block_on(parse_only(path))).sum())
        });
        group.bench_function(format!("{format}/whole_service"), |b| {
            b.iter_custom(|n| (0..n).map(|_| runtime.block_on(whole_service(path))).sum())
        });
    }
    group.finish();
}

/// The criterion entry points (generated, so undocumented).
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::replay);
}

criterion_main!(harness::benches);
