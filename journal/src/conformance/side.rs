//! Conformance case for the side tables: work in progress, the chunk index, shipping marks
//! and unresolved intents.

use super::*;

/// Work in progress (encrypted, by prefix), the chunk index (first entry kept), shipping
/// marks, and intents without an outcome, all kept across a reopen.
pub async fn side_tables_keep_progress_chunks_marks_and_unresolved_intents(fixture: &dyn Fixture) {
    let keys = keys();
    let (committed, aborted, unresolved) = {
        let j = open(fixture, &keys);
        j.progress(vec![
            Progress::Put(b"up1/1".to_vec(), b"secret metadata".to_vec()),
            Progress::Put(b"up1/2".to_vec(), b"two".to_vec()),
            Progress::Put(b"up2/1".to_vec(), b"other".to_vec()),
        ])
        .await
        .unwrap();
        j.chunk_put_all(vec![([1; 32], b"first".to_vec())]).await.unwrap();
        j.chunk_put_all(vec![([1; 32], b"second".to_vec()), ([2; 32], b"x".to_vec())]).await.unwrap();
        j.set_shipped(Seq(3), &[7; 32]).await.unwrap();
        j.set_labels_shipped(2, &[8; 32]).await.unwrap();
        let committed = j.append(intent("a"), Durability::Buffered).await.unwrap().seq;
        let aborted = j.append(intent("b"), Durability::Buffered).await.unwrap().seq;
        let unresolved = j.append(intent("c"), Durability::Buffered).await.unwrap().seq;
        j.append(tags(committed, "a", "1"), Durability::Synced).await.unwrap();
        j.append(Body::Abort(Abort { intent: aborted, reason: "x".into() }), Durability::Synced).await.unwrap();
        (committed, aborted, unresolved)
    };
    let j = open(fixture, &keys);
    let got = j.progress_scan(b"up1/").unwrap();
    assert_eq!(got, [(b"up1/1".to_vec(), b"secret metadata".to_vec()), (b"up1/2".to_vec(), b"two".to_vec())]);
    assert_eq!(j.progress_get(b"up2/1").unwrap().as_deref(), Some(&b"other"[..]));
    let raw = j.engine().get(Table::Progress, b"up1/1").unwrap().unwrap();
    assert!(!raw.windows(6).any(|w| w == b"secret"), "work in progress must not be stored in the clear");
    j.progress(vec![Progress::RemovePrefix(b"up1/".to_vec())]).await.unwrap();
    assert!(j.progress_scan(b"up1/").unwrap().is_empty());
    assert_eq!(j.progress_scan(b"up").unwrap().len(), 1);

    assert_eq!(j.chunk_get(&[1; 32]).unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(j.chunk_get(&[3; 32]).unwrap(), None);
    let mut ids = Vec::new();
    j.for_each_chunk(|id, _| ids.push(id[0])).unwrap();
    assert_eq!(ids, [1, 2]);
    // A swap changes only entries that still hold what the caller read.
    let swap = |id: u8, expected: &[u8], new: Option<&[u8]>| crate::ChunkSwap {
        id: [id; 32],
        expected: expected.to_vec(),
        new: new.map(<[u8]>::to_vec),
    };
    let changed =
        j.chunk_swap(vec![swap(1, b"first", Some(b"moved")), swap(2, b"stale", None), swap(3, b"x", None)]).await;
    assert_eq!(changed.unwrap(), 1, "only chunk 1 held what was expected");
    assert_eq!(j.chunk_get(&[1; 32]).unwrap().as_deref(), Some(&b"moved"[..]));
    assert_eq!(j.chunk_swap(vec![swap(2, b"x", None)]).await.unwrap(), 1);
    assert_eq!(j.chunk_get(&[2; 32]).unwrap(), None);
    j.chunk_put_all(vec![([2; 32], b"x".to_vec())]).await.unwrap();

    assert_eq!(j.shipped().unwrap(), (Seq(3), [7; 32]));
    assert_eq!(j.labels_shipped().unwrap(), (2, [8; 32]));

    let open_seqs: Vec<Seq> = j.unresolved_intents().unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(open_seqs, [unresolved]);
    assert!(j.is_unresolved(unresolved).unwrap());
    assert!(!j.is_unresolved(committed).unwrap() && !j.is_unresolved(aborted).unwrap());
    assert_intact(&j);
}

/// Each key's open intents are found before its next mutation (G2): after many rewrites of
/// the key, after aborts, after a batch that failed, and after a reopen.
pub async fn each_key_finds_its_open_intents(fixture: &dyn Fixture) {
    let keys = keys();
    let open_on = |j: &Journal, key: &str| -> Vec<Seq> {
        j.unresolved_on("b", key).unwrap().into_iter().map(|(r, _)| r.seq).collect()
    };
    let left = {
        let flaky = Arc::new(Flaky { inner: fixture.engine(), budget: AtomicU64::new(u64::MAX) });
        let j = Journal::over(flaky.clone(), keys.clone(), Access::ReadWrite).unwrap();
        for n in 0..50 {
            write(&j, "hot", Effect::Tags(vec![("n".into(), n.to_string())])).await;
        }
        assert!(open_on(&j, "hot").is_empty());
        let open = j.append(intent("hot"), Durability::Synced).await.unwrap().seq;
        assert_eq!(open_on(&j, "hot"), [open]);
        let aborted = j.append(intent("gone"), Durability::Synced).await.unwrap().seq;
        j.append(Body::Abort(Abort { intent: aborted, reason: "x".into() }), Durability::Synced).await.unwrap();
        assert!(open_on(&j, "gone").is_empty());
        // A commit whose batch fails leaves its intent open, and findable.
        flaky.budget.store(0, Ordering::SeqCst);
        assert!(j.append(tags(open, "hot", "lost"), Durability::Synced).await.is_err());
        assert_eq!(open_on(&j, "hot"), [open], "the failed commit's intent must stay visible");
        flaky.budget.store(u64::MAX, Ordering::SeqCst);
        let other = j.append(intent("cold"), Durability::Synced).await.unwrap().seq;
        j.close();
        (open, other)
    };
    let j = open(fixture, &keys);
    assert_eq!(open_on(&j, "hot"), [left.0], "an intent left open before the restart");
    assert_eq!(open_on(&j, "cold"), [left.1]);
    assert!(open_on(&j, "gone").is_empty() && open_on(&j, "never").is_empty());
    j.append(tags(left.0, "hot", "done"), Durability::Synced).await.unwrap();
    assert!(open_on(&j, "hot").is_empty());
    let again = j.append(intent("hot"), Durability::Buffered).await.unwrap().seq;
    assert_eq!(open_on(&j, "hot"), [again]);
}
