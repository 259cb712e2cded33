//! The vault's write pipeline on one core: chunk -> hash -> compress -> encrypt, per stage
//! and together, for incompressible and compressible data; plus the two AES-GCM
//! implementations side by side. Prints numbers; asserts nothing.
//!
//! Run: cargo bench -p rewind-vault --bench pipeline

#![allow(clippy::unwrap_used)] // benchmark code, like tests, may unwrap

use std::hint::black_box;
use std::time::Instant;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use rewind_crypto::{KeySet, SecretKey, aead};
use rewind_vault::{ChunkSizes, StreamingChunker, compress};

mod common;
use common::random;

const MIB: usize = 1024 * 1024;
const DATA: usize = 256 * MIB;
/// Network-sized pieces, as bodies arrive.
const PIECE: usize = 64 * 1024;

/// Log-like text: compresses about 4-6x with zstd -1, like real logs and JSON.
fn text(len: usize) -> Vec<u8> {
    let words = [
        "GET",
        "PUT",
        "/api/v1/objects",
        "200",
        "404",
        "user=alice",
        "user=bob",
        "latency_ms=",
        "bytes=",
        "region=eu-west-1",
    ];
    let mut x = 1u64;
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        out.extend_from_slice(words[(x >> 33) as usize % words.len()].as_bytes());
        out.extend_from_slice(format!(" {} ", (x >> 20) % 1000).as_bytes());
        if (x >> 60) == 0 {
            out.push(b'\n');
        }
    }
    out.truncate(len);
    out
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

fn pipeline(name: &str, data: &[u8], keys: &KeySet) {
    let (chunks, t_chunk) = time(|| {
        let mut c = StreamingChunker::new(ChunkSizes::default(), keys.chunker_seed);
        let mut out = Vec::new();
        for piece in data.chunks(PIECE) {
            out.extend(c.push(piece));
        }
        out.extend(c.finish());
        out
    });
    let (ids, t_hash) = time(|| chunks.iter().map(|c| keys.chunk_id(c)).collect::<Vec<_>>());
    let (packed, t_compress) =
        time(|| chunks.iter().map(|c| compress::compress(c, compress::DEFAULT_LEVEL)).collect::<Vec<_>>());
    let stored_bytes: usize = chunks.iter().zip(&packed).map(|(c, p)| p.as_ref().map_or(c.len(), Vec::len)).sum();
    let (_, t_seal) = time(|| {
        for ((c, p), id) in chunks.iter().zip(&packed).zip(&ids) {
            black_box(keys.seal_chunk(id, p.as_deref().unwrap_or(c)).unwrap());
        }
    });
    let total = t_chunk + t_hash + t_compress + t_seal;
    println!(
        "{name:<14} {:>4} chunks  chunk {:>6.0}  hash {:>6.0}  compress {:>6.0}  encrypt {:>6.0}  | all stages {:>5.0} MB/s  (stored {:.2}x of input)",
        chunks.len(),
        mbps(data.len(), t_chunk),
        mbps(data.len(), t_hash),
        mbps(data.len(), t_compress),
        mbps(stored_bytes, t_seal),
        mbps(data.len(), total),
        stored_bytes as f64 / data.len() as f64,
    );
    println!(
        "{:<14} time split: chunk {:.0}%  hash {:.0}%  compress {:.0}%  encrypt {:.0}%",
        "",
        100.0 * t_chunk / total,
        100.0 * t_hash / total,
        100.0 * t_compress / total,
        100.0 * t_seal / total
    );
}

fn aead_compare() {
    let key = [7u8; 32];
    let buf = random(MIB);
    let rounds = 256;
    let (_, t_lc) = time(|| {
        for _ in 0..rounds {
            black_box(aead::seal(&key, b"id", &buf).unwrap());
        }
    });
    let cipher = aes_gcm::Aes256Gcm::new(&key.into());
    let (_, t_rc) = time(|| {
        for i in 0..rounds {
            let nonce = [i as u8; 12];
            black_box(cipher.encrypt(&nonce.into(), Payload { msg: &buf, aad: b"id" }).unwrap());
        }
    });
    println!(
        "AES-256-GCM on 1 MiB messages: aws-lc-rs {:.0} MB/s, RustCrypto aes-gcm {:.0} MB/s",
        mbps(rounds * MIB, t_lc),
        mbps(rounds * MIB, t_rc)
    );
}

fn main() {
    // cargo bench passes --bench; anything else (e.g. a filter) is ignored.
    let keys = KeySet::derive(&SecretKey::generate().expect("system RNG"));
    println!("vault pipeline, one core, {} MiB per data set (MB/s of input; encrypt: of stored bytes)", DATA / MIB);
    pipeline("random", &random(DATA), &keys);
    pipeline("compressible", &text(DATA), &keys);
    aead_compare();
}
