//! Crash test: the real `rewind-gateway` binary is SIGKILLed at random moments while
//! clients run concurrent PUTs, overwrites, deletes and multipart uploads, then restarted.
//! Afterwards every mutation a client saw acknowledged must be committed in the journal,
//! in order, with the right bytes, and no committed version may point at a missing chunk.
//!
//! Rounds: `REWIND_CRASH_ROUNDS` (default 6); seed: `REWIND_CRASH_SEED` (printed). The
//! soak (`tests/soak/crash.sh`) runs it with 200.

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use rand::{Rng, SeedableRng};
use rewind_config::Config;
use rewind_model::{Body, Effect, Op, Seq};
use rewind_testkit::{eventually, key_pair, pattern, s3_client};
use rewind_vault::Manifest;

const BUCKET: &str = "crashbkt";
const WORKERS: usize = 4;
const KEYS_PER_WORKER: usize = 4;

/// What a client saw acknowledged for one key, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Acked {
    Put([u8; 32]),
    Deleted,
}

type Log = Arc<Mutex<HashMap<String, Vec<Acked>>>>;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Binary {
    data_dir: std::path::PathBuf,
    s3_port: u16,
    admin_port: u16,
    key: (String, String),
}

impl Binary {
    fn spawn(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_rewind-gateway"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", &format!("127.0.0.1:{}", self.s3_port)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin_port)])
            .env_clear()
            .env("REWIND_ACCESS_KEY_ID", &self.key.0)
            .env("REWIND_SECRET_ACCESS_KEY", &self.key.1)
            .env("REWIND_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    async fn wait_ready(&self) {
        let addr = format!("127.0.0.1:{}", self.s3_port);
        let up =
            eventually(Duration::from_secs(30), async || tokio::net::TcpStream::connect(&addr).await.is_ok()).await;
        assert!(up, "the gateway did not start listening");
    }

    /// Waits until the restart's recovery pass has resolved every interrupted mutation
    /// (it runs in the background after the gateway starts serving).
    async fn wait_recovered(&self) {
        let token = std::fs::read_to_string(self.data_dir.join("admin-token")).unwrap();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.admin_port).parse().unwrap();
        let recovered = eventually(Duration::from_secs(60), async || {
            let req = http::Request::get(format!("http://{addr}/admin/v1/status"))
                .header("authorization", format!("Bearer {}", token.trim()))
                .body(Vec::new())
                .unwrap();
            let res = rewind_testkit::raw::send(addr, &req).await;
            let status: serde_json::Value = serde_json::from_str(&res.text()).unwrap_or_default();
            status["unresolved_intents"].as_u64() == Some(0)
        })
        .await;
        assert!(recovered, "recovery did not resolve the interrupted mutations");
    }
}

/// One client's stream of mutations on its own keys until the gateway dies.
async fn worker(s3: aws_sdk_s3::Client, id: usize, seed: u64, log: Log) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for i in 0u64.. {
        let key = format!("w{id}/k{}", rng.random_range(0..KEYS_PER_WORKER));
        let content_seed = seed ^ (i << 20);
        let acked = match rng.random_range(0..10) {
            0..=4 => {
                let data = pattern(rng.random_range(0..1_500_000), content_seed);
                let body = ByteStream::from(data.clone());
                s3.put_object().bucket(BUCKET).key(&key).body(body).send().await.ok().map(|_| Acked::Put(hash(&data)))
            }
            5..=7 => s3.delete_object().bucket(BUCKET).key(&key).send().await.ok().map(|_| Acked::Deleted),
            _ => multipart(&s3, &key, content_seed).await.map(|data| Acked::Put(hash(&data))),
        };
        match acked {
            Some(a) => log.lock().unwrap().entry(key).or_default().push(a),
            // The gateway is gone (or the request was cut): nothing was acknowledged. Stop
            // at the first failure: a later ack would not say the failed one did not land.
            None => return,
        }
    }
}

async fn multipart(s3: &aws_sdk_s3::Client, key: &str, seed: u64) -> Option<Vec<u8>> {
    let up = s3.create_multipart_upload().bucket(BUCKET).key(key).send().await.ok()?;
    let id = up.upload_id()?;
    let parts = [pattern(700_000, seed), pattern(300_000, seed + 1)];
    let mut done = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let body = ByteStream::from(data.clone());
        let out = s3.upload_part().bucket(BUCKET).key(key).upload_id(id).part_number(n).body(body).send().await.ok()?;
        done.push(CompletedPart::builder().part_number(n).e_tag(out.e_tag()?).build());
    }
    let complete = CompletedMultipartUpload::builder().set_parts(Some(done)).build();
    s3.complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .multipart_upload(complete)
        .send()
        .await
        .ok()?;
    Some(parts.concat())
}

fn hash(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

fn is_subsequence(needle: &[Acked], hay: &[Acked]) -> bool {
    let mut it = hay.iter();
    needle.iter().all(|n| it.any(|h| h == n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_mutations_survive_sigkill() {
    let rounds: usize = std::env::var("REWIND_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let seed: u64 = std::env::var("REWIND_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("crash test: {rounds} rounds, REWIND_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let bin =
        Binary { data_dir: dir.path().to_path_buf(), s3_port: free_port(), admin_port: free_port(), key: key_pair() };
    let s3 = s3_client(&format!("http://127.0.0.1:{}", bin.s3_port), &bin.key.0, &bin.key.1);
    let log: Log = Arc::default();

    let mut child = bin.spawn();
    bin.wait_ready().await;
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    for round in 0..rounds {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| tokio::spawn(worker(s3.clone(), w, seed ^ ((round * WORKERS + w) as u64 + 1), log.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for w in workers {
            w.await.unwrap();
        }
        child = bin.spawn();
        bin.wait_ready().await;
    }
    // A graceful stop after the restart's recovery pass, so the journal can be opened here.
    bin.wait_recovered().await;
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(child.wait().unwrap().success(), "the gateway must exit cleanly on SIGTERM");

    let mut config = Config::default();
    config.server.data_dir = dir.path().to_path_buf();
    let stores = rewind_capture::open::open(&config.finish(vec![]).unwrap(), rewind_capture::open::Purpose::Inspect)
        .await
        .unwrap();
    let journal = &stores.journal;
    assert!(journal.verify().unwrap().problems.is_empty(), "{:?}", journal.verify());
    assert!(journal.unresolved_intents().unwrap().is_empty(), "recovery left intents open");
    // What was shipped before each kill is the journal's own history, record for record.
    let shipped = rewind_capture::ship::compare_with_vault(journal, stores.backend.as_ref()).await.unwrap();
    assert!(shipped.problems.is_empty() && shipped.segments > 0, "{shipped:?}");

    // Every committed version's chunks exist and add up to its hash.
    let mut versions = 0;
    let mut from = Seq(1);
    loop {
        let batch = journal.records(from, 512).unwrap();
        let Some(last) = batch.last() else { break };
        from = Seq(last.seq.0 + 1);
        for r in batch {
            if let Some(Effect::Version(v)) = r.body.into_change().map(|c| c.effect) {
                let m = Manifest { chunks: v.chunks, size: v.size, blake3: v.blake3 };
                stores.vault.read_object(&m).await.unwrap_or_else(|e| panic!("record {}: {e}", r.seq.0));
                versions += 1;
            }
        }
    }

    // Every acknowledged mutation is committed, in the order the client saw.
    let log = log.lock().unwrap();
    let acked: usize = log.values().map(Vec::len).sum();
    eprintln!("{acked} acknowledged mutations, {versions} committed versions checked");
    assert!(acked > 0, "no mutation was acknowledged; the test proved nothing");
    for (key, want) in log.iter() {
        let got: Vec<Acked> = journal
            .history(BUCKET, key)
            .unwrap()
            .into_iter()
            .filter_map(|r| {
                let Body::Commit(c) = r.body else { return None };
                // The commit must be the mutation's own: a later capture-before-destroy of
                // the same bytes would hide a lost commit.
                let Body::Intent(intent) = journal.record(c.intent).unwrap()?.body else { return None };
                match (intent.op, c.effect) {
                    (Op::Put | Op::CompleteMultipart, Effect::Version(v)) => Some(Acked::Put(v.blake3)),
                    (Op::Delete, Effect::Deleted { .. }) => Some(Acked::Deleted),
                    _ => None,
                }
            })
            .collect();
        assert!(is_subsequence(want, &got), "{key}: acknowledged {want:?} but the journal has {got:?}");
    }
}
