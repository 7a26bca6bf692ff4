//! The live stream across nodes: every node's `/v1/stream` (SSE and WebSocket) carries the
//! statistics of every symbol, as one process's does, not only of the partitions it owns.
//!
//! Each node gathers the snapshots its partition cores publish, the latest per symbol, and every
//! [`STATS_EVERY`] sends the ones that changed, encoded as the stream's `stats` data (the body
//! of `GET /v1/symbols/{s}/stats`), on `tickstream.stats.<node>` (core NATS: the statistics are
//! snapshots, the next one supersedes a lost one). Every node takes the others' into its stream
//! ([`StreamEvent::Remote`]) and keeps the latest per symbol ([`RemoteLatest`]) for clients that
//! start or resume. A client's own throttle (`--stream-throttle`) still applies; a symbol's
//! statistics reach another node's clients at most [`STATS_EVERY`] later than the owner's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::value::RawValue;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::analytics::SymbolSnapshot;
use crate::analytics::snapshot::SnapshotStore;
use crate::fanout::{RemoteLatest, RemoteStats, StreamEvent};
use crate::model::Symbol;

/// How often a node sends the statistics of its symbols that changed (each symbol at most once
/// per period, the latest).
pub const STATS_EVERY: Duration = Duration::from_millis(100);

/// Largest message sent (NATS refuses messages over its `max_payload`, 1 MiB by default): more
/// statistics than this go in several messages.
const MAX_MESSAGE: usize = 256 * 1024;

/// Encodes a snapshot as the stream's `stats` data (the API's business, handed in by the wiring).
pub type StatsEncoder = Arc<dyn Fn(&SymbolSnapshot) -> serde_json::Result<String> + Send + Sync>;

fn subject(node: &str) -> String {
    format!("tickstream.stats.{node}")
}

/// Sends the statistics of the symbols this node's partitions publish on its live stream, until
/// `stop`.
pub async fn publish(
    client: async_nats::Client,
    node: String,
    mut events: broadcast::Receiver<StreamEvent>,
    snapshots: Arc<SnapshotStore>,
    encode: StatsEncoder,
    stop: CancellationToken,
) {
    let subject = subject(&node);
    let mut changed: HashMap<Symbol, Arc<SymbolSnapshot>> = HashMap::new();
    let mut tick = tokio::time::interval(STATS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            event = events.recv() => match event {
                Ok(StreamEvent::Stats(published)) => {
                    for snapshot in published.iter() {
                        changed.insert(snapshot.symbol.clone(), Arc::clone(snapshot));
                    }
                }
                Ok(_) => {}
                // Fell behind this node's own stream: every symbol's latest instead.
                Err(RecvError::Lagged(_)) => {
                    for snapshot in snapshots.all().0 {
                        changed.insert(snapshot.symbol.clone(), snapshot);
                    }
                }
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick(), if !changed.is_empty() => {
                for message in encode_all(changed.drain().map(|(_, s)| s), &encode) {
                    if client.publish(subject.clone(), message.into()).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// `[["SYMBOL",{stats}],…]` messages of at most about [`MAX_MESSAGE`] bytes.
fn encode_all(
    snapshots: impl Iterator<Item = Arc<SymbolSnapshot>>,
    encode: &StatsEncoder,
) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut message = Vec::new();
    for snapshot in snapshots {
        let Ok(body) = encode(&snapshot) else {
            continue;
        };
        let Ok(symbol) = serde_json::to_string(snapshot.symbol.as_str()) else {
            continue;
        };
        if !message.is_empty() && message.len() + body.len() + symbol.len() > MAX_MESSAGE {
            message.push(b']');
            messages.push(std::mem::take(&mut message));
        }
        message.push(if message.is_empty() { b'[' } else { b',' });
        message.push(b'[');
        message.extend_from_slice(symbol.as_bytes());
        message.push(b',');
        message.extend_from_slice(body.as_bytes());
        message.push(b']');
    }
    if !message.is_empty() {
        message.push(b']');
        messages.push(message);
    }
    messages
}

/// Takes the other nodes' statistics into this node's live stream until `stop`.
pub async fn receive(
    client: async_nats::Client,
    node: String,
    remote: Arc<RemoteLatest>,
    stream: broadcast::Sender<StreamEvent>,
    stop: CancellationToken,
) {
    let mut messages = match client.subscribe(subject("*")).await {
        Ok(subscriber) => subscriber,
        Err(error) => {
            tracing::error!(%error, "cannot receive the other nodes' statistics");
            return;
        }
    };
    let own = subject(&node);
    loop {
        let message = tokio::select! {
            message = messages.next() => match message {
                Some(message) => message,
                None => break,
            },
            () = stop.cancelled() => break,
        };
        if message.subject.as_str() == own {
            continue;
        }
        match decode(&message.payload) {
            Some(received) => {
                remote.update(&received);
                let _ = stream.send(StreamEvent::Remote(received.into()));
            }
            None => tracing::warn!(subject = %message.subject, "skipping statistics that are not"),
        }
    }
}

fn decode(payload: &[u8]) -> Option<Vec<Arc<RemoteStats>>> {
    let items: Vec<(String, Box<RawValue>)> = serde_json::from_slice(payload).ok()?;
    Some(
        items
            .into_iter()
            .map(|(symbol, body)| {
                Arc::new(RemoteStats {
                    symbol: Symbol::new(&symbol),
                    body,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_sent_is_read_back_and_large_sets_are_split() {
        let encode: StatsEncoder = Arc::new(|s: &SymbolSnapshot| {
            Ok(format!(
                "{{\"symbol\":{},\"pad\":\"{}\"}}",
                serde_json::to_string(s.symbol.as_str())?,
                "x".repeat(1000)
            ))
        });
        let snapshots: Vec<Arc<SymbolSnapshot>> = (0..600)
            .map(|i| {
                Arc::new(SymbolSnapshot {
                    symbol: Symbol::new(&format!("S\"{i}")),
                    as_of: 0,
                    last_price: None,
                    last_ts: None,
                    quote: None,
                    trade_count: 0,
                    windows: Arc::from(Vec::new()),
                    candles: Vec::new(),
                })
            })
            .collect();
        let messages = encode_all(snapshots.into_iter(), &encode);
        assert_eq!(messages.len(), 3, "600 kB in messages of at most 256 kB");
        let mut read = Vec::new();
        for message in &messages {
            assert!(message.len() <= MAX_MESSAGE + 2048);
            read.extend(decode(message).expect("decodes"));
        }
        assert_eq!(read.len(), 600);
        assert_eq!(read[7].symbol.as_str(), "S\"7");
        assert!(read[7].body.get().starts_with("{\"symbol\":\"S\\\"7\""));
        assert!(decode(b"[[1,2]]").is_none());
        assert!(decode(b"not json").is_none());
    }
}
