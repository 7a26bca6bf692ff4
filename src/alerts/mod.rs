//! Alerts: rules evaluated in the analytics core as trades are applied, and their delivery.
//!
//! - [`spec`]: the rule shape as written (TOML and JSON) and its validation.
//! - [`rules`]: validated rules: what each watches and how the core reads it.
//! - [`book`]: the [`RuleBook`] the API edits and the core reads (copy-on-write), and its file.
//! - [`evaluate`]: firing per rule and symbol on event time (armed, cooldown, re-arm), inside
//!   the core; no wall clock, so replays give the same alerts at any speed.
//! - [`sink`]: the bounded channel out of the core, the one sink task, and the sinks (log,
//!   JSON-lines file, webhook, the live stream), each behind its own bounded queue.

pub mod book;
pub mod evaluate;
pub mod rules;
pub mod sink;
pub mod spec;

pub use book::RuleBook;
pub use evaluate::{Alert, AlertEvaluator};
pub use spec::RuleSpec;

/// What the alert modules' unit tests share: the windows and intervals rules are checked
/// against, and a rule from JSON.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use crate::alerts::RuleSpec;
    use crate::analytics::{IntervalSpec, WindowSpec};

    /// `1m` and `5m`.
    pub fn windows() -> Arc<[WindowSpec]> {
        WindowSpec::parse_list(&["1m".to_string(), "5m".to_string()])
            .expect("windows")
            .into()
    }

    /// `1m`.
    pub fn intervals() -> Arc<[IntervalSpec]> {
        IntervalSpec::parse_list(&["1m".to_string()])
            .expect("intervals")
            .into()
    }

    /// A rule from its JSON.
    pub fn spec(json: &str) -> RuleSpec {
        serde_json::from_str(json).expect("rule JSON")
    }
}
