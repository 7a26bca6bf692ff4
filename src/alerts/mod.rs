//! Alerts: rules evaluated in the analytics core as trades are applied, and their delivery.
//!
//! - [`rules`]: the rule shapes (TOML and JSON), validation, and the [`rules::RuleBook`] the API
//!   edits and the core reads.
//! - [`evaluate`]: firing per rule and symbol on event time (armed, cooldown, re-arm), inside
//!   the core; no wall clock, so replays give the same alerts at any speed.
//! - [`sink`]: the bounded channel out of the core, the one sink task, and the sinks (log,
//!   JSON-lines file, webhook, the live stream), each behind its own bounded queue.

pub mod evaluate;
pub mod rules;
pub mod sink;

pub use evaluate::{Alert, AlertEvaluator};
pub use rules::{RuleBook, RuleSpec};
