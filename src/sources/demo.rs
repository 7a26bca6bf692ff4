//! The demo source: the bundled sample served by an in-process mock exchange on a free loopback
//! port, read through the real Binance connector.

use std::net::SocketAddr;
use std::time::Duration;

use crate::feeds::connector::FeedSpec;
use crate::mock_exchange::{MockExchange, MockOptions};
use crate::replay::{ReplaySource, Speed, load_all};
use crate::sources::SourceError;

/// Speed of the embedded sample when no speed is given.
pub const EMBEDDED_SPEED: f64 = 10.0;
/// Longest wall-clock pause of the embedded sample when none is given.
pub const EMBEDDED_MAX_PAUSE: Duration = Duration::from_secs(1);

/// The demo's mock exchange (bound, not yet serving) and the feed that reads it.
pub async fn exchange(
    speed: Speed,
    max_pause: Option<Duration>,
) -> Result<(MockExchange, FeedSpec), SourceError> {
    let trades = load_all(ReplaySource::embedded_sample()).await?;
    let mut symbols: Vec<String> = trades.iter().map(|t| t.symbol.to_string()).collect();
    symbols.sort();
    symbols.dedup();
    let options = MockOptions {
        provider: crate::feeds::binance::PROVIDER,
        speed,
        repeat: true,
        max_pause,
        ..MockOptions::default()
    };
    let exchange = MockExchange::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &trades, options)
        .await
        .map_err(SourceError::Demo)?;
    let spec = FeedSpec {
        provider: crate::feeds::binance::PROVIDER,
        url: exchange.url().map_err(SourceError::Demo)?,
        symbols,
        channels: vec!["trade".to_string()],
        credentials: None,
    };
    Ok((exchange, spec))
}
