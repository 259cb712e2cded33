//! Human output: aligned tables and short summaries.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rewind_snapshotter::api::{
    DiffReport, Listing, LogLine, Mode, ObjectInfo, PlanSummary, ReconcileCounts, Snapshot, Status, VerifyReport,
};

use crate::RestoreArgs;

/// `1536` → `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Prints rows with columns padded to their widest cell (the last column unpadded).
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == last { (*c).to_owned() } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn object_row(o: &ObjectInfo) -> Vec<String> {
    vec![o.time.clone(), o.size.to_string(), o.etag.clone(), o.key.clone()]
}

pub fn listing(l: &Listing) {
    table(&["MODIFIED", "SIZE", "ETAG", "KEY"], &l.objects.iter().map(object_row).collect::<Vec<_>>());
    let total: u64 = l.objects.iter().map(|o| o.size).sum();
    println!("{} objects, {} as of seq:{}", l.objects.len(), bytes(total), l.seq);
}

pub fn log(lines: &[LogLine]) {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            vec![
                l.seq.to_string(),
                l.time.clone(),
                l.op.clone(),
                l.size.map_or_else(|| "-".into(), |s| s.to_string()),
                l.etag.clone().unwrap_or_else(|| "-".into()),
                if l.access_key.is_empty() { "-".into() } else { l.access_key.clone() },
                l.request_id.clone(),
            ]
        })
        .collect();
    table(&["SEQ", "TIME", "OP", "SIZE", "ETAG", "ACCESS KEY", "REQUEST"], &rows);
}

pub fn diff(d: &DiffReport) {
    let mut rows = Vec::new();
    rows.extend(d.added.iter().map(|o| vec!["+".into(), o.size.to_string(), o.key.clone()]));
    rows.extend(d.changed.iter().map(|(a, b)| vec!["~".into(), format!("{} -> {}", a.size, b.size), b.key.clone()]));
    rows.extend(d.deleted.iter().map(|o| vec!["-".into(), o.size.to_string(), o.key.clone()]));
    rows.sort_by(|a, b| a[2].cmp(&b[2]));
    table(&["", "SIZE", "KEY"], &rows);
    println!(
        "seq:{} -> seq:{}: {} added, {} changed, {} deleted",
        d.from_seq,
        d.to_seq,
        d.added.len(),
        d.changed.len(),
        d.deleted.len()
    );
}

pub fn snapshots(s: &[Snapshot]) {
    let rows: Vec<Vec<String>> =
        s.iter().map(|s| vec![s.name.clone(), format!("seq:{}", s.seq), s.time.clone(), s.created.clone()]).collect();
    table(&["NAME", "AT", "TIME", "CREATED"], &rows);
}

pub fn verify(r: &VerifyReport) {
    println!(
        "Checked {} records, {} versions, {} chunks ({} read back).",
        r.records, r.versions, r.chunks, r.chunks_read
    );
    for p in &r.journal_problems {
        println!("journal: {p}");
    }
    for d in &r.damaged {
        println!("damaged: {}/{} (seq:{}): {}", d.bucket, d.key, d.seq, d.problem);
    }
    if r.ok() {
        println!("No damage found.");
    } else {
        println!(
            "DAMAGE: {} journal problem(s), {} damaged version(s). Other versions of damaged keys may still restore: see `rewind log`.",
            r.journal_problems.len(),
            r.damaged.len()
        );
    }
}

pub fn status(s: &Status) {
    println!("journal head:       seq:{} {}", s.head_seq, s.head_time);
    println!("last checkpoint:    {}", s.last_checkpoint_seq.map_or_else(|| "none yet".into(), |c| format!("seq:{c}")));
    println!("unresolved intents: {}", s.unresolved_intents);
    println!("vault:              {}", s.vault_location);
    println!(
        "vault size:         {} of versions stored in {} ({} chunks), dedup ratio {:.2}",
        bytes(s.logical_bytes),
        bytes(s.stored_bytes),
        s.chunks,
        s.dedup_ratio
    );
    println!("snapshots:          {}", s.snapshots);
    let rows: Vec<Vec<String>> = s
        .buckets
        .iter()
        .map(|b| vec![b.name.clone(), b.objects.to_string(), bytes(b.bytes), b.versions.to_string()])
        .collect();
    println!();
    table(&["BUCKET", "OBJECTS", "SIZE", "VERSIONS"], &rows);
}

pub fn plan(p: &PlanSummary, mode: Mode) {
    println!("Restore plan for {} as of seq:{}:", p.to_bucket, p.seq);
    println!("  write  {} objects ({})", p.writes, bytes(p.write_bytes));
    println!("  delete {} objects", p.deletes);
    println!("  {} already as they were", p.unchanged);
    if p.kept > 0 && mode == Mode::NonDestructive {
        println!("  {} keys differ or are new and are left as they are (--mode rewind restores them too)", p.kept);
    }
    for k in &p.sample_writes {
        println!("    write  {k}");
    }
    for k in &p.sample_deletes {
        println!("    delete {k}");
    }
    let more = (p.writes + p.deletes).saturating_sub((p.sample_writes.len() + p.sample_deletes.len()) as u64);
    if more > 0 {
        println!("    ... and {more} more");
    }
}

pub fn done(args: &RestoreArgs, written: u64, deleted: u64, failed: u64, bytes_written: u64, before: u64, to: &str) {
    println!("Restored {written} objects ({}), deleted {deleted}, {failed} failed.", bytes(bytes_written));
    if failed > 0 {
        println!("Run the same command again to retry what failed; what is done is not redone.");
    }
    let mut scope = if args.prefix.is_empty() { String::new() } else { format!(" --prefix {}", args.prefix) };
    if let Some(key) = &args.key {
        scope.push_str(&format!(" --key {key}"));
    }
    println!("To undo this restore: rewind restore --bucket {to} --at seq:{before}{scope} --mode rewind");
}

pub fn progress_bar(total: u64, hidden: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} objects, {msg}, {elapsed} (eta {eta})")
            .expect("invariant: the template is valid"),
    );
    bar
}

pub fn reconcile_counts(c: &ReconcileCounts) -> String {
    format!(
        "{} listed, {} unchanged, {} captured ({}), {} found deleted, {} failed",
        c.listed,
        c.unchanged,
        c.captured,
        bytes(c.captured_bytes),
        c.deleted,
        c.failed
    )
}

pub fn spinner(hidden: bool) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("invariant: the template is valid"),
    );
    bar
}
