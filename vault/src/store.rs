//! Storing and reading whole objects: the API capture uses.
//!
//! Writers of any number of objects add chunks to one shared open pack, skipping chunks
//! the vault already holds. [`Vault::sync`] makes every chunk stored so far durable; a
//! writer whose sync waits behind another's finds its chunks already flushed, so
//! concurrent commits share pack writes (group flushing). Uploads happen outside the lock
//! writers take, so a slow (S3) vault does not stop chunks being added meanwhile.
//! [`Vault::sync_unindexed`] writes packs without indexing them: a journal commit then
//! carries their index entries ([`Vault::unindexed`], [`Vault::indexed`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rewind_crypto::KeySet;
use rewind_model::ChunkId;

use crate::budget::{Charge, MemoryBudget};
use crate::index::{ChunkIndex, ChunkLocation};
use crate::open_pack::OpenPack;
use crate::pack::{PackBuilder, PackEntry, TARGET_PACK_SIZE};
use crate::writer::ObjectWriter;
use crate::{Backend, Check, Chunk, ChunkSizes, VaultError, open_chunk_as, seal_chunk_as};

/// How the vault stores chunks.
#[derive(Debug, Clone, Copy)]
pub struct VaultSettings {
    /// Chunk size bounds.
    pub sizes: ChunkSizes,
    /// zstd level, or `None` to never compress.
    pub compression: Option<i32>,
    /// Bytes that writers' look-ahead, chunks in sealing and the open pack may hold, with
    /// request bodies and restores (see `budget.rs`); what does not fit waits.
    pub memory_budget: usize,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            sizes: ChunkSizes::default(),
            compression: Some(crate::compress::DEFAULT_LEVEL),
            memory_budget: 64 * 1024 * 1024,
        }
    }
}

/// Byte and chunk counts since the vault was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VaultStats {
    /// Bytes of object data handed to the vault.
    pub logical_bytes: u64,
    /// Bytes of packs written.
    pub stored_bytes: u64,
    /// Chunks stored.
    pub new_chunks: u64,
    /// Chunks skipped because the vault already held them.
    pub deduplicated_chunks: u64,
}

/// What a stored object is made of: enough to read it back and to verify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Chunk ids in object order.
    pub chunks: Vec<ChunkId>,
    /// Object size in bytes.
    pub size: u64,
    /// BLAKE3 of the whole object.
    pub blake3: [u8; 32],
}

/// A pack written to the backend whose chunks are not yet indexed (see [`Vault::unindexed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenPack {
    /// Its name as chunk locations name it (`packs/<2>/<name>`).
    pub location: String,
    /// What it holds.
    pub entries: Vec<PackEntry>,
}

impl WrittenPack {
    /// Its chunk index entries (see [`ChunkLocation::rows`]).
    pub fn index_rows(&self) -> Vec<([u8; 32], Vec<u8>)> {
        ChunkLocation::rows(&self.location, &self.entries)
    }

    pub(crate) fn content_name(&self) -> &str {
        self.location.rsplit('/').next().unwrap_or_default()
    }
}

/// Where the pack with content name `name` is stored, as chunk locations name it.
pub(crate) fn pack_location(name: &str) -> String {
    format!("packs/{}/{}", &name[..2], name)
}

/// Chunks whose compression the vault remembers (see [`Vault::compresses`]).
const COMPRESSED_CACHE: usize = 1 << 16;

/// Packs whose headers a rebuild reads at once: enough to hide an S3 vault's latency.
const REINDEX_PARALLEL: usize = 16;

/// Chunks up to this stored size are decrypted (and decompressed) on the calling task.
const INLINE_OPEN_MAX: usize = 64 << 10;
/// Chunks up to this size are hashed, compressed and sealed on the calling task: tens of
/// microseconds, about what a trip to the blocking pool costs.
const INLINE_SEAL_MAX: usize = 16 << 10;

/// A vault: keys, a backend, and an index of what it holds.
pub struct Vault {
    keys: Arc<KeySet>,
    backend: Arc<dyn Backend>,
    index: Arc<dyn ChunkIndex>,
    pub(crate) settings: VaultSettings,
    /// Short critical sections only, never held across an await: the longest is adding a
    /// chunk to a spooled pack, a write of a chunk into the page cache.
    open: Mutex<OpenPack>,
    /// Serializes flushes, which upload outside `open` so writers keep adding chunks.
    pub(crate) flushing: tokio::sync::Mutex<()>,
    stats: Mutex<VaultStats>,
    /// The memory budget (see `budget.rs`).
    budget: Arc<MemoryBudget>,
    /// Set while a flush started to relieve the capture share is running.
    relieving: AtomicBool,
    /// Writes in progress, for garbage collection (see `epoch.rs`).
    epochs: Arc<crate::Epochs>,
    /// Whether chunks stored or looked up lately were worth compressing.
    compressed: Mutex<HashMap<ChunkId, bool>>,
}

impl Vault {
    /// A vault over `backend`, indexed by `index`.
    pub fn new(
        keys: Arc<KeySet>,
        backend: Arc<dyn Backend>,
        index: Arc<dyn ChunkIndex>,
        settings: VaultSettings,
    ) -> Self {
        Self {
            keys,
            backend,
            index,
            settings,
            open: Mutex::default(),
            flushing: tokio::sync::Mutex::default(),
            stats: Mutex::default(),
            budget: Arc::new(MemoryBudget::new(settings.memory_budget)),
            relieving: AtomicBool::new(false),
            epochs: Arc::default(),
            compressed: Mutex::default(),
        }
    }

    /// Whether the vault found chunk `id` worth compressing (`None`: it does not hold it,
    /// or the index cannot be read). Remembered for the chunks stored or looked up lately,
    /// so the tripwire's check of an overwrite costs no index read.
    pub fn compresses(&self, id: &ChunkId) -> Option<bool> {
        let known = self.compressed.lock().expect("invariant: no panics while holding this lock").get(id).copied();
        if known.is_some() {
            return known;
        }
        let compressed = self.index.lookup(id).ok().flatten()?.entry.compressed;
        self.remember_compression(*id, compressed);
        Some(compressed)
    }

    fn remember_compression(&self, id: ChunkId, compressed: bool) {
        let mut cache = self.compressed.lock().expect("invariant: no panics while holding this lock");
        if cache.len() >= COMPRESSED_CACHE {
            cache.clear();
        }
        cache.insert(id, compressed);
    }

    /// Marks a write in progress until the guard is dropped: held from a write's first
    /// chunk lookup until the version using its chunks is journaled (or abandoned), and by
    /// readers of chunks, so that garbage collection waits for them (see `epoch.rs`).
    pub fn enter_write(&self) -> crate::WriteGuard {
        self.epochs.enter()
    }

    /// Returns once every write entered before the call has ended.
    pub async fn settle_writes(&self) {
        self.epochs.settle().await;
    }

    /// Writes in progress (see [`Vault::enter_write`]).
    pub fn writes_in_progress(&self) -> usize {
        self.epochs.in_progress()
    }

    /// Whether the pack `name` (as chunk locations name it) is written or being written by
    /// this vault but not yet indexed: its index entries are still to come.
    pub fn is_unsynced(&self, name: &str) -> bool {
        let content_name = name.rsplit('/').next().unwrap_or_default();
        self.lock_open().unsynced.iter().any(|u| u.pack.name == content_name)
    }

    /// The chunk index.
    pub fn index(&self) -> &Arc<dyn ChunkIndex> {
        &self.index
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The keys.
    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    /// The memory budget, shared with what else requests hold (bodies, restores).
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// Bytes of chunks being sealed or waiting in the open pack to be durable.
    pub fn buffered_bytes(&self) -> usize {
        self.budget.capture.used()
    }

    /// Bytes of packs held in memory: the one being filled, and finished ones not yet
    /// written to the backend.
    pub fn unsynced_bytes(&self) -> usize {
        let open = self.lock_open();
        let filling = open.builder.as_ref().map_or(0, PackBuilder::len);
        filling + open.unsynced.iter().map(|u| usize::try_from(u.pack.size).unwrap_or(usize::MAX)).sum::<usize>()
    }

    /// Starts writing one object of unknown size.
    pub fn writer(self: &Arc<Self>) -> ObjectWriter {
        self.writer_sized(None)
    }

    /// Starts writing one object whose size is `size` when known (its look-ahead need not
    /// be reserved beyond it).
    pub fn writer_sized(self: &Arc<Self>, size: Option<u64>) -> ObjectWriter {
        ObjectWriter::new(self.clone(), size)
    }

    /// Capture-share bytes for a chunk of `len` (the chunk and its sealed copy). When the
    /// share is used up and the open pack holds charges, that pack is flushed early to
    /// release them; then this waits.
    pub(crate) async fn charge_chunk(self: &Arc<Self>, len: usize) -> Charge {
        let bytes = len.saturating_mul(2);
        if let Some(charge) = self.budget.capture.try_acquire(bytes) {
            return charge;
        }
        self.relieve();
        self.budget.capture.acquire(bytes).await
    }

    /// Flushes the open pack in the background, unless a flush for this is running.
    fn relieve(self: &Arc<Self>) {
        if self.relieving.swap(true, Ordering::AcqRel) {
            return;
        }
        let vault = self.clone();
        tokio::spawn(async move {
            if let Err(e) = vault.sync().await {
                tracing::debug!(error = %e, "an early flush of the open pack failed; writers keep waiting for the vault");
            }
            vault.relieving.store(false, Ordering::Release);
        });
    }

    /// Counts so far.
    pub fn stats(&self) -> VaultStats {
        *self.stats.lock().expect("invariant: no panics while holding this lock")
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut VaultStats)) {
        f(&mut self.stats.lock().expect("invariant: no panics while holding this lock"));
    }

    pub(crate) fn lock_open(&self) -> std::sync::MutexGuard<'_, OpenPack> {
        self.open.lock().expect("invariant: no panics while holding this lock")
    }

    /// Stores one chunk unless the vault already holds it; returns its id. `charge` pays
    /// for the chunk and its sealed copy: released at once for a chunk the vault holds,
    /// half when the sealed copy is in the open pack, the rest when that pack is durable.
    pub(crate) async fn store_chunk(self: &Arc<Self>, chunk: Chunk, charge: Charge) -> Result<ChunkId, VaultError> {
        // Hashing, compression, encryption and a spooled pack's write are blocking work:
        // keep them off the async threads, unless the chunk is small enough that a trip to
        // the blocking pool (two thread switches) costs more.
        let vault = self.clone();
        let inline = chunk.len() <= INLINE_SEAL_MAX;
        let store = move || vault.seal_and_add(chunk, charge);
        let (id, full) = if inline {
            store()?
        } else {
            tokio::task::spawn_blocking(store).await.expect("invariant: sealing does not panic")?
        };
        if full {
            self.sync().await?;
        }
        Ok(id)
    }

    /// Seals `chunk` into the open pack unless the vault holds it; returns its id and
    /// whether the pack is full. Blocks. The chunk is hashed once: the id decides dedup
    /// and keys the encryption.
    fn seal_and_add(&self, chunk: Chunk, mut charge: Charge) -> Result<(ChunkId, bool), VaultError> {
        let id = self.keys.chunk_id(&chunk);
        let deduplicated = || {
            self.count(|s| s.deduplicated_chunks += 1);
            Ok((id, false))
        };
        // Read with `holds`: a pack retired after this is in `recent` (below), one retired
        // before it is in the index.
        let (held, seen) = {
            let open = self.lock_open();
            (open.holds(&id), open.retired)
        };
        if held {
            return deduplicated();
        }
        if let Some(location) = self.index.lookup(&id)? {
            self.remember_compression(id, location.entry.compressed);
            return deduplicated();
        }
        let sealed = seal_chunk_as(&self.keys, id, chunk, self.settings.compression)?;
        self.remember_compression(id, sealed.compressed);
        let full = {
            let mut guard = self.lock_open();
            let open = &mut *guard;
            // Another writer of this gateway may have stored the same content meanwhile,
            // and even flushed and indexed it: a pack leaves `unsynced` for `recent` under
            // this lock, after it is indexed, so checking both is conclusive without a
            // second index read (one only when too many packs retired meanwhile).
            let stored = open.holds(&id)
                || match open.retired_since(seen, &id) {
                    Some(retired) => retired,
                    None => self.index.lookup(&id)?.is_some(),
                };
            if stored {
                drop(guard);
                return deduplicated();
            }
            let builder =
                open.builder.get_or_insert_with(|| crate::flush::next_builder(&*self.backend, open.spare.take()));
            builder.add(id, &sealed.sealed, sealed.raw_len, sealed.compressed)?;
            let full = builder.len() >= TARGET_PACK_SIZE;
            open.ids.insert(id);
            open.charges.push(charge.split(sealed.sealed.len()));
            self.count(|s| s.new_chunks += 1);
            full
        };
        // The envelope is in the pack now: its buffer holds a later chunk.
        crate::buffers::give(sealed.sealed);
        Ok((id, full))
    }

    /// Writes `chunks` (entries of other packs and their sealed envelopes, copied as they
    /// are) into new packs of their own, apart from the one writers fill, and indexes
    /// nothing: garbage collection repacks with it and moves the index entries itself.
    /// Returns each new pack's name (as chunk locations name it) and entries.
    pub async fn write_packs(
        &self,
        chunks: Vec<(PackEntry, Bytes)>,
    ) -> Result<Vec<(String, Vec<PackEntry>)>, VaultError> {
        let mut written = Vec::new();
        let mut builder = PackBuilder::default();
        let mut rest = chunks.into_iter().peekable();
        while let Some((entry, sealed)) = rest.next() {
            builder.add(entry.id, &sealed, entry.raw_len, entry.compressed)?;
            if builder.len() >= TARGET_PACK_SIZE || rest.peek().is_none() {
                let pack = std::mem::take(&mut builder).finish(&self.keys).map_err(|(_, e)| e)?;
                self.write_pack(&pack.name, pack.body).await.map_err(|(_, e)| e)?;
                self.count(|s| s.stored_bytes += pack.size);
                written.push((pack_location(&pack.name), pack.entries));
            }
        }
        Ok(written)
    }

    /// Where a chunk is stored, if the vault holds it.
    pub fn locate(&self, id: &ChunkId) -> Result<Option<ChunkLocation>, VaultError> {
        self.index.lookup(id)
    }

    /// The name of every pack in the backend (as chunk locations name them).
    pub async fn pack_names(&self) -> Result<Vec<String>, VaultError> {
        self.backend.list("packs/").await
    }

    /// Rebuilds the chunk index from the packs' own headers (after the index was lost with
    /// the gateway's data directory); returns the packs and chunks indexed. Only each
    /// pack's end is read, several packs at once: an S3 vault is not downloaded whole.
    pub async fn reindex(&self) -> Result<(usize, usize), VaultError> {
        use futures::StreamExt;
        let names = self.pack_names().await?;
        let packs = names.len();
        let mut headers =
            futures::stream::iter(names).map(|name| self.pack_header(name)).buffer_unordered(REINDEX_PARALLEL);
        let mut chunks = 0;
        while let Some(read) = headers.next().await {
            let (name, entries) = read?;
            self.index.insert_pack(&name, &entries).await?;
            chunks += entries.len();
        }
        Ok((packs, chunks))
    }

    /// The entries of pack `name`, read from its end.
    pub async fn pack_header(&self, name: String) -> Result<(String, Vec<PackEntry>), VaultError> {
        let content_name = name.rsplit('/').next().unwrap_or_default().to_owned();
        let mut want = crate::pack::TAIL_GUESS;
        loop {
            let (tail, size) = self.backend.get_tail(&name, want).await?;
            match crate::pack::read_header_from_tail(&self.keys, &content_name, &tail, size)? {
                crate::pack::Tail::Entries(entries) => return Ok((name, entries)),
                crate::pack::Tail::Needs(n) if n > want => want = n,
                crate::pack::Tail::Needs(_) => {
                    return Err(VaultError::Corrupt {
                        what: format!("pack {content_name}"),
                        detail: "its end is shorter than its header says".into(),
                    });
                }
            }
        }
    }

    /// Reads one chunk, checking that its content hashes to its id.
    pub async fn read_chunk(&self, id: &ChunkId) -> Result<Bytes, VaultError> {
        self.read_chunk_checked(id, Check::Id).await
    }

    /// Reads one chunk, checking as `check` says.
    pub async fn read_chunk_checked(&self, id: &ChunkId, check: Check) -> Result<Bytes, VaultError> {
        let loc = self.index.lookup(id)?.ok_or_else(|| VaultError::NotFound { name: format!("chunk {id}") })?;
        let sealed = self.backend.get_range(&loc.pack, loc.entry.offset, u64::from(loc.entry.stored_len)).await?;
        // Opening a small chunk takes microseconds, less than a trip to the blocking pool.
        if sealed.len() <= INLINE_OPEN_MAX {
            return open_chunk_as(&self.keys, &loc.entry, sealed, check);
        }
        let keys = self.keys.clone();
        tokio::task::spawn_blocking(move || open_chunk_as(&keys, &loc.entry, sealed, check))
            .await
            .expect("invariant: opening does not panic")
    }

    /// Size and BLAKE3 of the object made of `chunks`, read back from the vault (for
    /// objects assembled from separately stored parts). Each chunk is checked on the way.
    pub async fn hash_chunks(&self, chunks: &[ChunkId]) -> Result<(u64, [u8; 32]), VaultError> {
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        for id in chunks {
            let chunk = self.read_chunk(id).await?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok((size, *hasher.finalize().as_bytes()))
    }

    /// Reads a whole object and checks it against its manifest.
    pub async fn read_object(&self, manifest: &Manifest) -> Result<Vec<u8>, VaultError> {
        let mut out = Vec::with_capacity(usize::try_from(manifest.size).unwrap_or(0));
        for id in &manifest.chunks {
            out.extend(self.read_chunk_checked(id, Check::Envelope).await?);
        }
        if out.len() as u64 != manifest.size || *blake3::hash(&out).as_bytes() != manifest.blake3 {
            return Err(VaultError::Corrupt {
                what: "object".into(),
                detail: "its chunks do not add up to its manifest".into(),
            });
        }
        Ok(out)
    }
}
