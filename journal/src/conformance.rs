//! The journal's behaviour over any [`Engine`]: one suite, run against every engine.
//!
//! An engine passes when the journal over it keeps its promises: one gap-free chain from
//! many writers, the same chain after reopening, point-in-time reads, labels, the side
//! tables (work in progress, chunk index, unresolved intents), and atomicity of a commit
//! with the side change that goes with it, even when the write fails half-way through a
//! crash. Each engine provides a [`Fixture`] and expands [`crate::journal_conformance!`]:
//!
//! ```ignore
//! mod on_my_engine {
//!     rewind_journal::journal_conformance!(MyFixture::new());
//! }
//! ```
//!
//! It is test code (compiled for tests, or with the `conformance` feature): a failure
//! panics with what was expected.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rewind_crypto::{KeySet, SecretKey};
use rewind_model::{Abort, Body, Commit, Effect, Intent, ObjectVersion, Op, Seq};

use crate::engine::{Engine, EngineError, Entry, Table, Visit, Write};
use crate::{Access, Durability, Journal, JournalError, Progress, layout};

mod fixtures;
mod forget;
mod postgres;
mod retag;
mod shared;
mod side;
pub use fixtures::{MemoryFixture, RocksFixture};
pub use forget::{a_base_rebuilds_a_journal_that_forget_compacted, forget_removes_records_and_verify_checks_the_rest};
pub use postgres::{PostgresFixture, PostgresServer, SERVER_ENV, TestServer, test_server};
pub use retag::{older_retags_are_named_by_a_one_time_upgrade, retagged_keys_name_the_version_their_tags_apply_to};
pub use shared::{
    journals_in_several_processes_form_one_chain, leases_pass_to_another_process_only_once_they_lapse,
    shared_locks_exclude_other_processes_and_die_with_them,
};
pub use side::{each_key_finds_its_open_intents, side_tables_keep_progress_chunks_marks_and_unresolved_intents};

/// A store an engine keeps its data in, for the length of one test.
pub trait Fixture: Send + Sync {
    /// An engine over the store. Called again once every journal over the previous one is
    /// gone, it opens the same data: what a process restart sees.
    fn engine(&self) -> Arc<dyn Engine>;
}

/// Expands to one `#[tokio::test]` per conformance case, over the fixture `$fixture`
/// (an expression, evaluated once per test).
#[macro_export]
macro_rules! journal_conformance {
    ($fixture:expr) => {
        $crate::journal_conformance!(@cases $fixture;
            appends_read_back_in_order_and_chain,
            appends_from_many_tasks_form_one_gap_free_chain,
            the_chain_continues_after_reopening,
            another_key_cannot_read_the_journal,
            point_in_time_reads_answer_as_of_a_position,
            retagged_keys_name_the_version_their_tags_apply_to,
            older_retags_are_named_by_a_one_time_upgrade,
            state_scans_resume_after_a_key_or_past_a_prefix,
            deleting_a_bucket_ends_its_keys_as_of_then,
            buckets_are_listed_once_each_in_name_order,
            seq_at_finds_the_last_record_at_or_before_a_time,
            labels_and_holds_are_placed_once_and_survive_reopening,
            side_tables_keep_progress_chunks_marks_and_unresolved_intents,
            each_key_finds_its_open_intents,
            a_commit_and_its_side_change_land_together_or_not_at_all,
            verify_detects_records_and_index_entries_changed_under_the_journal,
            checkpoints_are_written_and_checked,
            import_takes_only_the_next_chained_records,
            forget_removes_records_and_verify_checks_the_rest,
            a_base_rebuilds_a_journal_that_forget_compacted,
        );
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture;
                $crate::conformance::$case(&fixture).await;
            }
        )*
    };
}

fn keys() -> Arc<KeySet> {
    Arc::new(KeySet::derive(&SecretKey::generate().expect("randomness")))
}

fn open(fixture: &dyn Fixture, keys: &Arc<KeySet>) -> Journal {
    Journal::over(fixture.engine(), keys.clone(), Access::ReadWrite).expect("the journal opens")
}

fn intent_on(op: Op, bucket: &str, key: &str) -> Body {
    Body::Intent(Intent { op, bucket: bucket.into(), key: key.into(), access_key: "AK".into(), request_id: "r".into() })
}

fn intent(key: &str) -> Body {
    intent_on(Op::Put, "b", key)
}

fn change(intent: Seq, bucket: &str, key: &str, effect: Effect) -> Body {
    Body::Commit(Commit { intent, bucket: bucket.into(), key: key.into(), effect })
}

fn tags(intent: Seq, key: &str, tag: &str) -> Body {
    change(intent, "b", key, Effect::Tags(vec![("v".into(), tag.into())]))
}

fn version(size: u64) -> ObjectVersion {
    ObjectVersion {
        size,
        blake3: [size as u8; 32],
        chunks: Vec::new(),
        etag: format!("\"{size}\""),
        version_id: None,
        headers: Vec::new(),
        metadata: vec![("n".into(), size.to_string())],
        tags: Vec::new(),
        parts: Vec::new(),
        checksums: Vec::new(),
        modified_us: None,
    }
}

/// An intent and its commit; returns the commit's position.
async fn write(j: &Journal, key: &str, effect: Effect) -> Seq {
    let op = if matches!(effect, Effect::Deleted { .. }) { Op::Delete } else { Op::Put };
    let i = j.append(intent_on(op, "b", key), Durability::Buffered).await.unwrap();
    j.append(change(i.seq, "b", key, effect), Durability::Synced).await.unwrap().seq
}

/// Every position the tasks appended, in order.
async fn positions(tasks: Vec<tokio::task::JoinHandle<Vec<u64>>>) -> Vec<u64> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    all
}

fn assert_intact(j: &Journal) {
    let checked = j.verify().unwrap();
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
}

pub async fn appends_read_back_in_order_and_chain(fixture: &dyn Fixture) {
    let j = open(fixture, &keys());
    assert_eq!(j.head().unwrap().seq, Seq(0));
    let a = j.append(intent("k"), Durability::Buffered).await.unwrap();
    let b = j.append(tags(a.seq, "k", "1"), Durability::Synced).await.unwrap();
    let c = j.append(Body::Abort(Abort { intent: Seq(9), reason: "x".into() }), Durability::Synced).await.unwrap();
    assert_eq!((a.seq, b.seq, c.seq), (Seq(1), Seq(2), Seq(3)));
    assert!(a.timestamp_us <= b.timestamp_us && b.timestamp_us <= c.timestamp_us);
    let records = j.records(Seq(1), 10).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[1].body, tags(a.seq, "k", "1"));
    assert_eq!(records[1].prev_hash, a.hash);
    assert_eq!(j.records(Seq(2), 1).unwrap().len(), 1, "a limit is kept");
    assert_eq!(j.head().unwrap(), c);
    let several = j.append_all(vec![intent("x"), intent("y")], Durability::Synced, Vec::new()).await.unwrap();
    assert_eq!(several.iter().map(|a| a.seq).collect::<Vec<_>>(), [Seq(4), Seq(5)], "consecutive");
    assert_intact(&j);
}

/// Group commit: records, labels, work in progress and chunk index entries from many tasks
/// at once, folded into shared batches, give one gap-free chain with nothing lost.
pub async fn appends_from_many_tasks_form_one_gap_free_chain(fixture: &dyn Fixture) {
    let j = Arc::new(open(fixture, &keys()));
    let tasks: Vec<_> = (0..32u8)
        .map(|t| {
            let j = j.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..40u8 {
                    let d = if i % 2 == 0 { Durability::Buffered } else { Durability::Synced };
                    seqs.push(j.append(intent(&format!("{t}/{i}")), d).await.unwrap().seq.0);
                    match i % 8 {
                        1 => assert!(j.label_put(&format!("l{t}-{i}"), Seq(1)).await.unwrap()),
                        3 => j.progress(vec![Progress::Put(vec![t, i], vec![i])]).await.unwrap(),
                        5 => j.chunk_put_all(vec![([t; 32], vec![i])]).await.unwrap(),
                        _ => {}
                    }
                }
                seqs
            })
        })
        .collect();
    let all = positions(tasks).await;
    assert_eq!(all, (1..=1280).collect::<Vec<_>>());
    assert_eq!(j.head().unwrap().seq, Seq(1280));
    assert_eq!(j.labels().unwrap().len(), 32 * 5);
    assert_eq!(j.progress_scan(&[]).unwrap().len(), 32 * 5);
    for t in 0..32u8 {
        assert_eq!(j.chunk_get(&[t; 32]).unwrap(), Some(vec![5]), "the first entry of a chunk is kept");
    }
    assert_intact(&j);
}

pub async fn the_chain_continues_after_reopening(fixture: &dyn Fixture) {
    let keys = keys();
    let head = {
        let j = open(fixture, &keys);
        for i in 0..3 {
            j.append(intent(&i.to_string()), Durability::Synced).await.unwrap();
        }
        let head = j.head().unwrap();
        j.close();
        head
    };
    let j = open(fixture, &keys);
    assert_eq!(j.head().unwrap(), head);
    let next = j.append(intent("after"), Durability::Synced).await.unwrap();
    assert_eq!(next.seq, Seq(head.seq.0 + 1));
    assert_eq!(j.record(next.seq).unwrap().unwrap().prev_hash, head.hash);
    assert_intact(&j);
    // A reader beside nothing sees the same.
    j.close();
    let ro = Journal::over(fixture.engine(), keys, Access::ReadOnly).unwrap();
    assert_eq!(ro.head().unwrap(), next);
    assert!(matches!(ro.append(intent("x"), Durability::Synced).await, Err(JournalError::ReadOnly)));
}

pub async fn another_key_cannot_read_the_journal(fixture: &dyn Fixture) {
    {
        let j = open(fixture, &keys());
        j.append(intent("secret-key-name"), Durability::Synced).await.unwrap();
        j.progress(vec![Progress::Put(b"p".to_vec(), b"v".to_vec())]).await.unwrap();
    }
    let j = open(fixture, &keys());
    assert!(matches!(j.record(Seq(1)), Err(JournalError::Corrupt { .. })));
    assert!(matches!(j.progress_get(b"p"), Err(JournalError::Corrupt { .. })));
    assert!(!j.verify().unwrap().problems.is_empty());
}

/// A key's version, a bucket's state and one key's history, as of positions before, at
/// and after each change: new versions, tag changes, deletes, and a key that extends
/// another.
pub async fn point_in_time_reads_answer_as_of_a_position(fixture: &dyn Fixture) {
    let j = open(fixture, &keys());
    let v1 = write(&j, "doc", Effect::Version(version(1))).await;
    let other = write(&j, "doc\u{0}x", Effect::Version(version(9))).await;
    let tagged = write(&j, "doc", Effect::Tags(vec![("t".into(), "x".into())])).await;
    let v2 = write(&j, "doc", Effect::Version(version(2))).await;
    let gone = write(&j, "doc", Effect::Deleted { version_id: None }).await;
    let a = write(&j, "a/1", Effect::Version(version(3))).await;

    assert!(j.version_at("b", "doc", Seq(v1.0 - 1)).unwrap().is_none());
    let first = j.version_at("b", "doc", v1).unwrap().unwrap();
    assert_eq!((first.seq, first.version.size, first.version.tags.len()), (v1, 1, 0));
    let with_tags = j.version_at("b", "doc", tagged).unwrap().unwrap();
    assert_eq!((with_tags.seq, with_tags.version.size), (tagged, 1), "a tag change shapes the version");
    assert_eq!(with_tags.version.tags, [("t".to_owned(), "x".to_owned())]);
    assert_eq!(j.version_at("b", "doc", Seq(gone.0 - 1)).unwrap().unwrap().seq, v2);
    assert!(j.version_at("b", "doc", gone).unwrap().is_none(), "deleted by then");
    assert!(j.version_at("b", "doc", Seq::LATEST).unwrap().is_none());
    assert_eq!(j.version_at("b", "doc\u{0}x", Seq::LATEST).unwrap().unwrap().seq, other);
    assert!(j.version_at("other-bucket", "doc", Seq::LATEST).unwrap().is_none());

    let keys_at = |at: Seq| -> Vec<(String, Seq)> {
        j.state_at("b", "", at).unwrap().into_iter().map(|e| (e.key, e.seq)).collect()
    };
    assert_eq!(keys_at(v2), [("doc".to_owned(), v2), ("doc\u{0}x".to_owned(), other)]);
    assert_eq!(keys_at(Seq::LATEST), [("a/1".to_owned(), a), ("doc\u{0}x".to_owned(), other)]);
    assert_eq!(j.state_at("b", "a/", Seq::LATEST).unwrap().len(), 1);
    assert!(j.state_at("b", "a/", gone).unwrap().is_empty());

    assert_eq!(j.latest_at("b", "doc", Seq::LATEST).unwrap().unwrap().seq, gone);
    let history: Vec<Seq> = j.history("b", "doc").unwrap().into_iter().map(|r| r.seq).collect();
    assert_eq!(history, [v1, tagged, v2, gone]);
    assert_eq!(
        j.latest_commits("b", "doc", v2).unwrap(),
        [("doc".to_owned(), v2), ("doc\u{0}x".to_owned(), other)],
        "one entry per key, its latest as of the position"
    );
    assert_eq!(j.buckets().unwrap(), ["b"]);
}

/// A listing's page reads from where the last one ended: after a key, or past every key
/// under a common prefix, as of a position.
pub async fn state_scans_resume_after_a_key_or_past_a_prefix(fixture: &dyn Fixture) {
    let j = open(fixture, &keys());
    for key in ["a", "a/1", "a/2", "a0", "b/\u{0}", "b/x", "b\u{0}", "c"] {
        write(&j, key, Effect::Version(version(1))).await;
    }
    let before_delete = j.head().unwrap().seq;
    write(&j, "a/2", Effect::Deleted { version_id: None }).await;
    let scan = |prefix: &str, from: crate::ScanFrom<'_>, at: Seq, limit: usize| -> Vec<String> {
        let mut out = Vec::new();
        j.scan_state("b", prefix, from, at, &mut |e| {
            out.push(e.key);
            Ok(if out.len() < limit { crate::Flow::Go } else { crate::Flow::Stop })
        })
        .unwrap();
        out
    };
    use crate::ScanFrom::{AfterKey, PastPrefix, Start};
    let all = Seq::LATEST;
    assert_eq!(scan("", Start, all, 3), ["a", "a/1", "a0"], "a deleted key is not listed");
    assert_eq!(scan("", Start, before_delete, 3), ["a", "a/1", "a/2"]);
    assert_eq!(scan("", AfterKey("a"), all, 2), ["a/1", "a0"]);
    assert_eq!(scan("", PastPrefix("a/"), all, 9), ["a0", "b\u{0}", "b/\u{0}", "b/x", "c"]);
    assert_eq!(scan("", PastPrefix("b/"), all, 9), ["c"]);
    let past_nul = scan("", PastPrefix("b\u{0}"), all, 9);
    assert_eq!(past_nul, ["b/\u{0}", "b/x", "c"], "a prefix ending in NUL is skipped key by key");
    assert_eq!(scan("b/", Start, all, 9), ["b/\u{0}", "b/x"]);
    assert_eq!(scan("b/", AfterKey("a"), all, 9), ["b/\u{0}", "b/x"], "never before the prefix");
    assert_eq!(scan("a", AfterKey("a/1"), before_delete, 9), ["a/2", "a0"]);
    assert!(scan("", AfterKey("c"), all, 9).is_empty());
    // A common prefix, once listed, is skipped with a seek.
    let mut listed = Vec::new();
    j.scan_state("b", "", Start, all, &mut |e| {
        let group = e.key.find('/').map(|i| e.key[..=i].to_owned());
        listed.push(group.clone().unwrap_or(e.key));
        Ok(group.map_or(crate::Flow::Go, crate::Flow::SkipPrefix))
    })
    .unwrap();
    assert_eq!(listed, ["a", "a/", "a0", "b\u{0}", "b/", "c"]);
}

/// Review F5: keys journaled before their bucket's DeleteBucket are gone as of it.
pub async fn deleting_a_bucket_ends_its_keys_as_of_then(fixture: &dyn Fixture) {
    let j = open(fixture, &keys());
    let kept = write(&j, "k", Effect::Version(version(1))).await;
    let i = j.append(intent_on(Op::DeleteBucket, "b", ""), Durability::Buffered).await.unwrap();
    let deleted = j.append(change(i.seq, "b", "", Effect::Bucket), Durability::Synced).await.unwrap().seq;
    assert_eq!(j.version_at("b", "k", kept).unwrap().unwrap().seq, kept);
    assert!(j.version_at("b", "k", deleted).unwrap().is_none());
    assert!(j.state_at("b", "", deleted).unwrap().is_empty());
    let again = write(&j, "k", Effect::Version(version(2))).await;
    assert_eq!(j.state_at("b", "", Seq::LATEST).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [again]);
}

pub async fn buckets_are_listed_once_each_in_name_order(fixture: &dyn Fixture) {
    let j = open(fixture, &keys());
    assert!(j.buckets().unwrap().is_empty());
    for (bucket, key) in [("zeta", "k"), ("alpha", "a"), ("alpha", "b"), ("alpha-2", "x"), ("zeta", "")] {
        j.append(change(Seq(1), bucket, key, Effect::Bucket), Durability::Buffered).await.unwrap();
    }
    assert_eq!(j.buckets().unwrap(), ["alpha", "alpha-2", "zeta"]);
}

pub async fn seq_at_finds_the_last_record_at_or_before_a_time(fixture: &dyn Fixture) {
    let j = open(fixture, &keys());
    assert_eq!(j.seq_at(i64::MAX).unwrap(), Seq(0));
    let mut appended = Vec::new();
    for i in 0..20 {
        appended.push(j.append(intent(&i.to_string()), Durability::Synced).await.unwrap());
    }
    assert_eq!(j.seq_at(appended[0].timestamp_us - 1).unwrap(), Seq(0));
    assert_eq!(j.seq_at(i64::MAX).unwrap(), Seq(20));
    for a in &appended {
        // The last record with this timestamp (several can share a microsecond).
        let want = appended.iter().filter(|b| b.timestamp_us <= a.timestamp_us).map(|b| b.seq).max().unwrap();
        assert_eq!(j.seq_at(a.timestamp_us).unwrap(), want);
    }
}

pub async fn labels_and_holds_are_placed_once_and_survive_reopening(fixture: &dyn Fixture) {
    let keys = keys();
    {
        let j = open(fixture, &keys);
        assert!(j.label_put("before-deploy", Seq(7)).await.unwrap());
        assert!(!j.label_put("before-deploy", Seq(9)).await.unwrap(), "a taken name is refused");
        assert!(j.label_put("after", Seq(9)).await.unwrap());
        assert!(j.label_put("gone", Seq(1)).await.unwrap());
        assert!(j.label_delete("gone").await.unwrap());
        assert!(!j.label_delete("gone").await.unwrap());
    }
    {
        let j = open(fixture, &keys);
        assert!(j.hold_put("b", "legal/", false, "case 7").await.unwrap());
        assert!(!j.hold_put("b", "legal/", false, "again").await.unwrap(), "a hold is placed once");
        assert!(j.hold_put("b", "legal/", true, "one key").await.unwrap(), "a key hold is not the prefix hold");
        assert!(j.hold_put("b2", "", false, "").await.unwrap());
        assert!(j.hold_delete("b2", "", false).await.unwrap());
        assert!(!j.hold_delete("b2", "", false).await.unwrap());
    }
    let j = open(fixture, &keys);
    let labels = j.labels().unwrap();
    assert_eq!(
        labels.iter().map(|(n, s, _)| (n.as_str(), *s)).collect::<Vec<_>>(),
        [("after", Seq(9)), ("before-deploy", Seq(7))]
    );
    assert!(labels.iter().all(|(_, _, created)| *created > 0));
    let holds = j.holds().unwrap();
    let scopes: Vec<(&str, &str, bool, &str)> =
        holds.iter().map(|h| (h.bucket.as_str(), h.scope.as_str(), h.exact, h.reason.as_str())).collect();
    assert_eq!(scopes, [("b", "legal/", true, "one key"), ("b", "legal/", false, "case 7")]);
    assert!(holds[1].covers("b", "legal/x") && !holds[0].covers("b", "legal/x") && holds[0].covers("b", "legal/"));
    assert!(!holds[1].covers("b2", "legal/x"));
}

/// An engine that lets `budget` more batches through, then fails every write: a crash (or
/// a full disk) at that moment.
struct Flaky {
    inner: Arc<dyn Engine>,
    budget: AtomicU64,
}

impl Engine for Flaky {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.inner.get(table, key)
    }

    fn scan(&self, table: Table, from: &[u8], f: Visit<'_>) -> Result<(), EngineError> {
        self.inner.scan(table, from, f)
    }

    fn last_at_or_before(&self, table: Table, key: &[u8]) -> Result<Option<Entry>, EngineError> {
        self.inner.last_at_or_before(table, key)
    }

    fn write(&self, writes: Vec<Write>, sync: bool) -> Result<(), EngineError> {
        match self.budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
            Ok(_) => self.inner.write(writes, sync),
            Err(_) => Err(EngineError::Injected),
        }
    }
}

/// A multipart upload's completion: its commit and the removal of its parts' state are one
/// batch. A crash while it is written, after any number of the engine's writes, leaves
/// either both (the object journaled, the parts forgotten) or neither (the upload still in
/// progress, its intent unresolved, for recovery to finish), never one without the other.
pub async fn a_commit_and_its_side_change_land_together_or_not_at_all(fixture: &dyn Fixture) {
    let keys = keys();
    for budget in 0..3u64 {
        let key = format!("big{budget}");
        let upload = layout::upload_prefix("b", &key, "u");
        let flaky = Arc::new(Flaky { inner: fixture.engine(), budget: AtomicU64::new(u64::MAX) });
        let j = Journal::over(flaky.clone(), keys.clone(), Access::ReadWrite).unwrap();
        let start = j.append(intent(&key), Durability::Synced).await.unwrap();
        let parts = (1..=3).map(|n| Progress::Put(layout::upload_part(&upload, n), vec![1; 10])).collect();
        j.progress(parts).await.unwrap();

        flaky.budget.store(budget, Ordering::SeqCst);
        let commit = change(start.seq, "b", &key, Effect::Version(version(30)));
        let outcome =
            j.append_with(commit.clone(), Durability::Synced, vec![Progress::RemovePrefix(upload.clone())]).await;
        if budget == 0 {
            assert!(matches!(outcome, Err(JournalError::Storage(EngineError::Injected))), "{outcome:?}");
        }
        // The crash: the process dies here, and starts again.
        j.close();
        drop(flaky);
        let j = open(fixture, &keys);
        let landed = j.head().unwrap().seq > start.seq;
        assert_eq!(landed, outcome.is_ok(), "an acknowledged commit is kept, a refused one is not");
        let parts_left = j.progress_scan(&upload).unwrap().len();
        let version = j.version_at("b", &key, Seq::LATEST).unwrap();
        if landed {
            assert_eq!(
                (parts_left, version.map(|v| v.version.size)),
                (0, Some(30)),
                "the commit without its side change"
            );
            assert!(!j.is_unresolved(start.seq).unwrap());
        } else {
            assert_eq!((parts_left, version), (3, None), "the side change without its commit");
            assert!(j.is_unresolved(start.seq).unwrap(), "the intent is left for recovery");
            // Done again after the restart, both land, at the position the failed batch
            // did not take.
            let done = j.append_with(commit, Durability::Synced, vec![Progress::RemovePrefix(upload.clone())]).await;
            assert_eq!(done.unwrap().seq, Seq(start.seq.0 + 1));
            assert!(j.progress_scan(&upload).unwrap().is_empty());
        }
        assert_intact(&j);
        j.close();
    }
}

/// What someone with write access to the store can do behind the journal's back: edit,
/// drop, swap or truncate records, or point the versions index at another key's record.
pub async fn verify_detects_records_and_index_entries_changed_under_the_journal(fixture: &dyn Fixture) {
    let keys = keys();
    let j = open(fixture, &keys);
    for i in 0..5 {
        write(&j, &format!("k{i}"), Effect::Version(version(i))).await;
    }
    assert_intact(&j);
    let engine = j.engine().clone();
    let seq = |n: u64| layout::seq_key(Seq(n)).to_vec();
    let get = |n: u64| engine.get(Table::Records, &seq(n)).unwrap().unwrap();
    let put = |n: u64, v: Vec<u8>| engine.write(vec![Write::Put(Table::Records, seq(n), v)], false).unwrap();
    let problems = || j.verify().unwrap().problems;

    let original = get(3);
    let mut edited = original.clone();
    *edited.last_mut().unwrap() ^= 1;
    put(3, edited);
    assert!(problems().iter().any(|p| p.contains("record 3 is corrupt")), "{:?}", problems());
    put(3, original.clone());

    engine.write(vec![Write::Delete(Table::Records, seq(3))], false).unwrap();
    let found = problems();
    assert!(found.iter().any(|p| p.contains("missing")), "{found:?}");
    assert!(found.iter().any(|p| p.contains("does not chain")), "{found:?}");
    put(3, original);
    assert_intact(&j);

    let (two, four) = (get(2), get(4));
    put(2, four.clone());
    put(4, two.clone());
    assert!(!problems().is_empty(), "swapped records are caught");
    put(2, two);
    put(4, four);

    let last = j.head().unwrap().seq.0;
    let tail = get(last);
    engine.write(vec![Write::Delete(Table::Records, seq(last))], false).unwrap();
    assert!(problems().iter().any(|p| p.contains("head")), "truncation is caught by the head");
    put(last, tail);
    assert_intact(&j);

    // Review R3: the versions index is derived data; verify notices an entry pointing a key
    // at another key's record, and one removed (a delete could be hidden so).
    let commit_seq = j.history("b", "k1").unwrap()[0].seq;
    let forged = layout::version_key("b", "ghost", commit_seq);
    engine.write(vec![Write::Put(Table::Versions, forged.clone(), Vec::new())], false).unwrap();
    assert!(problems().iter().any(|p| p.contains("ghost")), "{:?}", problems());
    assert!(j.version_at("b", "ghost", Seq::LATEST).is_err(), "reads refuse the forged entry too");
    engine.write(vec![Write::Delete(Table::Versions, forged)], false).unwrap();
    let real = layout::version_key("b", "k1", commit_seq);
    engine.write(vec![Write::Delete(Table::Versions, real)], false).unwrap();
    assert!(problems().iter().any(|p| p.contains("entries for")), "{:?}", problems());
}

pub async fn checkpoints_are_written_and_checked(fixture: &dyn Fixture) {
    let j = open(fixture, &keys());
    for i in 0..3 {
        j.append(intent(&i.to_string()), Durability::Buffered).await.unwrap();
    }
    assert_eq!(j.last_checkpoint().unwrap(), None);
    let every = crate::CHECKPOINT_EVERY;
    let bodies = (0..every + 2).map(|i| intent(&i.to_string())).collect();
    j.append_all(bodies, Durability::Synced, Vec::new()).await.unwrap();
    j.append(intent("next"), Durability::Synced).await.unwrap();
    let at = j.last_checkpoint().unwrap().expect("a checkpoint after CHECKPOINT_EVERY records");
    assert!(at.0 >= every, "{at:?}");
    let checked = j.verify().unwrap();
    assert!(checked.problems.is_empty() && checked.checkpoints >= 1, "{checked:?}");
    let key = layout::checkpoint_key(at);
    let mut v = j.engine().get(Table::Meta, &key).unwrap().unwrap();
    v[40] ^= 1;
    j.engine().write(vec![Write::Put(Table::Meta, key, v)], false).unwrap();
    assert!(j.verify().unwrap().problems.iter().any(|p| p.contains("checkpoint")));
}

/// A rebuild appends records shipped from another journal: only the next position, only
/// decrypting under this key, only chained to the record before.
pub async fn import_takes_only_the_next_chained_records(fixture: &dyn Fixture) {
    let keys = keys();
    let source = Journal::over(Arc::new(crate::MemoryEngine::new()), keys.clone(), Access::ReadWrite).unwrap();
    for i in 0..6 {
        write(&source, &format!("k{i}"), Effect::Version(version(i))).await;
    }
    let raw = source.raw_records(Seq(1), 100).unwrap();
    let j = open(fixture, &keys);
    assert!(j.import(raw[1..3].to_vec()).await.is_err(), "not the next position");
    let mut forged = raw[..2].to_vec();
    forged.swap(0, 1);
    assert!(j.import(forged).await.is_err());
    assert_eq!(j.head().unwrap().seq, Seq(0), "a refused import leaves nothing");
    j.import(raw[..5].to_vec()).await.unwrap();
    let head = j.import(raw[5..].to_vec()).await.unwrap();
    assert_eq!(head, source.head().unwrap());
    assert_eq!(j.state_at("b", "", Seq::LATEST).unwrap(), source.state_at("b", "", Seq::LATEST).unwrap());
    let checkpoint = source.checkpoint_of(Seq(12), &raw[11].1);
    assert!(j.import_checkpoint(&checkpoint).await.unwrap());
    assert!(!j.import_checkpoint(&source.checkpoint_of(Seq(12), &raw[10].1)).await.unwrap(), "wrong hash");
    assert_intact(&j);
    // Appends continue the imported chain.
    let next = j.append(intent("after"), Durability::Synced).await.unwrap();
    assert_eq!((next.seq, j.record(next.seq).unwrap().unwrap().prev_hash), (Seq(13), head.hash));
}
