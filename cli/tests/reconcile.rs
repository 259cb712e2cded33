//! Reconcile: a bucket that existed before Rewind is imported and can be restored after
//! everything in it was deleted behind the gateway's back; drift (objects added, changed,
//! deleted directly upstream) is found on the next pass; a client overwrite racing a
//! reconcile loses nothing; an interrupted pass resumes after its checkpoint.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use http::Method;
use rewind_cli::{Client, Lines};
use rewind_snapshotter::api::{
    Listing, LogLine, Mode, ReconcileCounts, ReconcileEvent, RestoreEvent, RestoreRequest, VerifyReport,
};
use rewind_testkit::{FsUpstream, TestGateway, pattern};

async fn reconcile(admin: &Client, bucket: &str, extra: &str) -> ReconcileCounts {
    let res = admin.send(Method::POST, &format!("reconcile?bucket={bucket}{extra}"), None).await.unwrap();
    let mut lines = Lines::of(res);
    while let Some(event) = lines.next::<ReconcileEvent>().await.unwrap() {
        match event {
            ReconcileEvent::Done(c) => return c,
            ReconcileEvent::Failed { key, error } => panic!("reconcile failed on {key:?}: {error}"),
            ReconcileEvent::Stopped { error } => panic!("the reconcile pass stopped: {error}"),
            ReconcileEvent::Progress(_) => {}
        }
    }
    panic!("the reconcile stream ended without Done");
}

fn body(i: usize, version: u64) -> Vec<u8> {
    // A few objects over the multipart threshold of common clients (8 MiB), most small.
    let size = if i % 500 == 7 { 9 << 20 } else { 1000 + (i * 37) % 5000 };
    pattern(size, i as u64 * 1000 + version)
}

async fn delete_all(s3: &aws_sdk_s3::Client, bucket: &str, keys: &[String]) {
    for batch in keys.chunks(1000) {
        let ids = batch.iter().map(|k| ObjectIdentifier::builder().key(k).build().unwrap()).collect();
        let delete = Delete::builder().set_objects(Some(ids)).quiet(true).build().unwrap();
        s3.delete_objects().bucket(bucket).delete(delete).send().await.unwrap();
    }
}

#[tokio::test]
async fn an_existing_bucket_is_imported_and_restored_after_deletes_behind_the_gateway() {
    let upstream = FsUpstream::start().await;
    let direct = upstream.client();
    direct.create_bucket().bucket("legacy").send().await.unwrap();
    let keys: Vec<String> = (0..2000).map(|i| format!("data/{:02}/{i:05}", i % 17)).collect();
    for (i, k) in keys.iter().enumerate() {
        direct.put_object().bucket("legacy").key(k).body(ByteStream::from(body(i, 0))).send().await.unwrap();
    }
    let gw = TestGateway::start(&upstream.target).await;
    let admin = Client::new(&gw.admin_url(), gw.admin_token());

    let vault = gw.gateway.capture().vault().clone();
    let packs_before = vault.pack_names().await.unwrap().len();
    let first = reconcile(&admin, "legacy", "&parallel=8").await;
    assert_eq!((first.listed, first.captured, first.deleted, first.failed), (2000, 2000, 0, 0), "{first:?}");
    // Small objects are made durable in batches: they share packs instead of taking one each.
    let packs = vault.pack_names().await.unwrap().len() - packs_before;
    assert!(packs <= 100, "2,000 small objects imported into {packs} packs");
    let imported = gw.gateway.capture().journal().head().unwrap().seq.0;
    // Verify walks the imported versions (one `observed` record each) and reads their chunks.
    let report: VerifyReport = admin.json(Method::POST, "verify?read_data=1", None).await.unwrap();
    assert!(report.ok() && report.versions == 2000 && report.chunks_read >= 2000, "{report:?}");
    let again = reconcile(&admin, "legacy", "").await;
    assert_eq!((again.unchanged, again.captured), (2000, 0), "a second pass finds nothing new: {again:?}");

    // Everything deleted behind the gateway's back.
    delete_all(&direct, "legacy", &keys).await;
    let gone = reconcile(&admin, "legacy", "").await;
    assert_eq!((gone.listed, gone.deleted), (0, 2000), "{gone:?}");
    let now: Listing = admin.json(Method::GET, "ls?bucket=legacy", None).await.unwrap();
    assert!(now.objects.is_empty());

    let ask = RestoreRequest {
        bucket: "legacy".into(),
        at: format!("seq:{imported}"),
        prefix: String::new(),
        key: None,
        to_bucket: None,
        mode: Mode::Rewind,
        dry_run: false,
        parallel: 8,
    };
    let mut lines =
        Lines::of(admin.send(Method::POST, "restore", Some(serde_json::to_vec(&ask).unwrap())).await.unwrap());
    loop {
        if let RestoreEvent::Done { written, failed, .. } = lines.next::<RestoreEvent>().await.unwrap().unwrap() {
            assert_eq!((written, failed), (2000, 0));
            break;
        }
    }
    for (i, k) in keys.iter().enumerate() {
        let got = direct.get_object().bucket("legacy").key(k).send().await.unwrap().body.collect().await.unwrap();
        assert_eq!(got.into_bytes().as_ref(), body(i, 0).as_slice(), "{k}");
    }
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn drift_is_found_and_a_client_write_racing_a_reconcile_loses_nothing() {
    let upstream = FsUpstream::start().await;
    let direct = upstream.client();
    let gw = TestGateway::start(&upstream.target).await;
    let s3 = gw.client();
    let admin = Client::new(&gw.admin_url(), gw.admin_token());
    s3.create_bucket().bucket("drift").send().await.unwrap();
    for k in ["keep", "change", "remove"] {
        s3.put_object()
            .bucket("drift")
            .key(k)
            .body(ByteStream::from_static(b"through the gateway"))
            .send()
            .await
            .unwrap();
    }
    let put = |key: &'static str, bytes: &'static [u8]| {
        direct.put_object().bucket("drift").key(key).body(ByteStream::from_static(bytes)).send()
    };
    put("change", b"changed behind its back").await.unwrap();
    put("added", b"added behind its back").await.unwrap();
    direct.delete_object().bucket("drift").key("remove").send().await.unwrap();

    let c = reconcile(&admin, "drift", "").await;
    assert_eq!((c.listed, c.unchanged, c.captured, c.deleted, c.failed), (3, 1, 2, 1, 0), "{c:?}");
    let ops = |key: &'static str| {
        let admin = admin.clone();
        async move {
            let log: Vec<LogLine> =
                admin.json(Method::GET, &format!("log?bucket=drift&key={key}"), None).await.unwrap();
            log.into_iter().map(|l| l.op).collect::<Vec<_>>()
        }
    };
    assert_eq!(ops("change").await, ["put", "capture-existing"]);
    assert_eq!(ops("added").await, ["capture-existing"]);
    assert_eq!(ops("remove").await, ["put", "vanished"]);
    assert_eq!(reconcile(&admin, "drift", "").await.captured, 0, "each change is found once");

    // 300 objects written behind the gateway's back; a client overwrites some of them
    // through the gateway while a reconcile captures them.
    let keys: Vec<String> = (0..300).map(|i| format!("race/{i:03}")).collect();
    for (i, k) in keys.iter().enumerate() {
        direct
            .put_object()
            .bucket("drift")
            .key(k)
            .body(ByteStream::from(pattern(2000, i as u64)))
            .send()
            .await
            .unwrap();
    }
    let pass = {
        let admin = admin.clone();
        tokio::spawn(async move { reconcile(&admin, "drift", "&parallel=4").await })
    };
    let raced: Vec<&String> = keys.iter().step_by(3).collect();
    for k in &raced {
        s3.put_object().bucket("drift").key(*k).body(ByteStream::from_static(b"client")).send().await.unwrap();
    }
    let c = pass.await.unwrap();
    assert_eq!(c.failed, 0, "{c:?}");
    let journal = gw.gateway.capture().journal().clone();
    let history = rewind_snapshotter::History::new(&journal);
    for (i, k) in keys.iter().enumerate() {
        let log: Vec<String> = history.log("drift", k).unwrap().into_iter().map(|e| e.op.name().to_owned()).collect();
        let current = gw.gateway.capture().current("drift", k).unwrap().unwrap();
        if i % 3 == 0 {
            // The version written behind the gateway's back is captured before the
            // client's overwrite, whichever got the key's lock first.
            assert_eq!(log, ["capture-existing", "put"], "{k}");
            assert_eq!(current.size, 6, "{k}");
        } else {
            assert_eq!(log, ["capture-existing"], "{k}");
            assert_eq!(current.blake3, *blake3::hash(&pattern(2000, i as u64)).as_bytes(), "{k}");
        }
    }
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn an_interrupted_reconcile_resumes_after_its_checkpoint() {
    let upstream = FsUpstream::start().await;
    let direct = upstream.client();
    direct.create_bucket().bucket("big").send().await.unwrap();
    let keys: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
    for (i, k) in keys.iter().enumerate() {
        direct.put_object().bucket("big").key(k).body(ByteStream::from(pattern(100, i as u64))).send().await.unwrap();
    }
    let first = TestGateway::start(&upstream.target).await;
    let admin = Client::new(&first.admin_url(), first.admin_token());
    // Paced to 800 objects/s, so the pass takes at least 3 s.
    let pass = tokio::spawn(async move {
        let res = admin.send(Method::POST, "reconcile?bucket=big&objects_per_second=800", None).await.unwrap();
        let mut lines = Lines::of(res);
        while let Ok(Some(event)) = lines.next::<ReconcileEvent>().await {
            if let ReconcileEvent::Done(_) = event {
                return true;
            }
        }
        false
    });
    // Stop the gateway once the first page is checkpointed.
    let journal = first.gateway.capture().journal().clone();
    let checkpointed = rewind_testkit::eventually(Duration::from_secs(60), async || {
        journal.progress_get(&rewind_journal::layout::reconcile_resume("big")).unwrap().is_some()
    })
    .await;
    assert!(checkpointed, "the first page was never checkpointed");
    drop(journal);
    let TestGateway { gateway, data_dir, .. } = first;
    gateway.shutdown().await;
    assert!(!pass.await.unwrap(), "the pass finished before it could be interrupted");

    let dir = data_dir.path().to_path_buf();
    let second = TestGateway::start_with(&upstream.target, |c| c.server.data_dir = dir).await;
    let admin = Client::new(&second.admin_url(), second.admin_token());
    let rest = reconcile(&admin, "big", "").await;
    assert!(rest.listed < 2500 && rest.listed >= 500, "resumed after the checkpoint: {rest:?}");
    let whole = reconcile(&admin, "big", "").await;
    assert_eq!((whole.listed, whole.unchanged, whole.captured), (2500, 2500, 0), "{whole:?}");
    second.gateway.shutdown().await;
    drop(data_dir);
}
