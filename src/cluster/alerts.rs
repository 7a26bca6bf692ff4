//! Alerts across nodes: an alert fires once per rule and symbol cluster-wide — on the owner of
//! the symbol's partition, whose sink task delivers it (log, file, webhook) — and every node
//! shows it (`/v1/alerts`, the live stream), as a single process would.
//!
//! The owner's partition cores hand their alerts to a relay ([`relay`]), which passes each to the
//! node's sink task and publishes it on `tickstream.alerts.<node>` (core NATS: the stream of
//! record is the owner's sinks; this is the view). Every node takes the others' alerts
//! ([`receive`]) into its log of recent alerts, under its own ids, and wakes its stream clients.

use std::sync::Arc;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::alerts::Alert;
use crate::alerts::sink::AlertLog;
use crate::fanout::StreamEvent;
use crate::model::Symbol;

fn subject(node: &str) -> String {
    format!("tickstream.alerts.{node}")
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
    mut fired: mpsc::Receiver<Arc<Alert>>,
    sinks: mpsc::Sender<Arc<Alert>>,
) {
    let subject = subject(&node);
    while let Some(alert) = fired.recv().await {
        if let Ok(payload) = serde_json::to_vec(&*alert) {
            let _ = client.publish(subject.clone(), payload.into()).await;
        }
        // The sink task delivers it (it never blocks the cores: they hand alerts over with
        // `try_send`, and this relay waits for room instead).
        if sinks.send(alert).await.is_err() {
            break;
        }
    }
}

/// Takes the other nodes' alerts into this node's log and live stream until `stop`.
pub async fn receive(
    client: async_nats::Client,
    node: String,
    log: Arc<AlertLog>,
    stream: broadcast::Sender<StreamEvent>,
    stop: CancellationToken,
) {
    let mut alerts = match client.subscribe(subject("*")).await {
        Ok(subscriber) => subscriber,
        Err(error) => {
            tracing::error!(%error, "cannot receive the other nodes' alerts");
            return;
        }
    };
    let own = subject(&node);
    loop {
        let message = tokio::select! {
            message = alerts.next() => match message {
                Some(message) => message,
                None => break,
            },
            () = stop.cancelled() => break,
        };
        if message.subject.as_str() == own {
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
            None => tracing::warn!(subject = %message.subject, "skipping an alert that is not one"),
        }
    }
}
