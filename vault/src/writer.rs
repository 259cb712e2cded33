//! Writing one object into the vault as its bytes arrive: cut into chunks, each stored
//! (hashed, compressed, sealed into the open pack) by a task of its own while the next is
//! cut, then made durable as the caller chooses.

use std::sync::Arc;

use crate::budget::Charge;
use crate::store::Manifest;
use crate::{Chunk, StreamingChunker, Vault, VaultError};
use rewind_model::ChunkId;

/// Chunks of one object being compressed and sealed at once, while the next is cut. Two
/// keep both cores of a small machine busy; each is paid for from the capture share.
const SEALS_IN_FLIGHT: usize = 2;

/// Writes one object into the vault as its bytes arrive. Completed chunks are stored by
/// spawned tasks, so sealing chunk N overlaps cutting chunk N+1; their ids are collected
/// in object order.
pub struct ObjectWriter {
    vault: Arc<Vault>,
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<Result<ChunkId, VaultError>>>,
    chunker: StreamingChunker,
    hasher: blake3::Hasher,
    size: u64,
    chunks: Vec<ChunkId>,
    /// The object's size, when the writer was told it.
    expected: Option<u64>,
    /// The look-ahead share reserved for the chunker's buffer.
    lookahead: Option<Charge>,
}

impl ObjectWriter {
    pub(crate) fn new(vault: Arc<Vault>, size: Option<u64>) -> Self {
        let chunker = StreamingChunker::new(vault.settings.sizes, vault.keys().chunker_seed);
        Self {
            vault,
            in_flight: std::collections::VecDeque::new(),
            chunker,
            hasher: blake3::Hasher::new(),
            size: 0,
            chunks: Vec::new(),
            expected: size,
            lookahead: None,
        }
    }

    /// Adds the next piece of the object.
    pub async fn push(&mut self, piece: &[u8]) -> Result<(), VaultError> {
        self.reserve_lookahead(piece.len()).await;
        self.hasher.update(piece);
        self.size += piece.len() as u64;
        for chunk in self.chunker.push(piece) {
            self.start(chunk).await;
            while self.in_flight.len() > SEALS_IN_FLIGHT {
                self.collect_one().await?;
            }
        }
        Ok(())
    }

    /// Ends the object: stores its last chunks, makes them durable, returns its manifest.
    pub async fn finish(self) -> Result<Manifest, VaultError> {
        self.finish_durably(true).await
    }

    /// Ends the object like [`ObjectWriter::finish`], but leaves the index entries of the
    /// packs it wrote to the caller's journal write (see [`Vault::unindexed`]): its chunks
    /// are durable in the backend when this returns, not yet indexed.
    pub async fn finish_written(self) -> Result<Manifest, VaultError> {
        self.finish_durably(false).await
    }

    async fn finish_durably(self, indexed: bool) -> Result<Manifest, VaultError> {
        let vault = self.vault.clone();
        let manifest = self.finish_unsynced().await?;
        // An empty object has nothing to make durable: do not flush other writers' pack.
        if !manifest.chunks.is_empty() {
            if indexed { vault.sync().await? } else { vault.sync_unindexed().await? }
        }
        Ok(manifest)
    }

    /// Ends the object like [`ObjectWriter::finish`] but leaves its last chunks in the open
    /// pack: they are durable only after a later [`Vault::sync`]. Writers of many small
    /// objects (an import) call it so that their objects share packs, then sync once before
    /// journaling any of them.
    pub async fn finish_unsynced(mut self) -> Result<Manifest, VaultError> {
        for chunk in self.chunker.finish() {
            self.start(chunk).await;
        }
        while !self.in_flight.is_empty() {
            self.collect_one().await?;
        }
        self.vault.count(|s| s.logical_bytes += self.size);
        let blake3 = *self.hasher.finalize().as_bytes();
        Ok(Manifest { chunks: std::mem::take(&mut self.chunks), size: self.size, blake3 })
    }

    /// Reserves, on the first piece, what the chunker's buffer can grow to: the whole
    /// look-ahead at once, so a writer never waits holding part of it. A writer told its
    /// object's size reserves no more than that (should more arrive, it reserves the rest).
    async fn reserve_lookahead(&mut self, incoming: usize) {
        let share = &self.vault.budget().lookahead;
        let cap = StreamingChunker::capacity(self.vault.settings.sizes);
        let need = match self.expected {
            Some(size) if self.size + incoming as u64 <= size => usize::try_from(size).unwrap_or(cap).min(cap),
            _ => cap,
        }
        .min(share.size());
        let held = self.lookahead.as_ref().map_or(0, Charge::bytes);
        if need > held {
            let more = share.acquire(need - held).await;
            match &mut self.lookahead {
                Some(charge) => charge.merge(more),
                None => self.lookahead = Some(more),
            }
        }
    }

    /// Starts storing `chunk` once the capture share has room for it.
    async fn start(&mut self, chunk: Chunk) {
        let vault = self.vault.clone();
        let charge = vault.charge_chunk(chunk.len()).await;
        self.in_flight.push_back(tokio::spawn(async move { vault.store_chunk(chunk, charge).await }));
    }

    async fn collect_one(&mut self) -> Result<(), VaultError> {
        let task = self.in_flight.pop_front().expect("invariant: called with tasks in flight");
        self.chunks.push(task.await.expect("invariant: storing a chunk does not panic")?);
        Ok(())
    }
}
