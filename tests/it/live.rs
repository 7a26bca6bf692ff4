//! The live path over real loopback WebSockets: the mock exchange serving recorded trades in
//! Binance's format, the real connector, the service's HTTP API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tickstream::Settings;
use tickstream::config::ServeArgs;
use tickstream::feeds::connector::{ConnectorSettings, FeedSpec, live_stream};
use tickstream::feeds::reconnect::ReconnectPolicy;
use tickstream::feeds::{Credentials, alpaca, binance, polygon};
use tickstream::health::{FeedDescription, FeedRegistry, FeedState};
use tickstream::metrics::Metrics;
use tickstream::mock_exchange::{MockExchange, MockOptions};
use tickstream::model::Trade;
use tickstream::replay::Speed;
use tickstream::secret::Secret;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::support::*;

fn feed_args(address: SocketAddr) -> ServeArgs {
    ServeArgs {
        feed: vec![format!("binance:BTCUSDT@ws://{address}")],
        ..ServeArgs::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_s_live_path_reaches_the_same_statistics_as_a_replay() {
    let trades = load_trades(BTCUSDT);
    let frame = trades_frame(&trades);
    let replay = TestApp::spawn(ServeArgs {
        replay: vec![data_path(BTCUSDT)],
        speed: Some("max".into()),
        ..ServeArgs::default()
    })
    .await;
    replay.wait_for_feeds().await;
    for provider in tickstream::feeds::VENUES {
        let options = MockOptions {
            provider,
            ..MockOptions::default()
        };
        let (mock, stop_mock) =
            start_mock("127.0.0.1:0".parse().expect("addr"), &trades, options).await;
        let mut settings = Settings::load(ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            ..ServeArgs::default()
        })
        .expect("settings");
        settings.sources.demo = false;
        settings.sources.feeds = vec![FeedSpec {
            provider,
            url: format!("ws://{mock}"),
            symbols: vec!["BTCUSDT".into()],
            channels: crate::support::strings(provider.default_channels()),
            credentials: provider.credentials_env().key.map(|_| Credentials {
                key: Secret::new("test-token-do-not-show".into()),
                secret: None,
            }),
        }];
        let live = TestApp::spawn_settings(settings).await;
        let feed = wait_for_feed(&live, |f| f["trades"] == trades.len()).await;
        assert_eq!(feed["state"], "live", "{provider:?}: {feed}");
        assert_eq!(feed["kind"], provider.name());
        assert_eq!(feed["format"], "websocket");
        assert_eq!(feed["malformed"], 0, "{provider:?}: {feed}");
        assert_eq!(feed["gaps"], 0, "{provider:?}: {feed}");
        assert_eq!(feed["duplicates"], 0, "{provider:?}: {feed}");
        assert_eq!(feed["late"], 0, "{provider:?}: {feed}");
        assert_eq!(feed["reconnects"], 0, "{provider:?}: {feed}");
        assert_eq!(
            feed["source"],
            format!("ws://{mock}"),
            "no credentials shown"
        );
        assert_eq!(
            feed["source"],
            format!("ws://{mock}"),
            "no credentials shown"
        );
        // The live clock may move on with the wall once the feed is quiet: compare with polars
        // at the service's own `as_of_ms`, and the per-symbol totals with the replay's.
        let (_, stats) = live.get("/v1/symbols/BTCUSDT/stats").await;
        assert_stats_body_matches(&stats, &frame, &format!("{provider:?}"));
        let (_, live_symbols) = live.get("/v1/symbols").await;
        let (_, replay_symbols) = replay.get("/v1/symbols").await;
        assert_eq!(
            live_symbols["symbols"], replay_symbols["symbols"],
            "{provider:?}"
        );
        live.stop().await;
        stop_mock.cancel();
    }
    replay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_exchange_is_reconnected_without_counting_a_trade_twice() {
    let trades = load_trades(BTCUSDT);
    // Slow enough to be killed mid-stream: ~350 s of trades at 200× take ~1.7 s.
    let slow = MockOptions {
        speed: Speed::Factor(200.0),
        ..MockOptions::default()
    };
    let (mock, stop_first) = start_mock("127.0.0.1:0".parse().expect("addr"), &trades, slow).await;
    let app = TestApp::spawn(feed_args(mock)).await;
    let before = wait_for_feed(&app, |f| f["trades"].as_u64().unwrap_or(0) > 100).await;
    stop_first.cancel();
    let down = wait_for_feed(&app, |f| {
        f["state"] == "backoff" || f["state"] == "connecting"
    })
    .await;
    let received_before_restart = down["trades"].as_u64().expect("trades");
    assert!(
        received_before_restart < trades.len() as u64,
        "killed mid-stream: {before}"
    );

    // The same address again, now at full speed: the recording from its start.
    // The first exchange frees the address as it stops; its last connection may still be
    // closing when the feed notices, so the bind is retried briefly.
    let mut second = None;
    for _ in 0..250 {
        match MockExchange::bind(mock, &trades, MockOptions::default()).await {
            Ok(exchange) => {
                second = Some(exchange);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let stop_second = CancellationToken::new();
    tokio::spawn(
        second
            .expect("the address is free again")
            .run(stop_second.clone()),
    );
    let feed = wait_for_feed(&app, |f| f["trades"] == trades.len()).await;
    assert_eq!(feed["state"], "live");
    assert_eq!(feed["reconnects"], 1);
    // Every trade received is applied once or dropped once as a duplicate; nothing is late.
    let received = feed["rows_read"].as_u64().expect("rows");
    let duplicates = feed["duplicates"].as_u64().expect("duplicates");
    assert_eq!(feed["late"], 0, "{feed}");
    assert_eq!(received, trades.len() as u64 + duplicates, "{feed}");
    assert!(duplicates >= received_before_restart.min(100), "{feed}");
    let (_, stats) = app.get("/v1/symbols/BTCUSDT/stats").await;
    assert_eq!(stats["trade_count"], trades.len());
    app.stop().await;
    stop_second.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_exchange_triggers_the_stale_feed_reconnect() {
    // Subscribed to a symbol it has no trades for, and never pinging: silence after the ack.
    let silent = MockOptions {
        keepalive_every: Some(Duration::from_secs(3600)),
        ..MockOptions::default()
    };
    let (mock, stop_mock) = start_mock("127.0.0.1:0".parse().expect("addr"), &[], silent).await;
    let metrics = Metrics::new();
    let registry = FeedRegistry::new();
    let description = FeedDescription {
        kind: "binance".into(),
        source: "mock".into(),
        format: "websocket".into(),
    };
    let status = registry.register("stale".into(), description, &metrics);
    let spec = FeedSpec {
        provider: binance::PROVIDER,
        url: format!("ws://{mock}"),
        symbols: vec!["BTCUSDT".into()],
        channels: vec!["trade".into()],
        credentials: None,
    };
    let settings = ConnectorSettings {
        stale_after: Some(Duration::from_millis(200)),
        reconnect: ReconnectPolicy {
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            ..ReconnectPolicy::default()
        },
        ..ConnectorSettings::default()
    };
    let stream = live_stream(spec, settings, status.id(), Arc::clone(&status));
    // The stream yields nothing (no trades); drive it until it has reconnected twice.
    let driver = tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while stream.next().await.is_some() {}
    });
    for _ in 0..500 {
        if status.reconnects.load(std::sync::atomic::Ordering::Relaxed) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let view = status.view();
    assert!(view.reconnects >= 2, "{view:?}");
    assert_eq!(view.trades, 0);
    assert!(matches!(
        status.state(),
        FeedState::Subscribing | FeedState::Live | FeedState::Backoff | FeedState::Connecting
    ));
    driver.abort();
    stop_mock.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_exchange_is_retried_and_the_service_stays_up() {
    // A port nothing listens on: bind one, then free it.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let app = TestApp::spawn(feed_args(address)).await;
    let feed = wait_for_feed(&app, |f| f["state"] == "backoff").await;
    assert_eq!(feed["trades"], 0);
    let reason = feed["error"]
        .as_str()
        .expect("the disconnect reason is shown");
    assert!(reason.contains("connect failed"), "{feed}");
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// A minimal Binance-speaking peer: on every connection, acknowledges the subscription, sends
/// `frames`, then idles.
async fn scripted_peer(frames: Vec<String>) -> SocketAddr {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    // Every connection (a reconnect too) gets the same script.
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let frames = frames.clone();
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let Some(Ok(Message::Text(request))) = socket.next().await else {
                    return;
                };
                assert!(request.as_str().contains("\"SUBSCRIBE\""), "{request}");
                if socket
                    .send(Message::text(r#"{"result":null,"id":1}"#))
                    .await
                    .is_err()
                {
                    return;
                }
                for frame in frames {
                    if socket.send(Message::text(frame)).await.is_err() {
                        return;
                    }
                }
                while let Some(Ok(_)) = socket.next().await {}
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_are_served_and_bad_frames_are_counted_and_skipped() {
    // Real frames from the Binance recording in the shared data, and two broken ones.
    let peer = scripted_peer(Vec::from([
        r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}"#,
        r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683260,"p":"61837.63000000","q":"#,
        r#"{"stream":"btcusdt@bookTicker","data":{"u":50093239219,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.60520000"}}"#,
        "\u{1F4A5} not json",
    ]).into_iter().map(String::from).collect())
    .await;
    let app = TestApp::spawn(feed_args(peer)).await;
    let feed = wait_for_feed(&app, |f| f["quotes"] == 1 && f["malformed"] == 2).await;
    assert_eq!(feed["trades"], 1);
    assert_eq!(feed["state"], "live");
    let (status, quote) = app.get("/v1/symbols/BTCUSDT/quote").await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!(quote["bid"], 61837.63);
    assert_eq!(quote["ask"], 61837.64);
    assert_eq!(quote["bid_size"], 3.78826);
    assert_eq!(quote["ask_size"], 1.6052);
    assert_eq!(
        quote["ts_ms"], 1_723_161_255_342i64,
        "stamped with the feed's latest trade time"
    );
    let mid = quote["mid"].as_f64().expect("mid");
    let spread = quote["spread"].as_f64().expect("spread");
    assert!(
        (mid - 61837.635).abs() < 1e-9 && (spread - 0.01).abs() < 1e-9,
        "{quote}"
    );
    let (status, body) = app.get("/v1/symbols/ETHUSDT/quote").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_symbol"))
    );
    let (status, _) = app.get("/v1/symbols/BTCUSDT/quote?x=1").await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeating_exchange_moves_time_and_trade_ids_forward_each_pass() {
    let trades: Vec<Trade> = load_trades(BTCUSDT).into_iter().take(50).collect();
    let looping = MockOptions {
        repeat: true,
        ..MockOptions::default()
    };
    let (mock, stop_mock) =
        start_mock("127.0.0.1:0".parse().expect("addr"), &trades, looping).await;
    let app = TestApp::spawn(feed_args(mock)).await;
    let feed = wait_for_feed(&app, |f| f["trades"].as_u64().unwrap_or(0) >= 500).await;
    assert_eq!(feed["late"], 0, "{feed}");
    assert_eq!(feed["duplicates"], 0, "{feed}");
    assert_eq!(feed["gaps"], 0, "ids continue across passes: {feed}");
    let (_, symbols) = app.get("/v1/symbols").await;
    let day_ms = 86_400_000i64;
    let first_ms = trades[0].exchange_ts / 1_000_000;
    assert!(
        symbols["as_of_ms"].as_i64().expect("clock") >= first_ms + 9 * day_ms,
        "{symbols}"
    );
    app.stop().await;
    stop_mock.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_rejection_is_feed_state_with_backoff_and_the_service_stays_up() {
    for (provider, expected) in [
        (alpaca::PROVIDER, "402"),
        (polygon::PROVIDER, "auth_failed"),
    ] {
        let refusing = MockOptions {
            provider,
            reject_auth: true,
            ..MockOptions::default()
        };
        let (mock, stop_mock) = start_mock(
            "127.0.0.1:0".parse().expect("addr"),
            &load_trades(EQUITIES),
            refusing,
        )
        .await;
        let mut settings = Settings::load(ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            ..ServeArgs::default()
        })
        .expect("settings");
        settings.sources.demo = false;
        settings.sources.feeds = vec![FeedSpec {
            provider,
            url: format!("ws://{mock}"),
            symbols: vec!["IBM".into()],
            channels: crate::support::strings(provider.default_channels()),
            credentials: Some(Credentials {
                key: Secret::new("key-id-not-to-show".into()),
                secret: Some(Secret::new("secret-not-to-show".into())),
            }),
        }];
        let app = TestApp::spawn_settings(settings).await;
        let feed = wait_for_feed(&app, |f| {
            (f["state"] == "backoff" || f["state"] == "circuit_open")
                && f["error"].as_str().is_some_and(|e| e.contains(expected))
        })
        .await;
        assert_eq!(feed["trades"], 0, "{provider:?}");
        let text = feed.to_string();
        assert!(!text.contains("not-to-show"), "{text}");
        let (status, _) = app.get("/healthz").await;
        assert_eq!(status, 200);
        let (status, _) = app.get("/v1/symbols").await;
        assert_eq!(status, 200);
        app.stop().await;
        stop_mock.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_live_session_replays_to_the_same_statistics_without_secrets() {
    let trades = load_trades(BTCUSDT);
    let options = MockOptions {
        provider: alpaca::PROVIDER,
        ..MockOptions::default()
    };
    let (mock, stop_mock) =
        start_mock("127.0.0.1:0".parse().expect("addr"), &trades, options).await;
    let directory = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::load(ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        record: Some(directory.path().to_path_buf()),
        ..ServeArgs::default()
    })
    .expect("settings");
    settings.sources.demo = false;
    settings.sources.feeds = vec![FeedSpec {
        provider: alpaca::PROVIDER,
        url: format!("ws://{mock}"),
        symbols: vec!["BTCUSDT".into()],
        channels: vec!["trades".into()],
        credentials: Some(Credentials {
            key: Secret::new("key-id-not-to-record".into()),
            secret: Some(Secret::new("secret-not-to-record".into())),
        }),
    }];
    let live = TestApp::spawn_settings(settings).await;
    wait_for_feed(&live, |f| f["trades"] == trades.len()).await;
    let (_, live_stats) = live.get("/v1/symbols/BTCUSDT/stats").await;
    let frame = trades_frame(&trades);
    assert_stats_body_matches(&live_stats, &frame, "live");
    live.stop().await;
    stop_mock.cancel();

    // Raw frames at the top; the trades compacted into the day they were recorded.
    let list = |path: &std::path::Path| {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .expect("dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        entries
    };
    let top = list(directory.path());
    assert_eq!(top.len(), 2, "raw frames and a day of trades: {top:?}");
    let (day, frames) = (&top[0], &top[1]);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let name = day.file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert!(
        name == today || name == yesterday,
        "a day partition: {top:?}"
    );
    let days = list(day);
    assert_eq!(days.len(), 1, "one trade file: {days:?}");
    let files = [frames.clone(), days[0].clone()];
    let (frames, parquet) = (files[0].clone(), files[1].clone());
    assert!(
        frames.to_string_lossy().ends_with(".frames.jsonl"),
        "{frames:?}"
    );
    assert!(
        parquet.to_string_lossy().ends_with(".parquet"),
        "{parquet:?}"
    );
    let recording = std::fs::read_to_string(&frames).expect("read");
    assert!(
        !recording.contains("not-to-record"),
        "credentials are masked"
    );
    assert!(
        recording
            .lines()
            .next()
            .is_some_and(|l| l.contains(r#""dir":"connect""#)),
        "{recording:.300}"
    );
    assert!(recording.contains(r#""dir":"out""#) && recording.contains("***"));

    // Both recordings replay to what the live service showed.
    for recorded in [frames, parquet] {
        let replay = TestApp::spawn(ServeArgs {
            replay: vec![recorded.clone()],
            speed: Some("max".into()),
            ..ServeArgs::default()
        })
        .await;
        let feeds = replay.wait_for_feeds().await;
        assert_eq!(
            feeds["feeds"][0]["trades"],
            trades.len(),
            "{recorded:?}: {feeds}"
        );
        assert_eq!(feeds["feeds"][0]["malformed"], 0, "{feeds}");
        let (_, replayed_stats) = replay.get("/v1/symbols/BTCUSDT/stats").await;
        assert_stats_body_matches(&replayed_stats, &frame, &format!("{recorded:?}"));
        assert_eq!(replayed_stats["trade_count"], live_stats["trade_count"]);
        assert_eq!(replayed_stats["last_ms"], live_stats["last_ms"]);
        replay.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_live_market_still_drains_its_windows() {
    let trades = load_trades(BTCUSDT);
    let last_ms = trades.last().expect("trades").exchange_ts / 1_000_000;
    let (mock, stop_mock) = start_mock(
        "127.0.0.1:0".parse().expect("addr"),
        &trades,
        MockOptions::default(),
    )
    .await;
    let app = TestApp::spawn(feed_args(mock)).await;
    wait_for_feed(&app, |f| f["trades"] == trades.len()).await;
    // Nothing more arrives: the clock follows the wall (less the feed's lag and the lateness),
    // and the one-second window empties (a safety limit, not a timing check).
    let mut drained = serde_json::Value::Null;
    for _ in 0..1000 {
        let (_, body) = app.get("/v1/symbols/BTCUSDT/stats?window=1s").await;
        if body["windows"]["1s"]["count"] == 0 {
            drained = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        drained["as_of_ms"].as_i64().expect("clock") > last_ms + 1000,
        "{drained}"
    );
    assert_stats_body_matches(&drained, &trades_frame(&trades), "drained");
    app.stop().await;
    stop_mock.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_size_limit_is_refused_and_the_feed_retried() {
    // 2 MiB in one frame, past the connectors' 1 MiB limit.
    let huge = format!(
        r#"{{"stream":"btcusdt@trade","data":{{"pad":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    let peer = scripted_peer(vec![huge]).await;
    let app = TestApp::spawn(feed_args(peer)).await;
    let feed = wait_for_feed(&app, |f| {
        f["error"]
            .as_str()
            .is_some_and(|e| e.contains("read failed"))
            && (f["state"] == "backoff"
                || f["state"] == "connecting"
                || f["state"] == "circuit_open")
    })
    .await;
    assert_eq!(feed["trades"], 0, "{feed}");
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_exchange_serves_a_raw_recording_verbatim() {
    let recording = std::fs::read_to_string(data_path("binance_btcusdt_20240808.frames.jsonl"))
        .expect("fixture");
    let exchange = MockExchange::bind_raw(
        "127.0.0.1:0".parse().expect("addr"),
        &recording,
        MockOptions::default(),
    )
    .await
    .expect("binds");
    let mock = exchange.local_addr().expect("bound");
    let stop_mock = CancellationToken::new();
    tokio::spawn(exchange.run(stop_mock.clone()));
    let app = TestApp::spawn(feed_args(mock)).await;
    let trades = load_trades(BTCUSDT);
    let feed = wait_for_feed(&app, |f| f["trades"] == trades.len()).await;
    assert_eq!(feed["malformed"], 0, "{feed}");
    assert_eq!(
        feed["gaps"], 0,
        "the recorded trade ids are consecutive: {feed}"
    );
    let (_, stats) = app.get("/v1/symbols/BTCUSDT/stats").await;
    assert_stats_body_matches(&stats, &trades_frame(&trades), "raw recording");
    app.stop().await;
    stop_mock.cancel();
}

/// A TLS WebSocket server on loopback with a self-signed certificate for `localhost`.
async fn tls_peer() -> SocketAddr {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .expect("key");
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    let _ = tokio_tungstenite::accept_async(tls).await;
                }
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_goes_through_rustls_and_checks_the_certificate_against_the_bundled_roots() {
    let peer = tls_peer().await;
    let app = TestApp::spawn(ServeArgs {
        feed: vec![format!("binance:BTCUSDT@wss://localhost:{}", peer.port())],
        ..ServeArgs::default()
    })
    .await;
    // A self-signed certificate is no venue's: the TLS handshake runs and refuses it.
    let feed = wait_for_feed(&app, |f| {
        f["error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate"))
    })
    .await;
    assert!(
        feed["error"]
            .as_str()
            .is_some_and(|e| e.contains("UnknownIssuer")),
        "{feed}"
    );
    assert_eq!(feed["trades"], 0);
    app.stop().await;
}
