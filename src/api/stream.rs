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
//! Every event has an `id:` ([`Cursor`]: the service's run and the last alert id passed) and the
//! stream opens with `retry:` ([`RETRY`]); a client that reconnects with `Last-Event-ID` (as
//! browsers' `EventSource` does by itself) gets every alert it missed that the recent log still
//! holds, then the latest stats of every symbol it watches — stats are snapshots, the latest
//! suffices.
//!
//! Each client has a forwarding task ([`crate::fanout::forward`]) that follows the service's
//! `broadcast` channel (so the channel never waits for a client), filters and throttles, and puts
//! the events into the client's own bounded queue ([`CLIENT_QUEUE`] events) with `try_send`; the
//! HTTP body drains that queue as fast as the client reads, encoding each event only then. The queue holds shared
//! pointers (the snapshot or alert every client sees), not text, so a stalled client costs its
//! queue's pointers and its connection's buffers, not a copy of what it missed. A client that
//! reads too slowly gets its alerts late (from the log) and its stats conflated, counted in
//! `/metrics` (`tickstream_stream_lagged_total`); it never slows the pipeline. A client whose
//! queue stays full for the stall timeout (`--stall-timeout`, 30 s) is disconnected. Streams end
//! when the service shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use super::server::ConnectionHandle;
use super::stats::SymbolStats;
use super::{ApiError, ApiQuery, AppState};
use crate::analytics::snapshot::SnapshotStore;
use crate::analytics::{SymbolSnapshot, WindowSpec};
use crate::fanout::{
    Client, Cursor, Ended, Filter, Outgoing, Start, Stats, StreamRequestError, forward,
};
use crate::metrics::Metrics;

/// Events queued for one client before further ones wait (alerts) or are conflated (stats).
pub const CLIENT_QUEUE: usize = 64;

/// The reconnection delay the stream asks browsers to use (`retry:`).
pub const RETRY: Duration = Duration::from_secs(1);

pub use crate::fanout::MAX_STREAM_SYMBOLS;

/// Query of `GET /v1/stream`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated symbols; every symbol when absent.
    pub symbols: Option<String>,
    /// Comma-separated event kinds: `alert`, `stats` (default both).
    pub events: Option<String>,
    /// Resume after this event id (as the `Last-Event-ID` header does; the header wins).
    pub last_event_id: Option<String>,
}

impl From<StreamRequestError> for ApiError {
    fn from(error: StreamRequestError) -> Self {
        ApiError::BadParameter(error.to_string())
    }
}

/// Counts a connected client for as long as its stream lives.
struct ClientGuard(Arc<Metrics>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.stream_clients.dec();
    }
}

/// The resume point a request names (`Last-Event-ID`, else `last_event_id`), if any.
pub(super) fn resumed(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Cursor>, ApiError> {
    let header = headers
        .get("last-event-id")
        .map(|value| {
            value.to_str().map_err(|_| {
                ApiError::BadParameter("Last-Event-ID is not visible ASCII".to_string())
            })
        })
        .transpose()?;
    match header.or(query).map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => Ok(Some(text.parse()?)),
    }
}

/// A client's stream: its queue, and the cursor it starts from.
pub(super) struct Subscription {
    /// What the client's forwarding task queues.
    pub events: mpsc::Receiver<Outgoing>,
    /// Where the stream starts.
    pub start: Cursor,
}

/// Subscribes a client: spawns its forwarding task, which follows `filters`, starts after
/// `resumed` (see [`Cursor::start`]) and, if the client stalls, closes its connection.
pub(super) fn subscribe(
    state: &AppState,
    filters: watch::Receiver<Filter>,
    resumed: Option<Cursor>,
    connection: Option<ConnectionHandle>,
) -> Subscription {
    let after = Cursor::start(resumed, &state.alerts);
    let start = Cursor {
        run: state.alerts.run(),
        alert: after,
    };
    let receiver = state.stream.subscribe();
    let (queue, events) = mpsc::channel(CLIENT_QUEUE);
    state.metrics.stream_clients.inc();
    let guard = ClientGuard(Arc::clone(&state.metrics));
    let client = Client {
        throttle: state.stream_throttle,
        stall: state.stall,
        stopping: state.stopping.clone(),
        metrics: Arc::clone(&state.metrics),
        snapshots: Arc::clone(&state.snapshots),
        remote: Arc::clone(&state.remote_stats),
        alerts: Arc::clone(&state.alerts),
    };
    let start_at = Start {
        after,
        snapshots: resumed.is_some(),
    };
    tokio::spawn(async move {
        let _guard = guard;
        if forward(client, receiver, queue, filters, start_at).await == Ended::Stalled {
            tracing::debug!("a live-stream client stopped reading: disconnected");
            if let Some(connection) = connection {
                connection.close();
            }
        }
    });
    Subscription { events, start }
}

/// A snapshot's `stats` event data: the body of `GET /v1/symbols/{s}/stats`, exact as of the
/// store's clock.
pub fn stats_json(
    snapshot: &SymbolSnapshot,
    store: &SnapshotStore,
    windows: &[WindowSpec],
) -> serde_json::Result<String> {
    let as_of = store
        .clock()
        .map_or(snapshot.as_of, |c| c.max(snapshot.as_of));
    serde_json::to_string(&SymbolStats::new(snapshot, as_of, windows, None))
}

/// An event's kind and its `data` as JSON, encoded as the client reads it.
pub(super) fn encode(event: &Outgoing, state: &AppState) -> (&'static str, String) {
    let json = match event {
        Outgoing::Alert(alert) => ("alert", serde_json::to_string(alert.as_ref())),
        Outgoing::Stats {
            snapshot: Stats::Local(snapshot),
            ..
        } => (
            "stats",
            stats_json(snapshot, &state.snapshots, &state.windows),
        ),
        Outgoing::Stats {
            snapshot: Stats::Remote(remote),
            ..
        } => return ("stats", remote.body.get().to_string()),
        Outgoing::Lagged { missed, .. } => return ("lagged", missed.to_string()),
    };
    match json {
        (kind, Ok(data)) => (kind, data),
        (kind, Err(error)) => (
            "error",
            format!("{{\"message\":\"cannot encode {kind}: {error}\"}}"),
        ),
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
        - `event: lagged` — `data` is the number of events this client missed: alerts the recent \
          log (10,000) no longer held when the client got to them, or stats conflated because it \
          read too slowly (its queue holds 64); the next `stats` of each symbol brings it up to date.\n\n\
        Every event has an `id:` (`RUN-ALERT`: the service's run and the last alert id passed), \
        and the stream opens with `retry: 1000`. Reconnecting with `Last-Event-ID` (or \
        `last_event_id=`) resumes: first the alerts missed that the recent log holds (all of \
        them after a restart of the service), then the latest stats of every watched symbol. \
        Comments (`:`) keep the connection alive. A client that reads nothing for the stall \
        timeout (30 s) while events wait is disconnected. The stream ends when the service stops.",
    params(StreamQuery, ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id.")),
    responses(
        (status = 200, description = "The event stream: `alert`, `stats` and `lagged` events (see the description).", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad filter or event id.", body = super::error::ErrorBody),
    ),
)]
pub async fn stream(
    State(state): State<AppState>,
    connection: Option<Extension<ConnectionHandle>>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = Filter::parse(query.symbols.as_deref(), query.events.as_deref())?;
    let resumed = resumed(&headers, query.last_event_id.as_deref())?;
    // The filter of an SSE stream never changes: the sender may go.
    let (_, filters) = watch::channel(filter);
    let subscription = subscribe(&state, filters, resumed, connection.map(|Extension(c)| c));
    let run = subscription.start.run;
    let opening = Event::default()
        .id(subscription.start.to_string())
        .retry(RETRY);
    let events = ReceiverStream::new(subscription.events).map(move |event| {
        let (kind, data) = encode(&event, &state);
        let id = Cursor {
            run,
            alert: event.cursor(),
        };
        Ok(Event::default().event(kind).id(id.to_string()).data(data))
    });
    let events = tokio_stream::once(Ok(opening)).chain(events);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
