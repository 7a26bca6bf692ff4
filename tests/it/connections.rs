//! The HTTP connections themselves, through real sockets: HTTP/2 with prior knowledge beside
//! HTTP/1.1 on one port, compressed JSON (never the event stream), idle and half-open
//! connections closed by the header and keep-alive timeouts, and the bound on open
//! connections refusing the excess with a JSON 503.

use std::io::Read;
use std::time::Duration;

use serde_json::Value;
use tickstream::config::ServeArgs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::alerts::metric_value;
use crate::support::*;

fn equities() -> ServeArgs {
    ServeArgs {
        replay: vec![data_path(EQUITIES)],
        speed: Some("max".into()),
        ..ServeArgs::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_serves_json_and_streams_beside_http1() {
    let app = TestApp::spawn(equities()).await;
    app.wait_for_feeds().await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    for path in [
        "/v1/symbols",
        "/v1/symbols/IBM/stats",
        "/v1/stats?sort=volume",
    ] {
        let response = h2.get(app.url(path)).send().await.expect("h2 request");
        assert_eq!(response.version(), reqwest::Version::HTTP_2, "{path}");
        assert_eq!(response.status(), 200, "{path}");
        let over_h2: Value = response.json().await.expect("json");
        let (status, over_h1) = app.get(path).await;
        assert_eq!(status, 200);
        assert_eq!(over_h2, over_h1, "{path}: the same answer over both");
    }
    // Several live streams and requests share one HTTP/2 connection (a browser's six HTTP/1.1
    // connections per host would be spent on them).
    let mut streams = Vec::new();
    for _ in 0..8 {
        let response = h2
            .get(app.url("/v1/stream?symbols=IBM&last_event_id=1-0"))
            .send()
            .await
            .expect("stream over h2");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        streams.push(response);
    }
    let (status, _) = {
        let response = h2.get(app.url("/healthz")).send().await.expect("health");
        (response.status(), response.bytes().await)
    };
    assert_eq!(status, 200, "a request beside eight open streams");
    for mut response in streams {
        let mut text = String::new();
        while !text.contains("event: stats") {
            let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk())
                .await
                .expect("an event within 30 s")
                .expect("chunk")
                .expect("open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(text.starts_with("id: "), "{text}");
    }
    let metrics = app.metrics().await;
    assert!(
        metric_value(&metrics, "tickstream_http_connections ") >= 1.0,
        "open connections are a gauge"
    );
    app.stop().await;
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gzip");
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .expect("brotli");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_compressed_when_asked_and_the_event_stream_never() {
    let app = TestApp::spawn(equities()).await;
    app.wait_for_feeds().await;
    let plain = app
        .client
        .get(app.url("/v1/stats"))
        .send()
        .await
        .expect("plain");
    assert!(plain.headers().get("content-encoding").is_none());
    let plain_bytes = plain.bytes().await.expect("body");
    let expected: Value = serde_json::from_slice(&plain_bytes).expect("json");
    type Decoder = fn(&[u8]) -> Vec<u8>;
    let decoders: [(&str, Decoder); 2] = [("gzip", gunzip), ("br", unbrotli)];
    for (encoding, decode) in decoders {
        let response = app
            .client
            .get(app.url("/v1/stats"))
            .header("accept-encoding", encoding)
            .send()
            .await
            .expect("compressed");
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        assert_eq!(
            headers
                .get("content-encoding")
                .and_then(|v| v.to_str().ok()),
            Some(encoding)
        );
        assert!(
            headers
                .get("vary")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
            "{headers:?}"
        );
        let bytes = response.bytes().await.expect("body");
        assert!(
            bytes.len() * 2 < plain_bytes.len(),
            "{encoding}: {} of {} bytes",
            bytes.len(),
            plain_bytes.len()
        );
        let body: Value = serde_json::from_slice(&decode(&bytes)).expect("decoded json");
        assert_eq!(body, expected, "{encoding}");
    }
    // The stream asks for compression and gets plain events, readable as they come.
    let mut response = app
        .client
        .get(app.url("/v1/stream?symbols=IBM&last_event_id=1-0"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .expect("stream");
    assert!(
        response.headers().get("content-encoding").is_none(),
        "{:?}",
        response.headers()
    );
    let mut text = String::new();
    while !text.contains("event: stats") {
        let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk())
            .await
            .expect("an event within 30 s")
            .expect("chunk")
            .expect("open");
        text.push_str(std::str::from_utf8(&chunk).expect("plain text"));
    }
    drop(response);
    app.stop().await;
}

/// How many client connections this test may open: the process holds both ends of each.
fn connections_allowed(wanted: usize) -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024);
    let allowed = wanted.min(soft.saturating_sub(300) / 2);
    if allowed < wanted {
        eprintln!("file-descriptor limit {soft}: {allowed} connections rather than {wanted}");
    }
    allowed
}

/// Whether the server has closed `stream` (EOF or reset), reading what it still sends.
async fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_open_connections_are_closed_by_their_timeouts() {
    let per_kind = connections_allowed(3_000) / 3;
    let app = TestApp::spawn(ServeArgs {
        header_timeout: Some("2s".into()),
        keep_alive_timeout: Some("4s".into()),
        ..equities()
    })
    .await;
    app.wait_for_feeds().await;
    let opened = tokio::time::Instant::now();
    let mut silent = Vec::new();
    let mut half_open = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..per_kind {
        silent.push(TcpStream::connect(app.address).await.expect("connect"));
        let mut partial = TcpStream::connect(app.address).await.expect("connect");
        partial
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("half a request head");
        half_open.push(partial);
        idle.push(TcpStream::connect(app.address).await.expect("connect"));
    }
    // One whole request on each keep-alive connection, answered; then nothing.
    for stream in &mut idle {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
    }
    for stream in &mut idle {
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.expect("response");
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    let answered = tokio::time::Instant::now();
    eprintln!(
        "{} connections open in {:?}",
        3 * per_kind,
        opened.elapsed()
    );
    // Before the header timeout nothing is closed.
    if opened.elapsed() < Duration::from_millis(1500) {
        assert!(!closed_by_server(&mut silent[0], Duration::from_millis(200)).await);
        assert!(!closed_by_server(&mut half_open[0], Duration::from_millis(200)).await);
    }
    // Then every silent and half-open one is, and after the keep-alive timeout every idle one.
    let mut text = String::new();
    for _ in 0..1500 {
        text = app.metrics().await;
        let header = metric_value(
            &text,
            "tickstream_http_connections_closed_total{reason=\"header_timeout\"} ",
        );
        let idled = metric_value(
            &text,
            "tickstream_http_connections_closed_total{reason=\"idle\"} ",
        );
        if header >= (2 * per_kind) as f64 && idled >= per_kind as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = |reason: &str| {
        metric_value(
            &text,
            &format!("tickstream_http_connections_closed_total{{reason=\"{reason}\"}} "),
        )
    };
    assert_eq!(closed("header_timeout"), (2 * per_kind) as f64, "{text}");
    assert_eq!(closed("idle"), per_kind as f64);
    assert!(
        answered.elapsed() >= Duration::from_secs(4),
        "idle ones only after the keep-alive timeout"
    );
    for stream in silent.iter_mut().chain(&mut half_open).chain(&mut idle) {
        assert!(closed_by_server(stream, Duration::from_secs(5)).await);
    }
    // Only the metrics client's own connection is still open.
    let text = app.metrics().await;
    assert!(metric_value(&text, "tickstream_http_connections ") <= 1.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_bound_are_refused_with_a_json_503_and_counted() {
    let app = TestApp::spawn(ServeArgs {
        max_connections: Some(50),
        // The held connections send nothing: they must outlive the test.
        header_timeout: Some("5m".into()),
        ..equities()
    })
    .await;
    app.wait_for_feeds().await;
    // Connections are accepted until the bound (the test client's pooled one among them);
    // the next ones are answered at once and closed.
    let mut held = Vec::new();
    let mut refused = Vec::new();
    while refused.len() < 3 {
        let mut stream = TcpStream::connect(app.address).await.expect("connect");
        let mut answer = Vec::new();
        match tokio::time::timeout(Duration::from_millis(100), stream.read_to_end(&mut answer))
            .await
        {
            Err(_) => {
                assert!(refused.is_empty(), "accepted after one was refused");
                held.push(stream);
            }
            Ok(read) => {
                read.expect("read");
                refused.push(String::from_utf8(answer).expect("text"));
            }
        }
        assert!(
            held.len() <= 50,
            "more than the bound accepted: {}",
            app.metrics().await
        );
    }
    assert!(held.len() >= 49, "{} held", held.len());
    for answer in &refused {
        let (head, body) = answer.split_once("\r\n\r\n").expect("a response");
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let body: Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(body["error"]["code"], "overloaded");
    }
    // A connection freed lets the next one in.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = app.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    drop(held);
    let text = app.metrics().await;
    assert_eq!(
        metric_value(&text, "tickstream_http_connections_refused_total "),
        3.0
    );
    app.stop().await;
}
