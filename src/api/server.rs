//! Serving the API: the accept loop and one watched connection per client, on hyper-util's
//! server (HTTP/1.1 and cleartext HTTP/2 — h2c with prior knowledge — on the same port).
//!
//! `axum::serve` exposes neither hyper's buffer sizes nor any connection timeout, and an idle
//! or half-open connection there lives forever; so the service serves its connections itself:
//!
//! - **Connection bound**: at most [`ServerSettings::max_connections`] open at once; the next one
//!   is answered `503` with the JSON error body at once (one non-blocking write) and closed,
//!   counted (`tickstream_http_connections_refused_total`), so no client can hold the process's
//!   file descriptors.
//! - **Header timeout**: a connection that has not sent a whole request head within
//!   [`ServerSettings::header_timeout`] of opening (or of its first byte after an idle spell) is
//!   closed.
//! - **Keep-alive timeout**: a connection with no request in flight and nothing received for
//!   [`ServerSettings::keep_alive`] since its last response is closed (HTTP/2: GOAWAY first).
//! - **Stalled client**: a connection whose writes have been refused (the client not reading,
//!   its window full) for [`ServerSettings::stall`] is closed. A stalled client holds at most
//!   hyper's write buffer ([`WRITE_BUFFER`]), the kernel's send buffer ([`SEND_BUFFER`], which
//!   is also what it may take in before it counts as stalled) and, on the live stream, its
//!   queue of shared events.
//!
//! Each close is counted by reason (`tickstream_http_connections_closed_total{reason}`); the
//! request timeout of the API's guard covers the time between a request's head and its answer.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// The most a connection's response may have waiting in hyper's write buffer (and the most a
/// request head may take): a stalled client costs at most this, besides the kernel's socket
/// buffers.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// The kernel send buffer asked for each connection (Linux doubles it for its bookkeeping).
/// Without it the kernel grows a connection's buffer to megabytes, and a client that stopped
/// reading would be noticed only once those were full; 256 KiB still carries 2.5 MB/s over a
/// 100 ms round trip.
pub const SEND_BUFFER: usize = 256 * 1024;

/// How the service holds its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Connections open at once; more are refused with 503.
    pub max_connections: usize,
    /// Time a client has to send a whole request head.
    pub header_timeout: Duration,
    /// Time a connection may stay idle between requests.
    pub keep_alive: Duration,
    /// Time a client may leave its responses unread before it is disconnected.
    pub stall: Duration,
}

/// Defaults: 10,000 connections, 10 s for a request head, 75 s idle, 30 s stalled.
pub const DEFAULT_SERVER: ServerSettings = ServerSettings {
    max_connections: 10_000,
    header_timeout: Duration::from_secs(10),
    keep_alive: Duration::from_secs(75),
    stall: Duration::from_secs(30),
};

/// How often a connection's watchdog looks at it when no deadline is nearer.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The body of the 503 that a refused connection gets.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 94\r\n\r\n{\"error\":{\"code\":\"overloaded\",\"message\":\"too many open connections; try again shortly\"}}";

/// What a connection is doing, shared by its IO, its requests and its watchdog. Times are
/// milliseconds since the connection opened, plus one (0: never).
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Requests whose response has not been sent entirely.
    in_flight: AtomicUsize,
    /// Requests started.
    requests: AtomicU64,
    /// When the connection last became idle (no request in flight).
    idle_since: AtomicU64,
    /// The first byte received since it became idle (a request head arriving).
    reading_since: AtomicU64,
    /// Since when writes have been refused.
    write_blocked_since: AtomicU64,
    /// The connection was upgraded (WebSocket): the upgraded stream watches itself.
    upgraded: AtomicBool,
    /// Closes the connection (a handler found the client stalled).
    close: CancellationToken,
}

impl Activity {
    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn at(&self, stamp: u64) -> Instant {
        self.opened + Duration::from_millis(stamp.saturating_sub(1))
    }
}

/// A handle on the connection a request came on (in the request's extensions), so a handler
/// can close it: the live stream closes a client that stopped reading.
#[derive(Debug, Clone)]
pub struct ConnectionHandle(Arc<Activity>);

impl ConnectionHandle {
    /// Closes the connection now, whatever hyper has still to write to it.
    pub fn close(&self) {
        self.0.close.cancel();
    }
}

/// A TCP stream that tells its connection's [`Activity`] when bytes arrive and when writes are
/// refused. It holds the connection's slot under the bound, also after an upgrade.
struct WatchedIo {
    inner: TcpStream,
    activity: Arc<Activity>,
    _slot: OwnedSemaphorePermit,
}

impl WatchedIo {
    fn wrote<T>(&self, result: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        let blocked = &self.activity.write_blocked_since;
        match &result {
            Poll::Pending => {
                if blocked.load(Ordering::Relaxed) == 0 {
                    blocked.store(self.activity.now(), Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => blocked.store(0, Ordering::Relaxed),
        }
        result
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let activity = &self.activity;
            if activity.in_flight.load(Ordering::Relaxed) == 0
                && activity.reading_since.load(Ordering::Relaxed) == 0
            {
                activity
                    .reading_since
                    .store(activity.now(), Ordering::Relaxed);
            }
        }
        result
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Marks a request finished when its response body is dropped (sent, or the connection gone).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            activity.reading_since.store(0, Ordering::Relaxed);
            activity.idle_since.store(activity.now(), Ordering::Relaxed);
        }
    }
}

/// A response body that holds its request's [`InFlight`] mark.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The router, serving one connection: every request carries the [`ConnectionHandle`] and is
/// counted in flight until its response body is done.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let activity = Arc::clone(&self.activity);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.requests.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight(Arc::clone(&activity));
        request
            .extensions_mut()
            .insert(ConnectionHandle(Arc::clone(&activity)));
        let router = self.router.clone();
        Box::pin(async move {
            let Ok(response) = router.oneshot(request).await;
            if response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
                activity.upgraded.store(true, Ordering::Relaxed);
            }
            Ok(response.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

/// Why a connection was closed by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    HeaderTimeout,
    Idle,
    Stalled,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::Idle => "idle",
            Closed::Stalled => "stalled",
        }
    }
}

/// When the connection is due to be closed, and why, as things stand.
fn deadline(activity: &Activity, settings: &ServerSettings) -> Option<(Instant, Closed)> {
    let mut due: Option<(Instant, Closed)> = None;
    let mut consider = |at: Instant, why: Closed| {
        if due.is_none_or(|(first, _)| at < first) {
            due = Some((at, why));
        }
    };
    let blocked = activity.write_blocked_since.load(Ordering::Relaxed);
    if blocked != 0 {
        consider(activity.at(blocked) + settings.stall, Closed::Stalled);
    }
    if activity.in_flight.load(Ordering::Relaxed) == 0 && !activity.upgraded.load(Ordering::Relaxed)
    {
        let reading = activity.reading_since.load(Ordering::Relaxed);
        if activity.requests.load(Ordering::Relaxed) == 0 {
            // A new connection: its first request head is due within the header timeout.
            consider(
                activity.opened + settings.header_timeout,
                Closed::HeaderTimeout,
            );
        } else if reading != 0 {
            consider(
                activity.at(reading) + settings.header_timeout,
                Closed::HeaderTimeout,
            );
        } else {
            let idle = activity.idle_since.load(Ordering::Relaxed);
            consider(activity.at(idle) + settings.keep_alive, Closed::Idle);
        }
    }
    due
}

/// Serves `router` on `listener` until `shutdown` is cancelled; then stops accepting, asks every
/// connection to finish (HTTP/1.1: after the response in flight; HTTP/2: GOAWAY) and waits for
/// them, at most `drain`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServerSettings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // hyper's own header timeout also runs while a connection is idle between requests:
        // the watchdog keeps the two apart.
        .header_read_timeout(None)
        .max_buf_size(WRITE_BUFFER)
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(settings.keep_alive / 3))
        .max_send_buf_size(WRITE_BUFFER);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors or a connection reset before it was accepted: wait a
                // little rather than spin.
                metrics.http_accept_errors.inc();
                tracing::warn!(%error, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.http_connections_refused.inc();
            // One try: a client that cannot take 200 bytes at once gets only the close.
            let _ = stream.try_write(REFUSED);
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on an HTTP connection");
        }
        if let Err(error) = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER) {
            tracing::debug!(%error, "cannot set the send buffer of an HTTP connection");
        }
        let activity = Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            reading_since: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            close: CancellationToken::new(),
        });
        let io = WatchedIo {
            inner: stream,
            activity: Arc::clone(&activity),
            _slot: slot,
        };
        let service = ConnectionService {
            router: router.clone(),
            activity: Arc::clone(&activity),
        };
        let builder = Arc::clone(&builder);
        let metrics = Arc::clone(&metrics);
        let shutdown = shutdown.clone();
        metrics.http_connections.inc();
        connections.spawn(async move {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            watch(connection, &activity, &settings, &metrics, &shutdown).await;
            metrics.http_connections.dec();
        });
    }
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(deadline = ?drain, "HTTP connections did not finish within the deadline");
    }
}

/// Drives one connection, closing it when a deadline of [`deadline`] passes, a handler asks
/// ([`ConnectionHandle::close`]), or the service stops (gracefully: the response in flight is
/// finished).
async fn watch<C>(
    connection: C,
    activity: &Activity,
    settings: &ServerSettings,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) where
    C: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Graceful,
{
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    loop {
        let due = deadline(activity, settings);
        let wake = due.map_or(Instant::now() + WATCH_EVERY, |(at, _)| {
            at.min(Instant::now() + WATCH_EVERY)
        });
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            _ = activity.close.cancelled() => {
                metrics.http_closed(Closed::Stalled.label());
                return;
            }
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful();
            }
            _ = tokio::time::sleep_until(wake) => {
                if let Some((at, why)) = deadline(activity, settings)
                    && at <= Instant::now()
                {
                    metrics.http_closed(why.label());
                    if why == Closed::Idle {
                        // Nothing in flight: a graceful close is immediate for HTTP/1.1, and
                        // tells an HTTP/2 client not to start anything more.
                        connection.as_mut().graceful();
                        let _ = tokio::time::timeout(Duration::from_secs(1), connection.as_mut()).await;
                    }
                    return;
                }
            }
        }
    }
}

/// A connection that can be asked to finish gracefully.
trait Graceful {
    /// Finish what is in flight, then close.
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S, E, B> Graceful for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
