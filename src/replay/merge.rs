//! Merging several sources into one stream in event-time order.
//!
//! Each source yields batches of trades in its own (event-time) order. The merge keeps a buffer
//! per source and remembers the largest event time each source has delivered. A buffered trade
//! is released once no open source can still deliver anything that goes before it: every other
//! open source has delivered a later time — or the same time, if that source is listed after it
//! (ties go to the source listed first, across batch boundaries too, so a merge is
//! deterministic). The source with the smallest largest-time-delivered can always release its
//! whole buffer, so the merge never waits on a source whose batch is not sorted: a source that
//! is not sorted still merges, its stragglers reach the core, which applies them in order within
//! the allowed lateness and drops and counts the rest.
//!
//! When a source ends, its end is reported after its last trade, so that the analytics task can
//! mark the feed finished only once everything it sent is applied.

use std::collections::VecDeque;

use tokio_stream::{Stream, StreamExt};

use crate::model::{CoreEvent, FeedId, Trade};
use crate::replay::ReplayItem;

struct Lane<S> {
    feed: FeedId,
    stream: S,
    buffer: VecDeque<Trade>,
    /// The largest event time the source has delivered.
    high: Option<i64>,
    open: bool,
    error: Option<String>,
    end_reported: bool,
}

/// Merges `sources` (each tagged with its feed) by event time.
pub fn merge_by_event_time<S>(sources: Vec<(FeedId, S)>) -> impl Stream<Item = CoreEvent> + Send
where
    S: Stream<Item = ReplayItem> + Send + Unpin,
{
    async_stream::stream! {
        let mut lanes: Vec<Lane<S>> = sources
            .into_iter()
            .map(|(feed, stream)| Lane {
                feed,
                stream,
                buffer: VecDeque::new(),
                high: None,
                open: true,
                error: None,
                end_reported: false,
            })
            .collect();
        loop {
            // Every open lane needs at least one buffered trade to define the watermark.
            for lane in lanes.iter_mut() {
                while lane.open && lane.buffer.is_empty() {
                    match lane.stream.next().await {
                        // The buffer is empty: it takes the batch's allocation, no copy.
                        Some(Ok(batch)) => {
                            if let Some(high) = batch.iter().map(|t| t.exchange_ts).max() {
                                lane.high = Some(lane.high.map_or(high, |h| h.max(high)));
                            }
                            lane.buffer = VecDeque::from(batch);
                        }
                        Some(Err(error)) => {
                            lane.open = false;
                            lane.error = Some(error.to_string());
                        }
                        None => lane.open = false,
                    }
                }
            }
            for lane in lanes.iter_mut() {
                if !lane.open && lane.buffer.is_empty() && !lane.end_reported {
                    lane.end_reported = true;
                    yield CoreEvent::SourceEnded { feed: lane.feed, error: lane.error.take() };
                }
            }
            let merged = if lanes.len() == 1 {
                // One source: its batch goes on as it came (a `Vec` made from a `VecDeque` that
                // was made from a `Vec` keeps the allocation).
                Vec::from(std::mem::take(&mut lanes[0].buffer))
            } else {
                release(&mut lanes)
            };
            if !merged.is_empty() {
                yield CoreEvent::Trades(merged);
            }
            for lane in lanes.iter_mut() {
                if !lane.open && lane.buffer.is_empty() && !lane.end_reported {
                    lane.end_reported = true;
                    yield CoreEvent::SourceEnded { feed: lane.feed, error: lane.error.take() };
                }
            }
            if lanes.iter().all(|lane| lane.end_reported) {
                break;
            }
        }
    }
}

/// The latest event time lane `index` may release: every other open lane has delivered a later
/// time, or the same time if it is listed after this one.
fn limit<S>(lanes: &[Lane<S>], index: usize) -> i64 {
    lanes
        .iter()
        .enumerate()
        .filter(|&(other, lane)| other != index && lane.open)
        .map(|(other, lane)| {
            let high = lane.high.unwrap_or(i64::MIN);
            if other < index {
                high.saturating_sub(1)
            } else {
                high
            }
        })
        .min()
        .unwrap_or(i64::MAX)
}

/// Takes every buffered trade that no open source can still precede, smallest event time first
/// (ties: the source listed first).
fn release<S>(lanes: &mut [Lane<S>]) -> Vec<Trade> {
    let limits: Vec<i64> = (0..lanes.len()).map(|index| limit(lanes, index)).collect();
    let mut merged = Vec::new();
    loop {
        let next = lanes
            .iter()
            .zip(&limits)
            .enumerate()
            .filter_map(|(index, (lane, &limit))| {
                lane.buffer
                    .front()
                    .map(|t| (t.exchange_ts, index))
                    .filter(|&(ts, _)| ts <= limit)
            })
            .min();
        let Some((_, index)) = next else {
            return merged;
        };
        if let Some(trade) = lanes[index].buffer.pop_front() {
            merged.push(trade);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Symbol;

    fn trade(feed: u16, ms: i64) -> Trade {
        Trade {
            symbol: Symbol::new("A"),
            price: 1.0,
            size: 1.0,
            exchange_ts: ms,
            receive_ts: ms,
            feed: FeedId(feed),
            trade_id: None,
            side: None,
        }
    }

    fn source(
        feed: u16,
        batches: Vec<Vec<i64>>,
    ) -> (FeedId, impl Stream<Item = ReplayItem> + Unpin) {
        let items: Vec<ReplayItem> = batches
            .into_iter()
            .map(|batch| Ok(batch.into_iter().map(|ms| trade(feed, ms)).collect()))
            .collect();
        (FeedId(feed), tokio_stream::iter(items))
    }

    #[tokio::test]
    async fn merges_in_event_time_and_reports_ends_after_last_trade() {
        let merged = merge_by_event_time(vec![
            source(0, vec![vec![1, 4], vec![], vec![6, 9]]),
            source(1, vec![vec![2, 3, 4, 5]]),
        ]);
        let events: Vec<CoreEvent> = merged.collect().await;
        let mut order = Vec::new();
        let mut ended = Vec::new();
        for event in events {
            match event {
                CoreEvent::Trades(batch) => {
                    order.extend(batch.iter().map(|t| (t.exchange_ts, t.feed.0)))
                }
                CoreEvent::SourceEnded { feed, error } => {
                    assert!(error.is_none());
                    ended.push((feed.0, order.len()));
                }
                other => panic!("replays carry trades and ends only: {other:?}"),
            }
        }
        assert_eq!(
            order,
            [
                (1, 0),
                (2, 1),
                (3, 1),
                (4, 0),
                (4, 1),
                (5, 1),
                (6, 0),
                (9, 0)
            ]
        );
        assert_eq!(ended, [(1, 6), (0, 8)]);
    }

    async fn order_of(
        sources: Vec<(FeedId, impl Stream<Item = ReplayItem> + Unpin + Send)>,
    ) -> Vec<(i64, u16)> {
        let merged = merge_by_event_time(sources);
        let events: Vec<CoreEvent> =
            tokio::time::timeout(std::time::Duration::from_secs(10), merged.collect())
                .await
                .expect("the merge ends");
        events
            .into_iter()
            .flat_map(|event| match event {
                CoreEvent::Trades(batch) => {
                    batch.iter().map(|t| (t.exchange_ts, t.feed.0)).collect()
                }
                _ => Vec::new(),
            })
            .collect()
    }

    #[tokio::test]
    async fn an_unsorted_batch_never_stalls_the_merge() {
        // Source 0: t, t+2, t+3, t+5, t+4 (one row out of order); source 1: t.
        let order = order_of(vec![
            source(0, vec![vec![0, 2, 3, 5, 4]]),
            source(1, vec![vec![0]]),
        ])
        .await;
        assert_eq!(order, [(0, 0), (0, 1), (2, 0), (3, 0), (5, 0), (4, 0)]);
    }

    #[tokio::test]
    async fn ties_go_to_the_first_listed_source_across_batches() {
        // 1,500 trades at one time from source 0 in two batches, 1,000 from source 1.
        let order = order_of(vec![
            source(0, vec![vec![7; 1024], vec![7; 476], vec![8]]),
            source(1, vec![vec![7; 1000]]),
        ])
        .await;
        let feeds: Vec<u16> = order.iter().map(|&(_, feed)| feed).collect();
        let mut expected = vec![0u16; 1500];
        expected.extend([1u16; 1000]);
        expected.push(0);
        assert_eq!(feeds, expected);
    }
}
