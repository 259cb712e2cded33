//! Rewind's shared vocabulary. Types here carry no I/O so every crate can use them.

mod codec;
pub mod error;
pub mod ids;
pub mod record;
pub mod redact;

pub use error::ErrorClass;
pub use ids::ChunkId;
pub use record::{Abort, Body, Commit, Effect, Intent, ObjectChange, ObjectVersion, Observed, Op, Seq};
pub use redact::{LogKey, set_key_fingerprint_key, set_key_redaction};
