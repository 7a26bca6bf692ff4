//! A live feed as a source: the connector's batches (the frames that arrived together) forwarded
//! to the core.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::feeds::connector::{ConnectorSettings, FeedSpec, live_stream};
use crate::health::FeedStatus;
use crate::model::CoreEvent;

/// How long a stopping live feed gets to close its connection and hand over its last trades.
const LIVE_STOP_GRACE: Duration = Duration::from_secs(2);

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
        // The connector has already gathered the frames that arrived together into one batch:
        // one channel hop (and one share of a snapshot publication) per burst.
        let Some(batch) = batch else {
            return;
        };
        if !batch.quotes.is_empty() && events.send(CoreEvent::Quotes(batch.quotes)).await.is_err() {
            return;
        }
        if !batch.trades.is_empty() && events.send(CoreEvent::Trades(batch.trades)).await.is_err() {
            return;
        }
    }
}
