//! Alert rules once validated: what each [`Rule`] watches ([`Condition`]) and how the core reads
//! it. Built from a [`crate::alerts::spec::RuleSpec`]; held in the [`crate::alerts::book::RuleBook`].

use std::sync::Arc;

use crate::alerts::spec::RuleSpec;
use crate::indicators::Indicator;
use crate::model::Symbol;

/// `change_pct`'s direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// change_pct > threshold.
    Up,
    /// change_pct < −threshold.
    Down,
    /// |change_pct| > threshold.
    Either,
}

/// Which side of a level an indicator rule watches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Level {
    /// value > level.
    Above(f64),
    /// value < level.
    Below(f64),
}

impl Level {
    /// The level itself.
    pub fn value(self) -> f64 {
        match self {
            Level::Above(v) | Level::Below(v) => v,
        }
    }
}

/// One output of an indicator value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The value of a single-output indicator.
    Value,
    /// MACD line.
    Macd,
    /// MACD signal.
    Signal,
    /// MACD histogram.
    Hist,
    /// Upper band.
    Upper,
    /// Middle band.
    Middle,
    /// Lower band.
    Lower,
}

/// What a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Last price > level.
    PriceAbove(f64),
    /// Last price < level.
    PriceBelow(f64),
    /// change_pct of a window beyond a threshold.
    ChangePct {
        /// Index of the configured window.
        window: usize,
        /// Percent.
        threshold: f64,
        /// Which way.
        direction: Direction,
    },
    /// Volume of a window > threshold.
    Volume {
        /// Index of the configured window.
        window: usize,
        /// Volume.
        threshold: f64,
    },
    /// |last price − VWAP| / VWAP × 100 of a window > threshold.
    VwapDeviation {
        /// Index of the configured window.
        window: usize,
        /// Percent.
        threshold: f64,
    },
    /// An indicator over closed candles crossing a level.
    Indicator {
        /// Index of the configured interval.
        interval: usize,
        /// The indicator with its parameters.
        indicator: Indicator,
        /// Which output.
        output: Output,
        /// The level.
        level: Level,
    },
    /// No trade of the symbol for longer than this, nanoseconds.
    Stale {
        /// Nanoseconds.
        after: i64,
    },
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique id.
    pub id: Arc<str>,
    /// The symbol it watches; `None` for every symbol.
    pub symbol: Option<Symbol>,
    /// Least event time between two firings, nanoseconds.
    pub cooldown: i64,
    /// What it watches.
    pub condition: Condition,
    /// The rule as written, with its id filled in (what `GET /v1/alerts/rules` shows).
    pub spec: RuleSpec,
}

/// Every rule kind's name, as written.
pub const KINDS: [&str; 7] = [
    "price_above",
    "price_below",
    "change_pct",
    "volume",
    "vwap_deviation",
    "indicator",
    "stale",
];

/// The kind named `name`, as the `'static` name alerts carry.
pub fn kind_named(name: &str) -> Option<&'static str> {
    KINDS.iter().copied().find(|kind| *kind == name)
}

impl Rule {
    /// The kind's name as written.
    pub fn kind(&self) -> &'static str {
        match self.condition {
            Condition::PriceAbove(_) => "price_above",
            Condition::PriceBelow(_) => "price_below",
            Condition::ChangePct { .. } => "change_pct",
            Condition::Volume { .. } => "volume",
            Condition::VwapDeviation { .. } => "vwap_deviation",
            Condition::Indicator { .. } => "indicator",
            Condition::Stale { .. } => "stale",
        }
    }

    /// Whether the rule watches `symbol`.
    pub fn watches(&self, symbol: &str) -> bool {
        self.symbol.as_ref().is_none_or(|s| s.as_str() == symbol)
    }
}
