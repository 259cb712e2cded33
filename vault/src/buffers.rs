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

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn free() -> MutexGuard<'static, Vec<Vec<u8>>> {
    // A panic elsewhere while holding it leaves only buffers behind: still usable.
    FREE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An empty buffer with room for `len` bytes: a kept one when `len` is large and one fits.
pub(crate) fn take(len: usize) -> Vec<u8> {
    if len < KEPT_FROM {
        return Vec::with_capacity(len);
    }
    let kept = {
        let mut free = free();
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

/// Gives back a buffer whose content is no longer needed; kept if it is one of
/// [`take`]'s roomy ones and fewer than [`KEPT`] are.
pub(crate) fn give(buf: Vec<u8>) {
    if !(ROOMY..=KEPT_UP_TO).contains(&buf.capacity()) {
        return;
    }
    let mut free = free();
    if free.len() < KEPT {
        free.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test touches the process-wide list, so that no other test's buffers interfere.
    #[test]
    fn large_buffers_come_back_small_ones_do_not_and_few_are_kept() {
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
        assert!(free().iter().all(|b| b.capacity() >= ROOMY), "and it is not kept");

        let many: Vec<_> = (0..KEPT + 3).map(|_| take(1 << 20)).collect();
        many.into_iter().for_each(give);
        assert_eq!(free().len(), KEPT);
        let huge = take(8 << 20);
        assert!(huge.capacity() >= 8 << 20);
        free().clear();
        give(huge);
        assert!(free().is_empty(), "a buffer far past the usual size goes back to the allocator");
    }
}
