//! Shutdown without loss: the real binary, reading a live feed (the mock exchange) while
//! recording and firing alerts, is stopped by a real SIGTERM or SIGINT mid-stream; every trade
//! it received must be in its recordings, every alert it fired in its alerts file, and it must
//! exit 0.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use polars::prelude::*;
use tickstream::mock_exchange::{MockExchange, MockOptions};
use tickstream::model::Trade;
use tickstream::replay::Speed;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// The `key=value` fields of the log line whose message is `message`.
fn log_fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(key, value)| (key.to_string(), value.trim_matches('"').to_string()))
        .collect()
}

/// Every row of the Parquet trade files in `directory`, in file then row order.
fn recorded_trades(directory: &Path) -> Vec<(i64, String, f64, i64)> {
    // Compacted into day partitions (`DIR/YYYY-MM-DD/`).
    let mut files: Vec<_> = std::fs::read_dir(directory)
        .expect("recording directory")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .flat_map(|day| std::fs::read_dir(day).expect("day partition").flatten())
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for path in files {
        let file = std::fs::File::open(&path).expect("parquet file");
        let frame = ParquetReader::new(file).finish().expect("valid parquet");
        let ts = frame
            .column("ts")
            .expect("ts")
            .cast(&DataType::Int64)
            .expect("ts as ns");
        let ts = ts.i64().expect("i64");
        let symbol = frame.column("symbol").expect("symbol").str().expect("str");
        let price = frame.column("price").expect("price").f64().expect("f64");
        let id = frame.column("id").expect("id");
        let id = id.cast(&DataType::Int64).expect("id as i64");
        let id = id.i64().expect("i64");
        for row in 0..frame.height() {
            rows.push((
                ts.get(row).expect("ts"),
                symbol.get(row).expect("symbol").to_string(),
                price.get(row).expect("price"),
                id.get(row).expect("id"),
            ));
        }
    }
    rows
}

/// Trade frames (Binance `@trade`) received in the raw-frame recordings of `directory`.
fn recorded_trade_frames(directory: &Path) -> usize {
    std::fs::read_dir(directory)
        .expect("recording directory")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(".frames.jsonl"))
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("frames file");
            text.lines()
                .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON line"))
                .filter(|line| {
                    line["dir"] == "in"
                        && line["text"].as_str().is_some_and(|t| t.contains("@trade"))
                })
                .count()
        })
        .sum()
}

/// Runs the binary against a live mock feed, stops it with `signal` once it has applied a few
/// thousand trades, and checks its accounts.
async fn stop_mid_stream_and_count(signal: &str, trades: &[Trade]) {
    // IBM and AIG's day at 3,000×: about ten seconds of trades, still flowing at the signal.
    let options = MockOptions {
        speed: Speed::Factor(3_000.0),
        max_pause: Some(Duration::from_millis(5)),
        ..MockOptions::default()
    };
    let exchange = MockExchange::bind("127.0.0.1:0".parse().expect("addr"), trades, options)
        .await
        .expect("binds");
    let mock = exchange.local_addr().expect("bound");
    let stop_mock = CancellationToken::new();
    tokio::spawn(exchange.run(stop_mock.clone()));

    let dir = tempfile::tempdir().expect("dir");
    let recordings = dir.path().join("recordings");
    let alerts = dir.path().join("alerts.jsonl");
    let args = [
        "--feed".to_string(),
        format!("binance:AIG,IBM@ws://{mock}"),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--record".into(),
        recordings.display().to_string(),
        "--alerts-file".into(),
        alerts.display().to_string(),
        "--no-alert-log".into(),
        "--alert".into(),
        r#"{"kind":"change_pct","symbol":"*","window":"10s","threshold":0.02,"cooldown":"5s"}"#
            .into(),
        "--alert".into(),
        r#"{"kind":"volume","symbol":"*","window":"1m","threshold":5000,"cooldown":"10s"}"#.into(),
    ];
    let mut child = spawn_binary(&args);
    let stdout = child.stderr.take().expect("stderr");
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut address = None;
    while let Some(line) = lines_rx.recv().await {
        if let Some(at) = line.find("address=") {
            address = line[at + 8..].split_whitespace().next().map(String::from);
            break;
        }
    }
    let address = address.expect("the service logs its address");
    // Wait (over HTTP) until a few thousand trades are in, then signal while they still flow.
    let client = reqwest::Client::new();
    let mut applied = 0;
    for _ in 0..2000 {
        if let Ok(response) = client
            .get(format!("http://{address}/v1/feeds"))
            .send()
            .await
            && let Ok(body) = response.json::<serde_json::Value>().await
        {
            applied = body["feeds"][0]["trades"].as_u64().unwrap_or(0);
            if applied >= 3_000 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(applied >= 3_000, "{signal}: the feed never got going");
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut summary = None;
    while let Some(line) = lines_rx.recv().await {
        if line.contains(" stopped ") || line.ends_with(" stopped") {
            summary = Some(log_fields(&line));
        }
    }
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("joined")
        .expect("exits");
    assert!(exit.success(), "{signal}: exit status {exit:?}");
    stop_mock.cancel();
    let summary = summary.unwrap_or_else(|| panic!("{signal}: no closing summary in the log"));
    let number = |key: &str| -> u64 {
        summary
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{signal}: {key} missing from {summary:?}"))
    };
    eprintln!("{signal}: {summary:?}");
    let received = number("live_trades_received");
    assert!(
        received >= 3_000 && received < trades.len() as u64,
        "{signal}: stopped mid-stream: {summary:?}"
    );
    // Every trade received was applied (nothing left in a channel), recorded as Parquet and
    // as a raw frame.
    assert_eq!(number("trades_applied"), received, "{signal}: {summary:?}");
    assert_eq!(number("trades_recorded"), received, "{signal}: {summary:?}");
    let rows = recorded_trades(&recordings);
    assert_eq!(rows.len() as u64, received, "{signal}: Parquet rows");
    assert_eq!(
        recorded_trade_frames(&recordings) as u64,
        received,
        "{signal}: trade frames recorded"
    );
    // … and they are exactly the tape's first trades, in order (ids numbered per symbol).
    let mut next_ids: HashMap<&str, i64> = HashMap::new();
    for (row, trade) in rows.iter().zip(trades) {
        let id = next_ids.entry(trade.symbol.as_str()).or_insert(1);
        assert_eq!(
            (row.0 / 1_000_000, row.1.as_str(), row.2, row.3),
            (
                trade.exchange_ts / 1_000_000,
                trade.symbol.as_str(),
                trade.price,
                *id
            ),
            "{signal}: recorded trade"
        );
        *id += 1;
    }
    // Every alert fired was written.
    let fired = number("alerts_fired");
    assert!(fired > 0, "{signal}: the rules fired: {summary:?}");
    assert_eq!(number("alerts_written_to_file"), fired, "{signal}");
    let text = std::fs::read_to_string(&alerts).expect("alerts file");
    assert!(text.is_empty() || text.ends_with('\n'));
    let mut written = 0u64;
    for line in text.lines() {
        let alert: serde_json::Value = serde_json::from_str(line).expect("JSON alert");
        assert!(alert["rule_id"].is_string(), "{alert}");
        written += 1;
    }
    assert_eq!(written, fired, "{signal}: alerts in the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_ctrl_c_mid_stream_lose_no_trade_and_no_alert() {
    let trades = load_trades(EQUITIES);
    for signal in ["TERM", "INT"] {
        stop_mid_stream_and_count(signal, &trades).await;
    }
}
