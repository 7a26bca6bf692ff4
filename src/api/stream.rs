//! `GET /v1/stream`: a live stream of alerts and per-symbol statistics, as Server-Sent Events.
//!
//! ```text
//! curl -N 'localhost:8080/v1/stream?symbols=IBM,AIG&events=alert,stats'
//! event: stats
//! data: {"symbol":"IBM","as_of_ms":…,"last_price":…,"windows":{…}}
//!
//! event: alert
//! data: {"id":1,"rule_id":"ibm-185","symbol":"IBM","kind":"price_above",…}
//! ```
//!
//! Alerts are sent as they fire. `stats` events (the body of `GET /v1/symbols/{s}/stats`) are
//! throttled per symbol: at most one per `--stream-throttle` (default 250 ms), always the latest.
//!
//! Each client has a forwarding task ([`crate::fanout::forward`]) that follows the service's
//! `broadcast` channel (so the channel never waits for a client), filters and throttles, and puts
//! the events into the client's own bounded queue ([`CLIENT_QUEUE`] events) with `try_send`; the
//! HTTP body drains that queue as fast as the client reads, encoding each event only then. The queue holds shared
//! pointers (the snapshot or alert every client sees), not text, so a stalled client costs its
//! queue's pointers and its connection's buffers, not a copy of what it missed. A client that
//! reads too slowly has events dropped, counted in `/metrics` (`tickstream_stream_lagged_total`);
//! it never slows the pipeline. Streams end when the service shuts down.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use super::stats::SymbolStats;
use super::{ApiError, ApiQuery, AppState};
use crate::analytics::SymbolSnapshot;
use crate::fanout::{Client, Filter, Outgoing, forward};
use crate::metrics::Metrics;

/// Events queued for one client before further ones are dropped.
pub const CLIENT_QUEUE: usize = 64;

/// Most symbols one stream may filter on.
pub const MAX_STREAM_SYMBOLS: usize = 1_000;

/// Query of `GET /v1/stream`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated symbols; every symbol when absent.
    pub symbols: Option<String>,
    /// Comma-separated event kinds: `alert`, `stats` (default both).
    pub events: Option<String>,
}

/// Counts a connected client for as long as its stream lives.
struct ClientGuard(Arc<Metrics>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.stream_clients.dec();
    }
}

fn stats_event(state: &AppState, snapshot: &SymbolSnapshot) -> Event {
    let as_of = state
        .snapshots
        .clock()
        .map_or(snapshot.as_of, |c| c.max(snapshot.as_of));
    let body = SymbolStats::new(snapshot, as_of, &state.windows, None);
    Event::default()
        .event("stats")
        .json_data(body)
        .unwrap_or_else(|_| Event::default().event("error").data("cannot encode stats"))
}

/// The Server-Sent Event of an event from a client's queue, encoded as the client reads it.
fn encode(event: &Outgoing, state: &AppState) -> Event {
    match event {
        Outgoing::Alert(alert) => Event::default()
            .event("alert")
            .json_data(alert.as_ref())
            .unwrap_or_else(|_| Event::default().event("error").data("cannot encode alert")),
        Outgoing::Stats(snapshot) => stats_event(state, snapshot),
        Outgoing::Lagged(missed) => Event::default().event("lagged").data(missed.to_string()),
    }
}

/// `GET /v1/stream`.
#[utoipa::path(
    get,
    path = "/v1/stream",
    tag = "stream",
    summary = "Live alerts and statistics as Server-Sent Events",
    description = "An endless `text/event-stream`. Its events:\n\n\
        - `event: alert` — `data` is an [`Alert`](#/components/schemas/Alert), sent as it fires;\n\
        - `event: stats` — `data` is a symbol's [`SymbolStats`](#/components/schemas/SymbolStats) \
          (the body of `GET /v1/symbols/{symbol}/stats`), at most one per symbol per \
          `--stream-throttle` (default 250 ms), always the latest;\n\
        - `event: lagged` — `data` is the number of events this client missed because it read \
          too slowly (its queue holds 64); the next `stats` of each symbol brings it up to date.\n\n\
        Comments (`:`) keep the connection alive. The stream ends when the service stops.",
    params(StreamQuery),
    responses(
        (status = 200, description = "The event stream: `alert`, `stats` and `lagged` events (see the description).", content_type = "text/event-stream", body = String),
    ),
)]
pub async fn stream(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let symbols: Option<HashSet<String>> = match &query.symbols {
        None => None,
        Some(list) => {
            let set: HashSet<String> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if set.is_empty() || set.len() > MAX_STREAM_SYMBOLS {
                return Err(ApiError::BadParameter(format!(
                    "symbols must list 1 to {MAX_STREAM_SYMBOLS} symbols"
                )));
            }
            Some(set)
        }
    };
    let (mut want_alerts, mut want_stats) = (query.events.is_none(), query.events.is_none());
    for kind in query
        .events
        .iter()
        .flat_map(|e| e.split(','))
        .map(str::trim)
    {
        match kind {
            "alert" | "alerts" => want_alerts = true,
            "stats" => want_stats = true,
            other => {
                return Err(ApiError::BadParameter(format!(
                    "unknown event kind {other:?}; expected alert, stats"
                )));
            }
        }
    }
    let receiver = state.stream.subscribe();
    let (queue, events) = mpsc::channel(CLIENT_QUEUE);
    state.metrics.stream_clients.inc();
    let guard = ClientGuard(Arc::clone(&state.metrics));
    let watched = move |symbol: &str| symbols.as_ref().is_none_or(|s| s.contains(symbol));
    let filter = Filter {
        alerts: want_alerts,
        stats: want_stats,
        watched: Box::new(watched),
    };
    let client = Client {
        throttle: state.stream_throttle,
        stopping: state.stopping.clone(),
        metrics: Arc::clone(&state.metrics),
        snapshots: Arc::clone(&state.snapshots),
    };
    let encoder = state.clone();
    tokio::spawn(async move {
        let _guard = guard;
        forward(client, receiver, queue, filter).await;
    });
    let events = ReceiverStream::new(events).map(move |event| Ok(encode(&event, &encoder)));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
