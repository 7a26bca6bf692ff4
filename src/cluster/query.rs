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
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(name))
            .map(|value| value.as_str().to_string())
    };
    let status = header("Tickstream-Status")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ForwardError::Nats(partition, "an answer without a status".to_string()))?;
    Ok(ForwardReply {
        status,
        content_type: header("Content-Type"),
        body: message.payload,
    })
}

/// Serves partition `partition`'s queries with `responder` until `stop`.
pub async fn serve(
    client: async_nats::Client,
    partition: u32,
    responder: Arc<dyn Responder>,
    stop: CancellationToken,
) {
    let mut requests = match client
        .queue_subscribe(subject(partition), OWNERS.to_string())
        .await
    {
        Ok(subscriber) => subscriber,
        Err(error) => {
            tracing::error!(partition, %error, "cannot serve a partition's queries");
            return;
        }
    };
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
        // Each request on its own: a slow one does not hold the others.
        tokio::spawn(async move {
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
            let _ = client
                .publish_with_headers(reply, headers, answer.body)
                .await;
        });
    }
    let _ = requests.unsubscribe().await;
}
