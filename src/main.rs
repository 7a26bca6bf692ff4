//! The `tickstream` binary: command line → settings → telemetry → [`tickstream::App`] → run until
//! Ctrl-C or SIGTERM.

use std::process::ExitCode;

use std::io::{IsTerminal, Write};

use clap::Parser;
use tickstream::config::{Cli, Command, ExportArgs, LogFormat, MockExchangeArgs, QueryArgs};
use tickstream::{App, Settings};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than the system allocator: polars' large short-lived buffers cost glibc a
/// fresh `mmap` (and page faults) each; a history query from the command line spent a fifth of
/// its time in the kernel (`docs/history.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    init_logs(log_format);
    let command = cli.into_command();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {error}"
            );
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Serve(args) => runtime.block_on(serve(*args, log_format)),
        // The same process, publishing to the cluster instead of running the core.
        Command::Ingest(mut args) => {
            args.ingest = true;
            runtime.block_on(serve(*args, log_format))
        }
        Command::MockExchange(args) => runtime.block_on(mock_exchange(*args)),
        // History answers run on a blocking thread of the runtime (CSV files are read by the
        // replay readers, which are async).
        Command::Query(args) => runtime.block_on(query(*args)),
        Command::Export(args) => runtime.block_on(export(*args)),
    };
    // The tasks have drained (or missed their deadline): whatever still runs is not waited for,
    // so a stop signal always ends the process within seconds.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Never panic on a closed standard error.
            let _ = writeln!(std::io::stderr(), "error: {}", report(&error));
            ExitCode::FAILURE
        }
    }
}

/// How long the runtime waits for tasks still running once the service has stopped.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Logs go to standard error (standard output stays for data), coloured only on a terminal and
/// never when `NO_COLOR` is set; `--log-format json` writes one JSON object per line.
fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // A closed standard error (`2>&-`, a pager that quit) must not stop the service: a log line
    // that cannot be written is dropped, without a report to that same standard error.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(colour).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// An error and its causes on one line, each said once (a cause whose text its parent already
/// includes is not repeated).
fn report(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

async fn mock_exchange(args: MockExchangeArgs) -> anyhow::Result<()> {
    use tickstream::mock_exchange::MockExchange;
    let settings = args.settings()?;
    let exchange = if settings.source.format == tickstream::replay::ReplayFormat::RawFrames {
        let recording = tickstream::replay::read_text(&settings.source)?;
        MockExchange::bind_raw(settings.listen, &recording, settings.options).await?
    } else {
        let trades = tickstream::replay::load_all(settings.source).await?;
        MockExchange::bind(settings.listen, &trades, settings.options).await?
    };
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

async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let request = args.request()?;
    tokio::task::spawn_blocking(move || tickstream::history::command::query(&request)).await??;
    Ok(())
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let symbols: Option<Vec<String>> = args.symbols.as_deref().map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });
    let output = args.output.clone();
    let rows = tokio::task::spawn_blocking(move || {
        tickstream::history::command::export(
            &args.history,
            &args.from,
            &args.to,
            symbols.as_deref(),
            &args.output,
        )
    })
    .await??;
    tracing::info!(rows, file = %output.display(), "exported");
    Ok(())
}

async fn serve(
    mut args: tickstream::config::ServeArgs,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    if args.api_token.is_none() {
        args.api_token = std::env::var(tickstream::config::API_TOKEN_ENV).ok();
    }
    let mut settings = Settings::load(args)?;
    if std::io::stderr().is_terminal() && log_format == LogFormat::Text {
        settings.sources.progress = tickstream::replay::progress::ProgressOutput::Bars;
    }
    let app = App::build(settings).await?;
    app.run_until_stopped(tickstream::shutdown::signal()).await
}
