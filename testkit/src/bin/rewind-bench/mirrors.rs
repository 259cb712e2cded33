//! `rewind-bench --mirrors`: PUT 64 MiB x4 through two capturing gateways, one whose vault
//! has two mirrors (directories on the same disk) and one without, side by side, with each
//! gateway's CPU per byte, and how far the mirrors fell behind: the largest
//! `rewind_mirror_lag_seconds` seen while the load ran, and how long after its last PUT
//! the mirrors held everything.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rewind_testkit::{FsUpstream, pattern};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{GatewayProcess, Load, MIB, Outcome, client, cpu_seconds, loads, run, start_gateway_with};

/// Each gateway's share of the load runs in this many slices, alternating.
const ROUNDS: usize = 4;
/// With mirrors, PUT 64 MiB must keep this share of the rate without.
const TARGET: f64 = 0.90;
/// The mirrors' steady-state lag must stay under this.
const LAG_TARGET: f64 = 10.0;

/// One metric family's values (`name{...} value` lines), from the gateway's /metrics.
async fn metric(gw: &GatewayProcess, name: &str) -> Vec<f64> {
    let Ok(mut stream) = tokio::net::TcpStream::connect(gw.admin).await else { return Vec::new() };
    let ask = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(ask.as_bytes()).await.is_err() {
        return Vec::new();
    }
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text).await;
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

pub(crate) async fn compare(binary: &Path, upstream: &FsUpstream, work: &Path, quick: bool) -> bool {
    let mirrors = format!(
        "[vault]\nmirrors = [{{ location = \"{}\" }}, {{ location = \"{}\" }}]\n",
        work.join("mirror-1").display(),
        work.join("mirror-2").display()
    );
    let with = start_gateway_with(binary, upstream, work, "mirrors-two", true, None, &mirrors).await;
    let without = start_gateway_with(binary, upstream, work, "mirrors-none", true, None, "").await;
    let via_with = client(&with.endpoint, &with.id, &with.secret);
    let via_without = client(&without.endpoint, &without.id, &without.secret);
    via_with.create_bucket().bucket("mirrors-two").send().await.unwrap();
    via_without.create_bucket().bucket("mirrors-none").send().await.unwrap();
    println!("rewind-bench --mirrors: capture with two vault mirrors and with none (same machine, same disk)");
    println!(
        "{:<16} {:>12} {:>12} {:>8} {:>15} {:>15} {:>9} {:>9}",
        "load", "2 mirrors", "none", "ratio", "gw cpu/B mirr.", "gw cpu/B none", "max lag", "drained"
    );
    let mut ok = true;
    for load in loads(quick).into_iter().filter(|l| l.put && !l.signed && l.size >= MIB) {
        let body = Bytes::from(pattern(load.size, load.size as u64));
        let slice = Load { ops: load.ops / ROUNDS, ..load };
        let (mut a, mut b, mut cpu_a, mut cpu_b) = (Outcome::default(), Outcome::default(), 0.0, 0.0);
        let (mut max_lag, mut drained) = (0.0f64, Duration::ZERO);
        for round in 0..ROUNDS {
            for mirrored in [round % 2 == 0, round % 2 == 1] {
                if !mirrored {
                    let before = cpu_seconds(&without.child.id().to_string());
                    b += run(&via_without, "mirrors-none", slice, body.clone()).await;
                    cpu_b += cpu_seconds(&without.child.id().to_string()) - before;
                    continue;
                }
                let before = cpu_seconds(&with.child.id().to_string());
                // The largest lag seen while the load runs, sampled beside it.
                let seen = std::cell::Cell::new(max_lag);
                let sampling = async {
                    loop {
                        let lag = metric(&with, "rewind_mirror_lag_seconds").await;
                        seen.set(lag.into_iter().fold(seen.get(), f64::max));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                };
                tokio::select! {
                    outcome = run(&via_with, "mirrors-two", slice, body.clone()) => a += outcome,
                    () = sampling => {}
                }
                max_lag = seen.get();
                cpu_a += cpu_seconds(&with.child.id().to_string()) - before;
                let last_put = Instant::now();
                loop {
                    let pending = metric(&with, "rewind_mirror_pending_objects").await;
                    let lag = metric(&with, "rewind_mirror_lag_seconds").await;
                    max_lag = lag.into_iter().fold(max_lag, f64::max);
                    if !pending.is_empty() && pending.iter().all(|p| *p == 0.0) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                drained = drained.max(last_put.elapsed());
            }
        }
        let ratio = a.mb_per_second() / b.mb_per_second();
        ok &= ratio >= TARGET && max_lag < LAG_TARGET;
        println!(
            "{:<16} {:>7.0} MB/s {:>7.0} MB/s {:>7.1}% {:>10.2} ns/B {:>10.2} ns/B {:>7.1} s {:>7.1} s",
            load.name,
            a.mb_per_second(),
            b.mb_per_second(),
            ratio * 100.0,
            cpu_a / a.bytes as f64 * 1e9,
            cpu_b / b.bytes as f64 * 1e9,
            max_lag,
            drained.as_secs_f64(),
        );
        println!(
            "{:<16} target: with mirrors >= {:.0}% of without; mirror lag < {LAG_TARGET:.0} s",
            "",
            TARGET * 100.0
        );
    }
    ok
}
