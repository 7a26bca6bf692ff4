//! Partition ownership by leases in a JetStream key-value bucket ([`super::LEASE_BUCKET`]).
//!
//! The bucket's entries expire [`LEASE_TTL`] after their last write. Every [`RENEW_EVERY`] a node:
//!
//! 1. writes its heartbeat `nodes.<name>` (its HTTP address and start time);
//! 2. reads the live nodes (the heartbeats not expired) and every `partitions.<p>` lease;
//! 3. works out each partition's desired owner by rendezvous hashing over the live nodes (the
//!    node with the highest hash of `node/partition`): every node computes the same answer, a
//!    node joining takes only its share, and a node leaving spreads its share over the rest;
//! 4. renews the leases it holds and is the desired owner of (an update at the revision it
//!    wrote: a lease someone else took cannot be renewed), takes the free partitions it is the
//!    desired owner of (a create: only one node can), and gives up the partitions it holds but
//!    should not — it stops consuming first and deletes the lease at the next round, so the
//!    desired owner takes it within about two rounds.
//!
//! A node that has not renewed for [`FENCE_AFTER`] (NATS unreachable, the process stalled) gives
//! up every partition by itself before its leases can expire and be taken: two nodes never apply
//! one partition's trades at once, and an alert is fired by one of them. A killed node's leases
//! expire after [`LEASE_TTL`]; the desired owners take them at their next round.
//!
//! The owner also writes its progress — the stream sequence up to which it has applied and
//! delivered alerts — to `progress.<p>` in the config bucket (which does not expire); a node
//! taking the partition rebuilds from the stream without delivering the alerts of messages up to
//! there (the previous owner did).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ClusterError;

/// How long a lease or heartbeat lives after its last write.
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// How often a node renews and looks at the leases.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long without a successful renewal before a node gives up its partitions by itself
/// (shorter than [`LEASE_TTL`], so it has stopped before anyone can take them).
pub const FENCE_AFTER: Duration = Duration::from_secs(3);

/// A node's heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRecord {
    /// The node's name.
    pub node: String,
    /// Where its HTTP API listens.
    pub http: String,
    /// When it started, epoch ms.
    pub started_ms: i64,
}

/// A partition's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaseRecord {
    /// The owner.
    pub node: String,
    /// Since when it owns the partition, epoch ms.
    pub since_ms: i64,
    /// The stream sequence up to which the owner has applied the partition's messages.
    pub applied: u64,
    /// Messages of the partition the owner's consumer has not received yet (its lag).
    pub pending: u64,
    /// Whether the owner is still rebuilding the partition's state from the stream.
    pub rebuilding: bool,
}

/// What a partition task reports for the lease renewals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The last stream sequence applied.
    pub applied: u64,
    /// Messages not yet received.
    pub pending: u64,
    /// Still rebuilding.
    pub rebuilding: bool,
}

/// A partition this node owns, as the node is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    /// The previous owner's progress when this node took it: alerts of messages up to this
    /// sequence were delivered already.
    pub delivered: u64,
}

/// What the node knows of the cluster (for `GET /v1/cluster`), as of the last round.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// This node's name.
    pub node: String,
    /// The stream's partition count.
    pub partitions: u32,
    /// Live nodes.
    pub nodes: Vec<NodeRecord>,
    /// Leases, by partition.
    pub leases: BTreeMap<u32, LeaseRecord>,
    /// Desired owner, by partition.
    pub desired: BTreeMap<u32, String>,
    /// When the view was read.
    pub read_at_ms: i64,
}

/// State shared between the lease task, the node and the HTTP API.
#[derive(Default)]
pub struct LeaseShared {
    /// Partitions whose task is running on this node (a lease is deleted only once its task
    /// stopped).
    pub running: Mutex<BTreeSet<u32>>,
    /// Partitions this node answers for: running and caught up with the stream.
    pub serving: Mutex<BTreeSet<u32>>,
    /// The stream's partition count (0 until the node has joined).
    pub partitions: std::sync::atomic::AtomicU32,
    /// The NATS connection (once joined): forwarded requests go through it.
    pub client: std::sync::OnceLock<async_nats::Client>,
    /// Answers the requests other nodes forward (the API's routes, set when it starts).
    pub responder: std::sync::OnceLock<Arc<dyn super::query::Responder>>,
    /// Each running partition's progress.
    pub progress: Mutex<HashMap<u32, Progress>>,
    /// The last view of the cluster.
    pub view: Mutex<ClusterView>,
    /// The cluster's alert rules (once joined): the API's rule edits go through them.
    pub rules: std::sync::OnceLock<Arc<super::rules::SharedRules>>,
}

impl std::fmt::Debug for LeaseShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseShared")
            .field("running", &self.running)
            .field("serving", &self.serving)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl LeaseShared {
    /// Whether this node answers for `partition` itself.
    pub fn serves(&self, partition: u32) -> bool {
        self.serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&partition)
    }

    /// The partition count, once joined.
    pub fn partition_count(&self) -> Option<u32> {
        match self.partitions.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            n => Some(n),
        }
    }
}

/// The lease task.
pub struct Leases {
    leases: kv::Store,
    /// The lease bucket's stream (to list the live heartbeats).
    stream: async_nats::jetstream::stream::Stream,
    config: kv::Store,
    me: NodeRecord,
    partitions: u32,
    shared: Arc<LeaseShared>,
    /// Held leases: partition → revision written.
    held: BTreeMap<u32, u64>,
    /// Partitions given up, whose lease is deleted once their task stopped.
    releasing: BTreeSet<u32>,
    /// When each held lease was taken, epoch ms.
    since: BTreeMap<u32, i64>,
    last_renewed: Instant,
}

fn lease_key(partition: u32) -> String {
    format!("partitions.{partition}")
}

fn progress_key(partition: u32) -> String {
    format!("progress.{partition}")
}

/// The desired owner of `partition` among `nodes` (rendezvous hashing).
pub fn desired_owner(partition: u32, nodes: &[String]) -> Option<&str> {
    nodes
        .iter()
        .max_by_key(|node| {
            let key = format!("{node}/{partition}");
            // FNV-1a, then a 64-bit mix so that neighbouring keys spread.
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in key.as_bytes() {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
            hash ^= hash >> 33;
            hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
            hash ^= hash >> 33;
            (hash, node.as_str())
        })
        .map(String::as_str)
}

fn epoch_ms() -> i64 {
    crate::model::wall_clock_now() / 1_000_000
}

impl Leases {
    /// Opens (or creates) the lease bucket.
    pub async fn open(
        js: &async_nats::jetstream::Context,
        me: NodeRecord,
        partitions: u32,
        replicas: usize,
        shared: Arc<LeaseShared>,
    ) -> Result<Leases, ClusterError> {
        let leases = super::open_bucket(
            js,
            super::LEASE_BUCKET,
            "tickstream: node heartbeats and partition leases",
            LEASE_TTL,
            replicas,
        )
        .await?;
        let stream = js
            .get_stream(format!("KV_{}", super::LEASE_BUCKET))
            .await
            .map_err(|e| ClusterError::jetstream("opening the lease bucket", e))?;
        let config = js
            .get_key_value(super::CONFIG_BUCKET)
            .await
            .map_err(|e| ClusterError::jetstream("opening the config bucket", e))?;
        Ok(Leases {
            leases,
            stream,
            config,
            me,
            partitions,
            shared,
            held: BTreeMap::new(),
            releasing: BTreeSet::new(),
            since: BTreeMap::new(),
            last_renewed: Instant::now(),
        })
    }

    /// Runs the rounds until `cancel`, telling the node what it owns through `owned`; at the
    /// end, gives up every lease (once the partitions' tasks stopped, or after a grace period).
    pub async fn run(
        mut self,
        owned: watch::Sender<BTreeMap<u32, Owned>>,
        cancel: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(RENEW_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = cancel.cancelled() => break,
            }
            if let Err(error) = self.round(&owned).await {
                tracing::warn!(%error, "lease round failed");
            }
            if !self.held.is_empty() && self.last_renewed.elapsed() >= FENCE_AFTER {
                tracing::error!(
                    partitions = ?self.held.keys().collect::<Vec<_>>(),
                    "leases not renewed for {FENCE_AFTER:?}: giving up every partition before they can be taken"
                );
                self.held.clear();
                self.since.clear();
                owned.send_replace(BTreeMap::new());
            }
        }
        // Shutting down: stop owning, then free the leases for the others at once.
        owned.send_replace(BTreeMap::new());
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.running().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (partition, revision) in std::mem::take(&mut self.held) {
            let _ = self
                .leases
                .delete_expect_revision(lease_key(partition), Some(revision))
                .await;
        }
        let _ = self.leases.delete(format!("nodes.{}", self.me.node)).await;
    }

    fn running(&self) -> BTreeSet<u32> {
        self.shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn round(
        &mut self,
        owned: &watch::Sender<BTreeMap<u32, Owned>>,
    ) -> Result<(), ClusterError> {
        let heartbeat = serde_json::to_vec(&self.me).unwrap_or_default();
        self.leases
            .put(format!("nodes.{}", self.me.node), heartbeat.into())
            .await
            .map_err(|e| ClusterError::jetstream("writing the heartbeat", e))?;
        let mut nodes = Vec::new();
        // The live heartbeats' keys, from the bucket's stream information (one request; the
        // key-value `keys()` creates a consumer per call, which a 2.9 cluster that lost a
        // server times out on).
        let prefix = format!("$KV.{}.nodes.", super::LEASE_BUCKET);
        let mut subjects = self
            .stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .map_err(|e| ClusterError::jetstream("listing the nodes", e))?;
        let mut listed = Vec::new();
        while let Some(subject) = subjects.next().await {
            let (subject, _) =
                subject.map_err(|e| ClusterError::jetstream("listing the nodes", e))?;
            if let Some(name) = subject.strip_prefix(&prefix) {
                listed.push(name.to_string());
            }
        }
        // A node that stopped deleted its heartbeat: the delete marker stays listed until it
        // expires, but reads as no record, so only the heartbeats read count.
        for name in &listed {
            if let Ok(Some(value)) = self.leases.get(format!("nodes.{name}")).await
                && let Ok(record) = serde_json::from_slice::<NodeRecord>(&value)
            {
                nodes.push(record);
            }
        }
        if !nodes.iter().any(|n| n.node == self.me.node) {
            nodes.push(self.me.clone());
        }
        let mut names: Vec<String> = nodes.iter().map(|n| n.node.clone()).collect();
        names.sort();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        let running = self.running();
        let progress = self
            .shared
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut leases = BTreeMap::new();
        let mut desired = BTreeMap::new();
        let mut renewed_all = true;
        for partition in 0..self.partitions {
            let want = desired_owner(partition, &names)
                .unwrap_or(&self.me.node)
                .to_string();
            let mine = want == self.me.node;
            desired.insert(partition, want);
            let entry = self
                .leases
                .entry(lease_key(partition))
                .await
                .map_err(|e| ClusterError::jetstream("reading a lease", e))?
                .filter(|entry| entry.operation == kv::Operation::Put);
            let record = entry
                .as_ref()
                .and_then(|e| serde_json::from_slice::<LeaseRecord>(&e.value).ok());
            if let Some(revision) = self.held.get(&partition).copied() {
                if !mine && !self.releasing.contains(&partition) {
                    // Give it up: the task stops now, the lease goes once it has.
                    tracing::info!(partition, "giving up a partition to its desired owner");
                    self.releasing.insert(partition);
                }
                if self.releasing.contains(&partition) {
                    if !running.contains(&partition) {
                        let _ = self
                            .leases
                            .delete_expect_revision(lease_key(partition), Some(revision))
                            .await;
                        self.held.remove(&partition);
                        self.since.remove(&partition);
                        self.releasing.remove(&partition);
                    } else {
                        // Still renewed until the task stopped: no one may take it meanwhile.
                        if let Some(revision) = self.renew(partition, revision, &progress).await {
                            self.held.insert(partition, revision);
                        }
                    }
                    continue;
                }
                match self.renew(partition, revision, &progress).await {
                    Some(revision) => {
                        self.held.insert(partition, revision);
                        if let Some(record) = self.record(partition, &progress) {
                            leases.insert(partition, record);
                        }
                    }
                    None => {
                        tracing::warn!(
                            partition,
                            "lost a partition's lease (not renewed in time, or taken)"
                        );
                        self.held.remove(&partition);
                        self.since.remove(&partition);
                        renewed_all = false;
                    }
                }
                continue;
            }
            if let Some(record) = record {
                leases.insert(partition, record);
                continue;
            }
            if !mine {
                continue;
            }
            // Free, and ours to take.
            let record = LeaseRecord {
                node: self.me.node.clone(),
                since_ms: epoch_ms(),
                applied: 0,
                pending: 0,
                rebuilding: true,
            };
            let value = serde_json::to_vec(&record).unwrap_or_default();
            if let Ok(revision) = self.leases.create(lease_key(partition), value.into()).await {
                tracing::info!(partition, "took a partition");
                self.held.insert(partition, revision);
                self.since.insert(partition, record.since_ms);
                leases.insert(partition, record);
            }
        }
        if renewed_all {
            self.last_renewed = Instant::now();
        }
        // Tell the node what it owns (partitions being given up are no longer owned).
        let mut now_owned = BTreeMap::new();
        for partition in self.held.keys().filter(|p| !self.releasing.contains(p)) {
            let known = owned.borrow().get(partition).copied();
            let delivered = match known {
                Some(known) => known.delivered,
                None => self.delivered(*partition).await,
            };
            now_owned.insert(*partition, Owned { delivered });
        }
        owned.send_if_modified(|current| {
            if *current == now_owned {
                false
            } else {
                *current = now_owned;
                true
            }
        });
        // Progress for whoever takes a partition next.
        for (partition, p) in &progress {
            if self.held.contains_key(partition) && !p.rebuilding && p.applied > 0 {
                let _ = self
                    .config
                    .put(progress_key(*partition), p.applied.to_string().into())
                    .await;
            }
        }
        *self.shared.view.lock().unwrap_or_else(|p| p.into_inner()) = ClusterView {
            node: self.me.node.clone(),
            partitions: self.partitions,
            nodes,
            leases,
            desired,
            read_at_ms: epoch_ms(),
        };
        Ok(())
    }

    fn record(&self, partition: u32, progress: &HashMap<u32, Progress>) -> Option<LeaseRecord> {
        let p = progress.get(&partition).copied().unwrap_or_default();
        Some(LeaseRecord {
            node: self.me.node.clone(),
            since_ms: self.since.get(&partition).copied().unwrap_or_else(epoch_ms),
            applied: p.applied,
            pending: p.pending,
            rebuilding: p.rebuilding || !progress.contains_key(&partition),
        })
    }

    /// Renews a held lease; `None` when it is no longer ours.
    async fn renew(
        &self,
        partition: u32,
        revision: u64,
        progress: &HashMap<u32, Progress>,
    ) -> Option<u64> {
        let record = self.record(partition, progress)?;
        let value = serde_json::to_vec(&record).unwrap_or_default();
        self.leases
            .update(lease_key(partition), value.into(), revision)
            .await
            .ok()
    }

    /// The previous owner's recorded progress on `partition`.
    async fn delivered(&self, partition: u32) -> u64 {
        match self.config.get(progress_key(partition)).await {
            Ok(Some(value)) => String::from_utf8_lossy(&value).trim().parse().unwrap_or(0),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_and_moves_little() {
        let three: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let two: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let mut counts = HashMap::new();
        let mut moved = 0;
        for p in 0..300 {
            let with_three = desired_owner(p, &three).expect("owner");
            *counts.entry(with_three).or_insert(0) += 1;
            let with_two = desired_owner(p, &two).expect("owner");
            if with_three != "c" {
                // Only c's partitions move when c leaves.
                assert_eq!(with_three, with_two);
            } else {
                moved += 1;
            }
        }
        assert!(
            counts.values().all(|&c| (70..130).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(moved, counts["c"]);
        assert_eq!(desired_owner(0, &[]), None);
    }
}
