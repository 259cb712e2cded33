//! `rewind undo --actor`: a legitimate writer and an "attacker" (another client key) write
//! the same bucket; undoing the attacker's window puts back exactly what it changed, keeps
//! every write of the other key, and leaves alone (as a conflict) a key both changed.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use rewind_config::Secret;
use rewind_snapshotter::api::{PlanSummary, RestoreEvent};
use rewind_testkit::{FsUpstream, TestGateway, key_pair, pattern, s3_client};

fn undo(gw: &TestGateway, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(["--json", "undo"])
        .args(args)
        .env("REWIND_ADMIN_URL", gw.admin_url())
        .env("REWIND_ADMIN_TOKEN", gw.admin_token())
        .output()
        .unwrap()
}

async fn body(s3: &aws_sdk_s3::Client, key: &str) -> Option<Vec<u8>> {
    let got = s3.get_object().bucket("bkt").key(key).send().await.ok()?;
    Some(got.body.collect().await.unwrap().into_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // the rewind binary runs beside an in-process gateway
async fn undo_by_actor_reverts_exactly_what_that_key_did() {
    let upstream = FsUpstream::start().await;
    let (attacker_id, attacker_secret) = key_pair();
    let gw = TestGateway::start_with(&upstream.target, |c| {
        c.set_client_key(attacker_id.clone(), Secret::new(attacker_secret.clone()));
    })
    .await;
    let legit = gw.client();
    let attacker = s3_client(&gw.endpoint(), &attacker_id, &attacker_secret);
    legit.create_bucket().bucket("bkt").send().await.unwrap();
    let keys: Vec<String> = (0..16).map(|i| format!("k{i:02}")).collect();
    for (i, k) in keys.iter().enumerate() {
        let b = ByteStream::from(pattern(3000 + i, i as u64));
        legit.put_object().bucket("bkt").key(k).body(b).send().await.unwrap();
    }
    legit.put_object().bucket("bkt").key("shared").body(ByteStream::from_static(b"legit 1")).send().await.unwrap();
    let since = format!("seq:{}", gw.gateway.capture().journal().head().unwrap().seq.0);

    // The attack: overwrites, deletes one by one and in a batch, a new key, a shared key.
    for k in &keys[..10] {
        attacker.put_object().bucket("bkt").key(k).body(ByteStream::from_static(b"encrypted!")).send().await.unwrap();
    }
    for k in &keys[10..12] {
        attacker.delete_object().bucket("bkt").key(k).send().await.unwrap();
    }
    let batch: Vec<_> = keys[12..14].iter().map(|k| ObjectIdentifier::builder().key(k).build().unwrap()).collect();
    let delete = Delete::builder().set_objects(Some(batch)).build().unwrap();
    attacker.delete_objects().bucket("bkt").delete(delete).send().await.unwrap();
    attacker.put_object().bucket("bkt").key("READ-ME").body(ByteStream::from_static(b"pay")).send().await.unwrap();
    attacker
        .put_object()
        .bucket("bkt")
        .key("shared")
        .body(ByteStream::from_static(b"encrypted!"))
        .send()
        .await
        .unwrap();
    // Meanwhile and after, the legitimate key goes on writing.
    legit.put_object().bucket("bkt").key("shared").body(ByteStream::from_static(b"legit 2")).send().await.unwrap();
    legit.put_object().bucket("bkt").key("k15").body(ByteStream::from_static(b"legit new")).send().await.unwrap();
    legit.put_object().bucket("bkt").key("new").body(ByteStream::from_static(b"legit")).send().await.unwrap();

    let args = ["--actor", attacker_id.as_str(), "--bucket", "bkt", "--since", since.as_str()];
    let out = undo(&gw, &[&args[..], &["--dry-run"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: PlanSummary = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((plan.writes, plan.deletes, plan.unchanged), (14, 1, 0), "{plan:?}");
    assert_eq!(plan.sample_deletes, vec!["READ-ME".to_owned()]);
    assert_eq!(plan.conflicts.len(), 1, "{plan:?}");
    assert_eq!(
        (plan.conflicts[0].key.as_str(), plan.conflicts[0].others.clone()),
        ("shared", vec![gw.access_key_id.clone()])
    );

    let out = undo(&gw, &[&args[..], &["--yes"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done: RestoreEvent = serde_json::from_slice(&out.stdout).unwrap();
    let RestoreEvent::Done { written, deleted, failed, .. } = done else { panic!("{done:?}") };
    assert_eq!((written, deleted, failed), (14, 1, 0));

    for (i, k) in keys[..15].iter().enumerate() {
        assert_eq!(body(&legit, k).await.as_deref(), Some(pattern(3000 + i, i as u64).as_slice()), "{k} is back");
    }
    assert_eq!(body(&legit, "READ-ME").await, None, "what the attacker created is gone");
    assert_eq!(body(&legit, "shared").await.as_deref(), Some(&b"legit 2"[..]), "the conflict is left alone");
    assert_eq!(body(&legit, "k15").await.as_deref(), Some(&b"legit new"[..]), "the other key's writes stay");
    assert_eq!(body(&legit, "new").await.as_deref(), Some(&b"legit"[..]));

    // Run again: nothing left to do (an interrupted undo resumes this way).
    let out = undo(&gw, &[&args[..], &["--dry-run"]].concat());
    let again: PlanSummary = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((again.writes, again.deletes, again.unchanged), (0, 0, 15), "{again:?}");
    // The undo is journaled like any write: each reverted key has one more version.
    assert_eq!(gw.gateway.capture().journal().history("bkt", "k00").unwrap().len(), 3);
    // --force would revert the conflict too.
    let out = undo(&gw, &[&args[..], &["--dry-run", "--force"]].concat());
    let forced: PlanSummary = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((forced.writes, forced.conflicts.len()), (1, 0), "{forced:?}");
    assert_eq!(forced.sample_writes, vec!["shared".to_owned()]);
    gw.gateway.shutdown().await;
}

/// Without `--bucket`, the undo covers every bucket the key changed in the window, and
/// leaves the others alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_without_a_bucket_covers_every_bucket_the_key_changed() {
    let upstream = FsUpstream::start().await;
    let (attacker_id, attacker_secret) = key_pair();
    let gw = TestGateway::start_with(&upstream.target, |c| {
        c.set_client_key(attacker_id.clone(), Secret::new(attacker_secret.clone()));
    })
    .await;
    let legit = gw.client();
    let attacker = s3_client(&gw.endpoint(), &attacker_id, &attacker_secret);
    for bucket in ["one", "two", "untouched"] {
        legit.create_bucket().bucket(bucket).send().await.unwrap();
        legit.put_object().bucket(bucket).key("k").body(ByteStream::from_static(b"before")).send().await.unwrap();
    }
    let since = format!("seq:{}", gw.gateway.capture().journal().head().unwrap().seq.0);
    for bucket in ["one", "two"] {
        attacker.put_object().bucket(bucket).key("k").body(ByteStream::from_static(b"locked")).send().await.unwrap();
    }
    legit.put_object().bucket("untouched").key("k").body(ByteStream::from_static(b"legit")).send().await.unwrap();

    let args = ["--actor", attacker_id.as_str(), "--since", since.as_str()];
    let out = undo(&gw, &[&args[..], &["--dry-run"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plans: Vec<PlanSummary> = serde_json::from_slice(&out.stdout).unwrap();
    let buckets: Vec<&str> = plans.iter().map(|p| p.to_bucket.as_str()).collect();
    assert_eq!(buckets, ["one", "two"], "{plans:?}");
    let out = undo(&gw, &[&args[..], &["--yes"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for bucket in ["one", "two"] {
        let got = legit.get_object().bucket(bucket).key("k").send().await.unwrap();
        assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"before", "{bucket}");
    }
    let got = legit.get_object().bucket("untouched").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"legit");
    gw.gateway.shutdown().await;
}
