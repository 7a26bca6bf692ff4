//! Configuration: the command line and the TOML file (raw), validated once into [`Settings`].
//!
//! Every option can be given on the command line or in the file given by `--config`; the command
//! line wins. Unknown keys in the file are errors. With no replay source and no feed, the service
//! runs its demo: the bundled sample served by an in-process mock exchange in Binance's format,
//! looping at 10× with pauses capped at one second, read by the real Binance connector.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::alerts::RuleSpec;
use crate::alerts::sink::{SinkSettings, WebhookSettings};
use crate::analytics::{DEFAULT_CANDLE_HISTORY, IntervalSpec, WindowSpec};
use crate::feeds::connector::FeedSpec;
use crate::feeds::reconnect::ReconnectPolicy;
use crate::feeds::{Credentials, Provider};
use crate::replay::{ReplayError, ReplaySource, Speed};
use crate::secret::Secret;

/// The environment variable holding the API token that rule edits require.
pub const API_TOKEN_ENV: &str = "TICKSTREAM_API_TOKEN";

pub use crate::api::{DEFAULT_HTTP_LIMITS, DEFAULT_STREAM_THROTTLE, HttpLimitSettings};

/// Default HTTP listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default trailing windows.
pub const DEFAULT_WINDOWS: [&str; 6] = ["1s", "10s", "1m", "5m", "15m", "1h"];
/// Default candle intervals.
pub const DEFAULT_INTERVALS: [&str; 3] = ["1s", "1m", "5m"];
pub use crate::analytics::candles::MAX_CANDLE_HISTORY;
pub use crate::indicators::cache::{
    CacheSettings, DEFAULT_INDICATOR_CACHE_CAPACITY, DEFAULT_INDICATOR_CACHE_TTL,
};
/// Default timeout of one webhook attempt.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default webhook retries after the first attempt.
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 3;
/// Wait before the first webhook retry (doubled before each next one).
pub const WEBHOOK_BACKOFF: Duration = Duration::from_millis(200);
/// Default allowed lateness.
pub const DEFAULT_LATENESS: &str = "1s";
/// Speed of the embedded sample when no speed is given.
pub const EMBEDDED_SPEED: f64 = 10.0;
/// Longest wall-clock pause of the embedded sample when none is given.
pub const EMBEDDED_MAX_PAUSE: Duration = Duration::from_secs(1);

/// tickstream: real-time stock-ticker analytics over HTTP.
#[derive(Debug, Parser)]
#[command(
    name = "tickstream",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Log format on standard error: `text` (coloured only on a terminal) or `json` (one
    /// object per line). The level comes from `RUST_LOG` (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

/// Parses a whole number given on the command line, saying in words what is wrong with it.
fn whole_number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(format!(
            "{text} is negative: give a whole number, 0 or more"
        ));
    }
    trimmed
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: replay sources and live feeds through the analytics core and serve the
    /// HTTP API.
    Serve(Box<ServeArgs>),
    /// Serve a recorded file over a local WebSocket in a provider's wire format.
    MockExchange(Box<MockExchangeArgs>),
}

/// Options of `tickstream mock-exchange`.
#[derive(Debug, Clone, Args)]
pub struct MockExchangeArgs {
    /// Wire format and handshake to serve: binance, coinbase, coinbase-exchange, kraken,
    /// finnhub, alpaca or polygon.
    #[arg(long, default_value = "binance")]
    pub provider: String,
    /// Recorded trades to serve: CSV, JSON lines or Parquet, or raw frames (`.frames.jsonl`),
    /// optionally gzip- or zstd-compressed.
    #[arg(long, value_name = "PATH")]
    pub file: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub listen: String,
    /// `max` or a factor of real time.
    #[arg(long, default_value = "1", allow_hyphen_values = true)]
    pub speed: String,
    /// Start over at the end of the file (event times move forward by whole days, trade ids on).
    #[arg(long = "loop")]
    pub repeat: bool,
    /// Longest wall-clock wait between two trades (e.g. `1s`); longer gaps are shortened.
    #[arg(long, value_name = "DURATION")]
    pub max_pause: Option<String>,
    /// One tape for all connections, like a live venue: a reconnecting client resumes where
    /// the tape stands instead of at the file's start.
    #[arg(long)]
    pub shared_tape: bool,
    /// Fault: drop each connection (no closing handshake) after this many trade frames.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = whole_number::<u64>)]
    pub drop_every: Option<u64>,
    /// Fault: after every N trade frames go silent for DURATION (e.g. `500:30s`).
    #[arg(long, value_name = "N:DURATION")]
    pub stall: Option<String>,
    /// Fault: after every N trade frames send one garbage frame.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = whole_number::<u64>)]
    pub garbage_every: Option<u64>,
    /// Fault: refuse connections for this long after starting (e.g. `10s`).
    #[arg(long, value_name = "DURATION")]
    pub refuse_for: Option<String>,
    /// Fault (with `--shared-tape`): resend this many recent trades to a new connection.
    #[arg(long, value_name = "N", default_value = "0", allow_hyphen_values = true, value_parser = whole_number::<usize>)]
    pub resend_on_connect: usize,
}

impl Cli {
    /// The command to run: `serve` (with its options) unless another subcommand was given.
    pub fn into_command(self) -> Command {
        match self.command {
            Some(command) => command,
            None => Command::Serve(Box::new(self.serve)),
        }
    }
}

/// Options of `tickstream serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the options below (command-line options win).
    #[arg(long, value_name = "FILE", env = "TICKSTREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// A recorded file to replay; repeatable. Formats by name: CSV (`.csv`), JSON lines
    /// (`.jsonl`, `.ndjson`, `.json`), Parquet (`.parquet`, `.pq`), raw frames recorded by
    /// `--record` (`.frames.jsonl`); each may be gzip- (`.gz`) or zstd-compressed (`.zst`);
    /// `-` reads standard input (CSV, JSON lines or raw frames, told from the first bytes). With
    /// no replay and no feed, the demo runs: the bundled sample served by an in-process mock
    /// exchange.
    #[arg(long = "replay", value_name = "PATH")]
    pub replay: Vec<PathBuf>,
    /// Replay speed: `max` (as fast as possible) or a factor (1 = real time, 60 = 60× faster).
    #[arg(long, value_name = "SPEED", allow_hyphen_values = true)]
    pub speed: Option<String>,
    /// A live feed: `provider:SYMBOL,SYMBOL[@url]` (e.g. `binance:BTCUSDT,ETHUSDT`); repeatable.
    #[arg(long = "feed", value_name = "SPEC")]
    pub feed: Vec<String>,
    /// Record what the live feeds deliver into this directory: the raw frames
    /// (`*.frames.jsonl`, replayable through the real parsers) and the trades applied (Parquet).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// When the trade log of `--record` is made durable: `every` batch (the core publishes a
    /// batch only once it is on disk), every `interval` (1 s; the default), or `never` (the
    /// operating system's schedule). A killed process loses at most the last 100 ms in any case.
    #[arg(long, value_name = "POLICY")]
    pub fsync: Option<String>,
    /// Keep the alert rules added or removed over the API in this file (JSON, written
    /// atomically), apart from the configured rules, so they survive a restart (default:
    /// `rules.json` in the `--record` directory, if there is one).
    #[arg(long, value_name = "PATH")]
    pub rules_file: Option<PathBuf>,
    /// On start, before the live feeds connect, apply the trades recorded in this directory
    /// (by `--record`) within the longest window and candle history: the state of a service
    /// that never stopped.
    #[arg(long, value_name = "DIR")]
    pub recover: Option<PathBuf>,
    /// Read integer timestamps of replayed files in this unit (`s`, `ms`, `us`, `ns`) whatever
    /// their magnitude; by default each file's unit is told from its first timestamp.
    #[arg(long, value_name = "UNIT", value_enum)]
    pub ts_unit: Option<crate::replay::fields::EpochUnit>,
    /// Start replays over at their end (event times move forward a whole number of days).
    #[arg(long = "replay-loop")]
    pub replay_loop: bool,
    /// Longest wall-clock wait between two replayed trades (e.g. `1s`); longer gaps in the data
    /// are shortened in wall time only.
    #[arg(long, value_name = "DURATION")]
    pub max_pause: Option<String>,
    /// Trailing windows, comma-separated (e.g. `1s,10s,1m,5m,15m,1h`).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub windows: Option<Vec<String>>,
    /// How far behind the event-time clock (the largest exchange time seen) a trade may arrive
    /// and still be applied (e.g. `1s`).
    #[arg(long, value_name = "DURATION")]
    pub lateness: Option<String>,
    /// Candle intervals, comma-separated (e.g. `1s,1m,5m`): whole milliseconds.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub intervals: Option<Vec<String>>,
    /// Trade ids remembered per feed and symbol to drop a venue's resends as duplicates
    /// (default 4096); an id older than all of them is applied and counted
    /// (`ids_beyond_horizon`).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = whole_number::<usize>)]
    pub dedup_ids: Option<usize>,
    /// Closed candles kept per symbol and interval (default 1000).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = whole_number::<usize>)]
    pub candle_history: Option<usize>,
    /// Indicator results the cache holds at most (0 disables caching).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = whole_number::<u64>)]
    pub indicator_cache_capacity: Option<u64>,
    /// Longest time an indicator result stays cached (e.g. `5m`).
    #[arg(long, value_name = "DURATION")]
    pub indicator_cache_ttl: Option<String>,
    /// An alert rule as JSON (e.g. `{"kind":"price_above","symbol":"IBM","threshold":185}`);
    /// repeatable; replaces the file's `[[alerts]]`.
    #[arg(long = "alert", value_name = "JSON")]
    pub alert: Vec<String>,
    /// Append alerts as JSON lines to this file.
    #[arg(long, value_name = "PATH")]
    pub alerts_file: Option<PathBuf>,
    /// POST every alert as JSON to this URL.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Timeout of one webhook attempt (default 5s).
    #[arg(long, value_name = "DURATION")]
    pub webhook_timeout: Option<String>,
    /// Webhook retries after the first attempt, with exponential backoff (default 3).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = whole_number::<u32>)]
    pub webhook_retries: Option<u32>,
    /// Do not log alerts.
    #[arg(long)]
    pub no_alert_log: bool,
    /// Least time between two `stats` events of one symbol on `/v1/stream` (default 250ms).
    #[arg(long, value_name = "DURATION")]
    pub stream_throttle: Option<String>,
    /// HTTP listen address: `HOST:PORT` (`127.0.0.1:8080`, `localhost:8080`, `[::1]:8080`,
    /// `0.0.0.0:8080` for every interface), or a port alone (`8080`, `:8080`) on loopback; port
    /// 0 picks a free port.
    #[arg(long, value_name = "ADDR", env = "TICKSTREAM_LISTEN")]
    pub listen: Option<String>,
    /// Most HTTP requests handled at once (the live stream aside); more get 503 (default 1024).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = whole_number::<usize>)]
    pub max_requests_in_flight: Option<usize>,
    /// Longest time an HTTP request may take, receiving its body included (default 10s).
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// Live feeds: silence after which a connection is dropped and reopened (default: the
    /// provider's own, 10 s to 5 min).
    #[arg(long, value_name = "DURATION")]
    pub stale_after: Option<String>,
    /// Live feeds: longest wait between reconnect attempts (default 30s; the first is 250 ms).
    #[arg(long, value_name = "DURATION")]
    pub backoff_max: Option<String>,
    /// Live feeds: consecutive failed connections that open the circuit breaker (default 10;
    /// 0 never opens it).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = whole_number::<u32>)]
    pub circuit_failures: Option<u32>,
    /// Live feeds: how long an open circuit waits before the next attempt (default 60s).
    #[arg(long, value_name = "DURATION")]
    pub circuit_open_for: Option<String>,
    /// The bearer token that endpoints changing state (alert rules) require; from the
    /// environment, never from the configuration file (a flag would show in `ps`).
    #[arg(skip)]
    pub api_token: Option<String>,
}

/// A number, or a string holding one (`speed = 60` or `speed = "max"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(f64),
    Text(String),
}

/// A `[[feeds]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFeed {
    provider: String,
    url: Option<String>,
    symbols: Vec<String>,
    channels: Option<Vec<String>>,
    /// The environment variable holding the API key (the provider's default otherwise).
    key_env: Option<String>,
    /// The environment variable holding the API secret (the provider's default otherwise).
    secret_env: Option<String>,
}

/// The TOML file, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    record: Option<PathBuf>,
    fsync: Option<String>,
    rules_file: Option<PathBuf>,
    recover: Option<PathBuf>,
    feeds: Option<Vec<FileFeed>>,
    replay: Option<Vec<PathBuf>>,
    speed: Option<NumberOrText>,
    replay_loop: Option<bool>,
    ts_unit: Option<crate::replay::fields::EpochUnit>,
    max_pause: Option<String>,
    windows: Option<Vec<String>>,
    lateness: Option<String>,
    intervals: Option<Vec<String>>,
    candle_history: Option<usize>,
    dedup_ids: Option<usize>,
    indicator_cache_capacity: Option<u64>,
    indicator_cache_ttl: Option<String>,
    alerts: Option<Vec<RuleSpec>>,
    alerts_file: Option<PathBuf>,
    alert_log: Option<bool>,
    webhook_url: Option<String>,
    webhook_timeout: Option<String>,
    webhook_retries: Option<u32>,
    stream_throttle: Option<String>,
    max_requests_in_flight: Option<usize>,
    request_timeout: Option<String>,
    stale_after: Option<String>,
    backoff_max: Option<String>,
    circuit_failures: Option<u32>,
    circuit_open_for: Option<String>,
}

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

/// The validated configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Sources to replay.
    pub sources: Vec<ReplaySource>,
    /// Live feeds.
    pub feeds: Vec<FeedSpec>,
    /// Where to record live feeds' frames.
    pub record: Option<PathBuf>,
    /// Where to recover recorded trades from at start.
    pub recover: Option<PathBuf>,
    /// When the trade log is made durable.
    pub fsync: crate::record::ticklog::FsyncPolicy,
    /// Where the API's rule edits are kept.
    pub rules_file: Option<PathBuf>,
    /// Nothing configured: run the built-in demo (the bundled sample served by an in-process
    /// mock exchange, read by a real connector).
    pub demo: bool,
    /// Replay speed.
    pub speed: Speed,
    /// Longest wall-clock pause during a paced replay.
    pub max_pause: Option<Duration>,
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
    /// Indicator cache bounds.
    pub indicator_cache: CacheSettings,
    /// Alert rules to start with (validated; ids may still be missing).
    pub alert_rules: Vec<RuleSpec>,
    /// Where alerts go.
    pub sinks: SinkSettings,
    /// Least time between two `stats` events of one symbol on the live stream.
    pub stream_throttle: Duration,
    /// The bearer token rule edits require, if one is configured.
    pub api_token: Option<Secret>,
    /// Bounds on the HTTP API's work.
    pub http_limits: HttpLimitSettings,
    /// Live feeds: how connectors retry.
    pub reconnect: ReconnectPolicy,
    /// Live feeds: the stale limit, when not the provider's own.
    pub stale_after: Option<Duration>,
    /// How replays show their progress (bars on a terminal, log lines otherwise): the binary
    /// decides from where its logs go.
    pub progress: crate::replay::progress::ProgressOutput,
}

impl Settings {
    /// Settings from the command line, reading the config file it names.
    pub fn load(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::from_parts(args, file)
    }

    /// Settings from a TOML text alone (for tests and tools).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let file = parse_file(text, Path::new("<inline>"))?;
        Self::from_parts(ServeArgs::default(), file)
    }

    fn from_parts(args: ServeArgs, file: FileConfig) -> Result<Self, ConfigError> {
        let listen_text = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = parse_listen(&listen_text)?;

        let paths = if args.replay.is_empty() {
            file.replay.unwrap_or_default()
        } else {
            args.replay
        };
        let replay_loop = args.replay_loop || file.replay_loop.unwrap_or(false);
        let ts_unit = args.ts_unit.or(file.ts_unit);
        let feeds = if args.feed.is_empty() {
            file.feeds
                .unwrap_or_default()
                .into_iter()
                .map(feed_from_file)
                .collect::<Result<Vec<_>, _>>()?
        } else {
            args.feed
                .iter()
                .map(|text| parse_feed(text))
                .collect::<Result<Vec<_>, _>>()?
        };
        let embedded = paths.is_empty() && feeds.is_empty();
        let record = args.record.or(file.record);
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
        let sources = if paths.is_empty() {
            Vec::new()
        } else {
            paths
                .into_iter()
                .map(|path| {
                    ReplaySource::from_path(path).map(|source| ReplaySource {
                        repeat: replay_loop,
                        ts_unit,
                        ..source
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        };

        let speed_text = match args.speed {
            Some(text) => Some(text),
            None => file.speed.map(|speed| match speed {
                NumberOrText::Number(n) => n.to_string(),
                NumberOrText::Text(text) => text,
            }),
        };
        let speed = match speed_text {
            Some(text) => text
                .parse::<Speed>()
                .map_err(|error| invalid("speed", error.to_string()))?,
            None if embedded => Speed::Factor(EMBEDDED_SPEED),
            None => Speed::Max,
        };

        let max_pause = match args.max_pause.or(file.max_pause) {
            Some(text) => Some(parse_duration("max_pause", &text)?),
            None if embedded => Some(EMBEDDED_MAX_PAUSE),
            None => None,
        };

        let window_labels = args
            .windows
            .or(file.windows)
            .unwrap_or_else(|| DEFAULT_WINDOWS.iter().map(|w| w.to_string()).collect());
        let windows = parse_windows(&window_labels)?;

        let lateness_text = args
            .lateness
            .or(file.lateness)
            .unwrap_or_else(|| DEFAULT_LATENESS.to_string());
        let allowed_lateness = duration_nanos("lateness", parse_lateness(&lateness_text)?)?;

        let interval_labels = args
            .intervals
            .or(file.intervals)
            .unwrap_or_else(|| DEFAULT_INTERVALS.iter().map(|i| i.to_string()).collect());
        let intervals = parse_intervals(&interval_labels)?;
        let candle_history = args
            .candle_history
            .or(file.candle_history)
            .unwrap_or(DEFAULT_CANDLE_HISTORY);
        if !(1..=MAX_CANDLE_HISTORY).contains(&candle_history) {
            return Err(invalid(
                "candle_history",
                format!("{candle_history} is not between 1 and {MAX_CANDLE_HISTORY}"),
            ));
        }
        let dedup_ids = args
            .dedup_ids
            .or(file.dedup_ids)
            .unwrap_or(crate::analytics::engine::DEFAULT_DEDUP_CAPACITY);
        if dedup_ids == 0 {
            return Err(invalid("dedup_ids", "must be at least 1"));
        }
        let indicator_cache = CacheSettings {
            capacity: args
                .indicator_cache_capacity
                .or(file.indicator_cache_capacity)
                .unwrap_or(DEFAULT_INDICATOR_CACHE_CAPACITY),
            time_to_live: match args.indicator_cache_ttl.or(file.indicator_cache_ttl) {
                Some(text) => parse_duration("indicator_cache_ttl", &text)?,
                None => DEFAULT_INDICATOR_CACHE_TTL,
            },
        };
        if indicator_cache.time_to_live.is_zero() {
            return Err(invalid("indicator_cache_ttl", "must be positive"));
        }

        let alert_rules = if args.alert.is_empty() {
            file.alerts.unwrap_or_default()
        } else {
            args.alert
                .iter()
                .map(|text| {
                    serde_json::from_str::<RuleSpec>(text)
                        .map_err(|error| invalid("alert", format!("{text}: {error}")))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let alert_rules = if embedded && alert_rules.is_empty() {
            demo_rules()
        } else {
            alert_rules
        };
        let windows: Arc<[WindowSpec]> = windows.into();
        let intervals: Arc<[IntervalSpec]> = intervals.into();
        crate::alerts::RuleBook::new(&alert_rules, Arc::clone(&windows), Arc::clone(&intervals))
            .map_err(|error| invalid("alerts", error.to_string()))?;
        let webhook = match args.webhook.or(file.webhook_url) {
            None => None,
            Some(url) => {
                let parsed = reqwest::Url::parse(&url)
                    .map_err(|error| invalid("webhook", format!("{url:?}: {error}")))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(invalid("webhook", format!("{url:?}: not http(s)")));
                }
                let timeout = match args.webhook_timeout.or(file.webhook_timeout) {
                    Some(text) => parse_duration("webhook_timeout", &text)?,
                    None => DEFAULT_WEBHOOK_TIMEOUT,
                };
                if timeout.is_zero() {
                    return Err(invalid("webhook_timeout", "must be positive"));
                }
                Some(WebhookSettings {
                    url,
                    timeout,
                    retries: args
                        .webhook_retries
                        .or(file.webhook_retries)
                        .unwrap_or(DEFAULT_WEBHOOK_RETRIES),
                    backoff: WEBHOOK_BACKOFF,
                })
            }
        };
        let fsync = match args.fsync.or(file.fsync) {
            Some(text) => text
                .parse()
                .map_err(|message: String| invalid("fsync", message))?,
            None => crate::record::ticklog::FsyncPolicy::Interval(
                crate::record::ticklog::DEFAULT_FSYNC_INTERVAL,
            ),
        };
        let sinks = SinkSettings {
            log: !args.no_alert_log && file.alert_log.unwrap_or(true),
            file: args.alerts_file.or(file.alerts_file),
            webhook,
            fsync,
        };
        let stream_throttle = match args.stream_throttle.or(file.stream_throttle) {
            Some(text) => parse_duration("stream_throttle", &text)?,
            None => DEFAULT_STREAM_THROTTLE,
        };
        let max_in_flight = args
            .max_requests_in_flight
            .or(file.max_requests_in_flight)
            .unwrap_or(DEFAULT_HTTP_LIMITS.max_in_flight);
        if max_in_flight == 0 {
            return Err(invalid("max_requests_in_flight", "must be at least 1"));
        }
        let timeout = match args.request_timeout.or(file.request_timeout) {
            Some(text) => parse_duration("request_timeout", &text)?,
            None => DEFAULT_HTTP_LIMITS.timeout,
        };
        if timeout.is_zero() {
            return Err(invalid("request_timeout", "must be positive"));
        }
        let http_limits = HttpLimitSettings {
            max_in_flight,
            timeout,
        };
        let stale_after = args
            .stale_after
            .or(file.stale_after)
            .map(|text| parse_duration("stale_after", &text))
            .transpose()?;
        if stale_after.is_some_and(|limit| limit.is_zero()) {
            return Err(invalid("stale_after", "must be positive"));
        }
        let mut reconnect = ReconnectPolicy::default();
        if let Some(text) = args.backoff_max.or(file.backoff_max) {
            reconnect.backoff_max = parse_duration("backoff_max", &text)?;
            reconnect.backoff_initial = reconnect.backoff_initial.min(reconnect.backoff_max);
        }
        if let Some(failures) = args.circuit_failures.or(file.circuit_failures) {
            reconnect.circuit_failures = failures;
        }
        if let Some(text) = args.circuit_open_for.or(file.circuit_open_for) {
            reconnect.circuit_open_for = parse_duration("circuit_open_for", &text)?;
        }

        Ok(Settings {
            listen,
            sources,
            feeds,
            demo: embedded,
            rules_file: args
                .rules_file
                .or(file.rules_file)
                .or_else(|| record.as_ref().map(|dir| dir.join("rules.json"))),
            record,
            fsync,
            recover: args.recover.or(file.recover),
            speed,
            max_pause,
            windows,
            allowed_lateness,
            intervals,
            candle_history,
            dedup_ids,
            indicator_cache,
            alert_rules,
            sinks,
            stream_throttle,
            http_limits,
            reconnect,
            stale_after,
            progress: crate::replay::progress::ProgressOutput::Log,
            api_token: args
                .api_token
                .filter(|token| !token.is_empty())
                .map(Secret::new),
        })
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

fn invalid(option: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option,
        message: message.into(),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(&text, path)
}

fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|error| ConfigError::Parse {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

fn provider(name: &str) -> Result<Provider, ConfigError> {
    Provider::from_name(name).ok_or_else(|| {
        invalid(
            "feed",
            format!(
                "unknown provider {name:?} (known: {})",
                Provider::known_names()
            ),
        )
    })
}

/// Reads a feed's API key from the environment, if the provider needs one.
fn credentials(
    provider: Provider,
    key_env: Option<String>,
    secret_env: Option<String>,
) -> Result<Option<Credentials>, ConfigError> {
    let read = |what: &str, variable: String| match std::env::var(&variable) {
        Ok(value) if !value.trim().is_empty() => Ok(Secret::new(value.trim().to_string())),
        _ => Err(invalid(
            "feed",
            format!(
                "{} needs an API {what}: set the environment variable {variable}",
                provider.name()
            ),
        )),
    };
    let Some(key_variable) = key_env.or_else(|| provider.credentials_env().key.map(str::to_string))
    else {
        return Ok(None);
    };
    let key = read("key", key_variable)?;
    let secret = match secret_env.or_else(|| provider.credentials_env().secret.map(str::to_string))
    {
        Some(variable) => Some(read("secret", variable)?),
        None => None,
    };
    Ok(Some(Credentials { key, secret }))
}

fn feed_spec(
    provider: Provider,
    url: Option<String>,
    symbols: Vec<String>,
    channels: Option<Vec<String>>,
    key_env: Option<String>,
    secret_env: Option<String>,
) -> Result<FeedSpec, ConfigError> {
    let symbols: Vec<String> = symbols
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if symbols.is_empty() {
        return Err(invalid("feed", "a feed needs at least one symbol"));
    }
    let url = url.unwrap_or_else(|| provider.default_url().to_string());
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(invalid(
            "feed",
            format!("{url:?} is not a ws:// or wss:// URL"),
        ));
    }
    Ok(FeedSpec {
        provider,
        url,
        symbols,
        channels: channels.unwrap_or_else(|| {
            provider
                .default_channels()
                .iter()
                .map(|c| c.to_string())
                .collect()
        }),
        credentials: credentials(provider, key_env, secret_env)?,
    })
}

fn feed_from_file(feed: FileFeed) -> Result<FeedSpec, ConfigError> {
    feed_spec(
        provider(&feed.provider)?,
        feed.url,
        feed.symbols,
        feed.channels,
        feed.key_env,
        feed.secret_env,
    )
}

/// Parses `provider:SYMBOL,SYMBOL[@url]`.
pub fn parse_feed(text: &str) -> Result<FeedSpec, ConfigError> {
    let (name, rest) = text.split_once(':').ok_or_else(|| {
        invalid(
            "feed",
            format!("{text:?}: expected provider:SYMBOL,SYMBOL[@url]"),
        )
    })?;
    let (symbols, url) = match rest.split_once('@') {
        Some((symbols, url)) => (symbols, Some(url.to_string())),
        None => (rest, None),
    };
    let symbols = symbols.split(',').map(str::to_string).collect();
    feed_spec(provider(name)?, url, symbols, None, None, None)
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

/// Parses candle intervals (see [`IntervalSpec::parse_list`]).
pub fn parse_intervals(labels: &[String]) -> Result<Vec<IntervalSpec>, ConfigError> {
    Ok(IntervalSpec::parse_list(labels)?)
}

/// The `mock-exchange` subcommand's options, validated.
#[derive(Debug)]
pub struct MockExchangeSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The recording to serve (trades, or raw frames served verbatim).
    pub source: crate::replay::ReplaySource,
    /// How to serve it.
    pub options: crate::mock_exchange::MockOptions,
}

impl MockExchangeArgs {
    /// Validates the options.
    pub fn settings(self) -> anyhow::Result<MockExchangeSettings> {
        use anyhow::Context;
        let args = self;
        let provider = Provider::from_name(&args.provider).with_context(|| {
            format!(
                "unknown provider {:?} (known: {})",
                args.provider,
                Provider::known_names()
            )
        })?;
        let speed: Speed = args.speed.parse()?;
        let listen = parse_listen(&args.listen)?;
        let source = crate::replay::ReplaySource::from_path(&args.file)?;
        let duration = |name: &'static str, text: &str| {
            parse_duration(name, text).map_err(anyhow::Error::from)
        };
        let max_pause = args
            .max_pause
            .as_deref()
            .map(|text| duration("max_pause", text))
            .transpose()?;
        let stall = args
            .stall
            .as_deref()
            .map(|text| {
                let (every, pause) = text
                    .split_once(':')
                    .with_context(|| format!("--stall wants N:DURATION, got {text:?}"))?;
                let every: u64 = every
                    .parse()
                    .with_context(|| format!("--stall: {every:?} is not a frame count"))?;
                anyhow::Ok((every, duration("stall", pause)?))
            })
            .transpose()?;
        let options = crate::mock_exchange::MockOptions {
            provider,
            speed,
            repeat: args.repeat,
            max_pause,
            shared_tape: args.shared_tape,
            faults: crate::mock_exchange::MockFaults {
                drop_every: args.drop_every,
                stall,
                garbage_every: args.garbage_every,
                refuse_for: args
                    .refuse_for
                    .as_deref()
                    .map(|text| duration("refuse_for", text))
                    .transpose()?,
                resend_on_connect: args.resend_on_connect,
            },
            ..crate::mock_exchange::MockOptions::default()
        };
        Ok(MockExchangeSettings {
            listen,
            source,
            options,
        })
    }
}

impl Settings {
    /// What the sources need of the settings.
    pub fn source_settings(&self) -> crate::sources::SourceSettings {
        crate::sources::SourceSettings {
            speed: self.speed,
            max_pause: self.max_pause,
            progress: self.progress,
            reconnect: self.reconnect.clone(),
            stale_after: self.stale_after,
            recover: self
                .recover
                .clone()
                .map(|directory| (directory, self.recovery_horizon())),
        }
    }

    /// How far back `--recover` replays: the longest window or the longest interval's candle
    /// history, whichever is longer, plus the allowed lateness.
    pub fn recovery_horizon(&self) -> i64 {
        let window = self.windows.iter().map(|w| w.length).max().unwrap_or(0);
        let history = i64::try_from(self.candle_history).unwrap_or(i64::MAX);
        let candles = self
            .intervals
            .iter()
            .map(|interval| interval.length.saturating_mul(history))
            .max()
            .unwrap_or(0);
        window.max(candles).saturating_add(self.allowed_lateness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_the_embedded_sample() {
        let settings = Settings::from_toml("").expect("valid");
        assert_eq!(settings.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(settings.alert_rules.len(), 2, "the demo has alert rules");
        assert!(settings.demo && settings.sources.is_empty() && settings.feeds.is_empty());
        assert_eq!(settings.speed, Speed::Factor(EMBEDDED_SPEED));
        let labels: Vec<_> = settings.windows.iter().map(|w| w.label.as_str()).collect();
        assert_eq!(labels, DEFAULT_WINDOWS);
        assert_eq!(settings.allowed_lateness, 1_000_000_000);
    }

    #[test]
    fn file_values_and_command_line_overrides() {
        let file = parse_file(
            "listen = \"127.0.0.1:0\"\nreplay = [\"a.csv\"]\nspeed = 60\nwindows = [\"1m\", \"250ms\"]\nlateness = \"0\"",
            Path::new("t"),
        )
        .expect("valid");
        let args = ServeArgs {
            speed: Some("max".into()),
            ..ServeArgs::default()
        };
        let settings = Settings::from_parts(args, file).expect("valid");
        assert_eq!(settings.speed, Speed::Max);
        assert_eq!(settings.windows[1].length, 250_000_000);
        assert_eq!(settings.allowed_lateness, 0);
        assert_eq!(settings.max_pause, None);
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
        assert_eq!(settings.feeds[0].channels, ["aggTrade"]);
        assert!(
            settings.sources.is_empty(),
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
        assert_eq!(settings.alert_rules.len(), 1);
        assert_eq!(
            settings.sinks.webhook.map(|w| w.retries),
            Some(DEFAULT_WEBHOOK_RETRIES)
        );
        assert!(Settings::from_toml("indicator_cache_ttl = \"0s\"").is_err());
        let settings = Settings::from_toml("intervals = [\"250ms\", \"1h\"]\ncandle_history = 5")
            .expect("valid");
        assert_eq!(settings.intervals[0].length, 250_000_000);
        assert_eq!(settings.candle_history, 5);
        assert!(Settings::from_toml("windows = []").is_err());
        assert!(Settings::from_toml("windows = [\"soon\"]").is_err());
        assert!(Settings::from_toml("speed = 0").is_err());
        assert!(Settings::from_toml("replay = [\"trades.txt\"]").is_err());
    }
}
