//! Delivery: the one sink task, and the sinks it fans out to.
//!
//! The core records each alert in the [`AlertLog`] of recent alerts (what `GET /v1/alerts`
//! reads, so an answer is consistent with the statistics published with it) and sends it through
//! a bounded channel ([`ALERT_CHANNEL_CAPACITY`]; `try_send`, so the core never waits, and an
//! alert it cannot send is counted) to **one sink task**. That task publishes each alert to the
//! live stream (a `broadcast` channel: slow clients lag and skip, they never hold anything), and
//! hands it to every configured sink through the sink's own bounded queue, again with
//! `try_send`: a slow or failing sink (a webhook that times out) fills only its own queue, and
//! what it misses is counted per sink. Each sink drains its queue in its own task:
//!
//! - `log`: one `tracing` event per alert (target `tickstream::alert`);
//! - `file`: JSON lines, appended and flushed after each burst;
//! - `webhook`: an HTTP POST of the alert as JSON, with a timeout and retries with exponential
//!   backoff; failures are counted.
//!
//! On shutdown the core drops its sender; the sink task then drains what is queued, closes the
//! sinks' queues, and waits for each sink to finish (the file is flushed), so nothing the core
//! sent is lost.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::alerts::Alert;
use crate::fanout::StreamEvent;
use crate::metrics::{Metrics, SinkLabels};

/// Alerts the core may have queued for the sink task before it counts a loss.
pub const ALERT_CHANNEL_CAPACITY: usize = 65_536;
/// Alerts each sink may have queued before it counts a loss.
pub const SINK_QUEUE_CAPACITY: usize = 4_096;
/// Recent alerts kept for `GET /v1/alerts`.
pub const RECENT_ALERTS: usize = 10_000;

/// Default timeout of one webhook attempt.
pub const DEFAULT_WEBHOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Default webhook retries after the first attempt.
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 3;
/// Wait before the first webhook retry (doubled before each next one).
pub const WEBHOOK_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// The most recent alerts, newest last: what `GET /v1/alerts` reads, and where each live-stream
/// client takes the alerts it has not had yet (so a slow or reconnecting client misses none the
/// log still holds).
#[derive(Debug)]
pub struct AlertLog {
    recent: Mutex<VecDeque<Arc<Alert>>>,
    capacity: usize,
    run: u64,
    /// The last id given by [`AlertLog::record`] (changed only under the `recent` lock, so ids
    /// grow in the log's order even when several cores fire: a cluster node's partitions).
    issued: std::sync::atomic::AtomicU64,
}

impl AlertLog {
    /// A log keeping the last `capacity` alerts.
    pub fn new(capacity: usize) -> Self {
        // Alert ids start again at 1 in every process: the run tells a stream client that
        // resumes whether its last id is from this process.
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        AlertLog {
            recent: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            run,
            issued: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// This process's run: the time the log was made, in epoch microseconds.
    pub fn run(&self) -> u64 {
        self.run
    }

    /// The id of the newest alert (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.lock().back().map_or(0, |a| a.id)
    }

    /// Up to `limit` alerts with an id above `after`, oldest first, and how many alerts above
    /// `after` the log no longer holds (pushed out by newer ones).
    pub fn after(&self, after: u64, limit: usize) -> (Vec<Arc<Alert>>, u64) {
        let recent = self.lock();
        let start = recent.partition_point(|a| a.id <= after);
        let missed = recent
            .get(start)
            .map_or(0, |first| first.id.saturating_sub(after.saturating_add(1)));
        let alerts = recent.range(start..).take(limit).cloned().collect();
        (alerts, missed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Alert>>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a fired alert under the next id of this process (ids grow in the log's order),
    /// and returns it as recorded.
    pub fn record(&self, mut alert: Alert) -> Arc<Alert> {
        use std::sync::atomic::Ordering;
        let mut recent = self.lock();
        let id = self
            .issued
            .load(Ordering::Acquire)
            .max(recent.back().map_or(0, |a| a.id))
            + 1;
        self.issued.store(id, Ordering::Release);
        alert.id = id;
        let alert = Arc::new(alert);
        if recent.len() == self.capacity {
            recent.pop_front();
        }
        recent.push_back(Arc::clone(&alert));
        alert
    }

    /// Records an alert.
    pub fn push(&self, alert: Arc<Alert>) {
        let mut recent = self.lock();
        if recent.len() == self.capacity {
            recent.pop_front();
        }
        recent.push_back(alert);
    }

    /// Up to `limit` alerts, newest first, of `symbol` if given.
    pub fn recent(&self, symbol: Option<&str>, limit: usize) -> Vec<Arc<Alert>> {
        self.lock()
            .iter()
            .rev()
            .filter(|a| symbol.is_none_or(|s| a.symbol.as_str() == s))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// Where alerts are delivered besides the log of recent alerts and the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSettings {
    /// Log each alert with `tracing`.
    pub log: bool,
    /// Append alerts as JSON lines to this file.
    pub file: Option<PathBuf>,
    /// POST alerts to this URL.
    pub webhook: Option<WebhookSettings>,
    /// When the alerts file is made durable (the trade log's policy).
    pub fsync: crate::record::ticklog::FsyncPolicy,
}

impl Default for SinkSettings {
    fn default() -> Self {
        SinkSettings {
            log: true,
            file: None,
            webhook: None,
            fsync: crate::record::ticklog::FsyncPolicy::Interval(
                crate::record::ticklog::DEFAULT_FSYNC_INTERVAL,
            ),
        }
    }
}

/// How alerts are POSTed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The URL (`http://` or `https://`).
    pub url: String,
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    /// Wait before the first retry; doubled before each next one.
    pub backoff: Duration,
}

/// A sink's queue and task.
struct SinkHandle {
    name: &'static str,
    queue: mpsc::Sender<Arc<Alert>>,
    task: JoinHandle<()>,
}

/// Starts the sink task and every configured sink. Returns the sender the core uses, and the
/// task, which ends after the sender is dropped and every sink has finished.
pub fn start(
    settings: &SinkSettings,
    stream: broadcast::Sender<StreamEvent>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(mpsc::Sender<Arc<Alert>>, JoinHandle<()>)> {
    let mut sinks = Vec::new();
    if settings.log {
        sinks.push(spawn_sink("log", &metrics, log_sink));
    }
    if let Some(path) = &settings.file {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        // Opened now, so a bad path is a startup error rather than a silent loss; a line a
        // crash tore is cut off first, so the file holds whole lines only.
        repair_torn_line(path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let file = tokio::fs::File::from_std(file);
        let fsync = settings.fsync;
        sinks.push(spawn_sink("file", &metrics, move |rx, m| {
            file_sink(rx, file, fsync, m)
        }));
    }
    if let Some(webhook) = &settings.webhook {
        let client = reqwest::Client::builder()
            .timeout(webhook.timeout)
            .build()
            .map_err(std::io::Error::other)?;
        let webhook = webhook.clone();
        sinks.push(spawn_sink("webhook", &metrics, move |rx, m| {
            webhook_sink(rx, client, webhook, m)
        }));
    }
    let (sender, receiver) = mpsc::channel(ALERT_CHANNEL_CAPACITY);
    let task = tokio::spawn(fan_out(receiver, sinks, stream, metrics));
    Ok((sender, task))
}

/// Once the core has stopped (and dropped its sender): waits for the sink task to drain and
/// flush every sink, at most `deadline`; a failure or a missed deadline is logged.
pub async fn drain(task: JoinHandle<()>, deadline: std::time::Duration) {
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(())) => tracing::debug!("alert sinks flushed"),
        Ok(Err(error)) => tracing::error!(%error, "the alert sink task failed"),
        Err(_) => tracing::warn!(?deadline, "alert sinks did not drain within the deadline"),
    }
}

fn spawn_sink<F, Fut>(name: &'static str, metrics: &Arc<Metrics>, run: F) -> SinkHandle
where
    F: FnOnce(mpsc::Receiver<Arc<Alert>>, Arc<Metrics>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (queue, receiver) = mpsc::channel(SINK_QUEUE_CAPACITY);
    let task = tokio::spawn(run(receiver, Arc::clone(metrics)));
    SinkHandle { name, queue, task }
}

fn labels(sink: &str) -> SinkLabels {
    SinkLabels {
        sink: sink.to_string(),
    }
}

/// The one sink task.
async fn fan_out(
    mut alerts: mpsc::Receiver<Arc<Alert>>,
    sinks: Vec<SinkHandle>,
    stream: broadcast::Sender<StreamEvent>,
    metrics: Arc<Metrics>,
) {
    while let Some(alert) = alerts.recv().await {
        // No receiver (no client connected) is not a loss.
        let _ = stream.send(StreamEvent::Alert(Arc::clone(&alert)));
        for sink in &sinks {
            if sink.queue.try_send(Arc::clone(&alert)).is_err() {
                metrics
                    .alerts_dropped
                    .get_or_create(&labels(sink.name))
                    .inc();
                tracing::warn!(sink = sink.name, "alert sink queue full; alert dropped");
            }
        }
    }
    for sink in sinks {
        drop(sink.queue);
        if let Err(error) = sink.task.await {
            tracing::error!(sink = sink.name, %error, "alert sink task failed");
        }
    }
    tracing::debug!("alert sinks drained");
}

async fn log_sink(mut alerts: mpsc::Receiver<Arc<Alert>>, metrics: Arc<Metrics>) {
    let delivered = metrics
        .alerts_delivered
        .get_or_create(&labels("log"))
        .clone();
    while let Some(alert) = alerts.recv().await {
        // An alert is the service doing its job, not a fault of the service: INFO.
        tracing::info!(
            target: "tickstream::alert",
            id = alert.id,
            rule = %alert.rule_id,
            symbol = %alert.symbol,
            kind = alert.kind,
            value = alert.value,
            threshold = alert.threshold,
            ts_ms = alert.ts_ms,
            "{}",
            alert.message
        );
        delivered.inc();
    }
}

/// Cuts a JSON-lines file back to its last complete line (a crash may have torn the last one);
/// returns the bytes removed.
pub fn repair_torn_line(path: &std::path::Path) -> std::io::Result<u64> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(0);
    }
    let keep = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |end| end + 1);
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(keep as u64)?;
    file.sync_all()?;
    let removed = (bytes.len() - keep) as u64;
    tracing::warn!(file = %path.display(), bytes = removed, "cut a torn last line off the alerts file");
    Ok(removed)
}

async fn file_sink(
    mut alerts: mpsc::Receiver<Arc<Alert>>,
    file: tokio::fs::File,
    fsync: crate::record::ticklog::FsyncPolicy,
    metrics: Arc<Metrics>,
) {
    use crate::record::ticklog::FsyncPolicy;
    let delivered = metrics
        .alerts_delivered
        .get_or_create(&labels("file"))
        .clone();
    let failed = metrics
        .alert_sink_failures
        .get_or_create(&labels("file"))
        .clone();
    let mut writer = tokio::io::BufWriter::new(file);
    // When the alerts written (and flushed to the operating system) must be made durable.
    let mut sync_due: Option<tokio::time::Instant> = None;
    loop {
        let first = tokio::select! {
            first = alerts.recv() => first,
            _ = async {
                match sync_due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                sync_due = None;
                if let Err(error) = writer.get_ref().sync_data().await {
                    tracing::error!(%error, "cannot fsync the alerts file");
                }
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut burst = vec![first];
        while let Ok(next) = alerts.try_recv() {
            burst.push(next);
        }
        let mut lines = Vec::new();
        for alert in &burst {
            if serde_json::to_writer(&mut lines, alert.as_ref()).is_ok() {
                lines.push(b'\n');
            }
        }
        let written = async {
            writer.write_all(&lines).await?;
            writer.flush().await
        }
        .await;
        match written {
            Ok(()) => {
                delivered.inc_by(burst.len() as u64);
                match fsync {
                    FsyncPolicy::Every => {
                        if let Err(error) = writer.get_ref().sync_data().await {
                            tracing::error!(%error, "cannot fsync the alerts file");
                        }
                    }
                    FsyncPolicy::Interval(every) => {
                        sync_due.get_or_insert_with(|| tokio::time::Instant::now() + every);
                    }
                    FsyncPolicy::Never => {}
                }
            }
            Err(error) => {
                failed.inc_by(burst.len() as u64);
                tracing::error!(%error, "cannot write alerts file");
            }
        }
    }
    if let Err(error) = writer.flush().await {
        tracing::error!(%error, "cannot flush alerts file");
    }
    if fsync != FsyncPolicy::Never {
        let _ = writer.get_ref().sync_data().await;
    }
}

async fn webhook_sink(
    mut alerts: mpsc::Receiver<Arc<Alert>>,
    client: reqwest::Client,
    settings: WebhookSettings,
    metrics: Arc<Metrics>,
) {
    let delivered = metrics
        .alerts_delivered
        .get_or_create(&labels("webhook"))
        .clone();
    let failed = metrics
        .alert_sink_failures
        .get_or_create(&labels("webhook"))
        .clone();
    let retried = metrics.webhook_retries.clone();
    while let Some(alert) = alerts.recv().await {
        let mut backoff = settings.backoff;
        let mut attempt = 0;
        loop {
            let outcome = client.post(&settings.url).json(alert.as_ref()).send().await;
            let error = match outcome {
                Ok(response) if response.status().is_success() => {
                    delivered.inc();
                    break;
                }
                Ok(response) => format!("status {}", response.status()),
                Err(error) => error.to_string(),
            };
            if attempt >= settings.retries {
                failed.inc();
                tracing::warn!(
                    alert = alert.id,
                    attempts = attempt + 1,
                    %error,
                    "webhook delivery failed; alert not delivered to the webhook"
                );
                break;
            }
            attempt += 1;
            retried.inc();
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: u64, symbol: &str) -> Alert {
        Alert {
            id,
            rule_id: "r".into(),
            symbol: crate::model::Symbol::new(symbol),
            kind: "price_above",
            value: 2.0,
            threshold: 1.0,
            ts_ms: id as i64,
            message: "m".into(),
        }
    }

    #[test]
    fn recorded_alerts_get_growing_ids_whoever_fired_them() {
        // Two cores (a cluster node's partitions) each number their alerts from 1.
        let log = AlertLog::new(10);
        let ids: Vec<u64> = [alert(1, "A"), alert(1, "B"), alert(2, "A"), alert(2, "B")]
            .into_iter()
            .map(|a| log.record(a).id)
            .collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        assert_eq!(log.last_id(), 4);
        let (after, missed) = log.after(2, 10);
        assert_eq!(after.iter().map(|a| a.id).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(missed, 0);
    }

    #[test]
    fn the_log_keeps_the_newest_first_and_filters() {
        let log = AlertLog::new(3);
        for id in 1..=5 {
            log.push(Arc::new(alert(id, if id % 2 == 0 { "A" } else { "B" })));
        }
        let ids: Vec<u64> = log.recent(None, 10).iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![5, 4, 3]);
        let ids: Vec<u64> = log.recent(Some("A"), 10).iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![4]);
        assert_eq!(log.recent(None, 1).len(), 1);
    }

    #[test]
    fn alerts_after_an_id_come_oldest_first_with_what_the_log_lost() {
        let log = AlertLog::new(3);
        assert_eq!(log.last_id(), 0);
        for id in 1..=5 {
            log.push(Arc::new(alert(id, "A")));
        }
        assert_eq!(log.last_id(), 5);
        let ids = |(alerts, missed): (Vec<Arc<Alert>>, u64)| {
            (alerts.iter().map(|a| a.id).collect::<Vec<_>>(), missed)
        };
        assert_eq!(ids(log.after(0, 10)), (vec![3, 4, 5], 2));
        assert_eq!(ids(log.after(2, 10)), (vec![3, 4, 5], 0));
        assert_eq!(ids(log.after(3, 1)), (vec![4], 0));
        assert_eq!(ids(log.after(5, 10)), (vec![], 0));
        assert_eq!(ids(log.after(9, 10)), (vec![], 0));
    }

    #[tokio::test]
    async fn the_file_holds_every_alert_once_the_task_ends() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("nested/alerts.jsonl");
        let settings = SinkSettings {
            log: false,
            file: Some(path.clone()),
            webhook: None,
            ..SinkSettings::default()
        };
        let (stream, mut listener) = broadcast::channel(2000);
        let metrics = Arc::new(Metrics::new());
        let (sender, task) = start(&settings, stream, Arc::clone(&metrics)).expect("started");
        for id in 1..=1000 {
            sender.send(Arc::new(alert(id, "A"))).await.expect("sent");
        }
        drop(sender);
        task.await.expect("sink task");
        let text = std::fs::read_to_string(&path).expect("file");
        let ids: Vec<u64> = text
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).expect("json")["id"]
                    .as_u64()
                    .expect("id")
            })
            .collect();
        assert_eq!(ids, (1..=1000).collect::<Vec<_>>());
        assert!(matches!(listener.try_recv(), Ok(StreamEvent::Alert(a)) if a.id == 1));
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_whole_lines_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("alerts.jsonl");
        let whole = "{\"id\":1}\n{\"id\":2}\n";
        for torn in ["", "{", "{\"id\":3", "{\"id\":3}"] {
            std::fs::write(&path, format!("{whole}{torn}")).expect("write");
            let removed = repair_torn_line(&path).expect("repaired");
            assert_eq!(removed, torn.len() as u64, "{torn:?}");
            assert_eq!(std::fs::read_to_string(&path).expect("read"), whole);
        }
        std::fs::write(&path, "{\"id\"").expect("write");
        repair_torn_line(&path).expect("repaired");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "");
        assert_eq!(
            repair_torn_line(&dir.path().join("none")).expect("absent"),
            0
        );
    }
}
