//! Feeds: the live market-data venues, each in its own folder with both sides of its protocol.
//!
//! - [`venue`]: the [`Venue`] trait every venue implements (client side: URL, channels,
//!   handshake, keepalive, stale limit, credentials, parser; server side for the mock exchange)
//!   and the [`Provider`] handle.
//! - [`connector`]: one live WebSocket connection as an async stream, with reconnects.
//! - [`reconnect`]: backoff with full jitter and the circuit breaker.
//! - [`event`]: what a parsed frame means, shared by every venue's parser.
//! - one folder per venue ([`alpaca`], [`binance`], [`coinbase`], [`coinbase_exchange`],
//!   [`finnhub`], [`kraken`], [`polygon`]): its wire types, parser and parser tests in
//!   `mod.rs`, its side of the mock exchange in `mock.rs`. [`VENUES`] lists them.
//!
//! Feeds drive sockets and nothing else: a connector reports its state and counters to the
//! [`FeedStatus`](crate::health::FeedStatus) it is handed, and yields batches that
//! [`crate::sources`] forwards to the core.

pub mod alpaca;
pub mod binance;
pub mod coinbase;
pub mod coinbase_exchange;
pub mod connector;
pub mod event;
pub mod finnhub;
pub mod kraken;
pub mod polygon;
pub mod reconnect;
pub mod venue;

pub use venue::{Credentials, Provider, Venue};

/// The venues configuration can name, in the order help texts list them. Adding a venue: its
/// folder, and one line here.
pub const VENUES: [Provider; 7] = [
    binance::PROVIDER,
    coinbase::PROVIDER,
    coinbase_exchange::PROVIDER,
    kraken::PROVIDER,
    finnhub::PROVIDER,
    alpaca::PROVIDER,
    polygon::PROVIDER,
];
