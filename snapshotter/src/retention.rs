//! What a retention policy keeps, and so what it may expire.
//!
//! A policy promises instants: every instant within `keep_all_within`, the end of each of
//! the last N hours, days, weeks, months and years before that window (of those that had
//! changes, as restic and kopia count them), and every named snapshot. The state of a bucket
//! at an instant is decided by its last commit at or before it, so the promise comes down
//! to a set of *kept positions*: the commits that decide a promised instant.
//!
//! A key's entry (a new version, a delete, a tag change) is current from its position to
//! the key's next entry. An entry is needed when some kept position falls where it is
//! current; a version also stays needed while later tag changes still describe it. Every
//! other entry is expired: no promised instant reads it. The plan is computed here, apart
//! from any deletion, so that what is kept can be tested on its own.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use rewind_config::{RetentionConfig, RetentionPolicy};
use rewind_journal::{Journal, indexed_change};
use rewind_model::{ChunkId, Effect, Seq};

use crate::HistoryError;
use crate::api::{ForgetBucket, ForgetPlan, time_text};

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// A period of the calendar (UTC) a policy thins by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Hour,
    Day,
    /// ISO weeks, Monday first.
    Week,
    Month,
    Year,
}

impl Period {
    /// Which period `timestamp_us` falls in, as a number that grows with time.
    fn of(self, timestamp_us: i64) -> i64 {
        let days = timestamp_us.div_euclid(DAY_US);
        match self {
            Self::Hour => timestamp_us.div_euclid(HOUR_US),
            Self::Day => days,
            // 1970-01-01 was a Thursday: shift so that weeks start on Monday.
            Self::Week => (days + 3).div_euclid(7),
            Self::Month => {
                let (y, m, _) = civil_from_days(days);
                y * 12 + i64::from(m) - 1
            }
            Self::Year => civil_from_days(days).0,
        }
    }
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The positions a policy keeps in one bucket, as of `now_us`.
///
/// `commits` are the bucket's commit positions and times, in order (times never decrease
/// along the journal); `labels` are the positions of named snapshots.
pub fn kept_positions(policy: &RetentionPolicy, now_us: i64, commits: &[(Seq, i64)], labels: &[Seq]) -> BTreeSet<Seq> {
    let mut kept = BTreeSet::new();
    let window = i64::try_from(policy.keep_all_within.as_micros()).unwrap_or(i64::MAX);
    let window_start = now_us.saturating_sub(window);
    // Every commit in the window, and the one that decides the state at its start.
    let before = commits.partition_point(|&(_, ts)| ts <= window_start);
    kept.extend(commits[before..].iter().map(|&(seq, _)| seq));
    if let Some(&(seq, _)) = before.checked_sub(1).and_then(|i| commits.get(i)) {
        kept.insert(seq);
    }
    // Before the window: the last commit of each of the latest N periods of each kind.
    let older = &commits[..before];
    for (period, count) in [
        (Period::Hour, policy.keep_hourly),
        (Period::Day, policy.keep_daily),
        (Period::Week, policy.keep_weekly),
        (Period::Month, policy.keep_monthly),
        (Period::Year, policy.keep_yearly),
    ] {
        let mut left = count;
        let mut last_period = None;
        for &(seq, ts) in older.iter().rev() {
            if left == 0 {
                break;
            }
            let p = period.of(ts);
            if last_period != Some(p) {
                kept.insert(seq);
                last_period = Some(p);
                left -= 1;
            }
        }
    }
    // A named snapshot: the commit that decides the state at it.
    for label in labels {
        let at = commits.partition_point(|&(seq, _)| seq <= *label);
        if let Some(&(seq, _)) = at.checked_sub(1).and_then(|i| commits.get(i)) {
            kept.insert(seq);
        }
    }
    kept
}

/// What one entry of a key's history does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A new current version.
    Version,
    /// The key was deleted.
    Deleted,
    /// The current version's tags changed.
    Tags,
}

/// Which of a key's entries (positions and kinds, in order) no kept position needs.
pub fn expired(entries: &[(Seq, EntryKind)], kept: &BTreeSet<Seq>) -> Vec<Seq> {
    let any_kept = |from: Seq, until: Option<Seq>| match until {
        Some(until) => kept.range(from..until).next().is_some(),
        None => kept.range(from..).next().is_some(),
    };
    let mut out = Vec::new();
    for (i, &(seq, _)) in entries.iter().enumerate() {
        if !any_kept(seq, reign_end(entries, i)) {
            out.push(seq);
        }
    }
    out
}

/// Where entry `i` of a key stops shaping the key's state: the next entry that replaces
/// it (`None`: it still does). States before that read it; removing it changes them.
pub fn reign_end(entries: &[(Seq, EntryKind)], i: usize) -> Option<Seq> {
    match entries[i].1 {
        // A version (or a delete) is read through the tag changes that follow it.
        EntryKind::Version | EntryKind::Deleted => {
            entries[i + 1..].iter().find(|(_, k)| *k != EntryKind::Tags).map(|&(s, _)| s)
        }
        EntryKind::Tags => entries.get(i + 1).map(|&(s, _)| s),
    }
}

/// A policy in words, for plans and logs.
pub fn describe(policy: &RetentionPolicy) -> String {
    let mut parts = vec![format!("everything within {:?}", rewind_config::HumanDuration(policy.keep_all_within))];
    for (n, what) in [
        (policy.keep_hourly, "hourly"),
        (policy.keep_daily, "daily"),
        (policy.keep_weekly, "weekly"),
        (policy.keep_monthly, "monthly"),
        (policy.keep_yearly, "yearly"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(", ")
}

/// One entry of a bucket's history, as retention sees it.
struct Change {
    key: String,
    seq: Seq,
    kind: EntryKind,
    chunks: Vec<ChunkId>,
}

/// What the policies of `retention` at `now_us` keep and expire, over every bucket.
pub struct Assessment {
    /// Per bucket, without bytes.
    pub buckets: Vec<ForgetBucket>,
    /// Chunks some kept version uses.
    pub kept_chunks: HashSet<ChunkId>,
    /// Per bucket, chunks its expired versions use.
    pub expired_chunks: BTreeMap<String, HashSet<ChunkId>>,
    /// Per bucket, the positions of its expired entries (what `forget` removes), each with
    /// where it stopped shaping its key (states from there on do not read it).
    pub expired_seqs: BTreeMap<String, Vec<(Seq, Option<Seq>)>>,
}

/// What applying the policies of `retention` at `now_us` would expire, in `only` or in
/// every bucket. Bytes count chunks that only expired versions use, across every bucket
/// (chunks are shared between buckets), at the size `stored` gives each.
pub fn plan(
    journal: &Journal,
    stored: impl Fn(&ChunkId) -> Result<u64, HistoryError>,
    retention: &RetentionConfig,
    only: Option<&str>,
    now_us: i64,
) -> Result<ForgetPlan, HistoryError> {
    summarize(&assess(journal, retention, now_us)?, stored, only, now_us)
}

/// [`plan`] from an assessment already made at `now_us`.
pub fn summarize(
    assessment: &Assessment,
    stored: impl Fn(&ChunkId) -> Result<u64, HistoryError>,
    only: Option<&str>,
    now_us: i64,
) -> Result<ForgetPlan, HistoryError> {
    let Assessment { buckets, kept_chunks, expired_chunks, .. } = assessment;
    let mut buckets: Vec<ForgetBucket> =
        buckets.iter().filter(|b| only.is_none_or(|o| o == b.bucket)).cloned().collect();
    let mut counted = HashSet::new();
    for summary in &mut buckets {
        for id in expired_chunks.get(&summary.bucket).into_iter().flatten() {
            if kept_chunks.contains(id) || !counted.insert(*id) {
                continue;
            }
            summary.bytes_expired += stored(id)?;
        }
    }
    Ok(ForgetPlan { at: time_text(now_us), buckets })
}

/// Applies the policies of `retention` at `now_us` to every bucket's history.
pub fn assess(journal: &Journal, retention: &RetentionConfig, now_us: i64) -> Result<Assessment, HistoryError> {
    // Named snapshots and open time-travel views pin the state at their positions.
    let mut labels: Vec<Seq> = journal.labels()?.into_iter().map(|(_, seq, _)| seq).collect();
    labels.extend(journal.views()?.into_iter().filter(|v| v.is_open(now_us)).map(|v| v.seq));
    let holds = journal.holds()?;
    let mut kept_chunks: HashSet<ChunkId> = HashSet::new();
    let mut expired_chunks: BTreeMap<String, HashSet<ChunkId>> = BTreeMap::new();
    let mut expired_seqs: BTreeMap<String, Vec<(Seq, Option<Seq>)>> = BTreeMap::new();
    let mut buckets = Vec::new();
    for bucket in journal.buckets()? {
        let policy = retention.policy(&bucket);
        let mut changes = Vec::new();
        let mut commits = Vec::new();
        for (key, seq) in journal.changes(&bucket)? {
            let Some(record) = journal.record(seq)? else { continue };
            commits.push((seq, record.timestamp_us));
            if key.is_empty() {
                continue; // bucket-level records are kept
            }
            let Some(change) = indexed_change(record.body, seq, &bucket, &key)? else { continue };
            let (kind, chunks) = match change.effect {
                Effect::Version(v) => (EntryKind::Version, v.chunks),
                Effect::Deleted { .. } => (EntryKind::Deleted, Vec::new()),
                Effect::Tags(_) => (EntryKind::Tags, Vec::new()),
                Effect::Bucket => continue,
            };
            changes.push(Change { key, seq, kind, chunks });
        }
        commits.sort_unstable();
        let kept = kept_positions(&policy, now_us, &commits, &labels);
        let mut summary = ForgetBucket {
            bucket: bucket.clone(),
            policy: describe(&policy),
            kept_positions: kept.len() as u64,
            ..ForgetBucket::default()
        };
        let mut gone_chunks = HashSet::new();
        let mut gone_seqs = Vec::new();
        for key_changes in changes.chunk_by(|a, b| a.key == b.key) {
            let entries: Vec<(Seq, EntryKind)> = key_changes.iter().map(|c| (c.seq, c.kind)).collect();
            // A legal hold keeps every version of the keys under it.
            let held = holds.iter().any(|h| h.covers(&bucket, &key_changes[0].key));
            let gone: HashSet<Seq> = if held { HashSet::new() } else { expired(&entries, &kept).into_iter().collect() };
            for (i, c) in key_changes.iter().enumerate() {
                let expired = gone.contains(&c.seq);
                if c.kind == EntryKind::Version {
                    summary.versions += 1;
                    summary.versions_expired += u64::from(expired);
                }
                summary.entries_expired += u64::from(expired);
                if expired {
                    gone_seqs.push((c.seq, reign_end(&entries, i)));
                    gone_chunks.extend(c.chunks.iter().copied());
                } else {
                    kept_chunks.extend(c.chunks.iter().copied());
                }
            }
        }
        expired_chunks.insert(bucket.clone(), gone_chunks);
        expired_seqs.insert(bucket.clone(), gone_seqs);
        buckets.push(summary);
    }
    Ok(Assessment { buckets, kept_chunks, expired_chunks, expired_seqs })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn policy(window_hours: u64) -> RetentionPolicy {
        RetentionPolicy {
            keep_all_within: Duration::from_secs(window_hours * 3600),
            keep_hourly: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_yearly: 0,
        }
    }

    #[test]
    fn calendar_periods_start_where_the_calendar_does() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let day = |d: i64| d * DAY_US;
        // 1970-01-05 (day 4) was the first Monday: Sunday the 4th (day 3) is in the week
        // before, and the week runs to the next Sunday (day 10).
        assert_eq!(Period::Week.of(day(3)) + 1, Period::Week.of(day(4)));
        assert_eq!(Period::Week.of(day(4)), Period::Week.of(day(10)));
        assert_eq!(Period::Week.of(day(10)) + 1, Period::Week.of(day(11)));
        assert_eq!(Period::Month.of(day(30)), Period::Month.of(day(0)), "January has 31 days");
        assert_eq!(Period::Month.of(day(31)), Period::Month.of(day(0)) + 1);
        assert_eq!(Period::Month.of(day(365)), Period::Month.of(day(0)) + 12);
        assert_eq!(Period::Year.of(day(365)), 1971);
    }

    #[test]
    fn the_window_keeps_every_commit_in_it_and_the_state_at_its_start() {
        let h = HOUR_US;
        let commits: Vec<(Seq, i64)> = (1..=10).map(|i| (Seq(i), i as i64 * h)).collect();
        let kept = kept_positions(&policy(3), 10 * h, &commits, &[]);
        assert_eq!(kept.into_iter().collect::<Vec<_>>(), [Seq(7), Seq(8), Seq(9), Seq(10)]);
        // 0s keeps the current state only.
        assert_eq!(kept_positions(&policy(0), 10 * h, &commits, &[]).into_iter().collect::<Vec<_>>(), [Seq(10)]);
    }

    #[test]
    fn thinning_keeps_the_last_state_of_each_recent_period_that_had_changes() {
        let h = HOUR_US;
        // Two commits an hour for 48 hours; keep 1 hour whole, then 5 hourly and 2 daily.
        let commits: Vec<(Seq, i64)> = (0..96).map(|i| (Seq(i + 1), i as i64 * h / 2 + 1)).collect();
        let now = 48 * h;
        let p = RetentionPolicy { keep_hourly: 5, keep_daily: 2, ..policy(1) };
        let kept = kept_positions(&p, now, &commits, &[]);
        let last_of_hour = |hour: i64| Seq(2 * hour as u64 + 2);
        for hour in 42..47 {
            assert!(kept.contains(&last_of_hour(hour)), "hour {hour}");
        }
        assert!(!kept.contains(&last_of_hour(40)));
        // The last commit of day 0 (hour 23) is kept by the daily rule.
        assert!(kept.contains(&last_of_hour(23)));
        assert!(!kept.contains(&Seq(1)));
    }

    #[test]
    fn a_snapshot_keeps_the_commit_that_decides_it() {
        let commits = [(Seq(2), 10), (Seq(5), 20), (Seq(9), 30)];
        let kept = kept_positions(&policy(0), 1_000_000_000, &commits, &[Seq(7), Seq(1)]);
        assert_eq!(kept.into_iter().collect::<Vec<_>>(), [Seq(5), Seq(9)]);
    }

    /// The version a reader finds at `k` walking back through `entries` (as
    /// `Journal::version_at` does): the last entry at or before `k` that is a version or a
    /// delete, with the newest tag change after it.
    fn read_at(entries: &[(Seq, EntryKind)], k: Seq) -> Option<(Seq, Option<Seq>)> {
        let mut tags = None;
        for &(seq, kind) in entries.iter().rev().filter(|(s, _)| *s <= k) {
            match kind {
                EntryKind::Tags => {
                    tags.get_or_insert(seq);
                }
                EntryKind::Version => return Some((seq, tags)),
                EntryKind::Deleted => return None,
            }
        }
        None
    }

    fn kinds() -> impl Strategy<Value = Vec<(u64, EntryKind)>> {
        let kind = prop_oneof![Just(EntryKind::Version), Just(EntryKind::Deleted), Just(EntryKind::Tags)];
        proptest::collection::vec((1u64..4, kind), 0..30)
    }

    proptest! {
        /// Expiring exactly what `expired` says changes nothing any kept position reads,
        /// and everything it keeps is read at some kept position (nothing kept for nothing).
        #[test]
        fn expiring_changes_no_kept_instant_and_keeps_nothing_unread(
            steps in kinds(),
            kept in proptest::collection::btree_set(0u64..100, 0..12),
        ) {
            let mut seq = 0;
            let entries: Vec<(Seq, EntryKind)> = steps.iter().map(|&(gap, k)| { seq += gap; (Seq(seq), k) }).collect();
            let kept: BTreeSet<Seq> = kept.into_iter().map(Seq).collect();
            let gone: BTreeSet<Seq> = expired(&entries, &kept).into_iter().collect();
            let left: Vec<(Seq, EntryKind)> = entries.iter().copied().filter(|(s, _)| !gone.contains(s)).collect();
            for &k in &kept {
                prop_assert_eq!(read_at(&left, k), read_at(&entries, k), "at {:?}", k);
            }
            // Versions hold the bytes: each one kept is read at some kept position.
            for &(s, _) in left.iter().filter(|(_, k)| *k == EntryKind::Version) {
                let read = kept.iter().any(|&k| matches!(read_at(&entries, k), Some((v, _)) if v == s));
                prop_assert!(read, "{:?} is kept but no kept position reads it", s);
            }
        }

        /// Every instant in the window, and the state at its start, are decided by kept
        /// commits.
        #[test]
        fn every_instant_of_the_window_is_decided_by_a_kept_commit(
            gaps in proptest::collection::vec(0i64..3 * HOUR_US, 1..60),
            window_hours in 0u64..48,
            probe in 0i64..200 * HOUR_US,
        ) {
            let mut ts = 0;
            let commits: Vec<(Seq, i64)> =
                gaps.iter().enumerate().map(|(i, g)| { ts += g; (Seq(i as u64 + 1), ts) }).collect();
            let now = ts + HOUR_US;
            let kept = kept_positions(&policy(window_hours), now, &commits, &[]);
            let instant = now - probe.min(window_hours as i64 * HOUR_US);
            let deciding = commits.iter().rev().find(|&&(_, t)| t <= instant).map(|&(s, _)| s);
            if let Some(d) = deciding {
                prop_assert!(kept.contains(&d), "the state at {} is decided by {:?}, not kept", instant, d);
            }
        }

        /// A bucket's whole history under a random policy, against the policy's own words:
        /// the state at every instant it promises (each commit in the window and the
        /// window's start, the end of each of the latest N hours and days with changes
        /// before it, cut at the window's start, and each snapshot) is the same, for every
        /// key, after removing what the plan expires.
        #[test]
        fn every_promised_instant_reads_the_same_after_expiry(
            writes in proptest::collection::vec((0i64..2 * HOUR_US, 0usize..4, 0u8..3), 1..80),
            window_hours in 0u64..6,
            hourly in 0u32..4,
            daily in 0u32..3,
            after in 0i64..3 * HOUR_US,
            label_picks in proptest::collection::vec(proptest::sample::select((1u64..200).collect::<Vec<_>>()), 0..4),
        ) {
            let (mut ts, mut commits, mut by_key) = (0i64, Vec::new(), vec![Vec::new(); 4]);
            for (i, (gap, key, kind)) in writes.iter().enumerate() {
                ts += gap;
                let seq = Seq(i as u64 + 1);
                commits.push((seq, ts));
                let kind = [EntryKind::Version, EntryKind::Deleted, EntryKind::Tags][usize::from(*kind)];
                by_key[*key].push((seq, kind));
            }
            let now = ts + after;
            let labels: Vec<Seq> = label_picks.iter().map(|&n| Seq(n)).collect();
            let policy = RetentionPolicy { keep_hourly: hourly, keep_daily: daily, ..policy(window_hours) };
            let kept = kept_positions(&policy, now, &commits, &labels);

            // The promise, in its own words: instants as times (or positions, for labels).
            let start = now - window_hours as i64 * HOUR_US;
            let mut times: Vec<i64> = vec![start, now];
            times.extend(commits.iter().map(|&(_, t)| t).filter(|&t| t >= start));
            for (period, count) in [(Period::Hour, hourly), (Period::Day, daily)] {
                let mut periods: Vec<i64> = commits.iter().filter(|&&(_, t)| t <= start).map(|&(_, t)| period.of(t)).collect();
                periods.dedup();
                for p in periods.iter().rev().take(count as usize) {
                    // The state at the end of the period, or at the window's start if sooner.
                    let end = commits.iter().filter(|&&(_, t)| t <= start && period.of(t) == *p).map(|&(_, t)| t).max();
                    times.extend(end);
                }
            }
            let at_time = |t: i64| commits.iter().rev().find(|&&(_, c)| c <= t).map(|&(s, _)| s);
            let mut instants: Vec<Seq> = times.into_iter().filter_map(at_time).collect();
            instants.extend(labels.iter().copied());

            for entries in &by_key {
                let gone: BTreeSet<Seq> = expired(entries, &kept).into_iter().collect();
                let left: Vec<(Seq, EntryKind)> = entries.iter().copied().filter(|(s, _)| !gone.contains(s)).collect();
                for &k in &instants {
                    prop_assert_eq!(read_at(&left, k), read_at(entries, k), "a promised instant {:?} changed", k);
                }
            }
        }
    }
}
