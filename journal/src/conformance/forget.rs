//! Conformance cases for retention's `forget`: records removed under a sealed horizon.

use std::collections::BTreeSet;

use super::*;

/// Five writes: `a` three times, `b` twice. Returns each commit's position and intent.
async fn history(j: &Journal) -> Vec<(Seq, Seq)> {
    let mut out = Vec::new();
    for (key, size) in [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5)] {
        let commit = write(j, key, Effect::Version(version(size))).await;
        out.push((Seq(commit.0 - 1), commit));
    }
    out
}

/// Removes `a`'s first two versions (with their intents) under a horizon at the second
/// one's commit.
async fn forget_first_versions_of_a(j: &Journal, w: &[(Seq, Seq)]) -> (BTreeSet<Seq>, crate::Horizon) {
    let remove: BTreeSet<Seq> = [w[0].0, w[0].1, w[2].0, w[2].1].into();
    let horizon = j.horizon_after(&remove, w[2].1, [9; 32]).unwrap();
    j.forget(remove.clone(), horizon, Vec::new()).await.unwrap();
    (remove, horizon)
}

pub async fn forget_removes_records_and_verify_checks_the_rest(fixture: &dyn Fixture) {
    let keys = keys();
    let j = open(fixture, &keys);
    let w = history(&j).await;
    let head = j.head().unwrap();
    let first_time = j.record(w[0].1).unwrap().unwrap().timestamp_us;
    let (remove, horizon) = forget_first_versions_of_a(&j, &w).await;
    assert_eq!((horizon.seq, horizon.removed), (w[2].1, 4));
    assert_intact(&j);
    assert_eq!(j.verify().unwrap().records, 10 - 4);
    for seq in &remove {
        assert!(j.record(*seq).unwrap().is_none());
    }
    assert_eq!(j.history("b", "a").unwrap().len(), 1, "a's newest version stays");
    assert!(j.latest_at("b", "a", w[2].1).unwrap().is_none(), "a had no version left as of then");
    assert_eq!(j.head().unwrap(), head, "the head is unchanged");
    assert!(j.seq_at(first_time).is_ok(), "times resolve across the gap");
    // Appends go on after it, and a reopened journal still verifies.
    write(&j, "c", Effect::Version(version(6))).await;
    drop(j);
    let j = open(fixture, &keys);
    assert_eq!(j.horizon().unwrap(), Some(horizon));
    assert_intact(&j);

    // Damage below the horizon is caught by its digest.
    let engine = j.engine().clone();
    let kept = layout::seq_key(w[1].1).to_vec();
    let bytes = engine.get(Table::Records, &kept).unwrap().unwrap();
    engine.write(vec![Write::Delete(Table::Records, kept.clone())], false).unwrap();
    let problems = j.verify().unwrap().problems;
    assert!(problems.iter().any(|p| p.contains("not the ones forget kept")), "{problems:?}");
    engine.write(vec![Write::Put(Table::Records, kept, bytes)], false).unwrap();
    // A forged horizon does not open.
    let sealed = engine.get(Table::Meta, layout::HORIZON_KEY).unwrap().unwrap();
    let mut forged = sealed.clone();
    forged[0] ^= 1;
    engine.write(vec![Write::Put(Table::Meta, layout::HORIZON_KEY.to_vec(), forged)], false).unwrap();
    assert!(j.verify().unwrap().problems.iter().any(|p| p.contains("horizon")));
    engine.write(vec![Write::Put(Table::Meta, layout::HORIZON_KEY.to_vec(), sealed)], false).unwrap();
    assert_intact(&j);
}

pub async fn a_base_rebuilds_a_journal_that_forget_compacted(fixture: &dyn Fixture) {
    let keys = keys();
    let j = open(fixture, &keys);
    let w = history(&j).await;
    let (_, horizon) = forget_first_versions_of_a(&j, &w).await;
    let all = j.raw_records(Seq(1), 100).unwrap();
    let (base, after): (Vec<_>, Vec<_>) = all.into_iter().partition(|(s, _)| *s <= horizon.seq);

    // Through the vault's encoding of a base.
    let sealed = j.seal_base(&horizon, &base).unwrap();
    let (opened, records) = j.open_base(&sealed).unwrap();
    assert_eq!((opened, &records), (horizon, &base));
    let fresh = || Journal::over(Arc::new(crate::MemoryEngine::new()), keys.clone(), Access::ReadWrite).unwrap();
    let rebuilt = fresh();
    rebuilt.import_base(records, horizon).await.unwrap();
    rebuilt.import(after.clone()).await.unwrap();
    assert_eq!(rebuilt.head().unwrap(), j.head().unwrap());
    assert_eq!(rebuilt.horizon().unwrap(), Some(horizon));
    assert_intact(&rebuilt);
    assert_eq!(rebuilt.raw_records(Seq(1), 100).unwrap(), j.raw_records(Seq(1), 100).unwrap());

    // A base missing a record its horizon vouches for is refused.
    let short = fresh();
    let err = short.import_base(base[1..].to_vec(), horizon).await.unwrap_err();
    assert!(err.to_string().contains("horizon"), "{err}");
}
