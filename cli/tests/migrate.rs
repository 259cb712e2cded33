//! `rewind journal migrate`: a single gateway's journal moves into PostgreSQL, checked; run
//! again it continues (copying is idempotent); the history reads the same from the
//! database; another installation's journal is refused into it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use http::Method;
use rewind_cli::Client;
use rewind_journal::conformance::PostgresFixture;
use rewind_snapshotter::api::Listing;
use rewind_testkit::{FsUpstream, TestGateway, pattern};

fn migrate(from: &Path, to: &str) -> std::process::Output {
    let from = from.display().to_string();
    let args = ["--json", "journal", "migrate", "--from", &from, "--to", to];
    Command::new(env!("CARGO_BIN_EXE_rewind")).args(args).env_remove("REWIND_JOURNAL_URL").output().unwrap()
}

/// A gateway with some history, stopped; its data directory and what it listed.
async fn history(upstream: &FsUpstream, bucket: &str, objects: u64) -> (tempfile::TempDir, Listing, u64) {
    let gw = TestGateway::start(&upstream.target).await;
    let s3 = gw.client();
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    for i in 0..objects {
        let body = pattern(if i == 0 { 2 << 20 } else { 3000 }, i);
        s3.put_object().bucket(bucket).key(format!("k{i:02}")).body(ByteStream::from(body)).send().await.unwrap();
    }
    s3.put_object().bucket(bucket).key("k01").body(ByteStream::from_static(b"again")).send().await.unwrap();
    s3.delete_object().bucket(bucket).key("k02").send().await.unwrap();
    let admin = Client::new(&gw.admin_url(), gw.admin_token());
    let listing: Listing = admin.json(Method::GET, &format!("ls?bucket={bucket}"), None).await.unwrap();
    let head = gw.gateway.capture().journal().head().unwrap().seq.0;
    let TestGateway { gateway, data_dir, .. } = gw;
    gateway.shutdown().await;
    (data_dir, listing, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // the rewind binary runs beside an in-process gateway
async fn a_journal_moves_into_postgres_with_its_history_and_refuses_another() {
    let upstream = FsUpstream::start().await;
    let (dir, listing, head) = history(&upstream, "bkt", 12).await;
    let db = PostgresFixture::new();

    let out = migrate(dir.path(), db.url());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["head_seq"], head);
    assert!(done["records_verified"].as_u64().unwrap() >= head);
    // Run again (what resuming an interrupted migration is): the same outcome.
    let again = migrate(dir.path(), db.url());
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));

    // The history, read from the database offline, is the one the gateway served.
    let data = dir.path().display().to_string();
    let args = ["--json", "--data-dir", &data, "--journal", db.url(), "ls", "--bucket", "bkt"];
    let out = Command::new(env!("CARGO_BIN_EXE_rewind")).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_db: Listing = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_db, listing);

    // Another installation's journal is refused into this database, which stays as it was.
    let (other, _, _) = history(&upstream, "other", 3).await;
    let refused = migrate(other.path(), db.url());
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("another vault") || message.contains("ahead"), "{message}");
    let out = Command::new(env!("CARGO_BIN_EXE_rewind")).args(args).output().unwrap();
    assert_eq!(serde_json::from_slice::<Listing>(&out.stdout).unwrap(), listing);
}
