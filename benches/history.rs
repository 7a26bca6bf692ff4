//! History against DuckDB and pandas: 1-minute candles of one busy symbol over a day.
//!
//! The data: a day of 5,000,000 trades of 40 symbols, one of them ("SPY") with 400,000, written
//! as the recorder writes them — one Parquet file per hour in the day's partition
//! (`2024-08-08/trades-<UTC start>.parquet`: `ts` a
//! nanosecond Datetime, `symbol`, `price`, `size`, `id`, `feed`), in time order, with polars'
//! default row groups. Then, on the same files in the same run, the same question — SPY's
//! 1-minute bars (open, high, low, close, volume, VWAP, count) over the whole day:
//!
//! - tickstream over HTTP (`/v1/symbols/SPY/history/candles`, one page of 1,440 bars): the first
//!   request (which also indexes the 24 files) and then warm ones;
//! - `tickstream query candles --format csv` (a new process each time: it indexes every run);
//! - DuckDB (`duckdb.sql(...)` over `*/trades-*.parquet`, `time_bucket`, `arg_min`/`arg_max` for
//!   open and close), timed inside Python from `connect` to the fetched rows;
//! - pandas (`read_parquet` of the columns used — its `filters` cannot compare polars'
//!   string-view columns —, the symbol selected, then a groupby on the minute), timed the same
//!   way.
//!
//! What the layout makes a query read is measured from the files' own metadata (pyarrow): the
//! compressed bytes of the column chunks (`ts`, `symbol`, `price`, `size`) of the row groups whose
//! `ts` statistics overlap the range, for one hour and for the whole day, beside the store's size.
//!
//! Each is run 5 times, alternating; medians are printed with tickstream's ratio to DuckDB's
//! (below 1 is faster). Needs Python with `duckdb`, `pandas` and `pyarrow`
//! (`pip install duckdb pandas pyarrow`). Run with `cargo bench --bench history`;
//! `HISTORY_BENCH_KEEP=DIR` leaves a copy of the day in `DIR` to profile a query on.

mod fixtures;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tickstream::config::ServeArgs;
use tickstream::{App, Settings};
use tokio_util::sync::CancellationToken;

use fixtures::history::{DAY_START, HOUR};

// The binary's allocator, so the in-process service is measured as the binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TRADES: usize = 5_000_000;
const SYMBOLS: usize = 40;
const SPY_TRADES: usize = 400_000;
const RUNS: usize = 5;

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Runs a Python snippet that prints the seconds its query took and the rows it got.
fn python(script: &str) -> Option<(Duration, usize)> {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!("python: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.split_whitespace();
    let seconds: f64 = parts.next()?.parse().ok()?;
    let rows: usize = parts.next()?.parse().ok()?;
    Some((Duration::from_secs_f64(seconds), rows))
}

fn duckdb_script(dir: &Path) -> String {
    format!(
        r#"
import time, duckdb
t = time.perf_counter()
con = duckdb.connect()
rows = con.sql("""
  select time_bucket(interval 1 minute, ts) as start, arg_min(price, ts) as open, max(price) as high,
         min(price) as low, arg_max(price, ts) as close, sum(size) as volume,
         sum(price * size) / sum(size) as vwap, count(*) as count
  from read_parquet('{}/*/trades-*.parquet') where symbol = 'SPY' group by start order by start""").fetchall()
print(time.perf_counter() - t, len(rows))
"#,
        dir.display()
    )
}

fn pandas_script(dir: &Path) -> String {
    format!(
        r#"
import time, glob, pandas as pd
t = time.perf_counter()
df = pd.read_parquet(sorted(glob.glob('{}/*/trades-*.parquet')), columns=['ts', 'symbol', 'price', 'size'])
df = df[df['symbol'] == 'SPY']
df['notional'] = df['price'] * df['size']
g = df.groupby(df['ts'].dt.floor('1min'), sort=True)
bars = pd.DataFrame({{'open': g['price'].first(), 'high': g['price'].max(), 'low': g['price'].min(),
    'close': g['price'].last(), 'volume': g['size'].sum(), 'notional': g['notional'].sum(), 'count': g['price'].size()}})
bars['vwap'] = bars['notional'] / bars['volume']
print(time.perf_counter() - t, len(bars))
"#,
        dir.display()
    )
}

/// The compressed bytes of the column chunks a query of `[from_ns, to_ns)` reads: `ts`,
/// `symbol`, `price`, `size` of every row group whose `ts` statistics overlap the range.
fn bytes_script(dir: &Path, from_ns: i64, to_ns: i64) -> String {
    format!(
        r#"
import glob, os, pyarrow.parquet as pq
files = sorted(glob.glob('{dir}/*/trades-*.parquet'))
total = sum(os.path.getsize(f) for f in files)
read, groups = 0, 0
for f in files:
    meta = pq.ParquetFile(f).metadata
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        cols = {{rg.column(c).path_in_schema: rg.column(c) for c in range(rg.num_columns)}}
        st = cols['ts'].statistics
        lo, hi = st.min, st.max
        lo = lo.value if hasattr(lo, 'value') else int(lo.timestamp() * 1e9) if hasattr(lo, 'timestamp') else int(lo)
        hi = hi.value if hasattr(hi, 'value') else int(hi.timestamp() * 1e9) if hasattr(hi, 'timestamp') else int(hi)
        if hi < {from_ns} or lo >= {to_ns}:
            continue
        groups += 1
        read += sum(cols[c].total_compressed_size for c in ('ts', 'symbol', 'price', 'size'))
print(read, groups, total, len(files))
"#,
        dir = dir.display()
    )
}

/// Prints what a query of `[from_ns, to_ns)` reads (see [`bytes_script`]).
fn print_bytes(dir: &Path, what: &str, from_ns: i64, to_ns: i64) {
    let Ok(output) = Command::new("python3")
        .arg("-c")
        .arg(bytes_script(dir, from_ns, to_ns))
        .output()
    else {
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<u64> = text
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    if let [read, groups, total, files] = numbers[..] {
        println!(
            "{what}: reads {:.2} MB of column chunks in {groups} row group(s) of {total_mb:.1} MB in {files} files ({:.1} %)",
            read as f64 / 1e6,
            100.0 * read as f64 / total as f64,
            total_mb = total as f64 / 1e6,
        );
    } else {
        eprintln!("bytes: {}", String::from_utf8_lossy(&output.stderr));
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("dir");
    // `HISTORY_BENCH_KEEP=DIR` also leaves the day in DIR, to profile a query on it afterwards.
    if let Some(keep) = std::env::var_os("HISTORY_BENCH_KEEP") {
        fixtures::history::write_day(Path::new(&keep), TRADES, SYMBOLS, SPY_TRADES);
    }
    let started = Instant::now();
    let spy = fixtures::history::write_day(dir.path(), TRADES, SYMBOLS, SPY_TRADES);
    println!(
        "data: {TRADES} trades of {SYMBOLS} symbols in 24 hourly Parquet files, SPY {spy} trades (written in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let have_python = python("import duckdb, pandas, pyarrow\nprint(0, 0)").is_some();
    if !have_python {
        println!("DuckDB and pandas skipped: pip install duckdb pandas pyarrow");
    }
    let elsewhere = tempfile::tempdir().expect("dir");
    let empty = elsewhere.path().join("empty.csv");
    std::fs::write(&empty, "ts,symbol,price,size\n").expect("write");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (address, stop) = runtime.block_on(async {
        let settings = Settings::load(ServeArgs {
            history: vec![dir.path().to_path_buf()],
            // An empty replay rather than the demo: nothing else runs.
            replay: vec![empty.clone()],
            listen: Some("127.0.0.1:0".into()),
            no_alert_log: true,
            ..ServeArgs::default()
        })
        .expect("settings");
        let app = App::build(settings).await.expect("app");
        let address = app.local_addr().expect("address");
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(app.run_until_stopped(async move { stopped.cancelled().await }));
        (address, stop)
    });
    let url = format!(
        "http://{address}/v1/symbols/SPY/history/candles?from={}&to={}&interval=1m&limit=10000",
        DAY_START / 1_000_000,
        (DAY_START + 24 * HOUR) / 1_000_000
    );
    let client = reqwest::Client::new();
    let http = |client: &reqwest::Client| -> (Duration, usize) {
        runtime.block_on(async {
            let t = Instant::now();
            let body: serde_json::Value = client
                .get(&url)
                .send()
                .await
                .expect("request")
                .json()
                .await
                .expect("json");
            let bars = body["candles"].as_array().map_or(0, Vec::len);
            (t.elapsed(), bars)
        })
    };
    let (cold, bars) = http(&client);
    println!(
        "tickstream HTTP, first request (indexes the 24 files): {:.1} ms, {bars} bars",
        cold.as_secs_f64() * 1e3
    );
    let binary = env!("CARGO_BIN_EXE_tickstream");
    let from = (DAY_START / 1_000_000).to_string();
    let to = ((DAY_START + 24 * HOUR) / 1_000_000).to_string();
    let history = dir.path().to_str().expect("path").to_string();
    let cli = || -> (Duration, usize) {
        let t = Instant::now();
        let output = Command::new(binary)
            .args([
                "query",
                "candles",
                "--history",
                &history,
                "--symbol",
                "SPY",
                "--from",
                &from,
                "--to",
                &to,
                "--interval",
                "1m",
                "--format",
                "csv",
            ])
            .env("RUST_LOG", "warn")
            .output()
            .expect("query runs");
        let lines = String::from_utf8_lossy(&output.stdout).lines().count();
        (t.elapsed(), lines.saturating_sub(1))
    };
    let mut results: Vec<(&str, Vec<Duration>, usize)> = vec![
        ("tickstream HTTP (warm index)", Vec::new(), 0),
        ("tickstream query (new process)", Vec::new(), 0),
        ("DuckDB", Vec::new(), 0),
        ("pandas", Vec::new(), 0),
    ];
    for _ in 0..RUNS {
        let (t, n) = http(&client);
        results[0].1.push(t);
        results[0].2 = n;
        let (t, n) = cli();
        results[1].1.push(t);
        results[1].2 = n;
        if have_python {
            if let Some((t, n)) = python(&duckdb_script(dir.path())) {
                results[2].1.push(t);
                results[2].2 = n;
            }
            if let Some((t, n)) = python(&pandas_script(dir.path())) {
                results[3].1.push(t);
                results[3].2 = n;
            }
        }
    }
    // The layout's point: one hour of one symbol opens one file of the 24.
    let hour_url = format!(
        "http://{address}/v1/symbols/SPY/history/candles?from={}&to={}&interval=1m&limit=10000",
        (DAY_START + 12 * HOUR) / 1_000_000,
        (DAY_START + 13 * HOUR) / 1_000_000
    );
    let hour: Vec<Duration> = (0..RUNS)
        .map(|_| {
            runtime.block_on(async {
                let t = Instant::now();
                let _ = client
                    .get(&hour_url)
                    .send()
                    .await
                    .expect("request")
                    .bytes()
                    .await;
                t.elapsed()
            })
        })
        .collect();
    println!(
        "one hour of SPY (1 file of 24): {:.1} ms over HTTP, median of {RUNS}",
        median(hour).as_secs_f64() * 1e3
    );
    if have_python {
        print_bytes(
            dir.path(),
            "one hour of one symbol",
            DAY_START + 12 * HOUR,
            DAY_START + 13 * HOUR,
        );
        print_bytes(
            dir.path(),
            "the whole day of one symbol",
            DAY_START,
            DAY_START + 24 * HOUR,
        );
    }
    let duckdb = (!results[2].1.is_empty()).then(|| median(results[2].1.clone()));
    println!("SPY 1-minute bars over the day, median of {RUNS} (same files, same run):");
    for (name, times, rows) in &results {
        if times.is_empty() {
            continue;
        }
        let m = median(times.clone());
        let ratio = duckdb.map_or(String::new(), |d| {
            format!(", {:.2}× DuckDB's time", m.as_secs_f64() / d.as_secs_f64())
        });
        println!(
            "  {name}: {:.1} ms, {rows} bars{ratio}",
            m.as_secs_f64() * 1e3
        );
    }
    stop.cancel();
    drop(client);
    runtime.shutdown_timeout(Duration::from_secs(2));
}
