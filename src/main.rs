//! The `tickstream` binary: command line → settings → telemetry → [`tickstream::App`] → run until
//! Ctrl-C or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use tickstream::config::Cli;
use tickstream::{App, Settings};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Cli::parse().into_serve_args();
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
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: tickstream::config::ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args)?;
    let app = App::build(settings).await?;
    app.run_until_stopped(tickstream::shutdown::signal()).await
}
