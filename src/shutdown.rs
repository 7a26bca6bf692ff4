//! Shutdown: the signals that stop the service, the deadline for draining, and the spawning of
//! tasks whose end shutdown waits for.

use std::time::Duration;

/// How long tasks get to finish after the stop signal before the process exits anyway.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        _ = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Spawns `task` on `tasks` (the tracker shutdown waits on); a panic is logged, never silent.
pub fn spawn_reported(
    tasks: &tokio_util::task::TaskTracker,
    name: &'static str,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let inner = tokio::spawn(task);
    tasks.spawn(async move {
        if let Err(error) = inner.await
            && error.is_panic()
        {
            tracing::error!(task = name, %error, "task panicked");
        }
    });
}
