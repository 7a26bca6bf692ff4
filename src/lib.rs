//! tickstream: real-time stock-ticker analytics.
//!
//! Trades flow one way through the modules below; each module's own documentation says what it
//! owns and what it must not do.
//!
//! # Layout
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | events | [`model`] | normalized [`model::Trade`], [`model::Symbol`], timestamps |
//! | time | [`clock`] | the stream clock and the lateness policy |
//! | sources | [`replay`] | recorded trades from CSV, JSON lines and Parquet, paced |
//! | sources | [`feeds`] | live WebSocket connectors (one folder per provider), reconnect policy, and the registry of every source's state and counters |
//! | sources | [`mock_exchange`] | serves recordings over a local WebSocket in a provider's format |
//! | merge | [`merge`] | several sources into one stream, in event time |
//! | core | [`analytics`] | synchronous rolling windows and candles per symbol, snapshots for readers |
//! | alerts | [`alerts`] | rules evaluated in the core on event time; the sink task and its sinks (log, file, webhook, stream) |
//! | indicators | [`indicators`] | SMA, EMA, RSI, MACD, BBANDS, ATR over closed candles (TA-Lib's conventions), memoized in `moka` |
//! | core task | [`ingest`] | the async loop that drives the core and publishes |
//! | recording | [`record`] | raw frames of the live feeds, for replay; the durable trade log of every applied trade |
//! | recovery | [`recover`] | the recorded state read back at start (`--recover`) |
//! | serving | [`api`] | the HTTP API (axum) |
//! | serving | [`metrics`] | Prometheus metrics |
//! | wiring | [`config`], [`startup`], [`shutdown`] | settings, the task topology, stopping |
//!

pub mod alerts;
pub mod analytics;
pub mod api;
pub mod clock;
pub mod config;
pub mod feeds;
pub mod indicators;
pub mod ingest;
pub mod merge;
pub mod metrics;
pub mod mock_exchange;
pub mod model;
pub mod record;
pub mod recover;
pub mod replay;
pub mod shutdown;
pub mod startup;

pub use config::Settings;
pub use startup::App;
