//! The stores the suite runs the embedded engines over (PostgreSQL's is in `postgres.rs`).

use std::sync::Arc;

use super::Fixture;
use crate::Access;
use crate::engine::Engine;

/// The RocksDB engine in a temporary directory.
pub struct RocksFixture(tempfile::TempDir);

impl RocksFixture {
    /// A fresh directory.
    pub fn new() -> Self {
        Self(tempfile::tempdir().expect("a temporary directory"))
    }
}

impl Default for RocksFixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture for RocksFixture {
    fn engine(&self) -> Arc<dyn Engine> {
        Arc::new(crate::RocksEngine::open(self.0.path(), Access::ReadWrite).expect("the journal opens"))
    }
}

/// The memory engine; "reopening" hands out the same store.
#[derive(Default)]
pub struct MemoryFixture(Arc<crate::MemoryEngine>);

impl Fixture for MemoryFixture {
    fn engine(&self) -> Arc<dyn Engine> {
        self.0.clone()
    }
}
