//! Rewind's S3 operations, below the HTTP front: [`Forwarder`] implements s3s's `S3` trait
//! by sending each operation to the upstream through aws-sdk-s3, and drives every mutation
//! of a protected bucket through `rewind_capture`'s protocol (lock, capture-before-destroy,
//! intent, forward while teeing the body into the vault, commit or abort). The gateway
//! crate wraps it in a server (listeners, authentication, admin API, timers).

pub mod errors;
pub mod lean;
mod lenient;
mod meta;
pub mod metrics;
mod mutation;
mod mutations;
pub mod request;
mod s3;
mod sdk;
mod tee;

pub use lean::LeanUpstream;
pub use lenient::as_s3_writes;
pub use metrics::UpstreamMetrics;
pub use request::Anonymous;
pub use s3::{Forwarder, POST_OBJECT_REFUSAL};
