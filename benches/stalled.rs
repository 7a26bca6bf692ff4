//! Stalled live-stream clients: what they cost, and that they are let go.
//!
//! The real service (`App`, release build) replays 100 symbols in a loop at 5,000 trades per
//! second; 1,000 raw clients ask for `/v1/stream` (every symbol) and never read a byte. Each is
//! offered up to 400 stats events a second; the service's send buffers fill, its per-client
//! queues fill, and after the stall timeout (5 s here) every client is disconnected.
//!
//! Printed: the process's resident memory before the clients, at its peak while they stall
//! (and what that is per client), and after they are gone; how long each client took to be
//! disconnected after connecting; what the service counted (`stalled` closes, lagged events);
//! and the trades applied meanwhile — the core never waits for a client. The bound per client
//! is stated beside the measure: hyper's write buffer (64 KiB), the client's queue (64 shared
//! pointers), one pending snapshot pointer per watched symbol (100 here); the kernel's send
//! buffer (256 KiB asked, doubled by Linux) is kernel memory, not the process's.
//!
//! Run with `cargo bench --bench stalled`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tickstream::config::ServeArgs;
use tickstream::metrics::Metrics;
use tickstream::{App, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const CLIENTS: usize = 1_000;
const SYMBOLS: u64 = 100;
const STALL: &str = "5s";

/// Resident set size of this process, MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn stalled_closes(metrics: &Metrics) -> u64 {
    let text = metrics.encode().unwrap_or_default();
    text.lines()
        .find_map(|line| {
            line.strip_prefix("tickstream_http_connections_closed_total{reason=\"stalled\"} ")
        })
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn main() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("stalled.csv");
    let mut csv = String::from("ts,symbol,price,size\n");
    for i in 0..100_000u64 {
        csv.push_str(&format!(
            "{},S{:03},{}.5,{}\n",
            1_700_000_000_000 + i,
            i % SYMBOLS,
            10 + i % 7,
            1 + i % 5
        ));
    }
    std::fs::write(&path, csv).expect("write the replay file");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let settings = Settings::load(ServeArgs {
            replay: vec![path],
            speed: Some("5".into()),
            max_pause: Some("10ms".into()),
            replay_loop: true,
            stall_timeout: Some(STALL.into()),
            listen: Some("127.0.0.1:0".into()),
            no_alert_log: true,
            ..ServeArgs::default()
        })
        .expect("settings");
        let app = App::build(settings).await.expect("app");
        let address = app.local_addr().expect("address");
        let metrics: Arc<Metrics> = Arc::clone(&app.state().metrics);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let service = tokio::spawn(app.run_until_stopped(async move { stopped.cancelled().await }));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let first = rss_mib();
        println!(
            "{CLIENTS} stalled stream clients (100 symbols, 5,000 trades/s, stall timeout {STALL}), in two waves"
        );
        println!(
            "  bound per client: hyper's write buffer (64 KiB) + the snapshots its queue (64) and its pending map (one per symbol, {SYMBOLS}) keep alive, ~0.5 KiB each"
        );
        for wave in 1..=2 {
            let closed_before = stalled_closes(&metrics);
            let before = rss_mib();
            let processed_before = metrics.trades_processed.get();
            let started = Instant::now();
            let mut clients = Vec::with_capacity(CLIENTS);
            for _ in 0..CLIENTS {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket.set_recv_buffer_size(4096).expect("receive buffer");
                let mut stream = socket.connect(address).await.expect("connect");
                stream
                    .write_all(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .expect("request");
                clients.push(stream);
            }
            let connected = started.elapsed();
            let closed = || stalled_closes(&metrics) - closed_before;
            let mut peak = rss_mib();
            let mut first_closed = None;
            while closed() < CLIENTS as u64 && started.elapsed() < Duration::from_secs(120) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                peak = peak.max(rss_mib());
                if first_closed.is_none() && closed() > 0 {
                    first_closed = Some(started.elapsed());
                }
            }
            let all_closed = started.elapsed();
            // Every client finds its connection closed once it reads what was sent.
            let mut ended = 0;
            for mut stream in clients {
                let mut sink = vec![0u8; 64 * 1024];
                let end = tokio::time::timeout(Duration::from_secs(10), async {
                    loop {
                        match stream.read(&mut sink).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await;
                if end.is_ok() {
                    ended += 1;
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = rss_mib();
            let processed = metrics.trades_processed.get() - processed_before;
            println!(
                "  wave {wave}: connected in {:.1} s; RSS before {before:.1} MiB (at start {first:.1}), peak {peak:.1} MiB (+{:.1} KiB per client), after {after:.1} MiB",
                connected.as_secs_f64(),
                (peak - before) * 1024.0 / CLIENTS as f64
            );
            println!(
                "    disconnected as stalled: {} of {CLIENTS} (the first {:.1} s after the first connect, the last {:.1} s); {ended} clients then read to the close",
                closed(),
                first_closed.map_or(f64::NAN, |d| d.as_secs_f64()),
                all_closed.as_secs_f64(),
            );
            println!(
                "    meanwhile: {processed} trades applied ({:.0}/s)",
                processed as f64 / started.elapsed().as_secs_f64(),
            );
        }
        println!(
            "  events conflated or dropped for slow clients: {}",
            metrics.stream_lagged.get()
        );
        stop.cancel();
        let _ = service.await;
    });
}
