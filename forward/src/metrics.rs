//! The forwarder's own metric: how long the upstream takes to answer. It registers in the
//! gateway's registry, beside the capture engine's.

use prometheus::{HistogramOpts, HistogramVec, Registry};
use rewind_capture::metrics::LATENCY_BUCKETS;

/// Metric names, re-exported by the gateway's `metrics::names`.
pub mod names {
    pub const UPSTREAM_REQUEST_DURATION_SECONDS: &str = "rewind_upstream_request_duration_seconds";
}

/// Time until the upstream answered, by operation and outcome.
#[derive(Clone)]
pub struct UpstreamMetrics {
    duration: HistogramVec,
}

impl UpstreamMetrics {
    /// Creates the metric and registers it in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let duration = HistogramVec::new(
            HistogramOpts::new(
                names::UPSTREAM_REQUEST_DURATION_SECONDS,
                "Time until the upstream answered (headers), by operation and outcome.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["operation", "outcome"],
        )
        .expect("invariant: static metric definition");
        registry.register(Box::new(duration.clone())).expect("invariant: metric names are unique");
        Self { duration }
    }

    /// Records one upstream call.
    pub fn observe(&self, operation: &str, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "error" };
        self.duration.with_label_values(&[operation, outcome]).observe(seconds);
    }
}
