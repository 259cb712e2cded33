//! The gateway in front of moto, for the S3 semantics s3s-fs lacks: versioning, tagging,
//! conditional requests, and error answers compared with the upstream's own.

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use std::time::{Duration, SystemTime};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging, VersioningConfiguration};
use rewind_model::{Body, Effect};
use rewind_testkit::moto::Moto;
use rewind_testkit::raw;
use rewind_testkit::{TestGateway, expiring_lifecycle};

/// One moto for all checks: it takes seconds to start.
#[tokio::test]
async fn versioning_tagging_conditionals_and_errors_pass_through() {
    let moto = Moto::start().await;
    let gw = TestGateway::start(&moto.target).await;
    let s3 = gw.client();
    let direct = moto.client();
    s3.create_bucket().bucket("ver").send().await.unwrap();

    versioning(&s3, &direct).await;
    tagging(&gw, &s3, &direct).await;
    tag_changes_are_journaled(&gw);
    versioned_deletes_are_journaled(&gw, &s3, &direct).await;
    conditionals(&s3).await;
    errors_match_the_upstream(&s3, &direct).await;
    destructive_lifecycles(&moto, &s3, &direct).await;
    racing_writers_are_journaled_in_upstream_order(&gw, &s3, &direct).await;
    a_trickling_writer_holds_no_other_writer(&gw, &s3, &direct).await;
}

/// Two writers of one key: the first trickles its body; the second starts later and
/// completes while the first is still sending (the lock covers completions, not bodies).
/// Both land, and the journal lists them in the upstream's order.
async fn a_trickling_writer_holds_no_other_writer(
    gw: &TestGateway,
    s3: &aws_sdk_s3::Client,
    direct: &aws_sdk_s3::Client,
) {
    use tokio::io::AsyncWriteExt;
    let slow_body = rewind_testkit::pattern(256 * 1024, 7);
    let mut req = http::Request::put(format!("{}/ver/trickle", gw.endpoint())).body(Vec::new()).unwrap();
    raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), &raw::sha256_hex(&slow_body));
    let mut slow = raw::send_head(gw.addr(), &req, slow_body.len()).await;
    let (first, rest) = slow_body.split_at(slow_body.len() / 2);
    slow.write_all(first).await.unwrap();
    slow.flush().await.unwrap();

    let fast = s3.put_object().bucket("ver").key("trickle").body(ByteStream::from_static(b"the fast writer"));
    let fast = tokio::time::timeout(Duration::from_secs(30), fast.send())
        .await
        .expect("the second writer waited for the first one's body")
        .unwrap();
    for piece in rest.chunks(16 * 1024) {
        slow.write_all(piece).await.expect("the gateway cut the slow writer off while the other waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = raw::read_response(slow).await;
    assert_eq!(answer.status, 200, "{}", answer.text());

    let listed = direct.list_object_versions().bucket("ver").prefix("trickle").send().await.unwrap();
    let upstream: Vec<String> = listed.versions().iter().rev().filter_map(|v| v.version_id().map(Into::into)).collect();
    assert_eq!(upstream.len(), 2);
    assert_eq!(upstream[0], fast.version_id().unwrap(), "the fast writer completed first");
    let got = direct.get_object().bucket("ver").key("trickle").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), &slow_body[..], "the last to complete wins");
    assert_eq!(journaled_versions(gw, "ver", "trickle"), upstream, "the journal's order differs from the upstream's");
}

/// The version ids a key's journal lists, oldest first.
fn journaled_versions(gw: &TestGateway, bucket: &str, key: &str) -> Vec<String> {
    gw.gateway
        .capture()
        .journal()
        .history(bucket, key)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.body.into_change()?.effect {
            Effect::Version(v) => v.version_id,
            _ => None,
        })
        .collect()
}

/// Clients racing on the same keys of a versioned bucket: the upstream's version list is
/// the order it applied the writes, and each key's journal must list the same versions in
/// the same order (the per-key lock makes journal order equal upstream order).
async fn racing_writers_are_journaled_in_upstream_order(
    gw: &TestGateway,
    s3: &aws_sdk_s3::Client,
    direct: &aws_sdk_s3::Client,
) {
    let keys = ["race/a", "race/b"];
    let tasks: Vec<_> = (0..8u64)
        .map(|w| {
            let s3 = s3.clone();
            tokio::spawn(async move {
                for i in 0..12u64 {
                    let key = keys[((w + i) % 2) as usize];
                    let body = ByteStream::from(format!("writer {w} write {i}").into_bytes());
                    s3.put_object().bucket("ver").key(key).body(body).send().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let listed = direct.list_object_versions().bucket("ver").prefix("race/").send().await.unwrap();
    for key in keys {
        // Newest first upstream; oldest first in the journal.
        let mut upstream: Vec<String> = listed
            .versions()
            .iter()
            .filter(|v| v.key() == Some(key))
            .filter_map(|v| v.version_id().map(Into::into))
            .collect();
        upstream.reverse();
        let journaled = journaled_versions(gw, "ver", key);
        assert_eq!(upstream.len(), 48, "{key}");
        assert_eq!(journaled, upstream, "{key}: the journal's order differs from the upstream's");
    }
}

/// Refused by default (the upstream never sees it); when an operator allows it, applied and
/// journaled.
async fn destructive_lifecycles(moto: &Moto, s3: &aws_sdk_s3::Client, direct: &aws_sdk_s3::Client) {
    let put = s3.put_bucket_lifecycle_configuration().bucket("ver").lifecycle_configuration(expiring_lifecycle());
    assert_eq!(put.send().await.unwrap_err().code(), Some("AccessDenied"));
    assert!(direct.get_bucket_lifecycle_configuration().bucket("ver").send().await.is_err(), "nothing set upstream");

    let allowing = TestGateway::start_with(&moto.target, |c| c.protection.allow_destructive_bucket_config = true).await;
    let client = allowing.client();
    let put = client.put_bucket_lifecycle_configuration().bucket("ver").lifecycle_configuration(expiring_lifecycle());
    put.send().await.unwrap();
    let set = direct.get_bucket_lifecycle_configuration().bucket("ver").send().await.unwrap();
    assert_eq!(set.rules().len(), 1);
    let journal = allowing.gateway.capture().journal();
    let commits = journal.history("ver", "").unwrap();
    assert_eq!(commits.len(), 1, "the allowed configuration is journaled");
    let Body::Commit(c) = &commits[0].body else { panic!("{:?}", commits[0]) };
    let Body::Intent(intent) = journal.record(c.intent).unwrap().unwrap().body else { panic!("no intent") };
    assert_eq!(intent.op, rewind_model::Op::BucketConfig);
}

async fn versioning(s3: &aws_sdk_s3::Client, direct: &aws_sdk_s3::Client) {
    // moto answers GetBucketVersioning with a root element aws-sdk-s3 rejects: read leniently.
    let never = s3.get_bucket_versioning().bucket("ver").send().await.unwrap();
    assert_eq!(never.status(), None, "never versioned");
    s3.put_bucket_versioning()
        .bucket("ver")
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .unwrap();
    let v1 = s3.put_object().bucket("ver").key("doc").body(ByteStream::from_static(b"first")).send().await.unwrap();
    let v2 = s3.put_object().bucket("ver").key("doc").body(ByteStream::from_static(b"second")).send().await.unwrap();
    let (id1, id2) = (v1.version_id().unwrap(), v2.version_id().unwrap());
    assert_ne!(id1, id2);
    let status = s3.get_bucket_versioning().bucket("ver").send().await.unwrap();
    assert_eq!(status.status(), Some(&BucketVersioningStatus::Enabled));

    let old = s3.get_object().bucket("ver").key("doc").version_id(id1).send().await.unwrap();
    assert_eq!(old.version_id(), Some(id1));
    assert_eq!(old.body.collect().await.unwrap().into_bytes().as_ref(), b"first");

    let deleted = s3.delete_object().bucket("ver").key("doc").send().await.unwrap();
    assert_eq!(deleted.delete_marker(), Some(true));

    let via_gateway = s3.list_object_versions().bucket("ver").send().await.unwrap();
    let upstream = direct.list_object_versions().bucket("ver").send().await.unwrap();
    let ids = |o: &aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput| -> Vec<String> {
        o.versions().iter().filter_map(|v| v.version_id.clone()).collect()
    };
    assert_eq!(ids(&via_gateway), ids(&upstream));
    assert!(ids(&via_gateway).contains(&id1.to_owned()) && ids(&via_gateway).contains(&id2.to_owned()));
    assert_eq!(via_gateway.delete_markers().len(), 1);
}

async fn tagging(gw: &TestGateway, s3: &aws_sdk_s3::Client, direct: &aws_sdk_s3::Client) {
    s3.put_object()
        .bucket("ver")
        .key("tagged")
        .tagging("team=storage&tier=gold")
        .body(ByteStream::from_static(b"t"))
        .send()
        .await
        .unwrap();
    let tags = s3.get_object_tagging().bucket("ver").key("tagged").send().await.unwrap();
    let mut pairs: Vec<(String, String)> =
        tags.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
    pairs.sort();
    assert_eq!(pairs, [("team".to_owned(), "storage".to_owned()), ("tier".to_owned(), "gold".to_owned())]);
    head_and_attributes_say_what_the_upstream_says(gw, s3).await;

    let new_tags =
        Tagging::builder().tag_set(Tag::builder().key("state").value("archived").build().unwrap()).build().unwrap();
    s3.put_object_tagging().bucket("ver").key("tagged").tagging(new_tags).send().await.unwrap();
    let upstream_tags = direct.get_object_tagging().bucket("ver").key("tagged").send().await.unwrap();
    assert_eq!(upstream_tags.tag_set().len(), 1);
    assert_eq!(upstream_tags.tag_set()[0].value(), "archived");

    s3.delete_object_tagging().bucket("ver").key("tagged").send().await.unwrap();
    assert!(direct.get_object_tagging().bucket("ver").key("tagged").send().await.unwrap().tag_set().is_empty());
}

/// What s3s-aws alone would lose on the way back: a HEAD's tagging count (no field for it
/// in the SDK's output), and all but the first of several attributes asked for in one
/// comma-separated header (as the SDKs send them).
async fn head_and_attributes_say_what_the_upstream_says(gw: &TestGateway, s3: &aws_sdk_s3::Client) {
    use aws_sdk_s3::types::ObjectAttributes;
    let mut head = http::Request::head(format!("{}/ver/tagged", gw.endpoint())).body(Vec::new()).unwrap();
    raw::sign_request(&mut head, &gw.access_key_id, &gw.secret, SystemTime::now(), &raw::sha256_hex(b""));
    let answer = raw::send(gw.addr(), &head).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let count = answer.headers.iter().find(|(n, _)| n == "x-amz-tagging-count").map(|(_, v)| v.as_str());
    assert_eq!(count, Some("2"), "{answer:?}");
    assert!(!answer.headers.iter().any(|(n, _)| n.starts_with("x-amz-meta-")), "no stand-in leaks: {answer:?}");

    let attributes = s3
        .get_object_attributes()
        .bucket("ver")
        .key("tagged")
        .object_attributes(ObjectAttributes::Etag)
        .object_attributes(ObjectAttributes::ObjectSize)
        .object_attributes(ObjectAttributes::StorageClass)
        .send()
        .await
        .unwrap();
    assert_eq!(attributes.object_size(), Some(1));
    assert!(attributes.storage_class().is_some(), "{attributes:?}");
    assert!(
        attributes.e_tag().is_some_and(|e| !e.is_empty() && !e.contains('"')),
        "bare, as S3 writes it: {attributes:?}"
    );
}

async fn conditionals(s3: &aws_sdk_s3::Client) {
    let put = s3.put_object().bucket("ver").key("cond").body(ByteStream::from_static(b"c")).send().await.unwrap();
    let etag = put.e_tag().unwrap();

    let err = s3.get_object().bucket("ver").key("cond").if_none_match(etag).send().await.unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 304);
    let header = err.raw_response().unwrap().headers().get("etag");
    assert_eq!(header, Some(etag), "a 304 says which version the client has");
    let err = s3.get_object().bucket("ver").key("cond").if_match("\"not-the-etag\"").send().await.unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 412);
    let ok = s3.get_object().bucket("ver").key("cond").if_match(etag).send().await.unwrap();
    assert_eq!(ok.e_tag(), Some(etag));
    let future = aws_sdk_s3::primitives::DateTime::from_secs(4_102_444_800); // 2100-01-01
    let err = s3.get_object().bucket("ver").key("cond").if_modified_since(future).send().await.unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 304);
}

async fn errors_match_the_upstream(s3: &aws_sdk_s3::Client, direct: &aws_sdk_s3::Client) {
    let via_gateway = s3.get_object().bucket("no-such-bucket-here").key("k").send().await.unwrap_err();
    let upstream = direct.get_object().bucket("no-such-bucket-here").key("k").send().await.unwrap_err();
    assert_eq!(via_gateway.code(), upstream.code());
    assert_eq!(via_gateway.code(), Some("NoSuchBucket"));
    assert_eq!(via_gateway.message(), upstream.message());
    let raw = via_gateway.raw_response().unwrap();
    let id = raw.headers().get("x-amz-request-id").expect("every answer has a request id");
    let document = std::str::from_utf8(raw.body().bytes().unwrap()).unwrap();
    assert!(
        document.contains(&format!("<RequestId>{id}</RequestId>")),
        "the document's id is the header's: {document}"
    );
    assert_eq!(
        via_gateway.raw_response().unwrap().status().as_u16(),
        upstream.raw_response().unwrap().status().as_u16()
    );
}

fn tag_changes_are_journaled(gw: &TestGateway) {
    let effects: Vec<Effect> = gw
        .gateway
        .capture()
        .journal()
        .history("ver", "tagged")
        .unwrap()
        .into_iter()
        .map(|r| r.body.into_change().expect("history holds changes only").effect)
        .collect();
    assert_eq!(effects.len(), 3, "{effects:?}");
    let Effect::Version(v) = &effects[0] else { panic!("{effects:?}") };
    assert_eq!(v.tags, [("team".to_owned(), "storage".to_owned()), ("tier".to_owned(), "gold".to_owned())]);
    assert_eq!(effects[1], Effect::Tags(vec![("state".into(), "archived".into())]));
    assert_eq!(effects[2], Effect::Tags(vec![]));
    let current = gw.gateway.capture().current("ver", "tagged").unwrap().unwrap();
    assert!(current.tags.is_empty());
}

/// Deleting a specific version makes the previous one current again; the journal follows.
async fn versioned_deletes_are_journaled(gw: &TestGateway, s3: &aws_sdk_s3::Client, direct: &aws_sdk_s3::Client) {
    let v1 = s3.put_object().bucket("ver").key("vd").body(ByteStream::from_static(b"one")).send().await.unwrap();
    let v2 = s3.put_object().bucket("ver").key("vd").body(ByteStream::from_static(b"two")).send().await.unwrap();
    s3.delete_object().bucket("ver").key("vd").version_id(v2.version_id().unwrap()).send().await.unwrap();
    let capture = gw.gateway.capture();
    let current = capture.current("ver", "vd").unwrap().unwrap();
    assert_eq!(current.version_id.as_deref(), v1.version_id());
    assert_eq!(current.size, 3);
    // A plain delete on a versioned bucket leaves a delete marker: the key is gone.
    s3.delete_object().bucket("ver").key("vd").send().await.unwrap();
    assert!(capture.current("ver", "vd").unwrap().is_none());
    assert!(capture.journal().unresolved_intents().unwrap().is_empty());

    // A delete of the deleted key, interrupted after it reached the upstream: a second
    // delete marker, which HEAD cannot tell from the first. Recovery finds it by listing.
    let journal = capture.journal();
    let intent = rewind_model::Intent {
        op: rewind_model::Op::Delete,
        bucket: "ver".into(),
        key: "vd".into(),
        access_key: "test".into(),
        request_id: "r".into(),
    };
    journal.append(Body::Intent(intent), rewind_journal::Durability::Synced).await.unwrap();
    let marker = direct.delete_object().bucket("ver").key("vd").send().await.unwrap();
    let done = capture.recover_through(journal.head().unwrap().seq).await.unwrap();
    assert_eq!((done.committed, done.aborted), (1, 0), "the marker is recorded, not aborted as nothing");
    let last = journal.history("ver", "vd").unwrap().pop().unwrap();
    let Body::Commit(commit) = last.body else { panic!("a commit") };
    assert_eq!(commit.effect, Effect::Deleted { version_id: marker.version_id().map(Into::into) });

    // Deleting the delete markers by version id (S3 answers a HEAD of one with 405, which
    // is nothing to capture, not a refusal) makes the first version current again.
    let markers = direct.list_object_versions().bucket("ver").prefix("vd").send().await.unwrap();
    for m in markers.delete_markers() {
        s3.delete_object().bucket("ver").key("vd").version_id(m.version_id().unwrap()).send().await.unwrap();
    }
    let current = capture.current("ver", "vd").unwrap().expect("the first version is current again");
    // HEAD of a delete marker: 405 with the marker's headers, as the upstream gives them.
    let marker = s3.delete_object().bucket("ver").key("vd").send().await.unwrap();
    let marker_id = marker.version_id().unwrap();
    let err = s3.head_object().bucket("ver").key("vd").version_id(marker_id).send().await.unwrap_err();
    let raw = err.raw_response().unwrap();
    assert_eq!(raw.status().as_u16(), 405);
    assert_eq!(raw.headers().get("x-amz-delete-marker"), Some("true"));
    assert_eq!(raw.headers().get("x-amz-version-id"), Some(marker_id));
    assert_eq!(current.version_id.as_deref(), v1.version_id());

    // In a suspended bucket moto answers a HEAD by version id with a bare 400 (no code),
    // whether it has the version or not; its delete works. The capture asks GET instead.
    let susp = "susp";
    s3.create_bucket().bucket(susp).send().await.unwrap();
    let versioning = |status| VersioningConfiguration::builder().status(status).build();
    let enable = versioning(BucketVersioningStatus::Enabled);
    s3.put_bucket_versioning().bucket(susp).versioning_configuration(enable).send().await.unwrap();
    let old = s3.put_object().bucket(susp).key("k").body(ByteStream::from_static(b"old")).send().await.unwrap();
    let old = old.version_id().unwrap();
    let suspend = versioning(BucketVersioningStatus::Suspended);
    s3.put_bucket_versioning().bucket(susp).versioning_configuration(suspend).send().await.unwrap();
    s3.put_object().bucket(susp).key("k").body(ByteStream::from_static(b"null")).send().await.unwrap();
    let direct_head = direct.head_object().bucket(susp).key("k").version_id(old).send().await.unwrap_err();
    assert_eq!(direct_head.raw_response().unwrap().status().as_u16(), 400, "moto's answer changed: {direct_head:?}");
    s3.delete_object().bucket(susp).key("k").version_id(old).send().await.expect("as the upstream answers it");
}

/// An S3 vault in a bucket with Object Lock: every pack gets a governance retention date,
/// so a delete of a pack version is refused even with the vault's own credentials.
#[tokio::test]
async fn vault_objects_are_locked_when_the_vault_bucket_has_object_lock() {
    use aws_sdk_s3::types::ObjectLockMode;
    let upstream = rewind_testkit::FsUpstream::start().await;
    let moto = Moto::start().await;
    let vault = moto.client();
    vault.create_bucket().bucket("locked-vault").object_lock_enabled_for_bucket(true).send().await.unwrap();
    vault.create_bucket().bucket("plain-vault").send().await.unwrap();
    let with_vault = |bucket: &'static str, lock: rewind_config::ObjectLock| {
        let t = moto.target.clone();
        move |c: &mut rewind_config::Config| {
            c.vault.location = Some(format!("s3://{bucket}/site"));
            c.vault.endpoint = Some(t.endpoint.clone());
            c.vault.access_key_id = Some(t.access_key_id.clone());
            c.vault.secret_access_key = Some(t.secret.clone());
            c.vault.object_lock = lock;
        }
    };

    let gw =
        TestGateway::start_with(&upstream.target, with_vault("locked-vault", rewind_config::ObjectLock::Auto)).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("data").send().await.unwrap();
    s3.put_object()
        .bucket("data")
        .key("k")
        .body(ByteStream::from(rewind_testkit::pattern(50_000, 3)))
        .send()
        .await
        .unwrap();
    let listed = vault.list_object_versions().bucket("locked-vault").prefix("site/packs/").send().await.unwrap();
    let pack = listed.versions().first().expect("a pack in the vault").clone();
    let (key, version) = (pack.key().unwrap(), pack.version_id().unwrap());
    // (moto answers GetObjectRetention with a version id wrongly; HEAD reports the same.)
    let head = vault.head_object().bucket("locked-vault").key(key).version_id(version).send().await.unwrap();
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Governance));
    let until = head.object_lock_retain_until_date().unwrap().secs();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((until - now - 30 * 86_400).abs() < 3600, "30 days from now: {until} vs {now}");
    let refused = vault.delete_object().bucket("locked-vault").key(key).version_id(version).send().await;
    assert!(refused.is_err(), "a locked pack version could be deleted");
    assert!(vault.head_object().bucket("locked-vault").key(key).version_id(version).send().await.is_ok());
    gw.gateway.shutdown().await;

    // Asking for compliance mode on a bucket without Object Lock fails at start-up.
    let mut config = TestGateway::config(&upstream.target, tempfile::tempdir().unwrap().path());
    let (id, secret) = rewind_testkit::key_pair();
    config.set_client_key(id, rewind_config::Secret::new(secret));
    with_vault("plain-vault", rewind_config::ObjectLock::Compliance)(&mut config);
    let err = rewind_gateway::Gateway::start(config.finish(vec![]).unwrap(), Default::default()).await.err().unwrap();
    assert!(err.to_string().contains("Object Lock"), "{err}");
}

/// Restoring over objects a listing shows as the journal knows them: each PutObject carries
/// `If-Match` with the listed ETag, which the upstream accepts (no retry, no abort); an
/// object changed behind the gateway's back before the listing takes the HEAD and is
/// captured first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_over_listed_objects_writes_on_condition_of_their_etag() {
    use rewind_model::Op;
    use rewind_snapshotter::History;
    use rewind_snapshotter::api::{Mode, RestoreEvent};
    use rewind_snapshotter::plan::Scope;

    let moto = Moto::start().await;
    let gw = TestGateway::start(&moto.target).await;
    let (s3, direct) = (gw.client(), moto.client());
    s3.create_bucket().bucket("cond").send().await.unwrap();
    let put = |key: &'static str, body: &'static [u8]| {
        let s3 = s3.clone();
        async move { s3.put_object().bucket("cond").key(key).body(ByteStream::from_static(body)).send().await.unwrap() }
    };
    put("a", b"a, first").await;
    put("b", b"b, first").await;
    let journal = gw.gateway.capture().journal().clone();
    let before = journal.head().unwrap().seq;
    put("a", b"a, second").await;
    put("b", b"b, second").await;
    direct
        .put_object()
        .bucket("cond")
        .key("b")
        .body(ByteStream::from_static(b"b, behind its back"))
        .send()
        .await
        .unwrap();

    let scope = Scope { bucket: "cond", prefix: "", key: None, to_bucket: "cond" };
    let plan = History::new(&journal).plan(&scope, before, Mode::Rewind).unwrap();
    let head = journal.head().unwrap().seq;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    rewind_snapshotter::restore::run(gw.gateway.capture().clone(), plan, listed(&gw, "cond").await, 2, head.0, tx)
        .await;
    let mut done = None;
    while let Some(event) = rx.recv().await {
        if let RestoreEvent::Done { written, failed, .. } = event {
            done = Some((written, failed));
        }
    }
    assert_eq!(done, Some((2, 0)));
    for (key, want) in [("a", &b"a, first"[..]), ("b", b"b, first")] {
        let got = s3.get_object().bucket("cond").key(key).send().await.unwrap().body.collect().await.unwrap();
        assert_eq!(got.into_bytes().as_ref(), want, "{key}");
    }
    let ops = |key: &str| -> Vec<Op> {
        let log = rewind_snapshotter::History::new(&journal).log("cond", key).unwrap();
        log.into_iter().map(|e| e.op).collect()
    };
    assert_eq!(ops("a"), [Op::Put, Op::Put, Op::Restore]);
    assert_eq!(ops("b"), [Op::Put, Op::Put, Op::CaptureExisting, Op::Restore]);
    let aborts = journal.records(rewind_model::Seq(head.0 + 1), 100).unwrap();
    assert!(
        !aborts.iter().any(|r| matches!(r.body, Body::Abort(_))),
        "a condition the upstream should have accepted was refused: {aborts:?}"
    );
}

/// What `bucket` holds now, as a restore plans against it.
async fn listed(
    gw: &rewind_testkit::TestGateway,
    bucket: &str,
) -> std::sync::Arc<rewind_snapshotter::plan::Destination> {
    std::sync::Arc::new(rewind_snapshotter::restore::list_destination(gw.gateway.capture(), bucket, "").await.unwrap())
}

/// Garbage collection on an S3 vault under Object Lock, deleting with its own credentials:
/// a dead pack still within its retain-until date is skipped (it stays, condemned), then
/// deleted once the date has passed, by its version, so that no delete marker hides bytes
/// still stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_skips_locked_packs_and_collects_them_after_their_retention() {
    let upstream = rewind_testkit::FsUpstream::start().await;
    let moto = Moto::start().await;
    let vault = moto.client();
    vault.create_bucket().bucket("gc-vault").object_lock_enabled_for_bucket(true).send().await.unwrap();
    let t = moto.target.clone();
    let (gc_id, gc_secret) = rewind_testkit::key_pair();
    let gw = TestGateway::start_with(&upstream.target, move |c| {
        c.vault.location = Some("s3://gc-vault/site".into());
        c.vault.endpoint = Some(t.endpoint.clone());
        c.vault.access_key_id = Some(t.access_key_id.clone());
        c.vault.secret_access_key = Some(t.secret.clone());
        c.vault.object_lock = rewind_config::ObjectLock::Governance;
        c.vault.object_lock_retention = rewind_config::HumanDuration::secs(4);
        c.vault.gc_credentials.access_key_id = Some(gc_id);
        c.vault.gc_credentials.secret_access_key = Some(rewind_config::Secret::new(gc_secret));
        c.retention.gc_grace = rewind_config::HumanDuration::secs(0);
    })
    .await;
    let s3 = gw.client();
    s3.create_bucket().bucket("data").send().await.unwrap();
    // Chunks of a refused upload land in the pack the next upload fills: a mostly dead pack.
    let refused = s3.put_object().bucket("data").key("cut").content_md5("AAAAAAAAAAAAAAAAAAAAAA==");
    assert!(refused.body(ByteStream::from(rewind_testkit::pattern(12_000_000, 1))).send().await.is_err());
    let kept = rewind_testkit::pattern(100_000, 2);
    s3.put_object().bucket("data").key("k").body(ByteStream::from(kept.clone())).send().await.unwrap();
    let ops = gw.gateway.operations();
    let packs = async || {
        let listed = vault.list_object_versions().bucket("gc-vault").prefix("site/packs/").send().await.unwrap();
        let mut keys: Vec<String> = listed.versions().iter().filter_map(|v| v.key().map(str::to_owned)).collect();
        keys.extend(listed.delete_markers().iter().filter_map(|m| m.key().map(|k| format!("marker:{k}"))));
        keys.sort();
        keys
    };
    let before = packs().await;

    let first = ops.gc().await.unwrap();
    assert_eq!((first.packs_repacked, first.packs_locked, first.packs_deleted), (1, 1, 0), "{first:?}");
    let locked = packs().await;
    assert_eq!(locked.len(), before.len() + 1, "the old pack stays beside its repacked copy: {locked:?}");

    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let after = ops.gc().await.unwrap();
    assert_eq!((after.packs_deleted, after.packs_locked), (1, 0), "{after:?}");
    let left = packs().await;
    assert_eq!(left.len(), before.len(), "deleted by version, no delete marker: {left:?}");
    assert!(!left.iter().any(|k| k.starts_with("marker:")), "{left:?}");
    let report = ops.verify(rewind_snapshotter::verify::ReadData::ALL, rewind_snapshotter::ops::Compare::Head).await;
    assert!(report.unwrap().ok());
    let out = s3.get_object().bucket("data").key("k").send().await.unwrap();
    assert_eq!(out.body.collect().await.unwrap().into_bytes().to_vec(), kept);
}

/// `server.allow_anonymous`: unsigned requests go to the upstream unsigned, so its
/// policies decide (moto lets anyone read and write); an anonymous write is captured
/// like any other. Without the option they are refused (see `auth.rs`).
#[tokio::test]
async fn anonymous_requests_are_forwarded_unsigned_when_allowed() {
    let moto = Moto::start().await;
    let gw = TestGateway::start_with(&moto.target, |c| c.server.allow_anonymous = true).await;
    gw.client().create_bucket().bucket("public").send().await.unwrap();
    let anonymous = unsigned_client(&gw.endpoint());

    let put = anonymous.put_object().bucket("public").key("k").acl(aws_sdk_s3::types::ObjectCannedAcl::PublicRead);
    put.body(ByteStream::from_static(b"anon")).send().await.unwrap();
    let listed = anonymous.list_objects_v2().bucket("public").send().await.unwrap();
    assert_eq!(listed.contents().len(), 1);
    let got = anonymous.get_object().bucket("public").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"anon");
    let history = gw.gateway.capture().journal().history("public", "k").unwrap();
    assert_eq!(history.len(), 1, "the anonymous write is journaled");
    // moto keeps objects private unless their ACL says otherwise: an anonymous read of
    // one the gateway's key wrote is refused, so it did not go with that key.
    gw.client().put_object().bucket("public").key("own").body(ByteStream::from_static(b"x")).send().await.unwrap();
    let err = anonymous.get_object().bucket("public").key("own").send().await.unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);

    // Forwarded unsigned, never with the gateway's key: an upstream that refuses
    // anonymous requests (s3s-fs) refuses them through the gateway too.
    let private = rewind_testkit::FsUpstream::start().await;
    let gw = TestGateway::start_with(&private.target, |c| c.server.allow_anonymous = true).await;
    gw.client().create_bucket().bucket("private").send().await.unwrap();
    gw.client().put_object().bucket("private").key("k").body(ByteStream::from_static(b"x")).send().await.unwrap();
    let err = unsigned_client(&gw.endpoint()).get_object().bucket("private").key("k").send().await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"), "the upstream judged it unsigned");

    let refusing = TestGateway::start(&moto.target).await;
    let anonymous = unsigned_client(&refusing.endpoint());
    let err = anonymous.list_objects_v2().bucket("public").send().await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"), "refused by default");
}

/// A client that signs nothing.
fn unsigned_client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .force_path_style(true)
        .allow_no_auth();
    aws_sdk_s3::Client::from_conf(config.build())
}
