//! Capture end to end: after each kind of mutation through the gateway (s3s-fs upstream,
//! aws-sdk-s3 over HTTP), the journal holds exactly the expected committed records and the
//! vault returns the exact bytes of every version, including overwritten and deleted ones.
//! One idea, one case per kind of mutation and per capture failure, which is why it is
//! long; kills of the real binary (`crash.rs`) and the review's cases (`review.rs`) have
//! files of their own.

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectIdentifier};
use rewind_capture::Capture;
use rewind_journal::Durability;
use rewind_model::{Body, Effect, Intent, ObjectVersion, Op};
use rewind_testkit::{FsUpstream, TestGateway, expiring_lifecycle, pattern};
use rewind_vault::Manifest;

async fn setup() -> (FsUpstream, TestGateway, aws_sdk_s3::Client) {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start(&upstream.target).await;
    let client = gw.client();
    client.create_bucket().bucket("bkt").send().await.unwrap();
    (upstream, gw, client)
}

fn capture(gw: &TestGateway) -> &Capture {
    gw.gateway.capture()
}

/// Every committed (op, effect) of a key, oldest first.
fn history(gw: &TestGateway, bucket: &str, key: &str) -> Vec<(Op, Effect)> {
    let log = rewind_snapshotter::History::new(capture(gw).journal()).log(bucket, key).unwrap();
    log.into_iter().map(|e| (e.op, e.effect)).collect()
}

fn version(effect: &Effect) -> &ObjectVersion {
    match effect {
        Effect::Version(v) => v,
        other => panic!("expected a version, got {other:?}"),
    }
}

async fn vault_bytes(gw: &TestGateway, v: &ObjectVersion) -> Vec<u8> {
    let manifest = Manifest { chunks: v.chunks.clone(), size: v.size, blake3: v.blake3 };
    capture(gw).vault().read_object(&manifest).await.unwrap()
}

/// Points `c`'s vault at bucket `vault` (prefix `site-a`) of the S3 server `server`.
fn s3_vault(c: &mut rewind_config::Config, server: &FsUpstream) {
    c.vault.location = Some("s3://vault/site-a".into());
    c.vault.endpoint = Some(server.target.endpoint.clone());
    c.vault.access_key_id = Some(server.target.access_key_id.clone());
    c.vault.secret_access_key = Some(server.target.secret.clone());
}

async fn put(s3: &aws_sdk_s3::Client, key: &str, data: &[u8]) {
    s3.put_object().bucket("bkt").key(key).body(ByteStream::from(data.to_vec())).send().await.unwrap();
}

#[tokio::test]
async fn overwritten_and_deleted_versions_stay_in_the_vault() {
    let (_up, gw, s3) = setup().await;
    let (first, second) = (pattern(1_500_000, 1), pattern(700, 2));
    let answer = s3
        .put_object()
        .bucket("bkt")
        .key("doc")
        .content_type("text/plain")
        .metadata("owner", "ops")
        .tagging("env=prod&team=a%20b")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32C)
        .body(ByteStream::from(first.clone()))
        .send()
        .await
        .unwrap();
    put(&s3, "doc", &second).await;
    s3.delete_object().bucket("bkt").key("doc").send().await.unwrap();

    let h = history(&gw, "bkt", "doc");
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!((h[0].0, h[1].0, h[2].0), (Op::Put, Op::Put, Op::Delete));
    let v1 = version(&h[0].1);
    assert_eq!(vault_bytes(&gw, v1).await, first);
    assert_eq!(v1.size, first.len() as u64);
    assert_eq!(v1.blake3, *blake3::hash(&first).as_bytes());
    assert!(v1.headers.contains(&("content-type".into(), "text/plain".into())), "{:?}", v1.headers);
    assert_eq!(v1.metadata, vec![("owner".into(), "ops".into())]);
    assert_eq!(v1.tags, vec![("env".into(), "prod".into()), ("team".into(), "a b".into())]);
    // What the upstream answered is recorded: the ETag, and the client's checksum (sent as
    // an aws-chunked trailer) as the upstream stored it.
    assert_eq!(format!("\"{}\"", v1.etag.trim_matches('"')), answer.e_tag().unwrap());
    let crc32c = answer.checksum_crc32_c().unwrap();
    assert!(v1.checksums.contains(&("crc32c".into(), crc32c.into())), "{:?}", v1.checksums);
    assert_eq!(vault_bytes(&gw, version(&h[1].1)).await, second);
    assert!(matches!(h[2].1, Effect::Deleted { .. }));
    assert!(capture(&gw).journal().unresolved_intents().unwrap().is_empty());
    assert!(capture(&gw).journal().verify().unwrap().problems.is_empty());
}

/// A PUT's chunks are indexed by its commit, in the same journal batch, and so are those of
/// any pack written for a mutation that never committed.
#[tokio::test]
async fn a_commit_indexes_the_chunks_of_every_written_pack() {
    let (_up, gw, s3) = setup().await;
    let vault = capture(&gw).vault();
    assert!(capture(&gw).defers_index(), "the gateway's index is in its journal");
    let indexed = |v: &ObjectVersion| v.chunks.iter().all(|id| vault.locate(id).unwrap().is_some());

    put(&s3, "a", &pattern(4096, 31)).await;
    let a = history(&gw, "bkt", "a").pop().unwrap().1;
    assert!(vault.unindexed().is_empty() && indexed(version(&a)));

    // A body stored for a mutation that went away before its commit.
    let mut left = vault.writer();
    left.push(&pattern(5000, 32)).await.unwrap();
    let left = left.finish_written().await.unwrap();
    assert_eq!(vault.unindexed().len(), 1);
    put(&s3, "b", &pattern(4096, 33)).await;
    assert!(vault.unindexed().is_empty(), "the next commit carried it");
    assert!(left.chunks.iter().all(|id| vault.locate(id).unwrap().is_some()));
    assert_eq!(vault_bytes(&gw, version(&history(&gw, "bkt", "b").pop().unwrap().1)).await, pattern(4096, 33));
}

#[tokio::test]
async fn objects_written_before_the_gateway_are_captured_before_their_first_overwrite_or_delete() {
    let (up, gw, s3) = setup().await;
    let direct = up.client();
    let (old_a, old_b) = (pattern(3000, 3), pattern(2_000_000, 4));
    for (key, data) in [("a", &old_a), ("b", &old_b)] {
        direct.put_object().bucket("bkt").key(key).body(ByteStream::from(data.clone())).send().await.unwrap();
    }
    put(&s3, "a", b"new").await;
    s3.delete_object().bucket("bkt").key("b").send().await.unwrap();

    let a = history(&gw, "bkt", "a");
    assert_eq!(a.iter().map(|(op, _)| *op).collect::<Vec<_>>(), [Op::CaptureExisting, Op::Put]);
    assert_eq!(vault_bytes(&gw, version(&a[0].1)).await, old_a);
    let b = history(&gw, "bkt", "b");
    assert_eq!(b.iter().map(|(op, _)| *op).collect::<Vec<_>>(), [Op::CaptureExisting, Op::Delete]);
    assert_eq!(vault_bytes(&gw, version(&b[0].1)).await, old_b);

    // A version the journal already holds is not captured again.
    put(&s3, "a", b"newer").await;
    assert_eq!(history(&gw, "bkt", "a").len(), 3);
}

#[tokio::test]
async fn multipart_uploads_commit_the_assembled_object_with_the_create_headers() {
    let (_up, gw, s3) = setup().await;
    let parts = [pattern(5 * 1024 * 1024, 5), pattern(5 * 1024 * 1024 + 17, 6), pattern(1234, 7)];
    let created = s3
        .create_multipart_upload()
        .bucket("bkt")
        .key("big")
        .content_type("application/x-big")
        .metadata("k", "v")
        .send()
        .await
        .unwrap();
    let id = created.upload_id().unwrap();
    let mut done = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = s3
            .upload_part()
            .bucket("bkt")
            .key("big")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        done.push(CompletedPart::builder().part_number(n).e_tag(out.e_tag().unwrap()).build());
    }
    let complete = CompletedMultipartUpload::builder().set_parts(Some(done)).build();
    s3.complete_multipart_upload()
        .bucket("bkt")
        .key("big")
        .upload_id(id)
        .multipart_upload(complete)
        .send()
        .await
        .unwrap();

    let h = history(&gw, "bkt", "big");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].0, Op::CompleteMultipart);
    let v = version(&h[0].1);
    let whole = parts.concat();
    assert_eq!(vault_bytes(&gw, v).await, whole);
    assert_eq!(v.blake3, *blake3::hash(&whole).as_bytes());
    assert!(v.headers.contains(&("content-type".into(), "application/x-big".into())));
    assert_eq!(v.metadata, vec![("k".into(), "v".into())]);
    let upstream_etag = s3.head_object().bucket("bkt").key("big").send().await.unwrap().e_tag().unwrap().to_owned();
    assert_eq!(v.etag, upstream_etag.trim_matches('"'));
    let upload = rewind_journal::layout::upload_prefix("bkt", "big", id);
    assert!(capture(&gw).upload_template(&upload).unwrap().is_none(), "completed uploads leave no state behind");
    assert!(capture(&gw).parts(&upload).unwrap().is_empty());
}

#[tokio::test]
async fn copies_reuse_the_sources_chunks_and_honour_the_metadata_directive() {
    let (_up, gw, s3) = setup().await;
    let data = pattern(900_000, 8);
    s3.put_object()
        .bucket("bkt")
        .key("src")
        .content_type("image/png")
        .metadata("a", "1")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let chunks_before = capture(&gw).vault().stats().new_chunks;
    s3.copy_object().bucket("bkt").key("same").copy_source("bkt/src").send().await.unwrap();
    s3.copy_object()
        .bucket("bkt")
        .key("replaced")
        .copy_source("bkt/src")
        .metadata_directive(MetadataDirective::Replace)
        .content_type("text/csv")
        .metadata("b", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(capture(&gw).vault().stats().new_chunks, chunks_before, "copies store no new chunks");

    let src = history(&gw, "bkt", "src");
    let same = history(&gw, "bkt", "same");
    let replaced = history(&gw, "bkt", "replaced");
    assert_eq!((same[0].0, replaced[0].0), (Op::Copy, Op::Copy));
    let (s, c, r) = (version(&src[0].1), version(&same[0].1), version(&replaced[0].1));
    assert_eq!(c.chunks, s.chunks);
    assert_eq!(vault_bytes(&gw, r).await, data);
    assert_eq!((c.metadata.clone(), c.headers.clone()), (s.metadata.clone(), s.headers.clone()));
    assert_eq!(r.metadata, vec![("b".into(), "2".into())]);
    assert!(r.headers.contains(&("content-type".into(), "text/csv".into())), "{:?}", r.headers);
}

#[tokio::test]
async fn batch_deletes_journal_every_key() {
    let (_up, gw, s3) = setup().await;
    for k in ["x", "y", "z"] {
        put(&s3, k, k.as_bytes()).await;
    }
    let objects: Vec<ObjectIdentifier> =
        ["x", "y", "never-existed"].iter().map(|k| ObjectIdentifier::builder().key(*k).build().unwrap()).collect();
    let delete = Delete::builder().set_objects(Some(objects)).build().unwrap();
    s3.delete_objects().bucket("bkt").delete(delete).send().await.unwrap();
    for k in ["x", "y"] {
        let h = history(&gw, "bkt", k);
        assert_eq!(h.iter().map(|(op, _)| *op).collect::<Vec<_>>(), [Op::Put, Op::Delete], "{k}");
    }
    assert_eq!(history(&gw, "bkt", "z").len(), 1);
    assert!(capture(&gw).journal().unresolved_intents().unwrap().is_empty());
}

#[tokio::test]
async fn buckets_are_journaled_and_expiring_lifecycles_refused() {
    let (_up, gw, s3) = setup().await;
    s3.create_bucket().bucket("ccc").send().await.unwrap();
    s3.delete_bucket().bucket("ccc").send().await.unwrap();
    let ops: Vec<Op> = history(&gw, "ccc", "").into_iter().map(|(op, _)| op).collect();
    assert_eq!(ops, [Op::CreateBucket, Op::DeleteBucket]);

    let config = expiring_lifecycle();
    let err =
        s3.put_bucket_lifecycle_configuration().bucket("bkt").lifecycle_configuration(config).send().await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
    assert!(err.message().unwrap().contains("allow_destructive_bucket_config"), "{err:?}");
    let metrics = gw.gateway.metrics.render();
    assert!(metrics.contains(r#"rewind_capture_refusals_total{reason="destructive_config"} 1"#), "{metrics}");
}

#[tokio::test]
async fn unprotected_buckets_are_forwarded_without_capture() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start_with(&upstream.target, |c| c.protection.buckets = vec!["prod-*".into()]).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("scratch").send().await.unwrap();
    s3.put_object().bucket("scratch").key("k").body(ByteStream::from_static(b"x")).send().await.unwrap();
    assert!(history(&gw, "scratch", "k").is_empty());
    assert_eq!(capture(&gw).journal().head().unwrap().seq.0, 0);
}

#[tokio::test]
async fn recovery_resolves_interrupted_mutations_from_the_upstream() {
    let (up, gw, s3) = setup().await;
    put(&s3, "kept", b"v1").await;
    let journal = capture(&gw).journal();
    let intent = |key: &str, op| {
        Body::Intent(Intent {
            op,
            bucket: "bkt".into(),
            key: key.into(),
            access_key: "test".into(),
            request_id: "r".into(),
        })
    };
    // As if the gateway died after these reached the upstream but before their commits.
    let landed = pattern(4096, 9);
    journal.append(intent("landed", Op::Put), Durability::Synced).await.unwrap();
    up.client().put_object().bucket("bkt").key("landed").body(ByteStream::from(landed.clone())).send().await.unwrap();
    journal.append(intent("kept", Op::Delete), Durability::Synced).await.unwrap();
    up.client().delete_object().bucket("bkt").key("kept").send().await.unwrap();
    // And one that never reached it.
    journal.append(intent("never", Op::Put), Durability::Synced).await.unwrap();

    // Recovery at start-up covers what was open when the journal was opened; here that
    // moment is now. Intents appended later (requests in flight) are not its to resolve.
    assert_eq!(
        capture(&gw).recover().await.unwrap().committed,
        0,
        "intents after the start are left to their requests"
    );
    let head = journal.head().unwrap().seq;
    let done = capture(&gw).recover_through(head).await.unwrap();
    assert_eq!((done.committed, done.aborted, done.unresolved), (2, 1, 0));
    let landed_h = history(&gw, "bkt", "landed");
    assert_eq!(vault_bytes(&gw, version(&landed_h[0].1)).await, landed);
    assert!(matches!(history(&gw, "bkt", "kept").last().unwrap().1, Effect::Deleted { .. }));
    assert!(history(&gw, "bkt", "never").is_empty());
    assert!(journal.unresolved_intents().unwrap().is_empty());
}

/// A PUT that reached the upstream but whose commit was lost (a crash) leaves its intent
/// open. The next write of that key resolves it first, so the key's journal keeps the
/// upstream's order, whether or not start-up recovery got there yet.
#[tokio::test]
async fn the_next_write_of_a_key_first_journals_an_interrupted_one() {
    let (up, gw, s3) = setup().await;
    put(&s3, "k", b"first").await;
    let journal = capture(&gw).journal();
    let intent = Intent {
        op: Op::Put,
        bucket: "bkt".into(),
        key: "k".into(),
        access_key: "test".into(),
        request_id: "r".into(),
    };
    journal.append(Body::Intent(intent), Durability::Synced).await.unwrap();
    let lost = pattern(3000, 4);
    up.client().put_object().bucket("bkt").key("k").body(ByteStream::from(lost.clone())).send().await.unwrap();

    put(&s3, "k", b"third").await;
    let h = history(&gw, "bkt", "k");
    let sizes: Vec<u64> = h.iter().map(|(_, e)| version(e).size).collect();
    assert_eq!(sizes, [5, 3000, 5], "the interrupted PUT is journaled between the two: {h:?}");
    // As the PUT itself (its intent committed), not as a version found upstream.
    assert_eq!(h[1].0, Op::Put, "{h:?}");
    assert_eq!(vault_bytes(&gw, version(&h[1].1)).await, lost);
    assert!(journal.unresolved_intents().unwrap().is_empty());
}

#[tokio::test]
async fn a_vault_that_cannot_write_refuses_uploads_and_nothing_reaches_the_upstream() {
    let (up, gw, s3) = setup().await;
    // The vault's pack directory becomes a file: every pack write fails.
    let packs = gw.data_dir.path().join("vault").join("packs");
    let _ = std::fs::remove_dir_all(&packs);
    std::fs::write(&packs, b"not a directory").unwrap();
    for size in [10, 3_000_000] {
        let key = format!("refused-{size}");
        let err =
            s3.put_object().bucket("bkt").key(&key).body(ByteStream::from(pattern(size, 10))).send().await.unwrap_err();
        assert_eq!(err.raw_response().unwrap().status().as_u16(), 503, "{err:?}");
        assert_eq!(err.code(), Some("ServiceUnavailable"));
        let head = up.client().head_object().bucket("bkt").key(&key).send().await;
        assert!(head.is_err(), "a refused upload must not be stored upstream");
    }
    let metrics = gw.gateway.metrics.render();
    assert!(metrics.contains(r#"rewind_capture_refusals_total{reason="vault"} 2"#), "{metrics}");
    // Reads keep working.
    s3.list_objects_v2().bucket("bkt").send().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_s3_vault_refuses_uploads_and_nothing_reaches_the_upstream() {
    let up = FsUpstream::start().await;
    let vault_server = FsUpstream::start().await;
    vault_server.client().create_bucket().bucket("vault").send().await.unwrap();
    let gw = TestGateway::start_with(&up.target, |c| s3_vault(c, &vault_server)).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let data = pattern(200_000, 11);
    put(&s3, "ok", &data).await;
    assert_eq!(vault_bytes(&gw, version(&history(&gw, "bkt", "ok")[0].1)).await, data);

    vault_server.stop().await;
    // Bytes the vault already holds need no vault write: that upload may succeed.
    put(&s3, "dedup", &data).await;
    let fresh = pattern(200_000, 12);
    let err = s3.put_object().bucket("bkt").key("refused").body(ByteStream::from(fresh)).send().await.unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 503, "{err:?}");
    assert!(up.client().head_object().bucket("bkt").key("refused").send().await.is_err());
}

#[tokio::test]
async fn the_vault_is_created_once_and_opens_only_with_its_key() {
    use rewind_capture::open::{OpenError, Purpose, open};
    let dir = tempfile::tempdir().unwrap();
    let mut config = rewind_config::Config::default();
    config.server.data_dir = dir.path().to_path_buf();
    let config = config.finish(vec![]).unwrap();
    let first = open(&config, Purpose::Serve).await.unwrap();
    let key_file = first.created_key_file.clone().expect("the first start creates the key file");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    drop(first);
    let again = open(&config, Purpose::Serve).await.unwrap();
    assert!(again.created_key_file.is_none());
    drop(again);

    // Another key file: a clear error, never garbage.
    let other = dir.path().join("other.key");
    std::fs::write(
        &other,
        rewind_crypto::keys::key_file_text(&rewind_crypto::SecretKey::generate().unwrap()).as_bytes(),
    )
    .unwrap();
    let mut wrong = config.clone();
    wrong.vault.key_file = Some(other);
    let err = open(&wrong, Purpose::Serve).await.err().expect("a wrong key must not open the vault");
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("wrong key file or passphrase"), "{err}");

    // A missing key file says what to pass.
    let mut missing = config.clone();
    missing.vault.key_file = Some(dir.path().join("nowhere.key"));
    let err = open(&missing, Purpose::Serve).await.err().unwrap();
    assert!(err.to_string().contains("--key-file"), "{err}");

    // An empty vault under a journal with history: refused, not silently replaced.
    let stores = open(&config, Purpose::Serve).await.unwrap();
    let intent = Body::Intent(Intent {
        op: Op::Put,
        bucket: "bkt".into(),
        key: "k".into(),
        access_key: "a".into(),
        request_id: "r".into(),
    });
    stores.journal.append(intent, Durability::Synced).await.unwrap();
    drop(stores);
    let mut moved = config.clone();
    moved.vault.location = Some(dir.path().join("empty-vault").display().to_string());
    let err = open(&moved, Purpose::Serve).await.err().unwrap();
    assert!(err.to_string().contains("already has history"), "{err}");
}

/// The journal reaches the vault as segments chained by hash, each with a signed
/// checkpoint of its last record; a clean stop ships what is left.
#[tokio::test]
async fn the_journal_is_shipped_to_the_vault_as_chained_segments() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start_with(&upstream.target, |c| {
        c.vault.segment_interval = rewind_config::HumanDuration(std::time::Duration::from_millis(100));
    })
    .await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    for round in 0..3u64 {
        for i in 0..5u64 {
            put(&s3, &format!("k{i}"), &pattern(1000, round * 10 + i)).await;
        }
        let journal = capture(&gw).journal().clone();
        let head = journal.head().unwrap().seq;
        let shipped = rewind_testkit::eventually(std::time::Duration::from_secs(10), async || {
            journal.shipped().unwrap().0 >= head
        })
        .await;
        assert!(shipped, "round {round}: records up to {head:?} were not shipped");
    }
    let journal = capture(&gw).journal().clone();
    let last_put = journal.head().unwrap().seq;
    put(&s3, "at-stop", b"shipped by the clean stop").await;
    let TestGateway { gateway, data_dir, .. } = gw;
    gateway.shutdown().await;

    let vault = data_dir.path().join("vault");
    let mut names: Vec<_> = std::fs::read_dir(vault.join("segments")).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert!(names.len() >= 3, "one segment per interval with new records: {names:?}");
    let (mut prev, mut next, mut shipped) = ([0u8; 32], 1u64, Vec::new());
    for path in &names {
        let (segment, records) = journal.open_segment(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(segment.prev, prev, "{path:?} does not chain to the segment before it");
        assert_eq!(segment.first.0, next, "{path:?} leaves a gap");
        let checkpoint = vault.join(format!("checkpoints/{:020}", segment.last.0));
        assert!(checkpoint.exists(), "no checkpoint for {path:?}");
        prev = segment.hash;
        next = segment.last.0 + 1;
        shipped.extend(records);
    }
    assert!(next - 1 > last_put.0, "the clean stop shipped the last records");
    assert_eq!(shipped, journal.raw_records(rewind_model::Seq(1), usize::MAX).unwrap());
    // A segment altered in the vault does not open.
    let mut bytes = std::fs::read(&names[0]).unwrap();
    let at = bytes.len() - 5;
    bytes[at] ^= 1;
    assert!(journal.open_segment(&bytes).is_err());
}

/// A restore lists the destination once, then writes each object on condition that the
/// upstream still holds what the listing showed: an object written behind the gateway's
/// back after the listing is captured before the restore overwrites it (G2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_written_behind_the_gateways_back_during_a_restore_is_captured_first() {
    use rewind_snapshotter::History;
    use rewind_snapshotter::api::{Mode, RestoreEvent};
    use rewind_snapshotter::plan::Scope;

    let (upstream, gw, s3) = setup().await;
    let keys: Vec<String> = (0..100).map(|i| format!("k{i:02}")).collect();
    for (i, k) in keys.iter().enumerate() {
        put(&s3, k, &pattern(3000, i as u64)).await;
    }
    let journal = capture(&gw).journal().clone();
    let before = journal.head().unwrap().seq;
    // All deleted, so the listing and the journal agree the keys are absent: the case in
    // which the listing, not a HEAD per key, decides that there is nothing to capture.
    for k in &keys {
        s3.delete_object().bucket("bkt").key(k).send().await.unwrap();
    }
    put(&s3, "kzz-extra", b"gone after a rewind").await;

    let scope = Scope { bucket: "bkt", prefix: "", key: None, to_bucket: "bkt" };
    let plan = History::new(&journal).plan(&scope, before, Mode::Rewind).unwrap();
    assert_eq!((plan.writes.len(), plan.deletes.len()), (100, 1));
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let head = journal.head().unwrap().seq;
    let restore = tokio::spawn(rewind_snapshotter::restore::run(
        gw.gateway.capture().clone(),
        plan,
        listed(&gw, "bkt").await,
        1,
        head.0,
        tx,
    ));
    // Once the first key is restored (one at a time), write the last one behind the
    // gateway's back: the listing said it was absent.
    let started = rewind_testkit::eventually(std::time::Duration::from_secs(10), async || {
        journal.head().unwrap().seq.0 > head.0 + 1
    })
    .await;
    assert!(started);
    let direct = upstream.client();
    direct
        .put_object()
        .bucket("bkt")
        .key("k99")
        .body(ByteStream::from_static(b"behind its back"))
        .send()
        .await
        .unwrap();
    restore.await.unwrap();
    let mut done = None;
    while let Some(event) = rx.recv().await {
        if let RestoreEvent::Done { written, deleted, failed, .. } = event {
            done = Some((written, deleted, failed));
        }
    }
    assert_eq!(done, Some((100, 1, 0)));
    for (i, k) in keys.iter().enumerate() {
        let got = s3.get_object().bucket("bkt").key(k).send().await.unwrap().body.collect().await.unwrap();
        assert_eq!(got.into_bytes().as_ref(), pattern(3000, i as u64).as_slice(), "{k}");
    }
    assert!(s3.head_object().bucket("bkt").key("kzz-extra").send().await.is_err());
    let ops: Vec<Op> = history(&gw, "bkt", "k99").into_iter().map(|(op, _)| op).collect();
    assert_eq!(
        ops,
        [Op::Put, Op::Delete, Op::CaptureExisting, Op::Restore],
        "the version written behind its back is kept"
    );
    let (_, captured) = history(&gw, "bkt", "k99").remove(2);
    assert_eq!(vault_bytes(&gw, version(&captured)).await, b"behind its back");
}

/// The journal ships to an S3 vault and comes back from it alone: a rebuild reads the
/// segments and each pack's end (suffix or HEAD-then-range reads), and every version reads
/// back through the rebuilt index.
#[tokio::test]
async fn a_journal_is_rebuilt_from_an_s3_vault() {
    let up = FsUpstream::start().await;
    let vault_server = FsUpstream::start().await;
    vault_server.client().create_bucket().bucket("vault").send().await.unwrap();
    let gw = TestGateway::start_with(&up.target, |c| {
        s3_vault(c, &vault_server);
        c.vault.segment_interval = rewind_config::HumanDuration(std::time::Duration::from_millis(100));
    })
    .await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let bodies: Vec<Vec<u8>> =
        (0..12u64).map(|i| pattern(if i == 0 { 3 << 20 } else { 700 + i as usize }, i)).collect();
    for (i, body) in bodies.iter().enumerate() {
        put(&s3, &format!("k{i:02}"), body).await;
    }
    let journal = capture(&gw).journal().clone();
    let head = journal.head().unwrap().seq;
    let shipped =
        rewind_testkit::eventually(std::time::Duration::from_secs(10), async || journal.shipped().unwrap().0 >= head)
            .await;
    assert!(shipped, "the journal did not reach the vault");
    let versions: Vec<ObjectVersion> =
        (0..bodies.len()).map(|i| version(&history(&gw, "bkt", &format!("k{i:02}"))[0].1).clone()).collect();
    let keep = tempfile::tempdir().unwrap();
    let key = keep.path().join("vault.key");
    std::fs::copy(gw.data_dir.path().join("vault.key"), &key).unwrap();
    drop(journal);
    gw.gateway.shutdown().await;

    let target = tempfile::tempdir().unwrap();
    let mut config = rewind_config::Config::default();
    s3_vault(&mut config, &vault_server);
    config.server.data_dir = target.path().join("rebuilt");
    config.vault.key_file = Some(key);
    let done = rewind_capture::rebuild::rebuild(&config).await.unwrap();
    assert_eq!(done.records, head.0, "{done:?}");
    assert!(done.packs >= 1 && done.chunks >= bodies.len() as u64, "{done:?}");

    let rebuilt = TestGateway::start_with(&up.target, |c| {
        s3_vault(c, &vault_server);
        c.server.data_dir = target.path().join("rebuilt");
    })
    .await;
    for (v, body) in versions.iter().zip(&bodies) {
        assert_eq!(&vault_bytes(&rebuilt, v).await, body);
    }
    rebuilt.gateway.shutdown().await;
}

/// What `bucket` holds now, as a restore plans against it.
async fn listed(
    gw: &rewind_testkit::TestGateway,
    bucket: &str,
) -> std::sync::Arc<rewind_snapshotter::plan::Destination> {
    std::sync::Arc::new(rewind_snapshotter::restore::list_destination(gw.gateway.capture(), bucket, "").await.unwrap())
}
