//! Scale-out on NATS JetStream: ingest processes publish every normalized trade and quote to a
//! stream partitioned by symbol; analytics nodes own shares of the partitions by leases and run
//! today's core on what they own; any node answers any symbol.
//!
//! - [`partition`]: which partition a symbol is in, and its subjects (`ticks.<p>.<symbol>`);
//! - [`wire`]: the messages on the stream (JSON), each trade carrying the ingest's event-time
//!   clock so that a partition's windows are those of one process seeing every symbol;
//! - [`publish`]: the ingest role's publisher — batched, acknowledged asynchronously, resent
//!   after an outage (the stream's duplicate window drops what landed twice);
//! - [`lease`]: partition ownership by leases in a JetStream key-value bucket;
//! - [`node`]: the analytics node — a core per owned partition, rebuilt from the stream when it
//!   takes one;
//! - [`query`]: any node answers any symbol — requests for a partition another node serves go
//!   to it over NATS request/reply;
//! - [`alerts`] and [`live`]: every node's alerts and live stream show every symbol.
//!
//! Single node stays the default: nothing here runs without `--nats`. See `docs/scale-out.md`.

pub mod alerts;
pub mod deadlines;
pub mod lease;
pub mod live;
pub mod node;
pub mod partition;
pub mod publish;
pub mod query;
pub mod rules;
pub mod wire;

use std::time::Duration;

use async_nats::jetstream;

/// The JetStream stream of ticks.
pub const STREAM: &str = "TICKSTREAM_TICKS";
/// The key-value bucket of the cluster's fixed settings (the partition count).
pub const CONFIG_BUCKET: &str = "tickstream_config";
/// The config bucket's description.
const CONFIG_DESCRIPTION: &str = "tickstream: the cluster's settings and alert rules";
/// The key-value bucket of leases (node heartbeats and partition owners); entries expire.
pub const LEASE_BUCKET: &str = "tickstream_leases";
/// How long the stream's duplicate window is: a resend within it is dropped.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The default partition count of a new stream.
pub const DEFAULT_PARTITIONS: u32 = 16;
/// The largest partition count.
pub const MAX_PARTITIONS: u32 = 1024;
/// How long the stream keeps ticks by default (at least the state's horizon is kept).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Which part a process plays in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs the sources and publishes their trades and quotes (`tickstream ingest`).
    Ingest,
    /// Owns partitions and answers queries (`tickstream serve --nats`).
    Node,
}

/// A cluster's settings (`--nats` and its companions).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The NATS servers to connect to (any of the cluster's).
    pub servers: Vec<String>,
    /// This process's part.
    pub role: Role,
    /// This process's name in the cluster (unique among nodes).
    pub node: String,
    /// The partition count when this process creates the stream (fixed once created).
    pub partitions: u32,
    /// The stream's and buckets' replicas (default 3 when the server is clustered, else 1).
    pub replicas: Option<usize>,
    /// How long the stream keeps ticks.
    pub retention: Duration,
}

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The servers cannot be reached or refused us.
    #[error("cannot connect to NATS at {servers}: {message}")]
    Connect {
        /// The servers tried.
        servers: String,
        /// Why.
        message: String,
    },
    /// A JetStream request failed.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// The stream exists with settings this process cannot work with.
    #[error("the stream {STREAM} {0}")]
    Stream(String),
}

impl ClusterError {
    /// A JetStream failure, said with what was being done.
    pub fn jetstream(doing: &str, error: impl std::fmt::Display) -> Self {
        ClusterError::JetStream(format!("{doing}: {error}"))
    }
}

/// Connects to the servers; the client reconnects by itself after, with backoff.
pub async fn connect(settings: &ClusterSettings) -> Result<async_nats::Client, ClusterError> {
    let servers = settings.servers.join(",");
    let addresses = settings
        .servers
        .iter()
        .map(|server| server.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ClusterError::Connect {
            servers: servers.clone(),
            message: error.to_string(),
        })?;
    let name = format!("tickstream-{}", settings.node);
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("NATS connected"),
                async_nats::Event::Disconnected => {
                    tracing::warn!("NATS disconnected; reconnecting")
                }
                other => tracing::debug!(event = %other, "NATS"),
            }
        })
        .connect(addresses)
        .await
        .map_err(|error| ClusterError::Connect {
            servers,
            message: error.to_string(),
        })
}

/// How many replicas the stream and buckets get: as configured, else 3 on a clustered server
/// and 1 on a lone one — as the server says once connected (the client connects in the
/// background: until then it knows nothing of the server).
pub async fn replicas(client: &async_nats::Client, settings: &ClusterSettings) -> usize {
    if let Some(replicas) = settings.replicas {
        return replicas;
    }
    let mut waited = false;
    while client.connection_state() != async_nats::connection::State::Connected {
        if !waited {
            tracing::info!(servers = %settings.servers.join(","), "waiting for a NATS server");
            waited = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if client.server_info().cluster.is_some() {
        3
    } else {
        1
    }
}

/// A JetStream context for the role: publishes wait for room among unacknowledged ones rather
/// than failing. The client's own bound is twice the publisher's `in_flight`: after a failure
/// the publisher drops its acknowledgement futures, and the client holds their slots until
/// their answers come or time out (5 s), so new sends are not starved meanwhile.
pub fn context(client: async_nats::Client, in_flight: usize) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .ack_timeout(Duration::from_secs(5))
        .max_ack_inflight(in_flight * 2)
        .backpressure_on_inflight(true)
        .build(client)
}

/// Opens a key-value bucket, creating it when it is missing. The bucket's stream is created
/// here as the key-value conventions describe it (`KV_<bucket>`, subjects `$KV.<bucket>.>`, one
/// value per key, roll-ups allowed, direct gets): async-nats' own `create_key_value` first asks
/// for the account's information in a shape a 2.9 server does not send.
pub async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<jetstream::kv::Store, ClusterError> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.to_string()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        duplicate_window: if max_age.is_zero() {
            DUPLICATE_WINDOW
        } else {
            max_age.min(DUPLICATE_WINDOW)
        },
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| ClusterError::jetstream(&format!("creating the bucket {bucket}"), e))?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| ClusterError::jetstream(&format!("opening the bucket {bucket}"), e))
}

/// The partition count of the cluster: read from the config bucket, or — for an ingest, the
/// first to come — written there, with the stream created to match.
pub async fn open_stream(
    js: &jetstream::Context,
    settings: &ClusterSettings,
    replicas: usize,
    horizon: Duration,
) -> Result<u32, ClusterError> {
    let config = open_bucket(
        js,
        CONFIG_BUCKET,
        CONFIG_DESCRIPTION,
        Duration::ZERO,
        replicas,
    )
    .await?;
    let partitions = loop {
        if let Some(value) = config
            .get("partitions")
            .await
            .map_err(|e| ClusterError::jetstream("reading the partition count", e))?
        {
            let text = String::from_utf8_lossy(&value);
            break text.trim().parse::<u32>().map_err(|_| {
                ClusterError::Stream(format!(
                    "has a partition count that is not a number: {text:?}"
                ))
            })?;
        }
        if settings.role != Role::Ingest {
            // Nodes wait for the first ingest to fix it.
            tracing::info!("waiting for an ingest process to create the stream");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // The first ingest fixes it; a concurrent one reads the winner's.
        let _ = config
            .create("partitions", settings.partitions.to_string().into())
            .await;
    };
    if settings.role == Role::Ingest && partitions != settings.partitions {
        tracing::warn!(
            asked = settings.partitions,
            partitions,
            "the stream was created with another partition count; it is fixed, so it is kept"
        );
    }
    let retention = settings.retention.max(horizon);
    if settings.role == Role::Ingest {
        js.get_or_create_stream(jetstream::stream::Config {
            name: STREAM.to_string(),
            description: Some(format!("tickstream ticks, {partitions} partitions")),
            subjects: vec![format!("{}.>", partition::SUBJECT_PREFIX)],
            max_age: retention,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::jetstream("creating the stream", e))?;
    }
    Ok(partitions)
}

/// What the ingest role starts with.
pub struct IngestStart {
    /// The cluster's settings.
    pub cluster: ClusterSettings,
    /// How far back a partition's state reaches ([`horizon`]): the stream keeps at least that.
    pub horizon: Duration,
    /// The allowed lateness (ns), judged as one process would.
    pub lateness: i64,
    /// The sources' events.
    pub events: tokio::sync::mpsc::Receiver<crate::model::CoreEvent>,
    /// Feeds.
    pub feeds: std::sync::Arc<crate::health::FeedRegistry>,
    /// Metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The live feeds (their offsets move a quiet market's clock).
    pub live: Vec<crate::model::FeedId>,
    /// The configured windows and intervals, which the cluster's `stale` rules are read with.
    pub windows: std::sync::Arc<[crate::analytics::WindowSpec]>,
    /// See `windows`.
    pub intervals: std::sync::Arc<[crate::analytics::IntervalSpec]>,
}

impl IngestStart {
    /// Runs the ingest role until `cancel`: connects (retrying while the cluster is unreachable
    /// or electing its leaders), creates the stream if it is the first ingest, follows the
    /// cluster's `stale` rules, then publishes the sources' `events` until they end. Meanwhile
    /// the sources wait on the channel (backpressure).
    pub async fn run(self, cancel: tokio_util::sync::CancellationToken) {
        let cluster = &self.cluster;
        let setup = async {
            let client = match connect(cluster).await {
                Ok(client) => client,
                Err(error) => {
                    tracing::error!(%error, "cannot publish to the cluster");
                    return None;
                }
            };
            let replicas = replicas(&client, cluster).await;
            let js = context(client, publish::IN_FLIGHT);
            let mut pause = Duration::from_millis(500);
            let partitions = loop {
                match open_stream(&js, cluster, replicas, self.horizon).await {
                    Ok(partitions) => break partitions,
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?pause, "cannot open the stream yet");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            };
            tracing::info!(
                servers = %cluster.servers.join(","),
                partitions,
                replicas,
                "ingest: publishing the sources' trades to {STREAM}"
            );
            Some((js, partitions))
        };
        let (js, partitions) = tokio::select! {
            ready = setup => match ready {
                Some(ready) => ready,
                None => return,
            },
            () = cancel.cancelled() => return,
        };
        let stale = rules::follow_stale_rules(
            js.clone(),
            self.windows,
            self.intervals,
            cancel.child_token(),
        );
        publish::Publisher::new(
            js,
            partitions,
            self.events,
            self.feeds,
            self.metrics,
            self.lateness,
        )
        .with_live_clock(&self.live, self.lateness)
        .with_stale_rules(stale)
        .run(cancel)
        .await;
    }
}

/// How far back a partition's state reaches, from the state's own horizon (ns: the longest
/// window or candle history, plus the lateness): plus a minute for the machines' clocks.
pub fn horizon(state_horizon: i64) -> Duration {
    Duration::from_nanos(u64::try_from(state_horizon).unwrap_or(0)) + Duration::from_secs(60)
}

/// What an analytics node starts with.
pub struct NodeStart {
    /// The cluster's settings.
    pub cluster: ClusterSettings,
    /// How far back a partition's state reaches ([`horizon`]).
    pub horizon: Duration,
    /// Makes a partition's core.
    pub engine: node::EngineFactory,
    /// Where this node's HTTP API listens.
    pub http: String,
    /// The alert rules.
    pub rules: std::sync::Arc<crate::alerts::RuleBook>,
    /// Where snapshots go.
    pub snapshots: std::sync::Arc<crate::analytics::snapshot::SnapshotStore>,
    /// Feeds.
    pub feeds: std::sync::Arc<crate::health::FeedRegistry>,
    /// Metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// To the alert sink task.
    pub alerts: tokio::sync::mpsc::Sender<std::sync::Arc<crate::alerts::Alert>>,
    /// The recent alerts.
    pub alert_log: std::sync::Arc<crate::alerts::sink::AlertLog>,
    /// The live stream.
    pub stream: tokio::sync::broadcast::Sender<crate::fanout::StreamEvent>,
    /// Shared with `GET /v1/cluster`.
    pub leases: std::sync::Arc<lease::LeaseShared>,
    /// Encodes this node's snapshots for the other nodes' live streams.
    pub stats: live::StatsEncoder,
    /// The other nodes' latest statistics, for this node's stream clients.
    pub remote_stats: std::sync::Arc<crate::fanout::RemoteLatest>,
}

impl NodeStart {
    /// Takes the cluster's alert rules (storing this node's if it has none), retrying until
    /// they are read or `cancel`; false when cancelled.
    async fn join_rules(
        &self,
        js: &jetstream::Context,
        replicas: usize,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let mut pause = Duration::from_millis(250);
        loop {
            let joined = async {
                let store = open_bucket(
                    js,
                    CONFIG_BUCKET,
                    CONFIG_DESCRIPTION,
                    Duration::ZERO,
                    replicas,
                )
                .await
                .map_err(|e| rules::RulesError::Store("opened", e.to_string()))?;
                rules::SharedRules::join(
                    store,
                    std::sync::Arc::clone(&self.rules),
                    cancel.child_token(),
                )
                .await
            };
            match joined.await {
                Ok(shared) => {
                    let _ = self.leases.rules.set(shared);
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?pause, "cannot read the cluster's alert rules yet")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => pause = (pause * 2).min(Duration::from_secs(5)),
                () = cancel.cancelled() => return false,
            }
        }
    }

    /// Connects (retrying until the cluster and its stream are there), then runs the leases
    /// and the owned partitions until `cancel`.
    pub async fn run(self, cancel: tokio_util::sync::CancellationToken) {
        let joined = async {
            let client = match connect(&self.cluster).await {
                Ok(client) => client,
                Err(error) => {
                    tracing::error!(%error, "cannot join the cluster");
                    return None;
                }
            };
            // Every symbol's statistics on every node's live stream.
            tokio::spawn(live::receive(
                client.clone(),
                self.cluster.node.clone(),
                std::sync::Arc::clone(&self.remote_stats),
                self.stream.clone(),
                cancel.child_token(),
            ));
            tokio::spawn(live::publish(
                client.clone(),
                self.cluster.node.clone(),
                self.stream.subscribe(),
                std::sync::Arc::clone(&self.snapshots),
                std::sync::Arc::clone(&self.stats),
                cancel.child_token(),
            ));
            let replicas = replicas(&client, &self.cluster).await;
            let _ = self.leases.client.set(client.clone());
            let js = context(client, publish::IN_FLIGHT);
            // The cluster's alert rules: in force before any partition starts, and edited over
            // this node's API from now on.
            if !self.join_rules(&js, replicas, &cancel).await {
                return None;
            }
            let me = lease::NodeRecord {
                node: self.cluster.node.clone(),
                http: self.http.clone(),
                started_ms: crate::model::wall_clock_now() / 1_000_000,
            };
            // The cluster may be electing its leaders, or waiting for the first ingest: retried.
            let mut pause = Duration::from_millis(500);
            loop {
                let attempt = async {
                    let partitions =
                        open_stream(&js, &self.cluster, replicas, self.horizon).await?;
                    let leases = lease::Leases::open(
                        &js,
                        me.clone(),
                        partitions,
                        replicas,
                        std::sync::Arc::clone(&self.leases),
                    )
                    .await?;
                    let alert_stream =
                        alerts::open_stream(&js, replicas, self.cluster.retention).await?;
                    Ok::<_, ClusterError>((partitions, leases, alert_stream))
                };
                match attempt.await {
                    Ok((partitions, leases, alert_stream)) => {
                        // Every alert of the cluster is shown, those fired before this node came
                        // included.
                        tokio::spawn(alerts::receive(
                            alert_stream,
                            std::sync::Arc::clone(&self.alert_log),
                            self.stream.clone(),
                            cancel.child_token(),
                        ));
                        return Some((js, partitions, leases));
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?pause, "cannot join the cluster yet");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            }
        };
        let (js, partitions, leases) = tokio::select! {
            joined = joined => match joined {
                Some(joined) => joined,
                None => return,
            },
            () = cancel.cancelled() => return,
        };
        let horizon = self.horizon;
        self.leases
            .partitions
            .store(partitions, std::sync::atomic::Ordering::Release);
        tracing::info!(node = %self.cluster.node, partitions, "analytics node: joining the cluster");
        if let Some(client) = self.leases.client.get().cloned() {
            tokio::spawn(query::serve_node(
                client,
                self.cluster.node.clone(),
                std::sync::Arc::clone(&self.leases),
                cancel.child_token(),
            ));
        }
        // The partitions' alerts go through the relay: to this node's sinks, and to the others.
        let (fired_tx, fired_rx) =
            tokio::sync::mpsc::channel(crate::alerts::sink::ALERT_CHANNEL_CAPACITY);
        let mut relay = None;
        if let Some(client) = self.leases.client.get().cloned() {
            relay = Some(tokio::spawn(alerts::relay(
                client,
                self.cluster.node.clone(),
                self.alert_log.run(),
                fired_rx,
                self.alerts.clone(),
            )));
        }
        let context = std::sync::Arc::new(node::NodeContext::new(
            js,
            self.cluster.node.clone(),
            horizon,
            self.engine,
            self.rules,
            self.snapshots,
            self.feeds,
            self.metrics,
            fired_tx,
            self.alert_log,
            self.stream,
            self.leases,
        ));
        let (owned_tx, owned_rx) = tokio::sync::watch::channel(std::collections::BTreeMap::new());
        let lease_cancel = cancel.child_token();
        let lease_task = tokio::spawn(leases.run(owned_tx, lease_cancel.clone()));
        // The partitions stop when the leases say so, or when the node stops.
        node::run(context, owned_rx, cancel.clone()).await;
        lease_cancel.cancel();
        let _ = lease_task.await;
        // Every core has stopped: the relay hands the last alerts to the sinks and ends.
        if let Some(relay) = relay {
            let _ = relay.await;
        }
    }
}
