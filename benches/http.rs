//! The HTTP API under ingest load, and freshness.
//!
//! One process runs the real service (`App`) with one Binance feed from the mock exchange, paced
//! at 100,000 trades per second (20 symbols), and — the limit — a bare axum server on its own
//! port whose one handler returns a static body of the same bytes as a stats answer, on the same
//! runtime, under the same ingest. `wrk` (one thread, 32 connections, 10 s each) loads in turn:
//! `GET /v1/symbols/{symbol}/stats`, a cached indicator (`RSI(14)` over 1-minute candles), and the
//! bare handler. Each row shows the trades per second the service applied meanwhile.
//!
//! Freshness — the time from a frame's arrival at the connector to its trade's statistics being
//! visible to readers (published) — is the service's own histogram
//! (`tickstream_freshness_seconds`, one observation per live trade), sampled over a 10 s window
//! of ingest alone and over each load run; p50 and p99 are interpolated within its buckets.
//!
//! History queries: the service also holds a generated day of 2,000,000 trades (24 hourly
//! Parquet files, `--history`); two clients ask for one busy symbol's 1-minute bars over the
//! whole day back to back (each query reads the day's files on the history pool's blocking
//! threads) while the service ingests, and freshness is sampled as for the rows above.
//!
//! Run with `cargo bench --bench http` (needs `wrk`: `apt-get install wrk`).

mod fixtures;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use fixtures::generated_every;
use tickstream::config::ServeArgs;
use tickstream::metrics::Metrics;
use tickstream::mock_exchange::{MockExchange, MockOptions};
use tickstream::replay::Speed;
use tickstream::{App, Settings};
use tokio_util::sync::CancellationToken;

/// Symbols in the generated stream.
const SYMBOLS: usize = 20;
/// Trades in one pass of the mock exchange (it loops).
const TRADES: usize = 1_000_000;
/// Event time between two trades: a pass spans 10,000 s (2.8 h) of event time.
const SPACING_NS: i64 = 10_000_000;
/// 1,000 × real time: 100,000 trades per second.
const SPEED: f64 = 1000.0;
/// Each `wrk` run.
const LOAD_SECONDS: u64 = 10;
/// wrk connections.
const CONNECTIONS: u32 = 32;

/// What one `wrk` run reported.
struct Load {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    ingest_per_second: f64,
    freshness: Freshness,
}

/// Freshness over a sampling window.
struct Freshness {
    count: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Cumulative bucket counts of the freshness histogram, from the service's own exposition.
fn freshness_buckets(metrics: &Metrics) -> Vec<(f64, f64)> {
    let text = metrics.encode().expect("metrics encode");
    text.lines()
        .filter_map(|line| line.strip_prefix("tickstream_freshness_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile, interpolated linearly within its bucket, in milliseconds.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |&(_, count)| count);
    let target = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= target {
            if !bound.is_finite() {
                return f64::INFINITY;
            }
            let share = if count > lower.1 {
                (target - lower.1) / (count - lower.1)
            } else {
                1.0
            };
            return (lower.0 + share * (bound - lower.0)) * 1e3;
        }
        lower = (bound, count);
    }
    f64::NAN
}

/// Samples freshness and the ingest rate while `during` runs.
fn sample<T>(metrics: &Metrics, during: impl FnOnce() -> T) -> (T, Freshness, f64) {
    let before = freshness_buckets(metrics);
    let processed = metrics.trades_processed.get();
    metrics.freshness_recent.reset();
    metrics.freshness_max.set(0.0);
    let start = Instant::now();
    let value = during();
    let elapsed = start.elapsed().as_secs_f64();
    let ingest = (metrics.trades_processed.get() - processed) as f64 / elapsed;
    let after = freshness_buckets(metrics);
    let window: Vec<(f64, f64)> = after
        .iter()
        .zip(&before)
        .map(|(&(bound, a), &(_, b))| (bound, a - b))
        .collect();
    let freshness = Freshness {
        count: window.last().map_or(0.0, |&(_, c)| c),
        p50_ms: quantile(&window, 0.5),
        p99_ms: quantile(&window, 0.99),
        max_ms: metrics.freshness_max.get() * 1e3,
    };
    (value, freshness, ingest)
}

/// Two clients asking `url` back to back for `seconds`: the queries answered and their mean
/// time, ms.
async fn history_queries(url: &str, seconds: u64) -> (usize, f64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (client, url) = (client.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let response = client.get(&url).send().await.expect("history query");
                assert!(response.status().is_success(), "{}", response.status());
                let _ = response.bytes().await.expect("body");
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            times
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.expect("client"));
    }
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    (times.len(), mean)
}

/// Runs `wrk` against `url`; requests/s and latency percentiles from its report.
fn wrk(url: &str) -> (f64, f64, f64) {
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{LOAD_SECONDS}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let report = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| -> f64 {
        report
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map_or(f64::NAN, |rest| parse_wrk_value(rest.trim()))
    };
    let non_2xx = field("Non-2xx or 3xx responses:");
    assert!(non_2xx.is_nan(), "{url}: errors in\n{report}");
    (field("Requests/sec:"), field("50%"), field("99%"))
}

/// `123.45`, `1.23ms`, `456.00us`, `1.01s` → the number (milliseconds for durations).
fn parse_wrk_value(text: &str) -> f64 {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1e3)
    } else {
        (text, 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .map_or(f64::NAN, |n| n * factor)
}

fn load(metrics: &Metrics, url: &str) -> Load {
    let ((requests_per_second, p50_ms, p99_ms), freshness, ingest_per_second) =
        sample(metrics, || wrk(url));
    Load {
        requests_per_second,
        p50_ms,
        p99_ms,
        ingest_per_second,
        freshness,
    }
}

/// The limit: one handler returning `body` as JSON, with TCP_NODELAY like the service.
async fn bare_server(body: Bytes, cancel: CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let router = axum::Router::new().route(
        "/bare",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    );
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
    });
    address
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("this bench needs wrk: apt-get install wrk");
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let trades = generated_every(SYMBOLS, TRADES, SPACING_NS);
    let symbols: Vec<String> = (0..SYMBOLS).map(|i| format!("S{i:05}")).collect();
    let cancel = CancellationToken::new();
    let history_dir = tempfile::tempdir().expect("dir");
    let busy = fixtures::history::write_day(history_dir.path(), 2_000_000, 20, 200_000);
    println!("history: 2,000,000 trades in 24 hourly Parquet files, SPY {busy}");
    let (service_address, metrics) = runtime.block_on(async {
        let exchange = MockExchange::bind(
            ([127, 0, 0, 1], 0).into(),
            &trades,
            MockOptions {
                speed: Speed::Factor(SPEED),
                repeat: true,
                // Each pass starts a day later in event time: no day-long pause between them.
                max_pause: Some(Duration::from_millis(1)),
                ..MockOptions::default()
            },
        )
        .await
        .expect("mock exchange");
        let url = exchange.url().expect("url");
        tokio::spawn(exchange.run(cancel.clone()));
        let settings = Settings::load(ServeArgs {
            feed: vec![format!("binance:{}@{url}", symbols.join(","))],
            history: vec![history_dir.path().to_path_buf()],
            listen: Some("127.0.0.1:0".into()),
            no_alert_log: true,
            ..ServeArgs::default()
        })
        .expect("settings");
        let app = App::build(settings).await.expect("app");
        let address = app.local_addr().expect("address");
        let metrics: Arc<Metrics> = Arc::clone(&app.state().metrics);
        let stop = cancel.clone();
        tokio::spawn(app.run_until_stopped(async move { stop.cancelled().await }));
        (address, metrics)
    });
    drop(trades);
    // Let the windows fill and 15 one-minute candles close (RSI(14) has a value).
    std::thread::sleep(Duration::from_secs(3));
    let base = format!("http://{service_address}/v1/symbols/S00000");
    let stats_url = format!("{base}/stats");
    let indicator_url = format!("{base}/indicators/rsi?interval=1m");
    let body = runtime.block_on(async {
        let client = reqwest::Client::new();
        let indicator = client
            .get(&indicator_url)
            .send()
            .await
            .expect("indicator")
            .text()
            .await
            .expect("indicator body");
        println!("indicator answer: {indicator}");
        client
            .get(&stats_url)
            .send()
            .await
            .expect("stats")
            .bytes()
            .await
            .expect("stats body")
    });
    println!("stats answer: {} bytes", body.len());
    let bare_address = runtime.block_on(bare_server(body, cancel.clone()));
    let bare_url = format!("http://{bare_address}/bare");

    let ((), idle, idle_ingest) = sample(&metrics, || {
        std::thread::sleep(Duration::from_secs(LOAD_SECONDS))
    });
    let history_url = format!(
        "http://{service_address}/v1/symbols/SPY/history/candles?from={}&to={}&interval=1m&limit=10000",
        fixtures::history::DAY_START / 1_000_000,
        (fixtures::history::DAY_START + 24 * fixtures::history::HOUR) / 1_000_000
    );
    let history_load = {
        let ((queries, mean_ms), freshness, ingest) = sample(&metrics, || {
            runtime.block_on(history_queries(&history_url, LOAD_SECONDS))
        });
        Load {
            requests_per_second: queries as f64 / LOAD_SECONDS as f64,
            p50_ms: mean_ms,
            p99_ms: f64::NAN,
            ingest_per_second: ingest,
            freshness,
        }
    };
    let rows = [
        (
            "GET …/SPY/history/candles (a day of 1-minute bars; 2 clients back to back; p50 column: mean)",
            history_load,
        ),
        ("GET /v1/symbols/S00000/stats", load(&metrics, &stats_url)),
        (
            "GET /v1/symbols/S00000/indicators/rsi?interval=1m (cached)",
            load(&metrics, &indicator_url),
        ),
        (
            "limit: bare axum handler, same body",
            load(&metrics, &bare_url),
        ),
    ];
    cancel.cancel();
    runtime.shutdown_timeout(Duration::from_secs(5));

    println!();
    println!(
        "wrk -t1 -c{CONNECTIONS} -d{LOAD_SECONDS}s, while the service ingests from the mock exchange"
    );
    println!(
        "| request | requests/s | p50 | p99 | ingest (trades/s) | freshness p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let show = |f: &Freshness| {
        format!(
            "{:.3} ms | {:.3} ms | {:.2} ms",
            f.p50_ms, f.p99_ms, f.max_ms
        )
    };
    for (name, load) in &rows {
        println!(
            "| {name} | {:.0} | {:.3} ms | {} | {:.0} | {} |",
            load.requests_per_second,
            load.p50_ms,
            if load.p99_ms.is_nan() {
                "—".to_string()
            } else {
                format!("{:.3} ms", load.p99_ms)
            },
            load.ingest_per_second,
            show(&load.freshness)
        );
    }
    println!(
        "| (no HTTP load) | | | | {idle_ingest:.0} | {} |",
        show(&idle)
    );
    let limit = rows[3].1.requests_per_second;
    for (name, load) in &rows[1..3] {
        println!(
            "{name}: {:.0} % of the bare handler's requests/s",
            100.0 * load.requests_per_second / limit
        );
    }
    println!(
        "freshness observations: {:.0} (no load), {:.0} / {:.0} / {:.0} / {:.0} (under each load)",
        idle.count,
        rows[0].1.freshness.count,
        rows[1].1.freshness.count,
        rows[2].1.freshness.count,
        rows[3].1.freshness.count
    );
}
