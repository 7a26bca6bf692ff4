//! What the service talks to in tests: a mock exchange on a random loopback port.

use std::net::SocketAddr;

use tickstream::mock_exchange::{MockExchange, MockOptions};
use tickstream::model::Trade;
use tokio_util::sync::CancellationToken;

/// Starts a mock exchange; returns its address and the token that stops it.
pub async fn start_mock(
    address: SocketAddr,
    trades: &[Trade],
    options: MockOptions,
) -> (SocketAddr, CancellationToken) {
    let exchange = MockExchange::bind(address, trades, options)
        .await
        .expect("binds");
    let address = exchange.local_addr().expect("bound");
    let cancel = CancellationToken::new();
    tokio::spawn(exchange.run(cancel.clone()));
    (address, cancel)
}
