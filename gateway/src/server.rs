//! Accept loops shared by every listener (S3, admin, embedded upstream): TCP_NODELAY on
//! each connection, a cap on concurrent connections, a header read timeout, and a
//! graceful drain with a deadline on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// How a listener treats its connections.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections served at once; the rest wait in the kernel backlog.
    pub max_connections: usize,
    /// Time a client may take to send request headers.
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

/// Serves `service` on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve<S, B>(
    name: &'static str,
    listener: TcpListener,
    service: S,
    limits: ConnLimits,
    shutdown: CancellationToken,
    metrics: Option<Metrics>,
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
    builder.http2().timer(TokioTimer::new());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();

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
        let conn = builder.serve_connection(TokioIo::new(stream), service.clone()).into_owned();
        let conn = graceful.watch(conn);
        let metrics = metrics.clone();
        if let Some(m) = &metrics {
            m.connections.inc();
            m.connections_active.inc();
        }
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(listener = name, %peer, error = %e, "connection ended with an error");
            }
            if let Some(m) = metrics {
                m.connections_active.dec();
            }
            drop(permit);
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => debug!(listener = name, "all connections drained"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            warn!(listener = name, grace = ?limits.shutdown_grace, "shutdown grace period over; closing remaining connections");
        }
    }
    info!(listener = name, "stopped");
}
