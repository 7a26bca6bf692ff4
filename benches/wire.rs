//! The live path against the wire: trades per second from a loopback WebSocket sender that is not
//! the bottleneck (every frame encoded before the clock starts, written as fast as the socket
//! takes it: `fixtures::wire`) through the whole service (`App` with live feeds on it, until the
//! core has applied every trade), beside the limit measured in the same run: a bare
//! tokio-tungstenite client that only counts the same frames, on the same runtime.
//!
//! Scenarios: Binance combined-stream trade frames, one trade per frame, 100 symbols, on one, two
//! and four connections at once; Finnhub-style batched frames (20 trades per frame); and one
//! Binance connection with recording on, for each fsync policy. Each scenario alternates limit
//! and service `RUNS` times and prints the medians and their ratio.
//!
//! Run with `cargo bench --bench wire` (about 1.5 GB of pre-encoded frames in memory).

mod fixtures;

use std::time::{Duration, Instant};

use fixtures::generated_every;
use fixtures::service_until_applied;
use fixtures::wire::{Encoded, encode, serve};
use futures_util::{SinkExt, StreamExt};
use tickstream::config::ServeArgs;
use tickstream::model::Trade;
use tokio_tungstenite::tungstenite::Message;

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

fn finnhub_frame(trades: &[Trade]) -> String {
    let data: Vec<String> = trades
        .iter()
        .map(|t| {
            format!(
                r#"{{"c":null,"p":{},"s":"{}","t":{},"v":{}}}"#,
                t.price,
                t.symbol.as_str(),
                t.exchange_ts / 1_000_000,
                t.size
            )
        })
        .collect();
    format!(r#"{{"data":[{}],"type":"trade"}}"#, data.join(","))
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

fn finnhub(trades: &[Trade]) -> Vec<Connection> {
    let frames: Vec<String> = trades
        .chunks(PER_BATCHED_FRAME)
        .map(finnhub_frame)
        .collect();
    let symbols: Vec<String> = (0..SYMBOLS).map(|i| format!("S{i:05}")).collect();
    vec![Connection {
        encoded: encode(&frames),
        frames: frames.len(),
        feed: format!("finnhub:{}", symbols.join(",")),
    }]
}

/// The limit: one bare tokio-tungstenite client per connection, each sending the feed's first
/// request (ignored by the sender) and counting text frames until all of its are in.
async fn bare(scenario: &Scenario) -> Duration {
    let address = serve(
        scenario
            .connections
            .iter()
            .map(|c| c.encoded.clone())
            .collect(),
    );
    let start = Instant::now();
    let clients: Vec<_> = scenario
        .connections
        .iter()
        .map(|connection| {
            let expected = connection.frames;
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
                let mut frames = 0;
                while frames < expected {
                    match socket.next().await {
                        Some(Ok(Message::Text(_))) => frames += 1,
                        Some(Ok(_)) => {}
                        _ => panic!("the sender closed after {frames} of {expected} frames"),
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
    let address = serve(
        scenario
            .connections
            .iter()
            .map(|c| c.encoded.clone())
            .collect(),
    );
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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
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
        name: format!("finnhub, {PER_BATCHED_FRAME} trades/frame, 1 connection"),
        connections: finnhub(&trades),
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
        let mut limit = Vec::new();
        let mut product = Vec::new();
        for _ in 0..RUNS {
            limit.push(TRADES as f64 / runtime.block_on(bare(scenario)).as_secs_f64());
            product.push(TRADES as f64 / runtime.block_on(service(scenario)).as_secs_f64());
        }
        let (limit, product) = (median(limit), median(product));
        println!(
            "| {} | {:.3} M | {:.3} M | {:.2} |",
            scenario.name,
            product / 1e6,
            limit / 1e6,
            product / limit
        );
    }
}
