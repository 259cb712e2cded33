//! Rebuilding a lost data directory from the vault: journal records per second. Prints
//! figures; asserts nothing about time.
//!
//! A journal of `--objects` captured writes (an intent and a commit each, with realistic
//! keys, headers and one chunk) is shipped to a local vault as segments, its data
//! directory is dropped, and `rebuild` makes a new one from the vault and key file: it
//! reads and checks every segment, re-creates and imports every record with its indexes,
//! keeps the checkpoints and re-indexes the packs (`--packs`, each of 64 small chunks,
//! whose headers it reads from their ends). All on /dev/shm when it exists.
//!
//! Run: cargo bench -p rewind-cli --bench rebuild [-- --objects 500000 --packs 500]

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use rewind_capture::open;
use rewind_capture::{rebuild, ship};
use rewind_config::Config;
use rewind_journal::Durability;
use rewind_model::{Body, ChunkId, Commit, Effect, Intent, ObjectVersion, Op};

fn scratch() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() }
}

fn config(data_dir: PathBuf, vault: &std::path::Path, key_file: PathBuf) -> Config {
    let mut c = Config::default();
    c.server.data_dir = data_dir;
    c.vault.location = Some(vault.display().to_string());
    c.vault.key_file = Some(key_file);
    c
}

fn version(i: usize) -> ObjectVersion {
    let hash = |salt: &str| *blake3::hash(format!("{salt}{i}").as_bytes()).as_bytes();
    ObjectVersion {
        size: 4096 + (i as u64 * 7919) % 1_000_000,
        blake3: hash("object"),
        chunks: vec![ChunkId(hash("chunk"))],
        etag: format!("\"{}\"", hex::encode(&hash("etag")[..16])),
        version_id: None,
        headers: vec![("content-type".into(), "application/json".into())],
        metadata: vec![("origin".into(), "ingest".into())],
        tags: Vec::new(),
        parts: Vec::new(),
        checksums: Vec::new(),
        modified_us: None,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        let value = args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
        value.map_or(default, |n| n.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
    };
    let (objects, packs) = (arg("--objects", 250_000), arg("--packs", 200));
    let root = scratch();
    let (vault, key_file) = (root.path().join("vault"), root.path().join("vault.key"));
    let lost = config(root.path().join("lost"), &vault, key_file.clone());
    {
        let stores = open::open(&lost, open::Purpose::Serve).await.unwrap();
        let journal = stores.journal.clone();
        let start = Instant::now();
        let write = |i: usize| {
            let journal = journal.clone();
            async move {
                let key = format!("logs/2026/11/{:02}/{i:08}.json", i % 30);
                let intent = Intent {
                    op: Op::Put,
                    bucket: "ingest".into(),
                    key: key.clone(),
                    access_key: "AKIAINGEST".into(),
                    request_id: format!("{:016x}", i * 2_654_435_761),
                };
                let at = journal.append(Body::Intent(intent), Durability::Buffered).await.unwrap().seq;
                let commit = Commit { intent: at, bucket: "ingest".into(), key, effect: Effect::Version(version(i)) };
                journal.append(Body::Commit(commit), Durability::Buffered).await.unwrap();
            }
        };
        futures::stream::iter(0..objects).map(write).buffer_unordered(64).for_each(|()| async {}).await;
        let written = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for p in 0..packs {
            for c in 0..64 {
                let mut writer = stores.vault.writer();
                writer.push(&rewind_testkit::pattern(4096, (p * 64 + c) as u64)).await.unwrap();
                writer.finish_unsynced().await.unwrap();
            }
            stores.vault.sync().await.unwrap();
        }
        println!("vault: {packs} packs of 64 chunks written in {:.2} s", start.elapsed().as_secs_f64());
        let start = Instant::now();
        let segments = ship::ship_pending(&journal, stores.backend.as_ref()).await.unwrap();
        let shipped = start.elapsed().as_secs_f64();
        let stored: u64 =
            std::fs::read_dir(vault.join("segments")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        println!(
            "journal: {} records written in {written:.2} s; shipped as {segments} segments ({:.1} MB, {:.0} bytes/record) in {shipped:.2} s",
            objects * 2,
            stored as f64 / 1e6,
            stored as f64 / (objects * 2) as f64
        );
    }
    let new = config(root.path().join("rebuilt"), &vault, key_file);
    let done = rebuild::rebuild(&new).await.unwrap();
    assert_eq!(done.records, objects as u64 * 2);
    assert_eq!((done.packs, done.chunks), (packs as u64, packs as u64 * 64));
    println!(
        "rebuild: {} records from {} segments and {} packs' headers in {:.2} s: {:.0} records/s (target >= 100,000)",
        done.records,
        done.segments,
        done.packs,
        done.seconds,
        done.records as f64 / done.seconds
    );
}
