//! The live path against the wire: trades per second from a loopback WebSocket sender that is not
//! the bottleneck (every frame encoded before the clock starts, written as fast as the socket
//! takes it: `fixtures::wire`) through the whole service (`App` with live feeds on it, until the
//! core has applied every trade), beside the limit measured in the same run: a bare
//! tokio-tungstenite client that only counts the same frames, on the same runtime.
//!
//! Scenarios: Binance combined-stream trade frames, one trade per frame, 100 symbols, on one, two
//! and four connections at once; batched frames (Kraken v2 `trade` updates, 20 trades per frame); and one
//! Binance connection with recording on, for each fsync policy. Each scenario alternates limit
//! and service `RUNS` times and prints the medians and their ratio.
//!
//! Run with `cargo bench --bench wire` (about 1.5 GB of pre-encoded frames in memory).

mod fixtures;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fixtures::generated_every;
use fixtures::wire::{Encoded, encode, serve};
use fixtures::{alternate, scenario_filter, service_until_applied};
use futures_util::{SinkExt, StreamExt};
use tickstream::config::ServeArgs;
use tickstream::model::Trade;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Trades in every scenario.
const TRADES: usize = 2_000_000;
/// Symbols they are spread over.
const SYMBOLS: usize = 100;
/// 20 µs apart: 40 s of event time.
const SPACING_NS: i64 = 20_000;
/// Trades per frame in the batched scenario.
const PER_BATCHED_FRAME: usize = 20;
/// Limit and service runs per scenario (alternating).
const RUNS: usize = 3;

/// What one scenario serves: per connection, its frames and the feed argument that reads them.
struct Scenario {
    name: String,
    connections: Vec<Connection>,
    fsync: Option<&'static str>,
}

struct Connection {
    encoded: Encoded,
    /// Text frames on it, the greeting included.
    frames: usize,
    /// `--feed` without the URL: `provider:SYMBOL,…`.
    feed: String,
}

fn binance_frame(trade: &Trade, id: u64) -> String {
    let symbol = trade.symbol.as_str();
    let ms = trade.exchange_ts / 1_000_000;
    format!(
        r#"{{"stream":"{}@trade","data":{{"e":"trade","E":{},"s":"{}","t":{},"p":"{:.8}","q":"{:.8}","T":{},"m":{},"M":true}}}}"#,
        symbol.to_ascii_lowercase(),
        ms + 1,
        symbol,
        id,
        trade.price,
        trade.size,
        ms,
        id.is_multiple_of(2)
    )
}

fn kraken_frame(trades: &[(u64, &Trade)]) -> String {
    let data: Vec<String> = trades
        .iter()
        .map(|(id, t)| {
            let micros = t.exchange_ts / 1_000;
            let (seconds, micros) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
            let time = chrono_free_rfc3339(seconds, micros);
            format!(
                r#"{{"symbol":"{}","side":"buy","price":{},"qty":{},"ord_type":"market","trade_id":{},"timestamp":"{}"}}"#,
                t.symbol.as_str(),
                t.price,
                t.size,
                id,
                time
            )
        })
        .collect();
    format!(
        r#"{{"channel":"trade","type":"update","data":[{}]}}"#,
        data.join(",")
    )
}

/// `seconds` since the epoch and `micros` as RFC 3339 (UTC, microseconds), by the civil-from-days
/// algorithm (H. Hinnant's `civil_from_days`).
fn chrono_free_rfc3339(seconds: i64, micros: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
}

/// Binance over `connections` connections: symbol `i` on connection `i % connections`, trade ids
/// consecutive per symbol, as Binance numbers them.
fn binance(trades: &[Trade], connections: usize) -> Vec<Connection> {
    let mut per_connection: Vec<Vec<String>> =
        vec![vec![r#"{"result":null,"id":1}"#.to_string()]; connections];
    let mut symbols: Vec<Vec<String>> = vec![Vec::new(); connections];
    let mut ids = std::collections::HashMap::new();
    for trade in trades {
        let index: usize = trade.symbol.as_str()[1..].parse().expect("S00000");
        let id = ids.entry(index).or_insert(1_000u64);
        *id += 1;
        per_connection[index % connections].push(binance_frame(trade, *id));
    }
    for index in 0..SYMBOLS {
        symbols[index % connections].push(format!("S{index:05}"));
    }
    per_connection
        .into_iter()
        .zip(symbols)
        .map(|(frames, symbols)| Connection {
            encoded: encode(&frames),
            frames: frames.len(),
            feed: format!("binance:{}", symbols.join(",")),
        })
        .collect()
}

/// Kraken v2 `trade` updates, `PER_BATCHED_FRAME` trades per frame, one connection.
fn kraken(trades: &[Trade]) -> Vec<Connection> {
    let mut ids = std::collections::HashMap::new();
    let numbered: Vec<(u64, &Trade)> = trades
        .iter()
        .map(|trade| {
            let id = ids.entry(trade.symbol.as_str()).or_insert(1_000u64);
            *id += 1;
            (*id, trade)
        })
        .collect();
    let mut frames = vec![
        r#"{"method":"subscribe","result":{"channel":"trade","symbol":"S00000","snapshot":false},"success":true,"req_id":1}"#
            .to_string(),
    ];
    frames.extend(numbered.chunks(PER_BATCHED_FRAME).map(kraken_frame));
    let symbols: Vec<String> = (0..SYMBOLS).map(|i| format!("S{i:05}")).collect();
    vec![Connection {
        encoded: encode(&frames),
        frames: frames.len(),
        feed: format!("kraken:{}", symbols.join(",")),
    }]
}

/// Starts a sender serving `scenario`'s connections; returns its address.
fn serve_connections(scenario: &Scenario) -> std::net::SocketAddr {
    serve(
        scenario
            .connections
            .iter()
            .map(|c| c.encoded.clone())
            .collect(),
    )
}

/// The limit: one bare tokio-tungstenite client per connection, each sending the feed's first
/// request (ignored by the sender) and counting text frames, until all connections' frames are
/// in (connections are served in the order they are accepted, so the count is shared).
async fn bare(scenario: &Scenario) -> Duration {
    let address = serve_connections(scenario);
    let expected: usize = scenario.connections.iter().map(|c| c.frames).sum();
    let received = Arc::new(AtomicUsize::new(0));
    let done = CancellationToken::new();
    let start = Instant::now();
    let clients: Vec<_> = (0..scenario.connections.len())
        .map(|_| {
            let (received, done) = (Arc::clone(&received), done.clone());
            tokio::spawn(async move {
                let url = format!("ws://{address}/stream");
                let (mut socket, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .expect("connects");
                socket
                    .send(Message::text(
                        r#"{"method":"SUBSCRIBE","params":[],"id":1}"#,
                    ))
                    .await
                    .expect("sends");
                loop {
                    let message = tokio::select! {
                        _ = done.cancelled() => return,
                        message = socket.next() => message,
                    };
                    match message {
                        Some(Ok(Message::Text(_))) => {
                            if received.fetch_add(1, Ordering::Relaxed) + 1 == expected {
                                done.cancel();
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => panic!("a sender closed early"),
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    start.elapsed()
}

/// The whole service with one live feed per connection, until the core has applied every trade.
async fn service(scenario: &Scenario) -> Duration {
    let address = serve_connections(scenario);
    let directory = scenario
        .fsync
        .map(|_| tempfile::tempdir().expect("recording directory"));
    let args = ServeArgs {
        feed: scenario
            .connections
            .iter()
            .map(|c| format!("{}@ws://{address}", c.feed))
            .collect(),
        // Connections run at their own pace: keep every trade inside the lateness so that the
        // run measures throughput, not the late policy (40 s of event time in all).
        lateness: Some("1h".into()),
        record: directory.as_ref().map(|d| d.path().to_path_buf()),
        fsync: scenario.fsync.map(str::to_string),
        ..ServeArgs::default()
    };
    service_until_applied(args, TRADES as u64, Duration::from_micros(100)).await
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let filter = scenario_filter();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let trades = generated_every(SYMBOLS, TRADES, SPACING_NS);
    let mut scenarios = Vec::new();
    for connections in [1, 2, 4] {
        scenarios.push(Scenario {
            name: format!("binance, 1 trade/frame, {connections} connection(s)"),
            connections: binance(&trades, connections),
            fsync: None,
        });
    }
    scenarios.push(Scenario {
        name: format!("kraken, {PER_BATCHED_FRAME} trades/frame, 1 connection"),
        connections: kraken(&trades),
        fsync: None,
    });
    for policy in ["never", "interval", "every"] {
        scenarios.push(Scenario {
            name: format!("binance, 1 connection, recording, fsync {policy}"),
            connections: binance(&trades, 1),
            fsync: Some(policy),
        });
    }
    println!("| scenario | tickstream (trades/s) | limit: bare receiver (trades/s) | ratio |");
    println!("|---|---|---|---|");
    for scenario in &scenarios {
        if filter
            .as_ref()
            .is_some_and(|f| !scenario.name.contains(f.as_str()))
        {
            continue;
        }
        let rate = |elapsed: Duration| TRADES as f64 / elapsed.as_secs_f64();
        let (limit, product) = alternate(
            RUNS,
            || rate(runtime.block_on(bare(scenario))),
            || rate(runtime.block_on(service(scenario))),
        );
        println!(
            "| {} | {:.3} M | {:.3} M | {:.2} |",
            scenario.name,
            product / 1e6,
            limit / 1e6,
            product / limit
        );
    }
}
