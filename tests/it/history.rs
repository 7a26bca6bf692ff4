//! History over HTTP against independent references: candles and past windows from the
//! recordings equal polars written here (`group_by_dynamic`, filter + aggregate) on real recorded
//! days, whether the store holds CSV (read by the replay readers) or Parquet (scanned lazily);
//! and a live service's own recording, queried afterwards, equals what the live service served.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use polars::prelude::*;
use serde_json::Value;
use tickstream::analytics::WindowStats;
use tickstream::config::ServeArgs;
use tickstream::mock_exchange::MockOptions;

use crate::support::*;

/// A service that answers history from `dir` (and runs the demo besides).
async fn history_service(dir: &Path) -> TestApp {
    TestApp::spawn(ServeArgs {
        history: vec![dir.to_path_buf()],
        ..ServeArgs::default()
    })
    .await
}

/// Every history bar of `symbol` in `[from_ms, to_ms)`, following `next` page by page.
async fn history_bars(
    app: &TestApp,
    symbol: &str,
    from_ms: i64,
    to_ms: i64,
    interval: &str,
) -> Vec<CandleRow> {
    let mut bars = Vec::new();
    let mut from = from_ms;
    let mut pages = 0;
    loop {
        let (status, body) = app
            .get(&format!(
                "/v1/symbols/{symbol}/history/candles?from={from}&to={to_ms}&interval={interval}&limit=700"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        for bar in body["candles"].as_array().expect("candles") {
            let f = |k: &str| bar[k].as_f64().expect(k);
            bars.push(CandleRow {
                start_ms: bar["start_ms"].as_i64().expect("start"),
                open: f("open"),
                high: f("high"),
                low: f("low"),
                close: f("close"),
                volume: f("volume"),
                notional: bar["vwap"].as_f64().map_or(0.0, |v| v * f("volume")),
                count: bar["count"].as_u64().expect("count"),
            });
        }
        pages += 1;
        match body["next"].as_i64() {
            Some(next) => {
                assert!(next > from, "pages move forward");
                from = next;
            }
            None => break,
        }
    }
    assert!(pages >= 1);
    bars
}

fn window_of(body: &Value, label: &str) -> WindowStats {
    serde_json::from_value::<WindowStatsBody>(body["windows"][label].clone())
        .expect("window shape")
        .into()
}

/// The trades of `name` written as Parquet the way a user might: `ts` a millisecond Datetime.
fn write_parquet(trades_frame: &DataFrame, path: &Path) {
    let mut frame = trades_frame
        .clone()
        .lazy()
        .select([
            col("ts_ms")
                .cast(DataType::Datetime(TimeUnit::Milliseconds, None))
                .alias("ts"),
            col("symbol"),
            col("price"),
            col("size"),
        ])
        .collect()
        .expect("frame");
    let file = std::fs::File::create(path).expect("create");
    ParquetWriter::new(file)
        .with_row_group_size(Some(4096))
        .finish(&mut frame)
        .expect("write parquet");
}

async fn assert_history_equals_polars(
    app: &TestApp,
    frame: &DataFrame,
    symbols: &[&str],
    context: &str,
) {
    let times: Vec<i64> = frame
        .column("ts_ms")
        .expect("ts")
        .i64()
        .expect("i64")
        .iter()
        .map(|t| t.expect("t"))
        .collect();
    let (first, last) = (
        *times.iter().min().expect("trades"),
        *times.iter().max().expect("trades"),
    );
    let (status, summary) = app.get("/v1/history").await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["rows"], times.len(), "{context}: {summary}");
    assert_eq!(summary["from_ms"], first);
    assert_eq!(summary["to_ms"], last);
    for (interval, interval_ns) in [
        ("1m", 60_000_000_000i64),
        ("5m", 300_000_000_000),
        ("7s", 7_000_000_000),
    ] {
        let expected = candle_oracle(frame, interval_ns);
        for symbol in symbols {
            let served = history_bars(app, symbol, first, last + 1, interval).await;
            let wanted = &expected[*symbol];
            assert_eq!(
                served.len(),
                wanted.len(),
                "{context} {symbol} {interval}: bars"
            );
            for (a, e) in served.iter().zip(wanted) {
                assert_candle_matches(a, e, &format!("{context} {symbol} {interval}"));
            }
        }
    }
    // Windows as of instants through the day: evenly spaced, and on trade times (ties).
    let mut instants: Vec<i64> = (0..12).map(|i| first + (last - first) * i / 11).collect();
    instants.extend(times.iter().step_by(times.len() / 8).copied());
    for at in instants {
        for window in default_windows().iter() {
            let expected = window_at(frame, window, at);
            for symbol in symbols {
                let (status, body) = app
                    .get(&format!(
                        "/v1/symbols/{symbol}/history/stats?at={at}&window={}",
                        window.label
                    ))
                    .await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["as_of_ms"], at);
                let want = expected
                    .get(*symbol)
                    .cloned()
                    .unwrap_or_else(WindowStats::empty);
                assert_window_matches(
                    &window_of(&body, &window.label),
                    &want,
                    &format!("{context} {symbol} {} at {at}", window.label),
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_equals_polars_on_real_days_from_csv_and_from_parquet() {
    for (name, symbols) in [(EQUITIES, vec!["IBM", "AIG"]), (BTCUSDT, vec!["BTCUSDT"])] {
        let frame = trades_frame(&load_trades(name));
        // CSV, read by the replay readers.
        let dir = tempfile::tempdir().expect("dir");
        std::fs::copy(data_path(name), dir.path().join(name)).expect("copy");
        let app = history_service(dir.path()).await;
        let (_, summary) = app.get("/v1/history").await;
        assert_eq!(summary["files"][0]["scanned"], false, "{summary}");
        assert_history_equals_polars(&app, &frame, &symbols, &format!("{name} as CSV")).await;
        app.stop().await;
        // Parquet with a Datetime column, scanned lazily.
        let dir = tempfile::tempdir().expect("dir");
        write_parquet(&frame, &dir.path().join("trades.parquet"));
        let app = history_service(dir.path()).await;
        let (_, summary) = app.get("/v1/history").await;
        assert_eq!(summary["files"][0]["scanned"], true, "{summary}");
        assert_history_equals_polars(&app, &frame, &symbols, &format!("{name} as Parquet")).await;
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_errors_name_the_parameter() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(data_path(EQUITIES), dir.path().join(EQUITIES)).expect("copy");
    let app = history_service(dir.path()).await;
    app.assert_errors(&[
        (
            "/v1/symbols/XYZ/history/candles?from=0&to=1",
            404,
            "unknown_symbol",
        ),
        (
            "/v1/symbols/IBM/history/candles?from=yesterday&to=1",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/IBM/history/candles?from=5&to=1",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/IBM/history/candles?from=0&to=1&interval=1500us",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/IBM/history/candles?from=0&to=1&limit=0",
            400,
            "bad_parameter",
        ),
        ("/v1/symbols/IBM/history/candles?to=1", 400, "bad_parameter"),
        (
            "/v1/symbols/IBM/history/stats?at=2013-10-07T25:00:00Z",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/IBM/history/stats?at=0&window=0s",
            400,
            "bad_parameter",
        ),
        (
            "/v1/symbols/IBM/history/stats?at=0&color=red",
            400,
            "bad_parameter",
        ),
    ])
    .await;
    let (status, body) = app
        .get("/v1/symbols/IBM/history/indicators/rsi?from=0&to=1381190400000&interval=1ms")
        .await;
    // Any whole number of milliseconds is an interval: one-millisecond bars of a whole day.
    assert_eq!(status, 200, "{body}");
    assert!(
        body["candles"].as_u64() > Some(10_000),
        "{}",
        body["candles"]
    );
    // RFC 3339 and epoch milliseconds name the same instant.
    let (_, by_text) = app
        .get("/v1/symbols/IBM/history/stats?at=2013-10-07T15:00:00Z&window=1h")
        .await;
    let (_, by_number) = app
        .get("/v1/symbols/IBM/history/stats?at=1381158000000&window=1h")
        .await;
    assert_eq!(by_text, by_number);
    assert_eq!(by_text["windows"]["1h"]["count"], 4478);
    app.stop().await;
    // A service without a store says how to get one.
    let app = TestApp::spawn(ServeArgs::default()).await;
    let (status, body) = app.get("/v1/history").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--history")),
        "{body}"
    );
    app.stop().await;
}

/// Bars closed by trades (before the last trade's bar), keyed by start.
async fn live_closed_bars(
    address: SocketAddr,
    symbol: &str,
    interval: &str,
    length_ms: i64,
    last_ms: i64,
) -> BTreeMap<i64, Value> {
    let body: Value = reqwest::get(format!(
        "http://{address}/v1/symbols/{symbol}/candles?interval={interval}&limit=100001"
    ))
    .await
    .expect("candles")
    .json()
    .await
    .expect("json");
    body["candles"]
        .as_array()
        .expect("candles")
        .iter()
        .filter(|bar| bar["closed"] == true)
        .filter(|bar| {
            bar["start_ms"]
                .as_i64()
                .is_some_and(|s| s + length_ms <= last_ms)
        })
        .map(|bar| {
            let mut bar = bar.clone();
            if let Some(fields) = bar.as_object_mut() {
                fields.remove("closed");
            }
            (bar["start_ms"].as_i64().expect("start"), bar)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_services_recording_answers_what_the_live_service_served() {
    let trades = {
        let mut trades = load_trades(EQUITIES);
        let mut next: BTreeMap<String, u64> = BTreeMap::new();
        for trade in &mut trades {
            let id = next.entry(trade.symbol.to_string()).or_insert(1);
            trade.trade_id = Some(*id);
            *id += 1;
        }
        trades
    };
    let last_ms = trades.iter().map(|t| t.exchange_ts).max().expect("trades") / 1_000_000;
    let first_ms = trades.iter().map(|t| t.exchange_ts).min().expect("trades") / 1_000_000;
    let dir = tempfile::tempdir().expect("dir");
    let (mock, stop_mock) = start_mock(
        "127.0.0.1:0".parse().expect("addr"),
        &trades,
        MockOptions::default(),
    )
    .await;
    let live = TestApp::spawn(ServeArgs {
        feed: vec![format!("binance:AIG,IBM@ws://{mock}")],
        record: Some(dir.path().to_path_buf()),
        ..ServeArgs::default()
    })
    .await;
    wait_for_feed(&live, |f| f["trades"] == trades.len()).await;
    let mut served = BTreeMap::new();
    let mut indicators: BTreeMap<(&str, &str), BTreeMap<i64, Value>> = BTreeMap::new();
    for symbol in ["IBM", "AIG"] {
        let (_, stats) = live.get(&format!("/v1/symbols/{symbol}/stats")).await;
        let mut bars = BTreeMap::new();
        for (interval, length_ms) in [("1m", 60_000), ("5m", 300_000)] {
            bars.insert(
                interval,
                live_closed_bars(live.address, symbol, interval, length_ms, last_ms).await,
            );
        }
        served.insert(symbol, (stats, bars));
        for (name, query) in [
            ("rsi", "period=14"),
            ("ema", "period=20"),
            ("macd", "fast=12&slow=26&signal=9"),
            ("bbands", "period=20&k=2"),
        ] {
            let (status, body) = live
                .get(&format!(
                    "/v1/symbols/{symbol}/indicators/{name}?interval=1m&{query}&series=100000"
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            let series: BTreeMap<i64, Value> = body["series"]
                .as_array()
                .expect("series")
                .iter()
                .map(|p| (p["start_ms"].as_i64().expect("start"), p["value"].clone()))
                .collect();
            indicators.insert((symbol, name), series);
        }
    }
    // The stop closes the trade log's segment and compacts it to Parquet.
    live.stop().await;
    stop_mock.cancel();

    let history = history_service(dir.path()).await;
    let (_, summary) = history.get("/v1/history").await;
    assert_eq!(summary["rows"], trades.len(), "{summary}");
    assert!(
        summary["files"]
            .as_array()
            .expect("files")
            .iter()
            .all(|f| f["format"] == "parquet" && f["scanned"] == true),
        "the recording is compacted Parquet, scanned lazily: {summary}"
    );
    for (symbol, (stats, bars)) in &served {
        for (interval, live_bars) in bars {
            let rows = history_bars(&history, symbol, first_ms, last_ms + 1, interval).await;
            assert!(live_bars.len() > 50, "{symbol} {interval}");
            for (start, bar) in live_bars {
                let row = rows
                    .iter()
                    .find(|r| r.start_ms == *start)
                    .unwrap_or_else(|| panic!("{symbol} {interval}: no history bar at {start}"));
                let f = |k: &str| bar[k].as_f64().expect(k);
                assert_eq!(
                    (row.open, row.high, row.low, row.close, row.count),
                    (
                        f("open"),
                        f("high"),
                        f("low"),
                        f("close"),
                        bar["count"].as_u64().expect("count")
                    ),
                    "{symbol} {interval} at {start}"
                );
                assert!(
                    close_enough(row.volume, f("volume"), 1e-12),
                    "{symbol} {interval} at {start}"
                );
            }
        }
        // Indicators over the same bars: the live series (over the closed 1-minute bars) and
        // the history series over the bars up to the forming one are the same numbers.
        let last_closed_end = bars["1m"].keys().max().copied().expect("closed bars") + 60_000;
        for (name, query) in [
            ("rsi", "period=14"),
            ("ema", "period=20"),
            ("macd", "fast=12&slow=26&signal=9"),
            ("bbands", "period=20&k=2"),
        ] {
            let (status, body) = history
                .get(&format!(
                    "/v1/symbols/{symbol}/history/indicators/{name}?from={first_ms}&to={last_closed_end}&interval=1m&{query}"
                ))
                .await;
            assert_eq!(status, 200, "{body}");
            let expected = &indicators[&(*symbol, name)];
            let served: BTreeMap<i64, Value> = body["series"]
                .as_array()
                .expect("series")
                .iter()
                .map(|p| (p["start_ms"].as_i64().expect("start"), p["value"].clone()))
                .collect();
            assert!(served.len() > 50, "{symbol} {name}: {}", served.len());
            for (start, value) in expected.iter().filter(|(s, _)| **s < last_closed_end) {
                let got = served
                    .get(start)
                    .unwrap_or_else(|| panic!("{symbol} {name}: no history value at {start}"));
                assert_values_close(got, value, &format!("{symbol} {name} at {start}"));
            }
        }
        // Every window as of the live service's last answer.
        let at = stats["as_of_ms"].as_i64().expect("as_of");
        for window in default_windows().iter() {
            let (_, body) = history
                .get(&format!(
                    "/v1/symbols/{symbol}/history/stats?at={at}&window={}",
                    window.label
                ))
                .await;
            assert_window_matches(
                &window_of(&body, &window.label),
                &window_of(stats, &window.label),
                &format!("{symbol} {} at {at}", window.label),
            );
            assert_eq!(body["last_price"], stats["last_price"], "{symbol}");
            assert_eq!(body["last_ms"], stats["last_ms"], "{symbol}");
            assert_eq!(body["trade_count"], stats["trade_count"], "{symbol}");
        }
    }
    history.stop().await;
}

/// Asserts two indicator values (numbers, or objects of numbers) agree to 1e-9 relative.
fn assert_values_close(actual: &Value, expected: &Value, context: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            assert_eq!(a.len(), e.len(), "{context}");
            for (key, value) in e {
                assert_values_close(&a[key], value, &format!("{context} {key}"));
            }
        }
        (a, e) => {
            let (a, e) = (a.as_f64().expect(context), e.as_f64().expect(context));
            assert!(
                (a - e).abs() <= 1e-9 * e.abs().max(1.0),
                "{context}: {a} vs {e}"
            );
        }
    }
}

/// Runs the built binary with `args`; returns its standard output (it must succeed).
fn run_binary(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tickstream"))
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_gives_the_http_answers_and_exports_a_range() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::copy(data_path(EQUITIES), dir.path().join(EQUITIES)).expect("copy");
    let history = dir.path().to_str().expect("path");
    let app = history_service(dir.path()).await;
    let (from, to) = ("2013-10-07T13:30:00Z", "2013-10-07T20:00:00Z");
    // Candles: the same bars as over HTTP.
    let printed = run_binary(&[
        "query",
        "candles",
        "--history",
        history,
        "--symbol",
        "AIG",
        "--from",
        from,
        "--to",
        to,
        "--interval",
        "5m",
        "--format",
        "json",
    ]);
    let rows: Vec<Value> = serde_json::from_str(&printed).expect("JSON rows");
    let (_, body) = app
        .get(&format!(
            "/v1/symbols/AIG/history/candles?from={from}&to={to}&interval=5m"
        ))
        .await;
    let served = body["candles"].as_array().expect("candles");
    assert_eq!(rows.len(), served.len());
    assert!(rows.len() > 70);
    for (row, bar) in rows.iter().zip(served) {
        for key in [
            "start_ms", "open", "high", "low", "close", "volume", "vwap", "count",
        ] {
            assert_eq!(row[key], bar[key], "{key} of {bar}");
        }
    }
    // Stats, as CSV: the HTTP window's numbers.
    let printed = run_binary(&[
        "query",
        "stats",
        "--history",
        history,
        "--symbol",
        "IBM",
        "--at",
        "2013-10-07T15:00:00Z",
        "--window",
        "15m",
        "--format",
        "csv",
    ]);
    let mut lines = printed.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let values: Vec<&str> = lines.next().expect("row").split(',').collect();
    let field = |name: &str| values[header.iter().position(|h| *h == name).expect(name)];
    let (_, body) = app
        .get("/v1/symbols/IBM/history/stats?at=2013-10-07T15:00:00Z&window=15m")
        .await;
    assert_eq!(field("count"), body["windows"]["15m"]["count"].to_string());
    assert_eq!(field("close"), body["windows"]["15m"]["close"].to_string());
    assert_eq!(field("trade_count"), body["trade_count"].to_string());
    // Indicators to a Parquet file, read back.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("dir");
    let rsi = out.join("rsi.parquet");
    run_binary(&[
        "query",
        "indicators",
        "--history",
        history,
        "--symbol",
        "IBM",
        "--from",
        from,
        "--to",
        to,
        "--interval",
        "1m",
        "--indicator",
        "rsi",
        "--period",
        "14",
        "--format",
        "parquet",
        "--output",
        rsi.to_str().expect("path"),
    ]);
    let frame = ParquetReader::new(std::fs::File::open(&rsi).expect("open"))
        .finish()
        .expect("parquet");
    let (_, body) = app
        .get(&format!(
            "/v1/symbols/IBM/history/indicators/rsi?from={from}&to={to}&interval=1m&period=14"
        ))
        .await;
    assert_eq!(
        frame.height(),
        body["series"].as_array().expect("series").len()
    );
    assert!(frame.height() > 300);
    // Export: every trade of the hour, of the symbols asked, in Parquet that polars reads.
    let exported = out.join("hour.parquet");
    run_binary(&[
        "export",
        "--history",
        history,
        "--from",
        "2013-10-07T14:00:00Z",
        "--to",
        "2013-10-07T15:00:00Z",
        "--symbols",
        "IBM",
        "--output",
        exported.to_str().expect("path"),
    ]);
    let frame = ParquetReader::new(std::fs::File::open(&exported).expect("open"))
        .finish()
        .expect("parquet");
    let expected: Vec<_> = load_trades(EQUITIES)
        .into_iter()
        .filter(|t| {
            t.symbol.as_str() == "IBM"
                && (1_381_154_400_000_000_000..1_381_158_000_000_000_000).contains(&t.exchange_ts)
        })
        .collect();
    assert_eq!(frame.height(), expected.len());
    let prices: Vec<Option<f64>> = frame
        .column("price")
        .expect("price")
        .f64()
        .expect("f64")
        .iter()
        .collect();
    let mut sorted = expected.clone();
    sorted.sort_by_key(|t| t.exchange_ts);
    assert_eq!(
        prices,
        sorted.iter().map(|t| Some(t.price)).collect::<Vec<_>>()
    );
    assert!(matches!(
        frame.column("ts").expect("ts").dtype(),
        DataType::Datetime(TimeUnit::Nanoseconds, _)
    ));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trade_counts_and_last_trades_hold_across_hourly_files() {
    // The day as hourly Parquet files in a day partition, as the recorder leaves it: files that end before a
    // window are counted from the index, the rest scanned; the answers must not change.
    let trades = load_trades(EQUITIES);
    let frame = trades_frame(&trades);
    let dir = tempfile::tempdir().expect("dir");
    let hour_ms = 3_600_000i64;
    let hours: std::collections::BTreeSet<i64> = trades
        .iter()
        .map(|t| t.exchange_ts / 1_000_000 / hour_ms)
        .collect();
    for hour in &hours {
        let part = frame
            .clone()
            .lazy()
            .filter((col("ts_ms") / lit(hour_ms)).eq(lit(*hour)))
            .collect()
            .expect("hour");
        // In day partitions, as the recorder compacts them.
        let day = chrono::DateTime::from_timestamp_millis(hour * hour_ms)
            .expect("a time")
            .format("%Y-%m-%d")
            .to_string();
        std::fs::create_dir_all(dir.path().join(&day)).expect("day");
        write_parquet(
            &part,
            &dir.path().join(day).join(format!("trades-{hour}.parquet")),
        );
    }
    assert!(hours.len() > 5, "{} files", hours.len());
    // Beside them, what is not history: a file that is not trades (left out and said why), and
    // a user's own directory holding a copy of the day (not a partition: not read).
    std::fs::write(dir.path().join("notes.csv"), "not,a\ntrade,file\n").expect("write");
    std::fs::create_dir(dir.path().join("out")).expect("dir");
    write_parquet(&frame, &dir.path().join("out").join("copy.parquet"));
    let app = history_service(dir.path()).await;
    let (status, summary) = app.get("/v1/history").await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["files"].as_array().map(Vec::len), Some(hours.len()));
    assert_eq!(summary["rows"], trades.len(), "{summary}");
    let skipped = summary["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 1, "{summary}");
    assert!(
        skipped[0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("notes.csv"))
            && !skipped[0]["error"].as_str().unwrap_or("").is_empty(),
        "{summary}"
    );
    let first = trades.iter().map(|t| t.exchange_ts).min().expect("trades") / 1_000_000;
    let last = trades.iter().map(|t| t.exchange_ts).max().expect("trades") / 1_000_000;
    for i in 0..15 {
        let at = first + (last - first) * i / 14;
        for symbol in ["IBM", "AIG"] {
            // Trades are in time order in the file; ties keep it.
            let upto: Vec<_> = trades
                .iter()
                .filter(|t| t.symbol.as_str() == symbol && t.exchange_ts / 1_000_000 <= at)
                .collect();
            for window in ["1s", "1m", "15m"] {
                let (status, body) = app
                    .get(&format!(
                        "/v1/symbols/{symbol}/history/stats?at={at}&window={window}"
                    ))
                    .await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["trade_count"], upto.len(), "{symbol} at {at} {window}");
                // The file is in time order: the last one up to `at` is the latest.
                let expected_last = upto.last();
                assert_eq!(
                    body["last_price"].as_f64(),
                    expected_last.map(|t| t.price),
                    "{symbol} at {at} {window}"
                );
                assert_eq!(
                    body["last_ms"].as_i64(),
                    expected_last.map(|t| t.exchange_ts / 1_000_000),
                    "{symbol} at {at} {window}"
                );
            }
        }
    }
    app.stop().await;
}
