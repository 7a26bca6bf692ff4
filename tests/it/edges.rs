//! The edges a new user meets: hand-made files, every documented command line, stopping in any
//! state. Each test protects one defect found from outside.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tickstream::config::ServeArgs;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

/// Writes `text` to `dir/name`; returns its path as a string.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_a_file_with_an_unsorted_row_finishes() {
    // A: t, t+2, t+3, t+5, t+4 (one row 1 ms out of order, within the lateness); B: t.
    let dir = tempfile::tempdir().expect("dir");
    let t = 1_700_000_000_000i64;
    let mut a = String::from("ts,symbol,price,size\n");
    for (offset, price) in [(0, 10.0), (2, 11.0), (3, 12.0), (5, 13.0), (4, 14.0)] {
        a.push_str(&format!("{},X,{price},1\n", t + offset));
    }
    let a = write(dir.path(), "a.csv", &a);
    let b = write(
        dir.path(),
        "b.csv",
        &format!("ts,symbol,price,size\n{t},X,20,1\n"),
    );
    let app = TestApp::spawn(ServeArgs {
        replay: vec![a.into(), b.into()],
        speed: Some("max".into()),
        ..ServeArgs::default()
    })
    .await;
    let feeds = app.wait_for_feeds().await;
    for feed in feeds["feeds"].as_array().expect("feeds") {
        assert_eq!(feed["state"], "finished", "{feeds}");
        assert_eq!(feed["late"], 0, "{feeds}");
    }
    let (_, stats) = app.get("/v1/symbols/X/stats?window=1m").await;
    assert_eq!(stats["trade_count"], 6, "{stats}");
    // t+5 is the latest trade by event time.
    assert_eq!(stats["windows"]["1m"]["close"], 13.0, "{stats}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ties_across_sources_follow_the_listed_order_across_batches() {
    // 1,500 rows at one millisecond in the first-listed file (more than one batch), 1,000 in
    // the second: the second file's last row is the close.
    let dir = tempfile::tempdir().expect("dir");
    let t = 1_700_000_000_000i64;
    let mut first = String::from("ts,symbol,price,size\n");
    for i in 0..1500 {
        first.push_str(&format!("{t},X,{}.25,1\n", 100 + i % 7));
    }
    let mut second = String::from("ts,symbol,price,size\n");
    for i in 0..1000 {
        second.push_str(&format!("{t},X,{}.5,1\n", 200 + i % 11));
    }
    let first = write(dir.path(), "first.csv", &first);
    let second = write(dir.path(), "second.csv", &second);
    let app = TestApp::spawn(ServeArgs {
        replay: vec![first.into(), second.into()],
        ..ServeArgs::default()
    })
    .await;
    app.wait_for_feeds().await;
    let (_, stats) = app.get("/v1/symbols/X/stats?window=1m").await;
    let window = &stats["windows"]["1m"];
    assert_eq!(window["count"], 2500, "{stats}");
    assert_eq!(window["open"], 100.25, "{stats}");
    assert_eq!(window["close"], 200.0 + (999 % 11) as f64 + 0.5, "{stats}");
    let (_, candles) = app.get("/v1/symbols/X/candles?interval=1s").await;
    let bar = &candles["candles"][0];
    assert_eq!(bar["close"], window["close"], "{candles}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_closes_live_connections_with_a_websocket_close() {
    // A venue that accepts, reads the subscription, then waits to see how the client leaves.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("bound");
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<&'static str>();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let mut subscribed = Some(subscribed_tx);
        let outcome = loop {
            match socket.next().await {
                Some(Ok(Message::Text(_))) => {
                    if let Some(tx) = subscribed.take() {
                        let _ = tx.send(());
                    }
                }
                Some(Ok(Message::Close(_))) => break "close",
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break "dropped",
            }
        };
        let _ = seen_tx.send(outcome);
    });
    let app = TestApp::spawn(ServeArgs {
        feed: vec![format!("binance:BTCUSDT@ws://{address}")],
        ..ServeArgs::default()
    })
    .await;
    tokio::time::timeout(Duration::from_secs(20), subscribed_rx)
        .await
        .expect("the connector subscribes")
        .expect("subscribed");
    app.stop().await;
    let outcome = tokio::time::timeout(Duration::from_secs(10), seen_rx)
        .await
        .expect("the venue sees the client leave")
        .expect("outcome");
    assert_eq!(
        outcome, "close",
        "the connection must end with a WebSocket close"
    );
}

/// Sends SIGTERM and returns how long the process took to exit, and its status.
fn terminate(mut child: std::process::Child) -> (Duration, std::process::ExitStatus) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let sent = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (sent.elapsed(), status);
        }
        if sent.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the process did not exit within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_ends_the_process_within_seconds_in_every_state() {
    let dir = tempfile::tempdir().expect("dir");
    let t = 1_700_000_000_000i64;
    let a = write(
        dir.path(),
        "a.csv",
        &format!(
            "ts,symbol,price,size\n{t},X,1,1\n{},X,1,1\n{},X,1,1\n{},X,1,1\n{},X,1,1\n",
            t + 2,
            t + 3,
            t + 5,
            t + 4
        ),
    );
    let b = write(
        dir.path(),
        "b.csv",
        &format!("ts,symbol,price,size\n{t},X,1,1\n"),
    );
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let listen = ["--listen".to_string(), "127.0.0.1:0".to_string()];
    let states: Vec<(&str, Vec<String>)> = vec![
        (
            "merged replays finished",
            vec![
                "--replay".into(),
                a.clone(),
                "--replay".into(),
                b,
                "--speed".into(),
                "max".into(),
            ],
        ),
        (
            "a paced replay mid-file",
            vec![
                "--replay".into(),
                data_path(BTCUSDT).display().to_string(),
                "--speed".into(),
                "1".into(),
            ],
        ),
        (
            "a live feed in backoff",
            vec![
                "--feed".into(),
                format!("binance:BTCUSDT@ws://{closed_port}"),
            ],
        ),
    ];
    for (state, args) in states {
        let args: Vec<String> = args.into_iter().chain(listen.iter().cloned()).collect();
        let (child, _address, _log) = start_binary(&args);
        std::thread::sleep(Duration::from_millis(1500));
        let (took, status) = terminate(child);
        assert!(status.success(), "{state}: {status:?}");
        assert!(
            took < Duration::from_secs(12),
            "{state}: exit took {took:?}"
        );
        eprintln!("{state}: exited {took:?} after SIGTERM");
    }
}

/// Runs the binary to completion with `args`; returns (exit success, stderr).
fn run(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickstream"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes()).expect("stdin");
    }
    let output = child.wait_with_output().expect("exits");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_command_lines_fail_with_one_clear_message() {
    let dir = tempfile::tempdir().expect("dir");
    let empty = write(dir.path(), "empty.csv", "");
    let headerless = write(dir.path(), "headerless.csv", "1700000000000,X,1.5,2\n");
    let wrong_header = write(dir.path(), "wrong.csv", "time,ticker,px,qty\n1,X,1,1\n");
    let empty_jsonl = write(dir.path(), "empty.jsonl", "\n\n");
    let listen = "127.0.0.1:0";
    // (arguments, what the message must name, a phrase it must hold exactly once)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--replay", "/nonexistent/trades.csv"],
            "No such file or directory",
        ),
        (
            vec!["--config", "/nonexistent/tickstream.toml"],
            "No such file or directory",
        ),
        (
            vec![
                "mock-exchange",
                "--file",
                "/nonexistent/trades.csv",
                "--listen",
                listen,
            ],
            "No such file or directory",
        ),
        (vec!["--feed", "nasdaq:AAPL"], "coinbase-exchange"),
        (
            vec![
                "mock-exchange",
                "--provider",
                "nasdaq",
                "--file",
                &empty,
                "--listen",
                listen,
            ],
            "coinbase-exchange",
        ),
        (vec!["--replay", "trades.txt"], ".frames.jsonl"),
        (vec!["--speed", "-5"], "positive number"),
        (vec!["--candle-history", "-1"], "is negative"),
        (vec!["--candle-history", "lots"], "not a whole number"),
        (vec!["--listen", "localhost:99999"], "not a port"),
        (vec!["--replay", &empty], "is empty"),
        (vec!["--replay", &empty_jsonl], "is empty"),
        (vec!["--replay", &headerless], "no `ts` column"),
        (vec!["--replay", &wrong_header], "no `ts` column"),
    ];
    for (args, phrase) in cases {
        let mut full: Vec<&str> = args.clone();
        if !args.contains(&"mock-exchange") && !args.contains(&"--listen") {
            full.extend(["--listen", listen]);
        }
        let (success, stderr) = run(&full, None);
        assert!(!success, "{args:?} should fail: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: one error line: {stderr}");
        assert_eq!(
            errors[0].matches(phrase).count(),
            1,
            "{args:?}: {phrase:?} said once: {stderr}"
        );
    }
}

#[test]
fn listen_addresses_take_the_common_spellings() {
    use tickstream::config::parse_listen;
    let loopback = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    for (text, expected) in [
        ("8080", loopback(8080)),
        (":8080", loopback(8080)),
        ("localhost:8080", loopback(8080)),
        ("127.0.0.1:0", loopback(0)),
        (
            "0.0.0.0:9000",
            std::net::SocketAddr::from(([0, 0, 0, 0], 9000)),
        ),
        ("[::1]:8080", "[::1]:8080".parse().expect("v6")),
    ] {
        assert_eq!(parse_listen(text).expect(text), expected, "{text}");
    }
    for text in ["", "localhost", "host:port", "99999", "localhost:-1"] {
        let error = parse_listen(text).expect_err(text).to_string();
        assert!(error.contains("listen"), "{text}: {error}");
    }
}

#[test]
fn rust_version_covers_what_the_locked_dependencies_need() {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success());
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let version = |text: &str| -> Vec<u64> {
        text.split('.')
            .map(|part| part.parse().expect("numeric version"))
            .chain(std::iter::repeat(0))
            .take(3)
            .collect()
    };
    let packages = metadata["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["name"] == "tickstream")
        .and_then(|p| p["rust_version"].as_str())
        .expect("tickstream declares a rust-version");
    let (needed, by) = packages
        .iter()
        .filter(|p| p["name"] != "tickstream")
        .filter_map(|p| Some((version(p["rust_version"].as_str()?), p["name"].to_string())))
        .max()
        .expect("some dependency declares one");
    assert!(
        version(ours) >= needed,
        "rust-version {ours} is below the {needed:?} that {by} in Cargo.lock needs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_means_every_source_has_delivered_or_ended() {
    // The only feed points at a closed port: it sits in backoff, and the service is not ready.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let app = TestApp::spawn(ServeArgs {
        feed: vec![format!("binance:BTCUSDT@ws://{closed}")],
        backoff_max: Some("50ms".into()),
        ..ServeArgs::default()
    })
    .await;
    wait_for_feed(&app, |f| {
        f["disconnects"]["connect_failed"].as_u64() >= Some(2)
    })
    .await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("binance:BTCUSDT"), "{message}");
    app.stop().await;

    // A replay is ready once it has delivered (here: finished).
    let app = TestApp::spawn(ServeArgs {
        replay: vec![data_path(EQUITIES)],
        ..ServeArgs::default()
    })
    .await;
    app.wait_for_feeds().await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    app.stop().await;
}

#[test]
fn a_replay_reads_standard_input() {
    // The recorded equities day as JSON lines on the binary's standard input.
    let trades = load_trades(EQUITIES);
    let mut text = String::new();
    for t in trades.iter().take(5_000) {
        text.push_str(&format!(
            "{{\"ts\":{},\"symbol\":\"{}\",\"price\":{},\"size\":{}}}\n",
            t.exchange_ts / 1_000_000,
            t.symbol.as_str(),
            t.price,
            t.size
        ));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickstream"))
        .args(["--replay", "-", "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut input = child.stdin.take().expect("stdin");
    std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    // Standard error is read up to the address, then closed: the service must go on (and stop
    // cleanly) with nowhere to log.
    let stderr = child.stderr.take().expect("stderr");
    let mut address = None;
    for line in std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
    {
        if let Some(at) = line.find("address=") {
            address = line[at + 8..].split_whitespace().next().map(String::from);
            break;
        }
    }
    let address = address.expect("the service logs its address");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let feed = runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut last = serde_json::Value::Null;
        for _ in 0..1000 {
            let body: serde_json::Value = client
                .get(format!("http://{address}/v1/feeds"))
                .send()
                .await
                .expect("feeds")
                .json()
                .await
                .expect("json");
            if body["feeds"][0]["state"] == "finished" {
                return body["feeds"][0].clone();
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("standard input never finished: {last}");
    });
    let (_, status) = terminate(child);
    assert!(status.success(), "{status:?}");
    assert_eq!(feed["source"], "stdin", "{feed}");
    assert_eq!(feed["trades"], 5_000, "{feed}");
    assert_eq!(feed["malformed"], 0, "{feed}");
}

#[test]
fn long_replays_log_their_progress_and_a_summary_per_file() {
    // Not a terminal: a progress line per source every few seconds.
    let args = strings(&[
        "--replay",
        &data_path(BTCUSDT).display().to_string(),
        "--speed",
        "20",
        "--listen",
        "127.0.0.1:0",
    ]);
    let (child, _, log) = start_binary(&args);
    let line = (0..30)
        .find_map(|_| {
            log.recv_timeout(Duration::from_secs(1))
                .ok()
                .filter(|line| line.contains("replay progress"))
        })
        .expect("a progress line within seconds");
    let (_, status) = terminate(child);
    assert!(status.success());
    for field in ["rows=", "rows_per_s=", "percent=", "eta="] {
        assert!(line.contains(field), "{field} in {line}");
    }
    // A file's end: its summary.
    let args = strings(&[
        "--replay",
        &data_path(EQUITIES).display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let (child, _, log) = start_binary(&args);
    let line = (0..60)
        .find_map(|_| {
            log.recv_timeout(Duration::from_secs(1))
                .ok()
                .filter(|line| line.contains("replay finished"))
        })
        .expect("a summary line");
    let (_, status) = terminate(child);
    assert!(status.success());
    for field in [
        "rows=49644",
        "trades=49644",
        "malformed=0",
        "rows_per_s=",
        "seconds=",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
}

#[test]
fn rules_edited_over_the_api_survive_sigkill_and_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let rules_file = dir.path().join("state").join("rules.json");
    let args = strings(&[
        "--replay",
        &data_path(EQUITIES).display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--rules-file",
        &rules_file.display().to_string(),
        "--alert",
        r#"{"id":"configured-1","kind":"price_above","symbol":"IBM","threshold":185}"#,
        "--alert",
        r#"{"id":"configured-2","kind":"stale","symbol":"*","after":"30s"}"#,
    ]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = reqwest::Client::new();
    let rules = |address: &str| {
        let url = format!("http://{address}/v1/alerts/rules");
        runtime.block_on(async {
            client
                .get(url)
                .send()
                .await
                .expect("rules")
                .json::<serde_json::Value>()
                .await
                .expect("JSON")["rules"]
                .clone()
        })
    };
    let (child, address, _log) = start_binary(&args);
    runtime.block_on(async {
        for body in [
            r#"{"kind":"volume","symbol":"AIG","window":"1m","threshold":5000}"#,
            r#"{"id":"mine","kind":"price_below","symbol":"AIG","threshold":40}"#,
            r#"{"kind":"change_pct","symbol":"*","window":"1m","threshold":0.5}"#,
        ] {
            let response = client
                .post(format!("http://{address}/v1/alerts/rules"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("post");
            assert_eq!(response.status().as_u16(), 201);
        }
        for id in ["configured-2", "mine"] {
            let response = client
                .delete(format!("http://{address}/v1/alerts/rules/{id}"))
                .send()
                .await
                .expect("delete");
            assert_eq!(response.status().as_u16(), 200);
        }
    });
    let before = rules(&address);
    let ids: Vec<&str> = before
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, ["configured-1", "volume-1", "change_pct-2"]);
    // A crash, not a stop.
    let mut child = child;
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let (child, address, _log) = start_binary(&args);
    assert_eq!(
        rules(&address),
        before,
        "the rules after SIGKILL and restart"
    );
    let (_, status) = terminate(child);
    assert!(status.success());
    // The file keeps only the API's edits, apart from the configured rules.
    let edits: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rules_file).expect("rules file")).expect("JSON");
    assert_eq!(edits["removed"], serde_json::json!(["configured-2"]));
    assert_eq!(edits["added"].as_array().map(Vec::len), Some(2));
}
