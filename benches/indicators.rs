//! Indicators: computation per candle, and HTTP request throughput for a cached indicator versus
//! an uncached one (through the real router, in process, no socket).
//!
//! The candles are the last 1000 one-second bars of IBM on 2013-10-07 (`data/`), as the core
//! builds them. Run with `cargo bench --bench indicators`.

mod fixtures;

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, Throughput, criterion_main};
use tickstream::analytics::snapshot::{SnapshotPublisher, SnapshotStore};
use tickstream::analytics::{Candle, DEFAULT_CANDLE_HISTORY, Engine, IntervalSpec};
use tickstream::api::{AppState, router};
use tickstream::config::{CacheSettings, DEFAULT_WINDOWS, parse_intervals, parse_windows};
use tickstream::indicators::Indicator;
use tower::ServiceExt;

use fixtures::recorded;

/// The engine after the whole day, with 1 s candles (1000 kept).
fn engine() -> Engine {
    let windows = parse_windows(&DEFAULT_WINDOWS.map(String::from)).expect("windows");
    let intervals: Arc<[IntervalSpec]> = parse_intervals(&["1s".to_string()]).expect("1s").into();
    let mut engine =
        Engine::new(windows.into(), 1_000_000_000).with_candles(intervals, DEFAULT_CANDLE_HISTORY);
    for trade in recorded("ibm_aig_20131007_trades.csv") {
        engine.apply(&trade);
    }
    engine
}

fn computation(c: &mut Criterion) {
    let engine = engine();
    let snapshot = engine.snapshot("IBM").expect("IBM");
    let candles: Vec<Candle> = snapshot.candles[0].closed(i64::MAX).copied().collect();
    let mut group = c.benchmark_group("indicator_per_candle");
    group.throughput(Throughput::Elements(candles.len() as u64));
    for indicator in Indicator::defaults() {
        group.bench_function(indicator.name(), |b| {
            b.iter(|| black_box(indicator.compute(black_box(&candles))))
        });
    }
    group.finish();
}

/// The API over the engine's final state, with an indicator cache of `capacity` results.
fn app(engine: &Engine, capacity: u64) -> axum::Router {
    let snapshots = Arc::new(SnapshotStore::new());
    let mut publisher = SnapshotPublisher::new(Arc::clone(&snapshots));
    let everything = ["IBM", "AIG"]
        .iter()
        .filter_map(|s| engine.snapshot(s))
        .collect();
    publisher.publish(everything, engine.now());
    let settings = CacheSettings {
        capacity,
        ..CacheSettings::default()
    };
    let intervals = parse_intervals(&["1s".to_string()]).expect("1s").into();
    router(AppState::over_snapshots(
        snapshots,
        Arc::clone(engine.windows()),
        intervals,
        settings,
    ))
}

fn requests(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let engine = engine();
    let mut group = c.benchmark_group("indicator_request");
    group.throughput(Throughput::Elements(1));
    for (name, capacity) in [("cached", 10_000), ("uncached", 0)] {
        let app = app(&engine, capacity);
        for path in [
            "/v1/symbols/IBM/indicators/rsi?interval=1s&period=14",
            "/v1/symbols/IBM/indicators/macd?interval=1s",
            "/v1/symbols/IBM/indicators?interval=1s",
        ] {
            let label = path
                .split('?')
                .next()
                .and_then(|p| p.rsplit('/').next())
                .unwrap_or(path);
            group.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        let request = Request::get(path).body(Body::empty()).expect("request");
                        let response = app.clone().oneshot(request).await.expect("response");
                        assert!(response.status().is_success());
                        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                            .await
                            .expect("body");
                        black_box(body)
                    })
                })
            });
        }
    }
    group.finish();
}

/// The criterion entry points (generated, so undocumented).
#[allow(missing_docs)]
mod harness {
    criterion::criterion_group!(benches, super::computation, super::requests);
}

criterion_main!(harness::benches);
