//! Deleting vault objects: garbage collection's handle, and nobody else's. It is a trait of
//! its own, not part of [`crate::Backend`], so that the handle the gateway writes with
//! cannot remove history (G4); on an S3 vault it can use separate credentials.

use std::path::Path;

use crate::backend::{LocalBackend, check_name};
use crate::{S3Backend, VaultError};

/// What deleting one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// It is gone.
    Gone,
    /// There was nothing by that name (a sweep interrupted after deleting it).
    Missing,
    /// Object Lock retains it until this time (µs since the epoch): try again after it.
    Locked {
        /// The retain-until date.
        until_us: i64,
    },
}

/// Deletes vault objects.
#[async_trait::async_trait]
pub trait Reclaim: Send + Sync {
    /// Deletes `name`. Never bypasses Object Lock.
    async fn delete(&self, name: &str) -> Result<Deleted, VaultError>;
}

#[async_trait::async_trait]
impl Reclaim for LocalBackend {
    async fn delete(&self, name: &str) -> Result<Deleted, VaultError> {
        check_name(name)?;
        let path = self.root().join(name);
        tokio::task::spawn_blocking(move || remove(&path)).await.expect("invariant: no panic in delete")
    }
}

/// Removes a file. The removal is not fsync'd: a pack a crash brings back is simply
/// garbage again, condemned and deleted by a later pass.
fn remove(path: &Path) -> Result<Deleted, VaultError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(Deleted::Gone),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Deleted::Missing),
        Err(e) => Err(VaultError::Io(e)),
    }
}

#[async_trait::async_trait]
impl Reclaim for S3Backend {
    async fn delete(&self, name: &str) -> Result<Deleted, VaultError> {
        self.delete_unless_locked(name).await
    }
}
