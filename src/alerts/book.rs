//! The rule book: the rules in force, which the HTTP API edits and the analytics core reads. It
//! is copy-on-write: editing it publishes a new immutable [`RuleSet`] ([`arc_swap::ArcSwap`]),
//! which the core picks up between batches without ever waiting for an editor. Edits made over
//! the API can be kept in a file ([`RuleBook::persisted_in`]), written atomically.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::alerts::rules::Rule;
use crate::alerts::spec::{RuleError, RuleSpec};
use crate::analytics::{IntervalSpec, WindowSpec};

/// Most rules the book holds (each `*` rule is evaluated for every symbol that trades).
pub const MAX_RULES: usize = 1000;

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

    /// The book of the configured `rules`, keeping the API's edits in `rules_file` (its
    /// directory created) when there is one.
    pub fn open(
        rules: &[RuleSpec],
        windows: Arc<[WindowSpec]>,
        intervals: Arc<[IntervalSpec]>,
        rules_file: Option<&std::path::Path>,
    ) -> Result<Self, BookError> {
        let book = RuleBook::new(rules, windows, intervals)?;
        let Some(path) = rules_file else {
            return Ok(book);
        };
        if let Some(directory) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(directory).map_err(|error| BookError::Persist {
                path: path.to_path_buf(),
                message: format!("cannot create {}: {error}", directory.display()),
            })?;
        }
        book.persisted_in(path.to_path_buf())
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
    pub fn add(&self, spec: RuleSpec) -> Result<Arc<Rule>, BookError> {
        let mut counter = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load_full();
        let (rule, next) = self.prepare(&current, *counter, spec)?;
        let mut rules = current.rules.clone();
        rules.push(Arc::clone(&rule));
        if let Some(persistence) = &self.persistence {
            persistence.save(&rules)?;
        }
        // The next number is taken only once the rule is in: a rejected one uses up no id.
        *counter = next;
        self.current.store(Arc::new(RuleSet {
            version: current.version + 1,
            rules,
        }));
        Ok(rule)
    }

    /// `spec` validated against `current` as the next rule (its id generated after `counter`
    /// when absent), and the counter it used.
    fn prepare(
        &self,
        current: &RuleSet,
        counter: u64,
        mut spec: RuleSpec,
    ) -> Result<(Arc<Rule>, u64), BookError> {
        if current.rules.len() >= MAX_RULES {
            return Err(BookError::Full);
        }
        let mut next = counter;
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
        Ok((rule, next))
    }

    /// The rules in force, as their specs (ids included), in order.
    pub fn specs(&self) -> Vec<RuleSpec> {
        self.load().rules.iter().map(|r| r.spec.clone()).collect()
    }

    /// What the rules would be with `spec` added (validated, its id generated when absent),
    /// and the rule: the book itself is not changed (a cluster writes the result to its shared
    /// rules first, then [`RuleBook::replace`]s).
    pub fn with_rule(&self, spec: RuleSpec) -> Result<(Vec<RuleSpec>, Arc<Rule>), BookError> {
        let counter = *self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load_full();
        let (rule, _) = self.prepare(&current, counter, spec)?;
        let mut specs: Vec<RuleSpec> = current.rules.iter().map(|r| r.spec.clone()).collect();
        specs.push(rule.spec.clone());
        Ok((specs, rule))
    }

    /// What the rules would be without the rule `id`, and that rule; the book is not changed.
    pub fn without_rule(&self, id: &str) -> Result<(Vec<RuleSpec>, Arc<Rule>), BookError> {
        let current = self.current.load_full();
        let removed = current
            .rules
            .iter()
            .find(|r| &*r.id == id)
            .cloned()
            .ok_or_else(|| BookError::NotFound(id.to_string()))?;
        let specs = current
            .rules
            .iter()
            .filter(|r| &*r.id != id)
            .map(|r| r.spec.clone())
            .collect();
        Ok((specs, removed))
    }

    /// Makes `specs` the rules in force (each validated; every one must have an id, none twice):
    /// the rules a cluster shares. Rules that stay keep their state in the evaluators (they are
    /// matched by id). Nothing changes when `specs` are the rules in force already.
    pub fn replace(&self, specs: &[RuleSpec]) -> Result<(), BookError> {
        let _guard = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load_full();
        if specs.len() == current.rules.len()
            && specs.iter().zip(&current.rules).all(|(s, r)| *s == r.spec)
        {
            return Ok(());
        }
        if specs.len() > MAX_RULES {
            return Err(BookError::Full);
        }
        let mut rules: Vec<Arc<Rule>> = Vec::with_capacity(specs.len());
        for spec in specs {
            let kept = current.rules.iter().find(|r| r.spec == *spec);
            let rule = match kept {
                Some(rule) => Arc::clone(rule),
                None => {
                    if spec.id.is_none() {
                        return Err(BookError::Invalid(RuleError {
                            field: "id",
                            message: "required".to_string(),
                        }));
                    }
                    Arc::new(spec.validate(&self.windows, &self.intervals)?)
                }
            };
            if rules.iter().any(|r| r.id == rule.id) {
                return Err(BookError::Duplicate(rule.id.to_string()));
            }
            rules.push(rule);
        }
        if let Some(persistence) = &self.persistence {
            persistence.save(&rules)?;
        }
        self.current.store(Arc::new(RuleSet {
            version: current.version + 1,
            rules,
        }));
        Ok(())
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
    use crate::alerts::testing::{intervals, spec, windows};

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

    #[test]
    fn edits_can_be_prepared_without_changing_the_book_and_replaced_in_one_step() {
        let book = RuleBook::new(
            &[spec(
                r#"{"id":"kept","kind":"stale","symbol":"A","after":"1s"}"#,
            )],
            windows(),
            intervals(),
        )
        .expect("book");
        let kept = Arc::clone(&book.load().rules[0]);
        let (specs, rule) = book
            .with_rule(spec(r#"{"kind":"stale","symbol":"B","after":"2s"}"#))
            .expect("valid");
        assert_eq!(&*rule.id, "stale-1");
        assert_eq!(specs.len(), 2);
        assert_eq!(book.load().rules.len(), 1, "preparing changes nothing");
        assert!(matches!(
            book.with_rule(spec(
                r#"{"id":"kept","kind":"stale","symbol":"A","after":"1s"}"#
            )),
            Err(BookError::Duplicate(_))
        ));
        let version = book.load().version;
        book.replace(&specs).expect("replaced");
        let now = book.load();
        assert_eq!(now.version, version + 1);
        assert!(
            Arc::ptr_eq(&now.rules[0], &kept),
            "a rule that stays is the same rule"
        );
        book.replace(&specs).expect("the same rules");
        assert_eq!(
            book.load().version,
            version + 1,
            "no change, no new version"
        );
        let (specs, removed) = book.without_rule("kept").expect("there");
        assert_eq!(&*removed.id, "kept");
        assert_eq!(specs.len(), 1);
        assert!(matches!(
            book.without_rule("none"),
            Err(BookError::NotFound(_))
        ));
        // Shared rules always carry their ids; two with one id are refused.
        let no_id = spec(r#"{"kind":"stale","symbol":"A","after":"1s"}"#);
        assert!(matches!(book.replace(&[no_id]), Err(BookError::Invalid(_))));
        let twice = spec(r#"{"id":"x","kind":"stale","symbol":"A","after":"1s"}"#);
        assert!(matches!(
            book.replace(&[twice.clone(), twice]),
            Err(BookError::Duplicate(_))
        ));
        assert_eq!(
            book.load().rules.len(),
            2,
            "a refused replacement changes nothing"
        );
    }
}
