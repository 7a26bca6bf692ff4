//! Scale-out on a real NATS JetStream cluster (three `nats-server` processes on loopback): the
//! real binary as `tickstream ingest` and as analytics nodes, every answer compared with one
//! process replaying the same recorded day.

use std::time::{Duration, Instant};

use serde_json::Value;
use tickstream::cluster::partition::partition_of;
use tickstream::config::ServeArgs;

use crate::nats::{NatsCluster, nats_available};

/// One scale-out test at a time: each starts a NATS cluster and several processes, and two at
/// once on two cores would be testing the machine's patience rather than failover.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
use crate::support::*;

/// The real binary in one role, its HTTP address, and its log (printed when a test fails).
struct Proc {
    name: String,
    child: std::process::Child,
    address: String,
    client: reqwest::Client,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        let (child, address, lines) = start_binary(&strings(args));
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines {
                kept.lock().expect("log").push(line);
            }
        });
        Proc {
            name: args.iter().take(5).copied().collect::<Vec<_>>().join(" "),
            child,
            address,
            client: reqwest::Client::new(),
            log,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        match self
            .client
            .get(format!("http://{}{path}", self.address))
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// `method path` with a JSON body (or none): the status and the JSON answer.
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("http://{}{path}", self.address))
            .timeout(Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("http://{}/metrics", self.address))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Whether the process has logged a line containing `needle`.
    fn logged(&self, needle: &str) -> bool {
        self.log
            .lock()
            .is_ok_and(|log| log.iter().any(|line| line.contains(needle)))
    }

    /// SIGKILL.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for the exit.
    fn terminate(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
            let start = log.len().saturating_sub(60);
            eprintln!("--- the last log lines of `{}` ---", self.name);
            for line in &log[start..] {
                eprintln!("{line}");
            }
        }
    }
}

/// The events (`event:` kind, `data:` as JSON, `id:`) of one live stream, gathered as they come.
type Events = std::sync::Arc<std::sync::Mutex<Vec<(String, Value, String)>>>;

/// Follows `GET {path}` (Server-Sent Events) on `address` in the background.
fn follow(address: &str, path: &str) -> Events {
    let events: Events = Events::default();
    let kept = std::sync::Arc::clone(&events);
    let url = format!("http://{address}{path}");
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let Ok(response) = reqwest::get(&url).await else {
            return;
        };
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            let mut kept = kept.lock().expect("events");
            for event in take_sse_events(&mut buffer)
                .into_iter()
                .filter(|e| !e.kind.is_empty())
            {
                kept.push((event.kind, event.data, event.id.unwrap_or_default()));
            }
        }
    });
    events
}

/// The last `stats` event of `symbol` in `events`.
fn last_stats(events: &Events, symbol: &str) -> Option<Value> {
    let events = events.lock().expect("events");
    events
        .iter()
        .rev()
        .find(|(kind, data, _)| kind == "stats" && data["symbol"] == symbol)
        .map(|(_, data, _)| data.clone())
}

fn node(urls: &str, name: &str) -> Proc {
    node_with(urls, name, &[])
}

/// An analytics node with more arguments.
fn node_with(urls: &str, name: &str, more: &[&str]) -> Proc {
    let mut args = vec![
        "serve",
        "--nats",
        urls,
        "--node",
        name,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(more);
    Proc::start(&args)
}

/// Waits (up to `limit`) for `check` to hold; returns how long it took.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {limit:?}");
}

/// Whether every partition has an owner that has caught up, and no consumer lags — as `node`
/// sees the cluster — with the owners among `owners`.
async fn settled(node: &Proc, owners: &[&str]) -> bool {
    let (status, body) = node.get("/v1/cluster").await;
    if status != 200 || body["partitions"].as_u64().unwrap_or(0) == 0 {
        return false;
    }
    body["partition_owners"]
        .as_array()
        .is_some_and(|partitions| {
            partitions.iter().all(|p| {
                p["owner"]
                    .as_str()
                    .is_some_and(|owner| owners.contains(&owner))
                    && p["desired"] == p["owner"]
                    && p["lease"]["rebuilding"] == false
                    && p["lease"]["pending"] == 0
            })
        })
}

/// Every answer about `symbols` that must equal a single process's.
fn paths(symbols: &[&str]) -> Vec<String> {
    // Across symbols: gathered from every node, merged, ranked and limited again.
    let mut paths = vec![
        "/v1/symbols".to_string(),
        "/v1/stats".to_string(),
        "/v1/stats?window=5m&sort=volume&limit=1".to_string(),
        "/v1/stats?window=1h&sort=change_pct&order=asc".to_string(),
    ];
    for symbol in symbols {
        paths.push(format!("/v1/symbols/{symbol}/stats"));
        for interval in ["1s", "1m", "5m"] {
            paths.push(format!("/v1/symbols/{symbol}/candles?interval={interval}"));
        }
        for indicator in ["sma", "ema", "rsi", "macd", "bbands", "atr"] {
            paths.push(format!(
                "/v1/symbols/{symbol}/indicators/{indicator}?interval=1m"
            ));
        }
    }
    paths
}

/// Every path answered by `node` exactly as by the single process.
async fn assert_same_answers(single: &TestApp, node: &Proc, symbols: &[&str], context: &str) {
    for path in paths(symbols) {
        let (expected_status, expected) = single.get(&path).await;
        assert_eq!(expected_status, 200, "{path}: {expected}");
        let (status, actual) = node.get(&path).await;
        assert_eq!(status, 200, "{context} {path}: {actual}");
        assert_eq!(
            actual, expected,
            "{context}: {path} differs from one process's answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_equal_one_process_through_a_node_kill_and_a_server_kill() {
    if !nats_available("cluster") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut nats = NatsCluster::start(3).await;
    let urls = nats.urls();
    let day = data_path(EQUITIES);
    let day = day.to_str().expect("path");
    let single = TestApp::spawn(ServeArgs {
        replay: vec![day.into()],
        ..ServeArgs::default()
    })
    .await;
    single.wait_for_feeds().await;

    let mut a = node(&urls, "a");
    let mut b = node(&urls, "b");
    // Paced, so that the faults below land while the day is still being published.
    let ingest = Proc::start(&[
        "ingest",
        "--nats",
        &urls,
        "--partitions",
        "8",
        "--replay",
        day,
        "--speed",
        "3000",
        "--listen",
        "127.0.0.1:0",
    ]);
    // Both nodes own partitions and the stream has IBM's first trades.
    wait_until(
        "two nodes sharing the partitions",
        Duration::from_secs(60),
        || settled(&a, &["a", "b"]),
    )
    .await;
    wait_until("trades flowing", Duration::from_secs(60), || async {
        ingest.metric("tickstream_cluster_published_total").await > 5_000.0
    })
    .await;

    // Kill IBM's owner mid-stream: its partitions move to the other node.
    let ibm = partition_of("IBM", 8) as usize;
    let (_, view) = a.get("/v1/cluster").await;
    let owner = view["partition_owners"][ibm]["owner"]
        .as_str()
        .expect("IBM's partition has an owner")
        .to_string();
    let (victim, survivor, survivor_name) = if owner == "a" {
        (&mut a, &b, "b")
    } else {
        (&mut b, &a, "a")
    };
    victim.kill();
    let moved = wait_until(
        "the killed node's partitions served by the survivor",
        Duration::from_secs(20),
        || async {
            let (_, view) = survivor.get("/v1/cluster").await;
            view["partition_owners"]
                .as_array()
                .is_some_and(|ps| ps.iter().all(|p| p["served_here"] == true))
        },
    )
    .await;
    eprintln!("partitions moved {moved:?} after the SIGKILL");
    // The lease expires after 5 s; the next round (1 s) takes it; the rebuild is quick.
    assert!(moved < Duration::from_secs(12), "moved after {moved:?}");
    let (status, stats) = survivor.get("/v1/symbols/IBM/stats").await;
    assert_eq!(status, 200, "{stats}");

    // Kill one NATS server of three while the day is published: nothing is lost.
    let (_, feeds) = ingest.get("/v1/feeds").await;
    assert_eq!(feeds["feeds"][0]["state"], "running", "mid-stream: {feeds}");
    nats.kill(1);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The killed node comes back (its partitions return to it) and a third node joins.
    let killed_name = if survivor_name == "a" { "b" } else { "a" };
    let restarted = node(&urls, killed_name);
    let c = node(&urls, "c");
    let (a, b) = if killed_name == "a" {
        (restarted, b)
    } else {
        (a, restarted)
    };
    wait_until("the ingest finished", Duration::from_secs(120), || async {
        let (_, feeds) = ingest.get("/v1/feeds").await;
        feeds["feeds"][0]["state"] == "finished"
    })
    .await;
    let (_, feeds) = ingest.get("/v1/feeds").await;
    assert_eq!(
        feeds["feeds"][0]["trades"], 49_644,
        "every trade of the day acknowledged by the stream: {feeds}"
    );
    for n in [&a, &b, &c] {
        wait_until("three nodes settled", Duration::from_secs(60), || {
            settled(n, &["a", "b", "c"])
        })
        .await;
    }
    for (name, n) in [("a", &a), ("b", &b), ("c", &c)] {
        assert_same_answers(
            &single,
            n,
            &["IBM", "AIG"],
            &format!("three nodes, node {name}"),
        )
        .await;
    }
    // Node c leaves cleanly: its partitions go back to a and b.
    let mut c = c;
    c.terminate();
    for n in [&a, &b] {
        wait_until("two nodes settled", Duration::from_secs(30), || {
            settled(n, &["a", "b"])
        })
        .await;
    }
    for (name, n) in [("a", &a), ("b", &b)] {
        assert_same_answers(
            &single,
            n,
            &["IBM", "AIG"],
            &format!("two nodes, node {name}"),
        )
        .await;
    }
    let (status, body) = a.get("/v1/symbols/NOPE/stats").await;
    assert_eq!(status, 404, "{body}");
    single.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_day_is_dropped_by_the_duplicate_window_and_counted() {
    if !nats_available("cluster") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = NatsCluster::start(1).await;
    let urls = nats.urls();
    // Binance's raw frames: every trade has the venue's id, so a resend has the same message id.
    let frames = data_path("binance_btcusdt_20240808.frames.jsonl");
    let frames = frames.to_str().expect("path");
    let single = TestApp::spawn(ServeArgs {
        replay: vec![frames.into()],
        ..ServeArgs::default()
    })
    .await;
    single.wait_for_feeds().await;
    let (_, reference) = single.get("/v1/symbols/BTCUSDT/stats").await;
    let trades = reference["trade_count"].as_u64().expect("trades");
    assert!(trades > 9_000, "{reference}");

    let a = node(&urls, "a");
    // Not ready before it has joined (no ingest has created the stream yet).
    let (status, body) = a.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("joined")),
        "{body}"
    );
    let ingest = |run: &str| {
        Proc::start(&[
            "ingest",
            "--nats",
            &urls,
            "--node",
            run,
            "--replay",
            frames,
            "--listen",
            "127.0.0.1:0",
        ])
    };
    let finished = |proc: &Proc| {
        let address = proc.address.clone();
        async move {
            let body: Value = reqwest::get(format!("http://{address}/v1/feeds"))
                .await
                .expect("feeds")
                .json()
                .await
                .expect("json");
            body["feeds"][0]["state"] == "finished"
        }
    };
    let first = ingest("first");
    wait_until("the first ingest finished", Duration::from_secs(60), || {
        finished(&first)
    })
    .await;
    assert_eq!(
        first.metric("tickstream_cluster_duplicates_total").await,
        0.0
    );
    wait_until("the node settled", Duration::from_secs(30), || {
        settled(&a, &["a"])
    })
    .await;
    wait_until("the node ready", Duration::from_secs(10), || async {
        a.get("/readyz").await.0 == 200
    })
    .await;
    assert_same_answers(&single, &a, &["BTCUSDT"], "after the first ingest").await;

    // The same trades again, as an ingest restarted after a crash resends what it had not seen
    // acknowledged: JetStream drops every one within its duplicate window, and says so.
    let second = ingest("second");
    wait_until(
        "the second ingest finished",
        Duration::from_secs(60),
        || finished(&second),
    )
    .await;
    assert_eq!(
        second.metric("tickstream_cluster_duplicates_total").await as u64,
        trades,
        "every resent trade dropped as a duplicate"
    );
    wait_until("the node settled", Duration::from_secs(30), || {
        settled(&a, &["a"])
    })
    .await;
    let (_, stats) = a.get("/v1/symbols/BTCUSDT/stats").await;
    assert_eq!(
        stats["trade_count"], trades,
        "no trade counted twice: {stats}"
    );
    assert_same_answers(&single, &a, &["BTCUSDT"], "after the resend").await;
    single.stop().await;
    // SIGTERM ends an ingest and a node in seconds (each has nothing left to drain).
    for (what, mut process) in [("ingest", second), ("node", a)] {
        let asked = Instant::now();
        process.terminate();
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "the {what} took {:?} to stop",
            asked.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_once_cluster_wide_and_every_node_shows_them() {
    if !nats_available("cluster") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().await;
    let nats = NatsCluster::start(1).await;
    let urls = nats.urls();
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(data_path("golden/alerts.json")).expect("golden alerts"),
    )
    .expect("json");
    let expected = golden["alerts"].as_array().expect("alerts").clone();
    assert!(expected.len() > 10);
    // A partition count that puts IBM and AIG on different nodes, so both fire.
    let names = ["a".to_string(), "b".to_string()];
    let partitions = (2..=64u32)
        .find(|&n| {
            let owner = |s: &str| {
                tickstream::cluster::lease::desired_owner(partition_of(s, n), &names)
                    .map(str::to_string)
            };
            owner("IBM") != owner("AIG")
        })
        .expect("a partition count splitting the two symbols");
    let dir = tempfile::tempdir().expect("dir");
    let rules: Vec<String> = golden["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(Value::to_string)
        .collect();
    let start_node = |name: &str| {
        let file = dir.path().join(format!("{name}.jsonl"));
        let mut args: Vec<String> = strings(&[
            "serve",
            "--nats",
            &urls,
            "--node",
            name,
            "--listen",
            "127.0.0.1:0",
            "--alerts-file",
            file.to_str().expect("path"),
        ]);
        for rule in &rules {
            args.push("--alert".into());
            args.push(rule.clone());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::start(&refs)
    };
    let mut a = start_node("a");
    let mut b = start_node("b");
    // Both connected (and listening for each other's alerts) before the day is published.
    for node in [&a, &b] {
        wait_until("the node connected", Duration::from_secs(30), || async {
            node.logged("NATS connected")
        })
        .await;
    }
    // Rules edited over either node are the cluster's: a rule added on `a` for the symbol `b`
    // owns, and one added on `b` and removed on `a`.
    let owner_of = |symbol: &str| {
        tickstream::cluster::lease::desired_owner(partition_of(symbol, partitions), &names)
            .map(str::to_string)
    };
    let on_b = if owner_of("IBM").as_deref() == Some("b") {
        "IBM"
    } else {
        "AIG"
    };
    let added = serde_json::json!({
        "id": "added-on-a", "kind": "price_above", "symbol": on_b, "threshold": 1.0,
        "cooldown": "24h"
    });
    let removed = serde_json::json!({"id": "removed-on-a", "kind": "price_below", "symbol": "*", "threshold": 1e9});
    for (name, node, rule) in [("a", &a, &added), ("b", &b, &removed)] {
        // Refused (503) until the node has read the cluster's rules.
        wait_until(
            &format!("node {name} edits the cluster's rules"),
            Duration::from_secs(30),
            || async {
                let (status, _) = node
                    .send(
                        reqwest::Method::POST,
                        "/v1/alerts/rules",
                        Some(rule.clone()),
                    )
                    .await;
                status == 201
            },
        )
        .await;
    }
    // A rule id is the cluster's: taken on the other node too.
    let (status, body) = b
        .send(
            reqwest::Method::POST,
            "/v1/alerts/rules",
            Some(added.clone()),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, _) = a
        .send(
            reqwest::Method::DELETE,
            "/v1/alerts/rules/removed-on-a",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let rule_ids = |body: &Value| -> Vec<String> {
        body["rules"]
            .as_array()
            .map(|rules| {
                rules
                    .iter()
                    .filter_map(|r| r["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut golden_ids: Vec<String> = rule_ids(&golden);
    golden_ids.push("added-on-a".to_string());
    for node in [&a, &b] {
        wait_until(
            "every node has the cluster's rules",
            Duration::from_secs(10),
            || async { rule_ids(&node.get("/v1/alerts/rules").await.1) == golden_ids },
        )
        .await;
    }
    // Each node's live stream, followed from before the day: both symbols' statistics and
    // every alert, wherever its symbol is owned.
    let streams = [&a, &b].map(|node| follow(&node.address, "/v1/stream?symbols=IBM,AIG"));
    let day = data_path(EQUITIES);
    let ingest = Proc::start(&[
        "ingest",
        "--nats",
        &urls,
        "--partitions",
        &partitions.to_string(),
        "--replay",
        day.to_str().expect("path"),
        // Paced: the nodes settle on their shares early in the day, so both fire alerts.
        "--speed",
        "3000",
        "--listen",
        "127.0.0.1:0",
    ]);
    wait_until("the ingest finished", Duration::from_secs(120), || async {
        let (_, feeds) = ingest.get("/v1/feeds").await;
        feeds["feeds"][0]["state"] == "finished"
    })
    .await;
    let key = |alert: &Value| {
        (
            alert["ts_ms"].as_i64().unwrap_or(0),
            alert["rule_id"].as_str().unwrap_or("").to_string(),
            alert["symbol"].as_str().unwrap_or("").to_string(),
            alert["kind"].as_str().unwrap_or("").to_string(),
        )
    };
    // Every alert is exactly one process's — `stale` ones included: the ingest sends a partition
    // the clock at each moment one of its stale rules could fire (docs/scale-out.md). The rule
    // added over the API is checked on its own below.
    let exact = |alert: &&Value| alert["rule_id"] != "added-on-a";
    let mut want: Vec<_> = expected.iter().filter(exact).map(key).collect();
    want.sort();
    // Every node shows every alert of the day, each once, wherever it fired.
    let mut everything = Vec::new();
    for (name, node) in [("a", &a), ("b", &b)] {
        // Until they are all there (or 30 s: the comparison below then says what differs).
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let (_, body) = node.get("/v1/alerts?limit=10000").await;
            let count = body["alerts"]
                .as_array()
                .map_or(0, |alerts| alerts.iter().filter(exact).count());
            if count >= want.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, body) = node.get("/v1/alerts?limit=10000").await;
        let alerts = body["alerts"].as_array().expect("alerts");
        let mut shown: Vec<_> = alerts.iter().filter(exact).map(key).collect();
        shown.sort();
        assert_eq!(shown, want, "node {name}'s alerts");
        let mut all: Vec<_> = alerts.iter().map(key).collect();
        all.sort();
        everything.push(all);
    }
    assert_eq!(
        everything[0], everything[1],
        "both nodes show the same alerts"
    );
    // The rule added over node a fired once (on the owner of its symbol's partition then),
    // and both nodes show it.
    for node in [&a, &b] {
        let (_, body) = node.get("/v1/alerts?limit=10000").await;
        let fired: Vec<&Value> = body["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .filter(|alert| alert["rule_id"] == "added-on-a")
            .collect();
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0]["symbol"], on_b);
    }
    // Every node's live stream carried every alert, and both symbols' statistics up to their
    // last trade (the owner's answer), whichever node owns them.
    for (name, node, events) in [("a", &a, &streams[0]), ("b", &b, &streams[1])] {
        for symbol in ["IBM", "AIG"] {
            let (_, owner) = node.get(&format!("/v1/symbols/{symbol}/stats")).await;
            assert!(owner["trade_count"].as_u64().unwrap_or(0) > 1000);
            wait_until(
                &format!("node {name}'s stream reached {symbol}'s last trade"),
                Duration::from_secs(15),
                || async {
                    last_stats(events, symbol)
                        .is_some_and(|s| s["trade_count"] == owner["trade_count"])
                },
            )
            .await;
            let streamed = last_stats(events, symbol).expect("stats");
            assert_eq!(
                streamed["last_price"], owner["last_price"],
                "node {name}, {symbol}"
            );
            assert!(
                streamed["windows"]
                    .as_object()
                    .is_some_and(|w| !w.is_empty())
            );
        }
        let mut streamed: Vec<_> = events
            .lock()
            .expect("events")
            .iter()
            .filter(|(kind, _, _)| kind == "alert")
            .map(|(_, data, _)| key(data))
            .collect();
        streamed.sort();
        assert_eq!(
            streamed, everything[0],
            "node {name}'s stream carried every alert once"
        );
    }
    // A client resuming on either node is brought up to date with both symbols at once.
    for node in [&a, &b] {
        let id = streams[0]
            .lock()
            .expect("events")
            .last()
            .map(|(_, _, id)| id.clone())
            .unwrap_or_default();
        let resumed = follow(
            &node.address,
            &format!("/v1/stream?symbols=IBM,AIG&events=stats&last_event_id={id}"),
        );
        wait_until(
            "a resumed stream has both symbols",
            Duration::from_secs(5),
            || async {
                last_stats(&resumed, "IBM").is_some() && last_stats(&resumed, "AIG").is_some()
            },
        )
        .await;
    }
    // Delivered once: each by the owner of its symbol's partition, through that node's sinks.
    a.terminate();
    b.terminate();
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(dir.path().join(format!("{name}.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON line"))
            .collect()
    };
    let (from_a, from_b) = (read("a"), read("b"));
    assert!(!from_a.is_empty() && !from_b.is_empty(), "both nodes fired");
    let mut delivered: Vec<_> = from_a.iter().chain(&from_b).map(key).collect();
    delivered.sort();
    assert_eq!(
        delivered, everything[0],
        "every alert delivered once cluster-wide, by its owner"
    );
    // A node that comes after all that, with no rules of its own, shows every alert the cluster
    // fired (from the cluster's alert stream), takes the cluster's rules, and rebuilds every
    // partition without delivering any alert again.
    let c_file = dir.path().join("c.jsonl");
    let c = node_with(
        &urls,
        "c",
        &["--alerts-file", c_file.to_str().expect("path")],
    );
    wait_until(
        "node c took the cluster's rules",
        Duration::from_secs(30),
        || async { rule_ids(&c.get("/v1/alerts/rules").await.1) == golden_ids },
    )
    .await;
    wait_until(
        "node c shows the cluster's alerts",
        Duration::from_secs(30),
        || async {
            let (_, body) = c.get("/v1/alerts?limit=10000").await;
            body["alerts"].as_array().map_or(0, Vec::len) >= everything[0].len()
        },
    )
    .await;
    let (_, body) = c.get("/v1/alerts?limit=10000").await;
    let mut shown: Vec<_> = body["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(key)
        .collect();
    shown.sort();
    assert_eq!(shown, everything[0], "node c shows what a and b fired");
    wait_until(
        "node c serves every partition",
        Duration::from_secs(30),
        || async { c.get("/readyz").await.0 == 200 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut c = c;
    c.terminate();
    assert!(
        read("c").is_empty(),
        "nothing delivered again: {:?}",
        read("c")
    );
}
