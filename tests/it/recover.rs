//! Restart without losing state: a service recording a live feed is stopped part-way; a new one
//! started with `--recover` on that recording, reading the same venue again, ends with the
//! candles, indicators and statistics of a service that never stopped.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::Value;
use tickstream::config::ServeArgs;
use tickstream::mock_exchange::MockOptions;
use tickstream::model::Trade;

use crate::support::*;

fn live_args(mock: SocketAddr) -> ServeArgs {
    ServeArgs {
        feed: vec![format!("binance:AIG,IBM@ws://{mock}")],
        ..ServeArgs::default()
    }
}

/// GETs `path` from the service at `address`; returns status and JSON body.
async fn get_json(address: SocketAddr, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("http://{address}{path}"))
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Bars closed by trades (not by the clock moving on after the last one), keyed by start.
async fn closed_bars(address: SocketAddr, symbol: &str, last_ms: i64) -> BTreeMap<i64, Value> {
    let (status, body) = get_json(
        address,
        &format!("/v1/symbols/{symbol}/candles?interval=1m&limit=100001"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["candles"]
        .as_array()
        .expect("candles")
        .iter()
        .filter(|bar| bar["closed"] == true)
        .filter(|bar| {
            bar["start_ms"]
                .as_i64()
                .is_some_and(|s| s + 60_000 <= last_ms)
        })
        .map(|bar| (bar["start_ms"].as_i64().expect("start"), bar.clone()))
        .collect()
}

/// An indicator's series by bar start, over the bars closed by trades.
async fn indicator_series(
    address: SocketAddr,
    symbol: &str,
    query: &str,
    last_ms: i64,
) -> BTreeMap<i64, Value> {
    let (status, body) = get_json(
        address,
        &format!("/v1/symbols/{symbol}/indicators/{query}&series=100000"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["series"]
        .as_array()
        .expect("series")
        .iter()
        .filter(|point| {
            point["start_ms"]
                .as_i64()
                .is_some_and(|s| s + 60_000 <= last_ms)
        })
        .map(|point| {
            (
                point["start_ms"].as_i64().expect("start"),
                point["value"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_service_equals_one_that_never_stopped() {
    // Trade ids numbered per symbol over the whole day, so that every slice keeps them.
    init_test_log();
    let mut trades = load_trades(EQUITIES);
    let mut next_ids: BTreeMap<String, u64> = BTreeMap::new();
    for trade in &mut trades {
        let id = next_ids.entry(trade.symbol.to_string()).or_insert(1);
        trade.trade_id = Some(*id);
        *id += 1;
    }
    let half = trades.len() / 2;
    let first_part: Vec<Trade> = trades[..half].to_vec();
    // After the restart the venue goes on from a little before where the first life stopped:
    // the overlap is sent twice.
    const OVERLAP: usize = 500;
    let second_part: Vec<Trade> = trades[half - OVERLAP..].to_vec();
    let last_ms = trades.iter().map(|t| t.exchange_ts).max().expect("trades") / 1_000_000;
    let dir = tempfile::tempdir().expect("dir");

    // The reference: one service reads the whole day.
    let (whole_mock, stop_whole) = start_mock(
        "127.0.0.1:0".parse().expect("addr"),
        &trades,
        MockOptions::default(),
    )
    .await;
    let reference = TestApp::spawn(live_args(whole_mock)).await;
    wait_for_feed(&reference, |f| f["trades"] == trades.len()).await;

    // The first life: half the day, recorded, then a clean stop.
    let (half_mock, stop_half) = start_mock(
        "127.0.0.1:0".parse().expect("addr"),
        &first_part,
        MockOptions::default(),
    )
    .await;
    let first_life = TestApp::spawn(ServeArgs {
        record: Some(dir.path().to_path_buf()),
        ..live_args(half_mock)
    })
    .await;
    wait_for_feed(&first_life, |f| f["trades"] == first_part.len()).await;
    first_life.stop().await;
    stop_half.cancel();

    // The second life: recovers the recording, then the venue sends the rest of the day.
    let (rest_mock, stop_rest) = start_mock(
        "127.0.0.1:0".parse().expect("addr"),
        &second_part,
        MockOptions::default(),
    )
    .await;
    let second_life = TestApp::spawn(ServeArgs {
        recover: Some(dir.path().to_path_buf()),
        ..live_args(rest_mock)
    })
    .await;
    let feed = wait_for_feed(&second_life, |f| {
        f["rows_read"] == second_part.len()
            && f["trades"].as_u64().unwrap_or(0) + f["duplicates"].as_u64().unwrap_or(0)
                >= trades.len() as u64
    })
    .await;
    // The recovered half is applied under the feed that recorded it; the resent overlap is
    // dropped as duplicates: nothing is counted twice.
    assert_eq!(feed["trades"], trades.len(), "{feed}");
    assert_eq!(feed["duplicates"], OVERLAP, "{feed}");
    assert_eq!(feed["late"], 0, "{feed}");

    compare_with_reference(second_life.address, &reference, &trades, last_ms).await;
    second_life.stop().await;
    reference.stop().await;
    stop_whole.cancel();
    stop_rest.cancel();
}

/// Asserts that the service at `address` serves what `reference` (which never stopped) does:
/// the statistics (equal to polars), every 1-minute bar closed by trades, and the RSI, EMA, MACD
/// and Bollinger series.
async fn compare_with_reference(
    address: SocketAddr,
    reference: &TestApp,
    trades: &[Trade],
    last_ms: i64,
) {
    let frame = trades_frame(trades);
    for symbol in ["AIG", "IBM"] {
        let (_, stats) = get_json(address, &format!("/v1/symbols/{symbol}/stats")).await;
        assert_stats_body_matches(&stats, &frame, &format!("recovered {symbol}"));
        let (_, reference_stats) = reference.get(&format!("/v1/symbols/{symbol}/stats")).await;
        assert_eq!(
            stats["trade_count"], reference_stats["trade_count"],
            "{symbol}"
        );
        let recovered_bars = closed_bars(address, symbol, last_ms).await;
        let reference_bars = closed_bars(reference.address, symbol, last_ms).await;
        assert!(
            recovered_bars.len() > 100,
            "{symbol}: {}",
            recovered_bars.len()
        );
        assert_eq!(recovered_bars, reference_bars, "{symbol}: 1m candles");
        for query in [
            "rsi?interval=1m&period=14",
            "ema?interval=1m&period=20",
            "macd?interval=1m",
            "bbands?interval=1m",
        ] {
            let recovered = indicator_series(address, symbol, query, last_ms).await;
            let expected = indicator_series(reference.address, symbol, query, last_ms).await;
            assert!(recovered.len() > 50, "{symbol} {query}");
            assert_eq!(recovered, expected, "{symbol} {query}");
        }
    }
}

/// One life of the real binary: its process, address and log lines.
struct Life {
    child: std::process::Child,
    address: String,
}

fn start_life(mock: SocketAddr, dir: &std::path::Path) -> Life {
    let dir = dir.display().to_string();
    let feed = format!("binance:AIG,IBM@ws://{mock}");
    let (child, address, _log) = start_binary(&strings(&[
        "--feed",
        &feed,
        "--record",
        &dir,
        "--recover",
        &dir,
        "--listen",
        "127.0.0.1:0",
        "--backoff-max",
        "20ms",
    ]));
    Life { child, address }
}

async fn feeds_of(client: &reqwest::Client, address: &str) -> Option<Value> {
    client
        .get(format!("http://{address}/v1/feeds"))
        .send()
        .await
        .ok()?
        .json::<Value>()
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_twenty_random_points_loses_at_most_the_last_flush_and_recovers_exactly() {
    use std::time::{Duration, Instant};
    let mut trades = load_trades(EQUITIES);
    let mut next_ids: BTreeMap<String, u64> = BTreeMap::new();
    for trade in &mut trades {
        let id = next_ids.entry(trade.symbol.to_string()).or_insert(1);
        trade.trade_id = Some(*id);
        *id += 1;
    }
    let total = trades.len() as u64;
    let last_ms = trades.iter().map(|t| t.exchange_ts).max().expect("trades") / 1_000_000;
    // The reference reads the whole day without stopping.
    let (whole_mock, stop_whole) = start_mock(
        "127.0.0.1:0".parse().expect("addr"),
        &trades,
        MockOptions::default(),
    )
    .await;
    let reference = TestApp::spawn(live_args(whole_mock)).await;
    wait_for_feed(&reference, |f| f["trades"] == total).await;

    // A live venue: one tape, paced, that resends its last 3,000 trades to a new connection.
    const RESEND: usize = 3_000;
    let options = MockOptions {
        speed: tickstream::replay::Speed::Factor(2_000.0),
        max_pause: Some(Duration::from_millis(10)),
        shared_tape: true,
        faults: tickstream::mock_exchange::MockFaults {
            resend_on_connect: RESEND,
            ..Default::default()
        },
        ..MockOptions::default()
    };
    let (mock, stop_mock) =
        start_mock("127.0.0.1:0".parse().expect("addr"), &trades, options).await;
    let dir = tempfile::tempdir().expect("dir");
    let client = reqwest::Client::new();
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut last_applied: Option<u64> = None;
    let mut losses = Vec::new();
    let mut bounds: Vec<u64> = Vec::new();
    for life in 0..=20 {
        let Life { mut child, address } = start_life(mock, dir.path());
        // What the last life applied and what this one recovered from its log.
        let mut recovered = None;
        let mut samples: Vec<(Instant, u64)> = Vec::new();
        let run_for = Duration::from_millis(rng.u64(150..600));
        let mut live_since = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "life {life} never got going");
            if let Some(body) = feeds_of(&client, &address).await {
                let feeds = body["feeds"].as_array().cloned().unwrap_or_default();
                if let Some(recovery) = feeds.iter().find(|f| f["kind"] == "recovery") {
                    recovered = recovery["rows_read"].as_u64();
                    // Each crash can tear at most the one record it cut.
                    assert!(
                        recovery["malformed"].as_u64() <= Some(1),
                        "life {life}: {recovery}"
                    );
                }
                let applied = feeds[0]["trades"].as_u64().unwrap_or(0);
                samples.push((Instant::now(), applied));
                if life == 20 && applied == total {
                    break;
                }
                if feeds[0]["state"] == "live" && live_since.is_none() {
                    live_since = Some(Instant::now());
                }
            }
            if life < 20 && live_since.is_some_and(|since| since.elapsed() >= run_for) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if life > 0 {
            let recovered = recovered.expect("a recovery feed");
            if let Some(applied) = last_applied {
                losses.push((applied as i64 - recovered as i64, life));
            }
        }
        if life == 20 {
            // The survivor: everything once, nothing twice.
            let feed = &feeds_of(&client, &address).await.expect("feeds")["feeds"][0];
            assert_eq!(feed["trades"], total, "{feed}");
            assert_eq!(feed["late"], 0, "{feed}");
            let app_address: SocketAddr = address.parse().expect("address");
            compare_with_reference(app_address, &reference, &trades, last_ms).await;
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            break;
        }
        // SIGKILL right after a sample: what it applied is at most what that sample saw plus
        // the few milliseconds since.
        let &(at, applied) = samples.last().expect("sampled");
        let before_flush = samples
            .iter()
            .rev()
            .find(|(t, _)| at.duration_since(*t) >= Duration::from_millis(400))
            .map_or(0, |&(_, n)| n);
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status();
        let _ = child.wait();
        last_applied = Some(applied);
        // The bound: the trades applied in the last flush interval (100 ms), with 300 ms of
        // scheduling slack for the writer thread on a loaded 2-core machine.
        bounds.push(applied.saturating_sub(before_flush));
    }
    eprintln!("losses per kill (applied − recovered, life): {losses:?}; bounds {bounds:?}");
    for ((lost, life), bound) in losses.iter().zip(&bounds) {
        assert!(
            *lost <= *bound as i64,
            "life {life}: lost {lost} trades, more than the {bound} of the last flush interval"
        );
        assert!(
            (*lost as i128) < RESEND as i128,
            "the venue's resend must cover the loss"
        );
    }
    reference.stop().await;
    stop_whole.cancel();
    stop_mock.cancel();
}
