//! Every metric the gateway exports: its HTTP front's, and the capture engine's
//! (`rewind_capture::metrics`) in the same registry. Names and labels follow STYLE.md: `rewind_` prefix,
//! base units as suffix, label values from closed sets only (operation names, status
//! codes, small enums) — never a bucket, key, address or error text.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Metric names, in one place so dashboards, alerts and code agree.
pub mod names {
    pub use rewind_capture::metrics::names::*;
    pub use rewind_forward::metrics::names::*;
    pub const REQUESTS_TOTAL: &str = "rewind_requests_total";
    pub const REQUEST_DURATION_SECONDS: &str = "rewind_request_duration_seconds";
    pub const CLIENT_RECEIVED_BYTES_TOTAL: &str = "rewind_client_received_bytes_total";
    pub const CLIENT_SENT_BYTES_TOTAL: &str = "rewind_client_sent_bytes_total";
    pub const CONNECTIONS_ACTIVE: &str = "rewind_connections_active";
    pub const CONNECTIONS_TOTAL: &str = "rewind_connections_total";
    pub const REQUESTS_IN_FLIGHT: &str = "rewind_requests_in_flight";
    pub const UPSTREAM_UP: &str = "rewind_upstream_up";
    pub const BUILD_INFO: &str = "rewind_build_info";
    pub const WORKER_THREADS: &str = "rewind_worker_threads";
}

pub use rewind_capture::metrics::{record_kind, refusal};

/// Label value for requests rejected before s3s resolved an operation (bad signature,
/// malformed URL): the operation is unknown then.
pub const UNRESOLVED_OPERATION: &str = "Unresolved";

use rewind_capture::metrics::LATENCY_BUCKETS;

/// The gateway's metrics and the registry that serves them.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The capture engine's metrics, in the same registry.
    pub engine: rewind_capture::Metrics,
    /// Time-travel views' metrics, in the same registry.
    pub views: rewind_views::ViewMetrics,
    /// The forwarder's upstream latency, in the same registry.
    pub upstream: rewind_forward::UpstreamMetrics,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub received_bytes: IntCounterVec,
    pub sent_bytes: IntCounterVec,
    pub connections_active: IntGauge,
    pub connections: IntCounter,
    pub requests_in_flight: IntGauge,
    pub upstream_up: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let engine = rewind_capture::Metrics::register(&registry);
        let views = rewind_views::ViewMetrics::register(&registry);
        let upstream = rewind_forward::UpstreamMetrics::register(&registry);
        let m = Self {
            engine,
            views,
            upstream,
            requests: IntCounterVec::new(
                Opts::new(names::REQUESTS_TOTAL, "S3 requests answered, by operation and HTTP status."),
                &["operation", "status_code"],
            )
            .expect("invariant: static metric definition"),
            request_duration: HistogramVec::new(
                HistogramOpts::new(
                    names::REQUEST_DURATION_SECONDS,
                    "Time from request start to the last response byte.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["operation"],
            )
            .expect("invariant: static metric definition"),
            received_bytes: IntCounterVec::new(
                Opts::new(names::CLIENT_RECEIVED_BYTES_TOTAL, "Request body bytes received from clients."),
                &["operation"],
            )
            .expect("invariant: static metric definition"),
            sent_bytes: IntCounterVec::new(
                Opts::new(names::CLIENT_SENT_BYTES_TOTAL, "Response body bytes sent to clients."),
                &["operation"],
            )
            .expect("invariant: static metric definition"),
            connections_active: IntGauge::new(names::CONNECTIONS_ACTIVE, "Client connections open now.")
                .expect("invariant: static metric definition"),
            connections: IntCounter::new(names::CONNECTIONS_TOTAL, "Client connections accepted.")
                .expect("invariant: static metric definition"),
            requests_in_flight: IntGauge::new(names::REQUESTS_IN_FLIGHT, "S3 requests being served now.")
                .expect("invariant: static metric definition"),
            upstream_up: IntGauge::new(
                names::UPSTREAM_UP,
                "1 when the last readiness probe of the upstream succeeded.",
            )
            .expect("invariant: static metric definition"),
            registry,
        };
        let build_info = IntGaugeVec::new(
            Opts::new(names::BUILD_INFO, "Always 1; labels say which build is running."),
            &["version", "commit"],
        )
        .expect("invariant: static metric definition");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), option_env!("REWIND_COMMIT").unwrap_or("unknown")])
            .set(1);
        let workers = IntGauge::new(names::WORKER_THREADS, "Threads serving requests (server.worker_threads).")
            .expect("invariant: static metric definition");
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            workers.set(i64::try_from(runtime.metrics().num_workers()).unwrap_or(i64::MAX));
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 10] = [
            Box::new(m.requests.clone()),
            Box::new(m.request_duration.clone()),
            Box::new(m.received_bytes.clone()),
            Box::new(m.sent_bytes.clone()),
            Box::new(m.connections_active.clone()),
            Box::new(m.connections.clone()),
            Box::new(m.requests_in_flight.clone()),
            Box::new(m.upstream_up.clone()),
            Box::new(build_info),
            Box::new(workers),
        ];
        for c in collectors {
            m.registry.register(c).expect("invariant: metric names are unique");
        }
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("invariant: text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("invariant: the text encoder writes UTF-8")
    }

    /// The connection counters of the S3 listener.
    pub fn connections(&self) -> rewind_embedded::server::ConnMetrics {
        rewind_embedded::server::ConnMetrics {
            connections: self.connections.clone(),
            connections_active: self.connections_active.clone(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
