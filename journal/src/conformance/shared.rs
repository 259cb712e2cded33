//! Conformance cases for engines that several processes write at once (several gateways
//! over one database): only engines whose [`Engine::shared`] is true run them.

use super::*;

/// Three journals over one store, as three gateways would open it, each with many tasks
/// appending, labelling and indexing chunks at once: one gap-free chain that verifies from
/// each of them, timestamps that never go back along it, every label and chunk entry kept,
/// and each journal's head the same at the end.
pub async fn journals_in_several_processes_form_one_chain(fixture: &dyn Fixture) {
    let keys = keys();
    let journals: Vec<Arc<Journal>> = (0..3).map(|_| Arc::new(open(fixture, &keys))).collect();
    assert!(journals[0].engine().shared(), "this case is for engines several processes share");
    let tasks: Vec<_> = (0..24u8)
        .map(|t| {
            let j = journals[usize::from(t % 3)].clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..20u8 {
                    let d = if i % 2 == 0 { Durability::Buffered } else { Durability::Synced };
                    let key = format!("{t}/{i}");
                    let intent = j.append(super::intent(&key), d).await.unwrap().seq;
                    seqs.push(intent.0);
                    seqs.push(j.append(tags(intent, &key, "1"), Durability::Synced).await.unwrap().seq.0);
                    match i % 5 {
                        1 => assert!(j.label_put(&format!("l{t}-{i}"), Seq(1)).await.unwrap()),
                        3 => j.chunk_put_all(vec![([t; 32], vec![i])]).await.unwrap(),
                        _ => {}
                    }
                }
                seqs
            })
        })
        .collect();
    let all = positions(tasks).await;
    let n = 24 * 20 * 2;
    assert_eq!(all, (1..=n).collect::<Vec<_>>(), "every position given once, none skipped");
    let records = journals[0].records(Seq(1), usize::try_from(n).unwrap() + 1).unwrap();
    assert!(records.windows(2).all(|w| w[0].timestamp_us <= w[1].timestamp_us), "time never goes back");
    for j in &journals {
        assert_eq!(j.head().unwrap().seq, Seq(n));
        assert_eq!(j.labels().unwrap().len(), 24 * 4);
        assert_intact(j);
    }
    for t in 0..24u8 {
        assert_eq!(journals[2].chunk_get(&[t; 32]).unwrap(), Some(vec![3]), "the first entry of a chunk is kept");
    }
    // Each key's commit follows its own intent: the index agrees with the records.
    for t in 0..24u8 {
        for i in 0..20u8 {
            let history = journals[1].history("b", &format!("{t}/{i}")).unwrap();
            assert_eq!(history.len(), 1);
        }
    }
}

/// A lease is one holder's until it lapses or is given up; liveness leases tell whose
/// intents are in flight and whose were interrupted.
pub async fn leases_pass_to_another_process_only_once_they_lapse(fixture: &dyn Fixture) {
    use crate::leases::{BACKGROUND, liveness};
    use std::sync::atomic::AtomicI64;
    use std::time::Duration;
    let keys = keys();
    let now = Arc::new(AtomicI64::new(1_700_000_000_000_000));
    let clock: crate::Clock = {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    };
    let open_as = |owner: &str| {
        Journal::over_as(fixture.engine(), keys.clone(), Access::ReadWrite, clock.clone(), owner).unwrap()
    };
    let (a, b) = (open_as("gw-a"), open_as("gw-b"));
    let ttl = Duration::from_secs(20);
    let pass = |secs: i64| now.fetch_add(secs * 1_000_000, Ordering::SeqCst);

    assert!(a.lease_renew(BACKGROUND, ttl).await.unwrap());
    assert!(!b.lease_renew(BACKGROUND, ttl).await.unwrap(), "held by another");
    pass(15);
    assert!(a.lease_renew(BACKGROUND, ttl).await.unwrap(), "the holder renews");
    pass(15);
    assert!(!b.lease_renew(BACKGROUND, ttl).await.unwrap(), "renewed, so not lapsed");
    pass(6);
    assert!(b.lease_renew(BACKGROUND, ttl).await.unwrap(), "lapsed, so taken");
    assert_eq!(a.lease(BACKGROUND).unwrap().unwrap().holder, "gw-b");
    assert!(!a.lease_renew(BACKGROUND, ttl).await.unwrap());
    a.lease_release(BACKGROUND).await.unwrap();
    assert_eq!(b.lease(BACKGROUND).unwrap().unwrap().holder, "gw-b", "only the holder gives a lease up");
    b.lease_release(BACKGROUND).await.unwrap();
    assert!(a.lease_renew(BACKGROUND, ttl).await.unwrap(), "given up, so taken at once");

    // Owners of intents, and their liveness.
    assert!(a.lease_renew(&liveness("gw-a"), ttl).await.unwrap());
    assert!(b.lease_renew(&liveness("gw-b"), ttl).await.unwrap());
    let ia = a.append(intent("x"), Durability::Synced).await.unwrap().seq;
    let ib = b.append(intent("y"), Durability::Synced).await.unwrap().seq;
    let owned: Vec<(Seq, String)> = b.unresolved_owned().unwrap().into_iter().map(|(r, o)| (r.seq, o)).collect();
    assert_eq!(owned, vec![(ia, "gw-a".to_owned()), (ib, "gw-b".to_owned())]);
    assert!(b.owner_alive("gw-a").unwrap());
    pass(10);
    assert!(b.lease_renew(&liveness("gw-b"), ttl).await.unwrap());
    pass(11);
    assert!(!b.owner_alive("gw-a").unwrap(), "gw-a stopped renewing: its intents were interrupted");
    assert!(a.owner_alive("gw-b").unwrap());
    assert_eq!(b.leases("gateway/").unwrap().len(), 2);
}

/// Per-key locks across processes: exclusive between processes, re-entrant within one,
/// and released when the process holding them goes away.
pub async fn shared_locks_exclude_other_processes_and_die_with_them(fixture: &dyn Fixture) {
    use std::time::Duration;
    let (a, b, c) = (fixture.engine(), fixture.engine(), fixture.engine());
    let locks = |e: &Arc<dyn Engine>| e.shared_locks().expect("a shared engine has shared locks");
    let (la, lb, lc) = (locks(&a), locks(&b), locks(&c));
    la.acquire(vec![9, 7]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), la.acquire(vec![7])).await.expect("re-entrant").unwrap();
    let waiting = tokio::spawn(lb.acquire(vec![9]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "another process holds it");
    lb.acquire(vec![8]).await.unwrap();
    la.release(vec![7, 9]);
    la.release(vec![7]);
    tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("released, so taken").unwrap().unwrap();

    let waiting = tokio::spawn(lc.acquire(vec![8, 9]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    drop(lb);
    drop(b); // the process holding 8 and 9 goes away
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("a dead holder's locks are free")
        .unwrap()
        .unwrap();
}
