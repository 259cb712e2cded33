//! Restore throughput against a plain copy of the same data, and `ls --at` over 100,000
//! keys, in one run. Prints figures; asserts nothing about time.
//!
//! Restore: objects are written through the gateway (captured), deleted, then restored by
//! the admin API from the local vault into the upstream. Plain copy: the same bytes, held
//! in memory, PUT straight into the upstream with aws-sdk-s3 (as a copy tool would) and the
//! same parallelism. A restore writes objects up to 16 MiB through the gateway's lean client
//! (`rewind_capture::lean`), larger ones through aws-sdk-s3. A third copy, through the lean
//! client with unsigned bodies, shows how much of the gap the client alone makes. Upstream, journal and vault are on /dev/shm when it exists, so the
//! figures compare software, not this machine's disk.
//!
//! `4k-late` repeats the 4 KiB case with the upstream answering every request 10 ms late
//! (real S3's latency), where the gateway's own work should hide behind the wait.
//!
//! Run: cargo bench -p rewind-cli --bench restore [-- --quick] [-- --only 1m|4k|4k-late|ls]

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::StreamExt;
use http::Method;
use http_body_util::BodyExt;
use rewind_capture::lean::{Call, LeanClient};
use rewind_cli::{Client, Lines};
use rewind_model::{Body, Commit, Effect, Intent, ObjectVersion, Op};
use rewind_snapshotter::api::{Listing, Mode, RestoreEvent, RestoreRequest};
use rewind_testkit::{FsUpstream, TestGateway, pattern};

const PARALLEL: usize = 8;
/// A real S3's latency per request, added to the loopback upstream (issue 20).
const UPSTREAM_LATENCY: Duration = Duration::from_millis(10);

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn scratch() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() }
}

struct Rate {
    seconds: f64,
    objects: usize,
    bytes: usize,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>8.0} objects/s {:>8.1} MB/s ({:.2} s)",
            self.objects as f64 / self.seconds,
            self.bytes as f64 / self.seconds / 1e6,
            self.seconds
        )
    }
}

/// [`put_all`] through the lean client restores use, each body sent unsigned (the least a
/// copy through it can cost).
async fn lean_put_all(lean: &LeanClient, bucket: &str, objects: &[(String, bytes::Bytes)]) -> f64 {
    let start = Instant::now();
    futures::stream::iter(objects.iter().cloned())
        .map(|(key, body)| async move {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CONTENT_LENGTH, body.len().into());
            let call = Call {
                method: &Method::PUT,
                bucket,
                key: &key,
                query: "",
                headers,
                body: http_body_util::Full::new(body).map_err(|never| match never {}).boxed_unsync(),
                signed_as: aws_sigv4::http_request::SignableBody::UnsignedPayload,
                anonymous: false,
            };
            let answer = lean.send(call).await.unwrap();
            assert!(answer.status().is_success(), "{}", answer.status());
        })
        .buffer_unordered(PARALLEL)
        .for_each(|_| async {})
        .await;
    start.elapsed().as_secs_f64()
}

async fn put_all(s3: &aws_sdk_s3::Client, bucket: &str, objects: &[(String, bytes::Bytes)]) -> f64 {
    let start = Instant::now();
    futures::stream::iter(objects.iter().cloned())
        .map(|(key, body)| {
            let s3 = s3.clone();
            let bucket = bucket.to_owned();
            async move { s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body)).send().await.unwrap() }
        })
        .buffer_unordered(PARALLEL)
        .for_each(|_| async {})
        .await;
    start.elapsed().as_secs_f64()
}

/// Restores `count` objects of `size` bytes and copies them plainly, the upstream answering
/// every request `delay` late; prints both rates against `target` (restore / plain copy).
async fn restore_case(name: &str, count: usize, size: usize, delay: Duration, target: f64) -> f64 {
    let (up_dir, data_dir) = (scratch(), scratch());
    let upstream = FsUpstream::start_delayed_in(up_dir.path().to_path_buf(), delay).await;
    let data = data_dir.path().to_path_buf();
    let gw = TestGateway::start_with(&upstream.target, |c| c.server.data_dir = data).await;
    let s3 = gw.client();
    let direct = upstream.client();
    for b in ["restored", "plain", "lean"] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    let objects: Vec<(String, bytes::Bytes)> =
        (0..count).map(|i| (format!("obj/{i:06}"), bytes::Bytes::from(pattern(size, i as u64 + 1)))).collect();
    put_all(&s3, "restored", &objects).await;
    let before = format!("seq:{}", gw.gateway.capture().journal().head().unwrap().seq.0);
    for batch in objects.chunks(1000) {
        let ids = batch.iter().map(|(k, _)| ObjectIdentifier::builder().key(k).build().unwrap()).collect();
        let delete = Delete::builder().set_objects(Some(ids)).quiet(true).build().unwrap();
        s3.delete_objects().bucket("restored").delete(delete).send().await.unwrap();
    }

    let cpu = cpu_seconds();
    let plain = put_all(&direct, "plain", &objects).await;
    let plain_cpu = cpu_seconds() - cpu;
    let lean = LeanClient::new(&Default::default(), &upstream.target, Duration::from_secs(60)).unwrap();
    let cpu = cpu_seconds();
    let lean_copy = lean_put_all(&lean, "lean", &objects).await;
    let lean_cpu = cpu_seconds() - cpu;
    if std::env::var_os("REWIND_BENCH_GATEWAY_CLIENT").is_some() {
        let via = put_all(gw.gateway.capture().upstream(), "plain", &objects).await;
        println!("  plain copy with the gateway's upstream client: {:.0} objects/s", count as f64 / via);
    }

    let admin = Client::new(&gw.admin_url(), gw.admin_token());
    let ask = RestoreRequest {
        bucket: "restored".into(),
        at: before,
        prefix: String::new(),
        key: None,
        to_bucket: None,
        mode: Mode::Rewind,
        dry_run: false,
        parallel: PARALLEL,
    };
    if std::env::var_os("REWIND_BENCH_MARK").is_some() {
        eprintln!("restore phase starts");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let mut lines =
        Lines::of(admin.send(Method::POST, "restore", Some(serde_json::to_vec(&ask).unwrap())).await.unwrap());
    let mut planned = 0.0;
    let written = loop {
        match lines.next::<RestoreEvent>().await.unwrap() {
            Some(RestoreEvent::Plan(_)) => planned = start.elapsed().as_secs_f64(),
            Some(RestoreEvent::Done { written, failed, .. }) => {
                assert_eq!(failed, 0);
                break written;
            }
            Some(_) => {}
            None => panic!("no Done"),
        }
    };
    let restore = start.elapsed().as_secs_f64();
    let restore_cpu = cpu_seconds() - cpu;
    assert_eq!(written as usize, count);
    let bytes = count * size;
    let (restore, plain) =
        (Rate { seconds: restore, objects: count, bytes }, Rate { seconds: plain, objects: count, bytes });
    let ratio = plain.seconds / restore.seconds;
    println!("{name}");
    println!("  plain copy {plain}");
    println!("  restore    {restore}, of which planning {planned:.2} s");
    println!("  restore / plain copy: {:.1}% (target >= {:.0}%)", ratio * 100.0, target * 100.0);
    println!(
        "  plain copy through the lean client (unsigned bodies) {}: restore / it {:.1}%, its CPU per object {:.0} µs",
        Rate { seconds: lean_copy, objects: count, bytes },
        lean_copy / restore.seconds * 100.0,
        lean_cpu / count as f64 * 1e6
    );
    println!(
        "  CPU per object (this process: the upstream, and the client or the gateway): plain copy {:.0} µs, restore {:.0} µs (2 cores: {:.0}% and {:.0}% busy)",
        plain_cpu / count as f64 * 1e6,
        restore_cpu / count as f64 * 1e6,
        plain_cpu / plain.seconds / 2.0 * 100.0,
        restore_cpu / restore.seconds / 2.0 * 100.0
    );
    gw.gateway.shutdown().await;
    upstream.stop().await;
    ratio
}

/// Journals `keys` puts (and, for every tenth key, a later overwrite) straight into the
/// gateway's journal, then times `ls` through the admin API now and at an older instant.
async fn ls_case(keys: usize) {
    let (up_dir, data_dir) = (scratch(), scratch());
    let upstream = FsUpstream::start_in(up_dir.path().to_path_buf()).await;
    let data = data_dir.path().to_path_buf();
    let gw = TestGateway::start_with(&upstream.target, |c| c.server.data_dir = data).await;
    let journal = gw.gateway.capture().journal().clone();
    let version = |i: usize| ObjectVersion {
        size: 4096,
        blake3: *blake3::hash(&i.to_le_bytes()).as_bytes(),
        chunks: Vec::new(),
        etag: format!("{i:032x}"),
        version_id: None,
        headers: vec![("content-type".into(), "application/octet-stream".into())],
        metadata: Vec::new(),
        tags: Vec::new(),
        parts: Vec::new(),
        checksums: Vec::new(),
        modified_us: None,
    };
    let write = |i: usize| {
        let journal = journal.clone();
        async move {
            let key = format!("logs/2026/11/{i:08}.json");
            let intent = Intent {
                op: Op::Put,
                bucket: "big".into(),
                key: key.clone(),
                access_key: "bench".into(),
                request_id: "b".into(),
            };
            let at = journal.append(Body::Intent(intent), rewind_journal::Durability::Buffered).await.unwrap().seq;
            let commit = Commit { intent: at, bucket: "big".into(), key, effect: Effect::Version(version(i)) };
            journal.append(Body::Commit(commit), rewind_journal::Durability::Buffered).await.unwrap();
        }
    };
    futures::stream::iter(0..keys).map(write).buffer_unordered(64).for_each(|()| async {}).await;
    let middle = journal.head().unwrap().seq.0;
    futures::stream::iter((0..keys).step_by(10)).map(write).buffer_unordered(64).for_each(|()| async {}).await;

    let admin = Client::new(&gw.admin_url(), gw.admin_token());
    for (label, at) in [("now", "now".to_owned()), ("an older instant", format!("seq:{middle}"))] {
        let start = Instant::now();
        let listing: Listing = admin.json(Method::GET, &format!("ls?bucket=big&at={at}"), None).await.unwrap();
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!(listing.objects.len(), keys);
        println!(
            "ls --at {label} over {keys} keys: {seconds:.3} s through the admin API, JSON included (target < 2 s)"
        );
    }
    gw.gateway.shutdown().await;
    upstream.stop().await;
}

/// `[--quick] [--only 1m|4k|4k-late|ls]`
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let runs = |case: &str| only.as_deref().is_none_or(|o| o == case);
    let scale = if quick { 8 } else { 1 };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        if runs("1m") {
            let n = 1024 / scale;
            restore_case(&format!("{n} objects of 1 MiB, {PARALLEL} at once"), n, 1 << 20, Duration::ZERO, 0.80).await;
        }
        if runs("4k") {
            let n = 10_000 / scale;
            restore_case(&format!("{n} objects of 4 KiB, {PARALLEL} at once"), n, 4096, Duration::ZERO, 0.75).await;
        }
        if runs("4k-late") {
            let n = 10_000 / scale;
            let name = format!("{n} objects of 4 KiB, {PARALLEL} at once, the upstream answering 10 ms late");
            restore_case(&name, n, 4096, UPSTREAM_LATENCY, 0.95).await;
        }
        if runs("ls") {
            ls_case(100_000 / scale).await;
        }
    });
}
