//! A live feed as a source: the connector's batches forwarded to the core, the frames that have
//! already arrived sent together.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::feeds::connector::{ConnectorSettings, FeedSpec, live_stream};
use crate::health::FeedStatus;
use crate::model::CoreEvent;

/// How long a stopping live feed gets to close its connection and hand over its last trades.
const LIVE_STOP_GRACE: Duration = Duration::from_secs(2);

/// Most trades and quotes of a live feed's already-arrived frames sent to the core as one event.
const LIVE_EVENTS_PER_SEND: usize = 4096;

/// Forwards one live feed's batches into the analytics channel until it is cancelled (through
/// `connector.cancel`) or the channel closes.
#[tracing::instrument(name = "feed", skip_all, fields(feed = %status.name()))]
pub async fn run(
    spec: FeedSpec,
    connector: ConnectorSettings,
    status: Arc<FeedStatus>,
    events: mpsc::Sender<CoreEvent>,
) {
    status.set_running();
    let feed = status.id();
    let cancel = connector.cancel.clone();
    let mut batches = Box::pin(live_stream(spec, connector, feed, status));
    loop {
        // Once stopping, the connector closes its socket (a WebSocket close) and ends its
        // stream; a connector that does not end within the grace period is dropped.
        let batch = if cancel.is_cancelled() {
            match tokio::time::timeout(LIVE_STOP_GRACE, batches.next()).await {
                Ok(batch) => batch,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                _ = cancel.cancelled() => continue,
                batch = batches.next() => batch,
            }
        };
        let Some(mut batch) = batch else {
            return;
        };
        // Batches that are ready by now go in the same send: the connector batches what had
        // arrived when it looked, and asking it again catches what arrived meanwhile (one
        // connection, `cargo bench --bench wire`: 1.31 M trades/s without this, 1.46 M with).
        let mut ended = false;
        while batch.trades.len() + batch.quotes.len() < LIVE_EVENTS_PER_SEND {
            match batches.next().now_or_never() {
                Some(Some(more)) => {
                    batch.trades.extend(more.trades);
                    batch.quotes.extend(more.quotes);
                }
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        if !batch.quotes.is_empty() && events.send(CoreEvent::Quotes(batch.quotes)).await.is_err() {
            return;
        }
        if !batch.trades.is_empty() && events.send(CoreEvent::Trades(batch.trades)).await.is_err() {
            return;
        }
        if ended {
            return;
        }
    }
}
