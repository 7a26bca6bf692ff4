//! Replay speed: as fast as possible, real time, or N× real time.
//!
//! Pacing maps event time to wall time: the first event is released at once, and an event `d`
//! of event time after it is released `d / speed` of wall time later. Gaps in the data longer than
//! `max_pause` (if set) are shortened to it in wall time only, so a replay of a trading day does
//! not sit silent through the night; event times, and therefore every statistic, are unchanged.

use std::time::Duration;

use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt};

use crate::model::CoreEvent;

/// How fast a replay runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the pipeline takes it.
    Max,
    /// A multiple of real time (1 = real time, 60 = sixty times faster).
    Factor(f64),
}

/// Why a speed does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid speed {0:?}: expected `max` or a positive number (1 = real time)")]
pub struct SpeedError(pub String);

impl std::str::FromStr for Speed {
    type Err = SpeedError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        let factor = trimmed
            .trim_end_matches(['x', 'X'])
            .parse::<f64>()
            .map_err(|_| SpeedError(text.to_string()))?;
        if factor.is_finite() && factor > 0.0 {
            Ok(Speed::Factor(factor))
        } else {
            Err(SpeedError(text.to_string()))
        }
    }
}

/// Paces `events` at `speed`.
pub fn pace<S>(
    events: S,
    speed: Speed,
    max_pause: Option<Duration>,
) -> impl Stream<Item = CoreEvent> + Send
where
    S: Stream<Item = CoreEvent> + Send + Unpin,
{
    async_stream::stream! {
        let mut events = events;
        let Speed::Factor(factor) = speed else {
            while let Some(event) = events.next().await {
                yield event;
            }
            return;
        };
        // (event time, wall time) that later events are paced from.
        let mut anchor: Option<(i64, Instant)> = None;
        while let Some(event) = events.next().await {
            let CoreEvent::Trades(batch) = event else {
                yield event;
                continue;
            };
            let mut released = 0;
            for index in 0..batch.len() {
                let ts = batch[index].exchange_ts;
                let (anchor_ts, anchor_wall) = *anchor.get_or_insert((ts, Instant::now()));
                let offset = Duration::from_secs_f64((ts - anchor_ts).max(0) as f64 / 1e9 / factor);
                let due = anchor_wall + offset;
                let now = Instant::now();
                if due <= now {
                    continue;
                }
                if index > released {
                    yield CoreEvent::Trades(batch[released..index].to_vec());
                    released = index;
                }
                let wait = due - now;
                match max_pause {
                    Some(limit) if wait > limit => {
                        tokio::time::sleep(limit).await;
                        anchor = Some((ts, Instant::now()));
                    }
                    _ => tokio::time::sleep_until(due).await,
                }
            }
            if released == 0 {
                yield CoreEvent::Trades(batch);
            } else if released < batch.len() {
                yield CoreEvent::Trades(batch[released..].to_vec());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FeedId, Symbol, Trade};

    fn batch(seconds: &[f64]) -> CoreEvent {
        CoreEvent::Trades(
            seconds
                .iter()
                .map(|&s| Trade {
                    symbol: Symbol::new("A"),
                    price: 1.0,
                    size: 1.0,
                    exchange_ts: (s * 1e9) as i64,
                    receive_ts: 0,
                    feed: FeedId(0),
                    trade_id: None,
                    side: None,
                })
                .collect(),
        )
    }

    /// Paces two batches; returns (wall seconds since start, event seconds) per released trade.
    async fn release_times(speed: Speed, max_pause: Option<Duration>) -> Vec<(f64, f64)> {
        let start = Instant::now();
        let events = tokio_stream::iter(vec![batch(&[0.0, 1.0, 1.0, 3.0]), batch(&[13.0])]);
        let mut paced = Box::pin(pace(events, speed, max_pause));
        let mut released = Vec::new();
        while let Some(event) = paced.next().await {
            if let CoreEvent::Trades(trades) = event {
                let wall = (Instant::now() - start).as_secs_f64();
                released.extend(trades.iter().map(|t| (wall, t.exchange_ts as f64 / 1e9)));
            }
        }
        released
    }

    #[tokio::test(start_paused = true)]
    async fn a_factor_maps_event_time_to_wall_time() {
        let released = release_times(Speed::Factor(2.0), None).await;
        let expected = [(0.0, 0.0), (0.5, 1.0), (0.5, 1.0), (1.5, 3.0), (6.5, 13.0)];
        assert_eq!(released.len(), expected.len());
        for ((wall, event), (expected_wall, expected_event)) in released.iter().zip(expected) {
            assert_eq!(*event, expected_event);
            assert!((wall - expected_wall).abs() < 0.002, "{released:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn long_gaps_are_capped_in_wall_time_only() {
        let released = release_times(Speed::Factor(1.0), Some(Duration::from_secs(1))).await;
        let walls: Vec<f64> = released
            .iter()
            .map(|r| (r.0 * 1000.0).round() / 1000.0)
            .collect();
        assert_eq!(walls, [0.0, 1.0, 1.0, 2.0, 3.0]);
        let events: Vec<f64> = released.iter().map(|r| r.1).collect();
        assert_eq!(events, [0.0, 1.0, 1.0, 3.0, 13.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn max_speed_does_not_wait() {
        let released = release_times(Speed::Max, None).await;
        assert!(
            released.iter().all(|(wall, _)| *wall == 0.0),
            "{released:?}"
        );
    }

    #[test]
    fn parses_speeds() {
        assert_eq!("max".parse(), Ok(Speed::Max));
        assert_eq!("60".parse(), Ok(Speed::Factor(60.0)));
        assert_eq!("2.5x".parse(), Ok(Speed::Factor(2.5)));
        assert!("0".parse::<Speed>().is_err());
        assert!("-1".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
    }
}
