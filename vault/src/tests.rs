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

/// A pack built in memory.
struct Packed {
    name: String,
    bytes: Bytes,
    entries: Vec<pack::PackEntry>,
}

/// Chunks, seals and packs `object` in memory; returns the pack and the chunk ids in
/// object order.
fn pack_object(keys: &KeySet, object: &[u8]) -> (Packed, Vec<ChunkId>) {
    let (pack, order) = pack_object_into(keys, object, PackBuilder::default());
    let pack::Body::Memory(bytes) = pack.body else { panic!("a default builder fills a buffer") };
    (Packed { name: pack.name, bytes, entries: pack.entries }, order)
}

/// Chunks, seals and packs `object` with `builder`.
fn pack_object_into(keys: &KeySet, object: &[u8], mut builder: PackBuilder) -> (Pack, Vec<ChunkId>) {
    let mut chunker = StreamingChunker::new(ChunkSizes::default(), keys.chunker_seed);
    let mut chunks = chunker.push(object);
    chunks.extend(chunker.finish());
    let mut order = Vec::new();
    for c in &chunks {
        let sealed = seal_chunk(keys, c, Some(compress::DEFAULT_LEVEL)).unwrap();
        order.push(sealed.id);
        builder.add(sealed.id, &sealed.sealed, sealed.raw_len, sealed.compressed).unwrap();
    }
    (builder.finish(keys).map_err(|(_, e)| e).unwrap(), order)
}

/// Reads `object` back from `bytes`, a pack of its chunks, in `order`.
fn unpack(keys: &KeySet, bytes: &[u8], entries: &[pack::PackEntry], order: &[ChunkId]) -> Vec<u8> {
    let mut object = Vec::new();
    for id in order {
        let e = entries.iter().find(|e| e.id == *id).unwrap();
        let sealed = Bytes::copy_from_slice(&bytes[e.offset as usize..][..e.stored_len as usize]);
        object.extend(open_chunk(keys, e, &sealed).unwrap());
    }
    object
}

/// A pack filled through a local vault's spool is a whole pack once finished, named by
/// its bytes, laid out as a buffer lays it out; the spool's temp file is gone after.
#[tokio::test]
async fn a_spooled_pack_is_the_pack_a_buffer_makes() {
    let keys = keys();
    let object = data(3 * 1024 * 1024 + 5, 30);
    let (in_memory, order) = pack_object(&keys, &object);
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).unwrap();
    let spool = backend.spool().unwrap().expect("a local vault spools");
    let (pack, spooled_order) = pack_object_into(&keys, &object, PackBuilder::spooled(spool).unwrap());
    assert_eq!(spooled_order, order);
    assert_eq!(pack.size, in_memory.bytes.len() as u64);
    let pack::Body::Spooled(mut spool) = pack.body else { panic!("a spooled builder's pack is in its spool") };
    let name = format!("packs/{}", pack.name);
    spool.finish(&name).unwrap();
    let stored = backend.get(&name).await.unwrap();
    // The name is the bytes' hash, and the header is authentic and says what was added.
    let entries = pack::read_header(&keys, &pack.name, &stored).unwrap();
    assert_eq!(entries, pack.entries);
    let offsets = |e: &[pack::PackEntry]| e.iter().map(|e| (e.id, e.offset, e.stored_len)).collect::<Vec<_>>();
    assert_eq!(offsets(&entries), offsets(&in_memory.entries), "laid out as in a buffer");
    assert_eq!(unpack(&keys, &stored, &entries, &order), object);
    assert!(matches!(spool.finish(&name), Err(VaultError::AlreadyExists { .. })), "never overwritten");
    drop(spool);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["packs"], "the temp file is gone");
}

/// A spool in memory whose appends fail, half written, while `fail` is set.
#[derive(Debug, Default)]
struct FlakySpool {
    bytes: Vec<u8>,
    len: usize,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl backend::Spool for FlakySpool {
    fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        // The next append goes where a failed one would have.
        self.bytes.truncate(self.len);
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            self.bytes.extend_from_slice(&data[..data.len() / 2]);
            return Err(std::io::Error::other("disk full"));
        }
        self.bytes.extend_from_slice(data);
        self.len = self.bytes.len();
        Ok(())
    }
    fn written(&self) -> u64 {
        self.len as u64
    }
    fn finish(&mut self, _: &str) -> Result<(), VaultError> {
        unreachable!("not finished in this test")
    }
    fn read_all(&mut self) -> std::io::Result<Vec<u8>> {
        Ok(self.bytes[..self.len].to_vec())
    }
}

/// A chunk whose append fails is not in the pack, nor is a header whose append failed:
/// the pack is whole, and named by the bytes it holds.
#[test]
fn a_failed_append_leaves_the_pack_as_it_was() {
    use std::sync::atomic::Ordering::SeqCst;
    let keys = keys();
    let fail = std::sync::Arc::<std::sync::atomic::AtomicBool>::default();
    let mut builder = PackBuilder::spooled(Box::new(FlakySpool { fail: fail.clone(), ..Default::default() })).unwrap();
    let (first, lost, last) = (data(1000, 1), data(3000, 2), data(2000, 3));
    let mut order = Vec::new();
    for (chunk, fails) in [(&first, false), (&lost, true), (&last, false)] {
        let sealed = seal_chunk(&keys, chunk, None).unwrap();
        let before = builder.len();
        fail.store(fails, SeqCst);
        assert_eq!(builder.add(sealed.id, &sealed.sealed, sealed.raw_len, sealed.compressed).is_err(), fails);
        if fails {
            assert_eq!(builder.len(), before);
        } else {
            order.push(sealed.id);
        }
    }
    fail.store(true, SeqCst);
    let Err((builder, _)) = builder.finish(&keys) else { panic!("the header's append failed") };
    fail.store(false, SeqCst);
    let pack = builder.finish(&keys).map_err(|(_, e)| e).unwrap();
    let pack::Body::Spooled(mut spool) = pack.body else { unreachable!() };
    let bytes = spool.read_all().unwrap();
    assert_eq!(pack.size, bytes.len() as u64);
    let entries = pack::read_header(&keys, &pack.name, &bytes).unwrap();
    assert_eq!(entries.iter().map(|e| e.id).collect::<Vec<_>>(), order);
    assert_eq!(unpack(&keys, &bytes, &entries, &order), [first, last].concat());
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

/// The temp files of a writer that died mid-pack go when the next writer claims the vault;
/// a spool of the claiming process stays.
#[test]
fn claiming_a_vault_removes_the_spools_a_dead_writer_left() {
    let dir = tempfile::tempdir().unwrap();
    let backend = LocalBackend::open(dir.path()).unwrap();
    let ours = backend.spool().unwrap().unwrap();
    // Past the largest process id Linux gives (2^22): no live process's.
    let dead = format!("{}4194305-7", durable::TEMP_PREFIX);
    std::fs::write(dir.path().join(&dead), b"half a pack").unwrap();
    let names = || {
        let mut names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    assert_eq!(names().len(), 2);
    let _held = backend.claim_writer().unwrap().unwrap();
    let left = names();
    assert!(!left.contains(&dead), "{left:?}");
    assert_eq!(left.iter().filter(|n| n.starts_with(durable::TEMP_PREFIX)).count(), 1, "ours stays: {left:?}");
    drop(ours);
    assert_eq!(names(), [backend::WRITER_LOCK], "a spool dropped unfinished leaves nothing");
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
fn header_from_end(keys: &KeySet, pack: &Packed, bytes: &[u8]) -> Result<Vec<pack::PackEntry>, VaultError> {
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

mod objects;

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
