//! The `rewind` binary offline (`--data-dir`) on a stopped gateway's data: reading history
//! changes nothing (review F16), and what stops a command is said as it is (F17).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_s3::primitives::ByteStream;
use rewind_testkit::{FsUpstream, TestGateway, pattern};

fn rewind(args: &[&str]) -> Output {
    rewind_with(args, &[])
}

/// `rewind ARGS` with the environment variables `env` set.
fn rewind_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rewind"));
    command.args(args).env_remove("REWIND_KEY_FILE").envs(env.iter().copied());
    command.output().unwrap()
}

/// The JSON `rewind --json ARGS` prints, once it succeeded.
fn json_of(args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let out = rewind_with(&[&["--json"], args].concat(), env);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every file under `dir` with its size and modification time (RocksDB's own info log,
/// which a reader appends to, aside).
fn snapshot(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(snapshot(&e.path()).into_iter().map(|(n, s, t)| (format!("{name}/{n}"), s, t)));
        } else if name != "LOG" && !name.starts_with("LOG.old") {
            let m = e.metadata().unwrap();
            out.push((name, m.len(), m.modified().unwrap()));
        }
    }
    out.sort();
    out
}

/// A stopped gateway's data directory (journal, local vault, key) with some history.
async fn stopped_gateway() -> (FsUpstream, tempfile::TempDir) {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start(&upstream.target).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    for i in 0..5u64 {
        s3.put_object()
            .bucket("bkt")
            .key(format!("k{i}"))
            .body(ByteStream::from(pattern(5000, i)))
            .send()
            .await
            .unwrap();
    }
    let TestGateway { gateway, data_dir, .. } = gw;
    gateway.shutdown().await;
    (upstream, data_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_history_offline_changes_nothing_in_the_data_directory() {
    let (_upstream, dir) = stopped_gateway().await;
    let d = dir.path().to_str().unwrap();
    let before = snapshot(dir.path());
    for args in [
        vec!["status"],
        vec!["ls", "--bucket", "bkt"],
        vec!["log", "--bucket", "bkt", "--key", "k1"],
        vec!["verify", "--read-data"],
        vec!["snapshot", "list"],
    ] {
        let out = rewind(&[&["--json", "--data-dir", d], &args[..]].concat());
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let after = snapshot(dir.path());
    assert_eq!(after, before, "an offline read changed the data directory");
    assert!(!dir.path().join("upstream").exists() && !dir.path().join("credentials.toml").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_not_reported_as_a_journal_in_use() {
    let (_upstream, dir) = stopped_gateway().await;
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("other.key");
    std::fs::write(&key, rewind_crypto::keys::key_file_text(&rewind_crypto::SecretKey::generate().unwrap())).unwrap();
    let d = dir.path().to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(["--data-dir", d, "status"])
        .env("REWIND_KEY_FILE", &key)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot unlock") && !err.contains("in use"), "{err}");

    // A running gateway on it: that is "in use".
    let upstream = FsUpstream::start().await;
    let path = dir.path().to_path_buf();
    let gw = TestGateway::start_with(&upstream.target, move |c| c.server.data_dir = path).await;
    let out = rewind(&["--data-dir", d, "status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("in use"), "{err}");
    gw.gateway.shutdown().await;
}

/// Newcomer bug 3: README, `--help` and OPERATIONS write `--at -15m` and `--from -2h`;
/// they parse as written (not only as `--at=-15m`), and a time in the future is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_time_syntax_parses_as_written() {
    let (_upstream, dir) = stopped_gateway().await;
    let d = dir.path().to_str().unwrap();
    for args in [
        vec!["ls", "--bucket", "bkt", "--at", "-15m"],
        vec!["diff", "--bucket", "bkt", "--from", "-2h"],
        vec!["cat", "--bucket", "bkt", "--key", "k1", "--at", "-3d"],
    ] {
        let out = rewind(&[&["--data-dir", d], &args[..]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        // The history is seconds old: each is a valid time before it began.
        assert!(!out.status.success() && err.contains("before history began"), "{args:?}: {err}");
    }
    let out = rewind(&["--data-dir", d, "ls", "--bucket", "bkt", "--at", "-0m"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("k4"));
    let out = rewind(&["--data-dir", d, "ls", "--bucket", "bkt", "--at", "2099-01-01T00:00:00Z"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("in the future"), "{err}");
    // Without --bucket, ls names the buckets with history.
    let out = rewind(&["--data-dir", d, "ls"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("bkt"));
}

/// Newcomer bug 7: `rewind ls | head` ended in a panic (exit 101). A reader that goes away
/// ends the command quietly, with the shell's status for SIGPIPE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_the_command_quietly() {
    let (_upstream, dir) = stopped_gateway().await;
    let d = dir.path().to_str().unwrap();
    for args in [vec!["ls", "--bucket", "bkt"], vec!["--json", "status"], vec!["cat", "--bucket", "bkt", "--key", "k1"]]
    {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rewind"))
            .args([&["--data-dir", d], &args[..]].concat())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

/// `rewind forget --dry-run` reads the policy from the configuration and the environment
/// and changes nothing. `rewind gc` asks first, and finds nothing to delete while the
/// journal references every version (`retention.rs` tests forget and gc acting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_plans_with_the_configured_policy_and_changes_nothing() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start(&upstream.target).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    // Five keys, one overwritten and one deleted: a short policy has something to expire.
    for (key, seed) in [("k0", 0), ("k1", 1), ("k2", 2), ("k3", 3), ("k4", 4), ("k0", 9)] {
        let body = ByteStream::from(pattern(5000 + seed as usize, seed));
        s3.put_object().bucket("bkt").key(key).body(body).send().await.unwrap();
    }
    s3.delete_object().bucket("bkt").key("k1").send().await.unwrap();
    let TestGateway { gateway, data_dir: dir, .. } = gw;
    gateway.shutdown().await;
    let d = dir.path().to_str().unwrap();
    let before = snapshot(dir.path());
    let plan = |env: &[(&str, &str)]| {
        let plan = json_of(&["--data-dir", d, "forget", "--dry-run"], env);
        let b = &plan["buckets"][0];
        (b["versions"].as_u64().unwrap(), b["versions_expired"].as_u64().unwrap(), b["bytes_expired"].as_u64().unwrap())
    };
    // The default keeps 30 days: nothing expires.
    assert_eq!(plan(&[]), (6, 0, 0));
    // Keeping only the current state expires k0's first version and k1's.
    let now_only = [("REWIND_RETENTION_KEEP_ALL_WITHIN", "0s"), ("REWIND_RETENTION_MIN_KEEP_ALL_WITHIN", "0s")];
    let (versions, expired, bytes) = plan(&now_only);
    assert_eq!((versions, expired), (6, 2));
    assert!(bytes > 0, "the expired versions alone hold their chunks");
    // GC's mark: each upload went into a pack of its own, so the two expired versions'
    // packs are dead, holding exactly the bytes forget counted.
    let gc = |env: &[(&str, &str)]| {
        let plan = json_of(&["--data-dir", d, "gc", "--dry-run"], env);
        (plan["packs_dead"].as_u64().unwrap(), plan["bytes_in_dead_packs"].as_u64().unwrap())
    };
    assert_eq!(gc(&[]), (0, 0));
    assert_eq!(gc(&now_only), (2, bytes));
    // A policy below the floor is refused.
    let out = rewind_with(&["--data-dir", d, "forget", "--dry-run"], &[("REWIND_RETENTION_KEEP_ALL_WITHIN", "1h")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("below retention.min_keep_all_within"));
    assert_eq!(snapshot(dir.path()), before, "planning changed the data directory");
    let out = rewind(&["--data-dir", d, "gc"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("without confirmation: re-run with --yes"), "{err}");
    let report = json_of(&["--data-dir", d, "gc", "--yes"], &now_only);
    assert_eq!(report["packs"].as_u64(), Some(6), "{report}");
    assert_eq!((report["packs_condemned"].as_u64(), report["packs_deleted"].as_u64()), (Some(0), Some(0)), "{report}");
}

/// A legal hold keeps every version under it out of what a policy expires; it is shipped
/// with the snapshot labels, so a rebuild from the vault keeps it; a hold on a bucket with
/// no history, or lifting one that is not there, is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_keeps_its_versions_and_survives_a_rebuild() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start(&upstream.target).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    for (key, seed) in [("legal/a", 1), ("legal/a", 2), ("other", 3), ("other", 4)] {
        s3.put_object().bucket("bkt").key(key).body(ByteStream::from(pattern(3000, seed))).send().await.unwrap();
    }
    let TestGateway { gateway, data_dir: dir, .. } = gw;
    gateway.shutdown().await;
    let d = dir.path().to_str().unwrap();
    let now_only = [("REWIND_RETENTION_KEEP_ALL_WITHIN", "0s"), ("REWIND_RETENTION_MIN_KEEP_ALL_WITHIN", "0s")];
    let run = |args: &[&str]| rewind_with(args, &now_only);
    let expired = |data_dir: &str| {
        let plan = json_of(&["--data-dir", data_dir, "forget", "--dry-run"], &now_only);
        plan["buckets"][0]["versions_expired"].as_u64().unwrap()
    };
    assert_eq!(expired(d), 2, "both overwritten versions expire without a hold");
    let out = run(&["--data-dir", d, "hold", "add", "--bucket", "bkt", "--prefix", "legal/", "--reason", "case 42"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(expired(d), 1, "the held prefix keeps its old version");

    let out = run(&["--data-dir", d, "hold", "add", "--bucket", "nope"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("has no history"));
    let out = run(&["--data-dir", d, "hold", "rm", "--bucket", "bkt", "--key", "legal/a"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no hold on key"));

    // Rebuilt from the vault alone, the hold is still there.
    let rebuilt = tempfile::tempdir().unwrap();
    let r = rebuilt.path().join("data");
    let (vault, key) = (dir.path().join("vault"), dir.path().join("vault.key"));
    let out = run(&[
        "--data-dir",
        r.to_str().unwrap(),
        "rebuild",
        "--vault",
        vault.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let holds = json_of(&["--data-dir", r.to_str().unwrap(), "hold", "ls"], &[]);
    assert_eq!(holds[0]["prefix"], "legal/");
    assert_eq!(holds[0]["reason"], "case 42");
    assert_eq!(expired(r.to_str().unwrap()), 1);

    let out = run(&["--data-dir", d, "hold", "rm", "--bucket", "bkt", "--prefix", "legal/"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(expired(d), 2);
}
