//! Reconciling one key with the upstream: what the upstream holds now, under the key's
//! lock, against what the journal says is current.

use rewind_model::{Effect, LogKey, Op};

use super::{Capture, CaptureError};
use crate::request::RequestInfo;

/// What reconciling a key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// The journal already holds the upstream's current version (or both say absent).
    Unchanged,
    /// A version the journal lacked was captured (its size).
    Captured(u64),
    /// The key was gone upstream without a journaled delete; the delete is now journaled.
    Deleted,
}

impl Capture {
    /// Brings the journal's view of `bucket`/`key` up to the upstream's.
    pub async fn reconcile_key(&self, bucket: &str, key: &str, info: &RequestInfo) -> Result<Reconciled, CaptureError> {
        let _lock = self.lock(bucket, key).await;
        let current = self.current(bucket, key)?;
        match (self.head(bucket, key, None).await?, current) {
            (None, None) => Ok(Reconciled::Unchanged),
            (None, Some(_)) => {
                let pending = self.begin(Op::Vanished, bucket, key, info).await?;
                self.commit(pending, Effect::Deleted { version_id: None }).await?;
                tracing::warn!(bucket, key = %LogKey(key), "an object was deleted behind the gateway's back; journaled its delete");
                Ok(Reconciled::Deleted)
            }
            (Some(head), Some(v)) if v.etag == head.etag && v.size == head.size => Ok(Reconciled::Unchanged),
            (Some(head), _) => Ok(match self.capture_existing(bucket, key, &head, info).await? {
                Some(size) => Reconciled::Captured(size),
                None => Reconciled::Unchanged,
            }),
        }
    }
}
