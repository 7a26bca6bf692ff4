//! The command line as written (clap): the subcommands and their options, before validation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Answer a history question from the recordings, without a server (the HTTP history's
    /// answers as a table, CSV, JSON or Parquet).
    Query(Box<QueryArgs>),
    /// Write a range of the recordings to one Parquet file (for pandas, DuckDB, polars).
    Export(Box<ExportArgs>),
    /// Scale-out: run the sources (`--feed`, `--replay`) and publish their trades and quotes to
    /// a NATS JetStream stream partitioned by symbol (`--nats`), for analytics nodes
    /// (`tickstream serve --nats`) to consume. Serves its feeds' health and metrics over HTTP.
    Ingest(Box<ServeArgs>),
}

/// What `tickstream query` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryKind {
    /// Bars of `[--from, --to)` (`--interval`).
    Candles,
    /// One window (`--window`) as of `--at`.
    Stats,
    /// An indicator (`--indicator`) over the bars of `[--from, --to)`.
    Indicators,
}

/// How `tickstream query` writes its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    /// Aligned columns.
    Table,
    /// Comma-separated, with a header.
    Csv,
    /// A JSON array of objects.
    Json,
    /// Apache Parquet (needs `--output`).
    Parquet,
}

/// Options of `tickstream query`.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// What to ask: candles, stats or indicators.
    #[arg(value_enum)]
    pub what: QueryKind,
    /// A directory of trade files (repeatable): the recordings, or CSV, JSON lines or Parquet.
    #[arg(long, value_name = "DIR", required = true)]
    pub history: Vec<PathBuf>,
    /// The symbol.
    #[arg(long)]
    pub symbol: String,
    /// Start (candles, indicators): epoch ms or RFC 3339.
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive (candles, indicators): epoch ms or RFC 3339.
    #[arg(long)]
    pub to: Option<String>,
    /// The instant (stats): epoch ms or RFC 3339.
    #[arg(long)]
    pub at: Option<String>,
    /// Bar length: any whole number of milliseconds.
    #[arg(long, default_value = "1m")]
    pub interval: String,
    /// Window length (stats).
    #[arg(long, default_value = "1h")]
    pub window: String,
    /// The indicator (indicators): sma, ema, rsi, macd, bbands or atr.
    #[arg(long)]
    pub indicator: Option<String>,
    /// Indicator period.
    #[arg(long)]
    pub period: Option<String>,
    /// MACD fast period.
    #[arg(long)]
    pub fast: Option<String>,
    /// MACD slow period.
    #[arg(long)]
    pub slow: Option<String>,
    /// MACD signal period.
    #[arg(long)]
    pub signal: Option<String>,
    /// Bollinger width in standard deviations.
    #[arg(long)]
    pub k: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
    /// Write to this file rather than standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Options of `tickstream export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// A directory of trade files (repeatable).
    #[arg(long, value_name = "DIR", required = true)]
    pub history: Vec<PathBuf>,
    /// Start: epoch ms or RFC 3339.
    #[arg(long)]
    pub from: String,
    /// End, exclusive: epoch ms or RFC 3339.
    #[arg(long)]
    pub to: String,
    /// Comma-separated symbols (default: every symbol).
    #[arg(long)]
    pub symbols: Option<String>,
    /// The Parquet file to write.
    #[arg(long, value_name = "FILE.parquet")]
    pub output: PathBuf,
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
    /// Answer history queries (`/v1/history`, `…/history/candles`, `…/history/stats`) from the
    /// trade files in this directory (repeatable): the recordings' Parquet, or any CSV, JSON
    /// lines or Parquet files with the replay's columns. Default: the `--record` directory.
    #[arg(long, value_name = "DIR")]
    pub history: Vec<PathBuf>,
    /// Scale-out: the NATS servers of a JetStream cluster (`nats://host:port`, comma-separated
    /// or repeated). With `serve`, this process is an analytics node: it owns a share of the
    /// partitions and takes its trades from the stream (no `--feed` or `--replay` of its own);
    /// with `ingest`, where its sources' trades are published.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub nats: Vec<String>,
    /// This process's name in the cluster: letters, digits, `-` and `_` (default: the host name
    /// and the HTTP port).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Partitions of the stream when `ingest` creates it (default 16; fixed once created).
    #[arg(long, value_name = "N", value_parser = whole_number::<u32>)]
    pub partitions: Option<u32>,
    /// Replicas of the stream and buckets when created (default 3 on a clustered server, 1 on a
    /// lone one).
    #[arg(long, value_name = "N", value_parser = whole_number::<usize>)]
    pub replicas: Option<usize>,
    /// How long the stream keeps ticks (default 24h, and at least the state's horizon).
    #[arg(long, value_name = "DURATION")]
    pub retention: Option<String>,
    /// Set by `tickstream ingest`.
    #[arg(skip)]
    pub ingest: bool,
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
    /// An origin (`https://dash.example:8443`) whose pages may call the API from a browser,
    /// rule edits included (repeatable); `*` lets any page read (`GET`) but never edit. Off by
    /// default.
    #[arg(long, value_name = "ORIGIN")]
    pub cors_origin: Vec<String>,
    /// Most HTTP requests handled at once (the live stream aside); more get 503 (default 1024).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = whole_number::<usize>)]
    pub max_requests_in_flight: Option<usize>,
    /// Longest time an HTTP request may take, receiving its body included (default 10s).
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// Most HTTP connections open at once; more are answered 503 and closed (default 10000;
    /// keep it below the process's file-descriptor limit, `ulimit -n`).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = whole_number::<usize>)]
    pub max_connections: Option<usize>,
    /// Time a client has to send a whole request head, from connecting or from the first byte
    /// after an idle spell, before its connection is closed (default 10s).
    #[arg(long, value_name = "DURATION")]
    pub header_timeout: Option<String>,
    /// Time an HTTP connection may stay idle between requests before it is closed (default 75s).
    #[arg(long, value_name = "DURATION")]
    pub keep_alive_timeout: Option<String>,
    /// Time a client may leave what it was sent unread (the live stream included) before it is
    /// disconnected (default 30s).
    #[arg(long, value_name = "DURATION")]
    pub stall_timeout: Option<String>,
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
