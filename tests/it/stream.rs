//! The live stream as browsers and other clients use it: SSE `id:`/`retry:` and a reconnect
//! with `Last-Event-ID` that gets every alert it missed (against the golden alerts of
//! `data/golden/alerts.py`), and the WebSocket variant with its subscriptions changed in flight.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::alerts::{assert_alerts_match, equities_with_rules, golden, rule_args};
use crate::support::*;
use tickstream::config::ServeArgs;

/// Reads SSE events until `done` says so, or `limit` passes (then returns what came).
async fn read_sse(
    response: reqwest::Response,
    limit: Duration,
    mut done: impl FnMut(&[SseEvent]) -> bool,
) -> Vec<SseEvent> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await {
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        events.extend(take_sse_events(&mut buffer));
        if done(&events) {
            break;
        }
    }
    events
}

fn alerts_of(events: &[SseEvent]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.kind == "alert")
        .map(|e| e.data.clone())
        .collect()
}

/// The run part of an event id (`RUN-ALERT`).
fn run_of(id: &str) -> &str {
    id.split_once('-').expect("RUN-ALERT").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_last_event_id_gets_every_alert_it_missed() {
    let golden = golden();
    let expected: Vec<Value> = golden["alerts"].as_array().expect("alerts").clone();
    // Paced, so alerts fire while the first connection is open and after it is gone.
    let args = ServeArgs {
        speed: Some("5000".into()),
        max_pause: Some("1ms".into()),
        ..equities_with_rules(rule_args(&golden))
    };
    let app = TestApp::spawn(args).await;
    let response = app
        .client
        .get(app.url("/v1/stream?events=alert"))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let first = read_sse(response, Duration::from_secs(60), |events| {
        alerts_of(events).len() >= 2
    })
    .await;
    // The stream opens with the reconnection delay and a resume point.
    let opening = &first[0];
    assert_eq!(opening.retry, Some(1000), "{opening:?}");
    let run = run_of(opening.id.as_deref().expect("opening id")).to_string();
    for event in &first {
        let id = event.id.as_deref().expect("every event has an id");
        assert_eq!(run_of(id), run, "one run: {event:?}");
        if event.kind == "alert" {
            assert_eq!(id, format!("{run}-{}", event.data["id"]), "{event:?}");
        }
    }
    let before = alerts_of(&first);
    assert!(!before.is_empty(), "alerts arrived while connected");
    let last_id = first.last().and_then(|e| e.id.clone()).expect("last id");
    // Gone while the replay goes on; back once every alert has fired.
    app.wait_for_feeds().await;
    let response = app
        .client
        .get(app.url("/v1/stream?events=alert"))
        .header("Last-Event-ID", &last_id)
        .send()
        .await
        .expect("resume");
    let final_id = expected.last().expect("golden alerts")["id"].clone();
    let second = read_sse(response, Duration::from_secs(60), |events| {
        events
            .iter()
            .any(|e| e.kind == "alert" && e.data["id"] == final_id)
    })
    .await;
    let after = alerts_of(&second);
    assert!(
        !after.is_empty(),
        "the replay fired alerts while the client was away"
    );
    // Together: every golden alert from the first one received, once each, in order.
    let first_received = before[0]["id"].as_u64().expect("id");
    let tail: Vec<Value> = expected
        .iter()
        .filter(|a| a["id"].as_u64() >= Some(first_received))
        .cloned()
        .collect();
    let received: Vec<Value> = before.into_iter().chain(after).collect();
    assert_alerts_match(&received, &tail, "first connection, then the resumed one");

    // An id from another run of the service: every alert the log holds, from the first.
    let response = app
        .client
        .get(app.url("/v1/stream?events=alert&symbols=AIG"))
        .header("Last-Event-ID", "1-5")
        .send()
        .await
        .expect("resume from another run");
    let aig: Vec<Value> = expected
        .iter()
        .filter(|a| a["symbol"] == "AIG")
        .cloned()
        .collect();
    let final_aig = aig.last().expect("AIG alerts")["id"].clone();
    let events = read_sse(response, Duration::from_secs(60), |events| {
        events
            .iter()
            .any(|e| e.kind == "alert" && e.data["id"] == final_aig)
    })
    .await;
    assert_alerts_match(&alerts_of(&events), &aig, "after a restart, filtered");

    // Resuming with stats: the latest stats of the watched symbol come at once, equal to the
    // symbol's stats (the replay is over: nothing changes any more).
    let response = app
        .client
        .get(app.url(&format!(
            "/v1/stream?symbols=IBM&last_event_id={run}-{}",
            final_id
        )))
        .send()
        .await
        .expect("resume with stats");
    let events = read_sse(response, Duration::from_secs(30), |events| {
        events.iter().any(|e| e.kind == "stats")
    })
    .await;
    assert!(alerts_of(&events).is_empty(), "nothing missed: {events:?}");
    let stats = events
        .iter()
        .find(|e| e.kind == "stats")
        .expect("stats at once");
    let (_, body) = app.get("/v1/symbols/IBM/stats").await;
    assert_eq!(stats.data, body);

    app.assert_errors(&[
        ("/v1/stream?last_event_id=yesterday", 400, "bad_parameter"),
        ("/v1/stream?last_event_id=12", 400, "bad_parameter"),
    ])
    .await;
    let response = app
        .client
        .get(app.url("/v1/stream"))
        .header("Last-Event-ID", "1-x")
        .send()
        .await
        .expect("bad header");
    assert_eq!(response.status(), 400);
    app.stop().await;
}

/// The next JSON text message of a WebSocket.
async fn next_json<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a message within 30 s")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("JSON message");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_stream_resumes_and_changes_its_subscriptions_in_flight() {
    let golden = golden();
    let expected: Vec<Value> = golden["alerts"].as_array().expect("alerts").clone();
    let app = TestApp::spawn(equities_with_rules(rule_args(&golden))).await;
    app.wait_for_feeds().await;
    let url = format!(
        "ws://{}/v1/stream/ws?symbols=IBM&events=alert&last_event_id=1-0",
        app.address
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket upgrade");
    assert_eq!(response.status(), 101);
    let hello = next_json(&mut socket).await;
    assert_eq!(hello["event"], "subscribed", "{hello}");
    assert_eq!(hello["symbols"], json!(["IBM"]));
    assert_eq!(hello["events"], json!(["alert"]));
    let run = run_of(hello["id"].as_str().expect("id")).to_string();
    // Resumed from another run: every IBM alert, as SSE would send it.
    let ibm: Vec<Value> = expected
        .iter()
        .filter(|a| a["symbol"] == "IBM")
        .cloned()
        .collect();
    let mut alerts = Vec::new();
    while alerts.len() < ibm.len() {
        let message = next_json(&mut socket).await;
        assert_eq!(message["event"], "alert", "{message}");
        assert_eq!(message["id"], format!("{run}-{}", message["data"]["id"]));
        alerts.push(message["data"].clone());
    }
    assert_alerts_match(&alerts, &ibm, "WebSocket, resumed");

    // Stats too: the latest of IBM comes at once.
    socket
        .send(Message::text(
            json!({"op": "set", "symbols": ["IBM"], "events": ["alert", "stats"]}).to_string(),
        ))
        .await
        .expect("send");
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["event"], "subscribed", "{ack}");
    assert_eq!(ack["events"], json!(["alert", "stats"]));
    let stats = next_json(&mut socket).await;
    assert_eq!(stats["event"], "stats", "{stats}");
    let (_, ibm_stats) = app.get("/v1/symbols/IBM/stats").await;
    assert_eq!(stats["data"], ibm_stats);

    // Subscribing to AIG adds it, and its stats follow.
    socket
        .send(Message::text(
            json!({"op": "subscribe", "symbols": ["AIG"]}).to_string(),
        ))
        .await
        .expect("send");
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["symbols"], json!(["AIG", "IBM"]), "{ack}");
    let stats = next_json(&mut socket).await;
    assert_eq!(
        (stats["event"].as_str(), stats["data"]["symbol"].as_str()),
        (Some("stats"), Some("AIG")),
        "{stats}"
    );

    // A bad message is answered and the stream goes on.
    for bad in [
        json!({"op": "subscribe"}).to_string(),
        json!({"op": "set", "symbols": null, "events": ["trades"]}).to_string(),
        "not json".to_string(),
    ] {
        socket.send(Message::text(bad.clone())).await.expect("send");
        let answer = next_json(&mut socket).await;
        assert_eq!(answer["event"], "error", "{bad}: {answer}");
        assert_eq!(answer["error"]["code"], "bad_parameter");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    socket
        .send(Message::text(
            json!({"op": "unsubscribe", "symbols": ["IBM", "AIG"]}).to_string(),
        ))
        .await
        .expect("send");
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["symbols"], json!([]), "{ack}");
    // Unsubscribing while watching every symbol is refused by name.
    socket
        .send(Message::text(
            json!({"op": "set", "symbols": null, "events": ["alert"]}).to_string(),
        ))
        .await
        .expect("send");
    assert_eq!(next_json(&mut socket).await["symbols"], Value::Null);
    socket
        .send(Message::text(
            json!({"op": "unsubscribe", "symbols": ["IBM"]}).to_string(),
        ))
        .await
        .expect("send");
    assert_eq!(next_json(&mut socket).await["event"], "error");

    // Not an upgrade: a JSON 400 that says what the endpoint is.
    let (status, body) = app.get("/v1/stream/ws").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_parameter")),
        "{body}"
    );
    // The service stopping closes the socket with 1001 (going away).
    let stopping = tokio::spawn(app.stop());
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("closed within 30 s")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001), "going away");
    stopping.await.expect("stopped");
}
