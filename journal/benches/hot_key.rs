//! The check before a key's mutation (its open intents, G2) on a key rewritten many times,
//! against a key never written, on one RocksDB journal. Each round reads the same data two
//! ways: through a read-only journal, which scans the key's marks in the store as every
//! journal did before `marks.rs` (and as shared ones still do), and through a read-write
//! one, which answers from its in-memory count. Run: `cargo bench --bench hot_key`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rewind_crypto::{KeySet, SecretKey};
use rewind_journal::{Access, Durability, Journal};
use rewind_model::{Body, Commit, Effect, Intent, Op};

/// Mean time of `unresolved_on(key)` over `n` calls.
fn mean(j: &Journal, key: &str, n: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        assert!(j.unresolved_on("b", key).expect("the journal reads").is_empty());
    }
    start.elapsed() / n
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = Arc::new(KeySet::derive(&SecretKey::generate().expect("randomness")));
    let open = |access| Journal::open_with(dir.path(), keys.clone(), access).expect("the journal opens");
    println!(
        "{:<10} {:>14} {:>14} {:>14} {:>14} {:>9}",
        "rewrites", "scan hot", "scan cold", "count hot", "count cold", "scan/count"
    );
    let mut written = 0;
    for target in [1_000, 10_000, 100_000] {
        let j = open(Access::ReadWrite);
        for _ in written..target {
            let intent = Intent {
                op: Op::Put,
                bucket: "b".into(),
                key: "hot".into(),
                access_key: "AK".into(),
                request_id: "r".into(),
            };
            let i = j.append(Body::Intent(intent), Durability::Buffered).await.expect("appends");
            let commit =
                Commit { intent: i.seq, bucket: "b".into(), key: "hot".into(), effect: Effect::Tags(Vec::new()) };
            j.append(Body::Commit(commit), Durability::Buffered).await.expect("appends");
        }
        written = target;
        let counted = (mean(&j, "hot", 200), mean(&j, "cold", 200));
        j.close();
        let scanning = open(Access::ReadOnly);
        let scanned = (mean(&scanning, "hot", 200), mean(&scanning, "cold", 200));
        drop(scanning);
        println!(
            "{target:<10} {:>14?} {:>14?} {:>14?} {:>14?} {:>8.0}x",
            scanned.0,
            scanned.1,
            counted.0,
            counted.1,
            scanned.0.as_secs_f64() / counted.0.as_secs_f64()
        );
    }
}
