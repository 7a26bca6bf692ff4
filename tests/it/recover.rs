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

/// Bars closed by trades (not by the clock moving on after the last one), keyed by start.
async fn closed_bars(app: &TestApp, symbol: &str, last_ms: i64) -> BTreeMap<i64, Value> {
    let (status, body) = app
        .get(&format!(
            "/v1/symbols/{symbol}/candles?interval=1m&limit=100001"
        ))
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
    app: &TestApp,
    symbol: &str,
    query: &str,
    last_ms: i64,
) -> BTreeMap<i64, Value> {
    let (status, body) = app
        .get(&format!(
            "/v1/symbols/{symbol}/indicators/{query}&series=100000"
        ))
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

    let frame = trades_frame(&trades);
    for symbol in ["AIG", "IBM"] {
        let (_, stats) = second_life
            .get(&format!("/v1/symbols/{symbol}/stats"))
            .await;
        assert_stats_body_matches(&stats, &frame, &format!("recovered {symbol}"));
        let (_, reference_stats) = reference.get(&format!("/v1/symbols/{symbol}/stats")).await;
        assert_eq!(
            stats["trade_count"], reference_stats["trade_count"],
            "{symbol}"
        );
        let recovered_bars = closed_bars(&second_life, symbol, last_ms).await;
        let reference_bars = closed_bars(&reference, symbol, last_ms).await;
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
            let recovered = indicator_series(&second_life, symbol, query, last_ms).await;
            let expected = indicator_series(&reference, symbol, query, last_ms).await;
            assert!(recovered.len() > 50, "{symbol} {query}");
            assert_eq!(recovered, expected, "{symbol} {query}");
        }
    }
    second_life.stop().await;
    reference.stop().await;
    stop_whole.cancel();
    stop_rest.cancel();
}
