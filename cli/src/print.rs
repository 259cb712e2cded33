//! Human output: aligned tables and short summaries.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rewind_snapshotter::api::{
    BucketStatus, DiffReport, ForgetPlan, ForgetReport, GcPlan, GcProgress, GcReport, HoldInfo, Listing, LogLine, Mode,
    ObjectInfo, PlanSummary, ReconcileCounts, Snapshot, Status, VerifyReport, ViewInfo,
};

use crate::RestoreArgs;

/// An object key (or bucket name) as it may be shown on a terminal: control characters,
/// and the Unicode controls that reorder text, are escaped. A key is customer data and
/// may be chosen by whoever writes to the bucket: raw, `\x1b[1A\x1b[2K` in a key erased
/// lines of the restore plan the operator was confirming (review F15).
pub fn key(k: &str) -> std::borrow::Cow<'_, str> {
    let reorders = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !k.chars().any(|c| c.is_control() || reorders(c)) {
        return std::borrow::Cow::Borrowed(k);
    }
    let mut out = String::with_capacity(k.len() + 8);
    for c in k.chars() {
        if c.is_control() || reorders(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

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
        outln!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn object_row(o: &ObjectInfo) -> Vec<String> {
    vec![o.time.clone(), o.size.to_string(), key(&o.etag).into_owned(), key(&o.key).into_owned()]
}

pub fn listing(l: &Listing) {
    table(&["MODIFIED", "SIZE", "ETAG", "KEY"], &l.objects.iter().map(object_row).collect::<Vec<_>>());
    let total: u64 = l.objects.iter().map(|o| o.size).sum();
    outln!("{} objects, {} as of seq:{}", l.objects.len(), bytes(total), l.seq);
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
                l.etag.as_deref().map_or_else(|| "-".into(), |e| key(e).into_owned()),
                if l.access_key.is_empty() { "-".into() } else { key(&l.access_key).into_owned() },
                key(&l.request_id).into_owned(),
            ]
        })
        .collect();
    table(&["SEQ", "TIME", "OP", "SIZE", "ETAG", "ACCESS KEY", "REQUEST"], &rows);
}

pub fn diff(d: &DiffReport) {
    let mut rows = Vec::new();
    rows.extend(d.added.iter().map(|o| vec!["+".into(), o.size.to_string(), key(&o.key).into_owned()]));
    rows.extend(
        d.changed.iter().map(|(a, b)| vec!["~".into(), format!("{} -> {}", a.size, b.size), key(&b.key).into_owned()]),
    );
    rows.extend(d.deleted.iter().map(|o| vec!["-".into(), o.size.to_string(), key(&o.key).into_owned()]));
    rows.sort_by(|a, b| a[2].cmp(&b[2]));
    table(&["", "SIZE", "KEY"], &rows);
    outln!(
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

pub fn view_made(v: &ViewInfo) {
    let endpoint = v.endpoint.as_deref().unwrap_or("<the gateway's S3 endpoint>");
    let secret = v.secret_access_key.as_deref().unwrap_or("<not shown>");
    outln!(
        "Created a read-only view of bucket {} at seq:{} (asked for {}; last change {}), open until {}.\n\n    access key id:     {}\n    secret access key: {}\n    endpoint:          {}\n\nRead the past with any S3 client:\n\n    export AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_DEFAULT_REGION=us-east-1\n    aws --endpoint-url {} s3 ls s3://{}/\n\nRemove it with `rewind view rm {}`.",
        v.bucket,
        v.seq,
        v.at,
        v.last_change,
        v.expires,
        v.access_key_id,
        secret,
        endpoint,
        v.access_key_id,
        secret,
        endpoint,
        v.bucket,
        v.access_key_id,
    );
}

pub fn views(views: &[ViewInfo]) {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.access_key_id.clone(),
                key(&v.bucket).into_owned(),
                format!("seq:{}", v.seq),
                v.at.clone(),
                v.expires.clone(),
            ]
        })
        .collect();
    table(&["ACCESS KEY ID", "BUCKET", "AT", "TIME", "EXPIRES"], &rows);
    if views.is_empty() {
        outln!("No view is open: `rewind view create --bucket B --at T` makes one.");
    }
}

pub fn forget(plan: &ForgetPlan) {
    outln!("Retention as of {} (nothing was changed):", plan.at);
    let rows: Vec<Vec<String>> = plan
        .buckets
        .iter()
        .map(|b| {
            vec![
                key(&b.bucket).into_owned(),
                format!("{} of {}", b.versions_expired, b.versions),
                b.entries_expired.to_string(),
                bytes(b.bytes_expired),
                b.kept_positions.to_string(),
                b.policy.clone(),
            ]
        })
        .collect();
    table(&["BUCKET", "VERSIONS EXPIRED", "ENTRIES", "BYTES ONLY THEY HOLD", "KEPT POSITIONS", "POLICY"], &rows);
    if plan.buckets.is_empty() {
        outln!("No bucket has history yet.");
    }
}

pub fn forget_report(r: &ForgetReport) {
    let versions: u64 = r.plan.buckets.iter().map(|b| b.versions_expired).sum();
    outln!(
        "Forgot {versions} expired versions: {} journal records removed; the journal's horizon is now seq:{}.",
        r.records_removed,
        r.horizon
    );
    if r.base_written || r.vault_objects_deleted > 0 {
        outln!("The vault's copy of the journal was compacted ({} old objects deleted).", r.vault_objects_deleted);
    }
    outln!("Run `rewind gc` to reclaim the vault space only they used.");
}

pub fn gc(p: &GcPlan) {
    outln!("Garbage collection as of {} (nothing was changed):", p.at);
    outln!(
        "  {} of {} packs hold nothing kept: {} to reclaim after the grace period",
        p.packs_dead,
        p.packs,
        bytes(p.bytes_in_dead_packs)
    );
    outln!(
        "  {} packs hold dead chunks among live ones: {} to repack",
        p.packs_partly_dead,
        bytes(p.bytes_dead_in_live_packs)
    );
    outln!(
        "  live {}, expired by the policy {}, referenced by no version {}",
        bytes(p.bytes_live),
        bytes(p.bytes_expired),
        bytes(p.bytes_unreferenced)
    );
    if p.packs_unindexed > 0 {
        outln!("  {} packs the chunk index does not name", p.packs_unindexed);
    }
}

pub fn gc_progress(p: &GcProgress) -> String {
    if p.total == 0 {
        format!("collecting garbage: {}", p.phase)
    } else {
        format!("collecting garbage: {} {}/{} packs", p.phase, p.done, p.total)
    }
}

pub fn gc_report(r: &GcReport) {
    outln!("Garbage collection at {}: {} packs in the vault.", r.at, r.packs);
    outln!("  deleted {} packs, reclaiming {}", r.packs_deleted, bytes(r.bytes_reclaimed));
    outln!(
        "  condemned {} packs ({}); {} wait out the grace period",
        r.packs_condemned,
        bytes(r.bytes_condemned),
        r.packs_waiting
    );
    if r.packs_rescued > 0 {
        outln!("  rescued {} condemned packs that something needs again", r.packs_rescued);
    }
    if r.packs_locked > 0 {
        outln!("  {} packs are under Object Lock: tried again after their retain-until date", r.packs_locked);
    }
    if r.packs_failed > 0 {
        outln!(
            "  {} packs could not be read or deleted (the gateway's log says why): the next pass tries again",
            r.packs_failed
        );
    }
}

pub fn holds(holds: &[HoldInfo]) {
    let rows: Vec<Vec<String>> = holds
        .iter()
        .map(|h| {
            let what = match (&h.key, &h.prefix) {
                (Some(k), _) => format!("key {}", key(k)),
                (None, Some(p)) if !p.is_empty() => format!("prefix {}", key(p)),
                _ => "the whole bucket".to_owned(),
            };
            vec![key(&h.bucket).into_owned(), what, key(&h.reason).into_owned(), h.created.clone()]
        })
        .collect();
    table(&["BUCKET", "HOLDS", "REASON", "PLACED"], &rows);
    if holds.is_empty() {
        outln!("No holds.");
    }
}

/// What a hold covers, in words.
pub fn hold_scope(t: &crate::HoldTarget) -> String {
    match (&t.key, &t.prefix) {
        (Some(k), _) => format!("key {} of bucket {}", key(k), key(&t.bucket)),
        (None, Some(p)) if !p.is_empty() => format!("prefix {} of bucket {}", key(p), key(&t.bucket)),
        _ => format!("bucket {}", key(&t.bucket)),
    }
}

pub fn verify(r: &VerifyReport) {
    let n = |count: u64, word: &str| format!("{count} {}", plural(count, word));
    outln!(
        "Checked {}, {}, {}, {} ({} read back), {} in the vault.",
        n(r.records, "record"),
        n(r.checkpoints, "checkpoint"),
        n(r.versions, "version"),
        n(r.chunks, "chunk"),
        r.chunks_read,
        n(r.segments, "segment")
    );
    for p in &r.journal_problems {
        outln!("journal: {p}");
    }
    for d in &r.damaged {
        outln!("damaged: {}/{} (seq:{}): {}", key(&d.bucket), key(&d.key), d.seq, d.problem);
    }
    if r.ok() {
        outln!("No damage found.");
    } else {
        outln!(
            "DAMAGE: {} journal problem(s), {} damaged version(s). Other versions of damaged keys may still restore: see `rewind log`.",
            r.journal_problems.len(),
            r.damaged.len()
        );
    }
}

pub fn status(s: &Status) {
    outln!("journal head:       seq:{} {}", s.head_seq, s.head_time);
    outln!("shipped to vault:   seq:{} (a rebuild from the vault recovers up to here)", s.shipped_seq);
    outln!(
        "signed checkpoint:  {} (verify checks the chain against it)",
        s.last_checkpoint_seq.map_or_else(|| "none yet".into(), |c| format!("seq:{c}"))
    );
    outln!("unresolved intents: {}", s.unresolved_intents);
    outln!("vault:              {}", s.vault_location);
    outln!(
        "vault size:         {} of versions stored in {} ({} chunks), dedup ratio {:.2}",
        bytes(s.logical_bytes),
        bytes(s.stored_bytes),
        s.chunks,
        s.dedup_ratio
    );
    outln!("snapshots:          {}", s.snapshots);
    outln!();
    buckets(&s.buckets);
}

/// The buckets with history: objects and bytes now, versions kept.
pub fn buckets(list: &[BucketStatus]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| vec![key(&b.name).into_owned(), b.objects.to_string(), bytes(b.bytes), b.versions.to_string()])
        .collect();
    table(&["BUCKET", "OBJECTS", "SIZE", "VERSIONS"], &rows);
}

pub fn plan(p: &PlanSummary, mode: Mode) {
    outln!("Restore plan for {} as of seq:{}:", p.to_bucket, p.seq);
    outln!("  write  {} {} ({})", p.writes, plural(p.writes, "object"), bytes(p.write_bytes));
    outln!("  delete {} {}", p.deletes, plural(p.deletes, "object"));
    outln!("  {} already as they were", p.unchanged);
    if p.kept > 0 && mode == Mode::NonDestructive {
        outln!("  {} keys differ or are new and are left as they are (--mode rewind restores them too)", p.kept);
    }
    for k in &p.sample_writes {
        outln!("    write  {}", key(k));
    }
    for k in &p.sample_deletes {
        outln!("    delete {}", key(k));
    }
    let more = (p.writes + p.deletes).saturating_sub((p.sample_writes.len() + p.sample_deletes.len()) as u64);
    if more > 0 {
        outln!("    ... and {more} more");
    }
}

/// `rewind incidents ls`.
pub fn incidents(list: &[rewind_capture::tripwire::Incident]) {
    if list.is_empty() {
        outln!("No incidents.");
        return;
    }
    outln!("{:<16} {:<13} {:<20} {:<24} {:<25} signals", "id", "state", "actor", "bucket", "opened");
    for i in list {
        let state = format!("{:?}/{:?}", i.state, i.action).to_lowercase();
        outln!(
            "{:<16} {:<13} {:<20} {:<24} {:<25} {}",
            i.id,
            state,
            i.actor,
            i.bucket,
            i.opened_at,
            i.signals.join(",")
        );
    }
}

/// `rewind incidents show`.
pub fn incident(i: &rewind_capture::tripwire::Incident) {
    outln!("incident  {}", i.id);
    outln!("state     {:?} ({:?} mode)", i.state, i.action);
    outln!("actor     {}", i.actor);
    outln!("bucket    {}", i.bucket);
    outln!("opened    {}", i.opened_at);
    outln!("positions seq:{} to seq:{}", i.first_seq, i.last_seq);
    outln!("signals   {}", i.signals.join(", "));
    let c = &i.counts;
    outln!(
        "counts    {} overwrites ({} encrypted, {} SSE-C), {} deletes, {} created, {} expiring lifecycle rules",
        c.overwrites,
        c.encrypted_overwrites,
        c.sse_c_overwrites,
        c.deletes,
        c.created,
        c.expiring_lifecycle
    );
    if let Some(at) = &i.acknowledged_at {
        outln!("acked     {at}");
    }
    outln!("Undo what it did: rewind undo --incident {} --dry-run", i.id);
}

pub fn undo_plan(p: &PlanSummary, actor: &str) {
    outln!("Undo plan for {}: what {actor} changed, up to seq:{}:", p.to_bucket, p.seq);
    outln!("  write  {} {} back ({})", p.writes, plural(p.writes, "object"), bytes(p.write_bytes));
    outln!("  delete {} {} it created", p.deletes, plural(p.deletes, "object"));
    outln!("  {} already as they were", p.unchanged);
    for k in &p.sample_writes {
        outln!("    write  {}", key(k));
    }
    for k in &p.sample_deletes {
        outln!("    delete {}", key(k));
    }
    if !p.conflicts.is_empty() {
        outln!(
            "  {} {} changed by others since, left alone (--force reverts them too, losing those changes):",
            p.conflicts.len(),
            plural(p.conflicts.len() as u64, "key")
        );
        for c in p.conflicts.iter().take(10) {
            outln!("    {} (changed by {})", key(&c.key), c.others.join(", "));
        }
    }
}

pub fn done(args: &RestoreArgs, written: u64, deleted: u64, failed: u64, bytes_written: u64, before: u64, to: &str) {
    outln!(
        "Restored {written} {} ({}), deleted {deleted}, {failed} failed.",
        plural(written, "object"),
        bytes(bytes_written)
    );
    if failed > 0 {
        outln!("Run the same command again to retry what failed; what is done is not redone.");
    }
    undo_hint(args, before, to);
}

/// What a restore interrupted with Ctrl-C tells the operator.
pub fn interrupted(args: &RestoreArgs, done: u64, total: u64, before: u64, to: &str) {
    eprintln!(
        "Interrupted after {done} of {total} objects: the gateway finishes the objects in flight and stops.\nRun the same command again to restore the rest; what is done is not redone."
    );
    undo_hint(args, before, to);
}

/// Why a restore has nothing to do: all as it was, or nothing in scope at either time
/// (a mistyped key or prefix, more likely than a restore with no effect).
pub fn nothing_to_restore(plan: &PlanSummary, args: &RestoreArgs) {
    if plan.unchanged + plan.kept > 0 {
        outln!("Nothing to restore: {} is already as it was.", plan.to_bucket);
        return;
    }
    let at = &args.at;
    match &args.key {
        Some(k) => outln!(
            "Nothing to restore: {} had no version at {at}, and {} has none now; `rewind log --bucket {} --key {}` shows its history.",
            key(k),
            plan.to_bucket,
            args.bucket,
            key(k)
        ),
        None if !args.prefix.is_empty() => outln!(
            "Nothing to restore: no key under {} in {} at {at}, and none in {} now.",
            key(&args.prefix),
            args.bucket,
            plan.to_bucket
        ),
        None => {
            outln!("Nothing to restore: {} had no objects at {at}, and {} has none now.", args.bucket, plan.to_bucket)
        }
    }
}

/// The command that undoes a restore, with what it also reverts.
fn undo_hint(args: &RestoreArgs, before: u64, to: &str) {
    let mut scope = if args.prefix.is_empty() { String::new() } else { format!(" --prefix {}", key(&args.prefix)) };
    if let Some(k) = &args.key {
        scope.push_str(&format!(" --key {}", key(k)));
    }
    outln!("To undo this restore: rewind restore --bucket {to} --at seq:{before}{scope} --mode rewind");
    outln!(
        "(it also reverts whatever was written to these keys after the restore: look at its plan with --dry-run first)"
    );
}

/// `1 object`, `2 objects`.
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 { word.to_owned() } else { format!("{word}s") }
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
    bar.set_message(bytes(0));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_drive_the_terminal() {
        assert_eq!(
            key("report.csv\u{1b}[1A\u{1b}[2K\u{1b}[32mall good"),
            "report.csv\\u{1b}[1A\\u{1b}[2K\\u{1b}[32mall good"
        );
        assert_eq!(key("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(key("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(key("ünïcødé/plain key.txt"), "ünïcødé/plain key.txt");
    }
}
