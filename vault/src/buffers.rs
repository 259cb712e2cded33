//! Chunk buffers, recycled. A capture cuts a chunk about every megabyte; a buffer fresh
//! from the allocator is fresh pages, each faulted in and zeroed by the kernel as the
//! chunk is copied into it (perf on a gateway capturing 64 MiB PUTs: 5.8% of its CPU in
//! page faults under that copy). The buffer of a chunk sealed and added to its pack comes
//! back here and holds a later chunk, its pages already mapped.
//!
//! Only large chunks take part: a small object's one chunk keeps an exact allocation,
//! which the allocator serves from memory it already has.

use std::sync::{Mutex, MutexGuard};

use rewind_crypto::aead::ENVELOPE_OVERHEAD;

/// Chunks at least this large are cut into kept buffers.
pub(crate) const KEPT_FROM: usize = 256 * 1024;
/// A kept buffer's capacity, at least: most chunks fit (FastCDC keeps them near the 1 MiB
/// average, between the 512 KiB minimum and twice the average), so a kept buffer serves
/// the next chunk whatever its size.
const ROOMY: usize = (2 << 20) + ENVELOPE_OVERHEAD;
/// Buffers kept at most: the chunks a few writers seal at once.
const KEPT: usize = 8;
/// A larger buffer (a rare large chunk's) goes back to the allocator: what is kept stays
/// under 32 MiB.
pub(crate) const KEPT_UP_TO: usize = 2 * ROOMY;

/// Buffers given back, for reuse.
struct Pool(Mutex<Vec<Vec<u8>>>);

/// The process's pool.
static FREE: Pool = Pool::new();

/// An empty buffer with room for `len` bytes: a kept one when `len` is large and one fits.
pub(crate) fn take(len: usize) -> Vec<u8> {
    FREE.take(len)
}

/// Gives back a buffer whose content is no longer needed; kept if it is one of
/// [`take`]'s roomy ones and fewer than [`KEPT`] are.
pub(crate) fn give(buf: Vec<u8>) {
    FREE.give(buf);
}

impl Pool {
    const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    fn free(&self) -> MutexGuard<'_, Vec<Vec<u8>>> {
        // A panic elsewhere while holding it leaves only buffers behind: still usable.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&self, len: usize) -> Vec<u8> {
        if len < KEPT_FROM {
            return Vec::with_capacity(len);
        }
        let kept = {
            let mut free = self.free();
            free.iter().position(|b| b.capacity() >= len).map(|i| free.swap_remove(i))
        };
        match kept {
            Some(mut buf) => {
                buf.clear();
                buf
            }
            None => Vec::with_capacity(len.max(ROOMY)),
        }
    }

    fn give(&self, buf: Vec<u8>) {
        if !(ROOMY..=KEPT_UP_TO).contains(&buf.capacity()) {
            return;
        }
        let mut free = self.free();
        if free.len() < KEPT {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_come_back_small_ones_do_not_and_few_are_kept() {
        // A pool of its own: other tests in this process use the process's.
        let pool = Pool::new();
        let (take, give) = (|len| pool.take(len), |buf| pool.give(buf));
        let large = take(1 << 20);
        assert!(large.capacity() >= ROOMY, "room for most chunks");
        let at = large.as_ptr();
        give(large);
        let again = take(1 << 20);
        assert_eq!(again.as_ptr(), at, "the same buffer, pages already mapped");
        give(again);

        let small = take(4096);
        assert_eq!(small.capacity(), 4096, "a small chunk gets an exact allocation");
        give(small);
        assert!(pool.free().iter().all(|b| b.capacity() >= ROOMY), "and it is not kept");

        let many: Vec<_> = (0..KEPT + 3).map(|_| take(1 << 20)).collect();
        many.into_iter().for_each(give);
        assert_eq!(pool.free().len(), KEPT);
        let huge = take(8 << 20);
        assert!(huge.capacity() >= 8 << 20);
        pool.free().clear();
        give(huge);
        assert!(pool.free().is_empty(), "a buffer far past the usual size goes back to the allocator");
    }
}
