//! `rewind-bench --journal-postgres`: capture with the journal in RocksDB and in
//! PostgreSQL, side by side, with the database's own cost per mutation.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use rewind_testkit::{FsUpstream, pattern};

use crate::{Load, MIB, Outcome, client, cpu_seconds, loads, run, start_gateway_on};

/// Each engine's share of a load runs in this many slices, alternating.
const ROUNDS: usize = 4;

/// The database's own counters: transactions committed, rows inserted, updated, deleted.
fn pg_counters(url: &str) -> [f64; 4] {
    let sql = "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()";
    let out = Command::new("psql").args(["-At", "-F", " ", url, "-c", sql]).output().expect("psql runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut n = text.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    std::array::from_fn(|_| n.next().unwrap_or(f64::NAN))
}

/// CPU seconds of every PostgreSQL server process on the machine (the bench's own server).
fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return f64::NAN };
    dir.filter_map(|e| e.ok())
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres"))
        .map(|e| cpu_seconds(&e.file_name().to_string_lossy()))
        .filter(|c| c.is_finite())
        .sum()
}

/// PUTs through a capturing gateway on RocksDB and one on PostgreSQL, side by side.
pub(crate) async fn engines(binary: &Path, upstream: &FsUpstream, work: &Path, quick: bool) -> bool {
    let server = rewind_journal::conformance::test_server();
    let url = server.create_database();
    let rocks = start_gateway_on(binary, upstream, work, "journal-rocksdb", true, None).await;
    let pg = start_gateway_on(binary, upstream, work, "journal-postgres", true, Some(&url)).await;
    let via_rocks = client(&rocks.endpoint, &rocks.id, &rocks.secret);
    let via_pg = client(&pg.endpoint, &pg.id, &pg.secret);
    via_rocks.create_bucket().bucket("on-rocksdb").send().await.unwrap();
    via_pg.create_bucket().bucket("on-postgres").send().await.unwrap();
    println!("rewind-bench --journal-postgres: capture with the journal in RocksDB and in PostgreSQL (same machine)");
    println!(
        "{:<16} {:>14} {:>14} {:>9} {:>12} {:>12} {:>9} {:>9} {:>12}",
        "load", "rocksdb", "postgres", "pg/rocks", "gw cpu/op R", "gw cpu/op P", "xact/op", "rows/op", "pg cpu/op"
    );
    let mut ok = true;
    for (load, target) in loads(quick).into_iter().filter(|l| l.put && !l.signed).zip([0.90, 0.60]) {
        let body = Bytes::from(pattern(load.size, load.size as u64));
        let warm = Load { ops: load.keys, ..load };
        run(&via_rocks, "on-rocksdb", warm, body.clone()).await;
        run(&via_pg, "on-postgres", warm, body.clone()).await;
        // Rounds alternate which engine goes first, so drift on the machine (page cache,
        // writeback of the bytes just written) falls on both alike.
        let slice = Load { ops: load.ops / ROUNDS, ..load };
        let (mut r, mut p) = (Outcome::default(), Outcome::default());
        let (mut rocks_cpu, mut gw_cpu, mut server_cpu, mut database) = (0.0, 0.0, 0.0, [0.0; 4]);
        for round in 0..ROUNDS {
            for on_rocks in [round % 2 == 0, round % 2 == 1] {
                if on_rocks {
                    let cpu = cpu_seconds(&rocks.child.id().to_string());
                    r += run(&via_rocks, "on-rocksdb", slice, body.clone()).await;
                    rocks_cpu += cpu_seconds(&rocks.child.id().to_string()) - cpu;
                    continue;
                }
                tokio::time::sleep(Duration::from_secs(1)).await; // the statistics reach the view
                let (before, pg_cpu_before, cpu) =
                    (pg_counters(&url), postgres_cpu_seconds(), cpu_seconds(&pg.child.id().to_string()));
                p += run(&via_pg, "on-postgres", slice, body.clone()).await;
                gw_cpu += cpu_seconds(&pg.child.id().to_string()) - cpu;
                server_cpu += postgres_cpu_seconds() - pg_cpu_before;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let after = pg_counters(&url);
                for (d, (a, b)) in database.iter_mut().zip(after.iter().zip(before)) {
                    *d += a - b;
                }
            }
        }
        let per_op = |i: usize| database[i] / p.ops as f64;
        let rate = |o: &Outcome| if load.size >= MIB { o.mb_per_second() } else { o.per_second() };
        let unit = if load.size >= MIB { "MB/s" } else { "op/s" };
        let ratio = rate(&p) / rate(&r);
        ok &= ratio >= target;
        println!(
            "{:<16} {:>9.0} {unit} {:>9.0} {unit} {:>8.1}% {:>9.0} us {:>9.0} us {:>9.2} {:>9.2} {:>9.0} us",
            load.name,
            rate(&r),
            rate(&p),
            ratio * 100.0,
            rocks_cpu / r.ops as f64 * 1e6,
            gw_cpu / p.ops as f64 * 1e6,
            per_op(0),
            per_op(1) + per_op(2) + per_op(3),
            server_cpu / p.ops as f64 * 1e6,
        );
        println!("{:<16} target: postgres >= {:.0}% of rocksdb", "", target * 100.0);
    }
    ok
}
