//! Scale-out throughput on this machine: trades per second through NATS JetStream, published by
//! `tickstream ingest` and applied by 1, 2 and 3 analytics nodes (`tickstream serve --nats`),
//! beside the limits measured in the same run with the same server and the same messages:
//!
//! - publishing: a bare async-nats publisher sending the ingest's own messages (same subjects,
//!   sizes and message ids, into a second stream), acknowledgements pipelined as deep;
//! - consuming: a bare async-nats pull consumer of the ticks stream that only counts, and the
//!   partitioned pattern the nodes use — one filtered pull consumer per partition, all at once,
//!   only counting (what the server spends serving partitions, without any node code);
//! - end to end: the bare publisher with either of those at once.
//!
//! The server is one `nats-server` (Debian's; JetStream, file storage) on loopback with its store
//! in a temporary directory; the data is generated (500,000 trades of 64 symbols, 16
//! partitions). The nodes are timed from their start until every partition is caught up (their
//! `/v1/cluster`: owners, no pending message), which includes taking the leases (a second's
//! round); the consume time from the moment every partition has an owner is printed too. Each
//! process's CPU seconds are printed beside it: on two cores, that says what limits it.
//!
//! Needs `nats-server` (`apt-get install nats-server`). Run with `cargo bench --bench cluster`;
//! `TICKSTREAM_BENCH_SERVERS=3 cargo bench --bench cluster` runs it on a three-server cluster
//! (every stream R3) on the same machine.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use serde_json::Value;

const TRADES: usize = 500_000;
const SYMBOLS: usize = 64;
const PARTITIONS: u32 = 16;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// CPU seconds a process has used (user + system), from `/proc`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// The tickstream binary in one role, with its HTTP address.
struct Proc {
    child: Child,
    address: String,
}

impl Proc {
    fn start(args: &[&str]) -> Proc {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_tickstream"))
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tickstream starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if !sent && let Some(at) = line.find("address=") {
                    let address = line[at + 8..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(address);
                    sent = true;
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the service logs its address");
        Proc { child, address }
    }

    async fn get(&self, path: &str) -> Value {
        match reqwest::get(format!("http://{}{path}", self.address)).await {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    fn stop(mut self) -> f64 {
        let cpu = cpu_seconds(self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        cpu
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_trades(path: &Path) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    writeln!(out, "ts,symbol,price,size").expect("write");
    let start_ms = 1_723_075_200_000i64;
    let mut rng = fastrand::Rng::with_seed(19);
    for i in 0..TRADES {
        writeln!(
            out,
            "{},S{:02},{:.2},{}",
            start_ms + i as i64,
            i % SYMBOLS,
            100.0 + rng.f64() * 10.0,
            1 + rng.u32(0..500)
        )
        .expect("write");
    }
}

/// Publishes `messages` under `prefix.<subject>`, 4,096 acknowledgements in flight (as the
/// ingest), and waits for every one.
async fn publish_all(
    js: &jetstream::Context,
    prefix: &str,
    messages: &[(String, Vec<u8>, Option<String>)],
) {
    let mut acks = std::collections::VecDeque::new();
    for (subject, payload, id) in messages {
        let mut publish =
            jetstream::message::PublishMessage::build().payload(payload.clone().into());
        if let Some(id) = id {
            publish = publish.message_id(id);
        }
        let ack = js
            .send_publish(format!("{prefix}.{subject}"), publish)
            .await
            .expect("publish");
        acks.push_back(ack);
        if acks.len() >= 4096
            && let Some(ack) = acks.pop_front()
        {
            ack.await.expect("ack");
        }
    }
    for ack in acks {
        ack.await.expect("ack");
    }
}

/// The bare publisher: the ingest's messages, republished as they are into a second stream.
async fn bare_publish(
    js: &jetstream::Context,
    messages: &[(String, Vec<u8>, Option<String>)],
) -> Duration {
    js.get_or_create_stream(jetstream::stream::Config {
        name: "BENCH_BARE".to_string(),
        subjects: vec!["bare.>".to_string()],
        num_replicas: replicas(),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("stream");
    let started = Instant::now();
    publish_all(js, "bare", messages).await;
    started.elapsed()
}

/// What a bare consumer does: pulls (1,024 at a time, as a node) and counts, until `expected`.
async fn count_messages(pull: consumer::PullConsumer, expected: u64) -> u64 {
    let mut messages = pull
        .stream()
        .max_messages_per_batch(1024)
        .messages()
        .await
        .expect("messages");
    let mut count = 0u64;
    while count < expected {
        match messages.next().await {
            Some(Ok(_)) => count += 1,
            Some(Err(error)) => panic!("bare consumer: {error}"),
            None => break,
        }
    }
    count
}

/// The bare consumer: every message of the ticks stream, counted.
async fn bare_consume(js: &jetstream::Context, expected: u64) -> Duration {
    let stream = js.get_stream("TICKSTREAM_TICKS").await.expect("stream");
    let started = Instant::now();
    let pull = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bench-bare".to_string()),
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    count_messages(pull, expected).await;
    let elapsed = started.elapsed();
    let _ = stream.delete_consumer("bench-bare").await;
    elapsed
}

/// The bare consumers of the partitioned pattern: one filtered pull consumer per partition
/// (`ticks.<p>.>`, as a node's), all at once, each only counting — what the server does for a
/// node besides the node's own work.
async fn bare_consume_partitions(js: &jetstream::Context, expected: u64) -> Duration {
    let stream = js.get_stream("TICKSTREAM_TICKS").await.expect("stream");
    let started = Instant::now();
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..PARTITIONS {
        let stream = stream.clone();
        let counted = std::sync::Arc::clone(&counted);
        tasks.push(tokio::spawn(async move {
            let name = format!("bench-bare-p{p}");
            let pull = stream
                .create_consumer(consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: format!("ticks.{p}.>"),
                    ack_policy: consumer::AckPolicy::None,
                    ..Default::default()
                })
                .await
                .expect("consumer");
            let pending = pull.cached_info().num_pending;
            let count = count_messages(pull, pending).await;
            counted.fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            let _ = stream.delete_consumer(&name).await;
        }));
    }
    for task in tasks {
        task.await.expect("consumer task");
    }
    let elapsed = started.elapsed();
    assert_eq!(counted.load(std::sync::atomic::Ordering::Relaxed), expected);
    elapsed
}

/// Messages the nodes have consumed, summed.
async fn consumed(nodes: &[Proc]) -> f64 {
    let mut total = 0.0;
    for node in nodes {
        total += metric(node, "tickstream_cluster_consumed_total").await;
    }
    total
}

async fn metric(node: &Proc, name: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("http://{}/metrics", node.address)).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `nodes` have consumed `expected` messages (from a fresh start).
async fn wait_consumed(nodes: &[&Proc], expected: u64) {
    wait_consumed_from(nodes, 0.0, expected).await;
}

/// Waits until `nodes` have consumed `expected` messages more than `before`.
async fn wait_consumed_from(nodes: &[&Proc], before: f64, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            Instant::now() < deadline,
            "the nodes never consumed {expected} messages"
        );
        let mut total = 0.0;
        for node in nodes {
            total += metric(node, "tickstream_cluster_consumed_total").await;
        }
        if total - before >= expected as f64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every partition is owned by its desired owner among `names`.
async fn wait_settled(node: &Proc, names: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the nodes never settled");
        let view = node.get("/v1/cluster").await;
        let partitions = view["partition_owners"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if partitions.len() == PARTITIONS as usize
            && partitions.iter().all(|p| {
                p["owner"]
                    .as_str()
                    .is_some_and(|o| names.iter().any(|n| n == o))
                    && p["desired"] == p["owner"]
                    && p["served_here"].is_boolean()
                    && p["lease"]["rebuilding"] == false
            })
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The end-to-end limit: the bare publisher sending `messages` while bare consumers count them —
/// one consumer of everything, or (`partitioned`) one filtered consumer per partition, as the
/// nodes' consumers are.
async fn end_to_end_limit(
    js: &jetstream::Context,
    messages: &[(String, Vec<u8>, Option<String>)],
    partitioned: bool,
) -> Duration {
    let prefix = if partitioned { "e2ep" } else { "e2e" };
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: format!("BENCH_{}", prefix.to_uppercase()),
            subjects: vec![format!("{prefix}.>")],
            num_replicas: replicas(),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .expect("stream");
    // Each consumer's filter and how many messages it is to count.
    let mut filters: Vec<(String, usize)> = Vec::new();
    if partitioned {
        for p in 0..PARTITIONS {
            let subject_prefix = format!("ticks.{p}.");
            let count = messages
                .iter()
                .filter(|(subject, _, _)| subject.starts_with(&subject_prefix))
                .count();
            filters.push((format!("{prefix}.ticks.{p}.>"), count));
        }
    } else {
        filters.push((String::new(), messages.len()));
    }
    let mut consumers = Vec::new();
    for (i, (filter, expected)) in filters.into_iter().enumerate() {
        let pull = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(format!("bench-{prefix}-{i}")),
                filter_subject: filter,
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("consumer");
        consumers.push((pull, expected));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (pull, expected) in consumers {
        tasks.push(tokio::spawn(count_messages(pull, expected as u64)));
    }
    publish_all(js, prefix, messages).await;
    for task in tasks {
        let _ = task.await;
    }
    started.elapsed()
}

fn main() {
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        println!(
            "cluster bench skipped: nats-server is not installed (apt-get install nats-server)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("trades.csv");
    write_trades(&csv);
    let servers = NatsServers::start(dir.path());
    let url = servers.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let csv_path = csv.to_str().expect("path").to_string();
    println!(
        "{TRADES} trades of {SYMBOLS} symbols, {PARTITIONS} partitions, {} (JetStream, file store, streams R{}) on loopback, 2 vCPUs",
        if servers.count() == 1 {
            "one nats-server".to_string()
        } else {
            format!("a cluster of {} nats-servers", servers.count())
        },
        servers.count()
    );
    runtime.block_on(async {
        std::thread::sleep(Duration::from_millis(500));
        // Publishing: the ingest.
        let started = Instant::now();
        let ingest = Proc::start(&[
            "ingest", "--nats", &url, "--partitions", "16", "--replay", &csv_path, "--speed", "max",
            "--listen", "127.0.0.1:0",
        ]);
        loop {
            let feeds = ingest.get("/v1/feeds").await;
            if feeds["feeds"][0]["state"] == "finished" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let publish_time = started.elapsed();
        let ingest_cpu = ingest.stop();
        let client = async_nats::connect(servers.first_url()).await.expect("connect");
        let js = jetstream::new(client);
        let mut stream = js.get_stream("TICKSTREAM_TICKS").await.expect("the ticks stream");
        let stored = stream.info().await.expect("info").state.messages;
        // The same messages, as the ingest wrote them, for the bare publisher.
        let mut messages = Vec::with_capacity(stored as usize);
        {
            let pull = stream
                .create_consumer(consumer::pull::Config {
                    durable_name: Some("bench-copy".to_string()),
                    ack_policy: consumer::AckPolicy::None,
                    ..Default::default()
                })
                .await
                .expect("consumer");
            let mut copy = pull.stream().max_messages_per_batch(1024).messages().await.expect("messages");
            while (messages.len() as u64) < stored {
                let Some(Ok(message)) = copy.next().await else { break };
                let id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_string());
                messages.push((message.subject.to_string(), message.payload.to_vec(), id));
            }
            let _ = stream.delete_consumer("bench-copy").await;
        }
        let bare_publish_time = bare_publish(&js, &messages).await;
        let rate = |n: u64, t: Duration| n as f64 / t.as_secs_f64();
        println!("publishing ({stored} messages: {TRADES} trades and the clock messages):");
        println!(
            "  tickstream ingest (CSV replay → JetStream, acknowledged): {:.0} trades/s, {:.2} s, ingest CPU {:.1} s",
            rate(TRADES as u64, publish_time),
            publish_time.as_secs_f64(),
            ingest_cpu
        );
        println!(
            "  limit: bare async-nats publisher, the same messages: {:.0} msgs/s, {:.2} s — ratio {:.2}",
            rate(stored, bare_publish_time),
            bare_publish_time.as_secs_f64(),
            bare_publish_time.as_secs_f64() / publish_time.as_secs_f64()
        );
        // Consuming: the limit, then 1, 2 and 3 nodes.
        let server_cpu = servers.cpu();
        let bare = bare_consume(&js, stored).await;
        let bare_server_cpu = servers.cpu() - server_cpu;
        println!("consuming (every partition rebuilt from the stream, {stored} messages):");
        println!(
            "  limit: bare async-nats pull consumer that counts: {:.0} msgs/s, {:.2} s; nats-server CPU {bare_server_cpu:.1} s",
            rate(stored, bare),
            bare.as_secs_f64()
        );
        let server_cpu = servers.cpu();
        let bare_partitioned = bare_consume_partitions(&js, stored).await;
        let partitioned_server_cpu = servers.cpu() - server_cpu;
        println!(
            "  limit of the partitioned pattern: {PARTITIONS} bare filtered pull consumers (ticks.<p>.>) at once that count: {:.0} msgs/s, {:.2} s; nats-server CPU {partitioned_server_cpu:.1} s",
            rate(stored, bare_partitioned),
            bare_partitioned.as_secs_f64()
        );
        // One node rebuilding the whole stream (taking every partition at once).
        {
            let server_cpu = servers.cpu();
            let started = Instant::now();
            let node = Proc::start(&[
                "serve", "--nats", &url, "--node", "rebuild", "--listen", "127.0.0.1:0",
            ]);
            wait_consumed(&[&node], stored).await;
            let took = started.elapsed();
            let node_server_cpu = servers.cpu() - server_cpu;
            let cpu = node.stop();
            println!(
                "  1 node rebuilding every partition from the stream: {:.0} trades/s ({:.2} s from its start), {:.2}× the bare consumer, {:.2}× the partitioned one; node CPU {cpu:.1} s, nats-server CPU {node_server_cpu:.1} s",
                rate(TRADES as u64, took),
                took.as_secs_f64(),
                rate(TRADES as u64, took) / rate(stored, bare),
                rate(TRADES as u64, took) / rate(stored, bare_partitioned)
            );
        }
        // End to end: K nodes that already own their partitions; the ingest publishes the day;
        // timed from the ingest's start until every node has consumed every message.
        let limit = end_to_end_limit(&js, &messages, false).await;
        let server_cpu = servers.cpu();
        let partitioned = end_to_end_limit(&js, &messages, true).await;
        let partitioned_server_cpu = servers.cpu() - server_cpu;
        println!("end to end (ingest → JetStream → nodes, {stored} messages):");
        println!(
            "  limit: the bare publisher and the bare consumer at once: {:.0} msgs/s ({:.2} s)",
            rate(stored, limit),
            limit.as_secs_f64()
        );
        println!(
            "  limit of the partitioned pattern: the bare publisher and {PARTITIONS} bare filtered consumers at once: {:.0} msgs/s ({:.2} s); nats-server CPU {partitioned_server_cpu:.1} s",
            rate(stored, partitioned),
            partitioned.as_secs_f64()
        );
        for nodes in 1..=3usize {
            stream.purge().await.expect("purge");
            let procs: Vec<Proc> = (0..nodes)
                .map(|i| {
                    Proc::start(&[
                        "serve", "--nats", &url, "--node", &format!("e2e{nodes}-{i}"), "--listen",
                        "127.0.0.1:0",
                    ])
                })
                .collect();
            let names: Vec<String> = (0..nodes).map(|i| format!("e2e{nodes}-{i}")).collect();
            wait_settled(&procs[0], &names).await;
            let before: f64 = consumed(&procs).await;
            let e2e_server_cpu = servers.cpu();
            let started = Instant::now();
            let ingest = Proc::start(&[
                "ingest", "--nats", &url, "--replay", &csv_path, "--speed", "max", "--listen",
                "127.0.0.1:0",
            ]);
            let refs: Vec<&Proc> = procs.iter().collect();
            wait_consumed_from(&refs, before, TRADES as u64).await;
            let took = started.elapsed();
            let ingest_cpu = ingest.stop();
            let cpu: Vec<f64> = procs.into_iter().map(Proc::stop).collect();
            println!(
                "  {nodes} node(s): {:.0} trades/s ({:.2} s) — {:.2}× the limit, {:.2}× the partitioned one; ingest CPU {ingest_cpu:.1} s, nodes' CPU {:?} s, nats-server CPU {:.1} s",
                rate(TRADES as u64, took),
                took.as_secs_f64(),
                limit.as_secs_f64() / took.as_secs_f64(),
                partitioned.as_secs_f64() / took.as_secs_f64(),
                cpu.iter().map(|c| (c * 10.0).round() / 10.0).collect::<Vec<_>>(),
                servers.cpu() - e2e_server_cpu
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("nats-server CPU over the whole run: {:.1} s", servers.cpu());
    });
    drop(servers);
}

/// The replicas of the bench's own streams: as many as servers (as the ingest makes its stream).
fn replicas() -> usize {
    std::env::var("TICKSTREAM_BENCH_SERVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// The NATS servers the bench runs on: one, or (`TICKSTREAM_BENCH_SERVERS=3`) a JetStream
/// cluster of three on loopback, whose streams — the ticks stream and the bare ones alike — are
/// then replicated three times.
struct NatsServers {
    children: Vec<Child>,
    ports: Vec<u16>,
}

impl NatsServers {
    fn start(dir: &Path) -> NatsServers {
        let count = replicas();
        let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let route_list = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let children = (0..count)
            .map(|i| {
                let mut command = Command::new("nats-server");
                command
                    .args(["-a", "127.0.0.1", "-p", &ports[i].to_string(), "-js", "-sd"])
                    .arg(dir.join(format!("store{i}")))
                    .args(["--server_name", &format!("bench{i}")]);
                if count > 1 {
                    command
                        .args(["--cluster_name", "bench"])
                        .args(["--cluster", &format!("nats://127.0.0.1:{}", routes[i])])
                        .args(["--routes", &route_list]);
                }
                command
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("nats-server starts")
            })
            .collect();
        // A cluster elects its JetStream leader first.
        std::thread::sleep(Duration::from_millis(if count > 1 { 5000 } else { 500 }));
        NatsServers { children, ports }
    }

    fn count(&self) -> usize {
        self.children.len()
    }

    fn first_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.ports[0])
    }

    fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// CPU seconds the servers have used, together.
    fn cpu(&self) -> f64 {
        self.children.iter().map(|c| cpu_seconds(c.id())).sum()
    }
}

impl Drop for NatsServers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
