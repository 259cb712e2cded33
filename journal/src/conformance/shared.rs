//! Conformance case for engines that several processes write at once (several gateways
//! over one database): only engines whose [`Engine::shared`] is true run it.

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
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
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
