//! Alert rules across nodes: the cluster has one rule book, kept under [`RULES_KEY`] in the
//! config bucket. A rule added or removed over any node's API (`POST`/`DELETE
//! /v1/alerts/rules`) is written there first — a compare-and-set on the revision the node last
//! applied, redone on the newer rules when another node edited meanwhile — and every node
//! applies each new revision to its own [`RuleBook`] as it sees it, so an alert rule is in force
//! on whichever node owns the symbol, and `GET /v1/alerts/rules` is the same everywhere.
//!
//! The first node of a cluster stores its configured rules; a node that joins later takes the
//! cluster's (saying so when its own configuration differed).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::deadlines::{StaleRule, stale_rules};
use crate::alerts::book::BookError;
use crate::alerts::rules::Rule;
use crate::alerts::{RuleBook, RuleSpec};
use crate::analytics::{IntervalSpec, WindowSpec};

/// The key of the cluster's rules in the config bucket.
pub const RULES_KEY: &str = "rules";

/// Compare-and-set attempts of one edit before it is given up (other nodes editing at once).
const ATTEMPTS: usize = 16;

/// What the key holds.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRules {
    rules: Vec<RuleSpec>,
}

/// Why an edit of the cluster's rules failed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The edit itself is refused (invalid rule, duplicate id, no such rule, book full).
    #[error(transparent)]
    Book(#[from] BookError),
    /// The shared rules cannot be read or written (NATS unreachable, no quorum).
    #[error("the cluster's rules cannot be {0}: {1}")]
    Store(&'static str, String),
    /// Other nodes kept editing the rules while this edit was retried.
    #[error("the cluster's rules changed {ATTEMPTS} times during this edit; try again")]
    Contended,
}

/// This node's side of the cluster's rules.
pub struct SharedRules {
    store: kv::Store,
    book: Arc<RuleBook>,
    /// The revision of the key this node's book holds; taken by edits and updates alike, so
    /// that the book moves from one revision to the next.
    applied: tokio::sync::Mutex<u64>,
}

impl std::fmt::Debug for SharedRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRules").finish_non_exhaustive()
    }
}

fn encode(specs: Vec<RuleSpec>) -> Result<Bytes, RulesError> {
    serde_json::to_vec(&StoredRules { rules: specs })
        .map(Bytes::from)
        .map_err(|e| RulesError::Store("encoded", e.to_string()))
}

fn decode(value: &[u8]) -> Result<Vec<RuleSpec>, RulesError> {
    serde_json::from_slice::<StoredRules>(value)
        .map(|stored| stored.rules)
        .map_err(|e| RulesError::Store("read", format!("not rules: {e}")))
}

impl SharedRules {
    /// Joins the cluster's rules: takes them into `book`, or stores the book's when the cluster
    /// has none yet; then follows every change until `stop`.
    pub async fn join(
        store: kv::Store,
        book: Arc<RuleBook>,
        stop: CancellationToken,
    ) -> Result<Arc<SharedRules>, RulesError> {
        // Watching first: no revision written between the read below and the watch is missed.
        let watch = store
            .watch(RULES_KEY)
            .await
            .map_err(|e| RulesError::Store("watched", e.to_string()))?;
        let shared = Arc::new(SharedRules {
            store,
            book,
            applied: tokio::sync::Mutex::new(0),
        });
        shared.catch_up(true).await?;
        tokio::spawn(Arc::clone(&shared).follow(watch, stop));
        Ok(shared)
    }

    /// Brings the book to the key's latest revision (storing the book's rules if the key is
    /// absent).
    async fn catch_up(&self, joining: bool) -> Result<(), RulesError> {
        let mut applied = self.applied.lock().await;
        loop {
            let entry = self
                .store
                .entry(RULES_KEY)
                .await
                .map_err(|e| RulesError::Store("read", e.to_string()))?;
            match entry {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    let specs = decode(&entry.value)?;
                    if joining && specs != self.book.specs() {
                        tracing::warn!(
                            rules = specs.len(),
                            "this node's configured alert rules differ from the cluster's: the cluster's are in force"
                        );
                    }
                    self.book.replace(&specs)?;
                    *applied = entry.revision;
                    return Ok(());
                }
                _ => match self
                    .store
                    .create(RULES_KEY, encode(self.book.specs())?)
                    .await
                {
                    Ok(revision) => {
                        tracing::info!(
                            rules = self.book.specs().len(),
                            "the cluster had no alert rules: this node's are now the cluster's"
                        );
                        *applied = revision;
                        return Ok(());
                    }
                    // Another node stored its rules first: read them.
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                    Err(e) => return Err(RulesError::Store("stored", e.to_string())),
                },
            }
        }
    }

    /// Applies every revision other nodes write until `stop` (the watch is made again after an
    /// interruption, catching up first).
    async fn follow(self: Arc<Self>, mut watch: kv::Watch, stop: CancellationToken) {
        loop {
            let next = tokio::select! {
                next = watch.next() => next,
                () = stop.cancelled() => return,
            };
            match next {
                Some(Ok(entry)) if entry.operation == kv::Operation::Put => {
                    let mut applied = self.applied.lock().await;
                    if entry.revision <= *applied {
                        continue;
                    }
                    match decode(&entry.value).and_then(|specs| Ok(self.book.replace(&specs)?)) {
                        Ok(()) => {
                            *applied = entry.revision;
                            tracing::info!(
                                revision = entry.revision,
                                rules = self.book.specs().len(),
                                "alert rules changed on another node: applied"
                            );
                        }
                        Err(error) => {
                            tracing::error!(%error, "cannot apply the cluster's alert rules")
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    // Watched again, and caught up with what was written meanwhile.
                    let pause = Duration::from_secs(1);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => return,
                    }
                    match self.store.watch(RULES_KEY).await {
                        Ok(again) => {
                            watch = again;
                            if let Err(error) = self.catch_up(false).await {
                                tracing::warn!(%error, "cannot read the cluster's alert rules");
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot watch the cluster's alert rules")
                        }
                    }
                }
            }
        }
    }

    /// Adds a rule cluster-wide; returns it as stored (with its id).
    pub async fn add(&self, spec: RuleSpec) -> Result<Arc<Rule>, RulesError> {
        self.edit(|book| book.with_rule(spec.clone())).await
    }

    /// Removes the rule `id` cluster-wide.
    pub async fn remove(&self, id: &str) -> Result<Arc<Rule>, RulesError> {
        self.edit(|book| book.without_rule(id)).await
    }

    /// Writes what `change` makes of this node's rules if no other node wrote since this node
    /// last applied; otherwise takes the newer rules and tries again.
    async fn edit(
        &self,
        change: impl Fn(&RuleBook) -> Result<(Vec<RuleSpec>, Arc<Rule>), BookError>,
    ) -> Result<Arc<Rule>, RulesError> {
        for _ in 0..ATTEMPTS {
            let mut applied = self.applied.lock().await;
            let (specs, rule) = change(&self.book)?;
            match self
                .store
                .update(RULES_KEY, encode(specs.clone())?, *applied)
                .await
            {
                Ok(revision) => {
                    self.book.replace(&specs)?;
                    *applied = revision;
                    return Ok(rule);
                }
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    drop(applied);
                    self.catch_up(false).await?;
                }
                Err(e) => return Err(RulesError::Store("written", e.to_string())),
            }
        }
        Err(RulesError::Contended)
    }
}

/// The cluster's `stale` rules as they change, for an ingest ([`super::deadlines`]): read from
/// the config bucket and followed until `stop` (watched again after an interruption).
pub fn follow_stale_rules(
    js: async_nats::jetstream::Context,
    windows: Arc<[WindowSpec]>,
    intervals: Arc<[IntervalSpec]>,
    stop: CancellationToken,
) -> tokio::sync::watch::Receiver<Arc<[StaleRule]>> {
    let (sender, receiver) = tokio::sync::watch::channel(Arc::from(Vec::new()));
    let send = move |value: &[u8]| match decode(value) {
        Ok(specs) => {
            let rules: Arc<[StaleRule]> = stale_rules(&specs, &windows, &intervals).into();
            sender.send_if_modified(|current| {
                let changed = *current != rules;
                if changed {
                    tracing::info!(rules = rules.len(), "the cluster's stale rules");
                    *current = rules;
                }
                changed
            });
        }
        Err(error) => tracing::warn!(%error, "cannot read the cluster's alert rules"),
    };
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(250);
        loop {
            let followed = async {
                let store = js
                    .get_key_value(super::CONFIG_BUCKET)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut watch = store.watch(RULES_KEY).await.map_err(|e| e.to_string())?;
                if let Some(value) = store.get(RULES_KEY).await.map_err(|e| e.to_string())? {
                    send(&value);
                }
                while let Some(entry) = watch.next().await {
                    let entry = entry.map_err(|e| e.to_string())?;
                    if entry.operation == kv::Operation::Put {
                        send(&entry.value);
                    }
                }
                Ok::<(), String>(())
            };
            tokio::select! {
                result = followed => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "following the cluster's alert rules");
                    }
                }
                () = stop.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => pause = (pause * 2).min(Duration::from_secs(5)),
                () = stop.cancelled() => return,
            }
        }
    });
    receiver
}
