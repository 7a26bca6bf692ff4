//! The cluster from an analytics node's side of HTTP: `GET /v1/cluster`, and the forwarding that
//! lets any node answer any symbol ([`crate::cluster::query`]): a request for a symbol whose
//! partition another node owns is answered by that owner, status and body as it gave them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower::ServiceExt;
use utoipa::ToSchema;

use super::{ApiError, AppState};
use crate::cluster::lease::{LeaseRecord, NodeRecord};
use crate::cluster::partition::partition_of;
use crate::cluster::query::{self, ForwardReply, ForwardRequest, Responder};

/// Marks a request another node forwarded: its answer must come from here.
const FORWARDED: &str = "x-tickstream-forwarded";

/// The largest answer a node forwards.
const MAX_FORWARDED_BODY: usize = 64 << 20;

/// One partition in `GET /v1/cluster`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionView {
    /// The partition.
    pub partition: u32,
    /// Its owner (null while it has none: it is moving).
    pub owner: Option<String>,
    /// The node that should own it (rendezvous hashing over the live nodes).
    pub desired: Option<String>,
    /// The owner's lease.
    pub lease: Option<LeaseRecord>,
    /// Whether this node answers for it itself.
    pub served_here: bool,
}

/// The body of `GET /v1/cluster`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterBody {
    /// This node's name.
    pub node: String,
    /// The stream's partition count (0 until the node has joined).
    pub partitions: u32,
    /// The live nodes (their heartbeats have not expired).
    pub nodes: Vec<NodeRecord>,
    /// Every partition, its owner and lease.
    pub partition_owners: Vec<PartitionView>,
    /// Messages not yet consumed, summed over every owner's consumers (from their leases).
    pub consumer_lag: u64,
    /// When this node last read the leases, epoch ms.
    pub read_at_ms: i64,
}

/// `GET /v1/cluster`: the nodes, the partitions and their owners, consumer lag, leases.
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "system",
    summary = "The cluster: nodes, partitions and their owners, consumer lag, leases",
    responses(
        (status = 200, description = "The cluster as this node last read it (every second).", body = ClusterBody),
        (status = 404, description = "A single process: no cluster (`not_found`).", body = super::error::ErrorBody),
    ),
)]
pub async fn cluster(State(state): State<AppState>) -> Result<Json<ClusterBody>, ApiError> {
    let Some(shared) = &state.cluster else {
        return Err(ApiError::NotFound(
            "GET /v1/cluster: this process is not an analytics node of a cluster (start it with --nats)"
                .to_string(),
        ));
    };
    let view = shared
        .view
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let partitions = shared.partition_count().unwrap_or(0);
    let partition_owners = (0..partitions)
        .map(|partition| {
            let lease = view.leases.get(&partition).cloned();
            PartitionView {
                partition,
                owner: lease.as_ref().map(|l| l.node.clone()),
                desired: view.desired.get(&partition).cloned(),
                lease,
                served_here: shared.serves(partition),
            }
        })
        .collect();
    Ok(Json(ClusterBody {
        node: view.node.clone(),
        partitions,
        nodes: view.nodes.clone(),
        consumer_lag: view.leases.values().map(|l| l.pending).sum(),
        partition_owners,
        read_at_ms: view.read_at_ms,
    }))
}

/// The symbol a per-symbol route is about (`/v1/symbols/{symbol}/…`, not the history's, which
/// every node answers from its own store).
fn symbol_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1/symbols/")?;
    let (segment, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if segment.is_empty() || tail.starts_with("history") {
        return None;
    }
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Forwards a request about a symbol this node does not serve to the node that does.
pub async fn forward(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(shared) = &state.cluster else {
        return next.run(request).await;
    };
    let Some(symbol) = symbol_of(request.uri().path()) else {
        return next.run(request).await;
    };
    let Some(partitions) = shared.partition_count() else {
        return ApiError::Unavailable("this node has not joined its cluster yet".to_string())
            .into_response();
    };
    let partition = partition_of(&symbol, partitions);
    if shared.serves(partition) {
        return next.run(request).await;
    }
    if request.headers().contains_key(FORWARDED) {
        // Asked as the owner, but the partition has just moved (or is being rebuilt).
        return ApiError::Unavailable(format!(
            "partition {partition} (of {symbol:?}) is moving between nodes; retry shortly"
        ))
        .into_response();
    }
    let Some(client) = shared.client.get() else {
        return ApiError::Unavailable("this node has not joined its cluster yet".to_string())
            .into_response();
    };
    let asked = ForwardRequest {
        method: request.method().to_string(),
        uri: request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().path().to_string(), |p| p.to_string()),
    };
    match query::ask(client, partition, &asked).await {
        Ok(reply) => {
            let mut response = Response::new(axum::body::Body::from(reply.body));
            *response.status_mut() =
                StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Some(value) = reply
                .content_type
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                response.headers_mut().insert(header::CONTENT_TYPE, value);
            }
            response
        }
        Err(error) => ApiError::Unavailable(format!("{error}; retry shortly")).into_response(),
    }
}

/// Gathers the cross-symbol answers (`/v1/symbols`, `/v1/stats`) from every live node: each
/// answers for the partitions it serves, and the parts are merged as one process would have
/// answered (sorted, ranked and limited again). When the parts do not cover every partition —
/// one is moving between nodes — the answer is a 503 saying which, rather than a list that
/// silently lacks symbols.
pub async fn gather(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(shared) = state.cluster.clone() else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    let cross = path == "/v1/symbols" || path == "/v1/stats";
    if !cross || request.headers().contains_key(FORWARDED) {
        return next.run(request).await;
    }
    let (Some(partitions), Some(client)) = (shared.partition_count(), shared.client.get().cloned())
    else {
        return ApiError::Unavailable("this node has not joined its cluster yet".to_string())
            .into_response();
    };
    let asked = ForwardRequest {
        method: request.method().to_string(),
        uri: request
            .uri()
            .path_and_query()
            .map_or_else(|| path.to_string(), |p| p.to_string()),
    };
    let is_stats = path == "/v1/stats";
    // The local answer has checked the parameters; a bad limit never gets this far.
    let limit = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("limit="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(super::stats::DEFAULT_LIMIT);
    let mut covered: std::collections::BTreeSet<u32> = shared
        .serving
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let local = next.run(request).await;
    if local.status() != StatusCode::OK {
        return local;
    }
    let Ok(local) = axum::body::to_bytes(local.into_body(), MAX_FORWARDED_BODY).await else {
        return ApiError::Internal("reading this node's part".to_string()).into_response();
    };
    let Ok(mut merged) = serde_json::from_slice::<serde_json::Value>(&local) else {
        return ApiError::Internal("this node's part is not JSON".to_string()).into_response();
    };
    let (me, others) = {
        let view = shared.view.lock().unwrap_or_else(|p| p.into_inner());
        let others: Vec<String> = view
            .nodes
            .iter()
            .map(|n| n.node.clone())
            .filter(|n| *n != view.node)
            .collect();
        (view.node.clone(), others)
    };
    let asks = others
        .iter()
        .map(|node| query::ask_node(&client, node, &asked));
    for (node, part) in others
        .iter()
        .zip(futures_util::future::join_all(asks).await)
    {
        let (reply, served) = match part {
            Ok(part) => part,
            Err(error) => {
                tracing::debug!(%node, %error, "a node's part is missing");
                continue;
            }
        };
        if reply.status != 200 {
            continue;
        }
        let Ok(part) = serde_json::from_slice::<serde_json::Value>(&reply.body) else {
            continue;
        };
        covered.extend(served);
        merge(&mut merged, part, is_stats);
    }
    let missing: Vec<u32> = (0..partitions).filter(|p| !covered.contains(p)).collect();
    if !missing.is_empty() {
        return ApiError::Unavailable(format!(
            "partitions {missing:?} have no node answering right now (moving between nodes, or being rebuilt); node {me} asked {} other node(s); retry shortly",
            others.len()
        ))
        .into_response();
    }
    finish(&mut merged, is_stats, limit);
    Json(merged).into_response()
}

/// Adds a node's part to the merged answer.
fn merge(merged: &mut serde_json::Value, part: serde_json::Value, is_stats: bool) {
    if let (Some(into), Some(from)) = (
        merged["symbols"].as_array_mut(),
        part["symbols"].as_array().cloned(),
    ) {
        into.extend(from);
    }
    let as_of = merged["as_of_ms"].as_i64().max(part["as_of_ms"].as_i64());
    merged["as_of_ms"] = as_of.map_or(serde_json::Value::Null, serde_json::Value::from);
    if is_stats {
        let total = merged["total"].as_u64().unwrap_or(0) + part["total"].as_u64().unwrap_or(0);
        merged["total"] = total.into();
    }
}

/// Sorts, deduplicates (a symbol answered by two nodes while its partition moved) and limits
/// the merged rows as one process would.
fn finish(merged: &mut serde_json::Value, is_stats: bool, limit: usize) {
    let sort = merged["sort"].as_str().unwrap_or("symbol").to_string();
    let descending = merged["order"] == "desc";
    let Some(rows) = merged["symbols"].as_array_mut() else {
        return;
    };
    let symbol = |row: &serde_json::Value| row["symbol"].as_str().unwrap_or("").to_string();
    rows.sort_by_key(symbol);
    rows.dedup_by_key(|row| symbol(row));
    if is_stats {
        rows.sort_by(|a, b| {
            let by_symbol = symbol(a).cmp(&symbol(b));
            if sort == "symbol" {
                return if descending {
                    by_symbol.reverse()
                } else {
                    by_symbol
                };
            }
            match (a[&sort].as_f64(), b[&sort].as_f64()) {
                (Some(x), Some(y)) => {
                    let ordering = x.total_cmp(&y);
                    let ordering = if descending {
                        ordering.reverse()
                    } else {
                        ordering
                    };
                    ordering.then(by_symbol)
                }
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => by_symbol,
            }
        });
    }
    if is_stats {
        rows.truncate(limit);
    }
    let count = rows.len();
    if !is_stats {
        merged["count"] = count.into();
    }
}

/// Answers forwarded requests through this node's own routes.
pub struct RouterResponder(pub axum::Router);

impl Responder for RouterResponder {
    fn respond(
        &self,
        request: ForwardRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ForwardReply> + Send>> {
        let router = self.0.clone();
        Box::pin(async move {
            let built = axum::http::Request::builder()
                .method(request.method.as_str())
                .uri(request.uri.as_str())
                .header(FORWARDED, "1")
                .body(axum::body::Body::empty());
            let Ok(built) = built else {
                return error_reply(400, "bad_request", "a forwarded request that is not HTTP");
            };
            let Ok(response) = router.oneshot(built).await;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match axum::body::to_bytes(response.into_body(), MAX_FORWARDED_BODY).await {
                Ok(body) => ForwardReply {
                    status,
                    content_type,
                    body,
                },
                Err(error) => error_reply(500, "internal", &format!("reading the answer: {error}")),
            }
        })
    }
}

fn error_reply(status: u16, code: &str, message: &str) -> ForwardReply {
    ForwardReply {
        status,
        content_type: Some("application/json".to_string()),
        body: serde_json::json!({"error": {"code": code, "message": message}})
            .to_string()
            .into(),
    }
}

/// Registers this node's routes as the answer to forwarded requests.
pub fn set_responder(state: &AppState, router: &axum::Router) {
    if let Some(shared) = &state.cluster {
        let _ = shared
            .responder
            .set(Arc::new(RouterResponder(router.clone())));
    }
}
