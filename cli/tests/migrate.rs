//! `rewind journal migrate`: a single gateway's journal moves into PostgreSQL, checked; run
//! again it continues (copying is idempotent); the history reads the same from the
//! database; another installation's journal is refused into it.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use aws_sdk_s3::primitives::ByteStream;
use http::Method;
use rewind_cli::Client;
use rewind_journal::conformance::{PostgresFixture, PostgresServer};
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

/// A database that asks for a password: none, or a wrong one, is refused at once with the
/// cause and what to set, and the password never shows; the right one (from the
/// environment) opens it. A gateway refused so does not wait for the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_database_password_is_checked_and_never_shown() {
    let upstream = FsUpstream::start().await;
    let (dir, listing, _) = history(&upstream, "bkt", 2).await;
    let password = rewind_testkit::key_pair().1;
    let server = PostgresServer::start_with_password(&password).unwrap();
    let url = server.url();
    let data = dir.path().display().to_string();
    let ls = |password: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rewind"));
        command.args(["--json", "--data-dir", &data, "--journal", &url, "ls", "--bucket", "bkt"]);
        command.env_remove("REWIND_JOURNAL_PASSWORD");
        if let Some(p) = password {
            command.env("REWIND_JOURNAL_PASSWORD", p);
        }
        command.output().unwrap()
    };
    let migrated = {
        let from = dir.path().display().to_string();
        let args = ["--json", "journal", "migrate", "--from", &from, "--to", &url];
        Command::new(env!("CARGO_BIN_EXE_rewind")).args(args).env("REWIND_JOURNAL_PASSWORD", &password).output()
    }
    .unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));

    let wrong = format!("{password}-not");
    for (given, cause) in [(None, "password"), (Some(wrong.as_str()), "password authentication failed")] {
        let started = std::time::Instant::now();
        let out = ls(given);
        let message = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "opened with {given:?}");
        assert!(message.contains(cause) && message.contains("REWIND_JOURNAL_PASSWORD"), "{message}");
        assert!(!message.contains(&password), "the password shows: {message}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "a refusal is not retried");
    }
    let out = ls(Some(&password));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Listing>(&out.stdout).unwrap(), listing);

    // A gateway with the wrong password stops at once, naming the cause.
    let started = std::time::Instant::now();
    let gateway_dir = tempfile::tempdir().unwrap();
    let mut config = TestGateway::config(&upstream.target, gateway_dir.path());
    config.journal.set_url(url.clone());
    config.journal.password = Some(rewind_config::Secret::new(wrong.clone()));
    let (id, secret) = rewind_testkit::key_pair();
    config.set_client_key(id, rewind_config::Secret::new(secret));
    let config = config.finish(vec![]).unwrap();
    let refused = rewind_gateway::Gateway::start(config, rewind_gateway::StartOptions::default()).await;
    let message = refused.err().expect("the gateway started with a wrong password").to_string();
    assert!(message.contains("password authentication failed") && !message.contains(&password), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the gateway waited for a refusal to pass");
}
