//! Any node answers any symbol: a request for a symbol whose partition another node owns is
//! asked of its owner over NATS request/reply, as a service per partition
//! (`tickstream.query.<partition>`, a queue group of the owners so one answers while a partition
//! moves). The owner answers through its own HTTP routes ([`Responder`], set by the API), so a
//! forwarded answer is the owner's answer byte for byte: status, content type and body.
//!
//! An owner subscribes only once its partition has caught up with the stream: while a partition
//! is rebuilt, or between two owners, nobody answers, and the asking node says so (503, retry).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::bytes::Bytes;
use tokio_util::sync::CancellationToken;

/// The subject of partition `partition`'s query service.
pub fn subject(partition: u32) -> String {
    format!("tickstream.query.{partition}")
}

/// The queue group of a partition's owners.
const OWNERS: &str = "owners";

/// How long an asking node waits for the owner's answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A request forwarded to a partition's owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardRequest {
    /// The HTTP method.
    pub method: String,
    /// The path and query.
    pub uri: String,
}

/// The owner's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardReply {
    /// The HTTP status.
    pub status: u16,
    /// The content type, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

/// Answers forwarded requests (the API's routes).
pub trait Responder: Send + Sync {
    /// Answers `request` as this node's HTTP API would.
    fn respond(
        &self,
        request: ForwardRequest,
    ) -> Pin<Box<dyn Future<Output = ForwardReply> + Send>>;
}

/// Why a forwarded request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No node serves the partition right now (it is moving, or being rebuilt).
    #[error("no node answers for partition {0} right now (it is moving or being rebuilt)")]
    NoOwner(u32),
    /// The owner did not answer in time.
    #[error("the owner of partition {0} did not answer within {1:?}")]
    TimedOut(u32, Duration),
    /// NATS failed.
    #[error("asking the owner of partition {0}: {1}")]
    Nats(u32, String),
    /// A live node did not answer for its part.
    #[error("node {0} did not answer for its partitions")]
    NodeSilent(String),
}

/// An answer as [`answer`] wrote it, and the partitions it says it covers (none when it does
/// not say); `None` without a status.
fn reply_of(message: async_nats::Message) -> Option<(ForwardReply, Vec<u32>)> {
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(name))
            .map(|value| value.as_str().to_string())
    };
    let status = header("Tickstream-Status")?.parse().ok()?;
    let partitions = header("Tickstream-Partitions")
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect();
    let content_type = header("Content-Type");
    Some((
        ForwardReply {
            status,
            content_type,
            body: message.payload,
        },
        partitions,
    ))
}

/// Asks partition `partition`'s owner.
pub async fn ask(
    client: &async_nats::Client,
    partition: u32,
    request: &ForwardRequest,
) -> Result<ForwardReply, ForwardError> {
    let payload = serde_json::to_vec(request).unwrap_or_default();
    let asked = tokio::time::timeout(
        ASK_TIMEOUT,
        client.request(subject(partition), payload.into()),
    )
    .await
    .map_err(|_| ForwardError::TimedOut(partition, ASK_TIMEOUT))?;
    let message = asked.map_err(|error| match error.kind() {
        async_nats::RequestErrorKind::NoResponders => ForwardError::NoOwner(partition),
        async_nats::RequestErrorKind::TimedOut => ForwardError::TimedOut(partition, ASK_TIMEOUT),
        _ => ForwardError::Nats(partition, error.to_string()),
    })?;
    let (reply, _) = reply_of(message)
        .ok_or_else(|| ForwardError::Nats(partition, "an answer without a status".to_string()))?;
    Ok(reply)
}

/// Serves partition `partition`'s queries with `responder` until `stop`.
pub async fn serve(
    client: async_nats::Client,
    partition: u32,
    responder: Arc<dyn Responder>,
    stop: CancellationToken,
) {
    let subscribed = client
        .queue_subscribe(subject(partition), OWNERS.to_string())
        .await;
    match subscribed {
        Ok(requests) => answer(client, requests, responder, None, stop).await,
        Err(error) => tracing::error!(partition, %error, "cannot serve a partition's queries"),
    }
}

/// The subject of node `node`'s own service: its part of the cross-symbol answers.
pub fn node_subject(node: &str) -> String {
    format!("tickstream.node.{node}")
}

/// Serves this node's part of cross-symbol requests (`/v1/symbols`, `/v1/stats`) until `stop`:
/// each answer says which partitions it covers (header `Tickstream-Partitions`), so the asking
/// node knows whether the parts it gathered cover every partition.
pub async fn serve_node(
    client: async_nats::Client,
    node: String,
    shared: Arc<super::lease::LeaseShared>,
    stop: CancellationToken,
) {
    let responder = loop {
        if let Some(responder) = shared.responder.get() {
            break Arc::clone(responder);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
            () = stop.cancelled() => return,
        }
    };
    match client.subscribe(node_subject(&node)).await {
        Ok(requests) => answer(client, requests, responder, Some(shared), stop).await,
        Err(error) => tracing::error!(%error, "cannot serve this node's queries"),
    }
}

/// The partitions an answer covers, as its header says them.
fn partitions_header(served: &std::collections::BTreeSet<u32>) -> String {
    served
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Asks node `node` for its part of a cross-symbol answer; returns it and the partitions it
/// covers.
pub async fn ask_node(
    client: &async_nats::Client,
    node: &str,
    request: &ForwardRequest,
) -> Result<(ForwardReply, Vec<u32>), ForwardError> {
    let payload = serde_json::to_vec(request).unwrap_or_default();
    let asked = tokio::time::timeout(
        ASK_TIMEOUT,
        client.request(node_subject(node), payload.into()),
    )
    .await
    .map_err(|_| ForwardError::NodeSilent(node.to_string()))?;
    let message = asked.map_err(|_| ForwardError::NodeSilent(node.to_string()))?;
    reply_of(message).ok_or_else(|| ForwardError::NodeSilent(node.to_string()))
}

/// Answers the requests of one subscription with `responder`.
async fn answer(
    client: async_nats::Client,
    mut requests: async_nats::Subscriber,
    responder: Arc<dyn Responder>,
    served: Option<Arc<super::lease::LeaseShared>>,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            message = requests.next() => match message {
                Some(message) => message,
                None => break,
            },
            () = stop.cancelled() => break,
        };
        let Some(reply) = message.reply.clone() else {
            continue;
        };
        let client = client.clone();
        let responder = Arc::clone(&responder);
        let served = served.clone();
        // Each request on its own: a slow one does not hold the others.
        tokio::spawn(async move {
            // The partitions covered are read before answering: the answer covers at least them.
            let covered = served.as_ref().map(|shared| {
                partitions_header(&shared.serving.lock().unwrap_or_else(|p| p.into_inner()))
            });
            let answer = match serde_json::from_slice::<ForwardRequest>(&message.payload) {
                Ok(request) => responder.respond(request).await,
                Err(error) => ForwardReply {
                    status: 400,
                    content_type: Some("application/json".to_string()),
                    body: Bytes::from(
                        serde_json::json!({"error": {"code": "bad_request", "message": format!("not a forwarded request: {error}")}})
                            .to_string(),
                    ),
                },
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Tickstream-Status", answer.status.to_string().as_str());
            if let Some(content_type) = &answer.content_type {
                headers.insert("Content-Type", content_type.as_str());
            }
            if let Some(covered) = covered {
                headers.insert("Tickstream-Partitions", covered.as_str());
            }
            let _ = client
                .publish_with_headers(reply, headers, answer.body)
                .await;
        });
    }
    let _ = requests.unsubscribe().await;
}
