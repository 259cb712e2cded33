//! Conformance case for keys whose tags change more often than their content.

use super::*;

/// The version a tag change's index entry names (`None`: it names none).
fn named(j: &Journal, key: &str, seq: Seq) -> Option<Seq> {
    let entry = j.engine().get(Table::Versions, &layout::version_key("b", key, seq)).unwrap();
    layout::base_of(&entry.expect("every change of a key has a versions entry"))
}

fn retag(n: usize) -> Effect {
    Effect::Tags(vec![("n".into(), n.to_string())])
}

/// Writes a version of `key`, then retags it `n` times: the version's position and the
/// retags'.
async fn written_then_retagged(j: &Journal, key: &str, n: usize) -> (Seq, Vec<Seq>) {
    let written = write(j, key, Effect::Version(version(1))).await;
    let mut retags = Vec::new();
    for i in 0..n {
        retags.push(write(j, key, retag(i)).await);
    }
    (written, retags)
}

/// Every entry of the `versions` table, in order.
fn versions_table(j: &Journal) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    j.engine()
        .scan(Table::Versions, &[], &mut |k, v| {
            all.push((k.to_vec(), v.to_vec()));
            true
        })
        .unwrap();
    all
}

/// A key retagged many times reads its version without reading back through its tag
/// changes: each names the version it applies to, through new versions, a deletion, a
/// request holding a version and its retags, a reopen and an import. A base gone from the
/// journal is found by reading back; one that is not the key's version fails verify.
pub async fn retagged_keys_name_the_version_their_tags_apply_to(fixture: &dyn Fixture) {
    let keys = keys();
    let j = open(fixture, &keys);
    let (first, retags) = written_then_retagged(&j, "doc", 20).await;
    assert!(retags.iter().all(|s| named(&j, "doc", *s) == Some(first)), "each retag names the version");
    assert_eq!(named(&j, "doc", first), None, "a version names nothing");
    let now = j.version_at("b", "doc", Seq::LATEST).unwrap().unwrap();
    assert_eq!((now.written, now.seq, &now.version.tags[..]), (first, retags[19], &[("n".into(), "19".into())][..]));
    let then = j.version_at("b", "doc", retags[9]).unwrap().unwrap();
    assert_eq!((then.written, then.seq, &then.version.tags[..]), (first, retags[9], &[("n".into(), "9".into())][..]));

    // A new version, a deletion (after which a retag names nothing), then a version and
    // its retags appended in one request (the entries before it are not yet stored).
    let second = write(&j, "doc", Effect::Version(version(2))).await;
    let after_second = write(&j, "doc", retag(20)).await;
    assert_eq!(named(&j, "doc", after_second), Some(second));
    write(&j, "doc", Effect::Deleted { version_id: None }).await;
    let after_delete = write(&j, "doc", retag(21)).await;
    assert_eq!(named(&j, "doc", after_delete), None);
    let head = j.head().unwrap().seq.0;
    let bodies = vec![
        intent("doc"),
        change(Seq(head + 1), "b", "doc", Effect::Version(version(3))),
        intent("doc"),
        change(Seq(head + 3), "b", "doc", retag(22)),
        intent("doc"),
        change(Seq(head + 5), "b", "doc", retag(23)),
    ];
    j.append_all(bodies, Durability::Synced, Vec::new()).await.unwrap();
    let third = Seq(head + 2);
    assert_eq!((named(&j, "doc", Seq(head + 4)), named(&j, "doc", Seq(head + 6))), (Some(third), Some(third)));
    // Other keys keep their own bases.
    let other = write(&j, "other", Effect::Version(version(9))).await;
    let other_retag = write(&j, "other", retag(0)).await;
    assert_eq!(named(&j, "other", other_retag), Some(other));
    assert_intact(&j);
    j.close();

    // After a reopen, the retags between the version and the latest go (as a careless
    // edit could take them): the read jumps over them, it does not read them.
    let j = open(fixture, &keys);
    let again = write(&j, "doc", retag(24)).await;
    assert_eq!(named(&j, "doc", again), Some(third));
    let removed = [Seq(head + 4), Seq(head + 6)].map(|s| Write::Delete(Table::Records, layout::seq_key(s).to_vec()));
    j.engine().write(removed.to_vec(), true).unwrap();
    let now = j.version_at("b", "doc", Seq::LATEST).unwrap().unwrap();
    assert_eq!((now.written, now.seq, &now.version.tags[..]), (third, again, &[("n".into(), "24".into())][..]));
    assert_eq!(now.version.size, 3);

    // An import indexes the same records the same way.
    let raw = j.raw_records(Seq(1), 1000).unwrap();
    let raw: Vec<_> = raw.into_iter().filter(|(s, _)| *s < Seq(head + 4)).collect();
    let copy = Journal::over(Arc::new(crate::MemoryEngine::new()), keys.clone(), Access::ReadWrite).unwrap();
    copy.import(raw).await.unwrap();
    let before_cut = |all: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<_> {
        all.into_iter().filter(|(k, _)| layout::split_version(k).is_some_and(|(.., s)| s < Seq(head + 4))).collect()
    };
    let imported = versions_table(&copy);
    assert!(imported.iter().any(|(_, v)| !v.is_empty()), "the import names bases");
    assert_eq!(imported, before_cut(versions_table(&j)));

    // A base that is gone is found by reading back; a forged one fails verify.
    let gone = 1_000_000u64.to_be_bytes().to_vec();
    let entry = layout::version_key("b", "other", other_retag);
    j.engine().write(vec![Write::Put(Table::Versions, entry, gone)], true).unwrap();
    assert_eq!(j.version_at("b", "other", Seq::LATEST).unwrap().unwrap().written, other);
    assert!(copy.verify().unwrap().problems.is_empty(), "{:?}", copy.verify().unwrap().problems);
    let forged = second.0.to_be_bytes().to_vec();
    copy.engine()
        .write(vec![Write::Put(Table::Versions, layout::version_key("b", "doc", retags[5]), forged)], true)
        .unwrap();
    let problems = copy.verify().unwrap().problems;
    assert!(problems.iter().any(|p| p.contains("not its last version")), "{problems:?}");
}

/// A journal indexed before tag changes named their base (every `versions` entry empty)
/// is upgraded once, in steps that stop and resume after a restart: afterwards its
/// `versions` table is what the writer indexes now, a retag appended between steps
/// included, verify is clean, and another run reads nothing.
pub async fn older_retags_are_named_by_a_one_time_upgrade(fixture: &dyn Fixture) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let keys = keys();
    let j = open(fixture, &keys);
    let (doc, doc_retags) = written_then_retagged(&j, "doc", 7).await;
    write(&j, "doc", Effect::Version(version(2))).await;
    write(&j, "doc", retag(7)).await;
    write(&j, "doc", Effect::Deleted { version_id: None }).await;
    write(&j, "doc", retag(8)).await;
    let last_doc = write(&j, "doc", Effect::Version(version(3))).await;
    write(&j, "doc", retag(9)).await;
    let other = write(&j, "other", Effect::Version(version(4))).await;
    for n in 0..3 {
        write(&j, "other", retag(n)).await;
    }
    write(&j, "plain", Effect::Version(version(5))).await;
    write(&j, "plain", Effect::Version(version(6))).await;
    let indexed = versions_table(&j);
    let named_now = indexed.iter().filter(|(_, v)| !v.is_empty()).count();
    assert_eq!(named_now, 7 + 1 + 1 + 3, "the writer names every retag with a version before it");
    assert_eq!(named(&j, "doc", doc_retags[6]), Some(doc));

    // As an older Rewind left it: every entry empty, and no upgrade run yet.
    let emptied = indexed.iter().map(|(k, _)| Write::Put(Table::Versions, k.clone(), Vec::new())).collect();
    j.engine().write(emptied, true).unwrap();
    assert!(!j.retag_bases_named().unwrap());
    assert_eq!(j.version_at("b", "doc", Seq::LATEST).unwrap().unwrap().written, last_doc, "read back as before");

    // Steps of 3 entries end in the middle of keys; this run stops after two of them.
    let steps = AtomicUsize::new(0);
    let part = j.name_retag_bases(3, || steps.fetch_add(1, Ordering::Relaxed) >= 2).await.unwrap();
    assert_eq!(part.entries, 6);
    assert!(!j.retag_bases_named().unwrap(), "not done yet");
    // A retag appended now follows an entry the upgrade has not reached: it names nothing
    // yet, and the upgrade names it when it gets there.
    let late = write(&j, "other", retag(3)).await;
    assert_eq!(named(&j, "other", late), None);
    j.close();

    let j = open(fixture, &keys);
    let rest = j.name_retag_bases(3, || false).await.unwrap();
    assert_eq!(part.entries + rest.entries, indexed.len() as u64 + 1, "each entry read once, across the restart");
    assert_eq!(part.named + rest.named, named_now as u64 + 1);
    assert!(j.retag_bases_named().unwrap());
    let mut expected = indexed;
    expected.push((layout::version_key("b", "other", late), other.0.to_be_bytes().to_vec()));
    expected.sort();
    assert_eq!(versions_table(&j), expected, "the table the writer indexes now");
    assert!(j.verify().unwrap().problems.is_empty(), "{:?}", j.verify().unwrap().problems);
    let now = j.version_at("b", "other", Seq::LATEST).unwrap().unwrap();
    assert_eq!((now.written, now.seq), (other, late));
    assert_eq!(j.name_retag_bases(3, || false).await.unwrap(), crate::BasesNamed::default(), "done once");
}
