//! The stream clock: event time as the pipeline sees it.
//!
//! The clock is the largest exchange timestamp seen so far across all feeds. Every "current"
//! answer is *as of* this clock. A trade older than the clock by more than the allowed lateness is
//! late (dropped and counted by the caller); a trade within the lateness is still applied, in
//! event-time order. Only event times move the clock: this module never reads the wall clock, so
//! a replay gives the same numbers at any speed.

use crate::model::Timestamp;

/// How an event's time relates to the stream clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// At or after the clock (the clock moves to it): append in order.
    InOrder,
    /// Behind the clock but within the allowed lateness: insert at its event-time position.
    Reordered,
    /// Behind the clock by more than the allowed lateness: drop and count.
    Late,
}

/// The largest event time seen so far, and the lateness policy.
#[derive(Debug, Clone)]
pub struct StreamClock {
    now: Option<Timestamp>,
    allowed_lateness: i64,
}

impl StreamClock {
    /// A clock that has seen nothing yet, admitting events up to `allowed_lateness` nanoseconds
    /// behind it.
    pub fn new(allowed_lateness: i64) -> Self {
        StreamClock {
            now: None,
            allowed_lateness: allowed_lateness.max(0),
        }
    }

    /// The current stream time, `None` before the first event.
    pub fn now(&self) -> Option<Timestamp> {
        self.now
    }

    /// The allowed lateness in nanoseconds.
    pub fn allowed_lateness(&self) -> i64 {
        self.allowed_lateness
    }

    /// Classifies an event at `ts` without moving the clock.
    pub fn classify(&self, ts: Timestamp) -> Admission {
        match self.now {
            Some(now) if ts < now => {
                if now - ts > self.allowed_lateness {
                    Admission::Late
                } else {
                    Admission::Reordered
                }
            }
            _ => Admission::InOrder,
        }
    }

    /// Classifies an event at `ts` and moves the clock forward when the event is newer.
    pub fn observe(&mut self, ts: Timestamp) -> Admission {
        let admission = self.classify(ts);
        if admission == Admission::InOrder {
            self.now = Some(ts);
        }
        admission
    }

    /// Moves the clock forward to `ts` without an event (a quiet market); never moves it back.
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
    fn advancing_never_goes_back() {
        let mut clock = StreamClock::new(0);
        assert!(clock.advance_to(5));
        assert!(!clock.advance_to(4));
        assert_eq!(clock.now(), Some(5));
    }
}
