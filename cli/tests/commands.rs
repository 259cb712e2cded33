//! The admin API and the `rewind` binary against a gateway in front of s3s-fs: the token,
//! errors for bad input, verify naming damage of every kind, and a restore interrupted
//! halfway that a re-run completes.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use http::{Method, StatusCode};
use rewind_cli::{CliError, Client, Lines};
use rewind_snapshotter::api::{Mode, RestoreEvent, RestoreRequest, VerifyReport};
use rewind_testkit::{FsUpstream, TestGateway, eventually, pattern};

fn ask(bucket: &str, at: &str) -> RestoreRequest {
    RestoreRequest {
        bucket: bucket.into(),
        at: at.into(),
        prefix: String::new(),
        key: None,
        to_bucket: None,
        mode: Mode::Rewind,
        dry_run: false,
        parallel: 2,
    }
}

async fn api_error(result: Result<impl std::fmt::Debug, CliError>) -> (StatusCode, String) {
    match result {
        Err(CliError::Api { status, message }) => (status, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_bad_input_says_what_to_do() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start_with(&upstream.target, |c| c.protection.buckets = vec!["data".into()]).await;
    let s3 = gw.client();
    for b in ["data", "plain"] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    s3.put_object().bucket("data").key("k").body(ByteStream::from_static(b"v")).send().await.unwrap();

    let (status, msg) = api_error(
        Client::new(&gw.admin_url(), String::new()).json::<serde_json::Value>(Method::GET, "status", None).await,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(msg.contains("--admin-token") && msg.contains("REWIND_ADMIN_TOKEN"), "{msg}");
    let wrong = Client::new(&gw.admin_url(), "not-the-token".into());
    let (status, msg) = api_error(wrong.json::<serde_json::Value>(Method::GET, "status", None).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(msg.contains("wrong admin token"), "{msg}");
    assert!(!msg.contains(&gw.admin_token()), "the error must not reveal the token");

    let admin = Client::new(&gw.admin_url(), gw.admin_token());
    let get = |path: &'static str| {
        let admin = admin.clone();
        async move { admin.json::<serde_json::Value>(Method::GET, path, None).await }
    };
    for (path, want) in [
        ("ls?bucket=nope", "has no history"),
        ("ls?bucket=data&at=2026-13-99", "is not a time"),
        ("ls?bucket=data&at=2001-01-01T00:00:00Z", "before history began"),
        ("ls?bucket=data&at=no-such-snapshot", "rewind snapshot list"),
        ("ls?bucket=data&at=seq:999999", "past the newest record"),
        ("ls", "missing bucket"),
        ("log?bucket=data&key=absent", "no history"),
        ("object?bucket=data&key=absent", "did not exist"),
        ("nothing-here", "no admin route"),
    ] {
        let (_, msg) = api_error(get(path).await).await;
        assert!(msg.contains(want), "{path}: {msg}");
    }
    let into_plain = RestoreRequest { to_bucket: Some("plain".into()), ..ask("data", "now") };
    let (status, msg) =
        api_error(admin.send(Method::POST, "restore", Some(serde_json::to_vec(&into_plain).unwrap())).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("not protected") && msg.contains("--to-dir"), "{msg}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone = Client::new(&format!("http://127.0.0.1:{port}"), "t".into());
    let err = gone.json::<serde_json::Value>(Method::GET, "status", None).await.unwrap_err();
    assert!(matches!(err, CliError::NotRunning { .. }) && err.to_string().contains("--data-dir"), "{err}");
    gw.gateway.shutdown().await;
}

#[tokio::test]
async fn an_interrupted_restore_resumes_and_finishes_the_rest() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start(&upstream.target).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("obj/{i:04}")).collect();
    for (i, k) in keys.iter().enumerate() {
        let body = pattern(4096 + i * 7, i as u64);
        s3.put_object().bucket("bkt").key(k).body(ByteStream::from(body)).send().await.unwrap();
    }
    let before = format!("seq:{}", gw.gateway.capture().journal().head().unwrap().seq.0);
    for batch in keys.chunks(100) {
        let ids = batch.iter().map(|k| ObjectIdentifier::builder().key(k).build().unwrap()).collect();
        s3.delete_objects()
            .bucket("bkt")
            .delete(Delete::builder().set_objects(Some(ids)).build().unwrap())
            .send()
            .await
            .unwrap();
    }
    let admin = Client::new(&gw.admin_url(), gw.admin_token());
    let body = || Some(serde_json::to_vec(&RestoreRequest { parallel: 1, ..ask("bkt", &before) }).unwrap());

    // Go away after the first progress report.
    let mut lines = Lines::of(admin.send(Method::POST, "restore", body()).await.unwrap());
    loop {
        match lines.next::<RestoreEvent>().await.unwrap().unwrap() {
            RestoreEvent::Progress { done, .. } if done > 0 => break,
            RestoreEvent::Done { .. } => panic!("the restore finished before it could be interrupted"),
            _ => {}
        }
    }
    drop(lines);
    let journal = gw.gateway.capture().journal().clone();
    let settled = eventually(Duration::from_secs(20), async || {
        let head = journal.head().unwrap().seq;
        tokio::time::sleep(Duration::from_millis(300)).await;
        journal.unresolved_intents().unwrap().is_empty() && journal.head().unwrap().seq == head
    })
    .await;
    assert!(settled, "the interrupted restore did not stop");
    let restored = rewind_testkit::list_keys(&s3, "bkt").await.len();
    assert!(restored > 0 && restored < keys.len(), "interrupted after {restored} of {}", keys.len());

    // The re-run does only what is left.
    let mut lines = Lines::of(admin.send(Method::POST, "restore", body()).await.unwrap());
    let Some(RestoreEvent::Plan(plan)) = lines.next::<RestoreEvent>().await.unwrap() else { panic!("no plan") };
    assert_eq!(plan.writes as usize, keys.len() - restored);
    assert_eq!(plan.unchanged as usize, restored);
    let done = loop {
        if let RestoreEvent::Done { written, failed, .. } = lines.next::<RestoreEvent>().await.unwrap().unwrap() {
            break (written, failed);
        }
    };
    assert_eq!(done, ((keys.len() - restored) as u64, 0));
    for (i, k) in keys.iter().enumerate() {
        let got = s3.get_object().bucket("bkt").key(k).send().await.unwrap().body.collect().await.unwrap().into_bytes();
        assert_eq!(got.as_ref(), pattern(4096 + i * 7, i as u64).as_slice(), "{k}");
    }
    gw.gateway.shutdown().await;
}

/// Runs `rewind --json --data-dir DIR verify ARGS`; returns the report and whether it
/// exited 0.
fn verify(dir: &Path, args: &[&str]) -> (VerifyReport, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(["--json", "--data-dir"])
        .arg(dir)
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (report, out.status.success())
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

fn packs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir.join("vault/packs")).unwrap() {
        for pack in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            out.push(pack.unwrap().path());
        }
    }
    out.sort();
    out
}

/// Changes the journal's raw records (`records` column family, seq big-endian → bytes).
fn tamper(dir: &Path, f: impl FnOnce(&rocksdb::DB, &rocksdb::ColumnFamily)) {
    let cfs = ["records", "versions", "meta", "open", "chunks", "pending"];
    let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.join("journal"), cfs).unwrap();
    f(&db, db.cf_handle("records").unwrap());
}

#[tokio::test]
async fn verify_names_every_kind_of_damage() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start(&upstream.target).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    for i in 0..6u64 {
        let body = pattern(if i == 0 { 3 << 20 } else { 10_000 }, i);
        s3.put_object().bucket("bkt").key(format!("k{i}")).body(ByteStream::from(body)).send().await.unwrap();
    }
    let TestGateway { gateway, data_dir, .. } = gw;
    gateway.shutdown().await;
    let work = tempfile::tempdir().unwrap();
    let fresh = |name: &str| {
        let dir = work.path().join(name);
        copy_dir(data_dir.path(), &dir);
        dir
    };

    let (report, ok) = verify(data_dir.path(), &["--read-data"]);
    assert!(ok && report.ok() && report.versions == 6 && report.chunks_read == report.chunks, "{report:?}");

    // A flipped bit in a pack: found by reading the data, naming the versions.
    let dir = fresh("flip");
    let pack = packs(&dir)[0].clone();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[100] ^= 0x10;
    std::fs::write(&pack, bytes).unwrap();
    let (report, ok) = verify(&dir, &["--read-data"]);
    assert!(!ok && !report.damaged.is_empty(), "{report:?}");
    assert!(
        report
            .damaged
            .iter()
            .all(|d| d.bucket == "bkt" && d.key.starts_with('k') && d.problem.contains("does not read back"))
    );

    // A deleted pack: found without reading data.
    let dir = fresh("gone");
    for pack in packs(&dir) {
        std::fs::remove_file(pack).unwrap();
    }
    let (report, ok) = verify(&dir, &[]);
    assert!(!ok && report.damaged.len() == 6, "{report:?}");
    assert!(report.damaged.iter().all(|d| d.problem.contains("missing")), "{report:?}");

    // A removed record, an edited record, a swapped pair.
    let dir = fresh("removed");
    tamper(&dir, |db, cf| db.delete_cf(cf, 3u64.to_be_bytes()).unwrap());
    let (report, ok) = verify(&dir, &[]);
    assert!(!ok && report.journal_problems.iter().any(|p| p.contains("missing")), "{report:?}");

    let dir = fresh("edited");
    tamper(&dir, |db, cf| {
        let mut v = db.get_cf(cf, 4u64.to_be_bytes()).unwrap().unwrap();
        let last = v.len() - 1;
        v[last] ^= 1;
        db.put_cf(cf, 4u64.to_be_bytes(), v).unwrap();
    });
    let (report, ok) = verify(&dir, &[]);
    assert!(!ok && !report.journal_problems.is_empty(), "{report:?}");

    let dir = fresh("swapped");
    tamper(&dir, |db, cf| {
        let (a, b) =
            (db.get_cf(cf, 5u64.to_be_bytes()).unwrap().unwrap(), db.get_cf(cf, 6u64.to_be_bytes()).unwrap().unwrap());
        db.put_cf(cf, 5u64.to_be_bytes(), b).unwrap();
        db.put_cf(cf, 6u64.to_be_bytes(), a).unwrap();
    });
    let (report, ok) = verify(&dir, &[]);
    assert!(!ok && !report.journal_problems.is_empty(), "{report:?}");
}
