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
//! Each client has a forwarding task that follows the service's `broadcast` channel (so the
//! channel never waits for a client), filters and throttles, and puts the events into the
//! client's own bounded queue ([`CLIENT_QUEUE`] events) with `try_send`; the HTTP body drains that
//! queue as fast as the client reads, encoding each event only then. The queue holds shared
//! pointers (the snapshot or alert every client sees), not text, so a stalled client costs its
//! queue's pointers and its connection's buffers, not a copy of what it missed. A client that
//! reads too slowly has events dropped, counted in `/metrics` (`tickstream_stream_lagged_total`);
//! it never slows the pipeline. Streams end when the service shuts down.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use super::stats::SymbolStats;
use super::{ApiError, ApiQuery, AppState};
use crate::alerts::sink::StreamEvent;
use crate::analytics::SymbolSnapshot;
use crate::metrics::Metrics;
use crate::model::Symbol;

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

/// An event waiting in a client's queue: shared with every other client until it is encoded.
enum Outgoing {
    Alert(Arc<crate::alerts::Alert>),
    Stats(Arc<SymbolSnapshot>),
    Lagged(u64),
}

impl Outgoing {
    /// The Server-Sent Event, encoded as the client reads it.
    fn encode(&self, state: &AppState) -> Event {
        match self {
            Outgoing::Alert(alert) => Event::default()
                .event("alert")
                .json_data(alert.as_ref())
                .unwrap_or_else(|_| Event::default().event("error").data("cannot encode alert")),
            Outgoing::Stats(snapshot) => stats_event(state, snapshot),
            Outgoing::Lagged(missed) => Event::default().event("lagged").data(missed.to_string()),
        }
    }
}

/// What one client asked for.
struct Filter {
    alerts: bool,
    stats: bool,
    watched: Box<dyn Fn(&str) -> bool + Send>,
}

/// What became of an event offered to a client's queue.
enum Offer {
    Queued,
    /// The queue is full: the event comes back.
    Full(Outgoing),
    /// The client is gone.
    Closed,
}

/// Follows the broadcast for one client until it disconnects or the service stops.
///
/// Stats are conflated per symbol: one that cannot be queued (or is held back by the throttle)
/// waits in `pending`, replaced by any newer one of its symbol, so a stalled client holds at most
/// one snapshot per symbol besides its queue. Alerts that do not fit are dropped. Both are counted
/// as lagged.
async fn forward(
    state: AppState,
    mut receiver: tokio::sync::broadcast::Receiver<StreamEvent>,
    queue: mpsc::Sender<Outgoing>,
    filter: Filter,
    _guard: ClientGuard,
) {
    let throttle = state.stream_throttle;
    let mut last_sent: HashMap<Symbol, Instant> = HashMap::new();
    let mut pending: HashMap<Symbol, Arc<SymbolSnapshot>> = HashMap::new();
    let mut flush = tokio::time::interval((throttle / 4).max(Duration::from_millis(5)));
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let offer = |event: Outgoing| match queue.try_send(event) {
        Ok(()) => Offer::Queued,
        Err(TrySendError::Full(event)) => Offer::Full(event),
        Err(TrySendError::Closed(_)) => Offer::Closed,
    };
    loop {
        let open = tokio::select! {
            _ = state.stopping.cancelled() => false,
            _ = queue.closed() => false,
            message = receiver.recv() => match message {
                Ok(StreamEvent::Alert(alert)) => {
                    if filter.alerts && (filter.watched)(alert.symbol.as_str()) {
                        match offer(Outgoing::Alert(alert)) {
                            Offer::Queued => true,
                            Offer::Full(_) => {
                                state.metrics.stream_lagged.inc();
                                true
                            }
                            Offer::Closed => false,
                        }
                    } else {
                        true
                    }
                }
                Ok(StreamEvent::Stats(published)) => {
                    let mut open = true;
                    let now = Instant::now();
                    for snapshot in published.iter().filter(|_| filter.stats) {
                        if !(filter.watched)(snapshot.symbol.as_str()) {
                            continue;
                        }
                        let due = last_sent
                            .get(&snapshot.symbol)
                            .is_none_or(|sent| now.duration_since(*sent) >= throttle);
                        if !due {
                            pending.insert(snapshot.symbol.clone(), Arc::clone(snapshot));
                            continue;
                        }
                        match offer(Outgoing::Stats(Arc::clone(snapshot))) {
                            Offer::Queued => {
                                last_sent.insert(snapshot.symbol.clone(), now);
                                pending.remove(&snapshot.symbol);
                            }
                            Offer::Full(_) => {
                                state.metrics.stream_lagged.inc();
                                pending.insert(snapshot.symbol.clone(), Arc::clone(snapshot));
                            }
                            Offer::Closed => open = false,
                        }
                    }
                    open
                }
                Err(RecvError::Lagged(missed)) => {
                    // Only if this task itself falls behind the broadcast: it skips ahead, and
                    // every watched symbol's latest snapshot becomes pending, so the client still
                    // ends up with the current state of each.
                    state.metrics.stream_lagged.inc_by(missed);
                    if filter.stats {
                        let (latest, _) = state.snapshots.all();
                        for snapshot in latest {
                            if (filter.watched)(snapshot.symbol.as_str()) {
                                pending.insert(snapshot.symbol.clone(), snapshot);
                            }
                        }
                    }
                    !matches!(offer(Outgoing::Lagged(missed)), Offer::Closed)
                }
                Err(RecvError::Closed) => false,
            },
            _ = flush.tick(), if !pending.is_empty() => {
                let now = Instant::now();
                let due: Vec<Symbol> = pending
                    .keys()
                    .filter(|s| last_sent.get(*s).is_none_or(|sent| now.duration_since(*sent) >= throttle))
                    .cloned()
                    .collect();
                let mut open = true;
                for symbol in due {
                    let Some(snapshot) = pending.remove(&symbol) else { continue };
                    match offer(Outgoing::Stats(snapshot)) {
                        Offer::Queued => {
                            last_sent.insert(symbol, now);
                        }
                        Offer::Full(Outgoing::Stats(snapshot)) => {
                            // Still full: it waits (and may be superseded) until the client reads.
                            pending.insert(symbol, snapshot);
                            break;
                        }
                        Offer::Full(_) => break,
                        Offer::Closed => {
                            open = false;
                            break;
                        }
                    }
                }
                open
            }
        };
        if !open {
            break;
        }
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
    let encoder = state.clone();
    tokio::spawn(forward(state, receiver, queue, filter, guard));
    let events = ReceiverStream::new(events).map(move |event| Ok(event.encode(&encoder)));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
