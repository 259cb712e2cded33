use std::path::Path;
use std::sync::Arc;

use rewind_crypto::{KeySet, SecretKey};
use rewind_model::{Abort, Body, Commit, Effect, Intent, Op, Seq};

use super::*;

fn keys() -> Arc<KeySet> {
    Arc::new(KeySet::derive(&SecretKey::generate().unwrap()))
}

fn intent(key: &str) -> Body {
    Body::Intent(Intent {
        op: Op::Put,
        bucket: "b".into(),
        key: key.into(),
        access_key: "AK".into(),
        request_id: "r".into(),
    })
}

fn commit(intent: Seq, key: &str, tags: &str) -> Body {
    Body::Commit(Commit {
        intent,
        bucket: "b".into(),
        key: key.into(),
        effect: Effect::Tags(vec![("v".into(), tags.into())]),
    })
}

#[tokio::test]
async fn appends_read_back_in_order_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    let a = j.append(intent("k"), Durability::Buffered).await.unwrap();
    let b = j.append(commit(a.seq, "k", "1"), Durability::Synced).await.unwrap();
    let c = j.append(Body::Abort(Abort { intent: Seq(9), reason: "x".into() }), Durability::Synced).await.unwrap();
    assert_eq!((a.seq, b.seq, c.seq), (Seq(1), Seq(2), Seq(3)));
    assert!(a.timestamp_us <= b.timestamp_us && b.timestamp_us <= c.timestamp_us);
    let records = j.records(Seq(1), 10).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[1].body, commit(a.seq, "k", "1"));
    assert_eq!(records[1].prev_hash, a.hash);
    assert_eq!(j.head().unwrap(), c);
    assert!(j.verify().unwrap().problems.is_empty());
}

#[tokio::test]
async fn concurrent_appenders_get_one_gap_free_chain() {
    let dir = tempfile::tempdir().unwrap();
    let j = Arc::new(Journal::open(dir.path(), keys()).unwrap());
    let tasks: Vec<_> = (0..50)
        .map(|t| {
            let j = j.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..40 {
                    let d = if i % 2 == 0 { Durability::Buffered } else { Durability::Synced };
                    seqs.push(j.append(intent(&format!("{t}/{i}")), d).await.unwrap().seq.0);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=2000).collect::<Vec<_>>());
    assert_eq!(j.head().unwrap().seq, Seq(2000));
    assert!(j.verify().unwrap().problems.is_empty(), "{:?}", j.verify());
}

#[tokio::test]
async fn the_chain_continues_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let head = {
        let j = Journal::open(dir.path(), keys.clone()).unwrap();
        for i in 0..3 {
            j.append(intent(&i.to_string()), Durability::Synced).await.unwrap();
        }
        let head = j.head().unwrap();
        j.close();
        head
    };
    let j = Journal::open(dir.path(), keys).unwrap();
    assert_eq!(j.head().unwrap(), head);
    let next = j.append(intent("after"), Durability::Synced).await.unwrap();
    assert_eq!(next.seq, Seq(4));
    assert_eq!(j.record(Seq(4)).unwrap().unwrap().prev_hash, head.hash);
    assert!(j.verify().unwrap().problems.is_empty());
}

#[tokio::test]
async fn another_key_cannot_read_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), keys()).unwrap();
        j.append(intent("secret-key-name"), Durability::Synced).await.unwrap();
    }
    let j = Journal::open(dir.path(), keys()).unwrap();
    assert!(matches!(j.record(Seq(1)), Err(JournalError::Corrupt { .. })));
}

#[tokio::test]
async fn point_in_time_lookup_finds_the_last_commit_at_or_before() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    let mut commits = Vec::new();
    for v in ["1", "2", "3"] {
        let i = j.append(intent("doc"), Durability::Buffered).await.unwrap();
        j.append(intent("doc2"), Durability::Buffered).await.unwrap();
        commits.push(j.append(commit(i.seq, "doc", v), Durability::Synced).await.unwrap().seq);
    }
    // A key that extends "doc" must not be mistaken for it.
    j.append(commit(Seq(1), "doc\u{0}x", "other"), Durability::Synced).await.unwrap();
    assert!(j.latest_at("b", "doc", Seq(commits[0].0 - 1)).unwrap().is_none());
    for (n, at) in commits.iter().enumerate() {
        let r = j.latest_at("b", "doc", Seq(at.0 + 1)).unwrap().unwrap();
        assert_eq!(r.seq, *at, "as of {} the version is commit {n}", at.0 + 1);
    }
    assert_eq!(j.latest_at("b", "doc", Seq(u64::MAX)).unwrap().unwrap().seq, commits[2]);
    assert!(j.latest_at("b", "nope", Seq(u64::MAX)).unwrap().is_none());
    assert!(j.latest_at("other-bucket", "doc", Seq(u64::MAX)).unwrap().is_none());
}

async fn journal_with(n: u64) -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    for i in 0..n {
        j.append(intent(&i.to_string()), Durability::Synced).await.unwrap();
    }
    (dir, j)
}

#[tokio::test]
async fn verify_detects_an_edited_record() {
    let (_d, j) = journal_with(5).await;
    let (db, cf) = j.raw_db();
    let mut bytes = db.get_cf(cf, 3u64.to_be_bytes()).unwrap().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    db.put_cf(cf, 3u64.to_be_bytes(), bytes).unwrap();
    let problems = j.verify().unwrap().problems;
    assert!(problems.iter().any(|p| p.contains("record 3 is corrupt")), "{problems:?}");
}

#[tokio::test]
async fn verify_detects_a_removed_record() {
    let (_d, j) = journal_with(5).await;
    let (db, cf) = j.raw_db();
    db.delete_cf(cf, 3u64.to_be_bytes()).unwrap();
    let problems = j.verify().unwrap().problems;
    assert!(problems.iter().any(|p| p.contains("missing")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("does not chain")), "{problems:?}");
}

#[tokio::test]
async fn verify_detects_a_removed_last_record_and_swapped_records() {
    let (_d, j) = journal_with(5).await;
    let (db, cf) = j.raw_db();
    db.delete_cf(cf, 5u64.to_be_bytes()).unwrap();
    assert!(j.verify().unwrap().problems.iter().any(|p| p.contains("head")), "truncation is caught by the head");

    let (_d, j) = journal_with(5).await;
    let (db, cf) = j.raw_db();
    let (two, four) =
        (db.get_cf(cf, 2u64.to_be_bytes()).unwrap().unwrap(), db.get_cf(cf, 4u64.to_be_bytes()).unwrap().unwrap());
    db.put_cf(cf, 2u64.to_be_bytes(), four).unwrap();
    db.put_cf(cf, 4u64.to_be_bytes(), two).unwrap();
    assert!(!j.verify().unwrap().problems.is_empty(), "swapped records are caught");
}

#[tokio::test]
async fn checkpoints_are_written_and_checked() {
    let (_d, j) = journal_with(CHECKPOINT_EVERY + 5).await;
    assert!(j.verify().unwrap().problems.is_empty());
    let (db, _) = j.raw_db();
    let meta = db.cf_handle(CF_META).unwrap();
    let mut k = CHECKPOINT_PREFIX.to_vec();
    k.extend_from_slice(&CHECKPOINT_EVERY.to_be_bytes());
    let mut v = db.get_cf(meta, &k).unwrap().expect("a checkpoint after CHECKPOINT_EVERY records");
    v[40] ^= 1;
    db.put_cf(meta, &k, v).unwrap();
    assert!(j.verify().unwrap().problems.iter().any(|p| p.contains("checkpoint")));
}

#[tokio::test]
async fn open_intents_are_those_without_a_commit_or_abort_even_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let j = Journal::open(dir.path(), k.clone()).unwrap();
    let committed = j.append(intent("a"), Durability::Buffered).await.unwrap();
    let aborted = j.append(intent("b"), Durability::Buffered).await.unwrap();
    let open = j.append(intent("c"), Durability::Buffered).await.unwrap();
    j.append(commit(committed.seq, "a", "1"), Durability::Synced).await.unwrap();
    j.append(Body::Abort(Abort { intent: aborted.seq, reason: "x".into() }), Durability::Synced).await.unwrap();
    j.close();
    let j = Journal::open(dir.path(), k).unwrap();
    let seqs: Vec<Seq> = j.open_intents().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![open.seq]);
}

#[tokio::test]
async fn history_lists_one_keys_commits_only() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    for (key, tag) in [("k", "1"), ("k2", "x"), ("k", "2"), ("k\0", "y")] {
        let i = j.append(intent(key), Durability::Buffered).await.unwrap();
        j.append(commit(i.seq, key, tag), Durability::Synced).await.unwrap();
    }
    let tags: Vec<Body> = j.history("b", "k").unwrap().into_iter().map(|r| r.body).collect();
    assert_eq!(tags, vec![commit(Seq(1), "k", "1"), commit(Seq(5), "k", "2")]);
}

#[tokio::test]
async fn pending_state_is_encrypted_scanned_by_prefix_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    j.pending_put(b"up1/1", b"secret metadata").unwrap();
    j.pending_put(b"up1/2", b"two").unwrap();
    j.pending_put(b"up2/1", b"other").unwrap();
    let got = j.pending_scan(b"up1/").unwrap();
    assert_eq!(got, vec![(b"up1/1".to_vec(), b"secret metadata".to_vec()), (b"up1/2".to_vec(), b"two".to_vec())]);
    let raw = j.db.get_cf(j.cf(CF_PENDING), b"up1/1").unwrap().unwrap();
    assert!(!raw.windows(6).any(|w| w == b"secret"), "pending state must not be stored in the clear");
    j.pending_remove(b"up1/").unwrap();
    assert!(j.pending_scan(b"up1/").unwrap().is_empty());
    assert_eq!(j.pending_scan(b"up2/").unwrap().len(), 1);
}

#[tokio::test]
async fn chunk_entries_are_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    j.chunk_put_all(&[([1; 32], b"first".to_vec())]).unwrap();
    j.chunk_put_all(&[([1; 32], b"second".to_vec()), ([2; 32], b"x".to_vec())]).unwrap();
    assert_eq!(j.chunk_get(&[1; 32]).unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(j.chunk_get(&[2; 32]).unwrap().as_deref(), Some(&b"x"[..]));
    assert_eq!(j.chunk_get(&[3; 32]).unwrap(), None);
}

#[tokio::test]
async fn latest_commits_lists_each_key_of_a_prefix_once_as_of_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    let mut seqs = Vec::new();
    for (key, tag) in [("a/1", "x"), ("a/2", "y"), ("a/1", "z"), ("b", "w"), ("a/\0odd", "q"), ("a", "r")] {
        let i = j.append(intent(key), Durability::Buffered).await.unwrap();
        seqs.push(j.append(commit(i.seq, key, tag), Durability::Synced).await.unwrap().seq);
    }
    let all = j.latest_commits("b", "a/", Seq(u64::MAX)).unwrap();
    assert_eq!(all, vec![("a/\0odd".to_owned(), seqs[4]), ("a/1".to_owned(), seqs[2]), ("a/2".to_owned(), seqs[1])]);
    let early = j.latest_commits("b", "a/", seqs[1]).unwrap();
    assert_eq!(early, vec![("a/1".to_owned(), seqs[0]), ("a/2".to_owned(), seqs[1])]);
    assert_eq!(j.latest_commits("b", "", Seq(u64::MAX)).unwrap().len(), 5);
    assert!(j.latest_commits("other", "", Seq(u64::MAX)).unwrap().is_empty());
}

#[tokio::test]
async fn seq_at_finds_the_last_record_at_or_before_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
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

#[tokio::test]
async fn buckets_are_listed_once_each_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    assert!(j.buckets().unwrap().is_empty());
    for (bucket, key) in [("zeta", "k"), ("alpha", "a"), ("alpha", "b"), ("alpha-2", "x"), ("zeta", "")] {
        let mut b = commit(Seq(1), key, "t");
        if let Body::Commit(c) = &mut b {
            c.bucket = bucket.into();
        }
        j.append(b, Durability::Buffered).await.unwrap();
    }
    assert_eq!(j.buckets().unwrap(), ["alpha", "alpha-2", "zeta"]);
}

#[tokio::test]
async fn labels_name_a_seq_once_and_can_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    assert!(j.label_put("before-deploy", Seq(7)).unwrap());
    assert!(!j.label_put("before-deploy", Seq(9)).unwrap(), "a taken name is refused");
    assert!(j.label_put("after", Seq(9)).unwrap());
    let labels = j.labels().unwrap();
    assert_eq!(
        labels.iter().map(|(n, s, _)| (n.as_str(), *s)).collect::<Vec<_>>(),
        [("after", Seq(9)), ("before-deploy", Seq(7))]
    );
    assert!(labels.iter().all(|(_, _, created)| *created > 0));
    assert!(j.label_delete("after").unwrap());
    assert!(!j.label_delete("after").unwrap());
    assert_eq!(j.labels().unwrap().len(), 1);
}

#[tokio::test]
async fn the_last_checkpoint_is_found() {
    let (_dir, j) = journal_with(3).await;
    assert_eq!(j.last_checkpoint().unwrap(), None);
    let (_dir, j) = journal_with(CHECKPOINT_EVERY + 5).await;
    assert_eq!(j.last_checkpoint().unwrap(), Some(Seq(CHECKPOINT_EVERY)));
}

/// A v1 segment as the previous format wrote it: the stored records as they are.
fn v1_segment(keys: &KeySet, records: &[(Seq, Vec<u8>)], prev: [u8; 32]) -> Vec<u8> {
    let mut header = vec![1u8];
    header.extend_from_slice(&records[0].0.0.to_le_bytes());
    header.extend_from_slice(&records.last().unwrap().0.0.to_le_bytes());
    header.extend_from_slice(&prev);
    let mut plain = (records.len() as u32).to_le_bytes().to_vec();
    for (seq, bytes) in records {
        plain.extend_from_slice(&seq.0.to_le_bytes());
        plain.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        plain.extend_from_slice(bytes);
    }
    let envelope = aead::seal(keys.journal.expose(), &header, &plain).unwrap();
    [header, envelope].concat()
}

#[tokio::test]
async fn segments_give_back_the_stored_records_bit_for_bit_in_far_fewer_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let j = Journal::open(dir.path(), keys.clone()).unwrap();
    for i in 0..300 {
        let a = j.append(intent(&format!("photos/2026/img-{i:05}.jpg")), Durability::Buffered).await.unwrap();
        j.append(commit(a.seq, &format!("photos/2026/img-{i:05}.jpg"), "x"), Durability::Buffered).await.unwrap();
    }
    let head = j.head().unwrap();
    let first = j.raw_records(Seq(1), 250).unwrap();
    let rest = j.raw_records(Seq(251), 1000).unwrap();
    let one = j.seal_segment(&first, [0; 32]).unwrap();
    let two = j.seal_segment(&rest, one.hash).unwrap();
    let (opened, records) = j.open_segment(&two.bytes).unwrap();
    assert_eq!((opened.first, opened.last, opened.prev, opened.hash), (Seq(251), head.seq, one.hash, two.hash));
    assert_eq!(records, rest, "the stored bytes come back exactly, so the chain and checkpoints hold");
    assert_eq!(j.open_segment(&one.bytes).unwrap().1, first);
    let stored: usize = rest.iter().map(|(_, r)| r.len()).sum();
    assert!(two.bytes.len() * 2 < stored, "{} bytes for {stored} stored", two.bytes.len());

    // Any flipped bit is refused; so is a segment sealed under another key.
    for at in [0, 9, 40, 60, two.bytes.len() / 2, two.bytes.len() - 1] {
        let mut bad = two.bytes.clone();
        bad[at] ^= 1;
        assert!(j.open_segment(&bad).is_err(), "bit flipped at {at}");
    }
    let other = Journal::open(tempfile::tempdir().unwrap().path(), self::keys()).unwrap();
    assert!(other.open_segment(&two.bytes).is_err());

    // Segments written in version 1 still open.
    let old = v1_segment(&keys, &first, [0; 32]);
    let (opened, records) = j.open_segment(&old).unwrap();
    assert_eq!((opened.first, opened.last, records), (Seq(1), Seq(250), first));
}

#[tokio::test]
async fn shipped_labels_open_only_under_the_key_and_import_up_to_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    let a = j.append(intent("k"), Durability::Synced).await.unwrap();
    assert!(j.label_put("first", a.seq).unwrap());
    let (bytes, digest) = j.seal_labels(7).unwrap();
    let (generation, labels) = j.open_labels(&bytes).unwrap();
    assert_eq!((generation, labels.clone()), (7, j.labels().unwrap()));
    assert_eq!(digest, segment::labels_digest(&labels));
    let mut bad = bytes.clone();
    bad[3] ^= 1; // the generation is authenticated too
    assert!(j.open_labels(&bad).is_err());

    let other = Journal::open(tempfile::tempdir().unwrap().path(), keys()).unwrap();
    assert!(other.open_labels(&bytes).is_err());
    let rebuilt = tempfile::tempdir().unwrap();
    let fresh = Journal::open(rebuilt.path(), j.keys.clone()).unwrap();
    fresh.import(&j.raw_records(Seq(1), 10).unwrap()).unwrap();
    let past_head = (String::from("lost"), Seq(99), 5);
    assert_eq!(fresh.import_labels(&[labels[0].clone(), past_head]).unwrap(), 1);
    assert_eq!(fresh.labels().unwrap(), labels, "names and creation times come back; a label past the head does not");
}

/// The write-ahead log files of a journal directory.
fn wal_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// Review F1: one flipped byte in the middle of the write-ahead log made RocksDB's default
/// recovery drop every record after it (402 of 402 became 201), silently.
#[tokio::test]
async fn a_damaged_write_ahead_log_refuses_to_open_instead_of_losing_records() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), k.clone()).unwrap();
        for i in 0..400 {
            j.append(intent(&format!("k{i}")), Durability::Synced).await.unwrap();
        }
    }
    let log = wal_files(dir.path()).into_iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    assert!(bytes.len() > 10_000, "the records are still in the log ({} bytes)", bytes.len());
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    match Journal::open(dir.path(), k) {
        Ok(j) => panic!("a damaged log opened with head {:?}", j.head().unwrap().seq),
        Err(e) => assert_eq!(e.class(), ErrorClass::Corruption, "{e}"),
    }
}

/// What a crash leaves: the end of the last write cut off. That much is tolerated (it was
/// never acknowledged), and everything before it is there.
#[tokio::test]
async fn a_log_cut_short_by_a_crash_still_opens() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), k.clone()).unwrap();
        for i in 0..50 {
            j.append(intent(&format!("k{i}")), Durability::Synced).await.unwrap();
        }
    }
    let log = wal_files(dir.path()).into_iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap();
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(len - 7).unwrap();
    let j = Journal::open(dir.path(), k).unwrap();
    assert_eq!(j.head().unwrap().seq, Seq(49), "only the cut record is gone");
    assert!(j.verify().unwrap().problems.is_empty());
}

#[tokio::test]
async fn a_read_only_journal_reads_writes_nothing_and_waits_for_no_writer() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), k.clone()).unwrap();
        for i in 0..20 {
            j.append(intent(&format!("k{i}")), Durability::Buffered).await.unwrap();
        }
    }
    let before = snapshot(dir.path());
    {
        let ro = Journal::open_with(dir.path(), k.clone(), Access::ReadOnly).unwrap();
        assert_eq!(ro.head().unwrap().seq, Seq(20));
        assert!(matches!(ro.append(intent("x"), Durability::Synced).await, Err(JournalError::ReadOnly)));
        assert!(matches!(ro.label_put("n", Seq(1)), Err(JournalError::ReadOnly)));
        // Readers share; a writer must wait for them, and they for it.
        let second = Journal::open_with(dir.path(), k.clone(), Access::ReadOnly).unwrap();
        assert!(matches!(Journal::open(dir.path(), k.clone()), Err(JournalError::InUse { .. })));
        drop(second);
    }
    assert_eq!(snapshot(dir.path()), before, "a read-only open changed the journal's files");
    let writer = Journal::open(dir.path(), k.clone()).unwrap();
    assert!(matches!(Journal::open_with(dir.path(), k, Access::ReadOnly), Err(JournalError::InUse { .. })));
    drop(writer);
}

/// Every file of a directory with its size and modification time.
fn snapshot(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "LOG" && !e.file_name().to_string_lossy().starts_with("LOG.old"))
        .map(|e| {
            let m = e.metadata().unwrap();
            (e.file_name().to_string_lossy().into_owned(), m.len(), m.modified().unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Review R3: the versions index is derived data anyone with the directory can edit;
/// verify must notice an entry pointing a key at another key's record, or one removed.
#[tokio::test]
async fn verify_checks_the_versions_index_against_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    for i in 0..3 {
        let key = format!("k{i}");
        let a = j.append(intent(&key), Durability::Buffered).await.unwrap();
        j.append(commit(a.seq, &key, "v"), Durability::Synced).await.unwrap();
    }
    assert!(j.verify().unwrap().problems.is_empty());
    let versions = j.db.cf_handle(CF_VERSIONS).unwrap();
    // Point key "ghost" at the commit of another key.
    let commit_seq = j.history("b", "k1").unwrap()[0].seq;
    let mut forged = version_prefix("b", "ghost");
    forged.extend_from_slice(&commit_seq.0.to_be_bytes());
    j.db.put_cf(versions, &forged, []).unwrap();
    let problems = j.verify().unwrap().problems;
    assert!(problems.iter().any(|p| p.contains("ghost")), "{problems:?}");
    j.db.delete_cf(versions, &forged).unwrap();
    // Remove a real entry: a delete could be hidden so.
    let mut real = version_prefix("b", "k1");
    real.extend_from_slice(&commit_seq.0.to_be_bytes());
    j.db.delete_cf(versions, &real).unwrap();
    let problems = j.verify().unwrap().problems;
    assert!(problems.iter().any(|p| p.contains("entries for")), "{problems:?}");
}

/// Review R2: records are sealed under a key per epoch of 2^24, not one key for all.
#[test]
fn records_are_sealed_under_their_epochs_key_and_old_records_still_open() {
    let k = keys();
    let body = intent("k");
    let (bytes, _) = record::encode(&k, Seq(5), 1, &record::GENESIS, &body).unwrap();
    assert_eq!(bytes[0], 2, "new records are version 2");
    assert_eq!(record::decode(&k, Seq(5), &bytes).unwrap().body, body);
    // The same body at a position of another epoch is sealed under another key: its
    // envelope does not open under the first epoch's key.
    let parts = record::Parts::open(&k, Seq(5), &bytes).unwrap();
    let elsewhere = record::Parts { ..parts.clone() }.seal(&k, Seq(1 << 24)).0;
    let env = |b: &[u8]| b[53..].to_vec();
    let mut moved = bytes.clone();
    moved[1..9].copy_from_slice(&(1u64 << 24).to_le_bytes());
    assert!(record::decode(&k, Seq(1 << 24), &moved).is_err());
    assert_ne!(env(&elsewhere), env(&bytes));
    // A version 1 record (the journal key itself) still opens.
    let v1 = record::Parts { version: 1, ..parts }.seal(&k, Seq(5)).0;
    assert_eq!(v1[0], 1);
    assert_eq!(record::decode(&k, Seq(5), &v1).unwrap().body, body);
}

proptest::proptest! {
    /// No input, however damaged, makes a decoder panic: records, segments, checkpoints
    /// and shipped labels either decode or give an error.
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), seq in 0u64..1000) {
        let k = keys();
        let _ = record::decode(&k, Seq(seq), &bytes);
        let _ = segment::open(&k, &bytes);
        let _ = segment::open_checkpoint(&k, &bytes);
        let _ = segment::open_labels(&k, &bytes);
    }

    /// Valid encodings with a byte flipped, or cut short, are refused, never misread.
    #[test]
    fn damaged_encodings_are_refused(at in proptest::prelude::any::<proptest::sample::Index>(), flip in 1u8..=255, cut in 1usize..40) {
        let k = keys();
        let (record_bytes, _) = record::encode(&k, Seq(3), 7, &record::GENESIS, &intent("key")).unwrap();
        let seg = segment::seal(&k, &[(Seq(3), record_bytes.clone())], [0; 32]).unwrap().bytes;
        let checkpoint = segment::checkpoint(&k, Seq(3), blake3::hash(&record_bytes).as_bytes());
        let damaged = |valid: &[u8]| {
            let mut flipped = valid.to_vec();
            let i = at.index(flipped.len());
            flipped[i] ^= flip;
            [flipped, valid[..valid.len().saturating_sub(cut)].to_vec()]
        };
        for d in damaged(&record_bytes) {
            proptest::prop_assert!(record::decode(&k, Seq(3), &d).is_err());
        }
        for d in damaged(&seg) {
            proptest::prop_assert!(segment::open(&k, &d).is_err());
        }
        for d in damaged(&checkpoint) {
            proptest::prop_assert!(segment::open_checkpoint(&k, &d).is_err());
        }
    }
}
