//! Accept loops shared by every listener (S3, admin, embedded upstream): TCP_NODELAY on
//! each connection, a cap on concurrent connections, a header read timeout, idle
//! connections closed (HTTP/2 included), and a graceful drain with a deadline on shutdown.
//!
//! hyper's `header_read_timeout` covers HTTP/1 only: an HTTP/2 connection that sent its
//! preface and then nothing held one of the `max_connections` slots forever, so eight
//! 33-byte connections blocked a listener (review finding F9). Each connection here is
//! watched: with no request in flight for `idle_timeout`, it is shut down gracefully; and
//! HTTP/2 peers must answer keep-alive pings.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Requests one HTTP/2 connection may have open at once. hyper's default (200) let one
/// authenticated connection hold 200 XML bodies in memory (review R14); S3 clients open
/// more connections rather than more streams, so 32 costs them nothing.
const H2_MAX_STREAMS: u32 = 32;
/// HTTP/2 flow-control windows: what a peer may send before the gateway reads it, per
/// stream and per connection. hyper's defaults (1 MiB, 5 MiB) multiplied by
/// `max_connections` would pin gigabytes; S3 clients upload over HTTP/1.1 anyway.
const H2_STREAM_WINDOW: u32 = 256 << 10;
const H2_CONNECTION_WINDOW: u32 = 1 << 20;
/// How often an HTTP/2 peer is pinged; one that does not answer within the same time is
/// disconnected.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// How a listener treats its connections.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections served at once; the rest wait in the kernel backlog.
    pub max_connections: usize,
    /// Time a client may take to send request headers; also how long a connection may sit
    /// with no request in flight before it is closed.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish once shutdown starts.
    pub shutdown_grace: Duration,
}

/// Binds `addr`, saying which setting to change when that fails.
pub async fn bind(addr: &str, setting: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({e}); choose another address with {setting}"))
    })
}

/// What a listener counts of its connections.
#[derive(Clone)]
pub struct ConnMetrics {
    /// Connections accepted.
    pub connections: prometheus::IntCounter,
    /// Connections open now.
    pub connections_active: prometheus::IntGauge,
}

/// Serves `service` on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve<S, B>(
    name: &'static str,
    listener: TcpListener,
    service: S,
    limits: ConnLimits,
    shutdown: CancellationToken,
    metrics: Option<ConnMetrics>,
) where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    // Cancelled when the grace period is over: connections still open are dropped.
    let hard_stop = CancellationToken::new();

    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("invariant: the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        // Without this, small responses wait ~40 ms on Nagle + delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(listener = name, error = %e, "set_nodelay failed");
        }
        let activity = Arc::new(Activity::new());
        let service = Watched { inner: service.clone(), activity: activity.clone() };
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let metrics = metrics.clone();
        if let Some(m) = &metrics {
            m.connections.inc();
            m.connections_active.inc();
        }
        let (stop, hard_stop, idle) = (shutdown.clone(), hard_stop.clone(), limits.header_read_timeout);
        connections.spawn(async move {
            tokio::select! {
                result = watch(conn, &activity, idle, stop) => {
                    if let Err(e) = result {
                        debug!(listener = name, %peer, error = %e, "connection ended with an error");
                    }
                }
                () = hard_stop.cancelled() => {}
            }
            if let Some(m) = metrics {
                m.connections_active.dec();
            }
            drop(permit);
        });
    }

    drop(listener);
    connections.close();
    tokio::select! {
        () = connections.wait() => debug!(listener = name, "all connections drained"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            warn!(listener = name, grace = ?limits.shutdown_grace, "shutdown grace period over; closing remaining connections");
            hard_stop.cancel();
            connections.wait().await;
        }
    }
    info!(listener = name, "stopped");
}

type Conn<S> = hyper_util::server::conn::auto::Connection<'static, TokioIo<tokio::net::TcpStream>, S, TokioExecutor>;

/// Drives one connection: shut down gracefully once it has been idle for `idle`, or when
/// the listener stops.
async fn watch<S, B>(
    conn: Conn<Watched<S>>,
    activity: &Activity,
    idle: Duration,
    stop: CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    // A graceful close of an idle HTTP/2 connection waits for the peer to acknowledge a
    // ping; one that never answers would keep its slot until the keep-alive timeout (40 s).
    let mut close_by: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        let check = tokio::time::sleep(activity.next_idle_check(idle));
        tokio::select! {
            result = conn.as_mut() => return result,
            () = stop.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = check, if !closing => {
                if activity.idle_for() >= idle {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    close_by = Some(Box::pin(tokio::time::sleep(idle)));
                }
            }
            () = async { close_by.as_mut().expect("invariant: polled only when set").await }, if close_by.is_some() => {
                if activity.in_flight.load(Ordering::Relaxed) == 0 {
                    return Ok(()); // dropped: the socket closes
                }
                close_by = None;
            }
        }
    }
}

/// Requests in flight on one connection, and when the last one ended.
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `born` when the connection last had a request in flight.
    last_busy_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { born: Instant::now(), in_flight: AtomicUsize::new(0), last_busy_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_busy_ms.store(ms, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(self.clone())
    }

    /// How long the connection has had no request in flight (zero while it has one).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_busy_ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(last)
    }

    /// When to look again: when the connection would have been idle for `idle`.
    fn next_idle_check(&self, idle: Duration) -> Duration {
        idle.saturating_sub(self.idle_for()).max(Duration::from_millis(100))
    }
}

/// Marks a request in flight until its response body is done or dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A service that records its connection's activity.
#[derive(Clone)]
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, B> hyper::service::Service<http::Request<Incoming>> for Watched<S>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<WatchedBody<B>>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let busy = self.activity.begin();
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|body| WatchedBody { inner: body, _busy: busy }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it is dropped.
    pub struct WatchedBody<B> {
        #[pin]
        inner: B,
        _busy: Busy,
    }
}

impl<B: http_body::Body> http_body::Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
