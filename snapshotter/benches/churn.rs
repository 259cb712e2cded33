//! Retention under churn: `--keys` keys of 64 KiB to 1 MiB, each rewritten `--rewrites`
//! times, a policy keeping only the last hour; then forget and GC with no grace period.
//! Prints the vault's bytes against the bytes of the versions kept, the sweep's rate and
//! CPU, and capture throughput with and without a GC pass running beside it (measured in
//! one run, side by side). Asserts nothing about time.
//!
//! The journal is RocksDB (on /dev/shm when it exists), the vault a local directory under
//! the system's temp directory. Writes go through the vault and the journal as a capture
//! does, in process (no HTTP): what GC competes with is the capture pipeline's CPU and disk.
//!
//! Run: cargo bench --workspace --bench churn [-- --keys 1000 --rewrites 20]

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rewind_capture::open::JournalIndex;
use rewind_config::{HumanDuration, RetentionConfig};
use rewind_crypto::{KeySet, SecretKey};
use rewind_journal::{Durability, Journal};
use rewind_model::{Body, Commit, Effect, Intent, ObjectVersion, Op};
use rewind_vault::{LocalBackend, Manifest, Vault, VaultSettings};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().unwrap())
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Incompressible content of `len` bytes, distinct per seed.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn size_of(key: usize, round: usize) -> usize {
    let span = (1 << 20) - (64 << 10);
    (64 << 10) + (key * 7919 + round * 104_729) % span
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            total += dir_bytes(&e.path());
        } else {
            total += e.metadata().unwrap().len();
        }
    }
    total
}

struct Stores {
    journal: Arc<Journal>,
    vault: Arc<Vault>,
    backend: Arc<LocalBackend>,
}

/// Writes `round` of every key in `keys` as captures do; returns the bytes written.
async fn write_round(s: &Stores, keys: std::ops::Range<usize>, round: usize) -> u64 {
    let mut bytes = 0;
    for key in keys {
        bytes += write_one(s, key, (round as u64) << 32 | key as u64, size_of(key, round)).await;
    }
    bytes
}

/// Writes `len` bytes of content `seed` to key `key` as a capture does.
async fn write_one(s: &Stores, key: usize, seed: u64, len: usize) -> u64 {
    let data = content(seed, len);
    let _writes = s.vault.enter_write();
    let name = format!("data/{key:05}.bin");
    let intent =
        Intent { op: Op::Put, bucket: "b".into(), key: name.clone(), access_key: "A".into(), request_id: "r".into() };
    let i = s.journal.append(Body::Intent(intent), Durability::Buffered).await.unwrap();
    let mut writer = s.vault.writer_sized(Some(data.len() as u64));
    writer.push(&data).await.unwrap();
    let m: Manifest = writer.finish().await.unwrap();
    let v = ObjectVersion::of_content(m.size, m.blake3, m.chunks, "e");
    let commit = Commit { intent: i.seq, bucket: "b".into(), key: name, effect: Effect::Version(v) };
    s.journal.append(Body::Commit(commit), Durability::Synced).await.unwrap();
    data.len() as u64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (keys_n, rewrites) = (arg("--keys", 1000), arg("--rewrites", 20));
    let shm = std::path::Path::new("/dev/shm");
    let jdir = if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() };
    let vdir = tempfile::tempdir().unwrap();
    let keys = Arc::new(KeySet::derive(&SecretKey::generate().unwrap()));
    let journal = Arc::new(Journal::open(jdir.path(), keys.clone()).unwrap());
    let backend = Arc::new(LocalBackend::open(vdir.path()).unwrap());
    let index = Arc::new(JournalIndex(journal.clone()));
    let vault = Arc::new(Vault::new(keys, backend.clone(), index, VaultSettings::default()));
    let s = Stores { journal, vault, backend };

    println!("churn: {keys_n} keys of 64 KiB-1 MiB, each written {rewrites} times; policy: keep the last hour");
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let mut written = 0;
    for round in 0..rewrites {
        written += write_round(&s, 0..keys_n, round).await;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  wrote {:.2} GB in {secs:.1} s: {:.0} MB/s, {:.2} ns CPU per byte",
        written as f64 / 1e9,
        written as f64 / 1e6 / secs,
        (cpu_seconds() - cpu) * 1e9 / written as f64
    );
    let kept: u64 = (0..keys_n).map(|k| size_of(k, rewrites - 1) as u64).sum();
    let packs = vdir.path().join("packs");
    let before = dir_bytes(&packs);

    // Two hours on: only each key's last version is promised.
    let retention = RetentionConfig {
        keep_all_within: HumanDuration::secs(3600),
        min_keep_all_within: HumanDuration::secs(0),
        gc_grace: HumanDuration::secs(0),
        ..RetentionConfig::default()
    };
    let later = rewind_capture::now_us() + 2 * 3_600_000_000;
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let be = s.backend.as_ref();
    let forgot =
        rewind_snapshotter::forget::forget(&s.journal, be, be, &retention, None, later, |_| Ok(0)).await.unwrap();
    println!(
        "  forget: {} records removed in {:.2} s ({:.2} s CPU)",
        forgot.records_removed,
        t.elapsed().as_secs_f64(),
        cpu_seconds() - cpu
    );
    let (t, cpu) = (Instant::now(), cpu_seconds());
    let gc = rewind_snapshotter::sweep::collect(&s.journal, &s.vault, be, Duration::ZERO, later).await.unwrap();
    let (secs, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let after = dir_bytes(&packs);
    println!(
        "  gc: {} packs deleted, {} repacked ({:.0} MB copied); {:.2} GB reclaimed in {secs:.2} s: {:.0} MB/s, {:.2} ns CPU per reclaimed byte",
        gc.packs_deleted,
        gc.packs_repacked,
        gc.bytes_repacked as f64 / 1e6,
        (before - after) as f64 / 1e9,
        (before - after) as f64 / 1e6 / secs,
        cpu * 1e9 / (before - after).max(1) as f64
    );
    println!(
        "  vault: {:.2} GB before, {:.3} GB after, for {:.3} GB of versions kept: {:.3}x (target <= 1.15x)",
        before as f64 / 1e9,
        after as f64 / 1e9,
        kept as f64 / 1e9,
        after as f64 / kept as f64
    );

    // Capture beside a GC pass: writes for a while alone, then for as long as a pass runs
    // that reclaims two more rounds of garbage; three times, for the spread. Same keys,
    // same sizes.
    let mut round = rewrites;
    let mut later = later;
    let mut ratios = Vec::new();
    for trial in 0..3 {
        for _ in 0..2 {
            write_round(&s, 0..keys_n, round).await; // garbage for the pass below
            round += 1;
        }
        later += 2 * 3_600_000_000;
        rewind_snapshotter::forget::forget(&s.journal, be, be, &retention, None, later, |_| Ok(0)).await.unwrap();
        // The garbage just written is still being written back by the kernel: let it
        // finish, so that it slows neither measure.
        let _ = std::process::Command::new("sync").status();
        // Both measures write the same keys at the same sizes, from the first key on.
        let t = Instant::now();
        let (mut alone, mut key) = (0, 0);
        while t.elapsed() < Duration::from_secs(2) {
            alone += write_one(&s, key % keys_n, (round as u64) << 32 | key as u64, size_of(key % keys_n, trial)).await;
            key += 1;
        }
        let alone_rate = alone as f64 / t.elapsed().as_secs_f64();
        let pass = {
            let (journal, vault, backend) = (s.journal.clone(), s.vault.clone(), s.backend.clone());
            tokio::spawn(async move {
                rewind_snapshotter::sweep::collect(&journal, &vault, backend.as_ref(), Duration::ZERO, later)
                    .await
                    .unwrap()
            })
        };
        let t = Instant::now();
        let (mut beside, mut key) = (0, 0);
        while !pass.is_finished() {
            beside +=
                write_one(&s, key % keys_n, (round as u64 + 1) << 32 | key as u64, size_of(key % keys_n, trial)).await;
            key += 1;
        }
        round += 2;
        let beside_secs = t.elapsed().as_secs_f64();
        let r = pass.await.unwrap();
        let beside_rate = beside as f64 / beside_secs;
        ratios.push(beside_rate / alone_rate);
        println!(
            "  trial {trial}: capture alone {:.0} MB/s; while a GC pass deleted {} packs ({:.2} GB) in {beside_secs:.1} s: {:.0} MB/s, {:.0}% of alone",
            alone_rate / 1e6,
            r.packs_deleted,
            r.bytes_reclaimed as f64 / 1e9,
            beside_rate / 1e6,
            100.0 * beside_rate / alone_rate
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!("  capture beside GC, median of 3: {:.0}% of alone (target >= 80%)", 100.0 * ratios[1]);
}
