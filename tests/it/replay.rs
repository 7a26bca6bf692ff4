//! Replay sources: the three formats give the same trades, bad rows are counted and skipped,
//! late and duplicate trades are counted, and a missing file stops the binary with an error.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use polars::prelude::*;
use tickstream::config::ServeArgs;
use tickstream::health::FeedRegistry;
use tickstream::metrics::Metrics;
use tickstream::model::Trade;
use tickstream::replay::{ReplaySource, replay_stream};
use tokio_stream::StreamExt;

use crate::support::*;

/// Reads a source through the product's reader; returns trades and the feed's view.
async fn read_all(path: &Path) -> (Vec<Trade>, tickstream::health::FeedView) {
    let metrics = Metrics::new();
    let registry = FeedRegistry::new();
    let source = ReplaySource::from_path(path).expect("known format");
    let status = registry.register("test".into(), source.description(), &metrics);
    let mut stream = Box::pin(replay_stream(source, status.id(), status.clone()));
    let mut trades = Vec::new();
    while let Some(item) = stream.next().await {
        trades.extend(item.expect("readable"));
    }
    (trades, status.view())
}

/// Reads a source through the product's reader until its end or its error.
async fn read_to_error(path: &Path) -> (Vec<Trade>, Option<String>) {
    let metrics = Metrics::new();
    let registry = FeedRegistry::new();
    let source = ReplaySource::from_path(path).expect("known format");
    let status = registry.register("test".into(), source.description(), &metrics);
    let mut stream = Box::pin(replay_stream(source, status.id(), status.clone()));
    let mut trades = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(batch) => trades.extend(batch),
            Err(error) => return (trades, Some(error.to_string())),
        }
    }
    (trades, None)
}

fn same_trades(actual: &[Trade], expected: &[Trade]) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!(
            (a.symbol.as_str(), a.exchange_ts, a.price, a.size),
            (e.symbol.as_str(), e.exchange_ts, e.price, e.size)
        );
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_jsonl_and_parquet_give_the_same_trades() {
    let expected = load_trades(EQUITIES);
    let (csv, view) = read_all(&data_path(EQUITIES)).await;
    same_trades(&csv, &expected);
    assert_eq!((view.rows_read, view.malformed), (49_644, 0));

    let dir = tempfile::tempdir().expect("tempdir");
    // JSON lines: alternate number and string forms, RFC 3339 and epoch ms.
    let jsonl = dir.path().join("trades.jsonl");
    let mut file = std::fs::File::create(&jsonl).expect("create");
    for (i, t) in expected.iter().enumerate() {
        let ms = t.exchange_ts / 1_000_000;
        let line = if i % 2 == 0 {
            serde_json::json!({"ts": ms, "symbol": t.symbol.as_str(), "price": t.price, "size": t.size})
        } else {
            serde_json::json!({"ts": rfc3339(ms), "symbol": t.symbol.as_str(), "price": t.price.to_string(), "size": t.size.to_string(), "venue": "x"})
        };
        writeln!(file, "{line}").expect("write");
    }
    drop(file);
    let (from_jsonl, view) = read_all(&jsonl).await;
    same_trades(&from_jsonl, &expected);
    assert_eq!(view.malformed, 0);

    // Parquet with a Datetime(ms) column, and with plain Int64 epoch milliseconds.
    for as_datetime in [true, false] {
        let mut frame = trades_frame(&expected);
        let ts = if as_datetime {
            col("ts_ms")
                .cast(DataType::Datetime(TimeUnit::Milliseconds, None))
                .alias("ts")
        } else {
            col("ts_ms").alias("ts")
        };
        frame = frame
            .lazy()
            .select([ts, col("symbol"), col("price"), col("size")])
            .collect()
            .expect("frame");
        let path = dir.path().join(format!("trades-{as_datetime}.parquet"));
        let file = std::fs::File::create(&path).expect("create");
        ParquetWriter::new(file)
            .finish(&mut frame)
            .expect("write parquet");
        let (from_parquet, view) = read_all(&path).await;
        same_trades(&from_parquet, &expected);
        assert_eq!((view.rows_read, view.malformed), (49_644, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_late_and_duplicate_rows_are_counted_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dirty.csv");
    std::fs::write(
        &path,
        "ts,symbol,price,size,id\n\
         1381132700000,A,10.0,1,1\n\
         1001,A,not-a-price,1,2\n\
         1002,A,11.0\n\
         1003,,11.0,1,3\n\
         1004,A,-1,1,4\n\
         2013-10-07T08:00:00Z,A,12.0,1,5\n\
         1381132801000,A,13.0,2,6\n\
         1381132801000,A,13.0,2,6\n\
         1381132798999,A,14.0,1,7\n\
         1381132800500,A,15.0,1,8\n\
         \u{ff}\u{fe},A,1,1,9\n",
    )
    .expect("write");
    let app = TestApp::spawn(ServeArgs {
        replay: vec![path],
        speed: Some("max".into()),
        lateness: Some("1s".into()),
        ..ServeArgs::default()
    })
    .await;
    let feeds = app.wait_for_feeds().await;
    let feed = &feeds["feeds"][0];
    assert_eq!(feed["state"], "finished");
    assert_eq!(feed["rows_read"], 11);
    assert_eq!(feed["malformed"], 5, "{feed}");
    assert_eq!(feed["duplicates"], 1, "{feed}");
    assert_eq!(feed["late"], 1, "the trade 2 s behind the clock: {feed}");
    assert_eq!(feed["trades"], 4, "{feed}");
    let (_, stats) = app.get("/v1/symbols/A/stats?window=1m").await;
    let window = &stats["windows"]["1m"];
    // 12.0 at ...800000, 13.0 ×2 at ...801000, and 15.0 reordered at ...800500.
    assert_eq!(window["count"], 3);
    assert_eq!(window["volume"], 4.0);
    assert_eq!(window["open"], 12.0);
    assert_eq!(window["close"], 13.0);
    assert_eq!(window["high"], 15.0);
    assert_eq!(stats["last_price"], 13.0);
    app.stop().await;
}

#[test]
fn a_missing_or_unknown_file_is_a_clear_error_and_a_failing_exit() {
    let binary = env!("CARGO_BIN_EXE_tickstream");
    let cases = [
        (vec!["--replay", "/nonexistent/trades.csv"], "cannot open"),
        (
            vec!["serve", "--replay", "trades.txt"],
            "unknown replay format",
        ),
        (vec!["--windows", "1m,soon"], "invalid windows"),
        (vec!["--speed", "fast"], "invalid speed"),
    ];
    for (args, expected) in cases {
        let output = Command::new(binary)
            .args(&args)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_binance_frames_replay_through_the_real_parser_to_the_same_statistics() {
    let frames = TestApp::spawn(ServeArgs {
        replay: vec![data_path("binance_btcusdt_20240808.frames.jsonl")],
        speed: Some("max".into()),
        ..ServeArgs::default()
    })
    .await;
    let feeds = frames.wait_for_feeds().await;
    let feed = &feeds["feeds"][0];
    assert_eq!(feed["format"], "frames");
    assert_eq!(feed["trades"], 9757, "{feed}");
    assert_eq!(feed["malformed"], 0, "{feed}");
    assert_eq!(feed["duplicates"], 0, "{feed}");
    let csv = TestApp::spawn(ServeArgs {
        replay: vec![data_path(BTCUSDT)],
        speed: Some("max".into()),
        ..ServeArgs::default()
    })
    .await;
    csv.wait_for_feeds().await;
    for path in ["/v1/symbols/BTCUSDT/stats", "/v1/symbols"] {
        assert_eq!(frames.get(path).await, csv.get(path).await, "{path}");
    }
    frames.stop().await;
    csv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_coinbase_exchange_session_replays_every_match() {
    let path = data_path("coinbase_exchange_20210417.frames.jsonl");
    // The independent count: every match and last_match frame of the recording.
    let text = std::fs::read_to_string(&path).expect("fixture");
    let matches = text
        .lines()
        .filter(|line| {
            line.contains(r#"\"type\":\"match\""#) || line.contains(r#"\"type\":\"last_match\""#)
        })
        .count() as u64;
    assert_eq!(matches, 107);
    let app = TestApp::spawn(ServeArgs {
        replay: vec![path],
        speed: Some("max".into()),
        ..ServeArgs::default()
    })
    .await;
    let feeds = app.wait_for_feeds().await;
    let feed = &feeds["feeds"][0];
    assert_eq!(feed["malformed"], 0, "{feed}");
    let trades = feed["trades"].as_u64().expect("trades");
    let late = feed["late"].as_u64().expect("late");
    assert_eq!(
        trades + late,
        matches,
        "every match applied or counted late: {feed}"
    );
    assert!(
        late > 0,
        "the last_match of a quiet product is older than the clock: {feed}"
    );
    // SKL-USD's last_match is within the lateness of the clock: all its matches are applied.
    let skl_usd = text
        .lines()
        .filter(|line| line.contains("match") && line.contains(r#"\"product_id\":\"SKL-USD\""#))
        .count();
    let (_, stats) = app.get("/v1/symbols/SKL-USD/stats").await;
    assert_eq!(stats["trade_count"], skl_usd, "{stats}");
    // YFI-BTC and CRV-EUR traded only before the session (their last_match is seconds older
    // than the stream clock by then): late, so unknown.
    for symbol in ["YFI-BTC", "CRV-EUR"] {
        let (status, _) = app.get(&format!("/v1/symbols/{symbol}/stats")).await;
        assert_eq!(status, 404, "{symbol}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_timestamps_in_any_unit_give_the_same_trades_and_mixed_units_are_refused() {
    let expected: Vec<Trade> = load_trades(EQUITIES).into_iter().take(2_000).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    for (unit, per_ms) in [("s", 0), ("ms", 1), ("us", 1_000), ("ns", 1_000_000)] {
        let path = dir.path().join(format!("trades-{unit}.csv"));
        let mut text = String::from("ts,symbol,price,size\n");
        let mut kept = Vec::new();
        for t in &expected {
            let ms = t.exchange_ts / 1_000_000;
            // Seconds hold whole seconds only: the trade moves to the start of its second.
            let (ts, exchange_ts) = match per_ms {
                0 => (ms / 1000, ms / 1000 * 1_000_000_000),
                factor => (ms * factor, t.exchange_ts),
            };
            kept.push(Trade {
                exchange_ts,
                ..t.clone()
            });
            text.push_str(&format!(
                "{ts},{},{},{}\n",
                t.symbol.as_str(),
                t.price,
                t.size
            ));
        }
        std::fs::write(&path, text).expect("write");
        let (trades, view) = read_all(&path).await;
        assert!(!kept.is_empty(), "{unit}");
        same_trades(&trades, &kept);
        assert_eq!(view.malformed, 0, "{unit}");
    }
    // A file whose rows switch from milliseconds to seconds is refused, naming both units.
    let mixed = dir.path().join("mixed.csv");
    std::fs::write(
        &mixed,
        "ts,symbol,price,size\n1381132800688,X,1,1\n1381132801,X,1,1\n",
    )
    .expect("write");
    let (_, error) = read_to_error(&mixed).await;
    let error = error.unwrap_or_default();
    assert!(
        error.contains("milliseconds") && error.contains("in seconds") && error.contains("line 3"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_trade_ids_are_kept_for_duplicate_detection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ids.csv");
    std::fs::write(
        &path,
        "ts,symbol,price,size,id\n\
         1381132800000,X,1,1,abc-1\n\
         1381132800001,X,2,1,0c6d6f1e-8a0b-4bb5-9d6c-3f3e7f8a9b10\n\
         1381132800002,X,3,1,abc-1\n\
         1381132800003,X,4,1,abc-2\n",
    )
    .expect("write");
    let app = TestApp::spawn(ServeArgs {
        replay: vec![path],
        ..ServeArgs::default()
    })
    .await;
    let feeds = app.wait_for_feeds().await;
    let feed = &feeds["feeds"][0];
    assert_eq!(feed["malformed"], 0, "{feed}");
    assert_eq!(feed["trades"], 3, "{feed}");
    assert_eq!(feed["duplicates"], 1, "{feed}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_reads_decimal_and_every_numeric_width_and_names_an_unsupported_column() {
    let expected: Vec<Trade> = load_trades(EQUITIES).into_iter().take(5_000).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, price: Expr, size: Expr| {
        let mut frame = trades_frame(&expected)
            .lazy()
            .select([col("ts_ms").alias("ts"), col("symbol"), price, size])
            .collect()
            .expect("frame");
        let path = dir.path().join(name);
        let file = std::fs::File::create(&path).expect("create");
        ParquetWriter::new(file)
            .finish(&mut frame)
            .expect("write parquet");
        path
    };
    let cases = [
        (
            "decimal.parquet",
            col("price").cast(DataType::Decimal(18, 4)),
            col("size").cast(DataType::Decimal(12, 0)),
        ),
        (
            "widths.parquet",
            col("price").cast(DataType::Float32),
            col("size").cast(DataType::UInt32),
        ),
        (
            "small.parquet",
            col("price"),
            col("size").cast(DataType::Int32),
        ),
    ];
    for (name, price, size) in cases {
        let path = write(name, price, size);
        let (trades, error) = read_to_error(&path).await;
        assert_eq!(error, None, "{name}");
        assert_eq!(trades.len(), expected.len(), "{name}");
        for (a, e) in trades.iter().zip(&expected) {
            assert_eq!(a.exchange_ts, e.exchange_ts, "{name}");
            assert_eq!(a.size, e.size, "{name}");
            let tolerance = if name == "widths.parquet" { 1e-6 } else { 0.0 };
            assert!(
                (a.price - e.price).abs() <= tolerance * e.price,
                "{name}: {} vs {}",
                a.price,
                e.price
            );
        }
    }
    // A boolean price column: an error that names the column and its type, not a panic.
    let path = write("bool.parquet", col("price").gt(lit(100.0)), col("size"));
    let (_, error) = read_to_error(&path).await;
    let error = error.unwrap_or_default();
    assert!(
        error.contains("`price`") && error.contains("bool"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duplicate_filter_horizon_is_configurable_and_ids_beyond_it_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("resends.csv");
    // Ids 1–4, then 4 resent (remembered: a duplicate) and 1 resent (older than the last 3
    // ids remembered: applied, and counted as beyond the horizon).
    std::fs::write(
        &path,
        "ts,symbol,price,size,id\n\
         1381132800000,X,1,1,1\n\
         1381132800001,X,2,1,2\n\
         1381132800002,X,3,1,3\n\
         1381132800003,X,4,1,4\n\
         1381132800004,X,4,1,4\n\
         1381132800005,X,1,1,1\n",
    )
    .expect("write");
    let app = TestApp::spawn(ServeArgs {
        replay: vec![path],
        dedup_ids: Some(3),
        ..ServeArgs::default()
    })
    .await;
    let feeds = app.wait_for_feeds().await;
    let feed = &feeds["feeds"][0];
    assert_eq!(feed["trades"], 5, "{feed}");
    assert_eq!(feed["duplicates"], 1, "{feed}");
    assert_eq!(feed["ids_beyond_horizon"], 1, "{feed}");
    let metrics = app.metrics().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tickstream_feed_ids_beyond_horizon_total{") && l.ends_with(" 1")
        ),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_zstd_recordings_read_like_the_plain_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let compress = |name: &str, source: &Path| {
        let bytes = std::fs::read(source).expect("read");
        let path = dir.path().join(name);
        let packed = if name.ends_with(".gz") {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&bytes).expect("gzip");
            encoder.finish().expect("gzip")
        } else {
            zstd::encode_all(bytes.as_slice(), 3).expect("zstd")
        };
        std::fs::write(&path, packed).expect("write");
        path
    };
    for (name, plain) in [
        ("trades.csv.gz", data_path(EQUITIES)),
        ("trades.csv.zst", data_path(EQUITIES)),
        (
            "session.frames.jsonl.gz",
            data_path("binance_btcusdt_20240808.frames.jsonl"),
        ),
        (
            "session.frames.jsonl.zst",
            data_path("binance_btcusdt_20240808.frames.jsonl"),
        ),
    ] {
        let packed = compress(name, &plain);
        let (expected, _) = read_all(&plain).await;
        let (trades, view) = read_all(&packed).await;
        assert_eq!(view.malformed, 0, "{name}");
        assert!(!trades.is_empty(), "{name}");
        same_trades(&trades, &expected);
    }
    // Parquet seeks: a compressed Parquet file is refused with a clear error at once.
    let error = ReplaySource::from_path(dir.path().join("t.parquet.gz"))
        .expect_err("refused")
        .to_string();
    assert!(error.contains("decompress it first"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_timestamp_unit_overrides_the_magnitude() {
    // Milliseconds of 1970 look like seconds by their magnitude; `--ts-unit ms` says otherwise.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("early.csv");
    std::fs::write(&path, "ts,symbol,price,size\n1000,X,1,1\n2500,X,2,1\n").expect("write");
    let (by_magnitude, _) = read_all(&path).await;
    assert_eq!(by_magnitude[1].exchange_ts, 2_500_000_000_000);
    let app = TestApp::spawn(ServeArgs {
        replay: vec![path],
        ts_unit: Some(tickstream::replay::fields::EpochUnit::Millis),
        ..ServeArgs::default()
    })
    .await;
    app.wait_for_feeds().await;
    let (_, stats) = app.get("/v1/symbols/X/stats?window=1s").await;
    assert_eq!(stats["last_ms"], 2500, "{stats}");
    assert_eq!(stats["windows"]["1s"]["count"], 1, "{stats}");
    app.stop().await;
}

/// Peak resident memory of the real binary replaying `path` to its end, kilobytes.
fn peak_rss_replaying(path: &Path) -> u64 {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickstream"))
        .args(["--replay", &path.display().to_string()])
        .args([
            "--speed",
            "max",
            "--windows",
            "1s",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let stderr = child.stderr.take().expect("stderr");
    let finished = std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("replay finished"));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(finished, "{} never finished", path.display());
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn parquet_is_read_in_slices_not_whole() {
    // Two million trades as Parquet (in 100,000-row groups) and as CSV: the Parquet replay's
    // peak memory must stay near the CSV one's (a reader that decodes the file whole needs
    // several times more: 188 against 47 MB for three million rows, measured before the fix).
    let dir = tempfile::tempdir().expect("tempdir");
    const ROWS: i64 = 2_000_000;
    let mut frame = df!(
        "ts" => (0..ROWS).map(|i| 1_700_000_000_000 + i).collect::<Vec<i64>>(),
        "symbol" => (0..ROWS).map(|i| format!("S{:02}", i % 50)).collect::<Vec<String>>(),
        "price" => (0..ROWS).map(|i| 100.0 + (i % 997) as f64 * 0.01).collect::<Vec<f64>>(),
        "size" => (0..ROWS).map(|i| 1.0 + (i % 13) as f64).collect::<Vec<f64>>(),
    )
    .expect("frame");
    let parquet = dir.path().join("big.parquet");
    ParquetWriter::new(std::fs::File::create(&parquet).expect("create"))
        .with_row_group_size(Some(100_000))
        .finish(&mut frame)
        .expect("parquet");
    drop(frame);
    let csv = dir.path().join("big.csv");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&csv).expect("create"));
    writeln!(out, "ts,symbol,price,size").expect("write");
    for i in 0..ROWS {
        writeln!(
            out,
            "{},S{:02},{},{}",
            1_700_000_000_000 + i,
            i % 50,
            100.0 + (i % 997) as f64 * 0.01,
            1.0 + (i % 13) as f64
        )
        .expect("write");
    }
    drop(out);
    let from_csv = peak_rss_replaying(&csv);
    let from_parquet = peak_rss_replaying(&parquet);
    eprintln!("peak RSS: CSV {from_csv} kB, Parquet {from_parquet} kB");
    assert!(
        from_parquet < from_csv * 2,
        "Parquet {from_parquet} kB against CSV {from_csv} kB: decoded whole?"
    );
}
