//! Per-key mutation locks, striped: the journal order of two writes to one key must be the
//! order in which the upstream applied them, so mutations of a key take turns.
//!
//! On a shared journal (several gateways) a key's lock is also taken across gateways, as a
//! lock of the journal's engine named by a hash of bucket and key, after this process's
//! own stripe: requests of one gateway queue here, and only the first of them waits on
//! the others.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rewind_journal::engine::{EngineError, SharedLocks};
use rewind_journal::layout;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Stripes: enough that unrelated keys rarely share one under hundreds of concurrent
/// requests, few enough to cost nothing (a 4,096-entry vector of mutexes).
const STRIPES: usize = 4096;

/// Pause between tries of shared locks that the database could not be asked for.
const SHARED_RETRY: std::time::Duration = std::time::Duration::from_millis(500);
/// How long the database may stay unreachable before a lock is refused: the request then
/// fails (503) with nothing changed upstream, as any write does while the journal is down.
const SHARED_GIVE_UP: std::time::Duration = std::time::Duration::from_secs(5);

/// The lock table.
pub struct KeyLocks {
    stripes: Vec<Arc<Mutex<()>>>,
    seed: u64,
    shared: Option<Arc<dyn SharedLocks>>,
}

/// Held locks; released on drop.
pub struct Held {
    _local: Vec<OwnedMutexGuard<()>>,
    shared: Option<(Arc<dyn SharedLocks>, Vec<i64>)>,
    /// Shared locks only: the key lock ids under which intents were left open when taken.
    marked: Vec<i64>,
}

impl Held {
    /// Whether intents may have been left open on `bucket`/`key` (always, when the locks
    /// are this process's alone: then the journal is asked).
    pub fn may_have_open(&self, bucket: &str, key: &str) -> bool {
        self.shared.is_none() || self.marked.contains(&layout::key_lock_id(bucket, key))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((locks, ids)) = self.shared.take() {
            locks.release(ids);
        }
    }
}

impl Default for KeyLocks {
    fn default() -> Self {
        Self::new(None)
    }
}

impl KeyLocks {
    /// A lock table; with `shared`, keys are locked across the processes sharing them too.
    pub fn new(shared: Option<Arc<dyn SharedLocks>>) -> Self {
        Self { stripes: (0..STRIPES).map(|_| Arc::new(Mutex::new(()))).collect(), seed: rand::random(), shared }
    }

    fn stripe(&self, bucket: &str, key: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, bucket, key).hash(&mut h);
        (h.finish() % STRIPES as u64) as usize
    }

    /// Locks one key; fails only when the locks shared with other gateways cannot be
    /// reached.
    pub async fn lock(&self, bucket: &str, key: &str) -> Result<Held, EngineError> {
        self.lock_all(bucket, std::iter::once(key)).await
    }

    /// Locks one key if no one holds it (nor another key of its stripe). With shared locks
    /// it answers `None`: asking the other gateways needs a round trip (use `lock`).
    pub fn try_lock(&self, bucket: &str, key: &str) -> Option<Held> {
        if self.shared.is_some() {
            return None;
        }
        let guard = self.stripes[self.stripe(bucket, key)].clone().try_lock_owned().ok()?;
        Some(Held { _local: vec![guard], shared: None, marked: Vec::new() })
    }

    /// Locks several keys of one bucket. Stripes are taken in ascending order, so two
    /// requests locking overlapping sets cannot deadlock; then the shared locks, also in
    /// ascending order.
    pub async fn lock_all<'a>(
        &self,
        bucket: &str,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> Result<Held, EngineError> {
        let keys: Vec<&str> = keys.into_iter().collect();
        let mut stripes: Vec<usize> = keys.iter().map(|k| self.stripe(bucket, k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.stripes[s].clone().lock_owned().await);
        }
        let Some(locks) = &self.shared else { return Ok(Held { _local: guards, shared: None, marked: Vec::new() }) };
        let mut ids: Vec<i64> = keys.iter().map(|k| layout::key_lock_id(bucket, k)).collect();
        ids.sort_unstable();
        ids.dedup();
        let deadline = tokio::time::Instant::now() + SHARED_GIVE_UP;
        loop {
            match locks.acquire(ids.clone()).await {
                Ok(marked) => return Ok(Held { _local: guards, shared: Some((locks.clone(), ids)), marked }),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::warn!(bucket, error = %e, "cannot take a key's lock across gateways; retrying");
                    tokio::time::sleep(SHARED_RETRY).await;
                }
            }
        }
    }
}
