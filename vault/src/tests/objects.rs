//! Whole objects through a vault: writers, dedup, flushes and their failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::backend::{Backend, Spool};

/// Chunk bounds small enough for many chunks in a few MiB.
const SMALL: ChunkSizes = ChunkSizes { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

/// What a test backend does before each upload: fail it, or hold it back.
#[async_trait::async_trait]
trait PutHook: Send + Sync {
    async fn before_put(&self) -> Result<(), VaultError>;
}

/// A local backend whose uploads first go through a test's hook, and which spools packs
/// when given faults for its spools.
struct Hooked<H> {
    inner: LocalBackend,
    hook: H,
    spools: Option<Arc<SpoolFaults>>,
}

/// What fails in a test vault's spools while set: making the file durable (a failed
/// fsync), and reading it back.
#[derive(Debug, Default)]
struct SpoolFaults {
    finish: AtomicBool,
    read_back: AtomicBool,
}

#[derive(Debug)]
struct FaultySpool {
    inner: Box<dyn Spool>,
    faults: Arc<SpoolFaults>,
}

impl Spool for FaultySpool {
    fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.inner.append(data)
    }
    fn written(&self) -> u64 {
        self.inner.written()
    }
    fn finish(&mut self, name: &str) -> Result<(), VaultError> {
        if self.faults.finish.load(Ordering::SeqCst) {
            return Err(VaultError::Io(std::io::Error::other("fsync: input/output error")));
        }
        self.inner.finish(name)
    }
    fn read_all(&mut self) -> std::io::Result<Vec<u8>> {
        if self.faults.read_back.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("read: input/output error"));
        }
        self.inner.read_all()
    }
}

#[async_trait::async_trait]
impl<H: PutHook> Backend for Hooked<H> {
    async fn put(&self, name: &str, data: Bytes) -> Result<(), VaultError> {
        self.hook.before_put().await?;
        self.inner.put(name, data).await
    }
    async fn get(&self, name: &str) -> Result<Bytes, VaultError> {
        self.inner.get(name).await
    }
    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, VaultError> {
        self.inner.get_range(name, offset, len).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, VaultError> {
        self.inner.list(prefix).await
    }
    async fn exists(&self, name: &str) -> Result<bool, VaultError> {
        self.inner.exists(name).await
    }
    fn spool(&self) -> Result<Option<Box<dyn Spool>>, VaultError> {
        let Some(faults) = &self.spools else { return Ok(None) };
        let inner = self.inner.spool()?.expect("invariant: a local vault spools");
        Ok(Some(Box::new(FaultySpool { inner, faults: faults.clone() })))
    }
}

/// Uploads fail while `failing` is set, like a full disk or a lost vault.
struct Failing(AtomicBool);

#[async_trait::async_trait]
impl PutHook for Failing {
    async fn before_put(&self) -> Result<(), VaultError> {
        if self.0.load(Ordering::SeqCst) {
            return Err(VaultError::Io(std::io::Error::other("vault unreachable")));
        }
        Ok(())
    }
}

/// Uploads wait until the test adds permits; `entered` says one is waiting.
struct Gate {
    entered: AtomicBool,
    permits: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl PutHook for Gate {
    async fn before_put(&self) -> Result<(), VaultError> {
        self.entered.store(true, Ordering::SeqCst);
        self.permits.acquire().await.expect("invariant: the semaphore is never closed").forget();
        Ok(())
    }
}

/// A vault that fills packs in memory and puts them.
fn vault(dir: &std::path::Path) -> (Arc<Vault>, Arc<Hooked<Failing>>) {
    vault_with(dir, None)
}

/// A vault that fills packs in files (spools), as a local vault does.
fn spooled_vault(dir: &std::path::Path) -> (Arc<Vault>, Arc<SpoolFaults>) {
    let faults = Arc::new(SpoolFaults::default());
    (vault_with(dir, Some(faults.clone())).0, faults)
}

fn vault_with(dir: &std::path::Path, spools: Option<Arc<SpoolFaults>>) -> (Arc<Vault>, Arc<Hooked<Failing>>) {
    let backend =
        Arc::new(Hooked { inner: LocalBackend::open(dir).unwrap(), hook: Failing(AtomicBool::new(false)), spools });
    let settings = VaultSettings { sizes: SMALL, ..VaultSettings::default() };
    (Arc::new(Vault::new(Arc::new(keys()), backend.clone(), Arc::new(MemoryIndex::default()), settings)), backend)
}

async fn store(vault: &Arc<Vault>, object: &[u8]) -> Result<Manifest, VaultError> {
    let mut w = vault.writer();
    for piece in object.chunks(100_000) {
        w.push(piece).await?;
    }
    w.finish().await
}

#[tokio::test]
async fn objects_round_trip_with_a_verified_manifest() {
    for spooled in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let vault = if spooled { spooled_vault(dir.path()).0 } else { vault(dir.path()).0 };
        for object in [Vec::new(), b"tiny".to_vec(), data(3 * 1024 * 1024 + 7, 5)] {
            let m = store(&vault, &object).await.unwrap();
            assert_eq!((m.size, m.blake3), (object.len() as u64, *blake3::hash(&object).as_bytes()));
            assert_eq!(vault.read_object(&m).await.unwrap(), object);
        }
    }
}

/// A spooled pack whose file fails to become durable goes again, from a copy read back
/// and checked against its name, through `put` (never by finishing the file again: a
/// second fsync can report clean pages the first one lost). When the copy cannot be
/// read, every later sync fails: nothing that needed the pack is ever acknowledged.
#[tokio::test]
async fn a_spool_that_fails_goes_again_from_a_copy_or_fails_every_sync() {
    for read_back_fails in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (vault, faults) = spooled_vault(dir.path());
        let object = data(1024 * 1024, 12);
        let mut w = vault.writer();
        w.push(&object).await.unwrap();
        faults.finish.store(true, Ordering::SeqCst);
        faults.read_back.store(read_back_fails, Ordering::SeqCst);
        assert!(w.finish().await.is_err(), "no manifest while the pack file cannot be made durable");

        // The file still cannot be made durable.
        let again = vault.sync().await;
        let packs = || std::fs::read_dir(dir.path().join("packs")).map_or(0, |d| d.count());
        if !read_back_fails {
            again.expect("the copy read back was put");
            let m = store(&vault, &object).await.unwrap();
            assert_eq!(vault.read_object(&m).await.unwrap(), object);
            assert_eq!(packs(), 1);
            continue;
        }
        let e = again.expect_err("a pack whose bytes are lost");
        assert!(e.to_string().contains("restart the gateway"), "{e}");
        faults.finish.store(false, Ordering::SeqCst);
        faults.read_back.store(false, Ordering::SeqCst);
        assert!(vault.sync().await.is_err(), "still failing after the disk recovers");
        assert!(store(&vault, &object).await.is_err(), "nor is the same content acknowledged");
        assert_eq!(packs(), 0);
    }
}

#[tokio::test]
async fn identical_objects_are_stored_once_even_when_written_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = vault(dir.path());
    let object = Arc::new(data(2 * 1024 * 1024, 6));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (v, o) = (vault.clone(), object.clone());
            tokio::spawn(async move { store(&v, &o).await.unwrap() })
        })
        .collect();
    let mut manifests = Vec::new();
    for w in writers {
        manifests.push(w.await.unwrap());
    }
    assert!(manifests.windows(2).all(|m| m[0] == m[1]));
    let stats = vault.stats();
    assert_eq!(stats.logical_bytes, 4 * object.len() as u64);
    assert!(stats.stored_bytes < object.len() as u64 * 21 / 20, "{stats:?}");
    assert_eq!(stats.new_chunks as usize, manifests[0].chunks.len());
}

#[tokio::test]
async fn local_edits_store_little_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = vault(dir.path());
    let object = data(8 * 1024 * 1024, 7);
    store(&vault, &object).await.unwrap();
    let mut inserted = object.clone();
    inserted.splice(4_000_000..4_000_000, [0x5a; 1024]);
    let mut rewritten = object.clone();
    rewritten[2_000_000..2_000_000 + object.len() / 100].fill(0xee);
    for edited in [inserted, rewritten] {
        let before = vault.stats().stored_bytes;
        let m = store(&vault, &edited).await.unwrap();
        let new = vault.stats().stored_bytes - before;
        assert!(new < edited.len() as u64 / 20, "{new} new bytes for a small edit");
        assert_eq!(vault.read_object(&m).await.unwrap(), edited);
    }
}

/// G1: a manifest is only returned once its chunks are durable, and chunks of a failed
/// flush are written by the next successful one rather than forgotten.
#[tokio::test]
async fn a_failing_vault_fails_the_write_and_loses_nothing_once_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, backend) = vault(dir.path());
    let object = data(1024 * 1024, 8);
    let mut w = vault.writer();
    w.push(&object).await.unwrap();
    backend.hook.0.store(true, Ordering::SeqCst);
    assert!(w.finish().await.is_err(), "no manifest while the vault refuses writes");

    backend.hook.0.store(false, Ordering::SeqCst);
    vault.sync().await.unwrap();
    let m = store(&vault, &object).await.unwrap();
    assert_eq!(vault.read_object(&m).await.unwrap(), object);
    assert!(!backend.inner.list("packs/").await.unwrap().is_empty());
}

/// A written pack's chunks stay where writers and garbage collection see them (the
/// unsynced list) until their index entries are in: carried by a journal write
/// (`indexed`), or written by the next full sync.
#[tokio::test]
async fn written_packs_stay_visible_until_their_index_entries_are_in() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, backend) = vault(dir.path());
    let write = async |object: &[u8]| {
        let mut w = vault.writer();
        w.push(object).await.unwrap();
        w.finish_written().await.unwrap()
    };
    let (first, second) = (data(300_000, 21), data(300_000, 22));
    let m = write(&first).await;
    let written = vault.unindexed();
    assert_eq!(written.len(), 1, "one pack, written and not yet indexed");
    assert_eq!(backend.inner.list("packs/").await.unwrap(), vec![written[0].location.clone()], "durable");
    let ids: std::collections::HashSet<_> = written[0].entries.iter().map(|e| e.id).collect();
    assert!(m.chunks.iter().all(|id| ids.contains(id) && vault.locate(id).unwrap().is_none()));
    assert!(vault.is_unsynced(&written[0].location), "garbage collection must leave it alone");
    let rows = written[0].index_rows();
    assert_eq!(rows.len(), written[0].entries.len());
    assert_eq!(ChunkLocation::decode(ChunkId(rows[0].0), &rows[0].1).unwrap().pack, written[0].location);

    // Another writer of the same bytes finds them without the index: nothing new.
    let stored = vault.stats().new_chunks;
    assert_eq!(write(&first).await, m);
    assert_eq!(vault.stats().new_chunks, stored);
    assert_eq!(vault.unindexed(), written, "no second pack");

    // The journal write that carried the entries retires the pack.
    vault.index().insert_pack(&written[0].location, &written[0].entries).await.unwrap();
    vault.indexed(&written);
    assert!(vault.unindexed().is_empty() && !vault.is_unsynced(&written[0].location));
    assert_eq!(vault.read_object(&m).await.unwrap(), first);

    // Written packs no journal write carried are indexed by the next full sync.
    let m = write(&second).await;
    assert_eq!(vault.unindexed().len(), 1);
    vault.sync().await.unwrap();
    assert!(vault.unindexed().is_empty());
    assert_eq!(vault.read_object(&m).await.unwrap(), second);
}

#[tokio::test]
async fn writers_keep_adding_chunks_while_a_flush_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(Hooked {
        inner: LocalBackend::open(dir.path()).unwrap(),
        hook: Gate { entered: AtomicBool::new(false), permits: tokio::sync::Semaphore::new(0) },
        spools: None,
    });
    let settings = VaultSettings { sizes: SMALL, ..VaultSettings::default() };
    let vault = Arc::new(Vault::new(Arc::new(keys()), backend.clone(), Arc::new(MemoryIndex::default()), settings));
    let (first, second) = (data(500_000, 10), data(500_000, 11));

    let flushing = {
        let (v, o) = (vault.clone(), first.clone());
        tokio::spawn(async move { store(&v, &o).await.unwrap() })
    };
    while !backend.hook.entered.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }
    // The first object's upload is stuck; a second writer's chunks must still be stored.
    let stored_before = vault.stats().new_chunks;
    let mut w = vault.writer();
    w.push(&second).await.unwrap();
    let progressed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while vault.stats().new_chunks == stored_before {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(progressed.is_ok(), "storing chunks must not wait for an upload");
    assert!(!flushing.is_finished(), "the first object is not acknowledged before its pack is durable");

    backend.hook.permits.add_permits(100);
    let m1 = flushing.await.unwrap();
    let m2 = w.finish().await.unwrap();
    assert_eq!(vault.read_object(&m1).await.unwrap(), first);
    assert_eq!(vault.read_object(&m2).await.unwrap(), second);
}
