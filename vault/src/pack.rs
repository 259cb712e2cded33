//! Packs: immutable files of ~32 MiB holding sealed chunks, named by the BLAKE3 of their
//! bytes, with an encrypted header at the end (so a pack is written in one pass).
//!
//! Layout, version 1:
//! `"RWPACK" | 0x01 | chunk envelopes… | header envelope | header envelope length (u32 le) | "RWPKEND"`.
//! The header plaintext is `count (u32 le)` then per chunk `id (32) | offset (u64 le) |
//! stored length (u32 le) | raw length (u32 le) | flags (u8; bit 0: zstd)`. It is sealed
//! with the pack-header key, its associated data being the 7-byte pack preamble.

use bytes::{BufMut, Bytes, BytesMut};
use rewind_crypto::{KeySet, aead};
use rewind_model::ChunkId;

use crate::VaultError;
use crate::backend::Spool;

const MAGIC: &[u8; 6] = b"RWPACK";
const VERSION: u8 = 1;
const TRAILER: &[u8; 7] = b"RWPKEND";
const PREAMBLE_LEN: usize = MAGIC.len() + 1;
const ENTRY_LEN: usize = 32 + 8 + 4 + 4 + 1;
const FLAG_ZSTD: u8 = 1;

/// Packs close once they hold this much: big enough that an S3 vault makes few requests,
/// small enough to upload, verify or repair one in a second or two.
pub const TARGET_PACK_SIZE: usize = 32 * 1024 * 1024;

/// Where one chunk sits in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// The chunk.
    pub id: ChunkId,
    /// Offset of its envelope in the pack.
    pub offset: u64,
    /// Length of its envelope.
    pub stored_len: u32,
    /// Length of the chunk's plaintext.
    pub raw_len: u32,
    /// Whether the plaintext was zstd-compressed before sealing.
    pub compressed: bool,
}

/// A finished pack.
#[derive(Debug)]
pub struct Pack {
    /// Its name: hex BLAKE3 of its bytes.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its bytes, until they are durable in the backend.
    pub body: Body,
    /// What it holds.
    pub entries: Vec<PackEntry>,
}

/// Where a finished pack's bytes are until they are durable.
#[derive(Debug)]
pub enum Body {
    /// In memory, for [`Backend::put`](crate::Backend::put); empty once written.
    Memory(Bytes),
    /// In the backend's spool, for [`Spool::finish`].
    Spooled(Box<dyn Spool>),
    /// Nowhere: the spool failed and its bytes could not be read back.
    Lost,
}

impl Pack {
    /// Takes the body out, to write it (put back if that fails).
    pub(crate) fn take_body(&mut self) -> Body {
        std::mem::replace(&mut self.body, Body::Memory(Bytes::new()))
    }
}

/// Accumulates sealed chunks into a pack.
#[derive(Debug)]
pub struct PackBuilder {
    out: Out,
    entries: Vec<PackEntry>,
}

/// Where a pack being filled goes.
#[derive(Debug)]
enum Out {
    Memory(BytesMut),
    /// Into a backend's spool, hashed as it goes (the hash names the pack).
    Spooled {
        spool: Box<dyn Spool>,
        hash: Box<blake3::Hasher>,
    },
}

/// What a pack's buffer is allocated to hold: a full pack and one more maximum chunk.
const PACK_CAPACITY: usize = TARGET_PACK_SIZE + 8 * 1024 * 1024;

/// A pack's first bytes: the magic and the version.
const PREAMBLE: [u8; PREAMBLE_LEN] = {
    let mut preamble = [VERSION; PREAMBLE_LEN];
    let mut i = 0;
    while i < MAGIC.len() {
        preamble[i] = MAGIC[i];
        i += 1;
    }
    preamble
};

impl Default for PackBuilder {
    fn default() -> Self {
        Self::in_buffer(BytesMut::with_capacity(PACK_CAPACITY))
    }
}

impl PackBuilder {
    /// A builder writing into `buffer` (emptied first): the buffer of a pack written
    /// earlier, so filling this one touches pages already mapped instead of faulting in
    /// 40 MiB of new ones. Falls back to a new buffer when `buffer` is too small.
    pub fn reusing(buffer: Option<BytesMut>) -> Self {
        match buffer {
            Some(mut bytes) if bytes.capacity() >= PACK_CAPACITY => {
                bytes.clear();
                Self::in_buffer(bytes)
            }
            _ => Self::default(),
        }
    }

    fn in_buffer(mut bytes: BytesMut) -> Self {
        bytes.put_slice(&PREAMBLE);
        Self { out: Out::Memory(bytes), entries: Vec::new() }
    }

    /// A builder writing into a backend's spool, with no copy of the pack in memory.
    /// Adding chunks and finishing block on the spool's writes.
    pub fn spooled(mut spool: Box<dyn Spool>) -> Result<Self, VaultError> {
        spool.append(&PREAMBLE)?;
        let mut hash = Box::new(blake3::Hasher::new());
        hash.update(&PREAMBLE);
        Ok(Self { out: Out::Spooled { spool, hash }, entries: Vec::new() })
    }

    /// Adds a sealed chunk. Fails only when a spool's write fails, and then the pack is
    /// as it was before.
    pub fn add(&mut self, id: ChunkId, sealed: &[u8], raw_len: u32, compressed: bool) -> Result<(), VaultError> {
        let offset = self.len() as u64;
        self.append(sealed)?;
        let stored_len = u32::try_from(sealed.len()).expect("invariant: chunks are at most 8 MiB");
        self.entries.push(PackEntry { id, offset, stored_len, raw_len, compressed });
        Ok(())
    }

    fn append(&mut self, data: &[u8]) -> Result<(), VaultError> {
        match &mut self.out {
            Out::Memory(bytes) => bytes.put_slice(data),
            Out::Spooled { spool, hash } => {
                spool.append(data)?;
                hash.update(data);
            }
        }
        Ok(())
    }

    /// Bytes so far; close the pack once this passes [`TARGET_PACK_SIZE`].
    pub fn len(&self) -> usize {
        match &self.out {
            Out::Memory(bytes) => bytes.len(),
            Out::Spooled { spool, .. } => {
                usize::try_from(spool.written()).expect("invariant: packs are far below 4 GiB")
            }
        }
    }

    /// Whether no chunk was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seals the header and names the pack. When that fails (a spool's write), the error
    /// comes with the builder as it was.
    pub fn finish(mut self, keys: &KeySet) -> Result<Pack, (Self, VaultError)> {
        if let Err(e) = self.seal_header(keys) {
            return Err((self, e));
        }
        let size = self.len() as u64;
        let (name, body) = match self.out {
            Out::Memory(bytes) => {
                let bytes = bytes.freeze();
                (blake3::hash(&bytes), Body::Memory(bytes))
            }
            Out::Spooled { spool, hash } => (hash.finalize(), Body::Spooled(spool)),
        };
        Ok(Pack { name: name.to_hex().to_string(), size, body, entries: self.entries })
    }

    /// Appends the sealed header and the trailer; on failure the pack is as it was.
    fn seal_header(&mut self, keys: &KeySet) -> Result<(), VaultError> {
        let mut header = Vec::with_capacity(4 + self.entries.len() * ENTRY_LEN);
        header.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            header.extend_from_slice(e.id.as_bytes());
            header.extend_from_slice(&e.offset.to_le_bytes());
            header.extend_from_slice(&e.stored_len.to_le_bytes());
            header.extend_from_slice(&e.raw_len.to_le_bytes());
            header.push(if e.compressed { FLAG_ZSTD } else { 0 });
        }
        let mut tail = aead::seal(keys.pack_header.expose(), &PREAMBLE, &header)?;
        let sealed_len = u32::try_from(tail.len()).expect("invariant: headers are far below 4 GiB");
        tail.extend_from_slice(&sealed_len.to_le_bytes());
        tail.extend_from_slice(TRAILER);
        self.append(&tail)
    }
}

/// Reads a pack's header, checking that the bytes match `name` and the header is authentic.
pub fn read_header(keys: &KeySet, name: &str, bytes: &[u8]) -> Result<Vec<PackEntry>, VaultError> {
    let corrupt = |detail: String| VaultError::Corrupt { what: format!("pack {name}"), detail };
    if blake3::hash(bytes).to_hex().as_str() != name {
        return Err(corrupt("its content does not match its name".into()));
    }
    if bytes.len() < PREAMBLE_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("not a Rewind pack".into()));
    }
    if bytes[MAGIC.len()] != VERSION {
        return Err(corrupt(format!("unknown pack version {}", bytes[MAGIC.len()])));
    }
    match read_header_from_tail(keys, name, bytes, bytes.len() as u64)? {
        Tail::Entries(entries) => Ok(entries),
        Tail::Needs(_) => Err(corrupt("header length out of range".into())),
    }
}

/// What the end of a pack gave.
#[derive(Debug)]
pub enum Tail {
    /// The header's entries.
    Entries(Vec<PackEntry>),
    /// The header is longer than the tail read: read this many bytes from the end.
    Needs(u64),
}

/// Bytes from the end of a pack that hold the header of most packs (over a thousand
/// chunks), so indexing a pack usually takes one small ranged read.
pub const TAIL_GUESS: u64 = 64 << 10;

/// Reads a pack's header from its last bytes, `tail`, given its `size`, without the rest
/// of the pack: the header is authentic (sealed with the pack-header key over the known
/// preamble) and its entries lie inside the chunk area. Whether the chunks themselves are
/// intact is for reading them (`verify --read-data`) to find.
pub fn read_header_from_tail(keys: &KeySet, name: &str, tail: &[u8], size: u64) -> Result<Tail, VaultError> {
    let corrupt = |detail: String| VaultError::Corrupt { what: format!("pack {name}"), detail };
    let fixed = (TRAILER.len() + 4) as u64;
    if size < PREAMBLE_LEN as u64 + fixed || (tail.len() as u64) < fixed || !tail.ends_with(TRAILER) {
        return Err(corrupt("not a Rewind pack".into()));
    }
    let len_at = tail.len() - TRAILER.len() - 4;
    let sealed_len = u64::from(u32::from_le_bytes(tail[len_at..len_at + 4].try_into().expect("invariant: 4 bytes")));
    let header_at = (size - fixed)
        .checked_sub(sealed_len)
        .filter(|&h| h >= PREAMBLE_LEN as u64)
        .ok_or_else(|| corrupt("header length out of range".into()))?;
    if (tail.len() as u64) < sealed_len + fixed {
        return Ok(Tail::Needs(sealed_len + fixed));
    }
    let sealed = &tail[len_at - usize::try_from(sealed_len).expect("invariant: within the tail")..len_at];
    let header = aead::open(keys.pack_header.expose(), &PREAMBLE, sealed, "pack header")?;
    let count = u32::from_le_bytes(
        header.get(..4).ok_or_else(|| corrupt("empty header".into()))?.try_into().expect("invariant: 4 bytes"),
    ) as usize;
    if header.len() != 4 + count * ENTRY_LEN {
        return Err(corrupt("header length does not match its entry count".into()));
    }
    header[4..]
        .chunks_exact(ENTRY_LEN)
        .map(|e| {
            let entry = PackEntry {
                id: ChunkId(e[..32].try_into().expect("invariant: 32 bytes")),
                offset: u64::from_le_bytes(e[32..40].try_into().expect("invariant: 8 bytes")),
                stored_len: u32::from_le_bytes(e[40..44].try_into().expect("invariant: 4 bytes")),
                raw_len: u32::from_le_bytes(e[44..48].try_into().expect("invariant: 4 bytes")),
                compressed: e[48] & FLAG_ZSTD != 0,
            };
            let end = entry.offset.checked_add(u64::from(entry.stored_len));
            if entry.offset < PREAMBLE_LEN as u64 || end.is_none_or(|end| end > header_at) {
                return Err(corrupt(format!("entry for {:?} points outside the chunk area", entry.id)));
            }
            Ok(entry)
        })
        .collect::<Result<_, _>>()
        .map(Tail::Entries)
}
