//! Content-defined chunking of a stream (FastCDC 2020, min 512 KiB / avg 1 MiB / max 8 MiB).
//!
//! Bodies arrive as pieces of any size; [`StreamingChunker`] buffers at most one maximum
//! chunk and a piece, and cuts exactly where FastCDC would cut the whole object at once,
//! so the same content chunks (and deduplicates) the same way however the network split it.

use fastcdc::v2020::{FastCDC, Normalization};
use rewind_crypto::aead::{ENVELOPE_HEAD, ENVELOPE_OVERHEAD, TAG_LEN};

/// A chunk cut from a stream, in a buffer laid out to become its own envelope: room for
/// the envelope's head before the plaintext and for its tag after, so sealing it is
/// encryption in place, not a copy (`seal_chunk_as`). A large chunk's buffer is recycled
/// (`buffers.rs`) when the chunk is dropped, or by whoever its envelope ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk(Vec<u8>);

impl Chunk {
    /// A chunk holding a copy of `plaintext`.
    pub fn copy_of(plaintext: &[u8]) -> Self {
        let mut buf = crate::buffers::take(ENVELOPE_HEAD + plaintext.len() + TAG_LEN);
        buf.resize(ENVELOPE_HEAD, 0);
        buf.extend_from_slice(plaintext);
        Self(buf)
    }

    /// A chunk made of `buf` as it is: [`ENVELOPE_HEAD`] bytes of room, then the
    /// plaintext, and capacity for the tag after it.
    fn in_place(buf: Vec<u8>) -> Self {
        debug_assert!(buf.len() >= ENVELOPE_HEAD && buf.capacity() >= buf.len() + TAG_LEN);
        Self(buf)
    }

    /// The buffer: [`ENVELOPE_HEAD`] bytes of room, then the plaintext (and capacity for
    /// the tag).
    pub fn into_envelope_buffer(mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        crate::buffers::give(std::mem::take(&mut self.0));
    }
}

impl std::ops::Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0[ENVELOPE_HEAD..]
    }
}

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

impl ChunkSizes {
    /// The largest chunk Rewind handles (the memory budget and packs assume it).
    pub const MAX_CHUNK: u32 = 8 << 20;

    /// Whether these bounds can be used: within FastCDC's limits (outside them its chunker
    /// panics), in order, and no chunk over [`ChunkSizes::MAX_CHUNK`].
    pub fn check(self) -> Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg)
            && (MAXIMUM_MIN..=Self::MAX_CHUNK).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(format!("chunk sizes {}/{}/{} are outside what Rewind supports", self.min, self.avg, self.max))
        }
    }
}

impl Default for ChunkSizes {
    /// DESIGN.md: 512 KiB / 1 MiB / 8 MiB — large enough that per-chunk overhead (index
    /// entries, envelopes) stays under 0.01%, small enough that a local edit re-stores
    /// about a megabyte.
    fn default() -> Self {
        Self { min: 512 * 1024, avg: 1024 * 1024, max: 8 * 1024 * 1024 }
    }
}

/// Pieces are fed to the scanner at most this large, so the look-ahead buffer never needs
/// more than one maximum chunk and one such piece ([`StreamingChunker::capacity`]).
const PIECE_LIMIT: usize = 1 << 20;

/// Cuts a stream into content-defined chunks.
///
/// FastCDC's gear-hash scan (v2020, normalization level 1) is run here resumably: the scan
/// of the chunk being cut stops where the data ends and resumes when more arrives, so each
/// byte is scanned once and a chunk is cut as soon as its boundary is seen. The look-ahead
/// is then what the current chunk has received so far — about a chunk (1 MiB on average),
/// one maximum chunk at worst — instead of a maximum chunk ahead of every cut. Boundaries
/// are exactly those of the `fastcdc` crate on the whole object (`chunk_all`; the property
/// test below holds them to it), so dedup sees the same chunks however the network split
/// the object. After each cut the bytes of the chunk in progress (received since the cut)
/// move to the buffer's front, so it stays near a chunk and a piece, in a recycled buffer.
///
/// The buffer is laid out as a [`Chunk`]'s: [`ENVELOPE_HEAD`] bytes of room, then the
/// data, and room for a tag after it. A chunk that starts at the buffer's front and is
/// larger than what follows its cut takes the buffer itself, and only those bytes move to
/// a new one. With 1 MiB chunks and network-sized pieces that is nearly every chunk (the
/// first cut of a piece, and an object's last chunk): a captured byte is copied once on
/// its way to sealing, not twice.
#[derive(Debug)]
pub struct StreamingChunker {
    sizes: ChunkSizes,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
    masks: Masks,
    /// Empty, or [`ENVELOPE_HEAD`] bytes of room followed by the data not yet cut.
    buffer: Vec<u8>,
    /// Where the chunk being scanned starts in `buffer`: [`ENVELOPE_HEAD`] at its front.
    start: usize,
    /// The scan of that chunk: the next pair of positions, and the hash so far.
    index: usize,
    hash: u64,
}

impl Drop for StreamingChunker {
    fn drop(&mut self) {
        crate::buffers::give(std::mem::take(&mut self.buffer));
    }
}

/// The gear masks for the first (`small`, harder) and second half of a chunk, and their
/// one-bit-shifted forms for even positions.
#[derive(Debug, Clone, Copy)]
struct Masks {
    small: u64,
    large: u64,
    small_ls: u64,
    large_ls: u64,
}

impl StreamingChunker {
    /// A chunker with the given bounds and secret gear-hash seed.
    pub fn new(sizes: ChunkSizes, seed: u64) -> Self {
        let bits = fastcdc::v2020::logarithm2(sizes.avg);
        let normalization = Normalization::Level1.bits();
        let small = fastcdc::v2020::MASKS[(bits + normalization) as usize];
        let large = fastcdc::v2020::MASKS[(bits - normalization) as usize];
        let (gear, gear_ls) = fastcdc::v2020::get_gear_with_seed(seed);
        let masks = Masks { small, large, small_ls: small << 1, large_ls: large << 1 };
        Self {
            sizes,
            gear,
            gear_ls,
            masks,
            buffer: Vec::new(),
            start: ENVELOPE_HEAD,
            index: sizes.min as usize / 2,
            hash: 0,
        }
    }

    /// The most bytes the look-ahead buffer ever holds with these bounds (a maximum chunk
    /// and a piece, in a chunk's envelope).
    pub fn capacity(sizes: ChunkSizes) -> usize {
        sizes.max as usize + PIECE_LIMIT + ENVELOPE_OVERHEAD
    }

    /// Adds the next piece of the stream; returns the chunks it completed.
    pub fn push(&mut self, piece: &[u8]) -> Vec<Chunk> {
        let mut out = Vec::new();
        for part in piece.chunks(PIECE_LIMIT) {
            self.make_room(part.len());
            self.buffer.extend_from_slice(part);
            while let Some(len) = self.scan(false) {
                out.push(self.take(len, true));
            }
            if self.start > ENVELOPE_HEAD {
                // What is left past the cut is the chunk in progress, all of it from this
                // part: moving it to the front keeps the buffer near a chunk and a part
                // instead of growing it to the whole capacity.
                self.buffer.drain(ENVELOPE_HEAD..self.start);
                self.start = ENVELOPE_HEAD;
            }
        }
        out
    }

    /// Ends the stream; returns its last chunks (none for an empty stream). The chunker is
    /// empty afterwards.
    pub fn finish(&mut self) -> Vec<Chunk> {
        let mut out = Vec::new();
        while let Some(len) = self.scan(true) {
            out.push(self.take(len, false));
        }
        crate::buffers::give(std::mem::take(&mut self.buffer));
        self.start = ENVELOPE_HEAD;
        out
    }

    /// Drops the bytes already cut when `extra` more would not fit in the capacity (a
    /// safety net: [`StreamingChunker::push`] drops them after every cut), and grows the
    /// buffer, into a recycled one once it is large.
    fn make_room(&mut self, extra: usize) {
        let cap = Self::capacity(self.sizes);
        if self.buffer.len() + extra + TAG_LEN > cap && self.start > ENVELOPE_HEAD {
            self.buffer.drain(ENVELOPE_HEAD..self.start);
            self.start = ENVELOPE_HEAD;
        }
        if self.buffer.is_empty() {
            self.buffer.resize(ENVELOPE_HEAD, 0);
        }
        // Room for a tag after the data, so the buffer can become a chunk as it is.
        let need = self.buffer.len() + extra + TAG_LEN;
        if need > self.buffer.capacity() {
            // Grow geometrically, but never past the capacity the budget reserves.
            let target = need.max(self.buffer.capacity() * 2).min(cap.max(need));
            // A recycled buffer may be roomier than asked: only within the capacity.
            let mut grown = if cap >= crate::buffers::KEPT_UP_TO {
                crate::buffers::take(target)
            } else {
                Vec::with_capacity(target)
            };
            grown.extend_from_slice(&self.buffer);
            crate::buffers::give(std::mem::replace(&mut self.buffer, grown));
        }
    }

    /// Continues scanning the chunk at `start`: its length once its end is known; at the
    /// end of the stream every remaining byte belongs to some chunk.
    fn scan(&mut self, at_end: bool) -> Option<usize> {
        let available = self.buffer.len().saturating_sub(self.start);
        if available == 0 {
            return None;
        }
        let (avg, max) = (self.sizes.avg as usize, self.sizes.max as usize);
        let limit = available.min(max);
        let data = &self.buffer[self.start..self.start + limit];
        let (gear, gear_ls) = (&*self.gear, &*self.gear_ls);
        let m = self.masks;
        // The hash and position stay in registers: the loop is bound by the hash's chain
        // of shifts and adds, and every store or bounds check on the way costs.
        let (mut hash, mut index) = (self.hash, self.index);
        // Pairs before the average take the harder masks, the rest the easier ones.
        for (until, mask, mask_ls) in [(avg / 2, m.small, m.small_ls), (usize::MAX, m.large, m.large_ls)] {
            let end = until.min(limit / 2);
            if index >= end {
                continue;
            }
            for pair in data[index * 2..end * 2].chunks_exact(2) {
                hash = (hash << 2).wrapping_add(gear_ls[pair[0] as usize]);
                if hash & mask_ls == 0 {
                    return Some(index * 2);
                }
                hash = hash.wrapping_add(gear[pair[1] as usize]);
                if hash & mask == 0 {
                    return Some(index * 2 + 1);
                }
                index += 1;
            }
        }
        (self.hash, self.index) = (hash, index);
        // No boundary: a chunk of the maximum size, or the stream's last bytes.
        (at_end || available >= max).then_some(limit)
    }

    /// Cuts the next `len` bytes off as a chunk; `more` says whether the stream goes on.
    fn take(&mut self, len: usize, more: bool) -> Chunk {
        let end = self.start + len;
        let rest = self.buffer.len() - end;
        let chunk = if self.start == ENVELOPE_HEAD && rest < len && self.buffer.capacity() >= end + TAG_LEN {
            // The chunk is at the front, and more of the buffer than what follows its cut
            // (the next chunk's first bytes): it takes the buffer, and the rest moves to a
            // new one, recycled when `make_room` would recycle it. Whichever is smaller is
            // copied, so a piece holding many small chunks is not copied once per cut.
            let mut next = Vec::new();
            if more || rest > 0 {
                let room = ENVELOPE_OVERHEAD + rest;
                next = match Self::capacity(self.sizes) >= crate::buffers::KEPT_UP_TO {
                    true => crate::buffers::take(room.max(crate::buffers::KEPT_FROM)),
                    // Within the capacity: the old buffer was.
                    false => Vec::with_capacity(room.max(self.buffer.capacity())),
                };
                next.resize(ENVELOPE_HEAD, 0);
                next.extend_from_slice(&self.buffer[end..]);
            }
            let mut whole = std::mem::replace(&mut self.buffer, next);
            whole.truncate(end);
            Chunk::in_place(whole)
        } else {
            let chunk = Chunk::copy_of(&self.buffer[self.start..end]);
            self.start = end;
            chunk
        };
        self.index = self.sizes.min as usize / 2;
        self.hash = 0;
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
            for c in &got {
                // Sealing appends the tag in place: every buffer has room for it.
                prop_assert!(c.0.capacity() >= c.0.len() + TAG_LEN);
            }
        }
    }

    #[test]
    fn small_objects_are_one_chunk_and_empty_objects_none() {
        let sizes = ChunkSizes::default();
        let mut c = StreamingChunker::new(sizes, 7);
        assert!(c.push(&[1; 1000]).is_empty());
        assert_eq!(c.finish().iter().map(|c| c.len()).collect::<Vec<_>>(), [1000]);
        assert!(StreamingChunker::new(sizes, 7).finish().is_empty());
    }

    #[test]
    fn zeros_cut_at_the_maximum_and_the_buffer_stays_within_capacity() {
        let mut c = StreamingChunker::new(SMALL, 3);
        let mut got = Vec::new();
        for _ in 0..50 {
            got.extend(c.push(&[0u8; 1000]));
            assert!(c.buffer.capacity() <= StreamingChunker::capacity(SMALL), "{}", c.buffer.capacity());
        }
        got.extend(c.finish());
        let want = chunk_all(&[0u8; 50_000], SMALL, 3);
        assert_eq!(got.iter().map(|c| c.len()).collect::<Vec<_>>(), want.iter().map(|c| c.len()).collect::<Vec<_>>());
        assert!(got[..got.len() - 1].iter().all(|c| c.len() == SMALL.max as usize));
    }

    /// After each cut only the chunk in progress stays: the buffer holds at most a maximum
    /// chunk and the piece just pushed, not the whole capacity's worth of cut bytes.
    #[test]
    fn the_buffer_keeps_only_the_chunk_in_progress() {
        let data = pseudo_random(200_000, 11);
        let mut c = StreamingChunker::new(SMALL, 5);
        let mut cuts = 0;
        for piece in data.chunks(1000) {
            cuts += c.push(piece).len();
            assert!(
                c.buffer.len() <= ENVELOPE_HEAD + SMALL.max as usize + piece.len(),
                "{} bytes held",
                c.buffer.len()
            );
        }
        assert!(cuts > 40, "{cuts} cuts");
    }

    /// A chunk at the buffer's front larger than what follows its cut is the buffer
    /// itself, not a copy of it; a smaller one is copied (then the rest would be).
    #[test]
    fn a_chunk_at_the_front_takes_the_buffer() {
        let mut c = StreamingChunker::new(SMALL, 2);
        assert!(c.push(&pseudo_random(200, 1)).is_empty());
        let front = c.buffer.as_ptr();
        let last = c.finish();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].0.as_ptr(), front, "an object's only chunk was copied");

        let data = pseudo_random(4 * SMALL.max as usize, 4);
        let first = chunk_all(&data, SMALL, 2)[0].len();
        let mut c = StreamingChunker::new(SMALL, 2);
        let piece = &data[..first + 10];
        let got = c.push(piece);
        assert_eq!(got.len(), 1);
        // A copy has a buffer of its own size; the buffer the piece went into has room for
        // all of the piece.
        assert!(got[0].0.capacity() >= ENVELOPE_OVERHEAD + piece.len(), "the chunk was copied");
        assert_eq!(c.buffer[..ENVELOPE_HEAD], [0; ENVELOPE_HEAD], "the rest sits behind room for a head");
        assert_eq!(c.buffer[ENVELOPE_HEAD..], data[first..first + 10]);

        let mut c = StreamingChunker::new(SMALL, 2);
        let piece = &data[..2 * first + 1];
        let got = c.push(piece);
        assert_eq!(&got[0][..], &data[..first]);
        assert!(got[0].0.capacity() < ENVELOPE_OVERHEAD + piece.len(), "the larger rest was copied instead");
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
