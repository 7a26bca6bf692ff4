//! Faults, injected: the mock exchange dropping, stalling, refusing and sending garbage, and raw
//! WebSocket peers breaking the protocol on both sides. Every count is checked exactly against
//! what the peer did.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tickstream::config::ServeArgs;
use tickstream::mock_exchange::{MockCounts, MockExchange, MockFaults, MockOptions, MockStats};
use tickstream::model::Trade;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Starts a mock exchange with its counters.
async fn start_counted_mock(
    trades: &[Trade],
    options: MockOptions,
) -> (SocketAddr, Arc<MockStats>, CancellationToken) {
    let exchange = MockExchange::bind("127.0.0.1:0".parse().expect("addr"), trades, options)
        .await
        .expect("binds");
    let address = exchange.local_addr().expect("bound");
    let stats = exchange.stats();
    let cancel = CancellationToken::new();
    tokio::spawn(exchange.run(cancel.clone()));
    (address, stats, cancel)
}

/// Waits until the exchange has sent its whole tape and the service has read every frame it
/// sent (a safety limit, not a timing check).
async fn wait_until_read_everything(app: &TestApp, stats: &MockStats, tape: u64) -> MockCounts {
    for _ in 0..3000 {
        let counts = stats.snapshot();
        let (_, body) = app.get("/v1/feeds").await;
        let feed = &body["feeds"][0];
        if counts.furthest == tape
            && feed["rows_read"].as_u64() == Some(counts.trades_sent)
            && feed["trades"].as_u64().unwrap_or(0)
                + feed["duplicates"].as_u64().unwrap_or(0)
                + feed["late"].as_u64().unwrap_or(0)
                == counts.trades_sent
        {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, body) = app.get("/v1/feeds").await;
    panic!("never read the whole tape: {:?} {body}", stats.snapshot());
}

fn binance_feed(address: SocketAddr) -> String {
    format!("binance:BTCUSDT@ws://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_forced_disconnects_lose_no_trade_and_count_none_twice() {
    // The tape: 6,060 recorded BTCUSDT trades. Each connection is dropped (no closing
    // handshake) after 80 trade frames, and a new one is first sent the tape's last 20 trades
    // again: 60 new trades per connection, so exactly 100 drops before the tape ends.
    let trades: Vec<Trade> = load_trades(BTCUSDT).into_iter().take(6_060).collect();
    let options = MockOptions {
        shared_tape: true,
        faults: MockFaults {
            drop_every: Some(80),
            resend_on_connect: 20,
            ..MockFaults::default()
        },
        ..MockOptions::default()
    };
    let (mock, stats, stop_mock) = start_counted_mock(&trades, options).await;
    let app = TestApp::spawn(ServeArgs {
        feed: vec![binance_feed(mock)],
        backoff_max: Some("5ms".into()),
        circuit_failures: Some(0),
        ..ServeArgs::default()
    })
    .await;
    let counts = wait_until_read_everything(&app, &stats, trades.len() as u64).await;
    assert_eq!(counts.dropped, 100, "{counts:?}");
    assert_eq!(counts.connections, 101, "{counts:?}");
    assert_eq!(counts.trades_sent, 6_060 + 100 * 20, "{counts:?}");

    let feed = wait_for_feed(&app, |f| f["state"] == "live").await;
    assert_eq!(feed["reconnects"], 100, "{feed}");
    assert_eq!(feed["disconnects"]["reset"], 100, "{feed}");
    assert_eq!(feed["disconnects"].as_object().map(|d| d.len()), Some(1));
    // Every distinct trade the exchange sent is applied once; every resent one is a duplicate.
    assert_eq!(feed["trades"], 6_060, "{feed}");
    assert_eq!(feed["duplicates"], 100 * 20, "{feed}");
    assert_eq!(feed["rows_read"], counts.trades_sent, "{feed}");
    assert_eq!(feed["late"], 0, "{feed}");
    assert_eq!(feed["gaps"], 0, "{feed}");
    assert_eq!(feed["malformed"], 0, "{feed}");
    let (_, stats_body) = app.get("/v1/symbols/BTCUSDT/stats").await;
    assert_eq!(stats_body["trade_count"], 6_060);
    assert_stats_body_matches(&stats_body, &trades_frame(&trades), "after 100 drops");
    let metrics = app.metrics().await;
    let resets: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("tickstream_feed_disconnects_total{"))
        .filter(|line| line.contains("reason=\"reset\""))
        .collect();
    assert_eq!(resets.len(), 1, "{metrics}");
    assert!(resets[0].ends_with(" 100"), "{resets:?}");
    app.stop().await;
    stop_mock.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_stalls_and_garbage_are_survived_and_counted_exactly() {
    // Refused for 600 ms (the circuit opens after 3 failures), then 3,000 trades with a garbage
    // frame after every 50 and a 2 s stall (no keepalives either) after every 1,000: the feed is
    // found stale after 500 ms and reopened, resuming the tape where it stood.
    let trades: Vec<Trade> = load_trades(BTCUSDT).into_iter().take(3_000).collect();
    let options = MockOptions {
        shared_tape: true,
        keepalive_every: Some(Duration::from_millis(50)),
        faults: MockFaults {
            refuse_for: Some(Duration::from_millis(600)),
            garbage_every: Some(50),
            stall: Some((1_000, Duration::from_secs(2))),
            ..MockFaults::default()
        },
        ..MockOptions::default()
    };
    let (mock, stats, stop_mock) = start_counted_mock(&trades, options).await;
    let app = TestApp::spawn(ServeArgs {
        feed: vec![binance_feed(mock)],
        backoff_max: Some("50ms".into()),
        circuit_failures: Some(3),
        circuit_open_for: Some("200ms".into()),
        stale_after: Some("500ms".into()),
        ..ServeArgs::default()
    })
    .await;
    let counts = wait_until_read_everything(&app, &stats, 3_000).await;
    let feed = wait_for_feed(&app, |f| {
        f["malformed"].as_u64() == Some(counts.garbage_sent)
    })
    .await;
    assert!(counts.refused >= 3, "{counts:?}");
    assert_eq!(
        feed["disconnects"]["connect_failed"], counts.refused,
        "every refused connection is one failed attempt: {feed}"
    );
    assert!(feed["circuit_opens"].as_u64() >= Some(1), "{feed}");
    assert_eq!(counts.stalls, 3, "{counts:?}");
    assert!(feed["disconnects"]["stale"].as_u64() >= Some(2), "{feed}");
    assert_eq!(counts.garbage_sent, 3_000 / 50, "{counts:?}");
    assert_eq!(feed["malformed"], 60, "{feed}");
    assert_eq!(feed["trades"], 3_000, "{feed}");
    assert_eq!(feed["duplicates"], 0, "{feed}");
    assert_eq!(feed["gaps"], 0, "{feed}");
    let (_, stats_body) = app.get("/v1/symbols/BTCUSDT/stats").await;
    assert_stats_body_matches(&stats_body, &trades_frame(&trades), "after faults");
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
    app.stop().await;
    stop_mock.cancel();
}

/// A WebSocket frame from a server (unmasked): `first` is FIN + opcode.
fn server_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first];
    match payload.len() {
        len @ 0..=125 => frame.push(len as u8),
        len @ 126..=65_535 => {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

const TEXT_FINAL: u8 = 0x81;
const TEXT_FRAGMENT: u8 = 0x01;
const CLOSE: u8 = 0x88;

/// A Binance-speaking peer that misbehaves on its first four connections, in turn: a text frame
/// that is not UTF-8, a message cut off by the TCP connection closing, a message cut off by a
/// close frame, and a frame header announcing 2 MiB; the fifth connection behaves and sends one
/// real trade.
async fn hostile_peer() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut connection = 0;
        while let Ok((stream, _)) = listener.accept().await {
            connection += 1;
            let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                continue;
            };
            let Some(Ok(Message::Text(_subscribe))) = socket.next().await else {
                continue;
            };
            let ack = server_frame(TEXT_FINAL, br#"{"result":null,"id":1}"#);
            let attack: Vec<u8> = match connection {
                1 => server_frame(TEXT_FINAL, b"{\"stream\":\"\xff\xfe\"}"),
                2 | 3 => server_frame(TEXT_FRAGMENT, br#"{"stream":"btcusdt@trade","da"#),
                4 => {
                    let mut header = vec![TEXT_FINAL, 127];
                    header.extend_from_slice(&(2u64 << 20).to_be_bytes());
                    header.extend_from_slice(&[b'x'; 1024]);
                    header
                }
                _ => server_frame(
                    TEXT_FINAL,
                    br#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#,
                ),
            };
            let tcp = socket.get_mut();
            let _ = tcp.write_all(&ack).await;
            let _ = tcp.write_all(&attack).await;
            if connection == 3 {
                let _ = tcp
                    .write_all(&server_frame(CLOSE, &1000u16.to_be_bytes()))
                    .await;
            }
            if connection == 2 {
                let _ = tcp.shutdown().await;
            }
            let _ = tcp.flush().await;
            // Keep the connection until the client leaves.
            tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_breaking_the_websocket_protocol_is_counted_per_violation_and_retried() {
    let peer = hostile_peer().await;
    let app = TestApp::spawn(ServeArgs {
        feed: vec![binance_feed(peer)],
        backoff_max: Some("10ms".into()),
        ..ServeArgs::default()
    })
    .await;
    let feed = wait_for_feed(&app, |f| f["trades"] == 1).await;
    assert_eq!(feed["state"], "live", "{feed}");
    assert_eq!(feed["reconnects"], 4, "{feed}");
    let disconnects = &feed["disconnects"];
    assert_eq!(disconnects["invalid_utf8"], 1, "{feed}");
    assert_eq!(
        disconnects["reset"], 1,
        "a message cut by the TCP close: {feed}"
    );
    assert_eq!(
        disconnects["closed"], 1,
        "a message cut by a close frame: {feed}"
    );
    assert_eq!(disconnects["too_large"], 1, "{feed}");
    assert_eq!(feed["malformed"], 0, "{feed}");
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// A client frame (masked, with a zero key so the payload goes as is).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = server_frame(first, payload);
    frame[1] |= 0x80;
    let header = if payload.len() <= 125 {
        2
    } else if payload.len() <= 65_535 {
        4
    } else {
        10
    };
    frame.splice(header..header, [0u8; 4]);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_exchange_refuses_and_counts_clients_that_break_the_protocol() {
    let trades: Vec<Trade> = load_trades(BTCUSDT).into_iter().take(100).collect();
    let (mock, stats, stop_mock) = start_counted_mock(&trades, MockOptions::default()).await;
    let attacks: [Vec<u8>; 3] = [
        // 100 KiB in one frame, past the 64 KiB client limit.
        client_frame(TEXT_FINAL, &vec![b'x'; 100 << 10]),
        client_frame(TEXT_FINAL, b"{\"method\":\"\xc3\x28\"}"),
        client_frame(TEXT_FRAGMENT, br#"{"method":"SUBSC"#),
    ];
    for (index, attack) in attacks.iter().enumerate() {
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{mock}/stream"))
            .await
            .expect("connects");
        let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = socket.get_mut() else {
            panic!("plain TCP on loopback");
        };
        tcp.write_all(attack).await.expect("writes");
        if index == 2 {
            // The message is never finished: the TCP connection closes mid-message.
            tcp.shutdown().await.expect("shuts down");
        }
        // The exchange ends the connection: the stream ends or errs, it does not hang.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(_)) = socket.next().await {}
        })
        .await;
        assert!(
            ended.is_ok(),
            "attack {index}: the connection was not ended"
        );
    }
    for _ in 0..500 {
        if stats.snapshot().client_errors == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.snapshot().client_errors, 3, "{:?}", stats.snapshot());
    // And it still serves a well-behaved client in full.
    let app = TestApp::spawn(ServeArgs {
        feed: vec![binance_feed(mock)],
        ..ServeArgs::default()
    })
    .await;
    let feed = wait_for_feed(&app, |f| f["trades"] == 100).await;
    assert_eq!(feed["state"], "live", "{feed}");
    app.stop().await;
    stop_mock.cancel();
}

/// This process's resident memory, MiB (Linux).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1024.0)
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_stream_clients_are_disconnected_and_the_core_goes_on() {
    use crate::alerts::metric_value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // 100 symbols trading in turn, one trade a millisecond, replayed in a loop at 5× (5,000
    // trades a second): with a throttle of 1 s per symbol each client is offered up to 100
    // stats events a second, and reads none. The stall timeout is 3 s.
    let dir = tempfile::tempdir().expect("dir");
    let path = symbols_in_turn_csv(dir.path(), 20_000, 100);
    let app = TestApp::spawn(ServeArgs {
        replay: vec![path],
        speed: Some("5".into()),
        max_pause: Some("10ms".into()),
        replay_loop: true,
        stream_throttle: Some("1s".into()),
        stall_timeout: Some("3s".into()),
        ..ServeArgs::default()
    })
    .await;
    let before = rss_mib();
    let started = std::time::Instant::now();
    const CLIENTS: usize = 1_000;
    // Raw clients that ask for the stream and never read a byte (small receive buffers, so
    // their sockets fill soon).
    let mut stalled = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("receive buffer");
        let mut client = socket.connect(app.address).await.expect("connect");
        client
            .write_all(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        stalled.push(client);
    }
    let mut text = app.metrics().await;
    let processed = metric_value(&text, "tickstream_trades_processed_total ");
    // Until every client has been disconnected as stalled (a safety limit only).
    let mut peak = rss_mib();
    let mut most_clients = 0.0f64;
    let closed = |text: &str| {
        metric_value(
            text,
            "tickstream_http_connections_closed_total{reason=\"stalled\"} ",
        )
    };
    for round in 0..3000 {
        text = app.metrics().await;
        peak = peak.max(rss_mib());
        most_clients = most_clients.max(metric_value(&text, "tickstream_stream_clients "));
        if round % 250 == 0 {
            eprintln!(
                "{:?}: clients {} stalled and closed {} lagged {}",
                started.elapsed(),
                metric_value(&text, "tickstream_stream_clients "),
                closed(&text),
                metric_value(&text, "tickstream_stream_lagged_total "),
            );
        }
        if closed(&text) >= CLIENTS as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(closed(&text), CLIENTS as f64, "every stalled client closed");
    assert!(most_clients > 0.0, "they were stream clients");
    // Their streams ended (the forwarding tasks are gone) and their sockets are closed.
    for _ in 0..500 {
        text = app.metrics().await;
        if metric_value(&text, "tickstream_stream_clients ") == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric_value(&text, "tickstream_stream_clients "), 0.0);
    for client in &mut stalled {
        let mut sink = Vec::new();
        let end = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut sink))
            .await
            .expect("the server closed the connection");
        // A reset (unread data at close) is as good as an EOF.
        drop(end);
    }
    // Meanwhile the core went on.
    let now_processed = metric_value(&text, "tickstream_trades_processed_total ");
    assert!(
        now_processed > processed + 20_000.0,
        "the core went on: {processed} → {now_processed}"
    );
    assert!(
        metric_value(&text, "tickstream_stream_lagged_total ") > 0.0,
        "what they could not take was counted"
    );
    let after = rss_mib();
    // Each stalled client holds at most its queue of 64 shared events, one pending snapshot per
    // symbol and hyper's write buffer (64 KiB) until it is disconnected.
    eprintln!(
        "{CLIENTS} stalled clients: RSS {before:.0} → peak {peak:.0} → after {after:.0} MiB, {:?}",
        started.elapsed()
    );
    let growth = peak - before;
    assert!(
        growth < 1024.0,
        "memory grew by {growth:.0} MiB with {CLIENTS} stalled clients"
    );
    drop(stalled);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_stall_never_turns_the_venues_next_trades_late() {
    // A venue paced in real time (recorded BTCUSDT trades, 2 ms apart) goes silent for 3 s after
    // 300 frames (no disconnect, inside the stale limit). Meanwhile the quiet-market clock moves
    // readers on with the wall; the venue's next trades are still its freshest data, and every
    // one must be applied.
    let base = load_trades(BTCUSDT)[0].exchange_ts;
    let trades: Vec<Trade> = load_trades(BTCUSDT)
        .into_iter()
        .take(600)
        .enumerate()
        .map(|(i, trade)| Trade {
            exchange_ts: base + i as i64 * 2_000_000,
            ..trade
        })
        .collect();
    let options = MockOptions {
        speed: tickstream::replay::Speed::Factor(1.0),
        faults: MockFaults {
            stall: Some((300, Duration::from_secs(3))),
            ..MockFaults::default()
        },
        ..MockOptions::default()
    };
    let (mock, stats, stop_mock) = start_counted_mock(&trades, options).await;
    let app = TestApp::spawn(ServeArgs {
        feed: vec![binance_feed(mock)],
        stale_after: Some("10s".into()),
        ..ServeArgs::default()
    })
    .await;
    let counts = wait_until_read_everything(&app, &stats, 600).await;
    let feed = wait_for_feed(&app, |f| {
        f["trades"].as_u64().unwrap_or(0) + f["late"].as_u64().unwrap_or(0) == 600
    })
    .await;
    assert!(counts.stalls >= 1, "{counts:?}");
    assert_eq!(feed["late"], 0, "{feed}");
    assert_eq!(feed["trades"], 600, "{feed}");
    assert_eq!(feed["reconnects"], 0, "{feed}");
    let (_, body) = app.get("/v1/symbols/BTCUSDT/stats?window=1h").await;
    assert_eq!(body["trade_count"], 600, "{body}");
    assert_eq!(body["windows"]["1h"]["count"], 600, "{body}");
    app.stop().await;
    stop_mock.cancel();
}
