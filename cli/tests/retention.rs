//! Retention end to end with the real binaries: `rewind forget` removes expired history
//! from the journal and compacts the vault's copy of it, `rewind gc` reclaims what only
//! that history used, everything kept still reads back and verifies, and a data directory
//! rebuilt from the compacted vault holds the same history.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_s3::primitives::ByteStream;
use rewind_testkit::{FsUpstream, TestGateway, pattern};

/// Keep only the current state: what the policy then expires is every overwritten version.
const NOW_ONLY: [(&str, &str); 3] = [
    ("REWIND_RETENTION_KEEP_ALL_WITHIN", "0s"),
    ("REWIND_RETENTION_MIN_KEEP_ALL_WITHIN", "0s"),
    ("REWIND_RETENTION_GC_GRACE", "0s"),
];

/// `rewind ARGS` under the policy above, on the vault in `root` (run from there when
/// `cwd`).
fn rewind(root: &Path, args: &[&str], cwd: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rewind"));
    command.args(args).env_remove("REWIND_KEY_FILE").envs(NOW_ONLY).env("REWIND_VAULT", root.join("vault"));
    if cwd {
        command.current_dir(root);
    }
    command.output().unwrap()
}

fn json(root: &Path, args: &[&str]) -> serde_json::Value {
    let out = rewind(root, &[&["--json"], args].concat(), false);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_then_gc_keep_what_the_policy_promises_and_survive_a_rebuild() {
    let upstream = FsUpstream::start().await;
    let root = tempfile::tempdir().unwrap();
    let vault = root.path().join("vault");
    let vault_text = vault.display().to_string();
    let gw = TestGateway::start_with(&upstream.target, |c| c.vault.location = Some(vault_text.clone())).await;
    std::fs::copy(gw.data_dir.path().join("vault.key"), root.path().join("vault.key")).unwrap();
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let put = async |key: &str, seed: u64| {
        let body = ByteStream::from(pattern(200_000 + seed as usize, seed));
        s3.put_object().bucket("bkt").key(key).body(body).send().await.unwrap();
    };
    put("k0", 1).await;
    put("k1", 2).await;
    put("k0", 3).await; // k0's first version expires
    put("k2", 4).await;
    s3.delete_object().bucket("bkt").key("k1").send().await.unwrap(); // k1's version expires
    let TestGateway { gateway, data_dir, .. } = gw;
    gateway.shutdown().await;
    let d = data_dir.path().to_str().unwrap();
    let packs = || files_under(&vault.join("packs")).len();
    assert_eq!(packs(), 4);

    let plan = json(root.path(), &["--data-dir", d, "forget", "--dry-run"]);
    assert_eq!(plan["buckets"][0]["versions_expired"].as_u64(), Some(2), "{plan}");
    let out = rewind(root.path(), &["--data-dir", d, "forget"], false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("without confirmation"), "{err}");

    let forgot = json(root.path(), &["--data-dir", d, "forget", "--yes"]);
    assert_eq!(forgot["records_removed"].as_u64(), Some(4), "two commits and their intents: {forgot}");
    assert!(forgot["base_written"].as_bool().unwrap(), "{forgot}");
    assert!(forgot["horizon"].as_u64().unwrap() > 0, "{forgot}");
    let again = json(root.path(), &["--data-dir", d, "forget", "--yes"]);
    assert_eq!(again["records_removed"].as_u64(), Some(0), "forget is idempotent: {again}");
    // A view of an instant whose state lost a removed version is refused, naming the
    // earliest instant available; that one is whole.
    let early = rewind(root.path(), &["--data-dir", d, "view", "create", "--bucket", "bkt", "--at", "seq:5"], false);
    let err = String::from_utf8_lossy(&early.stderr);
    assert!(!early.status.success() && err.contains("earliest instant available"), "{err}");
    let earliest = err.split("(seq:").nth(1).and_then(|r| r.split(')').next()).unwrap().to_owned();
    let at = format!("seq:{earliest}");
    let made = json(root.path(), &["--data-dir", d, "view", "create", "--bucket", "bkt", "--at", &at]);
    assert_eq!(made["seq"].as_u64(), earliest.parse().ok(), "{made}");
    assert_eq!(made["endpoint"].as_str(), Some("http://127.0.0.1:9000"), "offline: the configured listener");
    let before = format!("seq:{}", earliest.parse::<u64>().unwrap() - 1);
    assert!(files_under(&vault.join("bases")).len() == 1, "one base replaces the segments it covers");

    let gc = json(root.path(), &["--data-dir", d, "gc", "--yes"]);
    assert_eq!(gc["packs_deleted"].as_u64(), Some(2), "the packs only expired versions used: {gc}");
    assert_eq!(packs(), 2);

    let verify = json(root.path(), &["--data-dir", d, "verify", "--read-data"]);
    assert_eq!(verify["damaged"].as_array().unwrap().len(), 0, "{verify}");
    assert!(verify["journal_problems"].as_array().unwrap().is_empty(), "{verify}");
    let listed = json(root.path(), &["--data-dir", d, "ls", "--bucket", "bkt"]);
    let keys: Vec<&str> = listed["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["k0", "k2"]);
    let cat = rewind(root.path(), &["--data-dir", d, "cat", "--bucket", "bkt", "--key", "k0"], false);
    assert!(cat.status.success(), "{}", String::from_utf8_lossy(&cat.stderr));
    assert_eq!(cat.stdout, pattern(200_003, 3), "k0 reads back as its kept version");
    let log = json(root.path(), &["--data-dir", d, "log", "--bucket", "bkt", "--key", "k0"]);
    assert_eq!(log.as_array().unwrap().len(), 1, "k0's expired version is gone from its history: {log}");

    // The whole data directory lost: the compacted vault rebuilds the same history.
    drop(data_dir);
    let args = ["--json", "--data-dir", "rebuilt", "rebuild", "--vault", "vault", "--key-file", "vault.key"];
    let out = rewind(root.path(), &args, true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = root.path().join("rebuilt");
    let r = r.to_str().unwrap();
    let verify = json(root.path(), &["--data-dir", r, "verify", "--read-data"]);
    assert!(verify["journal_problems"].as_array().unwrap().is_empty(), "{verify}");
    assert_eq!(verify["damaged"].as_array().unwrap().len(), 0, "{verify}");
    assert_eq!(json(root.path(), &["--data-dir", r, "ls", "--bucket", "bkt"]), listed);
    assert_eq!(json(root.path(), &["--data-dir", r, "log", "--bucket", "bkt", "--key", "k0"]), log);
    // Where history stops being whole came back with the labels.
    let early = rewind(root.path(), &["--data-dir", r, "view", "create", "--bucket", "bkt", "--at", &before], false);
    let err = String::from_utf8_lossy(&early.stderr);
    assert!(!early.status.success() && err.contains(&format!("(seq:{earliest})")), "{err}");
}

/// `rewind forget` and `rewind gc` killed with SIGKILL at random points, again and again,
/// then run to the end: nothing kept is lost, the journal and vault verify, and everything
/// expired is reclaimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_and_gc_killed_at_random_points_finish_on_the_next_run() {
    let seed: u64 = std::env::var("REWIND_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos().into()
    });
    eprintln!("REWIND_KILL_SEED={seed}");
    let mut state = seed | 1;
    let mut delay_ms = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        5 + state % 245
    };
    let upstream = FsUpstream::start().await;
    let root = tempfile::tempdir().unwrap();
    let vault_text = root.path().join("vault").display().to_string();
    let gw = TestGateway::start_with(&upstream.target, |c| c.vault.location = Some(vault_text.clone())).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    const KEYS: u64 = 40;
    for round in 0..5u64 {
        for k in 0..KEYS {
            let body = ByteStream::from(pattern(20_000 + k as usize, round << 8 | k));
            s3.put_object().bucket("bkt").key(format!("k{k:02}")).body(body).send().await.unwrap();
        }
    }
    let TestGateway { gateway, data_dir, .. } = gw;
    gateway.shutdown().await;
    let d = data_dir.path().to_str().unwrap();
    let listed = json(root.path(), &["--data-dir", d, "ls", "--bucket", "bkt"]);

    let mut killed = 0;
    for i in 0..8 {
        let command = if i % 2 == 0 { "forget" } else { "gc" };
        let mut child = Command::new(env!("CARGO_BIN_EXE_rewind"))
            .args(["--data-dir", d, command, "--yes"])
            .env_remove("REWIND_KEY_FILE")
            .envs(NOW_ONLY)
            .env("REWIND_VAULT", root.path().join("vault"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms())).await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
    }
    eprintln!("{killed} of 8 runs killed before they finished");

    json(root.path(), &["--data-dir", d, "forget", "--yes"]);
    json(root.path(), &["--data-dir", d, "gc", "--yes"]);
    let verify = json(root.path(), &["--data-dir", d, "verify", "--read-data"]);
    assert!(verify["journal_problems"].as_array().unwrap().is_empty(), "{verify}");
    assert_eq!(verify["damaged"].as_array().unwrap().len(), 0, "{verify}");
    assert_eq!(json(root.path(), &["--data-dir", d, "ls", "--bucket", "bkt"]), listed);
    let plan = json(root.path(), &["--data-dir", d, "gc", "--dry-run"]);
    assert_eq!(plan["packs_dead"].as_u64(), Some(0), "{plan}");
    assert_eq!(plan["bytes_expired"].as_u64(), Some(0), "{plan}");
    assert_eq!(plan["packs"].as_u64(), Some(KEYS), "one pack per kept version is left: {plan}");
    for k in [0, KEYS - 1] {
        let cat =
            rewind(root.path(), &["--data-dir", d, "cat", "--bucket", "bkt", "--key", &format!("k{k:02}")], false);
        assert_eq!(cat.stdout, pattern(20_000 + k as usize, 4 << 8 | k));
    }
}
