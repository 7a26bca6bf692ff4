//! When a partition must hear the cluster's clock for its `stale` rules to fire exactly when one
//! process's would.
//!
//! One process checks `stale` rules at its clock after every trade of any symbol, so a rule
//! fires at the first clock value past `last trade + after` (or, when its cooldown held it back,
//! at the first one at or past `last firing + cooldown`). A partition sees only its own symbols'
//! trades, each carrying the clock, and the periodic clock messages. The ingest, which sees
//! every trade and knows the cluster's `stale` rules (from the config bucket), sends a partition
//! a clock message at each of those moments ([`StaleDeadlines::crossed`]), in order with its
//! trades — so every firing happens at the same clock as in one process. A clock message more
//! than needed changes nothing (one process checked at that clock too); the cooldown deadlines
//! are taken from every such moment, since each may be a firing.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use crate::alerts::RuleSpec;
use crate::alerts::rules::{Condition, Rule};
use crate::analytics::{IntervalSpec, WindowSpec};
use crate::model::{Symbol, Timestamp};

/// A `stale` rule as the ingest needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleRule {
    /// The symbol watched; `None` for every symbol.
    pub symbol: Option<Symbol>,
    /// Silence that fires it, ns.
    pub after: i64,
    /// Least time between two firings, ns.
    pub cooldown: i64,
}

impl StaleRule {
    fn watches(&self, symbol: &Symbol) -> bool {
        self.symbol.as_ref().is_none_or(|s| s == symbol)
    }
}

/// The `stale` rules among `specs` (the others, and any that does not validate, left out).
pub fn stale_rules(
    specs: &[RuleSpec],
    windows: &[WindowSpec],
    intervals: &[IntervalSpec],
) -> Vec<StaleRule> {
    specs
        .iter()
        .filter(|spec| spec.kind == "stale")
        .filter_map(|spec| spec.validate(windows, intervals).ok())
        .filter_map(|rule: Rule| match rule.condition {
            Condition::Stale { after } => Some(StaleRule {
                symbol: rule.symbol,
                after,
                cooldown: rule.cooldown,
            }),
            _ => None,
        })
        .collect()
}

/// A moment a partition must hear the clock at: the first clock value past `at`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: Timestamp,
    symbol: Symbol,
    /// The symbol's last trade when the deadline was made.
    since: Timestamp,
    /// A cooldown's end rather than a silence.
    cooldown: bool,
    rule: usize,
}

/// A symbol as the deadlines see it.
#[derive(Debug)]
struct Silence {
    /// Its latest trade (event time) that the core applies.
    last: Timestamp,
    /// Per rule: whether a silence deadline of the rule for this symbol is waiting in the heap
    /// (at most one is: a trade moves the symbol's `last`, and the waiting deadline is moved when
    /// it comes up — so the heap holds symbols × rules silences, not one per trade).
    queued: Vec<bool>,
}

/// The deadlines of every symbol's `stale` rules; see the module's documentation.
#[derive(Debug, Default)]
pub struct StaleDeadlines {
    rules: Arc<[StaleRule]>,
    symbols: HashMap<Symbol, Silence>,
    due: BinaryHeap<Reverse<Deadline>>,
}

impl StaleDeadlines {
    /// Whether there are `stale` rules at all (nothing to do otherwise).
    pub fn is_idle(&self) -> bool {
        self.rules.is_empty()
    }

    /// Follows new rules: every symbol's silence deadlines are computed again.
    pub fn set_rules(&mut self, rules: Arc<[StaleRule]>) {
        if *rules == *self.rules {
            return;
        }
        self.rules = rules;
        self.due.clear();
        for (symbol, silence) in &mut self.symbols {
            silence.queued = vec![false; self.rules.len()];
            queue_silences(&self.rules, &mut self.due, symbol, silence);
        }
    }

    /// A trade of `symbol` at `ts` that the core applies (not dropped as late).
    pub fn on_trade(&mut self, symbol: &Symbol, ts: Timestamp) {
        let silence = match self.symbols.get_mut(symbol) {
            Some(silence) if silence.last >= ts => return,
            Some(silence) => {
                silence.last = ts;
                silence
            }
            // Kept without rules all the same: rules may come later.
            None => self.symbols.entry(symbol.clone()).or_insert(Silence {
                last: ts,
                queued: vec![false; self.rules.len()],
            }),
        };
        queue_silences(&self.rules, &mut self.due, symbol, silence);
    }

    /// The symbols whose deadlines the clock `now` has passed (each a moment its partition must
    /// hear the clock at), in no particular order and possibly repeated.
    pub fn crossed(&mut self, now: Timestamp) -> Vec<Symbol> {
        let mut crossed = Vec::new();
        while let Some(Reverse(deadline)) = self.due.peek() {
            if deadline.at >= now {
                break;
            }
            let Some(Reverse(deadline)) = self.due.pop() else {
                break;
            };
            let Some(silence) = self.symbols.get_mut(&deadline.symbol) else {
                continue;
            };
            let Some(rule) = self.rules.get(deadline.rule) else {
                continue;
            };
            let last = silence.last;
            if !deadline.cooldown {
                if last != deadline.since {
                    // The symbol traded since: its deadline moves to that trade's (which the
                    // clock may have passed too: then it comes up again at once).
                    self.due.push(Reverse(Deadline {
                        at: last.saturating_add(rule.after),
                        since: last,
                        ..deadline
                    }));
                    continue;
                }
                if let Some(queued) = silence.queued.get_mut(deadline.rule) {
                    *queued = false;
                }
            } else if last == deadline.since {
                // No trade since the moment the cooldown started: nothing re-armed the rule,
                // so it cannot fire when the cooldown ends.
                continue;
            }
            if rule.cooldown > 0 {
                // A firing now is held back until `now + cooldown`: the first clock at or past
                // it, i.e. past one nanosecond before.
                self.due.push(Reverse(Deadline {
                    at: now.saturating_add(rule.cooldown - 1),
                    symbol: deadline.symbol.clone(),
                    since: last,
                    cooldown: true,
                    rule: deadline.rule,
                }));
            }
            crossed.push(deadline.symbol);
        }
        crossed
    }
}

/// Queues the silence deadline of each rule watching `symbol` that has none waiting.
fn queue_silences(
    rules: &[StaleRule],
    due: &mut BinaryHeap<Reverse<Deadline>>,
    symbol: &Symbol,
    silence: &mut Silence,
) {
    for (rule, stale) in rules.iter().enumerate() {
        let Some(queued) = silence.queued.get_mut(rule) else {
            continue;
        };
        if !*queued && stale.watches(symbol) {
            *queued = true;
            due.push(Reverse(Deadline {
                at: silence.last.saturating_add(stale.after),
                symbol: symbol.clone(),
                since: silence.last,
                cooldown: false,
                rule,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(Option<&str>, i64, i64)]) -> Arc<[StaleRule]> {
        list.iter()
            .map(|(symbol, after, cooldown)| StaleRule {
                symbol: symbol.map(Symbol::new),
                after: *after,
                cooldown: *cooldown,
            })
            .collect()
    }

    #[test]
    fn a_silence_is_crossed_at_the_first_clock_past_it_and_a_trade_moves_it() {
        let mut deadlines = StaleDeadlines::default();
        let (a, b) = (Symbol::new("A"), Symbol::new("B"));
        deadlines.on_trade(&a, 100);
        deadlines.set_rules(rules(&[(None, 50, 0)]));
        deadlines.on_trade(&b, 120);
        assert!(
            deadlines.crossed(150).is_empty(),
            "150 - 100 is not more than 50"
        );
        assert_eq!(deadlines.crossed(151), vec![a.clone()]);
        assert!(deadlines.crossed(160).is_empty(), "crossed once");
        // B traded again at 165: its deadline is 215, not 170.
        deadlines.on_trade(&b, 165);
        assert!(deadlines.crossed(200).is_empty());
        assert_eq!(deadlines.crossed(216), vec![b.clone()]);
        // A rule for one symbol only.
        deadlines.set_rules(rules(&[(Some("A"), 10, 0)]));
        assert_eq!(deadlines.crossed(300), vec![a]);
        assert!(deadlines.crossed(400).is_empty());
    }

    #[test]
    fn a_cooldown_adds_the_moment_it_ends_when_a_trade_rearmed_the_rule() {
        let mut deadlines = StaleDeadlines::default();
        deadlines.set_rules(rules(&[(None, 10, 100)]));
        let a = Symbol::new("A");
        deadlines.on_trade(&a, 0);
        // Fires at 11 (say); a trade at 20 re-arms it; silent again past 30, but the cooldown
        // holds it back until 111, which must be heard.
        assert_eq!(deadlines.crossed(11), vec![a.clone()]);
        deadlines.on_trade(&a, 20);
        assert_eq!(deadlines.crossed(31), vec![a.clone()]);
        assert!(deadlines.crossed(110).is_empty());
        assert_eq!(deadlines.crossed(111), vec![a.clone()]);
        // No trade since 31 or 111: those cooldowns' ends cannot fire anything.
        assert!(deadlines.crossed(10_000).is_empty());
        assert!(deadlines.due.is_empty());
        assert!(!deadlines.is_idle());
    }

    #[test]
    fn the_heap_holds_one_silence_per_symbol_and_rule_however_many_trades() {
        let mut deadlines = StaleDeadlines::default();
        deadlines.set_rules(rules(&[(None, 1_000, 0), (Some("A"), 50, 0)]));
        let (a, b) = (Symbol::new("A"), Symbol::new("B"));
        for ts in 0..10_000 {
            deadlines.on_trade(if ts % 2 == 0 { &a } else { &b }, ts);
        }
        assert_eq!(deadlines.due.len(), 3, "A: two rules, B: one");
        // A's last trade was at 9,998: its 50 ns silence is crossed past 10,048, not earlier.
        assert!(deadlines.crossed(10_048).is_empty());
        assert_eq!(deadlines.crossed(10_049), vec![a]);
        assert_eq!(deadlines.due.len(), 2);
    }
}
