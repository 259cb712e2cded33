//! Write epochs: how garbage collection knows that no write still relies on a chunk it is
//! about to delete.
//!
//! A write looks chunks up in the index (to deduplicate) long before the version that uses
//! them is journaled. GC therefore removes a dead pack's index entries first, so that later
//! writes store fresh copies, then waits for every write that began before that moment to
//! end ([`Epochs::settle`]), and only then checks again what is live. Anything that adds
//! chunk references (a client mutation from its first vault lookup to its commit, an
//! import, a restore reading chunks) holds a [`WriteGuard`] meanwhile.
//!
//! Entering is two atomic operations, with no lock: two counters, one per epoch parity,
//! as in read-copy-update. Settling flips the epoch and waits for the old counter to drain;
//! new writes are never held up by it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The write epochs of one vault.
#[derive(Debug, Default)]
pub struct Epochs {
    current: AtomicU64,
    active: [AtomicUsize; 2],
    /// One settle at a time, so the two counters suffice.
    settling: tokio::sync::Mutex<()>,
}

/// A write in progress; dropping it ends the write.
#[derive(Debug)]
#[must_use = "the write counts as in progress only while the guard lives"]
pub struct WriteGuard {
    epochs: Arc<Epochs>,
    slot: usize,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        self.epochs.active[self.slot].fetch_sub(1, Ordering::AcqRel);
    }
}

/// How often a settle looks whether the old epoch's writes have ended.
const POLL: Duration = Duration::from_millis(2);

impl Epochs {
    /// Starts a write in the current epoch.
    pub fn enter(self: &Arc<Self>) -> WriteGuard {
        loop {
            let epoch = self.current.load(Ordering::Acquire);
            let slot = (epoch % 2) as usize;
            self.active[slot].fetch_add(1, Ordering::AcqRel);
            // Counted in the epoch that is still current: a settle that flipped it meanwhile
            // might have seen this slot drained already, so enter the new one instead.
            if self.current.load(Ordering::Acquire) == epoch {
                return WriteGuard { epochs: self.clone(), slot };
            }
            self.active[slot].fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Returns once every write that entered before this call has ended. Writes that enter
    /// meanwhile are not waited for.
    pub async fn settle(&self) {
        let _one = self.settling.lock().await;
        let old = self.current.fetch_add(1, Ordering::AcqRel);
        let slot = (old % 2) as usize;
        while self.active[slot].load(Ordering::Acquire) != 0 {
            tokio::time::sleep(POLL).await;
        }
    }

    /// Writes in progress.
    pub fn in_progress(&self) -> usize {
        self.active.iter().map(|a| a.load(Ordering::Acquire)).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settle_waits_for_earlier_writes_only() {
        let epochs = Arc::new(Epochs::default());
        let early = epochs.enter();
        let settle = {
            let epochs = epochs.clone();
            tokio::spawn(async move { epochs.settle().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A write entering while the settle waits does not hold it up.
        let late = epochs.enter();
        assert!(!settle.is_finished(), "settled while an earlier write was in progress");
        drop(early);
        tokio::time::timeout(Duration::from_secs(5), settle).await.unwrap().unwrap();
        assert_eq!(epochs.in_progress(), 1);
        // The next settle waits for the late write.
        let settle = {
            let epochs = epochs.clone();
            tokio::spawn(async move { epochs.settle().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!settle.is_finished());
        drop(late);
        tokio::time::timeout(Duration::from_secs(5), settle).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn settle_with_no_writes_returns_at_once() {
        let epochs = Arc::new(Epochs::default());
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(1), epochs.settle()).await.unwrap();
        }
    }
}
