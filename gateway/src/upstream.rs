//! The upstream: its client (`rewind_capture::upstream`), or the embedded one
//! (`rewind_embedded`) when none is configured.

pub use rewind_capture::upstream::{UpstreamTarget, client, longest_rest, paced, stall_grace, unsigned_client};
pub use rewind_embedded::EmbeddedUpstream;
