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

/// Like [`spawn_reported`], but `task` runs on an OS thread of its own (`tickstream-<name>`, with
/// a single-threaded runtime): a busy stage gets a core to itself. A task spawned on the shared
/// runtime would run on the worker of whoever woke it (tokio's LIFO slot), so the connector and
/// the analytics core would share one worker while the other stayed idle.
pub fn spawn_reported_on_thread(
    tasks: &tokio_util::task::TaskTracker,
    name: &'static str,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("tickstream-{name}"))
        .spawn(move || {
            runtime.block_on(task);
            let _ = done.send(());
        })?;
    tasks.spawn(async move {
        // The sender is dropped without a send only when the task panicked.
        if finished.await.is_err() {
            tracing::error!(task = name, "task panicked");
        }
    });
    Ok(())
}
