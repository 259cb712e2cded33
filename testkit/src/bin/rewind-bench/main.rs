//! `rewind-bench`: the same S3 load direct to a fast upstream, through the gateway without
//! capture (pass-through) and with capture, in one run, with the ratios and the gateways'
//! memory.
//!
//! The upstream is s3s-fs in this process behind the gateway's accept loop (TCP_NODELAY),
//! on /dev/shm when it exists so that disk speed does not cap the figures. The gateway is
//! the real `rewind-gateway` binary (release build, next to this one) in a child process,
//! so its RSS can be read from /proc.
//!
//! `--memory` runs only the memory check: 16 uploads of 64 MiB at once, direct, through a
//! pass-through gateway and through a capturing one (review F13: 581 MiB with a 64 MiB
//! budget), with each gateway's peak RSS and the capturing one's CPU per byte.
//!
//! `--views` runs only the time-travel view check: GETs (64 MiB x4, 4 KiB x32) and a whole
//! ListObjectsV2 of a 100,000-key bucket, live through a capturing gateway and through a
//! view of the same objects, in one run, with the gateway's CPU per byte and per operation.
//!
//! `--journal-postgres` runs only the shared-journal check: PUT 4 KiB x32 and PUT 64 MiB x4
//! through two capturing gateways, one on the embedded RocksDB journal and one on a
//! PostgreSQL journal (the server in REWIND_TEST_POSTGRES_URL, or one started here), with
//! each gateway's CPU per operation and, per mutation, the database's transactions, rows
//! written and server CPU.
//!
//! `--tripwire` runs only the tripwire check: PUT 4 KiB x32 overwrites through two
//! capturing gateways, the ransomware tripwire on and off, with each one's CPU per operation.
//!
//! Every mode shares the gateway launcher, the load runner, the CPU and memory readers
//! and the pipeline calibration its CPU targets are read against, kept here, which is why
//! this file is long; modes with more than a table of their own
//! (the shared journal) sit in modules beside it.
//!
//! `--mirrors` runs only the mirrors check: PUT 64 MiB x4 through two capturing gateways,
//! one with two vault mirrors and one without, and how far the mirrors fall behind.
//!
//! Build and run:  cargo build --release --bins && target/release/rewind-bench [--quick] [--big 2] [--memory] [--views] [--tripwire] [--mirrors]

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use rewind_testkit::{FsUpstream, eventually, key_pair, pattern};

mod journal;
mod mirrors;
mod tripwire;

const MIB: usize = 1024 * 1024;

/// One load: an operation on objects of one size, with some concurrency, a number of times.
#[derive(Clone, Copy)]
struct Load {
    name: &'static str,
    put: bool,
    size: usize,
    concurrency: usize,
    ops: usize,
    /// Distinct keys cycled through (GETs read what the PUT phase wrote).
    keys: usize,
    /// The acceptance target for through-gateway (pass-through) / direct.
    target: f64,
    /// The target for capture / direct (0: none).
    capture_target: f64,
    /// The most pass-through gateway CPU per operation, in microseconds (0: none).
    cpu_us: f64,
    /// PUT bodies signed with their SHA-256 (what SDKs do over plain HTTP), or sent as
    /// UNSIGNED-PAYLOAD with a CRC32 checksum (what current SDKs do over HTTPS).
    signed: bool,
}

#[derive(Default)]
struct Outcome {
    seconds: f64,
    ops: usize,
    bytes: usize,
}

impl std::ops::AddAssign for Outcome {
    fn add_assign(&mut self, other: Self) {
        self.seconds += other.seconds;
        self.ops += other.ops;
        self.bytes += other.bytes;
    }
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
    fn mb_per_second(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }
}

/// The loads and their targets: pass-through against direct (issue 2), capture against
/// direct and pass-through CPU per small request (issue 20).
fn loads(quick: bool) -> Vec<Load> {
    let scale = if quick { 4 } else { 1 };
    let large = Load {
        name: "",
        put: true,
        size: 64 * MIB,
        concurrency: 4,
        ops: 48 / scale,
        keys: 8,
        target: 0.90,
        capture_target: 0.65,
        cpu_us: 0.0,
        signed: false,
    };
    let small = Load {
        size: 4096,
        concurrency: 32,
        ops: 20_000 / scale,
        keys: 1000,
        target: 0.80,
        capture_target: 0.60,
        cpu_us: 90.0,
        ..large
    };
    vec![
        Load { name: "PUT 64 MiB x4", ..large },
        Load { name: "PUT 64 MiB x4 signed", signed: true, ..large },
        Load { name: "GET 64 MiB x4", put: false, capture_target: 0.0, ..large },
        Load { name: "PUT 4 KiB x32", ..small },
        Load { name: "PUT 4 KiB x32 signed", signed: true, ..small },
        Load { name: "GET 4 KiB x32", put: false, target: 0.85, capture_target: 0.0, ..small },
    ]
}

/// What the vault pipeline costs on this machine, on one core: ns per byte to chunk, hash,
/// compress-probe and seal random data (the `pipeline` bench's stages, in this process).
/// Capture's CPU target is relative to it (issue 20: 1.5 ns/B where this was 1.2).
fn pipeline_ns_per_byte() -> f64 {
    use rewind_crypto::{KeySet, SecretKey};
    use rewind_vault::{ChunkSizes, StreamingChunker};
    let keys = KeySet::derive(&SecretKey::generate().unwrap());
    let data = pattern(64 * MIB, 0xCA1);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        let mut chunker = StreamingChunker::new(ChunkSizes::default(), keys.chunker_seed);
        let mut chunks = Vec::new();
        for piece in data.chunks(64 * 1024) {
            chunks.extend(chunker.push(piece));
        }
        chunks.extend(chunker.finish());
        for chunk in &chunks {
            std::hint::black_box(
                rewind_vault::seal_chunk(&keys, chunk, Some(rewind_vault::compress::DEFAULT_LEVEL)).unwrap(),
            );
        }
        best = best.min(start.elapsed().as_secs_f64() / data.len() as f64 * 1e9);
    }
    best
}

/// Capture's CPU per byte may be this multiple of the pipeline's (1.5 / 1.2, issue 20).
const CAPTURE_CPU_FACTOR: f64 = 1.25;
/// The pipeline's cost, ns per byte, on the machine issue 20's absolute CPU targets were
/// set on: a target of N us per request reads N * (this machine's pipeline / this) here.
const ISSUE_PIPELINE_NS: f64 = 1.2;

/// A client with the SDK's default upload checksums (CRC32); responses are not re-checked,
/// so the client's share of the CPU stays small.
fn client(endpoint: &str, id: &str, secret: &str) -> aws_sdk_s3::Client {
    let conf = rewind_testkit::client_config(endpoint, id, secret)
        .request_checksum_calculation(RequestChecksumCalculation::WhenSupported)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// `body` made unique to upload `i`: 8 bytes changed in every 64 KiB, so every chunk the
/// vault cuts is new (identical bodies would be deduplicated and cost the vault nothing).
fn unique(body: &Bytes, i: usize) -> Bytes {
    let mut b = body.to_vec();
    let stamp = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes();
    for at in (0..b.len()).step_by(64 * 1024) {
        let end = (at + 8).min(b.len());
        b[at..end].copy_from_slice(&stamp[..end - at]);
    }
    Bytes::from(b)
}

async fn run(client: &aws_sdk_s3::Client, bucket: &str, load: Load, body: Bytes) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..load.concurrency {
        let (client, next, body, bucket) = (client.clone(), next.clone(), body.clone(), bucket.to_owned());
        workers.push(tokio::spawn(async move {
            let mut bytes = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= load.ops {
                    return bytes;
                }
                let key = format!("{}-{}", load.size, i % load.keys);
                if load.put {
                    let put = client.put_object().bucket(&bucket).key(&key).body(ByteStream::from(unique(&body, i)));
                    if load.signed {
                        put.send().await.unwrap();
                    } else {
                        put.customize().disable_payload_signing().send().await.unwrap();
                    }
                    bytes += body.len();
                } else {
                    let out = client.get_object().bucket(&bucket).key(&key).send().await.unwrap();
                    let mut stream = out.body;
                    while let Some(piece) = stream.try_next().await.unwrap() {
                        bytes += piece.len();
                    }
                }
            }
        }));
    }
    let mut bytes = 0;
    for w in workers {
        bytes += w.await.unwrap();
    }
    Outcome { seconds: start.elapsed().as_secs_f64(), ops: load.ops, bytes }
}

/// Runs `work`, with the CPU seconds process `pid` used meanwhile.
async fn cpu_of<T>(pid: &str, work: impl Future<Output = T>) -> (T, f64) {
    let before = cpu_seconds(pid);
    let out = work.await;
    (out, cpu_seconds(pid) - before)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of /proc/PID/stat; index 11 and 12 here.
    (ticks(11) + ticks(12)) / USER_HZ
}

/// Clock ticks per second in /proc (USER_HZ): 100 on every Linux this runs on; reading it
/// with sysconf would need libc.
const USER_HZ: f64 = 100.0;

/// Peak and current resident memory of a process, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

struct GatewayProcess {
    child: Child,
    endpoint: String,
    id: String,
    secret: String,
    admin: std::net::SocketAddr,
    data_dir: PathBuf,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the gateway binary; without `capture` it protects no bucket (pure pass-through).
async fn start_gateway(binary: &Path, upstream: &FsUpstream, work: &Path, name: &str, capture: bool) -> GatewayProcess {
    start_gateway_on(binary, upstream, work, name, capture, None).await
}

/// [`start_gateway`], with its journal in the PostgreSQL database at `journal` if given.
async fn start_gateway_on(
    binary: &Path,
    upstream: &FsUpstream,
    work: &Path,
    name: &str,
    capture: bool,
    journal: Option<&str>,
) -> GatewayProcess {
    start_gateway_with(binary, upstream, work, name, capture, journal, "").await
}

/// [`start_gateway_on`] with `extra` appended to its configuration file.
async fn start_gateway_with(
    binary: &Path,
    upstream: &FsUpstream,
    work: &Path,
    name: &str,
    capture: bool,
    journal: Option<&str>,
    extra: &str,
) -> GatewayProcess {
    let (id, secret) = key_pair();
    let (port, admin) = (free_port(), free_port());
    let log = std::fs::File::create(work.join(format!("{name}.log"))).unwrap();
    let config = work.join(format!("{name}.toml"));
    let buckets = if capture { r#"["*"]"# } else { "[]" };
    std::fs::write(&config, format!("[protection]\nbuckets = {buckets}\n{extra}")).unwrap();
    let mut command = Command::new(binary);
    if let Some(url) = journal {
        command.env("REWIND_JOURNAL_URL", url);
    }
    let child = command
        .args(["--listen", &format!("127.0.0.1:{port}"), "--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(work.join(format!("{name}-data")))
        .args(["--upstream", &upstream.target.endpoint])
        .env("REWIND_UPSTREAM_ACCESS_KEY_ID", &upstream.target.access_key_id)
        .env("REWIND_UPSTREAM_SECRET_ACCESS_KEY", upstream.target.secret.expose())
        .env("REWIND_ACCESS_KEY_ID", &id)
        .env("REWIND_SECRET_ACCESS_KEY", &secret)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {}: {e}; build it with: cargo build --release --bins", binary.display())
        });
    let ready =
        eventually(Duration::from_secs(30), async || tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok())
            .await;
    assert!(ready, "the gateway did not start; see {}", work.join(format!("{name}.log")).display());
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin));
    let data_dir = work.join(format!("{name}-data"));
    GatewayProcess { child, endpoint: format!("http://127.0.0.1:{port}"), id, secret, admin, data_dir }
}

fn gateway_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().join("rewind-gateway")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "rewind-bench [--quick] [--only LOAD] [--big GIB] [--gateway PATH]\n\nRuns PUT/GET loads direct to an in-process s3s-fs, through rewind-gateway without capture (pass-through) and with capture, and prints all three. --big uploads one object of GIB GiB (default 2) with capture and reports the gateway's peak RSS."
        );
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let memory_only = args.iter().any(|a| a == "--memory");
    let views_only = args.iter().any(|a| a == "--views");
    let postgres_only = args.iter().any(|a| a == "--journal-postgres");
    let tripwire_only = args.iter().any(|a| a == "--tripwire");
    let mirrors_only = args.iter().any(|a| a == "--mirrors");
    let only = args.iter().position(|a| a == "--only").map(|i| args[i + 1].clone());
    let binary =
        args.iter().position(|a| a == "--gateway").map_or_else(gateway_binary, |i| PathBuf::from(&args[i + 1]));
    let big = args.iter().position(|a| a == "--big").map(|i| args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(2));

    let shm = Path::new("/dev/shm");
    let work = if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() };
    let upstream = FsUpstream::start_in(work.path().join("upstream")).await;
    let plain = start_gateway(&binary, &upstream, work.path(), "passthrough", false).await;
    let capturing = start_gateway(&binary, &upstream, work.path(), "capture", true).await;
    let (plain_pid, capture_pid) = (plain.child.id(), capturing.child.id());

    // Modes that start gateways of their own and print one table.
    let alone: Option<std::pin::Pin<Box<dyn std::future::Future<Output = bool> + '_>>> = if mirrors_only {
        Some(Box::pin(mirrors::compare(&binary, &upstream, work.path(), quick)))
    } else if tripwire_only {
        Some(Box::pin(tripwire::compare(&binary, &upstream, work.path(), quick)))
    } else if postgres_only {
        Some(Box::pin(journal::engines(&binary, &upstream, work.path(), quick)))
    } else {
        None
    };
    if let Some(mode) = alone {
        drop((plain, capturing));
        let ok = mode.await;
        println!("targets missed: {}", usize::from(!ok));
        upstream.stop().await;
        return;
    }
    if views_only {
        drop(plain);
        let ok = views(&capturing, quick).await;
        println!("targets missed: {}", usize::from(!ok));
        upstream.stop().await;
        return;
    }
    if memory_only {
        drop((plain, capturing));
        let ok = concurrent_uploads(&binary, &upstream, work.path()).await;
        println!("targets missed: {}", usize::from(!ok));
        upstream.stop().await;
        return;
    }
    let direct = client(&upstream.target.endpoint, &upstream.target.access_key_id, upstream.target.secret.expose());
    let via_plain = client(&plain.endpoint, &plain.id, &plain.secret);
    let via_capture = client(&capturing.endpoint, &capturing.id, &capturing.secret);
    for (c, bucket) in [(&direct, "direct"), (&via_plain, "passthrough"), (&via_capture, "capture")] {
        c.create_bucket().bucket(bucket).send().await.unwrap();
    }

    println!(
        "rewind-bench: upstream s3s-fs and gateway data on {}, gateway {} (request threads: {}; cores here: {})",
        work.path().display(),
        binary.display(),
        worker_threads(&plain).await,
        std::thread::available_parallelism().map_or(1, usize::from),
    );
    let pipeline = pipeline_ns_per_byte();
    let cpu_byte_target = pipeline * CAPTURE_CPU_FACTOR;
    println!(
        "vault pipeline on this machine (chunk, hash, compress probe, seal; one core): {pipeline:.2} ns/B; capture CPU target {cpu_byte_target:.2} ns/B"
    );
    println!(
        "{:<22} {:>12} {:>14} {:>12} {:>9} {:>9} {:>13} {:>13}",
        "load", "direct", "pass-through", "capture", "pass/dir", "capt/dir", "pass cpu", "capture cpu"
    );
    let mut missed = Vec::new();
    for load in loads(quick).into_iter().filter(|l| only.as_deref().is_none_or(|o| l.name.contains(o))) {
        let body = Bytes::from(pattern(load.size, load.size as u64));
        // Warm-up: connections, and every key written once (GETs read them).
        let warm = Load { ops: load.keys, put: true, ..load };
        for (c, bucket) in [(&direct, "direct"), (&via_plain, "passthrough"), (&via_capture, "capture")] {
            run(c, bucket, warm, body.clone()).await;
        }
        let d = run(&direct, "direct", load, body.clone()).await;
        let (p, plain_cpu) = cpu_of(&plain_pid.to_string(), run(&via_plain, "passthrough", load, body.clone())).await;
        let (c, capture_cpu) = cpu_of(&capture_pid.to_string(), run(&via_capture, "capture", load, body)).await;
        let big = load.size >= MIB;
        let rate = |o: &Outcome| if big { o.mb_per_second() } else { o.per_second() };
        let unit = if big { "MB/s" } else { "op/s" };
        let cost = |o: &Outcome, cpu: f64| {
            if big {
                format!("{:.2} ns/B", cpu / o.bytes as f64 * 1e9)
            } else {
                format!("{:.0} us/op", cpu / o.ops as f64 * 1e6)
            }
        };
        let (pass_ratio, capture_ratio) = (rate(&p) / rate(&d), rate(&c) / rate(&d));
        let mut check = |ok: bool, what: String| {
            if !ok {
                missed.push(format!("{}: {what}", load.name));
            }
        };
        check(
            pass_ratio >= load.target,
            format!("pass-through {:.1}% of direct < {:.0}%", pass_ratio * 100.0, load.target * 100.0),
        );
        if load.put && load.capture_target > 0.0 {
            check(
                capture_ratio >= load.capture_target,
                format!("capture {:.1}% of direct < {:.0}%", capture_ratio * 100.0, load.capture_target * 100.0),
            );
        }
        if load.cpu_us > 0.0 {
            let (us, most) = (plain_cpu / p.ops as f64 * 1e6, load.cpu_us * pipeline / ISSUE_PIPELINE_NS);
            check(us <= most, format!("pass-through CPU {us:.0} us/op > {most:.0}"));
        }
        if load.put && big {
            let ns = capture_cpu / c.bytes as f64 * 1e9;
            check(ns <= cpu_byte_target, format!("capture CPU {ns:.2} ns/B > {cpu_byte_target:.2}"));
        }
        println!(
            "{:<22} {:>7.0} {unit} {:>9.0} {unit} {:>7.0} {unit} {:>8.1}% {:>8.1}% {:>13} {:>13}",
            load.name,
            rate(&d),
            rate(&p),
            rate(&c),
            pass_ratio * 100.0,
            capture_ratio * 100.0,
            cost(&p, plain_cpu),
            cost(&c, capture_cpu),
        );
    }
    for (name, pid) in [("pass-through", plain_pid), ("capture", capture_pid)] {
        let (peak, now) = memory_mib(pid);
        println!("{name} gateway memory: peak RSS {peak:.1} MiB, now {now:.1} MiB");
    }
    drop((plain, capturing));
    if let Some(gib) = big
        && !big_upload(&binary, &upstream, work.path(), gib).await
    {
        missed.push(format!("big upload: peak RSS over {BIG_RSS_TARGET_MIB} MiB"));
    }
    println!(
        "targets: pass-through >= 90% of direct (64 MiB), 80% (PUT 4 KiB), 85% (GET 4 KiB); capture >= 65% of direct (PUT 64 MiB), 60% (PUT 4 KiB); pass-through CPU <= 90 us per 4 KiB request where the pipeline runs at {ISSUE_PIPELINE_NS} ns/B ({:.0} us here); capture CPU <= {CAPTURE_CPU_FACTOR}x the pipeline's per byte; peak RSS < {BIG_RSS_TARGET_MIB} MiB for a big upload",
        90.0 * pipeline / ISSUE_PIPELINE_NS
    );
    for m in &missed {
        println!("missed: {m}");
    }
    println!("targets missed: {}", missed.len());
    upstream.stop().await;
}

/// Uploads at once in the memory check, and their size.
const MEMORY_UPLOADS: usize = 16;
const MEMORY_UPLOAD_SIZE: usize = 64 * MIB;
/// The capturing gateway's peak RSS allowed during them (issue 13), with the default
/// `vault.memory_budget` of 64 MiB.
const MEMORY_RSS_TARGET_MIB: f64 = 256.0;

/// 16 uploads of 64 MiB at once, direct, through fresh pass-through and capturing
/// gateways: throughput, each gateway's peak RSS, the capturing one's CPU per byte. True
/// when the capturing gateway stayed under the target.
async fn concurrent_uploads(binary: &Path, upstream: &FsUpstream, work: &Path) -> bool {
    let plain = start_gateway(binary, upstream, work, "memory-passthrough", false).await;
    let capturing = start_gateway(binary, upstream, work, "memory-capture", true).await;
    let direct = client(&upstream.target.endpoint, &upstream.target.access_key_id, upstream.target.secret.expose());
    let via_plain = client(&plain.endpoint, &plain.id, &plain.secret);
    let via_capture = client(&capturing.endpoint, &capturing.id, &capturing.secret);
    let load = Load {
        name: "PUT 64 MiB x16",
        put: true,
        size: MEMORY_UPLOAD_SIZE,
        concurrency: MEMORY_UPLOADS,
        ops: MEMORY_UPLOADS * 2,
        keys: MEMORY_UPLOADS,
        target: 0.0,
        capture_target: 0.0,
        cpu_us: 0.0,
        signed: false,
    };
    let body = Bytes::from(pattern(load.size, 0x16));
    let mut rates = Vec::new();
    for (c, bucket) in [(&direct, "mem-direct"), (&via_plain, "mem-passthrough"), (&via_capture, "mem-capture")] {
        c.create_bucket().bucket(bucket).send().await.unwrap();
        let cpu_before = cpu_seconds(&capturing.child.id().to_string());
        let o = run(c, bucket, load, body.clone()).await;
        let cpu = cpu_seconds(&capturing.child.id().to_string()) - cpu_before;
        rates.push((o.mb_per_second(), cpu / o.bytes as f64 * 1e9));
    }
    let (plain_peak, _) = memory_mib(plain.child.id());
    let (capture_peak, capture_now) = memory_mib(capturing.child.id());
    println!(
        "{:<16} direct {:>6.0} MB/s, pass-through {:>6.0} MB/s ({:.0}% of direct), capture {:>6.0} MB/s ({:.0}% of pass-through), capture cpu {:.2} ns/B",
        load.name,
        rates[0].0,
        rates[1].0,
        rates[1].0 / rates[0].0 * 100.0,
        rates[2].0,
        rates[2].0 / rates[1].0 * 100.0,
        rates[2].1,
    );
    println!(
        "peak RSS: pass-through gateway {plain_peak:.1} MiB, capturing gateway {capture_peak:.1} MiB (now {capture_now:.1}; target < {MEMORY_RSS_TARGET_MIB} MiB with vault.memory_budget 64MiB)"
    );
    capture_peak < MEMORY_RSS_TARGET_MIB
}

/// Peak RSS allowed while one big object is uploaded with capture (issue 3).
const BIG_RSS_TARGET_MIB: f64 = 256.0;

/// Uploads one object of `gib` GiB through a fresh capturing gateway, read from a file so
/// the client holds little, and reports the gateway's peak RSS. True when under target.
async fn big_upload(binary: &Path, upstream: &FsUpstream, work: &Path, gib: usize) -> bool {
    let source = work.join("big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        for i in 0..gib * 64 {
            f.write_all(&pattern(16 * MIB, 0xB16 + i as u64)).unwrap();
        }
    }
    let gw = start_gateway(binary, upstream, work, "big", true).await;
    let s3 = client(&gw.endpoint, &gw.id, &gw.secret);
    s3.create_bucket().bucket("big").send().await.unwrap();
    let start = Instant::now();
    let body = ByteStream::from_path(&source).await.unwrap();
    s3.put_object().bucket("big").key("object").body(body).customize().disable_payload_signing().send().await.unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let (peak, _) = memory_mib(gw.child.id());
    println!(
        "PUT {gib} GiB with capture: {:.0} MB/s; gateway peak RSS {peak:.1} MiB (target < {BIG_RSS_TARGET_MIB} MiB)",
        (gib * 1024 * MIB) as f64 / seconds / 1e6
    );
    let _ = std::fs::remove_file(&source);
    peak < BIG_RSS_TARGET_MIB
}

/// A view must serve GETs at this share of live GETs through the same gateway, and list
/// within this factor of the live listing's time (issue 16).
const VIEW_GET_TARGET: f64 = 0.60;
const VIEW_LIST_TARGET: f64 = 2.0;
const VIEW_CREATE_TARGET_MS: f64 = 100.0;

/// The threads `gw` serves requests on (`rewind_worker_threads`), or `?` from a gateway
/// that does not say.
async fn worker_threads(gw: &GatewayProcess) -> String {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let metrics = String::from_utf8_lossy(&rewind_testkit::raw::send(gw.admin, &req).await.body).into_owned();
    let line = metrics.lines().find_map(|l| l.strip_prefix("rewind_worker_threads "));
    line.map_or_else(|| "?".into(), |n| n.trim().to_owned())
}

/// Makes a time-travel view of `bucket` through the admin API: its key pair.
async fn make_view(gw: &GatewayProcess, bucket: &str) -> (String, String) {
    let token = std::fs::read_to_string(gw.data_dir.join("admin-token")).unwrap();
    let req = http::Request::post(format!("/admin/v1/views?bucket={bucket}&ttl=1h"))
        .header("authorization", format!("Bearer {}", token.trim()))
        .body(Vec::new())
        .unwrap();
    let res = rewind_testkit::raw::send(gw.admin, &req).await;
    let text = String::from_utf8_lossy(&res.body).into_owned();
    assert_eq!(res.status, 200, "{text}");
    let field = |name: &str| {
        let start = text.find(&format!("\"{name}\":\"")).unwrap() + name.len() + 4;
        text[start..start + text[start..].find('"').unwrap()].to_owned()
    };
    (field("access_key_id"), field("secret_access_key"))
}

/// Lists a whole bucket (1000 keys a page): the keys seen.
async fn list_all(client: &aws_sdk_s3::Client, bucket: &str) -> usize {
    let (mut count, mut token) = (0, None);
    loop {
        let out = client.list_objects_v2().bucket(bucket).set_continuation_token(token).send().await.unwrap();
        count += out.contents().len();
        match out.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return count,
        }
    }
}

/// GETs and a listing, live and through a view, on the capturing gateway. True when the
/// targets hold.
async fn views(gw: &GatewayProcess, quick: bool) -> bool {
    let live = client(&gw.endpoint, &gw.id, &gw.secret);
    let pid = gw.child.id().to_string();
    let keys = if quick { 20_000 } else { 100_000 };
    live.create_bucket().bucket("views").send().await.unwrap();
    live.create_bucket().bucket("many").send().await.unwrap();
    let gets = [
        Load {
            name: "GET 64 MiB x4",
            put: false,
            size: 64 * MIB,
            concurrency: 4,
            ops: 48,
            keys: 8,
            target: VIEW_GET_TARGET,
            capture_target: 0.0,
            cpu_us: 0.0,
            signed: false,
        },
        Load {
            name: "GET 4 KiB x32",
            put: false,
            size: 4096,
            concurrency: 32,
            ops: 20_000,
            keys: 1000,
            target: VIEW_GET_TARGET,
            capture_target: 0.0,
            cpu_us: 0.0,
            signed: false,
        },
    ];
    let started = Instant::now();
    for load in gets {
        let body = Bytes::from(pattern(load.size, load.size as u64));
        run(&live, "views", Load { put: true, ops: load.keys, ..load }, body).await;
    }
    let many = Load {
        name: "",
        put: true,
        size: 0,
        concurrency: 32,
        ops: keys,
        keys,
        target: 0.0,
        capture_target: 0.0,
        cpu_us: 0.0,
        signed: false,
    };
    run(&live, "many", many, Bytes::new()).await;
    println!(
        "rewind-bench --views: wrote 8 x 64 MiB, 1000 x 4 KiB and {keys} empty objects with capture in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // Making a view: through the admin API, on a journal of every write above.
    let mut made = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        make_view(gw, "many").await;
        made.push(start.elapsed().as_secs_f64() * 1e3);
    }
    made.sort_by(f64::total_cmp);
    println!(
        "view create (admin API, {} journal records): median {:.1} ms, max {:.1} ms (target < 100 ms)",
        keys * 2 + 2016,
        made[made.len() / 2],
        made[made.len() - 1]
    );
    let mut ok = made[made.len() - 1] < VIEW_CREATE_TARGET_MS;
    let (id, secret) = make_view(gw, "views").await;
    let view = client(&gw.endpoint, &id, &secret);
    let (many_id, many_secret) = make_view(gw, "many").await;
    let many_view = client(&gw.endpoint, &many_id, &many_secret);

    println!("{:<16} {:>14} {:>14} {:>10} {:>16} {:>16}", "load", "live", "view", "view/live", "live cpu", "view cpu");
    for load in gets {
        let body = Bytes::new();
        let measure = async |c: &aws_sdk_s3::Client| {
            run(c, "views", Load { ops: load.keys, ..load }, body.clone()).await; // warm-up
            let cpu = cpu_seconds(&pid);
            let o = run(c, "views", load, body.clone()).await;
            (o, cpu_seconds(&pid) - cpu)
        };
        let (l, l_cpu) = measure(&live).await;
        let (v, v_cpu) = measure(&view).await;
        let big = load.size >= MIB;
        let rate = |o: &Outcome| if big { o.mb_per_second() } else { o.per_second() };
        let cost = |o: &Outcome, cpu: f64| {
            if big {
                format!("{:.2} ns/B", cpu / o.bytes as f64 * 1e9)
            } else {
                format!("{:.0} us/op", cpu / o.ops as f64 * 1e6)
            }
        };
        let unit = if big { "MB/s" } else { "op/s" };
        let ratio = rate(&v) / rate(&l);
        ok &= ratio >= VIEW_GET_TARGET;
        println!(
            "{:<16} {:>9.0} {unit} {:>9.0} {unit} {:>9.1}% {:>16} {:>16}",
            load.name,
            rate(&l),
            rate(&v),
            ratio * 100.0,
            cost(&l, l_cpu),
            cost(&v, v_cpu)
        );
    }
    let timed = async |c: &aws_sdk_s3::Client| {
        let (cpu, start) = (cpu_seconds(&pid), Instant::now());
        let n = list_all(c, "many").await;
        (n, start.elapsed().as_secs_f64(), cpu_seconds(&pid) - cpu)
    };
    timed(&live).await; // warm-up
    let (n_live, t_live, cpu_live) = timed(&live).await;
    let (n_view, t_view, cpu_view) = timed(&many_view).await;
    assert_eq!((n_live, n_view), (keys, keys), "both listings see every key");
    let factor = t_view / t_live;
    ok &= factor <= VIEW_LIST_TARGET;
    println!(
        "{:<16} {:>11.2} s {:>11.2} s {:>9.2}x {:>13.1} us/key {:>10.1} us/key",
        format!("LIST {}k keys", keys / 1000),
        t_live,
        t_view,
        factor,
        cpu_live / keys as f64 * 1e6,
        cpu_view / keys as f64 * 1e6
    );
    println!(
        "targets: view GETs >= {:.0}% of live GETs through the gateway; a whole listing at a past instant within {VIEW_LIST_TARGET}x of live",
        VIEW_GET_TARGET * 100.0
    );
    ok
}
