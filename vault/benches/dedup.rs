//! Deduplication at full scale, with the default chunk sizes: one 256 MiB object stored
//! under 10 keys, then with a contiguous 1% rewritten, then with 1 KiB inserted in the
//! middle. Prints stored bytes against the targets of issue 3; asserts nothing.
//!
//! Run: cargo bench -p rewind-vault --bench dedup

#![allow(clippy::unwrap_used)] // benchmark code, like tests, may unwrap

use std::sync::Arc;
use std::time::Instant;

use rewind_crypto::{KeySet, SecretKey};
use rewind_vault::{LocalBackend, MemoryIndex, Vault, VaultSettings};

mod common;
use common::random;

const MIB: usize = 1024 * 1024;
const SIZE: usize = 256 * MIB;

async fn store(vault: &Arc<Vault>, object: &[u8]) -> u64 {
    let before = vault.stats().stored_bytes;
    let mut w = vault.writer();
    for piece in object.chunks(64 * 1024) {
        w.push(piece).await.unwrap();
    }
    w.finish().await.unwrap();
    vault.stats().stored_bytes - before
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(KeySet::derive(&SecretKey::generate().unwrap()));
    let backend = Arc::new(LocalBackend::open(dir.path()).unwrap());
    let vault = Arc::new(Vault::new(keys, backend, Arc::new(MemoryIndex::default()), VaultSettings::default()));
    let object = random(SIZE);

    let start = Instant::now();
    let first = store(&vault, &object).await;
    let secs = start.elapsed().as_secs_f64();
    for _ in 1..10 {
        store(&vault, &object).await;
    }
    let total = vault.stats().stored_bytes;
    let ratio = total as f64 / SIZE as f64;
    println!(
        "first copy: {:.0} MB/s into a local vault; 10 copies stored {:.3}x one object's size (target < 1.05x) {}",
        SIZE as f64 / secs / 1e6,
        ratio,
        verdict(ratio < 1.05)
    );
    println!(
        "  the first copy alone: {:+.3}% over the object's size (pack framing and envelopes)",
        (first as f64 / SIZE as f64 - 1.0) * 100.0
    );

    let mut rewritten = object.clone();
    let at = SIZE / 3;
    rewritten[at..at + SIZE / 100].iter_mut().for_each(|b| *b = b.wrapping_add(1));
    let new = store(&vault, &rewritten).await as f64 / SIZE as f64;
    println!("1% contiguous region rewritten: {:.2}% new data (target < 5%) {}", new * 100.0, verdict(new < 0.05));

    let mut inserted = object.clone();
    inserted.splice(SIZE / 2..SIZE / 2, [0x42u8; 1024]);
    let new = store(&vault, &inserted).await as f64 / SIZE as f64;
    println!("1 KiB inserted in the middle:   {:.2}% new data (target < 5%) {}", new * 100.0, verdict(new < 0.05));
}
