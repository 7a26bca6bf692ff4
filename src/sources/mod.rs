//! Sources: everything that produces trades for the analytics core, each sending the same
//! [`CoreEvent`] batches into one bounded channel (backpressure: when the core falls behind,
//! sources wait; market data is never dropped on the way in).
//!
//! - [`recovery`]: the recorded state read back at start (`--recover`), sent before anything else;
//! - [`live`]: a live feed's connector ([`crate::feeds`]), its arrived frames sent together;
//! - [`replay`]: files read, merged in event time and paced ([`crate::replay`]);
//! - [`demo`]: the bundled sample through an in-process mock exchange;
//!
//! Each reports its state and counters to its [`FeedStatus`] in [`crate::health`].
//!
//! [`Sources`] registers them and starts them in that order. Raw frames are recorded where they
//! are read (the connector); the trade log records what the core applied (see
//! [`crate::ingest`]). This module knows neither HTTP nor the configuration.

pub mod demo;
pub mod live;
pub mod recovery;
pub mod replay;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::feeds::connector::{ConnectorSettings, FeedSpec};
use crate::feeds::reconnect::ReconnectPolicy;
use crate::health::{FeedDescription, FeedRegistry, FeedStatus};
use crate::metrics::Metrics;
use crate::mock_exchange::MockExchange;
use crate::model::{CoreEvent, FeedId, Timestamp};
use crate::record::RecordSender;
use crate::replay::progress::ProgressOutput;
use crate::replay::{ReplayError, ReplaySource, Speed};
use crate::shutdown::spawn_reported;

/// Events (each a batch of up to [`crate::replay::BATCH_SIZE`] trades) queued for the analytics
/// task. When full, the sources wait.
pub const CORE_CHANNEL_CAPACITY: usize = 64;

/// Why the sources could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The recorded state cannot be read back.
    #[error("cannot recover the recorded state: {0}")]
    Recover(#[from] recovery::RecoverError),
    /// The demo's sample cannot be read.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The demo's mock exchange cannot listen.
    #[error("cannot start the demo's mock exchange: {0}")]
    Demo(std::io::Error),
    /// The analytics task stopped while the sources were starting.
    #[error("the analytics task stopped during recovery")]
    CoreStopped,
}

/// How the sources run.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Replay pace.
    pub speed: Speed,
    /// Longest wall-clock pause of a paced replay.
    pub max_pause: Option<Duration>,
    /// How replay progress is shown.
    pub progress: ProgressOutput,
    /// Live feeds' reconnect policy.
    pub reconnect: ReconnectPolicy,
    /// Override of the venues' stale-feed limits.
    pub stale_after: Option<Duration>,
    /// `--recover`: the recording directory and how far back the state reaches (ns).
    pub recover: Option<(PathBuf, Timestamp)>,
}

/// Every source of one run, registered in the feed registry, not yet started.
pub struct Sources {
    replays: Vec<(ReplaySource, Arc<FeedStatus>)>,
    live: Vec<(FeedSpec, Arc<FeedStatus>)>,
    demo: Option<MockExchange>,
    settings: SourceSettings,
}

impl Sources {
    /// Registers `replays` and the live `feeds` (and, with `demo`, the demo's exchange and feed).
    pub async fn register(
        replays: &[ReplaySource],
        mut feeds: Vec<FeedSpec>,
        demo: bool,
        settings: SourceSettings,
        registry: &FeedRegistry,
        metrics: &Metrics,
    ) -> Result<Sources, SourceError> {
        let demo = if demo {
            let (exchange, spec) = demo::exchange(settings.speed, settings.max_pause).await?;
            tracing::info!(url = %spec.url, "demo: the bundled sample is served by an in-process mock exchange");
            feeds.push(spec);
            Some(exchange)
        } else {
            None
        };
        let replays = replays
            .iter()
            .map(|source| {
                let name = format!("replay:{}", source.display_name());
                let status = registry.register(name, source.description(), metrics);
                (source.clone(), status)
            })
            .collect();
        let live = feeds
            .into_iter()
            .map(|spec| {
                let description = FeedDescription {
                    kind: spec.provider.name().to_string(),
                    source: spec.url.clone(),
                    format: "websocket".to_string(),
                };
                let name = format!("{}:{}", spec.provider.name(), spec.symbols.join(","));
                let status = registry.register(name, description, metrics);
                (spec, status)
            })
            .collect();
        Ok(Sources {
            replays,
            live,
            demo,
            settings,
        })
    }

    /// The live feeds' states, in registration order.
    pub fn live(&self) -> Vec<Arc<FeedStatus>> {
        self.live
            .iter()
            .map(|(_, status)| Arc::clone(status))
            .collect()
    }

    /// The live feeds' ids.
    pub fn live_ids(&self) -> Vec<FeedId> {
        self.live.iter().map(|(_, status)| status.id()).collect()
    }

    /// Starts every source on `tasks`: the recovery first (awaited), then the demo's exchange,
    /// the live feeds (recording their frames to `recorder`) and the replays. Each holds a clone
    /// of `events`; when the last one stops, the core sees the channel close.
    pub async fn start(
        self,
        events: mpsc::Sender<CoreEvent>,
        recorder: Option<RecordSender>,
        registry: &FeedRegistry,
        metrics: &Metrics,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> Result<(), SourceError> {
        let Sources {
            replays,
            live,
            demo,
            settings,
        } = self;
        if let Some((directory, horizon)) = &settings.recover {
            let statuses: Vec<_> = live.iter().map(|(_, status)| Arc::clone(status)).collect();
            recovery::send(directory, *horizon, &statuses, registry, metrics, &events).await?;
        }
        if let Some(exchange) = demo {
            spawn_reported(tasks, "mock-exchange", exchange.run(cancel.child_token()));
        }
        for (spec, status) in live {
            let connector = ConnectorSettings {
                recorder: recorder.clone(),
                reconnect: settings.reconnect.clone(),
                stale_after: settings.stale_after,
                cancel: cancel.child_token(),
                ..ConnectorSettings::default()
            };
            let feed = live::run(spec, connector, status, events.clone());
            spawn_reported(tasks, "feed", feed);
        }
        if replays.is_empty() {
            return Ok(());
        }
        let statuses = replays.iter().map(|(_, s)| Arc::clone(s)).collect();
        let progress =
            crate::replay::progress::report(statuses, settings.progress, cancel.child_token());
        spawn_reported(tasks, "progress", progress);
        let replay = replay::run(
            replays,
            settings.speed,
            settings.max_pause,
            events,
            cancel.child_token(),
        );
        spawn_reported(tasks, "replay", replay);
        Ok(())
    }
}
