//! Per-key mutation locks, striped: the journal order of two writes to one key must be the
//! order in which the upstream applied them, so mutations of a key take turns.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// Stripes: enough that unrelated keys rarely share one under hundreds of concurrent
/// requests, few enough to cost nothing (a 4,096-entry vector of mutexes).
const STRIPES: usize = 4096;

/// The lock table.
pub struct KeyLocks {
    stripes: Vec<Arc<Mutex<()>>>,
    seed: u64,
}

/// Held locks; released on drop.
pub struct Held(#[allow(dead_code)] Vec<OwnedMutexGuard<()>>);

impl Default for KeyLocks {
    fn default() -> Self {
        Self { stripes: (0..STRIPES).map(|_| Arc::new(Mutex::new(()))).collect(), seed: rand::random() }
    }
}

impl KeyLocks {
    fn stripe(&self, bucket: &str, key: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, bucket, key).hash(&mut h);
        (h.finish() % STRIPES as u64) as usize
    }

    /// Locks one key.
    pub async fn lock(&self, bucket: &str, key: &str) -> Held {
        self.lock_all(bucket, std::iter::once(key)).await
    }

    /// Locks one key if no one holds it (nor another key of its stripe).
    pub fn try_lock(&self, bucket: &str, key: &str) -> Option<Held> {
        self.stripes[self.stripe(bucket, key)].clone().try_lock_owned().ok().map(|g| Held(vec![g]))
    }

    /// Locks several keys of one bucket. Stripes are taken in ascending order, so two
    /// requests locking overlapping sets cannot deadlock.
    pub async fn lock_all<'a>(&self, bucket: &str, keys: impl IntoIterator<Item = &'a str>) -> Held {
        let mut stripes: Vec<usize> = keys.into_iter().map(|k| self.stripe(bucket, k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.stripes[s].clone().lock_owned().await);
        }
        Held(guards)
    }
}
