//! File replays as a source: every file read on its own thread, merged by event time, paced, and
//! forwarded to the core.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::health::FeedStatus;
use crate::model::{CoreEvent, FeedId};
use crate::replay::merge::merge_by_event_time;
use crate::replay::{ReplayItem, ReplaySource, Speed, pace, replay_stream};

type BoxedReplay = Pin<Box<dyn Stream<Item = ReplayItem> + Send>>;

/// Reads, merges and paces the replay sources into the analytics channel.
#[tracing::instrument(name = "replay", skip_all)]
pub async fn run(
    sources: Vec<(ReplaySource, Arc<FeedStatus>)>,
    speed: Speed,
    max_pause: Option<Duration>,
    events: mpsc::Sender<CoreEvent>,
    cancel: CancellationToken,
) {
    let streams: Vec<(FeedId, BoxedReplay)> = sources
        .into_iter()
        .map(|(source, status)| {
            tracing::info!(source = %source.display_name(), format = source.format.name(), "replay started");
            status.set_running();
            let feed = status.id();
            let stream: BoxedReplay = Box::pin(replay_stream(source, feed, status));
            (feed, stream)
        })
        .collect();
    let merged = Box::pin(merge_by_event_time(streams));
    let mut paced = Box::pin(pace(merged, speed, max_pause));
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            event = paced.next() => event,
        };
        let Some(event) = event else {
            return;
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
