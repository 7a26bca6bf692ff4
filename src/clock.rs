//! The stream clock: event time as the pipeline sees it.
//!
//! Two times are kept. The **event-time clock** is the largest exchange timestamp seen so far
//! across all feeds; only trades move it, and lateness is judged against it alone: a trade older
//! than it by more than the allowed lateness is late (dropped and counted by the caller), a trade
//! within the lateness is applied, in event-time order. The **stream clock** ([`now`]) is what
//! every "current" answer is *as of*: the event-time clock, or later when a quiet live market has
//! moved it forward with the wall clock ([`advance_to`]). That advance drains windows and closes
//! candles for readers, but never makes a trade late: a venue's trades that arrive after a stall,
//! a reconnect or a burst are its freshest data, and are applied as long as they are within the
//! lateness of the event-time clock (behind the stream clock, they are inserted at their place).
//! This module never reads the wall clock itself, so a replay gives the same numbers at any speed.
//!
//! [`now`]: StreamClock::now
//! [`advance_to`]: StreamClock::advance_to

use crate::model::Timestamp;

/// How an event's time relates to the stream clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// At or after the stream clock (the clock moves to it): append in order.
    InOrder,
    /// Behind the stream clock but within the allowed lateness of the event-time clock: insert
    /// at its event-time position.
    Reordered,
    /// Behind the event-time clock by more than the allowed lateness: drop and count.
    Late,
}

/// The largest event time seen so far, the stream time readers see, and the lateness policy.
#[derive(Debug, Clone)]
pub struct StreamClock {
    /// The stream clock: `event` or later (moved by a quiet market).
    now: Option<Timestamp>,
    /// The event-time clock: the largest exchange time seen.
    event: Option<Timestamp>,
    allowed_lateness: i64,
}

impl StreamClock {
    /// A clock that has seen nothing yet, admitting events up to `allowed_lateness` nanoseconds
    /// behind it.
    pub fn new(allowed_lateness: i64) -> Self {
        StreamClock {
            now: None,
            event: None,
            allowed_lateness: allowed_lateness.max(0),
        }
    }

    /// The current stream time, `None` before the first event.
    pub fn now(&self) -> Option<Timestamp> {
        self.now
    }

    /// The event-time clock: the largest exchange time seen, `None` before the first event.
    pub fn event_time(&self) -> Option<Timestamp> {
        self.event
    }

    /// The allowed lateness in nanoseconds.
    pub fn allowed_lateness(&self) -> i64 {
        self.allowed_lateness
    }

    /// Classifies an event at `ts` without moving the clock: late only against the event-time
    /// clock.
    pub fn classify(&self, ts: Timestamp) -> Admission {
        if self
            .event
            .is_some_and(|event| event.saturating_sub(ts) > self.allowed_lateness)
        {
            return Admission::Late;
        }
        match self.now {
            Some(now) if ts < now => Admission::Reordered,
            _ => Admission::InOrder,
        }
    }

    /// Classifies an event at `ts` and moves the clocks forward when the event is newer.
    pub fn observe(&mut self, ts: Timestamp) -> Admission {
        let admission = self.classify(ts);
        if admission != Admission::Late {
            self.event = Some(self.event.map_or(ts, |event| event.max(ts)));
        }
        if admission == Admission::InOrder {
            self.now = Some(ts);
        }
        admission
    }

    /// Moves the stream clock forward to `ts` without an event (a quiet market); never moves it
    /// back, and never moves the event-time clock (lateness stays judged by event time).
    /// Returns whether the clock moved.
    pub fn advance_to(&mut self, ts: Timestamp) -> bool {
        match self.now {
            Some(now) if ts <= now => false,
            _ => {
                self.now = Some(ts);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_lateness() {
        let mut clock = StreamClock::new(1_000);
        assert_eq!(clock.now(), None);
        assert_eq!(clock.observe(10_000), Admission::InOrder);
        assert_eq!(clock.observe(10_000), Admission::InOrder);
        assert_eq!(clock.observe(9_000), Admission::Reordered);
        assert_eq!(clock.observe(8_999), Admission::Late);
        assert_eq!(clock.now(), Some(10_000));
        assert_eq!(clock.observe(12_000), Admission::InOrder);
        assert_eq!(clock.now(), Some(12_000));
    }

    #[test]
    fn a_quiet_market_advance_never_makes_a_trade_late() {
        let mut clock = StreamClock::new(1_000);
        assert_eq!(clock.observe(10_000), Admission::InOrder);
        // The wall clock moves readers 3,000 ahead during a stall …
        assert!(clock.advance_to(13_000));
        assert_eq!(clock.event_time(), Some(10_000));
        // … and the venue's next trades, within the lateness of event time, are applied.
        assert_eq!(clock.observe(10_001), Admission::Reordered);
        assert_eq!(clock.observe(9_001), Admission::Reordered);
        assert_eq!(clock.observe(9_000), Admission::Late);
        assert_eq!(clock.event_time(), Some(10_001));
        assert_eq!(clock.now(), Some(13_000));
        assert_eq!(clock.observe(13_500), Admission::InOrder);
        assert_eq!(clock.now(), Some(13_500));
        assert_eq!(clock.event_time(), Some(13_500));
    }

    #[test]
    fn advancing_never_goes_back() {
        let mut clock = StreamClock::new(0);
        assert!(clock.advance_to(5));
        assert!(!clock.advance_to(4));
        assert_eq!(clock.now(), Some(5));
    }
}
