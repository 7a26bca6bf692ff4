//! Alert rules: their shape as written (the same in TOML `[[alerts]]` tables and in JSON), their
//! validation into [`Rule`]s against the configured windows and intervals, and the [`RuleBook`]
//! that the HTTP API edits and the analytics core reads.
//!
//! ```json
//! {"id":"spy-168","kind":"price_above","symbol":"SPY","threshold":168.0,"cooldown":"60s"}
//! {"kind":"change_pct","symbol":"*","window":"1m","threshold":0.5,"direction":"either"}
//! {"kind":"volume","symbol":"SPY","window":"1m","threshold":100000}
//! {"kind":"vwap_deviation","symbol":"SPY","window":"5m","threshold":0.2}
//! {"kind":"indicator","symbol":"SPY","indicator":"rsi","interval":"1m","params":{"period":14},"above":70}
//! {"kind":"stale","symbol":"SPY","after":"30s"}
//! ```
//!
//! A validation error names the field that is wrong. The book is copy-on-write: editing it
//! publishes a new immutable [`RuleSet`] ([`arc_swap::ArcSwap`]), which the core picks up between
//! batches without ever waiting for an editor.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::analytics::{IntervalSpec, WindowSpec};
use crate::indicators::{Indicator, RawParams};
use crate::model::Symbol;
use crate::units::parse_duration;

/// Cooldown of a rule that names none.
pub const DEFAULT_COOLDOWN: &str = "60s";
/// Most rules the book holds (each `*` rule is evaluated for every symbol that trades).
pub const MAX_RULES: usize = 1000;
/// Longest rule id.
pub const MAX_ID_LEN: usize = 128;

/// A rule as written, in TOML or JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Rule)]
pub struct RuleSpec {
    /// Unique id; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `price_above`, `price_below`, `change_pct`, `volume`, `vwap_deviation`, `indicator`, `stale`.
    pub kind: String,
    /// One symbol, or `*` for every symbol.
    pub symbol: String,
    /// The level (price, percent, volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// A configured window (`change_pct`, `volume`, `vwap_deviation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// `change_pct`: `up`, `down` or `either` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// `indicator`: its name (`rsi`, `sma`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicator: Option<String>,
    /// `indicator`: a configured candle interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// `indicator`: its parameters (`{"period":14}`); defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub params: Option<BTreeMap<String, serde_json::Value>>,
    /// `indicator`: which output of a multi-output indicator (`macd`, `signal`, `hist`, `upper`,
    /// `middle`, `lower`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `indicator`: fires when the value goes above this level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// `indicator`: fires when the value goes below this level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// `stale`: how long without a trade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Least event time between two firings (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
}

/// A rule that cannot be used, naming the bad field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid alert rule: {field}: {message}")]
pub struct RuleError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> RuleError {
    RuleError {
        field,
        message: message.into(),
    }
}

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

fn nanos(field: &'static str, text: &str) -> Result<i64, RuleError> {
    let duration = parse_duration(field, text).map_err(|e| bad(field, e.to_string()))?;
    i64::try_from(duration.as_nanos()).map_err(|_| bad(field, "too long"))
}

/// Finds a configured window or interval by label or by any spelling of its duration.
fn find_length(
    field: &'static str,
    text: Option<&str>,
    configured: &[(&str, i64)],
) -> Result<usize, RuleError> {
    let known = || {
        configured
            .iter()
            .map(|(label, _)| *label)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = text.ok_or_else(|| bad(field, format!("required (configured: {})", known())))?;
    if let Some(index) = configured.iter().position(|(label, _)| *label == text) {
        return Ok(index);
    }
    let length = nanos(field, text)?;
    configured
        .iter()
        .position(|(_, l)| *l == length)
        .ok_or_else(|| bad(field, format!("{text:?} is not configured ({})", known())))
}

fn finite(field: &'static str, value: Option<f64>) -> Result<f64, RuleError> {
    match value {
        None => Err(bad(field, "required")),
        Some(v) if v.is_finite() => Ok(v),
        Some(v) => Err(bad(field, format!("{v} is not a finite number"))),
    }
}

fn non_negative(field: &'static str, value: Option<f64>) -> Result<f64, RuleError> {
    let v = finite(field, value)?;
    if v < 0.0 {
        return Err(bad(field, format!("{v} is negative")));
    }
    Ok(v)
}

impl RuleSpec {
    /// Validates the rule against the configured `windows` and `intervals`. `id` must be set.
    pub fn validate(
        &self,
        windows: &[WindowSpec],
        intervals: &[IntervalSpec],
    ) -> Result<Rule, RuleError> {
        let id = self.id.clone().unwrap_or_default();
        if id.is_empty()
            || id.len() > MAX_ID_LEN
            || id.chars().any(char::is_control)
            || id.contains('/')
        {
            return Err(bad(
                "id",
                format!("must be 1 to {MAX_ID_LEN} characters, no '/' or control characters"),
            ));
        }
        let symbol = match self.symbol.trim() {
            "" => return Err(bad("symbol", "required: a symbol or \"*\"")),
            "*" => None,
            s => Some(Symbol::new(s)),
        };
        let cooldown = nanos(
            "cooldown",
            self.cooldown.as_deref().unwrap_or(DEFAULT_COOLDOWN),
        )?;
        let windows: Vec<(&str, i64)> = windows
            .iter()
            .map(|w| (w.label.as_str(), w.length))
            .collect();
        let intervals: Vec<(&str, i64)> = intervals
            .iter()
            .map(|i| (i.label.as_str(), i.length))
            .collect();
        let window = || find_length("window", self.window.as_deref(), &windows);
        let (condition, used): (Condition, &[&str]) = match self.kind.as_str() {
            "price_above" => (
                Condition::PriceAbove(finite("threshold", self.threshold)?),
                &["threshold"],
            ),
            "price_below" => (
                Condition::PriceBelow(finite("threshold", self.threshold)?),
                &["threshold"],
            ),
            "change_pct" => {
                let direction = match self.direction.as_deref().unwrap_or("either") {
                    "up" => Direction::Up,
                    "down" => Direction::Down,
                    "either" => Direction::Either,
                    other => {
                        return Err(bad(
                            "direction",
                            format!("{other:?}: expected up, down or either"),
                        ));
                    }
                };
                (
                    Condition::ChangePct {
                        window: window()?,
                        threshold: non_negative("threshold", self.threshold)?,
                        direction,
                    },
                    &["threshold", "window", "direction"],
                )
            }
            "volume" => (
                Condition::Volume {
                    window: window()?,
                    threshold: non_negative("threshold", self.threshold)?,
                },
                &["threshold", "window"],
            ),
            "vwap_deviation" => (
                Condition::VwapDeviation {
                    window: window()?,
                    threshold: non_negative("threshold", self.threshold)?,
                },
                &["threshold", "window"],
            ),
            "indicator" => (
                self.indicator_condition(&intervals)?,
                &[
                    "indicator",
                    "interval",
                    "params",
                    "output",
                    "above",
                    "below",
                ],
            ),
            "stale" => {
                let after = nanos(
                    "after",
                    self.after
                        .as_deref()
                        .ok_or_else(|| bad("after", "required"))?,
                )?;
                if after <= 0 {
                    return Err(bad("after", "must be positive"));
                }
                (Condition::Stale { after }, &["after"])
            }
            other => {
                return Err(bad(
                    "kind",
                    format!(
                        "{other:?}: expected price_above, price_below, change_pct, volume, \
                         vwap_deviation, indicator or stale"
                    ),
                ));
            }
        };
        for (field, given) in self.optional_fields() {
            if given && !used.contains(&field) {
                return Err(bad(field, format!("does not apply to {}", self.kind)));
            }
        }
        let mut spec = self.clone();
        spec.symbol = self.symbol.trim().to_string();
        Ok(Rule {
            id: id.into(),
            symbol,
            cooldown,
            condition,
            spec,
        })
    }

    fn optional_fields(&self) -> [(&'static str, bool); 10] {
        [
            ("threshold", self.threshold.is_some()),
            ("window", self.window.is_some()),
            ("direction", self.direction.is_some()),
            ("indicator", self.indicator.is_some()),
            ("interval", self.interval.is_some()),
            ("params", self.params.is_some()),
            ("output", self.output.is_some()),
            ("above", self.above.is_some()),
            ("below", self.below.is_some()),
            ("after", self.after.is_some()),
        ]
    }

    fn indicator_condition(&self, intervals: &[(&str, i64)]) -> Result<Condition, RuleError> {
        let name = self
            .indicator
            .as_deref()
            .ok_or_else(|| bad("indicator", "required (sma, ema, rsi, macd, bbands, atr)"))?;
        let params: BTreeMap<&str, String> = self
            .params
            .iter()
            .flatten()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.as_str(), text)
            })
            .collect();
        for key in params.keys() {
            if !["period", "fast", "slow", "signal", "k"].contains(key) {
                return Err(bad("params", format!("unknown parameter {key:?}")));
            }
        }
        let get = |key: &str| params.get(key).map(String::as_str);
        let raw = RawParams {
            period: get("period"),
            fast: get("fast"),
            slow: get("slow"),
            signal: get("signal"),
            k: get("k"),
        };
        let indicator = Indicator::parse(name, &raw).map_err(|e| match e {
            crate::indicators::IndicatorError::Unknown(_) => bad("indicator", e.to_string()),
            _ => bad("params", e.to_string()),
        })?;
        let interval = find_length("interval", self.interval.as_deref(), intervals)?;
        let outputs: &[(&str, Output)] = match indicator {
            Indicator::Macd { .. } => &[
                ("macd", Output::Macd),
                ("signal", Output::Signal),
                ("hist", Output::Hist),
            ],
            Indicator::Bbands { .. } => &[
                ("upper", Output::Upper),
                ("middle", Output::Middle),
                ("lower", Output::Lower),
            ],
            _ => &[("value", Output::Value)],
        };
        let output = match (self.output.as_deref(), outputs) {
            (None, [(_, only)]) => *only,
            (None, _) => {
                let names: Vec<&str> = outputs.iter().map(|(n, _)| *n).collect();
                return Err(bad(
                    "output",
                    format!("required for {name}: one of {}", names.join(", ")),
                ));
            }
            (Some(given), _) => outputs
                .iter()
                .find(|(n, _)| *n == given)
                .map(|(_, o)| *o)
                .ok_or_else(|| bad("output", format!("{given:?} is not an output of {name}")))?,
        };
        let level = match (self.above, self.below) {
            (Some(v), None) => Level::Above(finite("above", Some(v))?),
            (None, Some(v)) => Level::Below(finite("below", Some(v))?),
            (Some(_), Some(_)) => return Err(bad("below", "give either above or below, not both")),
            (None, None) => return Err(bad("above", "required: above or below")),
        };
        Ok(Condition::Indicator {
            interval,
            indicator,
            output,
            level,
        })
    }
}

/// One immutable version of the rules.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// Moves on every edit.
    pub version: u64,
    /// The rules, in the order they were added.
    pub rules: Vec<Arc<Rule>>,
}

/// Why an edit of the book was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    /// The rule is invalid.
    #[error(transparent)]
    Invalid(#[from] RuleError),
    /// A rule with that id exists.
    #[error("a rule with id {0:?} exists")]
    Duplicate(String),
    /// The book is full.
    #[error("at most {MAX_RULES} rules")]
    Full,
    /// No rule with that id.
    #[error("no rule with id {0:?}")]
    NotFound(String),
    /// The rules file cannot be read or written (the edit is not made).
    #[error("rules file {path}: {message}")]
    Persist {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// What the rules file holds: the edits made over the API, kept apart from the configured
/// rules — the rules added, and the ids of configured rules removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEdits {
    /// Rules added over the API, in the order they were added.
    pub added: Vec<RuleSpec>,
    /// Ids of configured rules removed over the API.
    pub removed: Vec<String>,
}

/// Where the book keeps its API edits, and which rules came from the configuration.
#[derive(Debug)]
struct Persistence {
    path: std::path::PathBuf,
    configured: Vec<String>,
}

impl Persistence {
    /// Writes the edits that make `rules` out of the configured ones: a temporary file, fsynced,
    /// renamed over the old one (and the directory fsynced), so a crash leaves the old file or
    /// the new one, never half of one.
    fn save(&self, rules: &[Arc<Rule>]) -> Result<(), BookError> {
        let error = |message: String| BookError::Persist {
            path: self.path.clone(),
            message,
        };
        let edits = RuleEdits {
            added: rules
                .iter()
                .filter(|rule| !self.configured.iter().any(|id| **id == *rule.id))
                .map(|rule| rule.spec.clone())
                .collect(),
            removed: self
                .configured
                .iter()
                .filter(|id| !rules.iter().any(|rule| *rule.id == ***id))
                .cloned()
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&edits).map_err(|e| error(e.to_string()))?;
        let temporary = self.path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&text)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)?;
            if let Some(directory) = self.path.parent() {
                let directory = if directory.as_os_str().is_empty() {
                    std::path::Path::new(".")
                } else {
                    directory
                };
                std::fs::File::open(directory)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| error(e.to_string()))
    }
}

/// The rules in force, shared by the API (editing) and the core (reading).
#[derive(Debug)]
pub struct RuleBook {
    current: ArcSwap<RuleSet>,
    /// Serializes editors (never taken by the core).
    edit: Mutex<u64>,
    windows: Arc<[WindowSpec]>,
    intervals: Arc<[IntervalSpec]>,
    /// Where API edits are kept, if anywhere.
    persistence: Option<Persistence>,
}

impl RuleBook {
    /// A book validating against `windows` and `intervals`, holding `rules` (ids generated where
    /// missing).
    pub fn new(
        rules: &[RuleSpec],
        windows: Arc<[WindowSpec]>,
        intervals: Arc<[IntervalSpec]>,
    ) -> Result<Self, BookError> {
        let book = RuleBook {
            current: ArcSwap::from_pointee(RuleSet::default()),
            edit: Mutex::new(0),
            windows,
            intervals,
            persistence: None,
        };
        for rule in rules {
            book.add(rule.clone())?;
        }
        Ok(book)
    }

    /// Keeps the API's edits in `path` from now on, after applying those it already holds (the
    /// configured rules it removed go, the rules it added come back).
    pub fn persisted_in(mut self, path: std::path::PathBuf) -> Result<Self, BookError> {
        let error = |message: String| BookError::Persist {
            path: path.clone(),
            message,
        };
        let configured: Vec<String> = self.load().rules.iter().map(|r| r.id.to_string()).collect();
        let edits = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<RuleEdits>(&bytes)
                .map_err(|e| error(format!("not a rules file: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RuleEdits::default(),
            Err(e) => return Err(error(e.to_string())),
        };
        for id in &edits.removed {
            // A configured rule no longer configured is simply not there.
            let _ = self.remove(id);
        }
        for spec in edits.added {
            self.add(spec)?;
        }
        self.persistence = Some(Persistence { path, configured });
        Ok(self)
    }

    /// The rules in force.
    pub fn load(&self) -> Arc<RuleSet> {
        self.current.load_full()
    }

    /// Validates and adds a rule; returns it as stored (with its id).
    pub fn add(&self, mut spec: RuleSpec) -> Result<Arc<Rule>, BookError> {
        let mut counter = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load_full();
        if current.rules.len() >= MAX_RULES {
            return Err(BookError::Full);
        }
        // The next number is taken only once the rule is in: a rejected one uses up no id.
        let mut next = *counter;
        if spec.id.is_none() {
            loop {
                next += 1;
                let candidate = format!("{}-{}", spec.kind, next);
                if !current.rules.iter().any(|r| *r.id == *candidate) {
                    spec.id = Some(candidate);
                    break;
                }
            }
        }
        let rule = Arc::new(spec.validate(&self.windows, &self.intervals)?);
        if current.rules.iter().any(|r| r.id == rule.id) {
            return Err(BookError::Duplicate(rule.id.to_string()));
        }
        let mut rules = current.rules.clone();
        rules.push(Arc::clone(&rule));
        if let Some(persistence) = &self.persistence {
            persistence.save(&rules)?;
        }
        *counter = next;
        self.current.store(Arc::new(RuleSet {
            version: current.version + 1,
            rules,
        }));
        Ok(rule)
    }

    /// Removes the rule `id`.
    pub fn remove(&self, id: &str) -> Result<Arc<Rule>, BookError> {
        let _guard = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load_full();
        let position = current
            .rules
            .iter()
            .position(|r| &*r.id == id)
            .ok_or_else(|| BookError::NotFound(id.to_string()))?;
        let mut rules = current.rules.clone();
        let removed = rules.remove(position);
        if let Some(persistence) = &self.persistence {
            persistence.save(&rules)?;
        }
        self.current.store(Arc::new(RuleSet {
            version: current.version + 1,
            rules,
        }));
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows() -> Arc<[WindowSpec]> {
        crate::analytics::WindowSpec::parse_list(&["1m".to_string(), "5m".to_string()])
            .expect("windows")
            .into()
    }

    fn intervals() -> Arc<[IntervalSpec]> {
        crate::analytics::IntervalSpec::parse_list(&["1m".to_string()])
            .expect("intervals")
            .into()
    }

    fn spec(json: &str) -> RuleSpec {
        serde_json::from_str(json).expect("rule JSON")
    }

    fn check(json: &str) -> Result<Rule, RuleError> {
        let mut spec = spec(json);
        spec.id.get_or_insert_with(|| "r".to_string());
        spec.validate(&windows(), &intervals())
    }

    #[test]
    fn the_documented_shapes_validate() {
        let rule = check(r#"{"id":"spy-168","kind":"price_above","symbol":"SPY","threshold":168.0,"cooldown":"60s"}"#)
            .expect("valid");
        assert_eq!(
            (rule.kind(), rule.cooldown),
            ("price_above", 60_000_000_000)
        );
        assert!(rule.watches("SPY") && !rule.watches("IBM"));
        let all = check(r#"{"kind":"change_pct","symbol":"*","window":"1m","threshold":0.5,"direction":"either"}"#)
            .expect("valid");
        assert!(all.watches("IBM"));
        check(r#"{"kind":"volume","symbol":"SPY","window":"60s","threshold":100000}"#)
            .expect("valid");
        check(r#"{"kind":"vwap_deviation","symbol":"SPY","window":"5m","threshold":0.2}"#)
            .expect("valid");
        let rsi = check(r#"{"kind":"indicator","symbol":"SPY","indicator":"rsi","interval":"1m","params":{"period":14},"above":70}"#)
            .expect("valid");
        assert_eq!(
            rsi.condition,
            Condition::Indicator {
                interval: 0,
                indicator: Indicator::Rsi { period: 14 },
                output: Output::Value,
                level: Level::Above(70.0)
            }
        );
        check(r#"{"kind":"stale","symbol":"SPY","after":"30s"}"#).expect("valid");
        // TOML gives the same rule.
        let toml: RuleSpec = toml::from_str(
            "kind = \"indicator\"\nsymbol = \"SPY\"\nindicator = \"rsi\"\ninterval = \"1m\"\nparams = { period = 14 }\nabove = 70.0",
        )
        .expect("toml");
        let mut json = spec(
            r#"{"kind":"indicator","symbol":"SPY","indicator":"rsi","interval":"1m","params":{"period":14},"above":70.0}"#,
        );
        json.id = None;
        assert_eq!(toml, json);
    }

    #[test]
    fn errors_name_the_bad_field() {
        let cases = [
            (r#"{"kind":"price_above","symbol":"SPY"}"#, "threshold"),
            (
                r#"{"kind":"price_above","symbol":"SPY","threshold":1,"window":"1m"}"#,
                "window",
            ),
            (r#"{"kind":"soaring","symbol":"SPY"}"#, "kind"),
            (
                r#"{"kind":"price_below","symbol":"","threshold":1}"#,
                "symbol",
            ),
            (
                r#"{"kind":"change_pct","symbol":"A","threshold":1}"#,
                "window",
            ),
            (
                r#"{"kind":"change_pct","symbol":"A","window":"2m","threshold":1}"#,
                "window",
            ),
            (
                r#"{"kind":"change_pct","symbol":"A","window":"1m","threshold":1,"direction":"sideways"}"#,
                "direction",
            ),
            (
                r#"{"kind":"volume","symbol":"A","window":"1m","threshold":-1}"#,
                "threshold",
            ),
            (
                r#"{"kind":"indicator","symbol":"A","indicator":"vwma","interval":"1m","above":1}"#,
                "indicator",
            ),
            (
                r#"{"kind":"indicator","symbol":"A","indicator":"rsi","interval":"1m","params":{"period":0},"above":1}"#,
                "params",
            ),
            (
                r#"{"kind":"indicator","symbol":"A","indicator":"rsi","interval":"1m","params":{"length":3},"above":1}"#,
                "params",
            ),
            (
                r#"{"kind":"indicator","symbol":"A","indicator":"rsi","interval":"1h","above":1}"#,
                "interval",
            ),
            (
                r#"{"kind":"indicator","symbol":"A","indicator":"macd","interval":"1m","above":1}"#,
                "output",
            ),
            (
                r#"{"kind":"indicator","symbol":"A","indicator":"rsi","interval":"1m"}"#,
                "above",
            ),
            (
                r#"{"kind":"indicator","symbol":"A","indicator":"rsi","interval":"1m","above":1,"below":2}"#,
                "below",
            ),
            (r#"{"kind":"stale","symbol":"A"}"#, "after"),
            (r#"{"kind":"stale","symbol":"A","after":"soon"}"#, "after"),
            (
                r#"{"kind":"stale","symbol":"A","after":"1s","cooldown":"-1s"}"#,
                "cooldown",
            ),
            (
                r#"{"id":"a/b","kind":"stale","symbol":"A","after":"1s"}"#,
                "id",
            ),
        ];
        for (json, field) in cases {
            let error = check(json).expect_err(json);
            assert_eq!(error.field, field, "{json}: {error}");
        }
        assert!(
            serde_json::from_str::<RuleSpec>(
                r#"{"kind":"stale","symbol":"A","after":"1s","colour":1}"#
            )
            .is_err()
        );
    }

    #[test]
    fn the_book_generates_ids_refuses_duplicates_and_removes() {
        let book = RuleBook::new(&[], windows(), intervals()).expect("book");
        let a = book
            .add(spec(r#"{"kind":"stale","symbol":"A","after":"1s"}"#))
            .expect("added");
        assert_eq!(&*a.id, "stale-1");
        let b = book
            .add(spec(
                r#"{"id":"mine","kind":"stale","symbol":"A","after":"1s"}"#,
            ))
            .expect("added");
        assert_eq!(b.spec.id.as_deref(), Some("mine"));
        assert!(matches!(
            book.add(spec(
                r#"{"id":"mine","kind":"stale","symbol":"A","after":"1s"}"#
            )),
            Err(BookError::Duplicate(_))
        ));
        assert_eq!(book.load().rules.len(), 2);
        let version = book.load().version;
        book.remove("stale-1").expect("removed");
        assert!(matches!(
            book.remove("stale-1"),
            Err(BookError::NotFound(_))
        ));
        assert_eq!(book.load().rules.len(), 1);
        assert!(book.load().version > version);
    }
}
