//! The chunk index: where each chunk the vault holds is stored. The vault asks it before
//! storing a chunk (deduplication) and when reading one; the gateway keeps it in the
//! journal's database, tests and tools in memory.

use std::collections::HashMap;
use std::sync::Mutex;

use rewind_model::ChunkId;

use crate::VaultError;
use crate::pack::PackEntry;

/// Where a stored chunk is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLocation {
    /// The pack's name.
    pub pack: String,
    /// The chunk's entry in it.
    pub entry: PackEntry,
}

const LOCATION_V1: u8 = 1;

impl ChunkLocation {
    /// The encoding an index stores under the chunk id: `version (1) | offset (u64 le) |
    /// stored length (u32 le) | raw length (u32 le) | flags (1: zstd) | pack name`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + self.pack.len());
        out.push(LOCATION_V1);
        out.extend_from_slice(&self.entry.offset.to_le_bytes());
        out.extend_from_slice(&self.entry.stored_len.to_le_bytes());
        out.extend_from_slice(&self.entry.raw_len.to_le_bytes());
        out.push(u8::from(self.entry.compressed));
        out.extend_from_slice(self.pack.as_bytes());
        out
    }

    /// The index entries of a pack's chunks: each chunk's id and encoded location.
    pub fn rows(pack: &str, entries: &[PackEntry]) -> Vec<([u8; 32], Vec<u8>)> {
        entries.iter().map(|e| (e.id.0, Self { pack: pack.to_owned(), entry: *e }.encode())).collect()
    }

    /// Decodes what [`ChunkLocation::encode`] produced for chunk `id`.
    pub fn decode(id: ChunkId, bytes: &[u8]) -> Result<Self, VaultError> {
        let corrupt =
            |detail: &str| VaultError::Corrupt { what: format!("index entry of chunk {id}"), detail: detail.into() };
        if bytes.len() < 18 || bytes[0] != LOCATION_V1 {
            return Err(corrupt("unknown version or too short"));
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("invariant: length checked"));
        let entry = PackEntry {
            id,
            offset: u64::from_le_bytes(bytes[1..9].try_into().expect("invariant: length checked")),
            stored_len: u32_at(9),
            raw_len: u32_at(13),
            compressed: bytes[17] == 1,
        };
        let pack = String::from_utf8(bytes[18..].to_vec()).map_err(|_| corrupt("pack name is not UTF-8"))?;
        Ok(Self { pack, entry })
    }
}

/// Which chunks the vault holds. Entries are added only after their pack is durable, so a
/// hit always points at data that exists.
#[async_trait::async_trait]
pub trait ChunkIndex: Send + Sync {
    /// Where `id` is stored, if it is.
    fn lookup(&self, id: &ChunkId) -> Result<Option<ChunkLocation>, VaultError>;
    /// Records every chunk of a pack that is now durable, durably.
    async fn insert_pack(&self, pack: &str, entries: &[PackEntry]) -> Result<(), VaultError>;
    /// The index itself, so that an owner can tell which index a vault has.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// An in-memory [`ChunkIndex`], for tests and tools.
#[derive(Debug, Default)]
pub struct MemoryIndex(Mutex<HashMap<ChunkId, ChunkLocation>>);

#[async_trait::async_trait]
impl ChunkIndex for MemoryIndex {
    fn lookup(&self, id: &ChunkId) -> Result<Option<ChunkLocation>, VaultError> {
        Ok(self.0.lock().expect("invariant: no panics while holding this lock").get(id).cloned())
    }

    async fn insert_pack(&self, pack: &str, entries: &[PackEntry]) -> Result<(), VaultError> {
        let mut map = self.0.lock().expect("invariant: no panics while holding this lock");
        for e in entries {
            map.entry(e.id).or_insert_with(|| ChunkLocation { pack: pack.to_owned(), entry: *e });
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
