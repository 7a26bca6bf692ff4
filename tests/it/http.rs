//! The real service over real HTTP: started on a random loopback port, replaying a recorded file
//! at full speed, queried on every endpoint, including the error cases.

use serde_json::Value;
use tickstream::analytics::{WindowSpec, WindowStats};
use tickstream::config::ServeArgs;

use crate::support::*;

fn replay_args(names: &[&str]) -> ServeArgs {
    ServeArgs {
        replay: names.iter().map(|name| data_path(name)).collect(),
        speed: Some("max".into()),
        ..ServeArgs::default()
    }
}

/// A window from the JSON body, as [`WindowStats`].
fn window_from_json(value: &Value) -> WindowStats {
    serde_json::from_value::<WindowStatsBody>(value.clone())
        .expect("window shape")
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_equities_are_served_exactly() {
    let app = TestApp::spawn(replay_args(&[EQUITIES])).await;
    let feeds = app.wait_for_feeds().await;
    let feed = &feeds["feeds"][0];
    assert_eq!(feed["state"], "finished");
    assert_eq!(feed["kind"], "replay");
    assert_eq!(feed["format"], "csv");
    assert_eq!(feed["rows_read"], 49_644);
    assert_eq!(feed["trades"], 49_644);
    assert_eq!(feed["malformed"], 0);
    assert_eq!(feed["late"], 0);
    assert_eq!(feed["duplicates"], 0);
    assert_eq!(feed["progress"]["fraction"], 1.0);

    let (status, health) = app.get("/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200);

    let trades = load_trades(EQUITIES);
    let frame = trades_frame(&trades);
    let last_ms = trades
        .iter()
        .map(|t| t.exchange_ts / 1_000_000)
        .max()
        .expect("trades");

    let (status, symbols) = app.get("/v1/symbols").await;
    assert_eq!(status, 200);
    assert_eq!(symbols["as_of_ms"], last_ms);
    assert_eq!(symbols["count"], 2);
    for entry in symbols["symbols"].as_array().expect("symbols") {
        let name = entry["symbol"].as_str().expect("name");
        let theirs: Vec<_> = trades
            .iter()
            .filter(|t| t.symbol.as_str() == name)
            .collect();
        let last = theirs.last().expect("traded");
        assert_eq!(entry["trade_count"], theirs.len());
        assert_eq!(entry["last_price"], last.price);
        assert_eq!(entry["last_ms"], last.exchange_ts / 1_000_000);
    }

    let windows = default_windows();
    for symbol in ["IBM", "AIG"] {
        let (status, body) = app.get(&format!("/v1/symbols/{symbol}/stats")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["symbol"], symbol);
        assert_eq!(body["as_of_ms"], last_ms);
        let served = body["windows"].as_object().expect("windows");
        assert_eq!(served.len(), 6);
        for window in windows.iter() {
            let expected = window_at(&frame, window, last_ms)
                .remove(symbol)
                .unwrap_or_else(WindowStats::empty);
            let actual = window_from_json(&served[&window.label]);
            assert_window_matches(
                &actual,
                &expected,
                &format!("HTTP {symbol} {}", window.label),
            );
        }
    }
    // Windows come in configured order.
    let raw = app
        .client
        .get(app.url("/v1/symbols/IBM/stats"))
        .send()
        .await
        .expect("get");
    let raw = raw.text().await.expect("text");
    let positions: Vec<usize> = ["\"1s\"", "\"10s\"", "\"1m\"", "\"5m\"", "\"15m\"", "\"1h\""]
        .iter()
        .map(|key| raw.find(key).expect("window key"))
        .collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "{raw}");
    // IBM's last trade came 34 minutes before AIG's: its 15m window is empty, with nulls.
    let (_, ibm_all) = app.get("/v1/symbols/IBM/stats").await;
    let (_, ibm) = app.get("/v1/symbols/IBM/stats?window=15m").await;
    let quarter = &ibm["windows"]["15m"];
    assert_eq!(ibm["windows"].as_object().map(|w| w.len()), Some(1));
    assert_eq!(quarter["count"], 0);
    assert_eq!(quarter["volume"], 0.0);
    for field in [
        "notional",
        "vwap",
        "open",
        "high",
        "low",
        "close",
        "mean",
        "stddev",
        "change",
        "change_pct",
        "first_ms",
        "last_ms",
    ] {
        assert!(quarter[field].is_null(), "{field}: {quarter}");
    }

    // Any spelling of a configured window's duration names it, as for intervals and rules.
    for (spelling, label) in [("900s", "15m"), ("60s", "1m"), ("3600000ms", "1h")] {
        let (status, body) = app
            .get(&format!("/v1/symbols/IBM/stats?window={spelling}"))
            .await;
        assert_eq!(status, 200, "{spelling}: {body}");
        assert_eq!(
            body["windows"][label], ibm_all["windows"][label],
            "{spelling}"
        );
        let (status, body) = app.get(&format!("/v1/stats?window={spelling}")).await;
        assert_eq!(status, 200, "{spelling}: {body}");
        assert_eq!(body["window"], label, "{spelling}: {body}");
    }

    check_ranking(&app, &frame, &windows[5], last_ms).await;
    check_metrics(&app).await;
    check_errors(&app).await;
    app.stop().await;
}

async fn check_ranking(
    app: &TestApp,
    frame: &polars::prelude::DataFrame,
    window: &WindowSpec,
    now_ms: i64,
) {
    let expected = window_at(frame, window, now_ms);
    let mut by_volume: Vec<(&String, f64)> = expected.iter().map(|(s, w)| (s, w.volume)).collect();
    by_volume.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (status, body) = app
        .get(&format!(
            "/v1/stats?window={}&sort=volume&order=desc&limit=1",
            window.label
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window"], window.label.as_str());
    assert_eq!(body["total"], 2);
    let rows = body["symbols"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["symbol"], by_volume[0].0.as_str());
    assert_eq!(rows[0]["count"], expected[by_volume[0].0].count);

    let (_, ascending) = app
        .get(&format!(
            "/v1/stats?window={}&sort=change_pct&order=asc",
            window.label
        ))
        .await;
    let changes: Vec<f64> = ascending["symbols"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row["change_pct"].as_f64().expect("number"))
        .collect();
    assert_eq!(changes.len(), 2);
    assert!(changes[0] <= changes[1], "{changes:?}");

    // Default: the first configured window, by symbol.
    let (_, default) = app.get("/v1/stats").await;
    assert_eq!(default["window"], "1s");
    assert_eq!(default["sort"], "symbol");
    assert_eq!(default["symbols"][0]["symbol"], "AIG");
}

async fn check_metrics(app: &TestApp) {
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    for expected in [
        "tickstream_trades_processed_total 49644",
        "tickstream_trades_late_total 0",
        "tickstream_feed_malformed_total{feed=",
        "tickstream_http_requests_total{method=\"GET\",route=\"/v1/symbols/{symbol}/stats\",status=\"200\"}",
        // The feed's label is its short name: the replayed file's name.
        "tickstream_feed_trades_total{feed=\"ibm_aig_20131007_trades.csv\"} 49644",
        "tickstream_feed_state{feed=\"ibm_aig_20131007_trades.csv\",state=\"finished\"} 1",
        "tickstream_feed_state{feed=\"ibm_aig_20131007_trades.csv\",state=\"running\"} 0",
        "tickstream_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/symbols/{symbol}/stats\"}",
        "tickstream_build_info{version=\"",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(expected), "metrics lack {expected}:\n{text}");
    }
    // The stream clock in base units: the last trade's time, in seconds.
    let clock: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("tickstream_stream_clock_timestamp_seconds "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no stream clock in:\n{text}"));
    let (_, stats) = app.get("/v1/symbols/IBM/stats").await;
    let as_of = stats["as_of_ms"].as_f64().expect("as_of_ms") / 1000.0;
    assert!((clock - as_of).abs() < 1e-3, "{clock} vs {as_of}");
}

async fn check_errors(app: &TestApp) {
    let cases = [
        ("/v1/symbols/NOPE/stats", 404, "unknown_symbol"),
        ("/v1/symbols/IBM/stats?window=2m", 400, "bad_parameter"),
        ("/v1/symbols/IBM/stats?windw=1m", 400, "bad_parameter"),
        ("/v1/stats?window=7s", 400, "bad_parameter"),
        ("/v1/stats?sort=price", 400, "bad_parameter"),
        ("/v1/stats?order=up", 400, "bad_parameter"),
        ("/v1/stats?limit=0", 400, "bad_parameter"),
        ("/v1/stats?limit=10001", 400, "bad_parameter"),
        ("/v1/stats?limit=-5", 400, "bad_parameter"),
        ("/v1/stats?limit=ten", 400, "bad_parameter"),
        ("/v2/anything", 404, "not_found"),
    ];
    app.assert_errors(&cases).await;
    let response = app
        .client
        .post(app.url("/v1/symbols"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_merge_into_one_consolidated_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(data_path(EQUITIES)).expect("data");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let (mut ibm, mut aig) = (vec![header], vec![header]);
    for line in lines {
        if line.contains(",IBM,") {
            ibm.push(line)
        } else {
            aig.push(line)
        }
    }
    let ibm_path = dir.path().join("ibm.csv");
    let aig_path = dir.path().join("aig.csv");
    std::fs::write(&ibm_path, ibm.join("\n")).expect("write");
    std::fs::write(&aig_path, aig.join("\n")).expect("write");
    let args = ServeArgs {
        replay: vec![ibm_path, aig_path],
        speed: Some("max".into()),
        ..ServeArgs::default()
    };
    let split = TestApp::spawn(args).await;
    let feeds = split.wait_for_feeds().await;
    let counts: Vec<(u64, u64)> = feeds["feeds"]
        .as_array()
        .expect("feeds")
        .iter()
        .map(|f| {
            (
                f["trades"].as_u64().expect("n"),
                f["late"].as_u64().expect("n"),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [(24_293, 0), (25_351, 0)],
        "merged in event time: nothing late"
    );
    let whole = TestApp::spawn(replay_args(&[EQUITIES])).await;
    whole.wait_for_feeds().await;
    for path in [
        "/v1/symbols/IBM/stats",
        "/v1/symbols/AIG/stats",
        "/v1/symbols",
    ] {
        assert_eq!(split.get(path).await, whole.get(path).await, "{path}");
    }
    split.stop().await;
    whole.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_run_is_the_live_path_over_an_in_process_mock_exchange() {
    let app = TestApp::spawn(ServeArgs::default()).await;
    // The first trade is released at once; wait for it to be applied (a safety limit only).
    let mut symbols = serde_json::Value::Null;
    for _ in 0..500 {
        let (_, body) = app.get("/v1/symbols").await;
        if body["count"].as_u64().unwrap_or(0) > 0 {
            symbols = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(symbols["symbols"][0]["symbol"], "AIG", "{symbols}");
    let as_of = symbols["as_of_ms"].as_i64().expect("clock");
    assert!(
        as_of >= 1_381_132_800_688,
        "at or after the sample's first trade: {symbols}"
    );
    let (status, feeds) = app.get("/v1/feeds").await;
    assert_eq!(status, 200);
    let feed = &feeds["feeds"][0];
    assert_eq!(feed["name"], "binance:AIG,IBM");
    assert_eq!(feed["kind"], "binance");
    assert!(
        feed["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("ws://127.0.0.1:")),
        "{feed}"
    );
    assert_eq!(feed["state"], "live");
    assert_eq!(feed["malformed"], 0);
    app.stop().await;
}

/// Reads one HTTP response from `stream`: its status and JSON body (the server closes or the
/// body's length is given).
async fn read_response(stream: &mut tokio::net::TcpStream) -> (u16, Value) {
    use tokio::io::AsyncReadExt;
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buffer))
                .await
                .expect("a response in time")
                .expect("read");
        raw.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(String::from)
                })
                .and_then(|l| l.trim().parse::<usize>().ok());
            if read == 0 || length.is_some_and(|n| body.len() >= n) {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                return (status, serde_json::from_str(body).unwrap_or(Value::Null));
            }
        }
        assert!(read > 0, "connection closed before a response: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_limits_are_shed_timed_out_or_refused_with_json() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn(ServeArgs {
        replay: vec![data_path(EQUITIES)],
        speed: Some("max".into()),
        max_requests_in_flight: Some(1),
        request_timeout: Some("2s".into()),
        ..ServeArgs::default()
    })
    .await;
    // A body over 64 KiB: 413 with the JSON error body.
    let huge = format!(
        r#"{{"kind":"price_above","symbol":"{}"}}"#,
        "X".repeat(70_000)
    );
    let response = app
        .client
        .post(app.url("/v1/alerts/rules"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "payload_too_large");

    // A client that announces a body and never sends it holds the only slot...
    let mut stalled = tokio::net::TcpStream::connect(app.address)
        .await
        .expect("connect");
    stalled
        .write_all(
            b"POST /v1/alerts/rules HTTP/1.1\r\nhost: tickstream\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .expect("write");
    // ...so other requests are shed at once with 503, not queued.
    let mut shed = None;
    for _ in 0..500 {
        let (status, body) = app.get("/v1/symbols").await;
        if status == 503 {
            shed = Some(body);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let shed = shed.expect("a request shed while the slot is held");
    assert_eq!(shed["error"]["code"], "overloaded", "{shed}");
    // The stalled request ends with 408 once its time is up, and the slot is free again.
    let (status, body) = read_response(&mut stalled).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (408, &Value::from("timeout")),
        "{body}"
    );
    let (status, _) = app.get("/v1/symbols").await;
    assert_eq!(status, 200);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"status="503""#) && metrics.contains(r#"status="408""#),
        "shed and timed-out requests are counted"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_always_get_a_4xx_with_a_json_error() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn(ServeArgs {
        replay: vec![data_path(EQUITIES)],
        speed: Some("max".into()),
        ..ServeArgs::default()
    })
    .await;
    let paths = [
        "/v1/symbols/IBM/candles?limit=-1",
        "/v1/symbols/IBM/candles?limit=99999999999999999999999",
        "/v1/symbols/IBM/candles?limit=abc",
        "/v1/symbols/IBM/candles?interval=0s",
        "/v1/symbols/IBM/candles?interval=%ZZ",
        "/v1/symbols/IBM/stats?unknown=1",
        "/v1/symbols/%00/stats",
        "/v1/symbols/%F0%28%8C%28/stats",
        "/v1/symbols/..%2F..%2Fetc%2Fpasswd/stats",
        "/v1/symbols/IBM/indicators/rsi?period=-5",
        "/v1/symbols/IBM/indicators/rsi?period=1000000000000",
        "/v1/symbols/IBM/indicators/rsi?period=1&period=2",
        "/v1/symbols/IBM/indicators/%2e%2e",
        "/v1/alerts?limit=-3",
        "/v1//symbols",
        "/v1/symbols/IBM/stats/extra",
        "/%2F%2F",
        "/v1/stream?events=nonsense",
    ];
    let mut seen = std::collections::BTreeMap::new();
    for path in paths {
        let (status, body) = app.get(path).await;
        assert!((400..500).contains(&status), "{path}: {status} {body}");
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
        *seen.entry(status).or_insert(0) += 1;
    }
    for method in ["PUT", "PATCH", "DELETE", "TRACE", "FOO"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = app
            .client
            .request(method.clone(), app.url("/v1/symbols/IBM/stats"))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        assert!((400..500).contains(&status), "{method}: {status}");
        let body: Value = response.json().await.expect("json");
        assert!(body["error"]["code"].is_string(), "{method}: {body}");
        *seen.entry(status).or_insert(0) += 1;
    }
    // A header block far beyond any real client's: refused, and the service stays up.
    let mut stream = tokio::net::TcpStream::connect(app.address)
        .await
        .expect("connect");
    let huge_header = format!(
        "GET /v1/symbols HTTP/1.1\r\nhost: x\r\nx-junk: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let _ = stream.write_all(huge_header.as_bytes()).await;
    drop(stream);
    let (status, _) = app.get("/v1/symbols").await;
    assert_eq!(status, 200, "still serving; statuses seen: {seen:?}");
    println!("hostile requests: statuses seen {seen:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_is_served_and_documents_every_route() {
    let app = TestApp::spawn(ServeArgs {
        replay: vec![data_path(EQUITIES)],
        speed: Some("max".into()),
        ..ServeArgs::default()
    })
    .await;
    let (status, spec) = app.get("/openapi.json").await;
    assert_eq!(status, 200, "{spec}");
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().expect("paths");
    // Every route the router serves, with its methods.
    let routes = [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/v1/feeds", "get"),
        ("/v1/symbols", "get"),
        ("/v1/stats", "get"),
        ("/v1/symbols/{symbol}/stats", "get"),
        ("/v1/symbols/{symbol}/quote", "get"),
        ("/v1/symbols/{symbol}/candles", "get"),
        ("/v1/symbols/{symbol}/indicators", "get"),
        ("/v1/symbols/{symbol}/indicators/{name}", "get"),
        ("/v1/alerts", "get"),
        ("/v1/alerts/rules", "get"),
        ("/v1/alerts/rules", "post"),
        ("/v1/alerts/rules/{id}", "delete"),
        ("/v1/stream", "get"),
        ("/v1/stream/ws", "get"),
        ("/v1/info", "get"),
        ("/v1/history", "get"),
        ("/v1/symbols/{symbol}/history/candles", "get"),
        ("/v1/symbols/{symbol}/history/stats", "get"),
        ("/v1/symbols/{symbol}/history/indicators/{name}", "get"),
        ("/v1/cluster", "get"),
    ];
    for (path, method) in routes {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} undocumented");
        // Every operation documents the limits' answers and the JSON error body.
        for code in ["400", "408", "503"] {
            assert!(
                operation["responses"][code].is_object(),
                "{method} {path}: {code} undocumented"
            );
        }
    }
    let documented: usize = paths
        .values()
        .map(|ops| ops.as_object().map_or(0, |ops| ops.len()))
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "an operation the router does not serve"
    );
    // Every schema whose shape is fixed is closed; the maps keyed by configuration are open in
    // their keys only.
    let schemas = spec["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "SymbolStats",
        "WindowStats",
        "SymbolList",
        "SymbolSummary",
        "AllStats",
        "RankedStats",
        "Quote",
        "Candles",
        "Candle",
        "IndicatorResult",
        "IndicatorResults",
        "IndicatorEntry",
        "IndicatorParams",
        "SeriesPoint",
        "Alert",
        "AlertList",
        "Rule",
        "RuleList",
        "Feed",
        "FeedList",
        "ReplayProgress",
        "ErrorBody",
        "ErrorDetail",
        "Status",
    ] {
        let schema = &schemas[name];
        assert_eq!(
            schema["additionalProperties"], false,
            "{name} is open: {schema}"
        );
        assert!(schema["properties"].is_object(), "{name}: {schema}");
    }
    assert!(
        schemas["SymbolStats"]["properties"]["windows"]["additionalProperties"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("/WindowStats"))
    );
    // The fields the hand-written description lacked.
    for (schema, field) in [
        ("Feed", "progress"),
        ("Feed", "error"),
        ("Feed", "lag_ms"),
        ("Feed", "frames"),
        ("Feed", "gaps"),
        ("Candle", "vwap"),
        ("Candle", "count"),
        ("Candles", "as_of_ms"),
        ("Quote", "spread_bps"),
        ("Quote", "ts_ms"),
        ("Quote", "receive_ms"),
        ("IndicatorResult", "bar_ms"),
        ("IndicatorResult", "as_of_ms"),
    ] {
        assert!(
            schemas[schema]["properties"][field].is_object(),
            "{schema}.{field} undocumented"
        );
    }
    assert!(
        schemas["WindowStats"]["properties"]["min"].is_null(),
        "no min/max served"
    );
    // Every query parameter of `/v1/stats`, and the stream's events.
    let parameters: Vec<&str> = paths["/v1/stats"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(parameters, ["window", "sort", "order", "limit"]);
    let stream = paths["/v1/stream"]["get"]["description"]
        .as_str()
        .unwrap_or_default();
    for event in ["`event: alert`", "`event: stats`", "`event: lagged`"] {
        assert!(stream.contains(event), "{event} undocumented: {stream}");
    }
    let metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
        .as_object()
        .expect("content");
    assert_eq!(
        metrics.keys().collect::<Vec<_>>(),
        ["application/openmetrics-text"]
    );
    app.stop().await;
}

/// A preflight asking `origin` may send `method` to `path`, as a browser would.
async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight")
}

fn allowed_origin(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

#[tokio::test]
async fn cors_lets_listed_origins_edit_and_any_origin_only_read() {
    let dashboard = "https://dash.example:8443";
    let elsewhere = "https://elsewhere.example";
    let app = TestApp::spawn(ServeArgs {
        cors_origin: vec![dashboard.into(), "*".into()],
        ..replay_args(&[EQUITIES])
    })
    .await;
    app.wait_for_feeds().await;

    // The listed origin may edit rules: the preflight names it, the method and the headers.
    let answer = preflight(&app, "/v1/alerts/rules", dashboard, "POST").await;
    assert!(answer.status().is_success(), "{}", answer.status());
    assert_eq!(allowed_origin(&answer).as_deref(), Some(dashboard));
    let methods = answer.headers()["access-control-allow-methods"]
        .to_str()
        .expect("text")
        .to_ascii_uppercase();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let headers = answer.headers()["access-control-allow-headers"]
        .to_str()
        .expect("text")
        .to_ascii_lowercase();
    assert!(headers.contains("authorization") && headers.contains("content-type"));
    assert!(answer.headers().contains_key("access-control-max-age"));

    // Any other origin may read, answered with its own name, never `*`, and `Vary: Origin`.
    let answer = preflight(&app, "/v1/symbols/IBM/stats", elsewhere, "GET").await;
    assert_eq!(allowed_origin(&answer).as_deref(), Some(elsewhere));
    let read = app
        .client
        .get(app.url("/v1/symbols/IBM/stats"))
        .header("Origin", elsewhere)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);
    assert_eq!(allowed_origin(&read).as_deref(), Some(elsewhere));
    let vary = read.headers()["vary"]
        .to_str()
        .expect("text")
        .to_ascii_lowercase();
    assert!(vary.contains("origin"), "{vary}");

    // …but not edit: no preflight grants it, and the request itself carries no grant.
    for method in ["POST", "DELETE"] {
        let answer = preflight(&app, "/v1/alerts/rules", elsewhere, method).await;
        assert_eq!(allowed_origin(&answer), None, "{method}");
    }
    let edit = app
        .client
        .post(app.url("/v1/alerts/rules"))
        .header("Origin", elsewhere)
        .json(&serde_json::json!({"kind": "price_above", "symbol": "IBM", "threshold": 1.0}))
        .send()
        .await
        .expect("edit");
    assert_eq!(allowed_origin(&edit), None);
    app.stop().await;

    // Off by default: no grant to anyone.
    let app = TestApp::spawn(replay_args(&[EQUITIES])).await;
    let read = app
        .client
        .get(app.url("/v1/symbols"))
        .header("Origin", dashboard)
        .send()
        .await
        .expect("read");
    assert_eq!(allowed_origin(&read), None);
    app.stop().await;
}

#[test]
fn a_bad_cors_origin_is_refused_by_name() {
    let error = tickstream::Settings::load(ServeArgs {
        cors_origin: vec!["dash.example/app".into()],
        ..ServeArgs::default()
    })
    .expect_err("not an origin")
    .to_string();
    assert!(
        error.contains("cors_origin") && error.contains("dash.example/app"),
        "{error}"
    );
}
