//! The real service: in process on a random loopback port, or as the built binary.

use std::net::SocketAddr;
use std::time::Duration;

use tickstream::config::ServeArgs;
use tickstream::{App, Settings};

/// A running service on a random loopback port.
pub struct TestApp {
    /// Where it listens.
    pub address: SocketAddr,
    /// An HTTP client.
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts the service with `args` (listen defaults to 127.0.0.1:0).
    pub async fn spawn(mut args: ServeArgs) -> TestApp {
        if args.listen.is_none() {
            args.listen = Some("127.0.0.1:0".into());
        }
        Self::spawn_settings(Settings::load(args).expect("valid settings")).await
    }

    /// Starts the service with `settings` as they are.
    pub async fn spawn_settings(settings: Settings) -> TestApp {
        init_test_log();
        let app = App::build(settings).await.expect("app builds");
        let address = app.local_addr().expect("bound");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        TestApp {
            address,
            client: reqwest::Client::new(),
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// GETs `path`; returns status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body)
    }

    /// GETs each path and asserts its status and the JSON error body's code (and a message).
    pub async fn assert_errors(&self, cases: &[(&str, u16, &str)]) {
        for &(path, status, code) in cases {
            let (actual, body) = self.get(path).await;
            assert_eq!(actual, status, "{path}: {body}");
            assert_eq!(body["error"]["code"], code, "{path}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{path}"
            );
        }
    }

    /// GETs `/metrics` as text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Waits until every feed is finished or failed (a safety limit, not a performance check).
    pub async fn wait_for_feeds(&self) -> serde_json::Value {
        for _ in 0..6000 {
            let (_, body) = self.get("/v1/feeds").await;
            let feeds = body["feeds"].as_array().expect("feeds").clone();
            if feeds
                .iter()
                .all(|f| f["state"] == "finished" || f["state"] == "failed")
            {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("feeds did not finish");
    }

    /// Stops the service and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("joined").expect("clean stop");
        }
    }
}

/// Test logs are silent unless `TEST_LOG` is set.
pub fn init_test_log() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_test_writer()
            .try_init();
    }
}

/// Polls `/v1/feeds` until `done` holds for the first feed (a safety limit, not a timing check).
pub async fn wait_for_feed(
    app: &TestApp,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..3000 {
        let (_, body) = app.get("/v1/feeds").await;
        if done(&body["feeds"][0]) {
            return body["feeds"][0].clone();
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("feed never reached the expected state: {last}");
}

/// Starts the real binary with `args` and waits (up to a minute) for the HTTP address it logs;
/// returns the process, the address, and its further log lines.
pub fn start_binary(
    args: &[String],
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::BufRead;
    let mut child = spawn_binary(args);
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if let Some(at) = line.find("address=") {
            let address = line[at + 8..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            return (child, address, rx);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the service never logged its address: {args:?}");
}

/// Starts the real `tickstream` binary with `args`, its info log (without colours) on a piped
/// stderr, its stdout discarded.
pub fn spawn_binary(args: &[String]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_tickstream"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary starts")
}
