//! The primary vault's handles as a gateway uses them when it has mirrors: writes queue a
//! copy for every mirror, deletions (garbage collection) queue the same deletion there once
//! the primary's succeeded.

use std::sync::Arc;

use bytes::Bytes;
use rewind_vault::VaultError;
use rewind_vault::backend::Backend;
use rewind_vault::reclaim::{Deleted, Reclaim};

use super::{Mirrors, Task};

/// The primary vault's storage, telling the mirrors what it wrote.
pub struct Mirrored {
    inner: Arc<dyn Backend>,
    mirrors: Arc<Mirrors>,
}

impl Mirrored {
    /// `mirrors.primary()`, queueing each object written for every mirror.
    pub fn new(mirrors: Arc<Mirrors>) -> Self {
        Self { inner: mirrors.primary.clone(), mirrors }
    }
}

#[async_trait::async_trait]
impl Backend for Mirrored {
    async fn put(&self, name: &str, data: Bytes) -> Result<(), VaultError> {
        let bytes = data.len() as u64;
        let outcome = self.inner.put(name, data.clone()).await;
        // Also when it existed: whoever wrote it may have died before its mirrors had it.
        // Its bytes go along only when they are what the primary holds now.
        match &outcome {
            Ok(()) => self.mirrors.queue(&Task::Copy { name: name.to_owned(), bytes, data: Some(data) }),
            Err(VaultError::AlreadyExists { .. }) => {
                self.mirrors.queue(&Task::Copy { name: name.to_owned(), bytes, data: None });
            }
            Err(_) => {}
        }
        outcome
    }
    async fn get(&self, name: &str) -> Result<Bytes, VaultError> {
        self.inner.get(name).await
    }
    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, VaultError> {
        self.inner.get_range(name, offset, len).await
    }
    async fn get_tail(&self, name: &str, len: u64) -> Result<(Bytes, u64), VaultError> {
        self.inner.get_tail(name, len).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, VaultError> {
        self.inner.list(prefix).await
    }
    async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<String>, VaultError> {
        self.inner.list_after(prefix, after).await
    }
    async fn exists(&self, name: &str) -> Result<bool, VaultError> {
        self.inner.exists(name).await
    }
}

/// The primary vault's deleting handle, passing each deletion on to the mirrors once the
/// primary's succeeded: mirrors follow the primary's garbage collection, never lead it.
pub struct MirroredReclaim {
    inner: Arc<dyn Reclaim>,
    mirrors: Arc<Mirrors>,
}

impl MirroredReclaim {
    /// `inner`, followed by `mirrors`.
    pub fn new(inner: Arc<dyn Reclaim>, mirrors: Arc<Mirrors>) -> Self {
        Self { inner, mirrors }
    }
}

#[async_trait::async_trait]
impl Reclaim for MirroredReclaim {
    async fn delete(&self, name: &str) -> Result<Deleted, VaultError> {
        let outcome = self.inner.delete(name).await?;
        if matches!(outcome, Deleted::Gone | Deleted::Missing) {
            self.mirrors.queue(&Task::Delete { name: name.to_owned() });
        }
        Ok(outcome)
    }
}
