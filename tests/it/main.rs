//! Integration tests: one binary, grouped by concern.
//!
//! - `support`: data loading, the polars oracle, a real service on a random loopback port.
//! - `architecture`: the imports `ARCHITECTURE.md` forbids, found in `src/` by reading it.
//! - `alerts`: golden alerts over a replay at two speeds, the rules API, webhook, file (SIGTERM),
//!   the SSE stream and a stalled stream client.
//! - `faults`: injected faults (drops, stalls, refusals, garbage) and WebSocket protocol
//!   violations on both sides, counted exactly.
//! - `fuzz_regressions`: the fuzz targets' seeds and past crashes through the same parsers.
//! - `candles_vs_polars`: candles from the core against polars `group_by_dynamic`.
//! - `indicators_http`: candles and indicators over real HTTP, errors, the cache's single flight.
//! - `indicators_golden`: indicators against TA-Lib's own output (`data/golden`).
//! - `windows_vs_polars`: the analytics core against polars on real recorded trades.
//! - `history`: history candles and windows against polars on real days (CSV and Parquet), and
//!   a live service's recording against what it served.
//! - `http`: the running service over real HTTP, every endpoint and its errors.
//! - `dashboard`: the page at `/` in a real Chromium over WebDriver (skipped without
//!   chromedriver unless `TICKSTREAM_BROWSER_TESTS` is set, as CI does).
//! - `connections`: HTTP/2 with prior knowledge, compression, header and keep-alive timeouts,
//!   the bound on open connections.
//! - `stream`: SSE ids and `Last-Event-ID` resume against the golden alerts; the WebSocket
//!   stream and its subscriptions.
//! - `live`: the mock exchange and the real connector over loopback WebSockets.
//! - `recover`: `--recover` after a stop equals a service that never stopped.
//! - `shutdown`: SIGTERM and Ctrl-C mid-stream: every trade received recorded, every alert
//!   fired written, exit 0.
//! - `venue_seam`: a toy venue written outside the crate, served by the mock exchange and read
//!   by the connector through a reconnect.
//! - `replay`: the file formats, malformed, late and duplicate rows, missing files, exit codes.

mod alerts;
mod architecture;
mod candles_vs_polars;
mod connections;
mod dashboard;
mod edges;
mod faults;
mod fuzz_regressions;
mod history;
mod http;
mod indicators_golden;
mod indicators_http;
mod live;
mod recover;
mod replay;
mod shutdown;
mod stream;
mod support;
mod venue_seam;
mod windows_vs_polars;
