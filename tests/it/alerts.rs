//! Alerts end to end: a replay of real trades with rules of every kind gives exactly the alerts
//! `data/golden/alerts.py` computed independently (at full speed and paced), through every sink:
//! `/v1/alerts`, the JSON-lines file (also across a real SIGTERM of the binary), a webhook
//! (retried, failures counted), and the live SSE stream (filtered, throttled, and a client that
//! stops reading never slows the pipeline). The rules API validates and edits the book.

use std::io::{BufRead, Read, Write};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tickstream::config::ServeArgs;

use crate::support::*;

pub(crate) fn golden() -> Value {
    let text = std::fs::read_to_string(data_path("golden/alerts.json")).expect("golden alerts");
    serde_json::from_str(&text).expect("json")
}

pub(crate) fn rule_args(golden: &Value) -> Vec<String> {
    golden["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(Value::to_string)
        .collect()
}

pub(crate) fn equities_with_rules(rules: Vec<String>) -> ServeArgs {
    ServeArgs {
        replay: vec![data_path(EQUITIES)],
        speed: Some("max".into()),
        alert: rules,
        ..ServeArgs::default()
    }
}

/// Asserts alerts (oldest first) equal the golden ones: ids, rules, symbols, kinds and times
/// exactly, values to 1e-9.
pub(crate) fn assert_alerts_match(actual: &[Value], expected: &[Value], context: &str) {
    assert_eq!(actual.len(), expected.len(), "{context}: number of alerts");
    for (got, want) in actual.iter().zip(expected) {
        for key in ["id", "rule_id", "symbol", "kind", "ts_ms"] {
            assert_eq!(
                got[key], want[key],
                "{context}: {key} of {want}\n got {got}"
            );
        }
        for key in ["value", "threshold"] {
            let (g, w) = (
                got[key].as_f64().expect(key),
                want[key].as_f64().expect(key),
            );
            assert!(
                (g - w).abs() <= 1e-9 * w.abs().max(1.0),
                "{context}: {key} {g} vs {w} in {want}"
            );
        }
        assert!(
            got["message"]
                .as_str()
                .is_some_and(|m| m.contains(want["symbol"].as_str().expect("symbol")))
        );
    }
}

async fn all_alerts(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get("/v1/alerts?limit=10000").await;
    assert_eq!(status, 200, "{body}");
    let mut alerts = body["alerts"].as_array().expect("alerts").clone();
    alerts.reverse();
    alerts
}

fn file_alerts(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("alerts file")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_trades_fire_exactly_the_golden_alerts_at_any_speed() {
    let golden = golden();
    let expected = golden["alerts"].as_array().expect("alerts").clone();
    let kinds: std::collections::HashSet<&str> =
        expected.iter().filter_map(|a| a["kind"].as_str()).collect();
    assert_eq!(kinds.len(), 7, "every kind fires: {kinds:?}");
    let dir = tempfile::tempdir().expect("dir");
    for (speed, max_pause) in [("max", None), ("20000", Some("1ms"))] {
        let file = dir.path().join(format!("alerts-{speed}.jsonl"));
        let args = ServeArgs {
            speed: Some(speed.into()),
            max_pause: max_pause.map(String::from),
            alerts_file: Some(file.clone()),
            ..equities_with_rules(rule_args(&golden))
        };
        let app = TestApp::spawn(args).await;
        app.wait_for_feeds().await;
        let context = format!("speed {speed}");
        assert_alerts_match(&all_alerts(&app).await, &expected, &context);
        let (_, one) = app.get("/v1/alerts?symbol=AIG&limit=2").await;
        let newest_aig: Vec<&Value> = expected
            .iter()
            .rev()
            .filter(|a| a["symbol"] == "AIG")
            .take(2)
            .collect();
        assert_eq!(one["count"], 2);
        assert_eq!(one["alerts"][0]["id"], newest_aig[0]["id"]);
        assert_eq!(one["alerts"][1]["id"], newest_aig[1]["id"]);
        let metrics = app.metrics().await;
        assert!(
            metrics.contains(&format!("tickstream_alerts_fired_total {}", expected.len())),
            "{metrics}"
        );
        app.stop().await;
        // Stopped: the file sink has flushed every alert.
        assert_alerts_match(&file_alerts(&file), &expected, &format!("{context}, file"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_listed_added_validated_and_removed_over_http() {
    let golden = golden();
    let app = TestApp::spawn(equities_with_rules(rule_args(&golden))).await;
    let (status, body) = app.get("/v1/alerts/rules").await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 9);
    assert_eq!(body["rules"][0]["id"], "ibm-above");
    assert_eq!(body["rules"][6]["params"], json!({"period": 14}));

    let post = |body: String| {
        let client = app.client.clone();
        let url = app.url("/v1/alerts/rules");
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("post");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("json"))
        }
    };
    let (status, created) =
        post(r#"{"kind":"price_above","symbol":"IBM","threshold":200}"#.into()).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("generated id").to_string();
    assert!(id.starts_with("price_above-"), "{id}");
    let (status, _) =
        post(r#"{"id":"ibm-above","kind":"price_above","symbol":"IBM","threshold":1}"#.into())
            .await;
    assert_eq!(status, 409);
    let invalid = [
        (r#"{"kind":"price_above","symbol":"IBM"}"#, "threshold"),
        (
            r#"{"kind":"change_pct","symbol":"*","window":"3m","threshold":1}"#,
            "window",
        ),
        (
            r#"{"kind":"indicator","symbol":"*","indicator":"rsi","interval":"1m","params":{"period":1},"above":70}"#,
            "params",
        ),
        (
            r#"{"kind":"stale","symbol":"*","after":"30s","threshold":2}"#,
            "threshold",
        ),
        // A field of the wrong type, an unknown field, JSON that is not an object: the rule is
        // invalid, and the message names the field.
        (
            r#"{"kind":"price_above","symbol":"IBM","threshold":"high"}"#,
            "threshold",
        ),
        (
            r#"{"kind":"stale","symbol":"A","after":"1s","colour":"red"}"#,
            "colour",
        ),
        ("[]", "invalid alert rule"),
    ];
    for (rule, field) in invalid {
        let (status, body) = post(rule.into()).await;
        assert_eq!(status, 400, "{rule}: {body}");
        assert_eq!(body["error"]["code"], "invalid_rule");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(field), "{rule}: {message}");
    }
    // Not JSON at all: a bad request, not a bad rule.
    for garbage in ["{", "threshold=1"] {
        let (status, body) = post(garbage.into()).await;
        assert_eq!(status, 400, "{garbage}: {body}");
        assert_eq!(body["error"]["code"], "bad_parameter");
    }
    // The rejected rules used up no id: the next generated one follows the first.
    let number = |id: &str| -> u64 {
        id.rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("numbered id")
    };
    let (status, next) =
        post(r#"{"kind":"price_above","symbol":"IBM","threshold":300}"#.into()).await;
    assert_eq!(status, 201, "{next}");
    let next_id = next["id"].as_str().expect("generated id");
    assert_eq!(number(next_id), number(&id) + 1, "{id} then {next_id}");
    assert_eq!(delete_rule(&app, next_id).await, 200);
    let delete = |id: String| {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/alerts/rules/{id}"));
        async move {
            client
                .delete(url)
                .send()
                .await
                .expect("delete")
                .status()
                .as_u16()
        }
    };
    assert_eq!(delete(id.clone()).await, 200);
    assert_eq!(delete(id).await, 404);
    let (_, body) = app.get("/v1/alerts/rules").await;
    assert_eq!(body["count"], 9);
    let (status, body) = app.get("/v1/alerts?limit=0").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_parameter"))
    );
    app.stop().await;
}

/// A local webhook receiver: answers `failures` 500s, then 200s, recording what it accepted.
#[derive(Clone, Default)]
struct Receiver {
    accepted: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<Mutex<usize>>,
    failures: usize,
}

async fn receive(State(receiver): State<Receiver>, Json(alert): Json<Value>) -> StatusCode {
    let attempt = {
        let mut attempts = receiver.attempts.lock().expect("lock");
        *attempts += 1;
        *attempts
    };
    if attempt <= receiver.failures {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    receiver.accepted.lock().expect("lock").push(alert);
    StatusCode::OK
}

async fn start_receiver(failures: usize) -> (String, Receiver) {
    let receiver = Receiver {
        failures,
        ..Receiver::default()
    };
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{address}/hook"), receiver)
}

pub fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_receives_every_alert_and_a_failing_one_is_retried_then_counted() {
    // IBM above 183.2: a few alerts over the day.
    let rule =
        r#"{"id":"high","kind":"price_above","symbol":"IBM","threshold":183.2,"cooldown":"0s"}"#;
    // The first two attempts fail: the first alert is delivered on its third attempt.
    let (url, receiver) = start_receiver(2).await;
    let args = ServeArgs {
        webhook: Some(url),
        webhook_retries: Some(3),
        ..equities_with_rules(vec![rule.to_string()])
    };
    let app = TestApp::spawn(args).await;
    app.wait_for_feeds().await;
    let fired = all_alerts(&app).await;
    assert!(fired.len() >= 2, "{} alerts", fired.len());
    app.stop().await;
    let accepted = receiver.accepted.lock().expect("lock").clone();
    assert_eq!(
        accepted, fired,
        "the webhook got every alert, as JSON, in order"
    );
    assert_eq!(*receiver.attempts.lock().expect("lock"), fired.len() + 2);

    // A webhook that always fails: each alert is tried 1 + 1 times, then counted as failed.
    let (url, receiver) = start_receiver(usize::MAX).await;
    let args = ServeArgs {
        webhook: Some(url),
        webhook_retries: Some(1),
        ..equities_with_rules(vec![rule.to_string()])
    };
    let app = TestApp::spawn(args).await;
    app.wait_for_feeds().await;
    let fired = all_alerts(&app).await.len();
    let mut failures = 0.0;
    for _ in 0..500 {
        let text = app.metrics().await;
        failures = metric_value(
            &text,
            "tickstream_alert_sink_failures_total{sink=\"webhook\"} ",
        );
        if failures as usize == fired {
            assert_eq!(
                metric_value(&text, "tickstream_webhook_retries_total "),
                fired as f64
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(failures as usize, fired, "every alert counted as failed");
    assert_eq!(*receiver.attempts.lock().expect("lock"), 2 * fired);
    assert!(receiver.accepted.lock().expect("lock").is_empty());
    app.stop().await;
}

/// Reads SSE events (`event`, `data`) from a streaming response until `done` says so.
async fn read_events(
    response: reqwest::Response,
    mut done: impl FnMut(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    use tokio_stream::StreamExt;
    while let Some(chunk) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut kind = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            if !kind.is_empty() {
                let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                events.push((kind, value));
            }
        }
        if done(&events) {
            break;
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_carries_alerts_and_throttled_stats_for_the_symbols_asked() {
    let golden = golden();
    let expected_ibm: Vec<Value> = golden["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["symbol"] == "IBM")
        .cloned()
        .collect();
    // Paced, so the client is connected while trades flow; a throttle longer than the replay:
    // exactly one stats event per symbol.
    let args = ServeArgs {
        speed: Some("20000".into()),
        max_pause: Some("1ms".into()),
        stream_throttle: Some("10m".into()),
        ..equities_with_rules(rule_args(&golden))
    };
    let app = TestApp::spawn(args).await;
    let response = app
        .client
        .get(app.url("/v1/stream?symbols=IBM"))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let last_id = expected_ibm.last().expect("IBM alerts")["id"].clone();
    let events = read_events(response, |events| {
        events
            .iter()
            .any(|(kind, value)| kind == "alert" && value["id"] == last_id)
    })
    .await;
    let stats: Vec<&Value> = events
        .iter()
        .filter(|(k, _)| k == "stats")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(stats.len(), 1, "throttled to one per symbol per 10 minutes");
    assert_eq!(stats[0]["symbol"], "IBM");
    assert!(
        stats[0]["windows"]["1m"]["count"].is_number(),
        "{}",
        stats[0]
    );
    let alerts: Vec<&Value> = events
        .iter()
        .filter(|(k, _)| k == "alert")
        .map(|(_, v)| v)
        .collect();
    assert!(
        alerts.iter().all(|a| a["symbol"] == "IBM"),
        "only the symbols asked"
    );
    // Every IBM alert fired after the client connected arrived, in order.
    let first = alerts.first().expect("alerts")["id"].as_u64().expect("id");
    let tail: Vec<Value> = expected_ibm
        .iter()
        .filter(|a| a["id"].as_u64() >= Some(first))
        .cloned()
        .collect();
    let received: Vec<Value> = alerts.into_iter().cloned().collect();
    assert_alerts_match(&received, &tail, "stream");
    let (status, body) = app.get("/v1/stream?events=trades").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_parameter"))
    );
    // A client still connected does not hold the shutdown: its stream ends.
    let open = app
        .client
        .get(app.url("/v1/stream"))
        .send()
        .await
        .expect("stream");
    app.stop().await;
    let rest = open
        .bytes()
        .await
        .expect("the stream ends with the service");
    assert!(rest.len() < 10_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_slow_the_pipeline() {
    // 2,000 symbols trading in turn, replayed in a loop, unthrottled: every publication puts
    // up to 2,000 snapshots on the stream, megabytes per second.
    let dir = tempfile::tempdir().expect("dir");
    let path = symbols_in_turn_csv(dir.path(), 20_000, 2_000);
    let args = ServeArgs {
        replay: vec![path],
        speed: Some("max".into()),
        replay_loop: true,
        stream_throttle: Some("0s".into()),
        ..ServeArgs::default()
    };
    let app = TestApp::spawn(args).await;
    // A raw client that asks for the stream and never reads a byte.
    let mut stalled = std::net::TcpStream::connect(app.address).expect("connect");
    write!(stalled, "GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let mut lagged = 0.0;
    let mut processed = 0.0;
    // Safety limit only: the loop ends as soon as the stalled client has lagged.
    for _ in 0..3000 {
        let text = app.metrics().await;
        lagged = metric_value(&text, "tickstream_stream_lagged_total ");
        processed = metric_value(&text, "tickstream_trades_processed_total ");
        if lagged > 0.0 && processed > 100_000.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(lagged > 0.0, "the stalled client skipped messages");
    assert!(
        processed > 100_000.0,
        "the pipeline kept going: {processed} trades"
    );
    let text = app.metrics().await;
    assert_eq!(metric_value(&text, "tickstream_stream_clients "), 1.0);
    drop(stalled);
    app.stop().await;
}

#[test]
fn sigterm_flushes_every_alert_to_the_file() {
    let golden = golden();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("alerts.jsonl");
    let mut args: Vec<String> = vec![
        "--replay".into(),
        data_path(EQUITIES).display().to_string(),
        "--speed".into(),
        "max".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--alerts-file".into(),
        file.display().to_string(),
    ];
    for rule in rule_args(&golden) {
        args.push("--alert".into());
        args.push(rule);
    }
    let mut child = spawn_binary(&args);
    let stdout = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut address = None;
    let mut finished = false;
    // The log says where it listens, then that the replay finished.
    for line in lines.by_ref() {
        let line = line.expect("log line");
        if let Some(at) = line.find("address=") {
            address = line[at + 8..].split_whitespace().next().map(String::from);
        }
        if line.contains("replay finished") {
            finished = true;
            break;
        }
    }
    assert!(
        finished && address.is_some(),
        "the service started and finished its replay"
    );
    std::thread::spawn(move || for _ in lines {});
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("exits");
    assert!(exit.success(), "exit status {exit:?}");
    let expected = golden["alerts"].as_array().expect("alerts").clone();
    assert_alerts_match(&file_alerts(&file), &expected, "file after SIGTERM");
    let mut text = String::new();
    std::fs::File::open(&file)
        .expect("file")
        .read_to_string(&mut text)
        .expect("read");
    assert!(text.ends_with('\n'));
}

/// A webhook receiver that never answers.
async fn hang() -> StatusCode {
    std::future::pending::<()>().await;
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_webhook_does_not_hold_back_the_file() {
    let rule =
        r#"{"id":"high","kind":"price_above","symbol":"IBM","threshold":183.2,"cooldown":"0s"}"#;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let router = axum::Router::new().route("/hook", axum::routing::post(hang));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("alerts.jsonl");
    let args = ServeArgs {
        webhook: Some(url),
        webhook_timeout: Some("100ms".into()),
        webhook_retries: Some(0),
        alerts_file: Some(file.clone()),
        ..equities_with_rules(vec![rule.to_string()])
    };
    let app = TestApp::spawn(args).await;
    app.wait_for_feeds().await;
    let fired = all_alerts(&app).await;
    assert!(fired.len() >= 3, "{} alerts", fired.len());
    // The file has every alert while the webhook is still stuck on the first ones.
    let mut written = Vec::new();
    for _ in 0..500 {
        written = std::fs::read_to_string(&file)
            .map(|text| text.lines().count())
            .map(|n| vec![(); n])
            .unwrap_or_default();
        if written.len() == fired.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(written.len(), fired.len());
    let text = app.metrics().await;
    let given_up = metric_value(
        &text,
        "tickstream_alert_sink_failures_total{sink=\"webhook\"} ",
    );
    assert!(
        (given_up as usize) < fired.len(),
        "the webhook is still working through its queue ({given_up} of {})",
        fired.len()
    );
    app.stop().await;
    assert_alerts_match(&file_alerts(&file), &fired, "file beside a hanging webhook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_edits_need_the_api_token_when_one_is_configured() {
    const TOKEN: &str = "correct-horse-battery-staple";
    let app = TestApp::spawn(ServeArgs {
        api_token: Some(TOKEN.into()),
        ..equities_with_rules(Vec::new())
    })
    .await;
    let rule = r#"{"id":"guarded","kind":"price_above","symbol":"IBM","threshold":200}"#;
    let send = |method: reqwest::Method, path: &str, authorization: Option<String>| {
        let mut request = app
            .client
            .request(method, app.url(path))
            .header("content-type", "application/json")
            .body(rule);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap_or_default().to_string());
            let body: Value = response.json().await.expect("json error body");
            (status, challenge, body)
        }
    };
    let refused = [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_string()),
    ];
    for authorization in refused {
        for (method, path) in [
            (reqwest::Method::POST, "/v1/alerts/rules"),
            (reqwest::Method::DELETE, "/v1/alerts/rules/guarded"),
        ] {
            let (status, challenge, body) = send(method.clone(), path, authorization.clone()).await;
            assert_eq!(
                status, 401,
                "{method} {path} with {authorization:?}: {body}"
            );
            assert_eq!(body["error"]["code"], "unauthorized");
            assert_eq!(challenge.as_deref(), Some("Bearer"));
            assert!(
                !body.to_string().contains(TOKEN),
                "the error never echoes the token"
            );
        }
    }
    let (status, _) = app.get("/v1/alerts/rules").await;
    assert_eq!(status, 200, "reading needs no token");
    let (status, _, body) = send(
        reqwest::Method::POST,
        "/v1/alerts/rules",
        Some(format!("bearer {TOKEN}")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = send(
        reqwest::Method::DELETE,
        "/v1/alerts/rules/guarded",
        Some(format!("Bearer {TOKEN}")),
    )
    .await;
    assert_eq!((status, &body["id"]), (200, &json!("guarded")));
    app.stop().await;
}

/// DELETEs rule `id`; returns the status.
async fn delete_rule(app: &TestApp, id: &str) -> u16 {
    app.client
        .delete(app.url(&format!("/v1/alerts/rules/{id}")))
        .send()
        .await
        .expect("delete")
        .status()
        .as_u16()
}
