//! Disaster recovery: the gateway's whole data directory is lost; `rewind rebuild` makes a
//! new one from the vault and the key alone, and history, restore and verify work on it,
//! and the journal's chain continues.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use http::Method;
use rewind_cli::Client;
use rewind_snapshotter::api::{Listing, Snapshot, VerifyReport, ViewInfo};
use rewind_testkit::{FsUpstream, TestGateway, eventually, pattern};

fn rewind(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rewind")).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // the rewind binary runs against an in-process gateway
async fn a_lost_data_dir_is_rebuilt_from_the_vault_and_the_key() {
    let upstream = FsUpstream::start().await;
    // The vault, the operator's copy of the key and the rebuilt directory side by side, so
    // rebuild can be given them as relative paths, as an operator types them.
    let root = tempfile::tempdir().unwrap();
    let (vault_dir, keep) = (root.path().join("vault"), root.path().join("keep"));
    std::fs::create_dir_all(&keep).unwrap();
    let vault_dir2 = vault_dir.clone();
    let gw = TestGateway::start_with(&upstream.target, |c| {
        c.vault.location = Some(vault_dir2.display().to_string());
        c.vault.segment_interval = rewind_config::HumanDuration(Duration::from_millis(100));
    })
    .await;
    // The operator's copy of the key, kept off the gateway host.
    let key = keep.join("vault.key");
    std::fs::copy(gw.data_dir.path().join("vault.key"), &key).unwrap();
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    for i in 0..20u64 {
        let body = pattern(if i == 0 { 3 << 20 } else { 5000 }, i);
        s3.put_object().bucket("bkt").key(format!("k{i:02}")).body(ByteStream::from(body)).send().await.unwrap();
    }
    let journal = gw.gateway.capture().journal().clone();
    let before = journal.head().unwrap().seq.0;
    for i in 0..5u64 {
        s3.put_object()
            .bucket("bkt")
            .key(format!("k{i:02}"))
            .body(ByteStream::from_static(b"overwritten"))
            .send()
            .await
            .unwrap();
    }
    s3.delete_object().bucket("bkt").key("k19").send().await.unwrap();
    let head = journal.head().unwrap().seq;
    let admin = Client::new(&gw.admin_url(), gw.admin_token());
    let _: Vec<Snapshot> =
        admin.json(Method::POST, &format!("snapshots?name=before-overwrite&at=seq:{before}"), None).await.unwrap();
    let views: Vec<ViewInfo> =
        admin.json(Method::POST, &format!("views?bucket=bkt&at=seq:{before}&ttl=1h"), None).await.unwrap();
    let view = views.into_iter().next().unwrap();
    let shipped = eventually(Duration::from_secs(10), async || journal.shipped().unwrap().0 >= head).await;
    assert!(shipped, "the journal did not reach the vault");
    let labels = eventually(Duration::from_secs(10), async || {
        journal.labels_shipped().unwrap().1 == journal.side_set().unwrap().digest()
    })
    .await;
    assert!(labels, "the snapshot label and the view did not reach the vault");
    let then: Listing = admin.json(Method::GET, &format!("ls?bucket=bkt&at=seq:{before}"), None).await.unwrap();
    let now: Listing = admin.json(Method::GET, "ls?bucket=bkt", None).await.unwrap();
    drop(journal);
    let TestGateway { gateway, data_dir, .. } = gw;
    gateway.shutdown().await;
    drop(data_dir); // the whole data directory is gone: journal, indexes, key file

    let target = root.path().join("rebuilt");
    // Relative paths, from the directory that holds them; everything after runs elsewhere.
    let args = ["--json", "--data-dir", "rebuilt", "rebuild", "--vault", "vault", "--key-file", "keep/vault.key"];
    let out = Command::new(env!("CARGO_BIN_EXE_rewind")).args(args).current_dir(root.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stores = std::fs::read_to_string(target.join("stores.toml")).unwrap();
    assert!(stores.contains(&vault_dir.display().to_string()), "stores.toml names relative paths:\n{stores}");
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["records"].as_u64(), Some(head.0), "{done}");
    assert!(done["chunks"].as_u64().unwrap() >= 20, "{done}");
    assert_eq!((done["labels"].as_u64(), done["views"].as_u64()), (Some(1), Some(1)), "{done}");
    // A second rebuild into the same directory is refused.
    let again = Command::new(env!("CARGO_BIN_EXE_rewind")).args(args).current_dir(root.path()).output().unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already holds a journal"));

    // Offline, without repeating the vault or key file: every chunk reads back.
    let out = rewind(&["--json", "--data-dir", target.to_str().unwrap(), "verify", "--read-data"]);
    let report: VerifyReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success() && report.ok() && report.chunks_read >= 20, "{report:?}");

    // The host is lost with its upstream: a gateway on the rebuilt directory in front of an
    // empty one has the same history, and the chain goes on.
    drop(upstream);
    let upstream = FsUpstream::start().await;
    let dir = target.clone();
    let gw = TestGateway::start_with(&upstream.target, |c| c.server.data_dir = dir).await;
    let (admin, s3) = (Client::new(&gw.admin_url(), gw.admin_token()), gw.client());
    let then_again: Listing = admin.json(Method::GET, &format!("ls?bucket=bkt&at=seq:{before}"), None).await.unwrap();
    let now_again: Listing = admin.json(Method::GET, "ls?bucket=bkt", None).await.unwrap();
    assert_eq!((then_again.objects, now_again.objects), (then.objects, now.objects));
    // The view came back too, with the same key pair, and reads the old bytes from the
    // vault while the new upstream holds nothing.
    let past =
        rewind_testkit::s3_client(&gw.endpoint(), &view.access_key_id, view.secret_access_key.as_deref().unwrap());
    let got = past.get_object().bucket("bkt").key("k00").send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(got.into_bytes().as_ref(), pattern(3 << 20, 0).as_slice(), "k00 through the rebuilt view");
    let (url, token) = (gw.admin_url(), gw.admin_token());
    let restore = [
        "--admin-url",
        &url,
        "--admin-token",
        &token,
        "--json",
        "restore",
        "--bucket",
        "bkt",
        "--at",
        "before-overwrite", // the snapshot name came back with the journal
        "--mode",
        "rewind",
        "--yes",
    ];
    // The plan is made against what the upstream holds (nothing), not what the journal says
    // it should: first the missing bucket is named, then every object is written.
    let out = rewind(&restore);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("does not exist upstream: create it first"), "{stderr}");
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let out = rewind(&restore);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<serde_json::Value> =
        serde_json::Deserializer::from_slice(&out.stdout).into_iter().map(Result::unwrap).collect();
    let done = events.iter().find(|e| e["event"] == "done").expect("a done event");
    assert_eq!(done["written"].as_u64(), Some(20), "{done}");
    for i in 0..20u64 {
        let got =
            s3.get_object().bucket("bkt").key(format!("k{i:02}")).send().await.unwrap().body.collect().await.unwrap();
        assert_eq!(got.into_bytes().as_ref(), pattern(if i == 0 { 3 << 20 } else { 5000 }, i).as_slice(), "k{i:02}");
    }
    let journal = gw.gateway.capture().journal().clone();
    assert!(journal.verify().unwrap().problems.is_empty(), "the chain continues from the rebuilt head");
    gw.gateway.shutdown().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Review F1 and R4, end to end: a journal that lost acknowledged records (an old copy of
/// the data directory, or a damaged log) refuses to serve and names the repair; a vault
/// that a rolled-back journal forked still rebuilds, from the longer history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_behind_its_vault_refuses_to_serve_and_a_forked_vault_rebuilds_the_longer_history() {
    use rewind_capture::open::{Purpose, open};
    use rewind_gateway::{Gateway, StartError, StartOptions};
    let upstream = FsUpstream::start().await;
    let (vault, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = scratch.path().join("data");
    let config = {
        let mut c = TestGateway::config(&upstream.target, &data);
        let (id, secret) = rewind_testkit::key_pair();
        c.set_client_key(id, rewind_config::Secret::new(secret));
        c.vault.location = Some(vault.path().display().to_string());
        c.credentials.admin_token = Some(rewind_config::Secret::new("t".repeat(40)));
        c.finish(vec![]).unwrap()
    };
    let run = |config: rewind_config::Config, from: u64| async move {
        let gw = Gateway::start(config, StartOptions::default()).await.unwrap();
        let (id, secret) = (&gw.client_keys[0].0, gw.client_keys[0].1.expose().to_owned());
        let s3 = rewind_testkit::s3_client(&format!("http://{}", gw.s3_addr), id, &secret);
        let _ = s3.create_bucket().bucket("bkt").send().await;
        for i in from..from + 10 {
            s3.put_object()
                .bucket("bkt")
                .key(format!("k{i}"))
                .body(ByteStream::from(pattern(100, i)))
                .send()
                .await
                .unwrap();
        }
        let head = gw.capture().journal().head().unwrap().seq;
        gw.shutdown().await; // ships what is left
        head
    };
    let first = run(config.clone(), 0).await;
    let old_copy = scratch.path().join("old");
    copy_dir(&data, &old_copy);
    let second = run(config.clone(), 10).await;
    assert!(second > first);

    // The old copy: behind the vault's checkpoints. The gateway refuses, naming rebuild.
    let mut behind = config.clone();
    behind.server.data_dir = old_copy.clone();
    let err = Gateway::start(behind, StartOptions::default()).await.err().expect("a journal behind its vault served");
    let text = err.to_string();
    assert!(
        matches!(err, StartError::Stores(_))
            && text.contains("rewind rebuild")
            && text.contains(&format!("seq:{}", second.0)),
        "{text}"
    );

    // That old journal, written to anyway (as the unfixed gateway did), forks the vault.
    let mut fork_config = config.clone();
    fork_config.server.data_dir = old_copy.clone();
    let stores = open(&fork_config, Purpose::Rebuild).await.unwrap();
    let (journal, backend) = (&stores.journal, &stores.backend);
    for i in 0..3 {
        let intent = rewind_model::Body::Abort(rewind_model::Abort {
            intent: rewind_model::Seq(1),
            reason: format!("fork {i}"),
        });
        journal.append(intent, rewind_journal::Durability::Synced).await.unwrap();
    }
    let (shipped, prev) = journal.shipped().unwrap();
    let records = journal.raw_records(rewind_model::Seq(shipped.0 + 1), 100).unwrap();
    let fork = journal.seal_segment(&records, prev).unwrap();
    backend.put(&rewind_journal::segment::name(fork.first, fork.last), fork.bytes.into()).await.unwrap();
    drop(stores);

    // Rebuild takes the history that reaches furthest: every record of the second run.
    let target = scratch.path().join("rebuilt");
    let key = data.join("vault.key");
    let out = rewind(&[
        "--json",
        "--data-dir",
        target.to_str().unwrap(),
        "rebuild",
        "--vault",
        vault.path().to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["records"].as_u64(), Some(second.0), "{done}");
    assert_eq!(done["segments_skipped"].as_u64(), Some(1), "{done}");
}
