//! A key rewritten many times, on one RocksDB journal.
//!
//! First, the check before a key's mutation (its open intents, G2) against a key never
//! written. Each round reads the same data two ways: through a read-only journal, which
//! scans the key's marks in the store as every journal did before `marks.rs` (and as shared
//! ones still do), and through a read-write one, which answers from its in-memory count.
//!
//! Then, the current version of a key written once and retagged many times. Each round
//! reads it two ways: as the index is written now (the latest tag change names the version,
//! the read jumps there) and as journals indexed it before (the same entry without the
//! name: the read goes back through every tag change). It also times appending a retag
//! (the writer looks up the version to name) against appending a new version. Then the
//! same journal as older ones indexed it, upgraded by the one-time naming of retag bases
//! while appends go on.
//!
//! Last, importing (as a rebuild from the vault does) many keys written and then retagged,
//! against importing the same keys written twice.
//!
//! Run: `cargo bench --bench hot_key`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rewind_crypto::{KeySet, SecretKey};
use rewind_journal::{Access, Durability, Journal, MemoryEngine, RETAG_STEP, Table, Write, layout};
use rewind_model::{Body, Commit, Effect, Intent, ObjectVersion, Op, Seq};

/// Mean time of `unresolved_on(key)` over `n` calls.
fn mean(j: &Journal, key: &str, n: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        assert!(j.unresolved_on("b", key).expect("the journal reads").is_empty());
    }
    start.elapsed() / n
}

/// Appends an intent on `key` and its commit with `effect`; returns the commit's position.
async fn write(j: &Journal, key: &str, effect: Effect) -> Seq {
    let intent =
        Intent { op: Op::Put, bucket: "b".into(), key: key.into(), access_key: "AK".into(), request_id: "r".into() };
    let i = j.append(Body::Intent(intent), Durability::Buffered).await.expect("appends");
    let commit = Commit { intent: i.seq, bucket: "b".into(), key: key.into(), effect };
    j.append(Body::Commit(commit), Durability::Buffered).await.expect("appends").seq
}

/// Mean time of `version_at(key)` over `n` calls, checking it finds `written`.
fn mean_read(j: &Journal, key: &str, written: Seq, n: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let entry = j.version_at("b", key, Seq::LATEST).expect("the journal reads");
        assert_eq!(entry.map(|e| e.written), Some(written));
    }
    start.elapsed() / n
}

/// Mean time of appending `n` intent and commit pairs with the effects `effect` makes.
async fn mean_write(j: &Journal, key: &str, n: u32, effect: impl Fn(u32) -> Effect) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        write(j, key, effect(i)).await;
    }
    start.elapsed() / n
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keys = Arc::new(KeySet::derive(&SecretKey::generate().expect("randomness")));
    let open = |access| Journal::open_with(dir.path(), keys.clone(), access).expect("the journal opens");
    open_intents(&open).await;
    retagged(&open(Access::ReadWrite)).await;
    imported(&keys).await;
}

/// The G2 check on a hot key: scanned against counted.
async fn open_intents(open: &dyn Fn(Access) -> Journal) {
    println!(
        "{:<10} {:>14} {:>14} {:>14} {:>14} {:>9}",
        "rewrites", "scan hot", "scan cold", "count hot", "count cold", "scan/count"
    );
    let mut written = 0;
    for target in [1_000, 10_000, 100_000] {
        let j = open(Access::ReadWrite);
        for _ in written..target {
            write(&j, "hot", Effect::Tags(Vec::new())).await;
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

/// The current version of a key retagged many times: jumping to the version its latest
/// tag change names, against reading back as before.
async fn retagged(j: &Journal) {
    let version =
        |n: u32| Effect::Version(ObjectVersion::of_content(u64::from(n), [0; 32], Vec::new(), format!("\"{n}\"")));
    let retag = |n: u32| Effect::Tags(vec![("n".into(), n.to_string())]);
    println!();
    println!(
        "{:<10} {:>14} {:>14} {:>9} {:>16} {:>16}",
        "retags", "read back", "jump", "back/jump", "append retag", "append version"
    );
    let written = write(j, "tagged", version(0)).await;
    let mut retags = 0;
    for target in [1_000, 10_000, 50_000] {
        let appending = mean_write(j, "tagged", target - retags, retag).await;
        retags = target;
        let latest = j.latest_seq_at("b", "tagged", Seq::LATEST).expect("reads").expect("the key has entries");
        let entry = layout::version_key("b", "tagged", latest);
        let named = j.engine().get(Table::Versions, &entry).expect("reads").expect("the entry");
        assert_eq!(layout::base_of(&named), Some(written), "the latest retag names the version");
        let jump = mean_read(j, "tagged", written, 200);
        // The same entry as journals indexed it before tag changes named their version.
        j.engine().write(vec![Write::Put(Table::Versions, entry.clone(), Vec::new())], true).expect("writes");
        let back = mean_read(j, "tagged", written, if target > 10_000 { 5 } else { 50 });
        j.engine().write(vec![Write::Put(Table::Versions, entry, named)], true).expect("writes");
        let versions = mean_write(j, "fresh", 1_000, version).await;
        println!(
            "{target:<10} {back:>14?} {jump:>14?} {:>8.0}x {appending:>16?} {versions:>16?}",
            back.as_secs_f64() / jump.as_secs_f64()
        );
    }
    upgraded(j, written).await;
}

/// The same journal as an older Rewind indexed it (every `versions` entry empty), upgraded
/// by the one-time naming of retag bases, while appends go on: how long it takes, and the
/// longest an append waits behind one of its steps.
async fn upgraded(j: &Journal, written: Seq) {
    let mut entries = Vec::new();
    j.engine()
        .scan(Table::Versions, &[], &mut |k, _| {
            entries.push(Write::Put(Table::Versions, k.to_vec(), Vec::new()));
            true
        })
        .expect("reads");
    j.engine().write(entries, true).expect("writes");
    j.engine().write(vec![Write::Delete(Table::Meta, layout::BASES_NAMED_KEY.to_vec())], true).expect("writes");
    let done = std::sync::atomic::AtomicBool::new(false);
    let appends = async {
        let mut waits = Vec::new();
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let start = Instant::now();
            write(j, "busy", Effect::Tags(Vec::new())).await;
            waits.push(start.elapsed());
        }
        waits
    };
    let upgrade = async {
        let start = Instant::now();
        let named = j.name_retag_bases(RETAG_STEP, || false).await.expect("upgrades");
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (named, start.elapsed())
    };
    let ((named, took), mut waits) = tokio::join!(upgrade, appends);
    waits.sort();
    let jump = mean_read(j, "tagged", written, 200);
    println!();
    println!(
        "upgrade of {} entries ({} named): {took:?}, {:.0} entries/s; appends meanwhile: {}, median {:?}, longest {:?}; read after: {jump:?}",
        named.entries,
        named.named,
        named.entries as f64 / took.as_secs_f64(),
        waits.len(),
        waits.get(waits.len() / 2).copied().unwrap_or_default(),
        waits.last().copied().unwrap_or_default(),
    );
}

/// An import (one request, as a base is) of many keys written and then each retagged once
/// (a bulk upload, then bulk tagging), against one of the same keys written twice: a
/// retag's base must not be looked for by going back over the request's other keys.
async fn imported(keys: &Arc<KeySet>) {
    let version =
        |n: u32| Effect::Version(ObjectVersion::of_content(u64::from(n), [0; 32], Vec::new(), format!("\"{n}\"")));
    println!();
    println!("{:<10} {:>16} {:>16}", "records", "import retags", "import versions");
    for n in [2_000u32, 20_000] {
        // Each kind twice, alternated; the faster of each pair is kept.
        let mut took = [Duration::MAX; 2];
        for retags in [true, false, true, false] {
            let source = Journal::over(Arc::new(MemoryEngine::new()), keys.clone(), Access::ReadWrite).expect("opens");
            for i in 0..n / 4 {
                write(&source, &format!("k{i}"), version(i)).await;
            }
            for i in 0..n / 4 {
                let effect = if retags { Effect::Tags(vec![("n".into(), i.to_string())]) } else { version(i) };
                write(&source, &format!("k{i}"), effect).await;
            }
            let raw = source.raw_records(Seq(1), usize::MAX).expect("reads");
            let copy = Journal::over(Arc::new(MemoryEngine::new()), keys.clone(), Access::ReadWrite).expect("opens");
            let start = Instant::now();
            copy.import(raw).await.expect("imports");
            let kind = usize::from(!retags);
            took[kind] = took[kind].min(start.elapsed());
        }
        println!("{n:<10} {:>16?} {:>16?}", took[0], took[1]);
    }
}
