//! A real NATS JetStream cluster on loopback for the scale-out tests: Debian's `nats-server`
//! processes, each listening on 127.0.0.1 only (`-a 127.0.0.1`, routes on 127.0.0.1), with a
//! temporary store directory, killed when the cluster is dropped.
//!
//! Without `nats-server` the tests skip and say so, unless `TICKSTREAM_NATS_TESTS=1` (set by
//! `.ci/run`, which installs it), which makes its absence a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One server of the cluster.
struct Server {
    name: String,
    port: u16,
    cluster_port: u16,
    monitor_port: u16,
    store: PathBuf,
    child: Option<Child>,
}

/// A JetStream cluster of servers on loopback.
pub struct NatsCluster {
    servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether the NATS tests run here (see the module's documentation).
pub fn nats_available(test: &str) -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("TICKSTREAM_NATS_TESTS").as_deref() == Ok("1") {
        panic!("{test}: nats-server is not installed (apt-get install nats-server)");
    }
    eprintln!(
        "{test}: skipped — nats-server is not installed (set TICKSTREAM_NATS_TESTS=1 to require it)"
    );
    false
}

impl NatsCluster {
    /// Starts `size` servers as one JetStream cluster and waits until each is healthy.
    pub async fn start(size: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("store directory");
        let servers: Vec<Server> = (0..size)
            .map(|i| Server {
                name: format!("s{}", i + 1),
                port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                store: dir.path().join(format!("s{}", i + 1)),
                child: None,
            })
            .collect();
        let mut cluster = NatsCluster { servers, _dir: dir };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster.wait_healthy().await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let routes = self
            .servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let server = &mut self.servers[i];
        let mut command = Command::new("nats-server");
        command
            .args(["-a", "127.0.0.1", "-p", &server.port.to_string()])
            .args(["-m", &server.monitor_port.to_string()])
            .args(["-js", "-sd", &server.store.to_string_lossy()])
            .args(["--server_name", &server.name]);
        if self.servers.len() > 1 {
            let server = &self.servers[i];
            command
                .args(["--cluster_name", "tickstream-test"])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", server.cluster_port),
                ])
                .args(["--routes", &routes]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.servers[i].child = Some(child);
    }

    /// Waits until every running server reports itself healthy (JetStream included).
    pub async fn wait_healthy(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            loop {
                let url = format!("http://127.0.0.1:{}/healthz", server.monitor_port);
                if let Ok(response) = client.get(&url).send().await
                    && response.status().is_success()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "nats-server {} never became healthy",
                    server.name
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// The client URLs of every server, comma-separated (`--nats`).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills server `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}
