//! What views serve, for Prometheus: requests per operation, bytes sent, views open.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Metric names.
pub mod names {
    pub const VIEW_REQUESTS_TOTAL: &str = "rewind_view_requests_total";
    pub const VIEW_SENT_BYTES_TOTAL: &str = "rewind_view_sent_bytes_total";
    pub const VIEWS_OPEN: &str = "rewind_views_open";
}

/// The views' metrics.
#[derive(Clone)]
pub struct ViewMetrics {
    /// Requests a view answered, by operation and outcome (`ok`, `error`).
    pub requests: IntCounterVec,
    /// Object bytes sent from the vault through views.
    pub sent_bytes: IntCounter,
    /// Views open (not expired, not removed).
    pub open: IntGauge,
}

impl ViewMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    names::VIEW_REQUESTS_TOTAL,
                    "S3 requests answered by time-travel views, by operation and outcome.",
                ),
                &["operation", "outcome"],
            )
            .expect("invariant: static metric definition"),
            sent_bytes: IntCounter::new(
                names::VIEW_SENT_BYTES_TOTAL,
                "Object bytes sent from the vault through time-travel views.",
            )
            .expect("invariant: static metric definition"),
            open: IntGauge::new(names::VIEWS_OPEN, "Time-travel views open (neither expired nor removed).")
                .expect("invariant: static metric definition"),
        };
        registry.register(Box::new(m.requests.clone())).expect("invariant: registered once");
        registry.register(Box::new(m.sent_bytes.clone())).expect("invariant: registered once");
        registry.register(Box::new(m.open.clone())).expect("invariant: registered once");
        m
    }

    /// Unregistered metrics, for tests and programs without a registry.
    pub fn unregistered() -> Self {
        Self::register(&Registry::new())
    }
}
