//! Live-path benches: trade frames parsed per second for every provider, and trades per second from the mock
//! exchange through a real connector into the analytics core over loopback — with the connector
//! driving an engine directly, and through the whole service (`App`: the feed task, its channel,
//! the analytics task with candles, snapshot publication) — beside the limit: a bare
//! tokio-tungstenite client that only receives and counts the same frames.
//!
//! Run with `cargo bench --bench feeds`.

mod fixtures;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_main};
use fixtures::service_until_applied;
use tickstream::analytics::Engine;
use tickstream::config::{DEFAULT_WINDOWS, ServeArgs, parse_windows};
use tickstream::feeds::connector::{ConnectorSettings, FeedSpec, live_stream};
use tickstream::feeds::event::ParseContext;
use tickstream::health::FeedDescription;
use tickstream::health::FeedRegistry;
use tickstream::metrics::Metrics;
use tickstream::mock_exchange::{MockExchange, MockOptions, render_trade_frames};
use tickstream::model::{FeedId, Trade};
use tickstream::replay::{ReplaySource, load_all};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

fn recorded(runtime: &tokio::runtime::Runtime) -> Vec<Trade> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/btcusdt_20240808_trades.csv");
    runtime
        .block_on(load_all(ReplaySource::from_path(path).expect("csv")))
        .expect("readable")
}

fn parse(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let trades = recorded(&runtime);
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(trades.len() as u64));
    for provider in tickstream::feeds::VENUES {
        let frames = render_trade_frames(provider, &trades);
        group.bench_function(provider.name(), |b| {
            let mut ctx = ParseContext::new(FeedId(0));
            let mut out = Vec::with_capacity(4);
            b.iter(|| {
                for frame in &frames {
                    out.clear();
                    provider.parse(frame, &mut ctx, &mut out).expect("parses");
                    black_box(&out);
                }
            })
        });
    }
    // The plain library on the same Binance frames: `serde_json` into a borrowed struct, nothing
    // else (no interning, no decimal parsing, no trade built).
    let frames = render_trade_frames(tickstream::feeds::binance::PROVIDER, &trades);
    group.bench_function("binance_plain_serde_json", |b| {
        b.iter(|| {
            for frame in &frames {
                let parsed: PlainFrame<'_> = serde_json::from_str(frame).expect("parses");
                black_box(&parsed);
            }
        })
    });
    group.finish();
}

/// A Binance trade frame as plain `serde_json` reads it, borrowing its strings.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // read, never used: the bench measures the parse
struct PlainFrame<'a> {
    stream: &'a str,
    #[serde(borrow)]
    data: PlainTrade<'a>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct PlainTrade<'a> {
    e: &'a str,
    #[serde(rename = "E")]
    event_time: i64,
    s: &'a str,
    t: u64,
    p: &'a str,
    q: &'a str,
    #[serde(rename = "T")]
    trade_time: i64,
    m: bool,
    #[serde(rename = "M")]
    best_match: bool,
}

/// A fresh mock exchange serving `trades` at full speed in Binance's format: its URL, and the
/// token that stops it.
async fn start_mock(trades: &[Trade]) -> (String, CancellationToken) {
    let exchange = MockExchange::bind(([127, 0, 0, 1], 0).into(), trades, MockOptions::default())
        .await
        .expect("binds");
    let url = exchange.url().expect("url");
    let cancel = CancellationToken::new();
    tokio::spawn(exchange.run(cancel.clone()));
    (url, cancel)
}

/// One run: a fresh mock exchange at full speed, a connector, an engine; until every trade is in.
async fn mock_to_core(trades: &[Trade]) -> Duration {
    let (url, cancel) = start_mock(trades).await;
    let metrics = Metrics::new();
    let registry = FeedRegistry::new();
    let description = FeedDescription {
        kind: "binance".into(),
        source: url.clone(),
        format: "websocket".into(),
    };
    let status = registry.register("bench".into(), description, &metrics);
    let spec = FeedSpec {
        provider: tickstream::feeds::binance::PROVIDER,
        url,
        symbols: vec!["BTCUSDT".into()],
        channels: vec!["trade".into()],
        credentials: None,
    };
    let windows = Arc::from(parse_windows(&DEFAULT_WINDOWS.map(String::from)).expect("windows"));
    let mut engine = Engine::new(windows, 1_000_000_000);
    let start = Instant::now();
    let mut stream = Box::pin(live_stream(
        spec,
        ConnectorSettings::default(),
        status.id(),
        Arc::clone(&status),
    ));
    let mut applied = 0;
    while applied < trades.len() {
        let Some(batch) = stream.next().await else {
            break;
        };
        for trade in &batch.trades {
            engine.apply(trade);
            applied += 1;
        }
    }
    let elapsed = start.elapsed();
    cancel.cancel();
    elapsed
}

/// The limit: a bare tokio-tungstenite client that subscribes and only counts the frames the
/// same mock exchange sends (no parsing, no core), until every trade frame is in.
async fn mock_to_bare_receiver(trades: &[Trade]) -> Duration {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let (url, cancel) = start_mock(trades).await;
    let start = Instant::now();
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connects");
    let request = r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}"#;
    socket
        .send(Message::text(request))
        .await
        .expect("subscribes");
    let mut frames = 0;
    // The acknowledgement, then one frame per trade.
    while frames < trades.len() + 1 {
        match socket.next().await {
            Some(Ok(Message::Text(_))) => frames += 1,
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    let elapsed = start.elapsed();
    cancel.cancel();
    elapsed
}

/// One run through the whole service: a fresh mock exchange at full speed and an `App` with one
/// live Binance feed on it; until the core has applied every trade (polled from its metrics).
/// With `fsync`, the service records (`--record` into a fresh directory: raw frames and the
/// trade log) with that policy.
async fn mock_to_service(trades: &[Trade], fsync: Option<&str>) -> Duration {
    let (url, cancel) = start_mock(trades).await;
    let directory = fsync.map(|_| tempfile::tempdir().expect("recording directory"));
    let args = ServeArgs {
        feed: vec![format!("binance:BTCUSDT@{url}")],
        record: directory.as_ref().map(|d| d.path().to_path_buf()),
        fsync: fsync.map(str::to_string),
        ..ServeArgs::default()
    };
    let elapsed =
        service_until_applied(args, trades.len() as u64, Duration::from_micros(100)).await;
    cancel.cancel();
    elapsed
}

/// Benches one end-to-end run, timed by the run itself (setup excluded).
fn timed<F, Fut>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    run: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| (0..iterations).map(|_| runtime.block_on(run())).sum())
    });
}

fn end_to_end(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let trades = recorded(&runtime);
    let mut group = c.benchmark_group("live_path");
    group.throughput(Throughput::Elements(trades.len() as u64));
    group.sample_size(20);
    timed(
        &mut group,
        &runtime,
        "mock_binance_to_bare_receiver",
        || mock_to_bare_receiver(&trades),
    );
    timed(&mut group, &runtime, "mock_binance_to_core", || {
        mock_to_core(&trades)
    });
    timed(&mut group, &runtime, "mock_binance_to_service", || {
        mock_to_service(&trades, None)
    });
    // The cost of the trade log: the same, recording, for each fsync policy.
    for policy in ["never", "interval", "every"] {
        timed(
            &mut group,
            &runtime,
            &format!("mock_binance_to_service_recording_fsync_{policy}"),
            || mock_to_service(&trades, Some(policy)),
        );
    }
    group.finish();
}

/// The criterion entry points (generated, so undocumented).
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::parse, super::end_to_end);
}

criterion_main!(harness::benches);
