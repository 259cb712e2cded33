//! One memory budget (`vault.memory_budget`) for everything requests hold, split into
//! shares so that waiting for one never stops another from being released.
//!
//! What holds memory, and which share pays for it:
//! - **look-ahead**: a writer's chunker buffer, reserved whole when the writer starts
//!   (its object's size, or one maximum chunk and a piece when the size is unknown), so a
//!   writer never waits while holding part of it;
//! - **capture**: each cut chunk from the moment it leaves the chunker (twice its size:
//!   the chunk and its sealed copy) until its pack is durable in the vault. Sealing
//!   releases half; a durable pack releases the rest. When this share runs out while the
//!   open pack holds charges, the vault flushes that pack early to release them;
//! - **bodies**: request bodies read whole (XML: DeleteObjects, CompleteMultipartUpload);
//! - **restores**: objects a restore holds while writing them upstream.
//!
//! Each share is released by work that needs no other share (sealing, a pack upload, a
//! request finishing), and waiters of one share hold at most a reservation of another
//! that is never waited on again, so no set of waiters can block each other forever. A
//! request that cannot get its share within the capture timeout is refused with 503
//! SlowDown (review F11, F13: before this, 16 concurrent 64 MiB uploads held 581 MiB with
//! a 64 MiB budget, and a vault outage let refused uploads pile up without bound).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A share of the budget.
#[derive(Debug)]
pub struct Share {
    name: &'static str,
    size: usize,
    permits: Arc<Semaphore>,
}

/// Bytes of a share held; released when dropped.
#[derive(Debug)]
pub struct Charge {
    permit: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Splits `bytes` off into a charge of its own (fewer if this one holds fewer).
    pub fn split(&mut self, bytes: usize) -> Self {
        let bytes = bytes.min(self.bytes());
        Self { permit: self.permit.as_mut().and_then(|p| p.split(bytes)) }
    }

    /// A charge of nothing.
    pub fn none() -> Self {
        Self { permit: None }
    }

    /// Adds `other`'s bytes to this charge (both of one share).
    pub fn merge(&mut self, other: Self) {
        match (&mut self.permit, other.permit) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl Share {
    fn new(name: &'static str, size: usize) -> Self {
        let size = size.max(1);
        Self { name, size, permits: Arc::new(Semaphore::new(size)) }
    }

    /// The share's name (the `share` label of the budget metrics).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.size - self.permits.available_permits()
    }

    /// What a request for `bytes` is granted: never more than the whole share, so an
    /// object larger than the share still goes through (alone).
    fn clamp(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.min(self.size)).unwrap_or(u32::MAX)
    }

    /// Waits until `bytes` are free, then holds them.
    pub async fn acquire(&self, bytes: usize) -> Charge {
        if bytes == 0 {
            return Charge::none();
        }
        let permit = self.permits.clone().acquire_many_owned(self.clamp(bytes)).await;
        Charge { permit: Some(permit.expect("invariant: the budget is never closed")) }
    }

    /// Holds `bytes` if they are free now.
    pub fn try_acquire(&self, bytes: usize) -> Option<Charge> {
        if bytes == 0 {
            return Some(Charge::none());
        }
        self.permits.clone().try_acquire_many_owned(self.clamp(bytes)).ok().map(|p| Charge { permit: Some(p) })
    }
}

/// The budget and its shares.
#[derive(Debug)]
pub struct MemoryBudget {
    /// Writers' chunker buffers.
    pub lookahead: Share,
    /// Chunks being sealed, and the open pack until it is durable.
    pub capture: Share,
    /// Request bodies read whole.
    pub bodies: Share,
    /// Objects restores hold.
    pub restores: Share,
}

impl MemoryBudget {
    /// Splits `total` bytes: half for capture (a pack fills from it), a quarter for
    /// look-ahead (one maximum-chunk writer at the default 64 MiB, any number of small
    /// ones), an eighth each for request bodies and restores.
    pub fn new(total: usize) -> Self {
        Self {
            lookahead: Share::new("lookahead", total / 4),
            capture: Share::new("capture", total / 2),
            bodies: Share::new("bodies", total / 8),
            restores: Share::new("restores", total / 8),
        }
    }

    /// Every share, for metrics.
    pub fn shares(&self) -> [&Share; 4] {
        [&self.lookahead, &self.capture, &self.bodies, &self.restores]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn charges_release_on_drop_and_split() {
        let budget = MemoryBudget::new(64);
        let mut c = budget.capture.acquire(20).await;
        assert_eq!(budget.capture.used(), 20);
        let half = c.split(8);
        assert_eq!((c.bytes(), half.bytes()), (12, 8));
        drop(c);
        assert_eq!(budget.capture.used(), 8);
        assert!(budget.capture.try_acquire(32).is_none(), "only 24 of 32 are free");
        drop(half);
        // A request larger than the share gets the whole share, alone.
        let all = budget.capture.acquire(1_000).await;
        assert_eq!(all.bytes(), 32);
        assert!(budget.capture.try_acquire(1).is_none());
    }
}
