//! tickstream: real-time stock-ticker analytics.
//!
//! Trades flow one way through the modules below; each module's own documentation says what it
//! owns and what it must not do.
//!
//! # Layout
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | events | [`model`] | normalized [`model::Trade`], [`model::Quote`], [`model::Symbol`], timestamps, and [`model::CoreEvent`], what the core consumes |
//! | time | [`clock`] | the event-time clock (lateness) and the stream clock (what readers see) |
//! | feeds | [`feeds`] | the [`feeds::Venue`] trait; one folder per venue with both sides of its protocol; the connector and its reconnect policy |
//! | feeds | [`mock_exchange`] | what every venue's server shares: serves recordings over a local WebSocket |
//! | files | [`replay`] | recorded trades from CSV, JSON lines, Parquet and raw frames; the event-time merge; pacing |
//! | sources | [`sources`] | live feeds, replays, the recovery and the demo, each sending [`model::CoreEvent`] batches to the core |
//! | sources | [`health`] | every source's state and counters (`/v1/feeds`, `/metrics`) |
//! | core | [`analytics`] | synchronous rolling windows and candles per symbol, snapshots for readers |
//! | core task | [`ingest`] | the async loop that drives the core, logs applied trades and publishes |
//! | indicators | [`indicators`] | SMA, EMA, RSI, MACD, BBANDS, ATR over closed candles (TA-Lib's conventions), memoized in `moka` |
//! | alerts | [`alerts`] | rules evaluated in the core on event time; the sink task and its sinks (log, file, webhook, stream) |
//! | recording | [`record`] | raw frames of the live feeds; the durable trade log of every applied trade; compaction |
//! | history | [`history`] | the recordings and named trade files queried with polars: candles, past windows |
//! | serving | [`api`] | the HTTP API (axum on hyper-util), its generated OpenAPI, the dashboard |
//! | serving | [`fanout`] | the live stream's per-client forwarding (filters, throttle, resume, stalls) |
//! | serving | [`metrics`] | Prometheus metrics |
//! | leaves | [`units`], [`secret`] | durations parsed with their own error; secrets that never show |
//! | wiring | [`config`], [`startup`], [`shutdown`] | settings (imported by wiring only), the task topology, stopping |
//!
//! `ARCHITECTURE.md` draws the data flow and lists the imports that must never exist.

pub mod alerts;
pub mod analytics;
pub mod api;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod fanout;
pub mod feeds;
pub mod health;
pub mod history;
pub mod indicators;
pub mod ingest;
pub mod metrics;
pub mod mock_exchange;
pub mod model;
pub mod record;
pub mod replay;
pub mod secret;
pub mod shutdown;
pub mod sources;
pub mod startup;
pub mod units;

pub use config::Settings;
pub use startup::App;
