//! Reconnect discipline as data: exponential backoff with full jitter, capped, reset after a
//! healthy connection, and a circuit breaker that opens after repeated failures.
//!
//! Full jitter (a uniformly random delay between zero and the exponential bound) spreads the
//! reconnects of many clients after a venue-wide drop instead of synchronising them.

use std::time::Duration;

/// How a connector retries.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// Bound of the first delay.
    pub backoff_initial: Duration,
    /// Largest bound.
    pub backoff_max: Duration,
    /// Growth of the bound per failed attempt.
    pub backoff_multiplier: f64,
    /// A connection that lasted this long resets the backoff and the failure count.
    pub healthy_after: Duration,
    /// Consecutive failures that open the circuit (0: never).
    pub circuit_failures: u32,
    /// How long an open circuit waits before trying again.
    pub circuit_open_for: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            backoff_multiplier: 2.0,
            healthy_after: Duration::from_secs(30),
            circuit_failures: 10,
            circuit_open_for: Duration::from_secs(60),
        }
    }
}

/// What to do before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Wait this long (backoff state).
    Backoff(Duration),
    /// The circuit is open: wait this long (circuit-open state), then try again.
    CircuitOpen(Duration),
}

impl Retry {
    /// The wait.
    pub fn delay(self) -> Duration {
        match self {
            Retry::Backoff(delay) | Retry::CircuitOpen(delay) => delay,
        }
    }
}

/// The retry state of one connector.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    failures: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A fresh state for `policy`.
    pub fn new(policy: ReconnectPolicy) -> Self {
        Backoff {
            policy,
            failures: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// A state with a fixed random seed (tests).
    pub fn with_seed(policy: ReconnectPolicy, seed: u64) -> Self {
        Backoff {
            policy,
            failures: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The connection ended (or never came up) after `connected_for` of health; returns how to
    /// wait before the next attempt.
    pub fn next(&mut self, connected_for: Duration) -> Retry {
        if connected_for >= self.policy.healthy_after {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.policy.circuit_failures > 0 && self.failures >= self.policy.circuit_failures {
            // Half-open after the wait: one more failure re-opens it at once.
            self.failures = self.policy.circuit_failures - 1;
            return Retry::CircuitOpen(self.policy.circuit_open_for);
        }
        let exponent = i32::try_from(self.failures - 1).unwrap_or(i32::MAX);
        let bound = self.policy.backoff_initial.as_secs_f64()
            * self.policy.backoff_multiplier.powi(exponent);
        let bound = bound.min(self.policy.backoff_max.as_secs_f64());
        Retry::Backoff(Duration::from_secs_f64(bound * self.rng.f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReconnectPolicy {
        ReconnectPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            backoff_multiplier: 2.0,
            healthy_after: Duration::from_secs(10),
            circuit_failures: 6,
            circuit_open_for: Duration::from_secs(5),
        }
    }

    #[test]
    fn delays_grow_within_the_cap_with_jitter() {
        let mut backoff = Backoff::with_seed(policy(), 7);
        let bounds = [0.1, 0.2, 0.4, 0.8, 1.0];
        let mut delays = Vec::new();
        for bound in bounds {
            let Retry::Backoff(delay) = backoff.next(Duration::ZERO) else {
                panic!("circuit opened early")
            };
            assert!(delay.as_secs_f64() <= bound, "{delay:?} > {bound}");
            delays.push(delay);
        }
        assert!(
            delays.windows(2).any(|w| w[0] != w[1]),
            "jittered: {delays:?}"
        );
    }

    #[test]
    fn circuit_opens_after_repeated_failures_and_health_resets() {
        let mut backoff = Backoff::with_seed(policy(), 1);
        for _ in 0..5 {
            assert!(matches!(backoff.next(Duration::ZERO), Retry::Backoff(_)));
        }
        assert_eq!(
            backoff.next(Duration::ZERO),
            Retry::CircuitOpen(Duration::from_secs(5))
        );
        assert_eq!(
            backoff.next(Duration::ZERO),
            Retry::CircuitOpen(Duration::from_secs(5))
        );
        // A healthy connection resets everything.
        let Retry::Backoff(delay) = backoff.next(Duration::from_secs(11)) else {
            panic!("reset expected")
        };
        assert!(delay <= Duration::from_millis(100));
        assert_eq!(backoff.failures(), 1);
    }
}
