//! Configuration: the command line ([`cli`]) and the TOML file ([`mod@file`]) as written, validated
//! once into [`Settings`], one group per concern (HTTP, sources, recording, analytics,
//! indicators, alerts), each validated on its own.
//!
//! Every option can be given on the command line or in the file given by `--config`; the command
//! line wins. Unknown keys in the file are errors. With no replay source and no feed, the service
//! runs its demo: the bundled sample served by an in-process mock exchange in Binance's format,
//! looping at 10× with pauses capped at one second, read by the real Binance connector.
//!
//! A leaf of the wiring: only `startup` and the binary import it. The types it fills in and their
//! defaults belong to the stages they configure.

pub mod cli;
pub mod feeds;
pub mod file;
pub mod mock;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::alerts::RuleSpec;
use crate::alerts::sink::{SinkSettings, WebhookSettings};
use crate::analytics::{DEFAULT_CANDLE_HISTORY, IntervalSpec, WindowSpec};
use crate::feeds::connector::FeedSpec;
use crate::feeds::reconnect::ReconnectPolicy;
use crate::record::ticklog::FsyncPolicy;
use crate::replay::progress::ProgressOutput;
use crate::replay::{ReplayError, ReplaySource, Speed};
use crate::secret::Secret;

pub use crate::analytics::candles::MAX_CANDLE_HISTORY;
use crate::api::cors::CorsPolicy;
pub use crate::api::server::{DEFAULT_SERVER, ServerSettings};
pub use crate::api::{DEFAULT_HTTP_LIMITS, DEFAULT_STREAM_THROTTLE, HttpLimitSettings};
pub use crate::indicators::cache::{
    CacheSettings, DEFAULT_INDICATOR_CACHE_CAPACITY, DEFAULT_INDICATOR_CACHE_TTL,
};
pub use cli::{
    Cli, Command, ExportArgs, LogFormat, MockExchangeArgs, QueryArgs, QueryFormat, QueryKind,
    ServeArgs,
};
pub use feeds::parse_feed;
pub use mock::MockExchangeSettings;

use file::{FileConfig, NumberOrText};

pub use crate::alerts::sink::{DEFAULT_WEBHOOK_RETRIES, DEFAULT_WEBHOOK_TIMEOUT, WEBHOOK_BACKOFF};
pub use crate::analytics::{DEFAULT_INTERVALS, DEFAULT_LATENESS, DEFAULT_WINDOWS};
pub use crate::api::{API_TOKEN_ENV, DEFAULT_LISTEN};
pub use crate::sources::demo::{EMBEDDED_MAX_PAUSE, EMBEDDED_SPEED};

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file is not valid (bad TOML, unknown key, wrong type).
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An option's value is invalid.
    #[error("invalid {option}: {message}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A duration or label is invalid.
    #[error(transparent)]
    Unit(#[from] crate::units::UnitError),
    /// A replay source is unusable.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// The validated configuration the service runs with, one group per concern.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The HTTP API.
    pub http: HttpSettings,
    /// Where trades come from.
    pub sources: SourceConfig,
    /// Recording, recovery, and where rule edits are kept.
    pub recording: RecordingSettings,
    /// Windows, candles, lateness, duplicates.
    pub analytics: AnalyticsSettings,
    /// Indicator cache bounds.
    pub indicators: CacheSettings,
    /// Alert rules and where alerts go.
    pub alerts: AlertSettings,
    /// Scale-out on NATS JetStream (`--nats`); `None`: a single process, the default.
    pub cluster: Option<crate::cluster::ClusterSettings>,
}

/// The HTTP API's settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// The bearer token rule edits require, if one is configured.
    pub api_token: Option<Secret>,
    /// Bounds on the API's work.
    pub limits: HttpLimitSettings,
    /// Least time between two `stats` events of one symbol on the live stream.
    pub stream_throttle: Duration,
    /// Which origins browsers may call the API from (none by default).
    pub cors: CorsPolicy,
    /// Connection bound and timeouts.
    pub server: ServerSettings,
}

/// Where trades come from, and how sources run.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Files to replay.
    pub replays: Vec<ReplaySource>,
    /// Live feeds.
    pub feeds: Vec<FeedSpec>,
    /// Nothing configured: run the built-in demo (the bundled sample served by an in-process
    /// mock exchange, read by a real connector).
    pub demo: bool,
    /// Replay speed.
    pub speed: Speed,
    /// Longest wall-clock pause during a paced replay.
    pub max_pause: Option<Duration>,
    /// Live feeds: how connectors retry.
    pub reconnect: ReconnectPolicy,
    /// Live feeds: the stale limit, when not the venue's own.
    pub stale_after: Option<Duration>,
    /// How replays show their progress (bars on a terminal, log lines otherwise): the binary
    /// decides from where its logs go.
    pub progress: ProgressOutput,
}

/// Recording and recovery.
#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// Where to record live feeds' frames and the trade log.
    pub record: Option<PathBuf>,
    /// Where to recover recorded trades from at start.
    pub recover: Option<PathBuf>,
    /// When the trade log (and the alerts file) is made durable.
    pub fsync: FsyncPolicy,
    /// Where the API's rule edits are kept.
    pub rules_file: Option<PathBuf>,
    /// The directories history queries read (none: no history API).
    pub history: Vec<PathBuf>,
}

/// The analytics core's settings.
#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    /// Trailing windows, in configured order.
    pub windows: Arc<[WindowSpec]>,
    /// Allowed lateness, nanoseconds.
    pub allowed_lateness: i64,
    /// Candle intervals, in configured order.
    pub intervals: Arc<[IntervalSpec]>,
    /// Closed candles kept per symbol and interval.
    pub candle_history: usize,
    /// Trade ids remembered per feed and symbol for duplicate detection.
    pub dedup_ids: usize,
}

/// Alert rules and sinks.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Alert rules to start with (validated; ids may still be missing).
    pub rules: Vec<RuleSpec>,
    /// Where alerts go.
    pub sinks: SinkSettings,
}

/// Takes an option from the command line, or else from the file.
fn pick<T>(arg: &mut Option<T>, file: &mut Option<T>) -> Option<T> {
    arg.take().or_else(|| file.take())
}

impl Settings {
    /// Settings from the command line, reading the config file it names.
    pub fn load(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => file::read_file(path)?,
            None => FileConfig::default(),
        };
        Self::from_parts(args, file)
    }

    /// Settings from a TOML text alone (for tests and tools).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let file = file::parse_file(text, Path::new("<inline>"))?;
        Self::from_parts(ServeArgs::default(), file)
    }

    fn from_parts(mut args: ServeArgs, mut file: FileConfig) -> Result<Self, ConfigError> {
        let http = HttpSettings::validate(&mut args, &mut file)?;
        let mut sources = SourceConfig::validate(&mut args, &mut file)?;
        let cluster = cluster_settings(&mut args, &mut file, &mut sources, http.listen)?;
        let recording = RecordingSettings::validate(&mut args, &mut file)?;
        let analytics = AnalyticsSettings::validate(&mut args, &mut file)?;
        let indicators = indicator_cache(&mut args, &mut file)?;
        let alerts = AlertSettings::validate(
            &mut args,
            &mut file,
            sources.demo,
            &analytics,
            recording.fsync,
        )?;
        Ok(Settings {
            http,
            sources,
            recording,
            analytics,
            indicators,
            alerts,
            cluster,
        })
    }

    /// What the sources need of the settings.
    pub fn source_settings(&self) -> crate::sources::SourceSettings {
        crate::sources::SourceSettings {
            speed: self.sources.speed,
            max_pause: self.sources.max_pause,
            progress: self.sources.progress,
            reconnect: self.sources.reconnect.clone(),
            stale_after: self.sources.stale_after,
            recover: self
                .recording
                .recover
                .clone()
                .map(|directory| (directory, self.recovery_horizon())),
        }
    }

    /// How far back `--recover` replays: the longest window or the longest interval's candle
    /// history, whichever is longer, plus the allowed lateness.
    pub fn recovery_horizon(&self) -> i64 {
        let analytics = &self.analytics;
        let window = analytics
            .windows
            .iter()
            .map(|w| w.length)
            .max()
            .unwrap_or(0);
        let history = i64::try_from(analytics.candle_history).unwrap_or(i64::MAX);
        let candles = analytics
            .intervals
            .iter()
            .map(|interval| interval.length.saturating_mul(history))
            .max()
            .unwrap_or(0);
        window
            .max(candles)
            .saturating_add(analytics.allowed_lateness)
    }
}

impl HttpSettings {
    fn validate(args: &mut ServeArgs, file: &mut FileConfig) -> Result<Self, ConfigError> {
        let listen_text =
            pick(&mut args.listen, &mut file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = parse_listen(&listen_text)?;
        let stream_throttle = match pick(&mut args.stream_throttle, &mut file.stream_throttle) {
            Some(text) => parse_duration("stream_throttle", &text)?,
            None => DEFAULT_STREAM_THROTTLE,
        };
        let max_in_flight = pick(
            &mut args.max_requests_in_flight,
            &mut file.max_requests_in_flight,
        )
        .unwrap_or(DEFAULT_HTTP_LIMITS.max_in_flight);
        if max_in_flight == 0 {
            return Err(invalid("max_requests_in_flight", "must be at least 1"));
        }
        let timeout = match pick(&mut args.request_timeout, &mut file.request_timeout) {
            Some(text) => parse_duration("request_timeout", &text)?,
            None => DEFAULT_HTTP_LIMITS.timeout,
        };
        if timeout.is_zero() {
            return Err(invalid("request_timeout", "must be positive"));
        }
        let origins = if args.cors_origin.is_empty() {
            file.cors_origins.take().unwrap_or_default()
        } else {
            std::mem::take(&mut args.cors_origin)
        };
        let cors =
            CorsPolicy::new(&origins).map_err(|error| invalid("cors_origin", error.to_string()))?;
        let max_connections = pick(&mut args.max_connections, &mut file.max_connections)
            .unwrap_or(DEFAULT_SERVER.max_connections);
        if max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        let positive = |name: &'static str,
                        arg: &mut Option<String>,
                        entry: &mut Option<String>,
                        default: Duration| {
            let value = match pick(arg, entry) {
                Some(text) => parse_duration(name, &text)?,
                None => default,
            };
            if value.is_zero() {
                return Err(invalid(name, "must be positive"));
            }
            Ok(value)
        };
        let server = ServerSettings {
            max_connections,
            header_timeout: positive(
                "header_timeout",
                &mut args.header_timeout,
                &mut file.header_timeout,
                DEFAULT_SERVER.header_timeout,
            )?,
            keep_alive: positive(
                "keep_alive_timeout",
                &mut args.keep_alive_timeout,
                &mut file.keep_alive_timeout,
                DEFAULT_SERVER.keep_alive,
            )?,
            stall: positive(
                "stall_timeout",
                &mut args.stall_timeout,
                &mut file.stall_timeout,
                DEFAULT_SERVER.stall,
            )?,
        };
        Ok(HttpSettings {
            listen,
            api_token: args
                .api_token
                .take()
                .filter(|token| !token.is_empty())
                .map(Secret::new),
            limits: HttpLimitSettings {
                max_in_flight,
                timeout,
            },
            stream_throttle,
            cors,
            server,
        })
    }
}

impl SourceConfig {
    fn validate(args: &mut ServeArgs, file: &mut FileConfig) -> Result<Self, ConfigError> {
        let paths = if args.replay.is_empty() {
            file.replay.take().unwrap_or_default()
        } else {
            std::mem::take(&mut args.replay)
        };
        let replay_loop = args.replay_loop || file.replay_loop.unwrap_or(false);
        let ts_unit = pick(&mut args.ts_unit, &mut file.ts_unit);
        let feeds = if args.feed.is_empty() {
            file.feeds
                .take()
                .unwrap_or_default()
                .into_iter()
                .map(feeds::feed_from_file)
                .collect::<Result<Vec<_>, _>>()?
        } else {
            args.feed
                .iter()
                .map(|text| parse_feed(text))
                .collect::<Result<Vec<_>, _>>()?
        };
        let demo = paths.is_empty() && feeds.is_empty();
        let from_stdin = paths.iter().filter(|path| path.as_os_str() == "-").count();
        if from_stdin > 1 {
            return Err(invalid(
                "replay",
                "standard input (`-`) can be read once only",
            ));
        }
        if from_stdin == 1 && replay_loop {
            return Err(invalid(
                "replay_loop",
                "standard input (`-`) cannot be replayed in a loop",
            ));
        }
        let replays = paths
            .into_iter()
            .map(|path| {
                ReplaySource::from_path(path).map(|source| ReplaySource {
                    repeat: replay_loop,
                    ts_unit,
                    ..source
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let speed_text = match args.speed.take() {
            Some(text) => Some(text),
            None => file.speed.take().map(|speed| match speed {
                NumberOrText::Number(n) => n.to_string(),
                NumberOrText::Text(text) => text,
            }),
        };
        let speed = match speed_text {
            Some(text) => text
                .parse::<Speed>()
                .map_err(|error| invalid("speed", error.to_string()))?,
            None if demo => Speed::Factor(EMBEDDED_SPEED),
            None => Speed::Max,
        };
        let max_pause = match pick(&mut args.max_pause, &mut file.max_pause) {
            Some(text) => Some(parse_duration("max_pause", &text)?),
            None if demo => Some(EMBEDDED_MAX_PAUSE),
            None => None,
        };
        let stale_after = pick(&mut args.stale_after, &mut file.stale_after)
            .map(|text| parse_duration("stale_after", &text))
            .transpose()?;
        if stale_after.is_some_and(|limit| limit.is_zero()) {
            return Err(invalid("stale_after", "must be positive"));
        }
        let mut reconnect = ReconnectPolicy::default();
        if let Some(text) = pick(&mut args.backoff_max, &mut file.backoff_max) {
            reconnect.backoff_max = parse_duration("backoff_max", &text)?;
            reconnect.backoff_initial = reconnect.backoff_initial.min(reconnect.backoff_max);
        }
        if let Some(failures) = pick(&mut args.circuit_failures, &mut file.circuit_failures) {
            reconnect.circuit_failures = failures;
        }
        if let Some(text) = pick(&mut args.circuit_open_for, &mut file.circuit_open_for) {
            reconnect.circuit_open_for = parse_duration("circuit_open_for", &text)?;
        }
        Ok(SourceConfig {
            replays,
            feeds,
            demo,
            speed,
            max_pause,
            reconnect,
            stale_after,
            progress: ProgressOutput::Log,
        })
    }
}

impl RecordingSettings {
    fn validate(args: &mut ServeArgs, file: &mut FileConfig) -> Result<Self, ConfigError> {
        let record = pick(&mut args.record, &mut file.record);
        let fsync = match pick(&mut args.fsync, &mut file.fsync) {
            Some(text) => text
                .parse()
                .map_err(|message: String| invalid("fsync", message))?,
            None => FsyncPolicy::Interval(crate::record::ticklog::DEFAULT_FSYNC_INTERVAL),
        };
        let mut history = std::mem::take(&mut args.history);
        if history.is_empty() {
            history = file.history.take().unwrap_or_default();
        }
        if history.is_empty()
            && let Some(directory) = &record
        {
            history.push(directory.clone());
        }
        for directory in &history {
            if directory.exists() && !directory.is_dir() {
                return Err(invalid(
                    "history",
                    format!("{} is not a directory", directory.display()),
                ));
            }
        }
        Ok(RecordingSettings {
            history,
            rules_file: pick(&mut args.rules_file, &mut file.rules_file)
                .or_else(|| record.as_ref().map(|dir| dir.join("rules.json"))),
            record,
            recover: pick(&mut args.recover, &mut file.recover),
            fsync,
        })
    }
}

impl AnalyticsSettings {
    fn validate(args: &mut ServeArgs, file: &mut FileConfig) -> Result<Self, ConfigError> {
        let window_labels = pick(&mut args.windows, &mut file.windows)
            .unwrap_or_else(|| DEFAULT_WINDOWS.iter().map(|w| w.to_string()).collect());
        let windows = parse_windows(&window_labels)?;
        let lateness_text = pick(&mut args.lateness, &mut file.lateness)
            .unwrap_or_else(|| DEFAULT_LATENESS.to_string());
        let allowed_lateness = duration_nanos("lateness", parse_lateness(&lateness_text)?)?;
        let interval_labels = pick(&mut args.intervals, &mut file.intervals)
            .unwrap_or_else(|| DEFAULT_INTERVALS.iter().map(|i| i.to_string()).collect());
        let intervals = parse_intervals(&interval_labels)?;
        let candle_history = pick(&mut args.candle_history, &mut file.candle_history)
            .unwrap_or(DEFAULT_CANDLE_HISTORY);
        if !(1..=MAX_CANDLE_HISTORY).contains(&candle_history) {
            return Err(invalid(
                "candle_history",
                format!("{candle_history} is not between 1 and {MAX_CANDLE_HISTORY}"),
            ));
        }
        let dedup_ids = pick(&mut args.dedup_ids, &mut file.dedup_ids)
            .unwrap_or(crate::analytics::engine::DEFAULT_DEDUP_CAPACITY);
        if dedup_ids == 0 {
            return Err(invalid("dedup_ids", "must be at least 1"));
        }
        Ok(AnalyticsSettings {
            windows: windows.into(),
            allowed_lateness,
            intervals: intervals.into(),
            candle_history,
            dedup_ids,
        })
    }
}

fn indicator_cache(
    args: &mut ServeArgs,
    file: &mut FileConfig,
) -> Result<CacheSettings, ConfigError> {
    let capacity = pick(
        &mut args.indicator_cache_capacity,
        &mut file.indicator_cache_capacity,
    )
    .unwrap_or(DEFAULT_INDICATOR_CACHE_CAPACITY);
    let time_to_live = match pick(&mut args.indicator_cache_ttl, &mut file.indicator_cache_ttl) {
        Some(text) => parse_duration("indicator_cache_ttl", &text)?,
        None => DEFAULT_INDICATOR_CACHE_TTL,
    };
    if time_to_live.is_zero() {
        return Err(invalid("indicator_cache_ttl", "must be positive"));
    }
    Ok(CacheSettings {
        capacity,
        time_to_live,
    })
}

impl AlertSettings {
    fn validate(
        args: &mut ServeArgs,
        file: &mut FileConfig,
        demo: bool,
        analytics: &AnalyticsSettings,
        fsync: FsyncPolicy,
    ) -> Result<Self, ConfigError> {
        let rules = if args.alert.is_empty() {
            file.alerts.take().unwrap_or_default()
        } else {
            args.alert
                .iter()
                .map(|text| {
                    serde_json::from_str::<RuleSpec>(text)
                        .map_err(|error| invalid("alert", format!("{text}: {error}")))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let rules = if demo && rules.is_empty() {
            demo_rules()
        } else {
            rules
        };
        crate::alerts::RuleBook::new(
            &rules,
            Arc::clone(&analytics.windows),
            Arc::clone(&analytics.intervals),
        )
        .map_err(|error| invalid("alerts", error.to_string()))?;
        let webhook = match pick(&mut args.webhook, &mut file.webhook_url) {
            None => None,
            Some(url) => {
                let parsed = reqwest::Url::parse(&url)
                    .map_err(|error| invalid("webhook", format!("{url:?}: {error}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(invalid("webhook", format!("{url:?}: not http(s)")));
                }
                let timeout = match pick(&mut args.webhook_timeout, &mut file.webhook_timeout) {
                    Some(text) => parse_duration("webhook_timeout", &text)?,
                    None => DEFAULT_WEBHOOK_TIMEOUT,
                };
                if timeout.is_zero() {
                    return Err(invalid("webhook_timeout", "must be positive"));
                }
                Some(WebhookSettings {
                    url,
                    timeout,
                    retries: pick(&mut args.webhook_retries, &mut file.webhook_retries)
                        .unwrap_or(DEFAULT_WEBHOOK_RETRIES),
                    backoff: WEBHOOK_BACKOFF,
                })
            }
        };
        let sinks = SinkSettings {
            log: !args.no_alert_log && file.alert_log.unwrap_or(true),
            file: pick(&mut args.alerts_file, &mut file.alerts_file),
            webhook,
            fsync,
        };
        Ok(AlertSettings { rules, sinks })
    }
}

/// Parses a listen address: `HOST:PORT` (a host name is resolved, IPv4 first), or a port alone
/// (`8080`, `:8080`), which listens on loopback like the default.
pub fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    let text = text.trim();
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    let port_only = text.strip_prefix(':').unwrap_or(text);
    if !port_only.is_empty() && port_only.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = port_only.parse().map_err(|_| {
            invalid(
                "listen",
                format!("{text:?}: port {port_only} is out of range (0 to 65535)"),
            )
        })?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(invalid(
            "listen",
            format!("{text:?}: expected HOST:PORT (e.g. 127.0.0.1:8080) or a port"),
        ));
    };
    let port: u16 = port.parse().map_err(|_| {
        invalid(
            "listen",
            format!("{text:?}: {port:?} is not a port (0 to 65535)"),
        )
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|error| {
            invalid(
                "listen",
                format!("{text:?}: cannot resolve {host:?}: {error}"),
            )
        })?
        .collect();
    addresses
        .iter()
        .find(|address| address.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| invalid("listen", format!("{text:?}: {host:?} has no address")))
}

/// The cluster's settings, when `--nats` (or `nats` in the file) names servers. An analytics
/// node has no sources of its own: `--feed` and `--replay` belong to `tickstream ingest`, and the
/// demo does not run.
fn cluster_settings(
    args: &mut ServeArgs,
    file: &mut FileConfig,
    sources: &mut SourceConfig,
    listen: std::net::SocketAddr,
) -> Result<Option<crate::cluster::ClusterSettings>, ConfigError> {
    use crate::cluster::{
        ClusterSettings, DEFAULT_PARTITIONS, DEFAULT_RETENTION, MAX_PARTITIONS, Role,
    };
    let servers = if args.nats.is_empty() {
        file.nats.take().unwrap_or_default()
    } else {
        std::mem::take(&mut args.nats)
    };
    let servers: Vec<String> = servers
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let node = pick(&mut args.node, &mut file.node);
    let partitions = pick(&mut args.partitions, &mut file.partitions);
    let replicas = pick(&mut args.replicas, &mut file.replicas);
    let retention = pick(&mut args.retention, &mut file.retention);
    if servers.is_empty() {
        if args.ingest {
            return Err(invalid(
                "nats",
                "`tickstream ingest` publishes to NATS: give the servers with --nats nats://host:4222",
            ));
        }
        for (option, given) in [
            ("node", node.is_some()),
            ("partitions", partitions.is_some()),
            ("replicas", replicas.is_some()),
            ("retention", retention.is_some()),
        ] {
            if given {
                return Err(invalid(option, "is a cluster option: it needs --nats"));
            }
        }
        return Ok(None);
    }
    for server in &servers {
        server.parse::<async_nats::ServerAddr>().map_err(|error| {
            invalid(
                "nats",
                format!("{server:?} is not a NATS server address: {error}"),
            )
        })?;
    }
    let role = if args.ingest {
        Role::Ingest
    } else {
        Role::Node
    };
    if role == Role::Node {
        if !sources.demo {
            return Err(invalid(
                "nats",
                "an analytics node takes its trades from the cluster's stream; run --feed and --replay with `tickstream ingest`",
            ));
        }
        sources.demo = false;
    } else if sources.demo {
        return Err(invalid(
            "nats",
            "`tickstream ingest` needs sources: give --feed or --replay",
        ));
    }
    let node = match node {
        Some(node) => node,
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "node".to_string());
            let host: String = host
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("{host}-{}", listen.port())
        }
    };
    if node.is_empty()
        || node.len() > 64
        || !node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(
            "node",
            format!("{node:?}: a node's name is 1 to 64 letters, digits, `-` or `_`"),
        ));
    }
    let partitions = partitions.unwrap_or(DEFAULT_PARTITIONS);
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err(invalid(
            "partitions",
            format!("{partitions}: between 1 and {MAX_PARTITIONS}"),
        ));
    }
    if replicas.is_some_and(|r| !(1..=5).contains(&r)) {
        return Err(invalid("replicas", "between 1 and 5"));
    }
    let retention = match retention {
        Some(text) => parse_duration("retention", &text)?,
        None => DEFAULT_RETENTION,
    };
    Ok(Some(ClusterSettings {
        servers,
        role,
        node,
        partitions,
        replicas,
        retention,
    }))
}

fn invalid(option: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        message: message.into(),
    }
}

/// Parses a human duration for `option` (see [`crate::units::parse_duration`]).
pub fn parse_duration(option: &'static str, text: &str) -> Result<Duration, ConfigError> {
    Ok(crate::units::parse_duration(option, text)?)
}

fn parse_lateness(text: &str) -> Result<Duration, ConfigError> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration("lateness", text)
}

fn duration_nanos(option: &'static str, duration: Duration) -> Result<i64, ConfigError> {
    Ok(crate::units::duration_nanos(option, duration)?)
}

/// Parses window labels into specs (see [`WindowSpec::parse_list`]).
pub fn parse_windows(labels: &[String]) -> Result<Vec<WindowSpec>, ConfigError> {
    Ok(WindowSpec::parse_list(labels)?)
}

/// Parses candle intervals (see [`IntervalSpec::parse_list`]).
pub fn parse_intervals(labels: &[String]) -> Result<Vec<IntervalSpec>, ConfigError> {
    Ok(IntervalSpec::parse_list(labels)?)
}

/// The demo's alert rules (with nothing configured), so that alerts show at once: any symbol
/// moving more than 0.15 % within a minute, or trading more than 0.12 % away from its 5-minute
/// VWAP.
fn demo_rules() -> Vec<RuleSpec> {
    [
        r#"{"id":"demo-move-1m","kind":"change_pct","symbol":"*","window":"1m","threshold":0.15}"#,
        r#"{"id":"demo-vwap-5m","kind":"vwap_deviation","symbol":"*","window":"5m","threshold":0.12}"#,
    ]
    .iter()
    .filter_map(|rule| serde_json::from_str(rule).ok())
    .collect()
}

impl QueryArgs {
    /// The history query these options ask, checked for the options each question needs.
    pub fn request(self) -> Result<crate::history::command::QueryRequest, ConfigError> {
        use crate::history::command::{Format, QueryRequest, Question};
        let needed = |option: &'static str, value: Option<String>, what: &str| {
            value.ok_or_else(|| invalid(option, format!("`query {what}` needs --{option}")))
        };
        let question = match self.what {
            QueryKind::Candles => Question::Candles {
                from: needed("from", self.from, "candles")?,
                to: needed("to", self.to, "candles")?,
                interval: self.interval,
            },
            QueryKind::Stats => Question::Stats {
                at: needed("at", self.at, "stats")?,
                window: self.window,
            },
            QueryKind::Indicators => Question::Indicator {
                from: needed("from", self.from, "indicators")?,
                to: needed("to", self.to, "indicators")?,
                interval: self.interval,
                name: needed("indicator", self.indicator, "indicators")?,
                params: [self.period, self.fast, self.slow, self.signal, self.k],
            },
        };
        let format = match self.format {
            QueryFormat::Table => Format::Table,
            QueryFormat::Csv => Format::Csv,
            QueryFormat::Json => Format::Json,
            QueryFormat::Parquet => Format::Parquet,
        };
        if format == Format::Parquet && self.output.is_none() {
            return Err(invalid("output", "--format parquet needs --output FILE"));
        }
        Ok(QueryRequest {
            history: self.history,
            symbol: self.symbol,
            question,
            format,
            output: self.output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_the_embedded_sample() {
        let settings = Settings::from_toml("").expect("valid");
        assert_eq!(settings.http.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(settings.alerts.rules.len(), 2, "the demo has alert rules");
        assert!(
            settings.sources.demo
                && settings.sources.replays.is_empty()
                && settings.sources.feeds.is_empty()
        );
        assert_eq!(settings.sources.speed, Speed::Factor(EMBEDDED_SPEED));
        let labels: Vec<_> = settings
            .analytics
            .windows
            .iter()
            .map(|w| w.label.as_str())
            .collect();
        assert_eq!(labels, DEFAULT_WINDOWS);
        assert_eq!(settings.analytics.allowed_lateness, 1_000_000_000);
    }

    #[test]
    fn file_values_and_command_line_overrides() {
        let file = file::parse_file(
            "listen = \"127.0.0.1:0\"\nreplay = [\"a.csv\"]\nspeed = 60\nwindows = [\"1m\", \"250ms\"]\nlateness = \"0\"",
            Path::new("t"),
        )
        .expect("valid");
        let args = ServeArgs {
            speed: Some("max".into()),
            ..ServeArgs::default()
        };
        let settings = Settings::from_parts(args, file).expect("valid");
        assert_eq!(settings.sources.speed, Speed::Max);
        assert_eq!(settings.analytics.windows[1].length, 250_000_000);
        assert_eq!(settings.analytics.allowed_lateness, 0);
        assert_eq!(settings.sources.max_pause, None);
    }

    #[test]
    fn feeds_from_the_command_line_and_the_file() {
        let spec = parse_feed("binance:BTCUSDT,ETHUSDT@ws://127.0.0.1:9000").expect("valid");
        assert_eq!(spec.provider, crate::feeds::binance::PROVIDER);
        assert_eq!(spec.symbols, ["BTCUSDT", "ETHUSDT"]);
        assert_eq!(spec.url, "ws://127.0.0.1:9000");
        assert_eq!(
            parse_feed("binance:BTCUSDT").expect("valid").url,
            crate::feeds::binance::PROVIDER.default_url()
        );
        assert!(parse_feed("nasdaq:AAPL").is_err());
        assert!(parse_feed("binance:").is_err());
        assert!(parse_feed("binance:X@http://x").is_err());
        let settings = Settings::from_toml(
            "[[feeds]]\nprovider = \"binance\"\nsymbols = [\"BTCUSDT\"]\nchannels = [\"aggTrade\"]",
        )
        .expect("valid");
        assert_eq!(settings.sources.feeds[0].channels, ["aggTrade"]);
        assert!(
            settings.sources.replays.is_empty(),
            "a configured feed replaces the embedded sample"
        );
        assert!(
            Settings::from_toml(
                "[[feeds]]\nprovider = \"binance\"\nsymbols = [\"X\"]\nkey = \"secret\""
            )
            .is_err()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let error = Settings::from_toml("listne = \"x\"").expect_err("typo");
        assert!(
            error.to_string().contains("unknown field `listne`"),
            "{error}"
        );
        assert!(Settings::from_toml("windows = [\"1m\", \"60s\"]").is_err());
        assert!(Settings::from_toml("intervals = [\"1m\", \"60s\"]").is_err());
        assert!(Settings::from_toml("intervals = [\"1500us\"]").is_err());
        assert!(Settings::from_toml("intervals = []").is_err());
        assert!(Settings::from_toml("candle_history = 0").is_err());
        assert!(Settings::from_toml("webhook_url = \"ftp://x\"").is_err());
        let error = Settings::from_toml("[[alerts]]\nkind = \"price_above\"\nsymbol = \"A\"")
            .expect_err("no threshold");
        assert!(error.to_string().contains("threshold"), "{error}");
        let settings = Settings::from_toml(
            "alerts_file = \"a.jsonl\"\nwebhook_url = \"http://127.0.0.1:9/hook\"\n\n[[alerts]]\nkind = \"stale\"\nsymbol = \"*\"\nafter = \"30s\"",
        )
        .expect("valid");
        assert_eq!(settings.alerts.rules.len(), 1);
        assert_eq!(
            settings.alerts.sinks.webhook.map(|w| w.retries),
            Some(DEFAULT_WEBHOOK_RETRIES)
        );
        assert!(Settings::from_toml("indicator_cache_ttl = \"0s\"").is_err());
        let settings = Settings::from_toml("intervals = [\"250ms\", \"1h\"]\ncandle_history = 5")
            .expect("valid");
        assert_eq!(settings.analytics.intervals[0].length, 250_000_000);
        assert_eq!(settings.analytics.candle_history, 5);
        assert!(Settings::from_toml("windows = []").is_err());
        assert!(Settings::from_toml("windows = [\"soon\"]").is_err());
        assert!(Settings::from_toml("speed = 0").is_err());
        assert!(Settings::from_toml("replay = [\"trades.txt\"]").is_err());
    }
}
