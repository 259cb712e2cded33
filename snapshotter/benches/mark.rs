//! GC's mark (the retention plan over every bucket, then every chunk of the index sorted
//! into live, expired and unreferenced packs), against the baseline of reading and
//! decrypting every journal record once. Prints figures; asserts nothing about time.
//!
//! The journal holds `--keys` keys, each written `--versions` times (an intent and a commit
//! per write, `--chunks` chunks per version, 16 chunks per pack); the policy keeps only the
//! current state, so all but the last version of each key expire. RocksDB on /dev/shm when
//! it exists.
//!
//! Run: cargo bench -p rewind-snapshotter --bench mark [-- --keys 20000 --versions 5 --chunks 10]

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use rewind_config::{HumanDuration, RetentionConfig};
use rewind_crypto::{KeySet, SecretKey};
use rewind_journal::{Durability, Journal};
use rewind_model::{Body, ChunkId, Commit, Effect, Intent, ObjectVersion, Op, Seq};
use rewind_vault::{ChunkLocation, PackEntry};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().unwrap())
}

fn chunk(n: usize) -> ChunkId {
    ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

#[tokio::main]
async fn main() {
    let (keys_n, versions_n, chunks_n) = (arg("--keys", 20_000), arg("--versions", 5), arg("--chunks", 10));
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() };
    let keys = Arc::new(KeySet::derive(&SecretKey::generate().unwrap()));
    let journal = Journal::open(dir.path(), keys).unwrap();
    let started = Instant::now();
    let mut next_chunk = 0;
    let mut index = Vec::new();
    for v in 0..versions_n {
        for batch in (0..keys_n).collect::<Vec<_>>().chunks(500) {
            let mut bodies = Vec::with_capacity(batch.len() * 2);
            let head = journal.head().unwrap().seq.0;
            for (n, k) in batch.iter().enumerate() {
                let key = format!("data/{k:07}.bin");
                let chunks: Vec<ChunkId> = (0..chunks_n).map(|c| chunk(next_chunk + c)).collect();
                for (c, id) in chunks.iter().enumerate() {
                    let n = next_chunk + c;
                    let entry = PackEntry { id: *id, offset: 0, stored_len: 4096, raw_len: 4096, compressed: false };
                    index.push((id.0, ChunkLocation { pack: format!("packs/{:08}", n / 16), entry }.encode()));
                }
                next_chunk += chunks_n;
                let intent = Intent {
                    op: Op::Put,
                    bucket: "bench".into(),
                    key: key.clone(),
                    access_key: "AK".into(),
                    request_id: format!("r{v}-{k}"),
                };
                let version = ObjectVersion {
                    size: 4096 * chunks_n as u64,
                    blake3: [v as u8; 32],
                    chunks,
                    etag: format!("{v}-{k}"),
                    version_id: None,
                    headers: vec![("content-type".into(), "application/octet-stream".into())],
                    metadata: Vec::new(),
                    tags: Vec::new(),
                    parts: Vec::new(),
                    checksums: Vec::new(),
                    modified_us: None,
                };
                let intent_seq = Seq(head + 1 + 2 * n as u64);
                bodies.push(Body::Intent(intent));
                bodies.push(Body::Commit(Commit {
                    intent: intent_seq,
                    bucket: "bench".into(),
                    key,
                    effect: Effect::Version(version),
                }));
            }
            journal.append_all(bodies, Durability::Buffered, Vec::new()).await.unwrap();
            if index.len() >= 50_000 {
                journal.chunk_put_all(std::mem::take(&mut index)).await.unwrap();
            }
        }
    }
    journal.chunk_put_all(index).await.unwrap();
    let records = journal.head().unwrap().seq.0;
    let packs: Vec<String> = (0..next_chunk.div_ceil(16)).map(|n| format!("packs/{n:08}")).collect();
    println!(
        "journal: {records} records, {} versions, {next_chunk} chunks in {} packs (built in {:.1} s)",
        keys_n * versions_n,
        packs.len(),
        started.elapsed().as_secs_f64()
    );

    // Baseline: every record read and decrypted once, in order.
    let t = Instant::now();
    let mut read = 0u64;
    let mut from = Seq(1);
    loop {
        let batch = journal.records(from, 4096).unwrap();
        let Some(last) = batch.last() else { break };
        from = Seq(last.seq.0 + 1);
        read += batch.len() as u64;
    }
    let scan = t.elapsed().as_secs_f64();
    assert_eq!(read, records);

    let only_now = RetentionConfig {
        keep_all_within: HumanDuration::secs(0),
        min_keep_all_within: HumanDuration::secs(0),
        ..RetentionConfig::default()
    };
    let now = journal.head().unwrap().timestamp_us;
    let t = Instant::now();
    let plan = rewind_snapshotter::gc::plan(&journal, &only_now, now, &packs).unwrap();
    let mark = t.elapsed().as_secs_f64();
    assert_eq!(plan.packs, packs.len() as u64);
    println!("baseline, read every record:  {scan:.2} s ({:.0} records/s)", records as f64 / scan);
    println!(
        "mark (plan + sort the index): {mark:.2} s ({:.0} chunks/s), {:.2}x the baseline; {} packs dead, {} partly",
        next_chunk as f64 / mark,
        mark / scan,
        plan.packs_dead,
        plan.packs_partly_dead
    );
}
