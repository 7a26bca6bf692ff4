//! The `tickstream` binary: command line → settings → telemetry → [`tickstream::App`] → run until
//! Ctrl-C or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use tickstream::config::{Cli, Command, MockExchangeArgs};
use tickstream::{App, Settings};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let command = Cli::parse().into_command();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::MockExchange(args) => runtime.block_on(mock_exchange(*args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn mock_exchange(args: MockExchangeArgs) -> anyhow::Result<()> {
    let exchange = tickstream::startup::mock_exchange_from_args(args).await?;
    tracing::info!(url = %exchange.url()?, "mock exchange serving");
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        tickstream::shutdown::signal().await;
        stop.cancel();
    });
    exchange.run(cancel).await;
    Ok(())
}

async fn serve(mut args: tickstream::config::ServeArgs) -> anyhow::Result<()> {
    if args.api_token.is_none() {
        args.api_token = std::env::var(tickstream::config::API_TOKEN_ENV).ok();
    }
    let settings = Settings::load(args)?;
    let app = App::build(settings).await?;
    app.run_until_stopped(tickstream::shutdown::signal()).await
}
