use bytes::Bytes;
use proptest::prelude::*;
use rewind_crypto::{KeySet, SecretKey};

use super::*;

fn keys() -> KeySet {
    KeySet::derive(&SecretKey::generate().unwrap())
}

/// Deterministic test data (xorshift). With `compressible`, a quarter of the bytes are the
/// same letter, so chunks compress; without, the bytes are incompressible.
pub(crate) fn generate(len: usize, seed: u64, compressible: bool) -> Vec<u8> {
    // Mixed first: `seed | 1` alone would give seeds 2n and 2n+1 the same data.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if compressible && (x >> 40).is_multiple_of(4) { b'a' } else { x as u8 }
        })
        .collect()
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    generate(len, seed, true)
}

/// Chunks, seals and packs `object`; returns the pack and the chunk ids in object order.
fn pack_object(keys: &KeySet, object: &[u8]) -> (Pack, Vec<ChunkId>) {
    let mut chunker = StreamingChunker::new(ChunkSizes::default(), keys.chunker_seed);
    let mut chunks = chunker.push(object);
    chunks.extend(chunker.finish());
    let mut builder = PackBuilder::default();
    let mut order = Vec::new();
    for c in &chunks {
        let sealed = seal_chunk(keys, c, Some(compress::DEFAULT_LEVEL)).unwrap();
        order.push(sealed.id);
        builder.add(sealed.id, &sealed.sealed, sealed.raw_len, sealed.compressed);
    }
    (builder.finish(keys).unwrap(), order)
}

#[tokio::test]
async fn local_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    backend::conformance::run(&LocalBackend::open(dir.path()).unwrap()).await;
    // No temporary files are left behind.
    let leftovers = std::fs::read_dir(dir.path().join("packs/ab")).unwrap().count();
    assert_eq!(leftovers, 1);
}

#[tokio::test]
async fn one_writer_at_a_time_claims_a_local_vault() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).unwrap();
    let held = backend.claim_writer().unwrap().expect("the first claim");
    assert!(backend.claim_writer().unwrap().is_none(), "a second writer was let in");
    // The lock file is not a vault object.
    backend.put("keys/master", Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(backend.list("").await.unwrap(), ["keys/master"]);
    drop(held);
    assert!(backend.claim_writer().unwrap().is_some(), "released with its holder");
}

#[tokio::test]
async fn concurrent_creators_of_one_name_get_exactly_one_success() {
    let dir = tempfile::tempdir().unwrap();
    let backend = std::sync::Arc::new(LocalBackend::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let b = backend.clone();
            tokio::spawn(async move { b.put("race/name", Bytes::from(vec![i; 1000])).await.is_ok() })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn an_object_round_trips_through_a_pack_on_the_backend() {
    let keys = keys();
    let object = data(5 * 1024 * 1024 + 123, 1);
    let (pack, order) = pack_object(&keys, &object);
    assert!(order.len() >= 2, "a 5 MiB object makes several chunks");

    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).unwrap();
    let name = format!("packs/{}", pack.name);
    backend.put(&name, pack.bytes.clone()).await.unwrap();

    let stored = backend.get(&name).await.unwrap();
    let entries = pack::read_header(&keys, &pack.name, &stored).unwrap();
    assert_eq!(entries, pack.entries);
    let mut rebuilt = Vec::new();
    for id in &order {
        let e = entries.iter().find(|e| e.id == *id).unwrap();
        let sealed = backend.get_range(&name, e.offset, u64::from(e.stored_len)).await.unwrap();
        rebuilt.extend(open_chunk(&keys, e, &sealed).unwrap());
    }
    assert_eq!(rebuilt, object);
}

/// Reads a pack's header from its end the way a rebuild does: a short tail first, then as
/// much as the header says it needs.
fn header_from_end(keys: &KeySet, pack: &Pack, bytes: &[u8]) -> Result<Vec<pack::PackEntry>, VaultError> {
    let mut want = 20;
    loop {
        let tail = &bytes[bytes.len().saturating_sub(want)..];
        match pack::read_header_from_tail(keys, &pack.name, tail, bytes.len() as u64)? {
            pack::Tail::Entries(entries) => return Ok(entries),
            pack::Tail::Needs(n) if n as usize > want && n as usize <= bytes.len() => want = n as usize,
            pack::Tail::Needs(n) => panic!("asked for {n} bytes of a {}-byte pack", bytes.len()),
        }
    }
}

#[test]
fn a_packs_header_is_read_from_its_end_alone() {
    let (keys, other) = (keys(), keys());
    // Past the largest chunk, so that there are always at least two, whatever the keyed
    // chunker's boundaries (3 MiB was one chunk for about one key in a hundred).
    let size = ChunkSizes::MAX_CHUNK as usize + 1024 * 1024;
    let (pack, _) = pack_object(&keys, &data(size, 4));
    assert!(pack.entries.len() >= 2);
    assert_eq!(header_from_end(&keys, &pack, &pack.bytes).unwrap(), pack.entries);
    let tail = &pack.bytes[pack.bytes.len() - 20..];
    let needs = pack::read_header_from_tail(&keys, &pack.name, tail, pack.bytes.len() as u64).unwrap();
    assert!(matches!(needs, pack::Tail::Needs(n) if n > 20), "{needs:?}");
    assert!(header_from_end(&other, &pack, &pack.bytes).is_err(), "another vault's keys");
    assert!(header_from_end(&keys, &pack, &pack.bytes[..pack.bytes.len() - 1]).is_err(), "a cut pack");
}

#[test]
fn another_vaults_keys_open_nothing() {
    let (a, b) = (keys(), keys());
    let (pack, _) = pack_object(&a, &data(100_000, 2));
    assert!(pack::read_header(&b, &pack.name, &pack.bytes).is_err());
    let e = pack.entries[0];
    let sealed = &pack.bytes[e.offset as usize..e.offset as usize + e.stored_len as usize];
    assert!(open_chunk(&b, &e, sealed).is_err());
}

#[test]
fn identical_content_gets_identical_chunk_ids_within_a_vault_only() {
    let (a, b) = (keys(), keys());
    let object = data(3 * 1024 * 1024, 3);
    assert_eq!(pack_object(&a, &object).1, pack_object(&a, &object).1, "dedup needs stable ids");
    assert_ne!(pack_object(&a, &object).1, pack_object(&b, &object).1, "ids are keyed per vault");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any single flipped bit anywhere in a pack is caught: by the name check, the header's
    /// authentication, or the chunk's.
    #[test]
    fn any_flipped_bit_in_a_pack_is_detected(bit in any::<prop::sample::Index>(), seed: u64) {
        let keys = keys();
        let (pack, _) = pack_object(&keys, &data(20_000, seed));
        let mut bytes = pack.bytes.to_vec();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        // A reader that trusts the name would still catch it in the AEAD checks.
        let via_name = pack::read_header(&keys, &pack.name, &bytes);
        prop_assert!(via_name.is_err());
        let renamed = blake3::hash(&bytes).to_hex().to_string();
        let detected = match pack::read_header(&keys, &renamed, &bytes) {
            Err(_) => true,
            Ok(entries) => entries.iter().any(|e| {
                let sealed = &bytes[e.offset as usize..e.offset as usize + e.stored_len as usize];
                let envelope_only = open_chunk_as(&keys, e, Bytes::copy_from_slice(sealed), Check::Envelope);
                assert_eq!(open_chunk(&keys, e, sealed).is_err(), envelope_only.is_err(), "the envelope alone decides");
                envelope_only.is_err()
            }),
        };
        prop_assert!(detected, "flipped bit {} went unnoticed", bit);
    }

    /// Read from its end alone, a pack's header is refused when any bit of that end
    /// (header, its length, trailer) is flipped.
    #[test]
    fn any_flipped_bit_in_a_packs_end_is_detected(at in any::<prop::sample::Index>(), bit in 0u8..8, seed: u64) {
        let keys = keys();
        let (pack, _) = pack_object(&keys, &data(20_000, seed));
        let last_chunk_end = pack.entries.iter().map(|e| e.offset + u64::from(e.stored_len)).max().unwrap() as usize;
        let mut bytes = pack.bytes.to_vec();
        let i = last_chunk_end + at.index(bytes.len() - last_chunk_end);
        bytes[i] ^= 1 << bit;
        prop_assert!(header_from_end(&keys, &pack, &bytes).is_err(), "flipped bit at byte {} went unnoticed", i);
    }
}

mod objects {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::backend::Backend;

    /// Chunk bounds small enough for many chunks in a few MiB.
    const SMALL: ChunkSizes = ChunkSizes { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };

    /// What a test backend does before each upload: fail it, or hold it back.
    #[async_trait::async_trait]
    trait PutHook: Send + Sync {
        async fn before_put(&self) -> Result<(), VaultError>;
    }

    /// A local backend whose uploads first go through a test's hook.
    struct Hooked<H> {
        inner: LocalBackend,
        hook: H,
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

    fn vault(dir: &std::path::Path) -> (Arc<Vault>, Arc<Hooked<Failing>>) {
        let backend =
            Arc::new(Hooked { inner: LocalBackend::open(dir).unwrap(), hook: Failing(AtomicBool::new(false)) });
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
        let dir = tempfile::tempdir().unwrap();
        let (vault, _) = vault(dir.path());
        for object in [Vec::new(), b"tiny".to_vec(), data(3 * 1024 * 1024 + 7, 5)] {
            let m = store(&vault, &object).await.unwrap();
            assert_eq!((m.size, m.blake3), (object.len() as u64, *blake3::hash(&object).as_bytes()));
            assert_eq!(vault.read_object(&m).await.unwrap(), object);
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
}

proptest! {
    #[test]
    fn chunk_locations_round_trip(offset in any::<u64>(), stored in any::<u32>(), raw in any::<u32>(), compressed in any::<bool>(), pack in "[a-z0-9/]{0,80}") {
        let loc = index::ChunkLocation { pack, entry: PackEntry { id: ChunkId([7; 32]), offset, stored_len: stored, raw_len: raw, compressed } };
        prop_assert_eq!(index::ChunkLocation::decode(ChunkId([7; 32]), &loc.encode()).unwrap(), loc);
    }
}

#[tokio::test]
async fn a_small_budget_still_stores_many_concurrent_objects() {
    let dir = tempfile::tempdir().unwrap();
    use std::sync::Arc;
    let small = ChunkSizes { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };
    let backend = Arc::new(LocalBackend::open(dir.path()).unwrap());
    let settings = VaultSettings { sizes: small, memory_budget: 3 * small.max as usize, ..VaultSettings::default() };
    let vault = Arc::new(Vault::new(Arc::new(keys()), backend, Arc::new(MemoryIndex::default()), settings));
    let tasks: Vec<_> = (0..8u64)
        .map(|seed| {
            let vault = vault.clone();
            tokio::spawn(async move {
                let object = data(200_000, seed);
                let mut w = vault.writer();
                for piece in object.chunks(7_000) {
                    w.push(piece).await.unwrap();
                }
                let manifest = w.finish().await.unwrap();
                assert_eq!(vault.read_object(&manifest).await.unwrap(), object);
                assert_eq!(vault.hash_chunks(&manifest.chunks).await.unwrap(), (manifest.size, manifest.blake3));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(vault.buffered_bytes(), 0);
}

/// A backend whose writes all fail, as a vault on an S3 endpoint that is down.
struct Down(LocalBackend);

#[async_trait::async_trait]
impl Backend for Down {
    async fn put(&self, _name: &str, _data: Bytes) -> Result<(), VaultError> {
        Err(VaultError::Io(std::io::Error::other("the vault is down")))
    }
    async fn get(&self, name: &str) -> Result<Bytes, VaultError> {
        self.0.get(name).await
    }
    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, VaultError> {
        self.0.get_range(name, offset, len).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, VaultError> {
        self.0.list(prefix).await
    }
    async fn exists(&self, name: &str) -> Result<bool, VaultError> {
        self.0.exists(name).await
    }
}

/// Review F11: while the vault is down, refused uploads kept their chunks in memory without
/// bound (12 refused 16 MiB PUTs: 35 → 329 MiB). Now what packs hold in memory stays within
/// the capture share: writers wait (and are refused by the gateway's timeout) instead.
#[tokio::test]
async fn a_down_vault_holds_no_more_than_the_capture_share_however_many_writers_fail() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let small = ChunkSizes { min: 16 * 1024, avg: 64 * 1024, max: 256 * 1024 };
    let budget = 4 << 20;
    let settings = VaultSettings { sizes: small, memory_budget: budget, ..VaultSettings::default() };
    let backend = Arc::new(Down(LocalBackend::open(dir.path()).unwrap()));
    let vault = Arc::new(Vault::new(Arc::new(keys()), backend, Arc::new(MemoryIndex::default()), settings));
    let share = vault.budget().capture.size();
    let mut refused = 0;
    for seed in 0..24u64 {
        let writing = vault.clone();
        // 24 writers of 1 MiB each: six times the whole budget.
        let write = async move {
            let mut w = writing.writer();
            for piece in generate(1 << 20, seed, false).chunks(64 * 1024) {
                w.push(piece).await?;
            }
            w.finish().await
        };
        match tokio::time::timeout(std::time::Duration::from_millis(500), write).await {
            Ok(Ok(_)) => panic!("a write to a down vault succeeded"),
            Ok(Err(_)) | Err(_) => refused += 1,
        }
        assert!(vault.unsynced_bytes() <= share, "packs hold {} bytes, share {share}", vault.unsynced_bytes());
    }
    assert_eq!(refused, 24);
}

proptest! {
    /// Pack headers, index entries and whole packs: arbitrary bytes give an error, never a panic.
    #[test]
    fn pack_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), size in 0u64..10_000) {
        let k = keys();
        let _ = pack::read_header_from_tail(&k, "p", &bytes, size);
        let _ = pack::read_header_from_tail(&k, "p", &bytes, bytes.len() as u64);
        let _ = pack::read_header(&k, "p", &bytes);
        let _ = index::ChunkLocation::decode(ChunkId([1; 32]), &bytes);
    }

    /// A real pack's end with one byte changed is refused, not misread.
    #[test]
    fn a_damaged_pack_header_is_refused(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let k = keys();
        let (pack, _) = pack_object(&k, &data(3000, 1));
        let mut bytes = pack.bytes.to_vec();
        // The header envelope, its length and the trailer: everything after the chunks.
        let n = bytes.len();
        let sealed_len = u32::from_le_bytes(bytes[n - 11..n - 7].try_into().unwrap()) as usize;
        let tail_start = n - 11 - sealed_len;
        let i = tail_start + at.index(bytes.len() - tail_start);
        bytes[i] ^= flip;
        prop_assert!(pack::read_header_from_tail(&k, &pack.name, &bytes, bytes.len() as u64).is_err());
    }
}
