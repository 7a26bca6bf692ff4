//! Alert rules as written: the same shape in TOML `[[alerts]]` tables and in JSON, validated
//! into [`Rule`]s against the configured windows and intervals. A validation error names the
//! field that is wrong.
//!
//! ```json
//! {"id":"spy-168","kind":"price_above","symbol":"SPY","threshold":168.0,"cooldown":"60s"}
//! {"kind":"change_pct","symbol":"*","window":"1m","threshold":0.5,"direction":"either"}
//! {"kind":"volume","symbol":"SPY","window":"1m","threshold":100000}
//! {"kind":"vwap_deviation","symbol":"SPY","window":"5m","threshold":0.2}
//! {"kind":"indicator","symbol":"SPY","indicator":"rsi","interval":"1m","params":{"period":14},"above":70}
//! {"kind":"stale","symbol":"SPY","after":"30s"}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alerts::rules::{Condition, Direction, Level, Output, Rule};
use crate::analytics::{IntervalSpec, WindowSpec};
use crate::indicators::{Indicator, RawParams};
use crate::model::Symbol;
use crate::units::parse_duration;

/// Cooldown of a rule that names none.
pub const DEFAULT_COOLDOWN: &str = "60s";
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::testing::{intervals, spec, windows};

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
}
