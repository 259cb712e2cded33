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
    let first = write(&j, "doc", Effect::Version(version(1))).await;
    let mut retags = Vec::new();
    for n in 0..20 {
        retags.push(write(&j, "doc", retag(n)).await);
    }
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
