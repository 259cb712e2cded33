use std::sync::Arc;

use rewind_crypto::{KeySet, SecretKey};
use rewind_journal::{Durability, Journal};
use rewind_model::{Body, Commit, Effect, Intent, ObjectVersion, Op, Seq};

use super::*;
use crate::api::Mode;

fn version(etag: &str) -> ObjectVersion {
    ObjectVersion::of_content(etag.len() as u64, *blake3::hash(etag.as_bytes()).as_bytes(), Vec::new(), etag)
}

/// Appends an intent and its commit; returns the commit's position.
async fn mutate(j: &Journal, op: Op, key: &str, effect: Effect) -> Seq {
    let intent = Body::Intent(Intent {
        op,
        bucket: "bkt".into(),
        key: key.into(),
        access_key: "AKID".into(),
        request_id: format!("req-{key}"),
    });
    let i = j.append(intent, Durability::Buffered).await.unwrap();
    let commit = Body::Commit(Commit { intent: i.seq, bucket: "bkt".into(), key: key.into(), effect });
    j.append(commit, Durability::Synced).await.unwrap().seq
}

fn keys_of(entries: &[Entry]) -> Vec<(&str, &str)> {
    entries.iter().map(|e| (e.key.as_str(), e.version.etag.as_str())).collect()
}

struct Scenario {
    _dir: tempfile::TempDir,
    journal: Journal,
    seqs: Vec<Seq>,
}

/// put a(1), put b(1), tag a, put a(2), delete b, put c(1), put dir/x(1)
async fn scenario() -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), Arc::new(KeySet::derive(&SecretKey::generate().unwrap()))).unwrap();
    let j = &journal;
    let tags = vec![("env".to_owned(), "prod".to_owned())];
    let seqs = vec![
        mutate(j, Op::Put, "a", Effect::Version(version("a1"))).await,
        mutate(j, Op::Put, "b", Effect::Version(version("b1"))).await,
        mutate(j, Op::PutTagging, "a", Effect::Tags(tags)).await,
        mutate(j, Op::Put, "a", Effect::Version(version("a2"))).await,
        mutate(j, Op::Delete, "b", Effect::Deleted { version_id: None }).await,
        mutate(j, Op::Put, "c", Effect::Version(version("c1"))).await,
        mutate(j, Op::Put, "dir/x", Effect::Version(version("x1"))).await,
    ];
    Scenario { _dir: dir, journal, seqs }
}

#[tokio::test]
async fn state_at_each_instant_follows_the_mutations() {
    let s = scenario().await;
    let h = History::new(&s.journal);
    let at = |i: usize| h.state_at("bkt", "", s.seqs[i]).unwrap();
    assert_eq!(keys_of(&at(0)), [("a", "a1")]);
    assert_eq!(keys_of(&at(1)), [("a", "a1"), ("b", "b1")]);
    let tagged = at(2);
    assert_eq!(tagged[0].version.tags, [("env".to_owned(), "prod".to_owned())]);
    assert_eq!(tagged[0].seq, s.seqs[2], "a tag change is the latest commit shaping the version");
    // A new write of `a` starts with the tags it was written with (none), not the old ones.
    assert!(at(3)[0].version.tags.is_empty());
    assert_eq!(keys_of(&at(4)), [("a", "a2")]);
    assert_eq!(keys_of(&at(6)), [("a", "a2"), ("c", "c1"), ("dir/x", "x1")]);
    assert_eq!(keys_of(&h.state_at("bkt", "dir/", s.seqs[6]).unwrap()), [("dir/x", "x1")]);
    // Between an intent and its commit nothing has changed yet.
    assert_eq!(keys_of(&h.state_at("bkt", "", Seq(s.seqs[0].0 + 1)).unwrap()), [("a", "a1")]);
    assert!(h.state_at("bkt", "", Seq(0)).unwrap().is_empty());
}

#[tokio::test]
async fn diff_reports_added_changed_and_deleted_keys() {
    let s = scenario().await;
    let h = History::new(&s.journal);
    let changes = h.diff("bkt", "", s.seqs[1], s.seqs[6]).unwrap();
    let summary: Vec<String> = changes
        .iter()
        .map(|c| match c {
            Change::Added(e) => format!("+{}", e.key),
            Change::Changed { from, to } => format!("~{} {}->{}", to.key, from.version.etag, to.version.etag),
            Change::Deleted(e) => format!("-{}", e.key),
        })
        .collect();
    assert_eq!(summary, ["~a a1->a2", "-b", "+c", "+dir/x"]);
    assert!(h.diff("bkt", "", s.seqs[6], s.seqs[6]).unwrap().is_empty());
    // A tag change alone is a change.
    assert_eq!(h.diff("bkt", "", s.seqs[1], s.seqs[2]).unwrap().len(), 1);
}

#[tokio::test]
async fn log_lists_every_commit_of_a_key_with_who_and_what() {
    let s = scenario().await;
    let log = History::new(&s.journal).log("bkt", "a").unwrap();
    let ops: Vec<Op> = log.iter().map(|e| e.op).collect();
    assert_eq!(ops, [Op::Put, Op::PutTagging, Op::Put]);
    assert!(log.iter().all(|e| e.access_key == "AKID" && e.request_id == "req-a"));
    assert_eq!(log[0].seq, s.seqs[0]);
}

#[tokio::test]
async fn instants_resolve_to_positions_and_refuse_what_history_cannot_answer() {
    let s = scenario().await;
    let h = History::new(&s.journal);
    let head = s.journal.head().unwrap();
    assert_eq!(h.resolve(&At::TimeUs(head.timestamp_us)).unwrap(), head.seq);
    assert_eq!(h.resolve(&At::Seq(3)).unwrap(), Seq(3));
    let first = s.journal.record(Seq(1)).unwrap().unwrap().timestamp_us;
    let err = h.resolve(&At::TimeUs(first - 1)).unwrap_err();
    assert!(err.to_string().contains("before history began"), "{err}");
    let err = h.resolve(&At::Seq(head.seq.0 + 1)).unwrap_err();
    assert!(err.to_string().contains("past the newest record"), "{err}");
}

#[tokio::test]
async fn a_rewind_plan_writes_changed_and_missing_keys_and_deletes_new_ones() {
    let s = scenario().await;
    let h = History::new(&s.journal);
    let scope = plan::Scope { bucket: "bkt", prefix: "", key: None, to_bucket: "bkt" };
    // At seqs[1]: a(a1, untagged), b(b1). Now: a(a2), c, dir/x.
    let p = h.plan(&scope, s.seqs[1], Mode::Rewind).unwrap();
    assert_eq!(keys_of(&p.writes), [("a", "a1"), ("b", "b1")]);
    assert_eq!(p.deletes, ["c", "dir/x"]);
    assert_eq!((p.summary.writes, p.summary.write_bytes, p.summary.deletes), (2, 4, 2));
    // Non-destructive: only what is missing now; the changed `a` and the new keys stay.
    let p = h.plan(&scope, s.seqs[1], Mode::NonDestructive).unwrap();
    assert_eq!(keys_of(&p.writes), [("b", "b1")]);
    assert!(p.deletes.is_empty());
    assert_eq!(p.summary.kept, 3);
    // Restoring to now changes nothing.
    let p = h.plan(&scope, s.seqs[6], Mode::Rewind).unwrap();
    assert!(p.writes.is_empty() && p.deletes.is_empty());
    assert_eq!(p.summary.unchanged, 3);
    // One key, or one prefix.
    let one = plan::Scope { key: Some("b"), ..scope.clone() };
    assert_eq!(keys_of(&h.plan(&one, s.seqs[1], Mode::Rewind).unwrap().writes), [("b", "b1")]);
    let dir = plan::Scope { prefix: "dir/", ..scope.clone() };
    assert_eq!(h.plan(&dir, s.seqs[1], Mode::Rewind).unwrap().deletes, ["dir/x"]);
    // Into another bucket with no history: everything is written.
    let other = plan::Scope { to_bucket: "copy", ..scope };
    assert_eq!(h.plan(&other, s.seqs[6], Mode::NonDestructive).unwrap().summary.writes, 3);
}

#[tokio::test]
async fn a_tag_change_alone_is_restored() {
    let s = scenario().await;
    let h = History::new(&s.journal);
    let scope = plan::Scope { bucket: "bkt", prefix: "", key: Some("a"), to_bucket: "bkt" };
    let at_tagged = h.plan(&scope, s.seqs[2], Mode::Rewind).unwrap();
    assert_eq!(at_tagged.writes[0].version.tags, [("env".to_owned(), "prod".to_owned())]);
}

#[tokio::test]
async fn snapshots_name_instants_that_at_accepts() {
    let s = scenario().await;
    let h = History::new(&s.journal);
    let snap = h.create_snapshot("before-c", &At::Seq(s.seqs[4].0)).await.unwrap();
    assert_eq!(snap.seq, s.seqs[4].0);
    assert_eq!(h.resolve(&At::Name("before-c".into())).unwrap(), s.seqs[4]);
    let err = h.create_snapshot("before-c", &At::Seq(1)).await.unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    let err = h.create_snapshot("9lives", &At::Seq(1)).await.unwrap_err();
    assert!(err.to_string().contains("cannot name a snapshot"), "{err}");
    assert_eq!(h.snapshots().unwrap().len(), 1);
    h.delete_snapshot("before-c").await.unwrap();
    let err = h.resolve(&At::Name("before-c".into())).unwrap_err();
    assert!(err.to_string().contains("rewind snapshot list"), "{err}");
    assert!(h.delete_snapshot("before-c").await.is_err());
}

/// Review F5: a DeleteBucket that succeeded upstream took every key with it, even where
/// no per-key delete was journaled (an upstream that deletes non-empty buckets).
#[tokio::test]
async fn a_committed_delete_bucket_deletes_every_key_journaled_before_it() {
    let s = scenario().await;
    let j = &s.journal;
    let gone = mutate(j, Op::DeleteBucket, "", Effect::Bucket).await;
    mutate(j, Op::CreateBucket, "", Effect::Bucket).await;
    let after = mutate(j, Op::Put, "fresh", Effect::Version(version("f1"))).await;
    let h = History::new(j);
    assert_eq!(keys_of(&h.state_at("bkt", "", gone).unwrap()), Vec::<(&str, &str)>::new());
    assert_eq!(keys_of(&h.state_at("bkt", "", after).unwrap()), [("fresh", "f1")]);
    assert!(h.version_at("bkt", "a", after).unwrap().is_none());
    // Before it, the bucket is as it was.
    assert_eq!(keys_of(&h.state_at("bkt", "", s.seqs[6]).unwrap()), [("a", "a2"), ("c", "c1"), ("dir/x", "x1")]);
}

/// Review R3: a record reached through the versions index must be one of the key asked
/// for; an edited index must not show another key's version.
#[test]
fn a_record_of_another_key_reached_through_the_index_is_refused() {
    let body = Body::Commit(Commit {
        intent: Seq(1),
        bucket: "bkt".into(),
        key: "other".into(),
        effect: Effect::Version(version("o1")),
    });
    assert!(matches!(
        rewind_journal::indexed_change(body.clone(), Seq(2), "bkt", "asked"),
        Err(rewind_journal::JournalError::Corrupt { .. })
    ));
    assert!(rewind_journal::indexed_change(body, Seq(2), "bkt", "other").unwrap().is_some());
}

/// Review F6: restore plans against what the destination holds, read with the journal.
#[tokio::test]
async fn a_plan_against_a_listing_writes_what_is_missing_or_changed_upstream() {
    let s = scenario().await;
    let h = History::new(&s.journal);
    let scope = plan::Scope { bucket: "bkt", prefix: "", key: None, to_bucket: "bkt" };
    let listed = |entries: &[(&str, &str)]| -> plan::Destination {
        entries.iter().map(|(k, etag)| ((*k).to_owned(), ((*etag).to_owned(), etag.len() as u64))).collect()
    };
    // The journal says a2, c1 and dir/x are there; the upstream lost c and changed a.
    let now = listed(&[("a", "zz"), ("dir/x", "x1"), ("stray", "s1")]);
    let p = h.plan_against(&scope, s.seqs[6], Mode::Rewind, &now).unwrap();
    assert_eq!(keys_of(&p.writes), [("a", "a2"), ("c", "c1")]);
    assert_eq!(p.deletes, ["stray"]);
    assert_eq!(p.summary.unchanged, 1);
    // The journal alone would have said there was nothing to do.
    assert_eq!(h.plan(&scope, s.seqs[6], Mode::Rewind).unwrap().summary.writes, 0);
    // Non-destructive: the missing key is written, the changed one and the stray kept.
    let p = h.plan_against(&scope, s.seqs[6], Mode::NonDestructive, &now).unwrap();
    assert_eq!(keys_of(&p.writes), [("c", "c1")]);
    assert_eq!(p.summary.kept, 2);
}

/// `forget --dry-run` on the scenario: with only the current state kept, the superseded
/// versions, the tag change and the delete expire; the bytes are those only they hold.
#[tokio::test]
async fn a_forget_plan_expires_what_no_kept_instant_reads() {
    let s = scenario().await;
    let mut retention = rewind_config::RetentionConfig {
        keep_all_within: rewind_config::HumanDuration::secs(0),
        ..rewind_config::RetentionConfig::default()
    };
    let now = s.journal.head().unwrap().timestamp_us;
    let sizes = |_: &rewind_model::ChunkId| Ok(0);
    let plan = retention::plan(&s.journal, sizes, &retention, None, now).unwrap();
    let b = &plan.buckets[0];
    // a1 and b1 (superseded, deleted) and the tag change of a1; b's delete is what the
    // current state reads for b, so it stays.
    assert_eq!((b.versions, b.versions_expired, b.entries_expired), (5, 2, 3));
    // Everything is kept within a window that covers all of history.
    retention.keep_all_within = rewind_config::HumanDuration::secs(3600);
    let plan = retention::plan(&s.journal, sizes, &retention, None, now).unwrap();
    assert_eq!(plan.buckets[0].entries_expired, 0);
    // A snapshot keeps what it names: before the tag change, a1 and b1; only the tag change
    // goes.
    retention.keep_all_within = rewind_config::HumanDuration::secs(0);
    assert!(s.journal.label_put("early", s.seqs[1]).await.unwrap());
    let plan = retention::plan(&s.journal, sizes, &retention, None, now).unwrap();
    assert_eq!((plan.buckets[0].versions_expired, plan.buckets[0].entries_expired), (0, 1));
}

/// An open time-travel view keeps what it shows, like a snapshot; an expired one keeps
/// nothing.
#[tokio::test]
async fn an_open_view_pins_its_instant_against_retention_and_an_expired_one_does_not() {
    let s = scenario().await;
    let retention = rewind_config::RetentionConfig {
        keep_all_within: rewind_config::HumanDuration::secs(0),
        ..rewind_config::RetentionConfig::default()
    };
    let now = s.journal.head().unwrap().timestamp_us;
    let sizes = |_: &rewind_model::ChunkId| Ok(0);
    let expired = |plan: &crate::api::ForgetPlan| (plan.buckets[0].versions_expired, plan.buckets[0].entries_expired);
    let view = |id: &str, expires_us: i64| rewind_journal::ViewEntry {
        access_key_id: id.into(),
        bucket: "bkt".into(),
        seq: s.seqs[1],
        at_us: 0,
        created_us: 0,
        expires_us,
    };
    assert!(s.journal.view_put(&view("RWVWEXPIRED", now)).await.unwrap());
    assert_eq!(expired(&retention::plan(&s.journal, sizes, &retention, None, now).unwrap()), (2, 3));
    assert!(s.journal.view_put(&view("RWVWOPEN", now + 1)).await.unwrap());
    assert_eq!(expired(&retention::plan(&s.journal, sizes, &retention, None, now).unwrap()), (0, 1));
}
