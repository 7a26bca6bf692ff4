//! Rule evaluation, inside the analytics core: synchronous, on event time only.
//!
//! After each applied trade, every rule watching the trade's symbol is evaluated against the
//! symbol's state as of the stream clock (last price, a window's statistics, an indicator over
//! the closed candles). Per rule and symbol:
//!
//! - a rule starts armed;
//! - it fires when it is armed, its condition holds, and the trade's event time is at least the
//!   cooldown past its last firing; firing disarms it;
//! - it re-arms when the condition no longer holds.
//!
//! So a rule fires when its condition becomes true, not on every trade while it stays true, and a
//! firing held back by the cooldown happens on the first trade after the cooldown if the
//! condition still holds. `stale` rules watch symbols that do *not* trade: they are checked when
//! the stream clock moves (every trade of any symbol, and the quiet-market clock of live feeds),
//! each symbol's deadline kept so that a check costs nothing until one is due.
//!
//! Nothing here reads the wall clock, so a replay gives the same alerts at any speed.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::alerts::book::{RuleBook, RuleSet};
use crate::alerts::rules::{Condition, Direction, Level, Output, Rule};
use crate::analytics::candles::ClosedSequence;
use crate::analytics::{Engine, SymbolView};
use crate::indicators::IndicatorValue;
use crate::model::{Symbol, Timestamp, to_millis};

/// One alert: a rule that fired for a symbol.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Sequence number, from 1, in firing order.
    pub id: u64,
    /// The rule.
    #[schema(value_type = String)]
    pub rule_id: Arc<str>,
    /// The symbol.
    #[schema(value_type = String)]
    pub symbol: Symbol,
    /// The rule's kind.
    pub kind: &'static str,
    /// The observed value (price, percent, volume, indicator value, seconds of silence).
    pub value: f64,
    /// The rule's level, in the same unit.
    pub threshold: f64,
    /// Event time of the firing, epoch ms.
    pub ts_ms: i64,
    /// A sentence for people.
    pub message: String,
}

/// Firing state of one rule for one symbol.
#[derive(Debug, Clone)]
struct FiringState {
    armed: bool,
    last_fired: Option<Timestamp>,
    /// Indicator rules: the closed candles last computed over, and the value then.
    indicator: Option<(ClosedSequence, Option<f64>)>,
}

impl Default for FiringState {
    fn default() -> Self {
        FiringState {
            armed: true,
            last_fired: None,
            indicator: None,
        }
    }
}

/// What a condition observed (the alert's message is written only if it fires).
struct Observation {
    holds: bool,
    value: f64,
    threshold: f64,
}

/// Evaluates the rule book's rules as trades are applied.
#[derive(Debug)]
pub struct AlertEvaluator {
    book: Arc<RuleBook>,
    rules: Arc<RuleSet>,
    /// Per rule (parallel to `rules.rules`), per symbol (by the engine's dense symbol index):
    /// the firing state. No hashing on the per-trade path.
    states: Vec<Vec<FiringState>>,
    next_id: u64,
    /// Earliest stream time at which a stale rule may change state (`i64::MAX`: none).
    stale_due: Timestamp,
}

impl AlertEvaluator {
    /// An evaluator of the rules in `book`.
    pub fn new(book: Arc<RuleBook>) -> Self {
        let rules = book.load();
        AlertEvaluator {
            book,
            states: vec![Vec::new(); rules.rules.len()],
            rules,
            next_id: 1,
            stale_due: Timestamp::MIN,
        }
    }

    /// Picks up edits of the book (call between batches). Rules that stay keep their state.
    pub fn refresh(&mut self) {
        let current = self.book.load();
        if current.version == self.rules.version {
            return;
        }
        let mut old: HashMap<Arc<str>, Vec<FiringState>> = self
            .rules
            .rules
            .iter()
            .map(|r| Arc::clone(&r.id))
            .zip(std::mem::take(&mut self.states))
            .collect();
        self.states = current
            .rules
            .iter()
            .map(|r| old.remove(&r.id).unwrap_or_default())
            .collect();
        self.rules = current;
        self.stale_due = Timestamp::MIN;
    }

    /// Whether there is any rule at all.
    pub fn is_idle(&self) -> bool {
        self.rules.rules.is_empty()
    }

    /// Evaluates the rules after `engine` applied a trade of `symbol` with event time `ts`;
    /// appends what fired to `out`.
    pub fn on_trade(&mut self, engine: &Engine, symbol: &str, ts: Timestamp, out: &mut Vec<Alert>) {
        if self.is_idle() {
            return;
        }
        let now = engine.now().unwrap_or(ts);
        let rules = Arc::clone(&self.rules);
        if let Some(view) = engine.view(symbol) {
            for (index, rule) in rules.rules.iter().enumerate() {
                if !rule.watches(symbol) {
                    continue;
                }
                if let Condition::Stale { after } = rule.condition {
                    // The trade makes the symbol fresh: re-arm, and note its next deadline.
                    self.state(index, view.index()).armed = true;
                    let due = view.last_ts().unwrap_or(now).saturating_add(after) + 1;
                    self.stale_due = self.stale_due.min(due);
                    continue;
                }
                let observation = self.observe(index, rule, &view, now);
                self.decide(
                    index,
                    rule,
                    (view.index(), view.symbol()),
                    observation,
                    ts,
                    out,
                );
            }
        }
        self.on_clock(engine, out);
    }

    /// Checks the `stale` rules at the stream clock (after a trade, or when a quiet live market
    /// moves the clock).
    pub fn on_clock(&mut self, engine: &Engine, out: &mut Vec<Alert>) {
        let Some(now) = engine.now() else {
            return;
        };
        if now < self.stale_due || self.is_idle() {
            return;
        }
        let rules = Arc::clone(&self.rules);
        let mut next_due = Timestamp::MAX;
        let mut symbols: Vec<(usize, &Symbol, Timestamp)> = engine
            .last_trades()
            .filter_map(|(index, symbol, last)| last.map(|last| (index, symbol, last)))
            .collect();
        symbols.sort_by(|a, b| a.1.as_str().cmp(b.1.as_str()));
        for (index, rule) in rules.rules.iter().enumerate() {
            let Condition::Stale { after } = rule.condition else {
                continue;
            };
            for &(symbol_index, symbol, last) in
                symbols.iter().filter(|(_, s, _)| rule.watches(s.as_str()))
            {
                let silent = now.saturating_sub(last);
                let holds = silent > after;
                let observation = Observation {
                    holds,
                    value: silent as f64 / 1e9,
                    threshold: after as f64 / 1e9,
                };
                self.decide(
                    index,
                    rule,
                    (symbol_index, symbol),
                    Some(observation),
                    now,
                    out,
                );
                let state = self.state(index, symbol_index);
                let due = if !holds {
                    last.saturating_add(after) + 1
                } else if state.armed {
                    // Held back by the cooldown.
                    state
                        .last_fired
                        .map_or(now, |t| t.saturating_add(rule.cooldown))
                } else {
                    // Fired; only a trade of the symbol re-arms it.
                    Timestamp::MAX
                };
                next_due = next_due.min(due);
            }
        }
        self.stale_due = next_due;
    }

    /// The firing state of rule `index` for the symbol of dense index `symbol`.
    fn state(&mut self, index: usize, symbol: usize) -> &mut FiringState {
        if self.states.len() <= index {
            self.states.resize_with(index + 1, Vec::new);
        }
        let per_symbol = &mut self.states[index];
        if per_symbol.len() <= symbol {
            per_symbol.resize_with(symbol + 1, FiringState::default);
        }
        &mut per_symbol[symbol]
    }

    /// Applies the firing rule to one observation.
    fn decide(
        &mut self,
        index: usize,
        rule: &Rule,
        (symbol_index, symbol): (usize, &Symbol),
        observation: Option<Observation>,
        ts: Timestamp,
        out: &mut Vec<Alert>,
    ) {
        let state = self.state(index, symbol_index);
        let Some(observation) = observation.filter(|o| o.holds) else {
            state.armed = true;
            return;
        };
        let cooled = state
            .last_fired
            .is_none_or(|last| ts.saturating_sub(last) >= rule.cooldown);
        if !(state.armed && cooled) {
            return;
        }
        state.armed = false;
        state.last_fired = Some(ts);
        let id = self.next_id;
        self.next_id += 1;
        out.push(Alert {
            id,
            rule_id: Arc::clone(&rule.id),
            symbol: symbol.clone(),
            kind: rule.kind(),
            value: observation.value,
            threshold: observation.threshold,
            ts_ms: to_millis(ts),
            message: describe(rule, symbol, observation.value),
        });
    }

    /// What `rule`'s condition sees for one symbol; `None` when it cannot tell (an empty window,
    /// too few candles): the condition does not hold.
    fn observe(
        &mut self,
        index: usize,
        rule: &Rule,
        view: &SymbolView<'_>,
        now: Timestamp,
    ) -> Option<Observation> {
        match rule.condition {
            Condition::PriceAbove(level) => {
                let price = view.last_price()?;
                Some(Observation {
                    holds: price > level,
                    value: price,
                    threshold: level,
                })
            }
            Condition::PriceBelow(level) => {
                let price = view.last_price()?;
                Some(Observation {
                    holds: price < level,
                    value: price,
                    threshold: level,
                })
            }
            Condition::ChangePct {
                window,
                threshold,
                direction,
            } => {
                let change = view.window_change_pct(window)?;
                let holds = match direction {
                    Direction::Up => change > threshold,
                    Direction::Down => change < -threshold,
                    Direction::Either => change.abs() > threshold,
                };
                Some(Observation {
                    holds,
                    value: change,
                    threshold,
                })
            }
            Condition::Volume { window, threshold } => {
                let volume = view.window_volume(window);
                Some(Observation {
                    holds: volume > threshold,
                    value: volume,
                    threshold,
                })
            }
            Condition::VwapDeviation { window, threshold } => {
                let price = view.last_price()?;
                let vwap = view.window_vwap(window)?;
                let deviation = (price / vwap - 1.0) * 100.0;
                Some(Observation {
                    holds: deviation.abs() > threshold,
                    value: deviation,
                    threshold,
                })
            }
            Condition::Indicator {
                interval,
                indicator,
                output,
                level,
            } => {
                let sequence = view.closed_sequence(interval, now)?;
                let state = self.state(index, view.index());
                let value = match state.indicator {
                    Some((seen, value)) if seen == sequence => value,
                    _ => {
                        let candles = view.candles(interval)?;
                        let closed: Vec<_> = candles.closed(now).copied().collect();
                        let value = indicator
                            .compute(&closed)
                            .last()
                            .map(|point| pick(point.value, output));
                        state.indicator = Some((sequence, value));
                        value
                    }
                };
                let value = value?;
                let holds = match level {
                    Level::Above(l) => value > l,
                    Level::Below(l) => value < l,
                };
                Some(Observation {
                    holds,
                    value,
                    threshold: level.value(),
                })
            }
            Condition::Stale { .. } => None,
        }
    }
}

/// The alert's sentence, written only when a rule fires.
fn describe(rule: &Rule, symbol: &Symbol, value: f64) -> String {
    let window = rule.spec.window.as_deref().unwrap_or_default();
    match rule.condition {
        Condition::PriceAbove(level) => format!("{symbol} at {value} is above {level}"),
        Condition::PriceBelow(level) => format!("{symbol} at {value} is below {level}"),
        Condition::ChangePct { threshold, .. } => {
            format!("{symbol} moved {value:+.4} % over {window} (threshold {threshold} %)")
        }
        Condition::Volume { threshold, .. } => {
            format!("{symbol} traded {value} over {window} (threshold {threshold})")
        }
        Condition::VwapDeviation { threshold, .. } => {
            format!("{symbol} is {value:+.4} % from its {window} VWAP (threshold {threshold} %)")
        }
        Condition::Indicator {
            indicator, level, ..
        } => {
            let side = match level {
                Level::Above(_) => "above",
                Level::Below(_) => "below",
            };
            format!(
                "{symbol} {indicator} on {} candles is {value:.4}, {side} {}",
                rule.spec.interval.as_deref().unwrap_or_default(),
                level.value()
            )
        }
        Condition::Stale { after } => format!(
            "{symbol}: no trade for {value:.3} s (more than {:.3} s)",
            after as f64 / 1e9
        ),
    }
}

fn pick(value: IndicatorValue, output: Output) -> f64 {
    match (value, output) {
        (IndicatorValue::Single(v), _) => v,
        (IndicatorValue::Macd { signal, .. }, Output::Signal) => signal,
        (IndicatorValue::Macd { hist, .. }, Output::Hist) => hist,
        (IndicatorValue::Macd { macd, .. }, _) => macd,
        (IndicatorValue::Bands { upper, .. }, Output::Upper) => upper,
        (IndicatorValue::Bands { lower, .. }, Output::Lower) => lower,
        (IndicatorValue::Bands { middle, .. }, _) => middle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::spec::RuleSpec;
    use crate::model::{FeedId, Trade};

    const SEC: i64 = 1_000_000_000;

    fn engine() -> Engine {
        let windows =
            crate::analytics::WindowSpec::parse_list(&["10s".to_string()]).expect("windows");
        let intervals =
            crate::analytics::IntervalSpec::parse_list(&["1s".to_string()]).expect("intervals");
        Engine::new(windows.into(), SEC).with_candles(intervals.into(), 100)
    }

    fn evaluator(engine: &Engine, rules: &[&str]) -> AlertEvaluator {
        let specs: Vec<RuleSpec> = rules
            .iter()
            .map(|r| serde_json::from_str(r).expect("rule"))
            .collect();
        let intervals =
            crate::analytics::IntervalSpec::parse_list(&["1s".to_string()]).expect("intervals");
        let book =
            RuleBook::new(&specs, Arc::clone(engine.windows()), intervals.into()).expect("book");
        AlertEvaluator::new(Arc::new(book))
    }

    /// Applies trades `(seconds, symbol, price)`; returns (second, rule, symbol) of each alert.
    fn run(rules: &[&str], trades: &[(f64, &str, f64)]) -> Vec<(f64, String, String)> {
        let mut engine = engine();
        let mut evaluator = evaluator(&engine, rules);
        let mut alerts = Vec::new();
        for &(second, symbol, price) in trades {
            let ts = (second * 1e9) as i64;
            let trade = Trade {
                symbol: Symbol::new(symbol),
                price,
                size: 1.0,
                exchange_ts: ts,
                receive_ts: ts,
                feed: FeedId(0),
                trade_id: None,
                side: None,
            };
            engine.apply(&trade);
            evaluator.on_trade(&engine, symbol, ts, &mut alerts);
        }
        alerts
            .into_iter()
            .map(|a| {
                (
                    a.ts_ms as f64 / 1000.0,
                    a.rule_id.to_string(),
                    a.symbol.to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn fires_on_becoming_true_and_rearms_when_false() {
        let rule =
            r#"{"id":"up","kind":"price_above","symbol":"A","threshold":10,"cooldown":"0s"}"#;
        let fired = run(
            &[rule],
            &[
                (1.0, "A", 9.0),
                (2.0, "A", 11.0),
                (3.0, "A", 12.0),
                (4.0, "A", 9.0),
                (5.0, "A", 10.5),
                (6.0, "B", 20.0),
            ],
        );
        let times: Vec<f64> = fired.iter().map(|f| f.0).collect();
        assert_eq!(
            times,
            vec![2.0, 5.0],
            "not while it stays true; again after re-arming"
        );
        // price_above is strict.
        assert!(run(&[rule], &[(1.0, "A", 10.0)]).is_empty());
    }

    #[test]
    fn the_cooldown_holds_a_firing_until_the_next_trade_after_it() {
        let rule =
            r#"{"id":"up","kind":"price_above","symbol":"*","threshold":10,"cooldown":"60s"}"#;
        let fired = run(
            &[rule],
            &[
                (0.0, "A", 11.0),  // fires
                (10.0, "A", 9.0),  // re-arms
                (20.0, "A", 11.0), // held: cooldown
                (59.0, "A", 12.0), // still held
                (61.0, "A", 12.0), // fires: the first trade after the cooldown, still true
                (62.0, "B", 11.0), // another symbol has its own state
            ],
        );
        assert_eq!(
            fired,
            vec![
                (0.0, "up".to_string(), "A".to_string()),
                (61.0, "up".to_string(), "A".to_string()),
                (62.0, "up".to_string(), "B".to_string()),
            ]
        );
    }

    #[test]
    fn window_rules_read_the_symbols_windows() {
        let rules = [
            r#"{"id":"chg","kind":"change_pct","symbol":"A","window":"10s","threshold":5,"direction":"down","cooldown":"0s"}"#,
            r#"{"id":"vol","kind":"volume","symbol":"A","window":"10s","threshold":2.5,"cooldown":"0s"}"#,
            r#"{"id":"dev","kind":"vwap_deviation","symbol":"A","window":"10s","threshold":3,"cooldown":"0s"}"#,
        ];
        let fired = run(
            &rules,
            &[(1.0, "A", 100.0), (2.0, "A", 100.0), (3.0, "A", 94.0)],
        );
        // At 3 s: change −6 % (< −5), volume 3 (> 2.5), price 94 vs VWAP 98 (−4.08 %).
        let names: Vec<&str> = fired.iter().map(|f| f.1.as_str()).collect();
        assert_eq!(names, vec!["chg", "vol", "dev"]);
    }

    #[test]
    fn stale_fires_when_the_clock_passes_the_deadline_and_rearms_on_a_trade() {
        let rule = r#"{"id":"quiet","kind":"stale","symbol":"A","after":"5s","cooldown":"0s"}"#;
        let fired = run(
            &[rule],
            &[
                (0.0, "A", 1.0),
                (3.0, "B", 1.0),
                (5.0, "B", 1.0),  // exactly 5 s: not more than
                (5.5, "B", 1.0),  // fires
                (9.0, "B", 1.0),  // does not fire again
                (10.0, "A", 1.0), // re-arms
                (16.0, "B", 1.0), // fires again
            ],
        );
        assert_eq!(
            fired.iter().map(|f| f.0).collect::<Vec<_>>(),
            vec![5.5, 16.0]
        );
    }

    #[test]
    fn indicator_rules_follow_closed_candles() {
        // SMA(2) of 1 s closes above 10.
        let rule = r#"{"id":"sma","kind":"indicator","symbol":"A","indicator":"sma","interval":"1s","params":{"period":2},"above":10,"cooldown":"0s"}"#;
        let fired = run(
            &[rule],
            &[
                (0.5, "A", 9.0),
                (1.5, "A", 12.0),
                (2.5, "A", 12.0),
                (3.5, "A", 12.0),
            ],
        );
        // Closed bars at 2.5 s: [9, 12] → SMA 10.5 > 10: fires at 2.5 s.
        assert_eq!(fired.iter().map(|f| f.0).collect::<Vec<_>>(), vec![2.5]);
    }
}
