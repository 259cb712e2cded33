//! Rewind's vault: objects are cut into content-defined chunks, each identified by its
//! keyed BLAKE3, compressed when that pays, sealed with AES-256-GCM under a per-chunk key,
//! and written into immutable packs on a backend (a local directory or an S3 bucket).

pub mod backend;
pub mod budget;
mod buffers;
pub mod chunker;
pub mod compress;
pub mod durable;
pub mod epoch;
mod flush;
pub mod index;
mod open_pack;
pub mod pack;
pub mod reclaim;
pub mod s3;
pub mod store;
mod writer;

use std::sync::Arc;

use bytes::Bytes;
use rewind_crypto::{CryptoError, KeySet};
use rewind_model::ChunkId;

pub use backend::{Backend, LocalBackend};
pub use budget::{Charge, MemoryBudget, Share};
pub use chunker::{Chunk, ChunkSizes, StreamingChunker};
pub use epoch::{Epochs, WriteGuard};
pub use index::{ChunkIndex, ChunkLocation, MemoryIndex};
pub use pack::{Pack, PackBuilder, PackEntry};
pub use reclaim::{Deleted, Reclaim};
pub use s3::S3Backend;
pub use store::{Manifest, Vault, VaultSettings, VaultStats, WrittenPack};
pub use writer::ObjectWriter;

/// What went wrong in the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// No object by that name.
    #[error("vault object {name} does not exist")]
    NotFound {
        /// The name.
        name: String,
    },
    /// The name is taken; vault objects are never overwritten.
    #[error("vault object {name} already exists")]
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// A name that could escape the vault or is otherwise unusable.
    #[error("{name:?} is not a valid vault object name")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// Stored data is damaged.
    #[error("{what} is corrupt: {detail}")]
    Corrupt {
        /// What.
        what: String,
        /// How.
        detail: String,
    },
    /// Encryption or authentication failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The storage failed.
    #[error("vault storage: {0}")]
    Io(#[from] std::io::Error),
    /// The chunk index (kept by the caller, in the journal) failed.
    #[error("chunk index: {source}")]
    Index {
        /// How to treat it: the index's own class (a damaged journal is corruption, not a
        /// transient I/O error).
        class: ErrorClass,
        /// What the index said.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

pub use rewind_model::ErrorClass;

impl VaultError {
    /// How a caller should treat the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::NotFound { .. } | Self::AlreadyExists { .. } => ErrorClass::Permanent,
            Self::InvalidName { .. } => ErrorClass::InvalidInput,
            Self::Corrupt { .. } => ErrorClass::Corruption,
            Self::Crypto(e) => e.class(),
            Self::Io(_) => ErrorClass::Transient,
            Self::Index { class, .. } => *class,
        }
    }
}

/// A chunk ready for a pack.
#[derive(Debug, Clone)]
pub struct SealedChunk {
    /// Its identity.
    pub id: ChunkId,
    /// Its envelope.
    pub sealed: Vec<u8>,
    /// Plaintext length.
    pub raw_len: u32,
    /// Whether the plaintext was compressed before sealing.
    pub compressed: bool,
}

/// Identifies, compresses (when it pays, at `level`; `None` turns compression off) and
/// seals one chunk.
pub fn seal_chunk(keys: &KeySet, chunk: &[u8], level: Option<i32>) -> Result<SealedChunk, VaultError> {
    seal_chunk_as(keys, keys.chunk_id(chunk), Chunk::copy_of(chunk), level)
}

/// [`seal_chunk`] for a chunk whose id (`keys.chunk_id(chunk)`) is already known, so that
/// the chunk is hashed once. A chunk stored raw is encrypted in its own buffer.
pub fn seal_chunk_as(keys: &KeySet, id: ChunkId, chunk: Chunk, level: Option<i32>) -> Result<SealedChunk, VaultError> {
    let raw_len = u32::try_from(chunk.len()).expect("invariant: chunks are at most 8 MiB");
    let (sealed, compressed) = match level.and_then(|l| compress::compress(&chunk, l)) {
        Some(packed) => (keys.seal_chunk(&id, &packed)?, true),
        None => {
            let mut buf = chunk.into_envelope_buffer();
            keys.seal_chunk_prepared(&id, &mut buf)?;
            (buf, false)
        }
    };
    Ok(SealedChunk { id, sealed, raw_len, compressed })
}

/// Opens a chunk read from a pack and checks that it is the chunk `entry` names.
pub fn open_chunk(keys: &KeySet, entry: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>, VaultError> {
    open_chunk_as(keys, entry, Bytes::copy_from_slice(sealed), Check::Id).map(Vec::from)
}

/// How much opening a chunk checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Its envelope's authentication (it was sealed under the key of its id), its length,
    /// and that its content hashes to its id.
    Id,
    /// Its envelope's authentication and length only: for a caller that checks the BLAKE3
    /// of the whole object the chunk belongs to, which catches any wrong content anyway,
    /// so hashing every byte twice buys nothing.
    Envelope,
}

/// [`open_chunk`] of an envelope read into a buffer of its own, checking as `check` says.
/// An uncompressed chunk is decrypted where it lies and returned as a slice of that
/// buffer: no copy.
pub fn open_chunk_as(keys: &KeySet, entry: &PackEntry, sealed: Bytes, check: Check) -> Result<Bytes, VaultError> {
    let mut sealed = Vec::from(sealed); // the same allocation when the buffer is not shared
    let at = keys.open_chunk_in_place(&entry.id, &mut sealed)?;
    let plain = if entry.compressed {
        Bytes::from(
            compress::decompress(&sealed[at], entry.raw_len as usize)
                .map_err(|e| VaultError::Corrupt { what: format!("chunk {}", entry.id), detail: e.to_string() })?,
        )
    } else {
        Bytes::from(sealed).slice(at)
    };
    if plain.len() != entry.raw_len as usize || (check == Check::Id && keys.chunk_id(&plain) != entry.id) {
        return Err(VaultError::Corrupt {
            what: format!("chunk {}", entry.id),
            detail: "content does not hash to its id".into(),
        });
    }
    Ok(plain)
}

#[cfg(test)]
mod tests;
