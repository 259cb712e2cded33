//! `rewind-bench --tripwire`: PUT 4 KiB x32 through two capturing gateways, one with the
//! ransomware tripwire on (the default) and one with it off, side by side, with each
//! gateway's CPU per operation. The PUTs overwrite existing keys, so detection does all
//! its work: counting, and reading whether the old and the new versions' chunks compress.

use std::path::Path;

use bytes::Bytes;
use rewind_testkit::{FsUpstream, pattern};

use crate::{Load, Outcome, client, cpu_seconds, loads, run, start_gateway_with};

/// Each gateway's share of the load runs in this many slices, alternating.
const ROUNDS: usize = 4;
/// Detection on must keep this share of the PUT rate with it off.
const TARGET: f64 = 0.95;

pub(crate) async fn compare(binary: &Path, upstream: &FsUpstream, work: &Path, quick: bool) -> bool {
    let on = start_gateway_with(binary, upstream, work, "tripwire-on", true, None, "").await;
    let off =
        start_gateway_with(binary, upstream, work, "tripwire-off", true, None, "[tripwire]\nenabled = false\n").await;
    let via_on = client(&on.endpoint, &on.id, &on.secret);
    let via_off = client(&off.endpoint, &off.id, &off.secret);
    via_on.create_bucket().bucket("tripwire-on").send().await.unwrap();
    via_off.create_bucket().bucket("tripwire-off").send().await.unwrap();
    println!("rewind-bench --tripwire: capture with the ransomware tripwire on and off (same machine)");
    println!(
        "{:<16} {:>12} {:>12} {:>8} {:>13} {:>13}",
        "load", "on", "off", "on/off", "gw cpu/op on", "gw cpu/op off"
    );
    let mut ok = true;
    for load in loads(quick).into_iter().filter(|l| l.put && !l.signed && l.size < 1 << 20) {
        let body = Bytes::from(pattern(load.size, load.size as u64));
        // Every key written once first: what follows overwrites.
        let warm = Load { ops: load.keys, ..load };
        run(&via_on, "tripwire-on", warm, body.clone()).await;
        run(&via_off, "tripwire-off", warm, body.clone()).await;
        let slice = Load { ops: load.ops / ROUNDS, ..load };
        let (mut a, mut b, mut cpu_a, mut cpu_b) = (Outcome::default(), Outcome::default(), 0.0, 0.0);
        for round in 0..ROUNDS {
            for first in [round % 2 == 0, round % 2 == 1] {
                let (gw, via, bucket, out, cpu) = if first {
                    (&on, &via_on, "tripwire-on", &mut a, &mut cpu_a)
                } else {
                    (&off, &via_off, "tripwire-off", &mut b, &mut cpu_b)
                };
                let before = cpu_seconds(&gw.child.id().to_string());
                *out += run(via, bucket, slice, body.clone()).await;
                *cpu += cpu_seconds(&gw.child.id().to_string()) - before;
            }
        }
        let ratio = a.per_second() / b.per_second();
        ok &= ratio >= TARGET;
        println!(
            "{:<16} {:>7.0} op/s {:>7.0} op/s {:>7.1}% {:>10.0} us {:>10.0} us",
            load.name,
            a.per_second(),
            b.per_second(),
            ratio * 100.0,
            cpu_a / a.ops as f64 * 1e6,
            cpu_b / b.ops as f64 * 1e6,
        );
        println!("{:<16} target: on >= {:.0}% of off", "", TARGET * 100.0);
    }
    ok
}
