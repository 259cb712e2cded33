//! Content-defined chunking of a stream (FastCDC 2020, min 512 KiB / avg 1 MiB / max 8 MiB).
//!
//! Bodies arrive as pieces of any size; [`StreamingChunker`] buffers at most one maximum
//! chunk and cuts exactly where FastCDC would cut the whole object at once, so the same
//! content chunks (and deduplicates) the same way however the network split it.

use bytes::Bytes;
use fastcdc::v2020::{FastCDC, Normalization};

/// Chunk size bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSizes {
    /// No chunk is smaller, except an object's last (or only) one.
    pub min: u32,
    /// The typical size.
    pub avg: u32,
    /// No chunk is larger.
    pub max: u32,
}

impl Default for ChunkSizes {
    /// DESIGN.md: 512 KiB / 1 MiB / 8 MiB — large enough that per-chunk overhead (index
    /// entries, envelopes) stays under 0.01%, small enough that a local edit re-stores
    /// about a megabyte.
    fn default() -> Self {
        Self { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 }
    }
}

/// Consumed look-ahead is dropped once a maximum chunk's worth has been consumed. Waiting
/// longer moves less data but was measured slower (915-926 vs 1126-1137 MB/s chunking,
/// random data, `cargo bench -p rewind-vault --bench pipeline`): with a bigger buffer the
/// bytes copied in have left the cache before FastCDC scans them.
const COMPACT_AFTER_MAX_CHUNKS: usize = 1;

/// Cuts a stream into content-defined chunks.
///
/// The look-ahead lives in one buffer with a start offset; consumed bytes are dropped in
/// one move now and then, so each byte is copied about twice (in, and out as its chunk)
/// rather than once per later cut.
#[derive(Debug)]
pub struct StreamingChunker {
    sizes: ChunkSizes,
    seed: u64,
    buffer: Vec<u8>,
    start: usize,
}

impl StreamingChunker {
    /// A chunker with the given bounds and secret gear-hash seed.
    pub fn new(sizes: ChunkSizes, seed: u64) -> Self {
        Self { sizes, seed, buffer: Vec::new(), start: 0 }
    }

    /// Adds the next piece of the stream; returns the chunks it completed.
    pub fn push(&mut self, piece: &[u8]) -> Vec<Bytes> {
        if self.start >= COMPACT_AFTER_MAX_CHUNKS * self.sizes.max as usize {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(piece);
        let mut out = Vec::new();
        // A cut needs `max` bytes of look-ahead, unless the stream ends (see `finish`).
        while self.buffer.len() - self.start >= self.sizes.max as usize {
            out.push(self.cut());
        }
        out
    }

    /// Ends the stream; returns its last chunks (none for an empty stream). The chunker is
    /// empty afterwards.
    pub fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        while self.start < self.buffer.len() {
            out.push(self.cut());
        }
        out
    }

    fn cut(&mut self) -> Bytes {
        let s = self.sizes;
        let rest = &self.buffer[self.start..];
        let mut cdc = FastCDC::with_level_and_seed(rest, s.min, s.avg, s.max, Normalization::Level1, self.seed);
        let len = cdc.next().map_or(rest.len(), |c| c.length);
        let chunk = Bytes::copy_from_slice(&rest[..len]);
        self.start += len;
        chunk
    }
}

/// Chunks a whole object at once (the reference the streaming chunker must match).
pub fn chunk_all(data: &[u8], sizes: ChunkSizes, seed: u64) -> Vec<&[u8]> {
    FastCDC::with_level_and_seed(data, sizes.min, sizes.avg, sizes.max, Normalization::Level1, seed)
        .map(|c| &data[c.offset..c.offset + c.length])
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Small bounds so that properties run over many chunks quickly.
    const SMALL: ChunkSizes = ChunkSizes { min: 256, avg: 1024, max: 4096 };

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        crate::tests::generate(len, seed, false)
    }

    proptest! {
        #[test]
        fn streaming_equals_one_shot(len in 0usize..40_000, data_seed: u64, seed: u64,
                                     splits in prop::collection::vec(1usize..9000, 1..20)) {
            let data = pseudo_random(len, data_seed);
            let mut chunker = StreamingChunker::new(SMALL, seed);
            let mut got = Vec::new();
            let mut rest = &data[..];
            for s in splits.iter().cycle() {
                if rest.is_empty() { break; }
                let (piece, tail) = rest.split_at((*s).min(rest.len()));
                got.extend(chunker.push(piece));
                rest = tail;
            }
            got.extend(chunker.finish());
            let want: Vec<&[u8]> = chunk_all(&data, SMALL, seed);
            prop_assert_eq!(got.iter().map(|c| &c[..]).collect::<Vec<_>>(), want);
            for c in &got[..got.len().saturating_sub(1)] {
                prop_assert!(c.len() >= SMALL.min as usize && c.len() <= SMALL.max as usize);
            }
        }
    }

    #[test]
    fn small_objects_are_one_chunk_and_empty_objects_none() {
        let sizes = ChunkSizes::default();
        let mut c = StreamingChunker::new(sizes, 7);
        assert!(c.push(&[1; 1000]).is_empty());
        assert_eq!(c.finish().iter().map(Bytes::len).collect::<Vec<_>>(), [1000]);
        assert!(StreamingChunker::new(sizes, 7).finish().is_empty());
    }

    #[test]
    fn a_local_insertion_changes_only_nearby_chunks() {
        let data = pseudo_random(200_000, 3);
        let mut edited = data.clone();
        edited.splice(100_000..100_000, [9u8; 100]);
        let (a, b) = (chunk_all(&data, SMALL, 1), chunk_all(&edited, SMALL, 1));
        let shared = a.iter().filter(|c| b.contains(c)).count();
        assert!(shared + 3 >= a.len(), "{shared} of {} chunks survive a 100-byte insertion", a.len());
    }
}
