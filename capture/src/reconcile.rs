//! Reconciling one key with the upstream: what the upstream holds now, under the key's
//! lock, against what the journal says is current.
//!
//! A version the journal lacks is read into the vault without making its chunks durable
//! ([`Staged`]): a pass stages many objects, makes them durable with one vault sync (small
//! objects share packs instead of taking one each), and only then commits them
//! ([`Capture::commit_staged`]). Each staged object keeps its key locked until then.

use rewind_model::{Effect, LogKey, ObjectVersion, Op};

use super::{Capture, CaptureError, Held};
use crate::Actor;

/// What reconciling a key found.
pub enum Reconciled {
    /// The journal already holds the upstream's current version (or both say absent).
    Unchanged,
    /// A version the journal lacked is in the vault, not yet durable nor journaled.
    Staged(Box<Staged>),
    /// The key was gone upstream without a journaled delete; the delete is now journaled.
    Deleted,
}

/// A captured version waiting for the vault sync that makes it durable, with its key's
/// lock. Nothing is journaled until then: a capture changes nothing upstream.
pub struct Staged {
    bucket: String,
    key: String,
    version: ObjectVersion,
    lock: Held,
    /// Until it is journaled, garbage collection keeps what it found in the vault.
    _writes: rewind_vault::WriteGuard,
}

impl Staged {
    /// Bytes of the object.
    pub fn size(&self) -> u64 {
        self.version.size
    }
}

impl Capture {
    /// Brings the journal's view of `bucket`/`key`, whose `lock` the caller holds, up to
    /// the upstream's. A version to capture comes back [`Reconciled::Staged`], still
    /// holding the lock: commit it with [`Capture::commit_staged`].
    pub async fn reconcile_key(
        &self,
        bucket: &str,
        key: &str,
        actor: &Actor,
        lock: Held,
    ) -> Result<Reconciled, CaptureError> {
        let Some(current) = self.current(bucket, key)? else {
            // Nothing journaled (the usual case of an import): read the object straight
            // away; the GET says what it is, or that it is not there.
            return self.stage(bucket, key, None, lock).await;
        };
        match self.head(bucket, key, None).await? {
            None => {
                self.observe(Op::Vanished, bucket, key, actor, Effect::Deleted { version_id: None }).await?;
                tracing::warn!(bucket, key = %LogKey(key), "an object was deleted behind the gateway's back; journaled its delete");
                Ok(Reconciled::Deleted)
            }
            Some(head) if current.etag == head.etag && current.size == head.size => Ok(Reconciled::Unchanged),
            Some(head) => self.stage(bucket, key, head.version_id.as_deref(), lock).await,
        }
    }

    async fn stage(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        lock: Held,
    ) -> Result<Reconciled, CaptureError> {
        let writes = self.vault.enter_write();
        Ok(match self.read_upstream(bucket, key, version_id, false).await? {
            Some(version) => Reconciled::Staged(Box::new(Staged {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                version,
                lock,
                _writes: writes,
            })),
            // Vanished since it was listed: the next pass sees it gone.
            None => Reconciled::Unchanged,
        })
    }

    /// Makes every staged version durable with one vault sync, then journals each; returns
    /// each one's size or error, in order. The keys' locks are released on return.
    pub async fn commit_staged(&self, staged: Vec<Box<Staged>>, actor: &Actor) -> Vec<Result<u64, CaptureError>> {
        if staged.is_empty() {
            return Vec::new();
        }
        if let Err(e) = self.vault.sync().await {
            let failed = || CaptureError::Vault(rewind_vault::VaultError::Io(std::io::Error::other(e.to_string())));
            return staged.iter().map(|_| Err(failed())).collect();
        }
        // Appended together, so the journal writes them with one sync.
        futures::future::join_all(staged.into_iter().map(|s| async move {
            let Staged { bucket, key, version, lock, _writes } = *s;
            let size = version.size;
            let result = self.observe(Op::CaptureExisting, &bucket, &key, actor, Effect::Version(version)).await;
            drop(lock);
            result?;
            crate::protect::log_captured(&bucket, &key, size);
            Ok(size)
        }))
        .await
    }
}
