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
}
