//! Time-travel views: read-only S3 access to one bucket as it was at one journal position.
//!
//! A view is an access key pair (`rewind view create`). The gateway's access check finds
//! the view a request was signed for ([`ViewKeys`]), refuses every operation a view does
//! not serve, and hands the rest to [`ViewServer`], which answers from the journal (what
//! existed at the position) and the vault (the bytes, checked chunk by chunk against their
//! keyed BLAKE3 as they stream). Nothing a view asks reaches the upstream, so a view works
//! when the live bucket was emptied or encrypted.

mod keys;
mod listing;
pub mod metrics;
mod object;
mod server;
mod versions;

use std::sync::Arc;

use rewind_journal::ViewEntry;
use s3s::{S3Error, S3ErrorCode};

pub use keys::ViewKeys;
pub use metrics::ViewMetrics;
pub use server::ViewServer;

/// The view a request was signed for: the access check puts it in the request's
/// extensions, and the forwarder sends such a request to [`ViewServer`], never upstream.
#[derive(Debug, Clone)]
pub struct ViewRequest(pub Arc<ViewEntry>);

/// The operations a view answers; any other is refused with [`refusal`].
pub const SERVED: [&str; 11] = [
    "ListBuckets",
    "HeadBucket",
    "GetBucketLocation",
    "GetBucketVersioning",
    "ListObjects",
    "ListObjectsV2",
    "ListObjectVersions",
    "HeadObject",
    "GetObject",
    "GetObjectTagging",
    "GetObjectAttributes",
];

/// RFC 3339 text of a time in µs since the epoch.
pub fn time_text(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{us}µs"))
}

/// How a message names a view: its key, bucket and position.
pub fn describe(view: &ViewEntry) -> String {
    format!(
        "time-travel view {} of bucket {} at seq:{} ({})",
        view.access_key_id,
        view.bucket,
        view.seq.0,
        time_text(view.at_us)
    )
}

/// The answer to an operation a view does not serve (every write among them).
pub fn refusal(view: &ViewEntry, operation: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessDenied,
        format!("{operation} is not allowed: this key is a read-only {}", describe(view)),
    )
}

/// The answer to a request for a bucket the view does not show.
pub(crate) fn other_bucket(view: &ViewEntry, bucket: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessDenied,
        format!("bucket {bucket} is not readable with this key: it is a {}", describe(view)),
    )
}

/// An internal failure of the stores, logged in full and answered without detail.
pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "{what}");
    S3Error::with_message(S3ErrorCode::InternalError, format!("{what}; the gateway's log has the details"))
}
