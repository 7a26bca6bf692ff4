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
pub const CLIENT_QUEUE: usize = 256;

/// Most symbols one stream may filter on.
pub const MAX_STREAM_SYMBOLS: usize = 1_000;

/// Query of `GET /v1/stream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// Follows the broadcast for one client until it disconnects or the service stops.
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
    // Queues an event; false once the client is gone.
    let send = |event: Outgoing| match queue.try_send(event) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            state.metrics.stream_lagged.inc();
            true
        }
        Err(TrySendError::Closed(_)) => false,
    };
    loop {
        let open = tokio::select! {
            _ = state.stopping.cancelled() => false,
            _ = queue.closed() => false,
            message = receiver.recv() => match message {
                Ok(StreamEvent::Alert(alert)) => {
                    if filter.alerts && (filter.watched)(alert.symbol.as_str()) {
                        send(Outgoing::Alert(alert))
                    } else {
                        true
                    }
                }
                Ok(StreamEvent::Stats(snapshot)) => {
                    if !filter.stats || !(filter.watched)(snapshot.symbol.as_str()) {
                        true
                    } else if last_sent
                        .get(&snapshot.symbol)
                        .is_none_or(|sent| sent.elapsed() >= throttle)
                    {
                        last_sent.insert(snapshot.symbol.clone(), Instant::now());
                        pending.remove(&snapshot.symbol);
                        send(Outgoing::Stats(snapshot))
                    } else {
                        pending.insert(snapshot.symbol.clone(), snapshot);
                        true
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    // Only if this task itself falls behind the broadcast.
                    state.metrics.stream_lagged.inc_by(missed);
                    send(Outgoing::Lagged(missed))
                }
                Err(RecvError::Closed) => false,
            },
            _ = flush.tick() => {
                let due: Vec<Symbol> = pending
                    .keys()
                    .filter(|s| last_sent.get(*s).is_none_or(|sent| sent.elapsed() >= throttle))
                    .cloned()
                    .collect();
                let mut open = true;
                for symbol in due {
                    if let Some(snapshot) = pending.remove(&symbol) {
                        last_sent.insert(symbol, Instant::now());
                        open &= send(Outgoing::Stats(snapshot));
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
