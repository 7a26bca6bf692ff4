//! Alerts across nodes: an alert fires once per rule and symbol cluster-wide — on the owner of
//! the symbol's partition, whose sink task delivers it (log, file, webhook) — and every node
//! shows it (`/v1/alerts`, the live stream), as a single process would.
//!
//! The owner's partition cores hand their alerts to a relay ([`relay`]), which passes each to the
//! node's sink task and publishes it on `tickstream.alerts.<node>`, which the stream
//! [`ALERT_STREAM`] keeps (the latest [`RECENT_ALERTS`], for the retention). Every node reads
//! that stream from its start ([`receive`]: an ordered consumer), skipping what its own run
//! published, into its log of recent alerts under its own ids, and wakes its stream clients: a
//! node that joins late, or restarts, shows the alerts fired before it came, as every other
//! node does.

use std::sync::Arc;

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::ClusterError;
use crate::alerts::Alert;
use crate::alerts::sink::{AlertLog, RECENT_ALERTS};
use crate::fanout::StreamEvent;
use crate::model::Symbol;

/// The stream that keeps the cluster's recent alerts.
pub const ALERT_STREAM: &str = "TICKSTREAM_ALERTS";

/// The header naming the run ([`AlertLog::run`]) of the node that published an alert.
const RUN_HEADER: &str = "Tickstream-Run";

fn subject(node: &str) -> String {
    format!("tickstream.alerts.{node}")
}

/// Opens (creating when absent) the stream of the cluster's recent alerts.
pub async fn open_stream(
    js: &jetstream::Context,
    replicas: usize,
    retention: Duration,
) -> Result<jetstream::stream::Stream, ClusterError> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: ALERT_STREAM.to_string(),
        description: Some("tickstream: the cluster's recent alerts".to_string()),
        subjects: vec![subject("*")],
        max_messages: i64::try_from(RECENT_ALERTS).unwrap_or(i64::MAX),
        max_age: retention,
        num_replicas: replicas,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| ClusterError::jetstream("creating the alert stream", e))
}

/// An alert as another node published it.
#[derive(Debug, Deserialize)]
struct WireAlert {
    rule_id: String,
    symbol: String,
    kind: String,
    value: f64,
    threshold: f64,
    ts_ms: i64,
    message: String,
}

impl WireAlert {
    fn into_alert(self) -> Option<Alert> {
        Some(Alert {
            id: 0,
            rule_id: Arc::from(self.rule_id.as_str()),
            symbol: Symbol::new(&self.symbol),
            kind: crate::alerts::rules::kind_named(&self.kind)?,
            value: self.value,
            threshold: self.threshold,
            ts_ms: self.ts_ms,
            message: self.message,
        })
    }
}

/// Passes this node's alerts to its sink task and publishes them for the other nodes, until
/// the partition cores have all stopped (the channel closes).
pub async fn relay(
    client: async_nats::Client,
    node: String,
    run: u64,
    mut fired: mpsc::Receiver<Arc<Alert>>,
    sinks: mpsc::Sender<Arc<Alert>>,
) {
    let subject = subject(&node);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(RUN_HEADER, run.to_string().as_str());
    while let Some(alert) = fired.recv().await {
        if let Ok(payload) = serde_json::to_vec(&*alert) {
            // Kept by the alert stream (a plain publish: the sinks are the record, and the relay
            // never waits on the stream's acknowledgement).
            let _ = client
                .publish_with_headers(subject.clone(), headers.clone(), payload.into())
                .await;
        }
        // The sink task delivers it (it never blocks the cores: they hand alerts over with
        // `try_send`, and this relay waits for room instead).
        if sinks.send(alert).await.is_err() {
            break;
        }
    }
}

/// Takes the cluster's alerts — the stream's, from its start, then as they are published —
/// except those of this node's own run into this node's log and live stream, until `stop`.
pub async fn receive(
    alerts: jetstream::stream::Stream,
    log: Arc<AlertLog>,
    stream: broadcast::Sender<StreamEvent>,
    stop: CancellationToken,
) {
    let own_run = log.run().to_string();
    // The next stream sequence wanted: the consumer is made again from it after an interruption.
    let mut next: u64 = 1;
    let mut pause = Duration::from_millis(250);
    loop {
        let consumer = alerts
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: if next <= 1 {
                    consumer::DeliverPolicy::All
                } else {
                    consumer::DeliverPolicy::ByStartSequence {
                        start_sequence: next,
                    }
                },
                ..Default::default()
            })
            .await;
        let messages = match consumer {
            Ok(consumer) => consumer.messages().await.ok(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the cluster's alerts yet");
                None
            }
        };
        if let Some(mut messages) = messages {
            pause = Duration::from_millis(250);
            loop {
                let message = tokio::select! {
                    message = messages.next() => message,
                    () = stop.cancelled() => return,
                };
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => {
                        tracing::warn!(%error, "reading the cluster's alerts");
                        break;
                    }
                    None => break,
                };
                if let Ok(info) = message.info() {
                    next = info.stream_sequence + 1;
                }
                let mine = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(RUN_HEADER))
                    .is_some_and(|run| run.as_str() == own_run);
                if mine {
                    continue;
                }
                match serde_json::from_slice::<WireAlert>(&message.payload)
                    .ok()
                    .and_then(WireAlert::into_alert)
                {
                    Some(alert) => {
                        let alert = log.record(alert);
                        let _ = stream.send(StreamEvent::Alert(alert));
                    }
                    None => {
                        tracing::warn!(subject = %message.subject, "skipping an alert that is not one")
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => pause = (pause * 2).min(Duration::from_secs(5)),
            () = stop.cancelled() => return,
        }
    }
}
