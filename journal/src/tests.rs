use std::path::Path;
use std::sync::Arc;

use rewind_crypto::{KeySet, SecretKey};
use rewind_model::{Body, Commit, Effect, Intent, Op, Seq};

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

/// The journal's behaviour, over each engine (see `conformance.rs`).
mod on_rocksdb {
    crate::journal_conformance!(crate::conformance::RocksFixture::new());
}

mod in_memory {
    crate::journal_conformance!(crate::conformance::MemoryFixture::default());
}

mod on_postgres {
    crate::journal_conformance!(crate::conformance::PostgresFixture::new());

    use crate::conformance::PostgresFixture;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journals_in_several_processes_form_one_chain() {
        crate::conformance::journals_in_several_processes_form_one_chain(&PostgresFixture::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leases_pass_to_another_process_only_once_they_lapse() {
        crate::conformance::leases_pass_to_another_process_only_once_they_lapse(&PostgresFixture::new()).await;
    }

    /// Gateways starting together on an empty database: the schema is migrated once.
    #[test]
    fn processes_starting_together_migrate_the_schema_once() {
        let fixture = PostgresFixture::new();
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = fixture.url().to_owned();
                std::thread::spawn(move || crate::PostgresEngine::connect(&crate::PostgresOptions::new(url)).map(drop))
            })
            .collect();
        for start in starts {
            start.join().unwrap().unwrap();
        }
        let rows = sql(fixture.url(), "SELECT version FROM rewind_schema ORDER BY version");
        let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
        let expected: Vec<i32> = (1..=crate::PostgresEngine::SCHEMA_VERSION).collect();
        assert_eq!(versions, expected, "each step applied once");
    }

    /// Runs `statement` on its own connection, on a thread of its own.
    fn sql(url: &str, statement: &str) -> Vec<tokio_postgres::Row> {
        let (url, statement) = (url.to_owned(), statement.to_owned());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                client.query(&statement, &[]).await.unwrap()
            })
        })
        .join()
        .unwrap()
    }

    /// With `sslmode=require` the engine speaks TLS and verifies the server's certificate:
    /// trusted through `ca_file`, it connects (and the server sees TLS); without that CA,
    /// it refuses to connect, naming the certificate.
    #[test]
    fn tls_to_the_database_verifies_its_certificate() {
        use crate::engine::{Engine, Table, Write};
        let (server, ca) = crate::conformance::PostgresServer::start_with_tls().unwrap();
        let url = format!("{}?sslmode=require", server.url());
        let mut options = crate::PostgresOptions::new(url.clone());
        let untrusted = crate::PostgresEngine::connect(&options).err().expect("an unknown CA is refused");
        assert!(untrusted.to_string().contains("certificate"), "{untrusted}");

        options.ca_file = Some(ca);
        let engine = crate::PostgresEngine::connect(&options).unwrap();
        engine.write(vec![Write::Put(Table::Meta, b"k".to_vec(), b"v".to_vec())], true).unwrap();
        assert_eq!(engine.get(Table::Meta, b"k").unwrap(), Some(b"v".to_vec()));
        let encrypted = sql(
            &server.url(),
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'rewind'",
        );
        assert!(encrypted[0].get::<_, i64>(0) > 0, "the engine's connections use TLS");

        options.ca_file = Some(std::path::PathBuf::from("/nonexistent/ca.pem"));
        let missing = crate::PostgresEngine::connect(&options).err().expect("a missing CA file is an error");
        assert!(missing.is_refusal() && missing.to_string().contains("journal.ca_file"), "{missing}");
    }

    /// A batch goes out with its COMMIT in one round trip: when the database refuses part
    /// of it, none of it is written, the caller hears the refusal, and the engine goes on.
    #[test]
    fn a_batch_the_database_refuses_is_written_not_at_all() {
        use crate::engine::{Table, Write};
        let fixture = PostgresFixture::new();
        let engine = crate::conformance::Fixture::engine(&fixture);
        sql(fixture.url(), "ALTER TABLE rewind_versions ADD CONSTRAINT short CHECK (length(k) < 8)");
        for sync in [false, true] {
            let batch = vec![
                Write::Put(Table::Records, b"r".to_vec(), b"kept?".to_vec()),
                Write::Put(Table::Versions, b"far too long".to_vec(), Vec::new()),
            ];
            assert!(engine.write(batch.clone(), sync).is_err(), "the refused write is reported");
            let mut built = Some((batch, sync));
            assert!(engine.write_batch(None, &mut |_| built.take()).is_err());
            assert_eq!(engine.get(Table::Records, b"r").unwrap(), None, "no part of a refused batch stays");
        }
        engine.write(vec![Write::Put(Table::Records, b"r".to_vec(), b"v".to_vec())], true).unwrap();
        assert_eq!(engine.get(Table::Records, b"r").unwrap(), Some(b"v".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_locks_exclude_other_processes_and_die_with_them() {
        crate::conformance::shared_locks_exclude_other_processes_and_die_with_them(&PostgresFixture::new()).await;
    }
}

// What follows is particular to the RocksDB engine (its files, its locks) or to encodings.

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
    let envelope = rewind_crypto::aead::seal(keys.journal.expose(), &header, &plain).unwrap();
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
async fn shipped_labels_and_holds_open_only_under_the_key_and_import_up_to_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), keys()).unwrap();
    let a = j.append(intent("k"), Durability::Synced).await.unwrap();
    assert!(j.label_put("first", a.seq).await.unwrap());
    assert!(j.hold_put("b", "legal/", false, "case 1234").await.unwrap());
    assert!(j.hold_put("b", "k", true, "").await.unwrap());
    let view = crate::ViewEntry {
        access_key_id: "RWV1".into(),
        bucket: "b".into(),
        seq: a.seq,
        at_us: 1,
        created_us: 2,
        expires_us: i64::MAX,
    };
    assert!(j.view_put(&view).await.unwrap());
    assert!(!j.view_put(&view).await.unwrap(), "an access key id names one view");
    j.raise_exact_from("b", a.seq).await.unwrap();
    j.raise_exact_from("b", Seq(0)).await.unwrap();
    assert_eq!(j.exact_from("b").unwrap(), Some(a.seq), "raised, never lowered");
    let (bytes, digest) = j.seal_labels(7).unwrap();
    let (generation, set) = j.open_labels(&bytes).unwrap();
    assert_eq!((generation, &set), (7, &j.side_set().unwrap()));
    let (labels, holds) = (set.labels.clone(), set.holds.clone());
    assert_eq!((holds.len(), set.views.clone()), (2, vec![view.clone()]));
    assert_eq!(set.exact, [("b".to_owned(), a.seq)]);
    assert_eq!(digest, set.digest());
    // A set shipped before holds existed (version 1) still opens, with none.
    let mut header = vec![1u8];
    header.extend_from_slice(&3u64.to_le_bytes());
    let mut plain = 1u32.to_le_bytes().to_vec();
    plain.extend_from_slice(&5u16.to_le_bytes());
    plain.extend_from_slice(b"first");
    plain.extend_from_slice(&a.seq.0.to_le_bytes());
    plain.extend_from_slice(&labels[0].2.to_le_bytes());
    let v1 = [header.clone(), rewind_crypto::aead::seal(j.keys.journal.expose(), &header, &plain).unwrap()].concat();
    let only_labels = segment::SideSet { labels: labels.clone(), ..Default::default() };
    assert_eq!(j.open_labels(&v1).unwrap(), (3, only_labels));
    let mut bad = bytes.clone();
    bad[3] ^= 1; // the generation is authenticated too
    assert!(j.open_labels(&bad).is_err());

    let other = Journal::open(tempfile::tempdir().unwrap().path(), keys()).unwrap();
    assert!(other.open_labels(&bytes).is_err());
    let rebuilt = tempfile::tempdir().unwrap();
    let fresh = Journal::open(rebuilt.path(), j.keys.clone()).unwrap();
    fresh.import(j.raw_records(Seq(1), 10).unwrap()).await.unwrap();
    let past_head = (String::from("lost"), Seq(99), 5);
    assert_eq!(fresh.import_labels(&[labels[0].clone(), past_head]).await.unwrap(), 1);
    assert_eq!(fresh.labels().unwrap(), labels, "names and creation times come back; a label past the head does not");
    fresh.import_holds(&holds).await.unwrap();
    assert_eq!(fresh.holds().unwrap(), holds);
    let lost = crate::ViewEntry { access_key_id: "RWV2".into(), seq: Seq(99), ..view.clone() };
    assert_eq!(fresh.import_views(&[view.clone(), lost]).await.unwrap(), 1);
    assert_eq!(fresh.views().unwrap(), vec![view]);
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
        assert!(matches!(ro.label_put("n", Seq(1)).await, Err(JournalError::ReadOnly)));
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
