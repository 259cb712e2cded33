//! Disaster recovery: the gateway's whole data directory is lost; `rewind rebuild` makes a
//! new one from the vault and the key alone, and history, restore and verify work on it,
//! and the journal's chain continues.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use http::Method;
use rewind_cli::Client;
use rewind_snapshotter::api::{Listing, Snapshot, VerifyReport};
use rewind_testkit::{FsUpstream, TestGateway, eventually, pattern};

fn rewind(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rewind")).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // the rewind binary runs against an in-process gateway
async fn a_lost_data_dir_is_rebuilt_from_the_vault_and_the_key() {
    let upstream = FsUpstream::start().await;
    let (vault, keep) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let vault_dir = vault.path().to_path_buf();
    let gw = TestGateway::start_with(&upstream.target, |c| {
        c.vault.location = Some(vault_dir.display().to_string());
        c.vault.segment_interval = rewind_config::HumanDuration(Duration::from_millis(100));
    })
    .await;
    // The operator's copy of the key, kept off the gateway host.
    let key = keep.path().join("vault.key");
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
    let shipped = eventually(Duration::from_secs(10), async || journal.shipped().unwrap().0 >= head).await;
    assert!(shipped, "the journal did not reach the vault");
    let labels = eventually(Duration::from_secs(10), async || journal.labels_shipped().unwrap().0 > 0).await;
    assert!(labels, "the snapshot label did not reach the vault");
    let then: Listing = admin.json(Method::GET, &format!("ls?bucket=bkt&at=seq:{before}"), None).await.unwrap();
    let now: Listing = admin.json(Method::GET, "ls?bucket=bkt", None).await.unwrap();
    drop(journal);
    let TestGateway { gateway, data_dir, .. } = gw;
    gateway.shutdown().await;
    drop(data_dir); // the whole data directory is gone: journal, indexes, key file

    let new = tempfile::tempdir().unwrap();
    let target = new.path().join("rebuilt");
    let args = ["--json", "--data-dir", target.to_str().unwrap(), "rebuild", "--vault", vault.path().to_str().unwrap()];
    let out = rewind(&[&args[..], &["--key-file", key.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["records"].as_u64(), Some(head.0), "{done}");
    assert!(done["chunks"].as_u64().unwrap() >= 20, "{done}");
    assert_eq!(done["labels"].as_u64(), Some(1), "{done}");
    // A second rebuild into the same directory is refused.
    let again = rewind(&[&args[..], &["--key-file", key.to_str().unwrap()]].concat());
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already holds a journal"));

    // Offline, without repeating the vault or key file: every chunk reads back.
    let out = rewind(&["--json", "--data-dir", target.to_str().unwrap(), "verify", "--read-data"]);
    let report: VerifyReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success() && report.ok() && report.chunks_read >= 20, "{report:?}");

    // A gateway on the rebuilt directory: the same history, restores, and the chain goes on.
    let dir = target.clone();
    let gw = TestGateway::start_with(&upstream.target, |c| c.server.data_dir = dir).await;
    let (admin, s3) = (Client::new(&gw.admin_url(), gw.admin_token()), gw.client());
    let then_again: Listing = admin.json(Method::GET, &format!("ls?bucket=bkt&at=seq:{before}"), None).await.unwrap();
    let now_again: Listing = admin.json(Method::GET, "ls?bucket=bkt", None).await.unwrap();
    assert_eq!((then_again.objects, now_again.objects), (then.objects, now.objects));
    let out = rewind(&[
        "--admin-url",
        &gw.admin_url(),
        "--admin-token",
        &gw.admin_token(),
        "--json",
        "restore",
        "--bucket",
        "bkt",
        "--at",
        "before-overwrite", // the snapshot name came back with the journal
        "--mode",
        "rewind",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for i in 0..20u64 {
        let got =
            s3.get_object().bucket("bkt").key(format!("k{i:02}")).send().await.unwrap().body.collect().await.unwrap();
        assert_eq!(got.into_bytes().as_ref(), pattern(if i == 0 { 3 << 20 } else { 5000 }, i).as_slice(), "k{i:02}");
    }
    let journal = gw.gateway.capture().journal().clone();
    assert!(journal.verify().unwrap().problems.is_empty(), "the chain continues from the rebuilt head");
    gw.gateway.shutdown().await;
}
