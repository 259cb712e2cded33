//! Garbage collection's sweep: deleting what the mark ([`crate::gc`]) found dead, in two
//! phases as kopia and rustic do, without stopping any write.
//!
//! **Condemn.** A pack none of whose indexed chunks is live is condemned, with the time,
//! and its index entries are removed, so that no write from then on deduplicates against
//! it (writes store fresh copies); so is a pack the index does not name at all (left by a
//! crash before its chunks were indexed), unless this vault is still writing it. A pack
//! whose live share has fallen below [`REPACK_BELOW_LIVE_TENTHS`] is repacked first: its
//! live chunks are copied, sealed as they are, into new packs and their index entries
//! moved there; the old pack then holds only dead chunks and is condemned like the others.
//!
//! **Delete.** A pack condemned at least `gc_grace` ago is deleted, unless something needs
//! it again:
//! 1. every write of this process that began before it was unindexed is waited for
//!    (`Vault::settle_writes`): a write that found one of its chunks in the index earlier
//!    has now journaled it, or given up. Writers this process cannot see (another
//!    process sharing the vault) had the grace period to journal theirs;
//! 2. liveness is read again, and the pack's own header says what it holds. If a chunk of
//!    it is live again and indexed nowhere else, its entries go back in the index and the
//!    pack is rescued; otherwise it is deleted. A pack whose deletion Object Lock refuses
//!    is retried after its retain-until date.
//!
//! A write that deduplicated against a pack before it was condemned and journals its
//! version within the grace period so rescues it. Killed at any point, a later pass
//! finishes the work: a condemned pack is simply an unindexed one with a record, and step
//! 2 reads its header to decide; a repack's new pack that was never indexed is unindexed
//! too. With `gc_grace = 0s` a pack is condemned and deleted in the same pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rewind_journal::{ChunkSwap, Journal, Progress, layout};
use rewind_model::ChunkId;
use rewind_vault::pack::TARGET_PACK_SIZE;
use rewind_vault::{ChunkLocation, Deleted, PackEntry, Reclaim, Vault, VaultError};

use crate::HistoryError;
use crate::api::{GcReport, time_text};
use crate::gc::{referenced, referenced_after, usage_by_pack};

/// A pack whose live chunks are fewer than this many tenths of its indexed bytes is
/// repacked: dead chunks then cost at most a ninth more than the live ones.
pub const REPACK_BELOW_LIVE_TENTHS: u64 = 9;

/// Runs `f` over the journal on the blocking pool.
async fn off_thread<T: Send + 'static>(
    journal: &Arc<Journal>,
    f: impl FnOnce(&Journal) -> Result<T, HistoryError> + Send + 'static,
) -> Result<T, HistoryError> {
    let journal = journal.clone();
    match tokio::task::spawn_blocking(move || f(&journal)).await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The fastest a sweep deletes: four times the rate the retention issue asks for, and a
/// third of what an unpaced sweep reached on a local vault, where client writes then lost
/// up to a quarter of their throughput to the deletions.
const SWEEP_BYTES_PER_SECOND: f64 = 400e6;

fn vault_error(what: &'static str) -> impl FnOnce(VaultError) -> HistoryError {
    move |source| HistoryError::Vault { what, source }
}

/// For tests only: skips step 2, to show that the sweep is unsafe without it.
#[cfg(test)]
pub(crate) static SKIP_SETTLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where a pass is, for whoever watches it (`rewind gc`'s progress line).
#[derive(Debug, Default)]
pub struct Watch {
    state: std::sync::Mutex<crate::api::GcProgress>,
}

impl Watch {
    /// What it says now.
    pub fn get(&self) -> crate::api::GcProgress {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, crate::api::GcProgress> {
        self.state.lock().expect("invariant: no panics while holding this lock")
    }

    fn phase(&self, phase: &str, total: usize) {
        *self.lock() = crate::api::GcProgress { running: true, phase: phase.to_owned(), done: 0, total: total as u64 };
    }

    fn step(&self) {
        self.lock().done += 1;
    }

    fn end(&self) {
        *self.lock() = crate::api::GcProgress::default();
    }
}

/// An index entry as read: the chunk, its encoded location, and the entry in its pack.
type Indexed = ([u8; 32], Vec<u8>, PackEntry);

/// One garbage collection pass at `now_us`: marks, repacks, and deletes what was condemned
/// at least `grace` ago (see the module's description). `reclaim` is the vault's deleting
/// handle.
pub async fn collect(
    journal: &Arc<Journal>,
    vault: &Vault,
    reclaim: &dyn Reclaim,
    grace: Duration,
    now_us: i64,
) -> Result<GcReport, HistoryError> {
    collect_watched(journal, vault, reclaim, grace, now_us, &Watch::default()).await
}

/// [`collect`], telling `progress` where it is.
pub async fn collect_watched(
    journal: &Arc<Journal>,
    vault: &Vault,
    reclaim: &dyn Reclaim,
    grace: Duration,
    now_us: i64,
    progress: &Watch,
) -> Result<GcReport, HistoryError> {
    /// Says the pass is over however it ends (an error, or dropped half-way).
    struct Over<'a>(&'a Watch);
    impl Drop for Over<'_> {
        fn drop(&mut self) {
            self.0.end();
        }
    }
    let _over = Over(progress);
    let grace_us = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
    progress.phase("marking", 0);
    let packs = vault.pack_names().await.map_err(vault_error("listing the vault's packs"))?;
    // Walking every record and index entry is CPU work: off the threads capture runs on.
    let marked_at = journal.head()?.seq;
    let (live, usage) = off_thread(journal, |j| {
        let live = referenced(j)?;
        let usage = usage_by_pack(j, &live, &HashSet::new())?;
        Ok((live, usage))
    })
    .await?;
    let mut condemned: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (key, value) in journal.progress_scan(layout::GC_CONDEMNED)? {
        let name = String::from_utf8_lossy(&key[layout::GC_CONDEMNED.len()..]).into_owned();
        condemned.insert(name, layout::parse_condemned(&value).unwrap_or((now_us, 0)));
    }

    let mut report = GcReport { at: time_text(now_us), packs: packs.len() as u64, ..GcReport::default() };
    let mut records = Vec::new();
    let mut unindex = Vec::new();
    let mut due = Vec::new();
    let mut repack = Vec::new();
    for name in &packs {
        let pack_use = usage.get(name);
        let dead = match pack_use {
            Some(u) => u.live == 0,
            None => !vault.is_unsynced(name),
        };
        let key = layout::condemned_key(name);
        match (dead, condemned.get(name)) {
            (false, found) => {
                if found.is_some() {
                    report.packs_rescued += 1;
                    records.push(Progress::Remove(key));
                }
                if let Some(u) = pack_use
                    && u.live * 10 < (u.live + u.unreferenced) * REPACK_BELOW_LIVE_TENTHS
                {
                    repack.push(name.clone());
                }
            }
            // Newly dead, or indexed again since it was condemned (a crash between the
            // record and the unindexing, or a rebuild): condemned from now.
            (true, found) if found.is_none() || pack_use.is_some() => {
                report.packs_condemned += 1;
                report.bytes_condemned += pack_use.map_or(0, |u| u.unreferenced);
                records.push(Progress::Put(key, layout::condemned_value(now_us, 0)));
                unindex.push(name.clone());
                if grace_us == 0 {
                    due.push(name.clone());
                } else {
                    report.packs_waiting += 1;
                }
            }
            (true, found) => {
                let (at, not_before) = found.copied().unwrap_or((now_us, 0));
                if now_us.saturating_sub(at) >= grace_us && now_us >= not_before {
                    due.push(name.clone());
                } else {
                    report.packs_waiting += 1;
                }
            }
        }
    }
    // Records of packs already gone: a pass stopped between deleting and forgetting them.
    let listed: HashSet<&String> = packs.iter().collect();
    records
        .extend(condemned.keys().filter(|n| !listed.contains(n)).map(|n| Progress::Remove(layout::condemned_key(n))));
    journal.progress(records).await?;

    let wanted: Vec<String> = unindex.iter().chain(&repack).cloned().collect();
    let mut entries = off_thread(journal, move |j| entries_of(j, wanted.iter())).await?;
    if !repack.is_empty() {
        progress.phase("repacking", repack.len());
        let repacked =
            repack_packs(&Repack { journal, vault, now_us, progress }, &live, &repack, &mut entries, &mut report)
                .await?;
        for (name, dead_bytes) in repacked {
            report.packs_condemned += 1;
            report.bytes_condemned += dead_bytes;
            unindex.push(name.clone());
            if grace_us == 0 {
                due.push(name);
            } else {
                report.packs_waiting += 1;
            }
        }
    }
    // Condemning unindexes: no write from now on finds a condemned pack's chunks (it
    // stores fresh copies).
    let mut removed: Vec<(String, Vec<Indexed>)> =
        unindex.iter().map(|name| (name.clone(), entries.remove(name).unwrap_or_default())).collect();
    let swaps = removed
        .iter()
        .flat_map(|(_, list)| list.iter())
        .map(|(id, expected, _)| ChunkSwap { id: *id, expected: expected.clone(), new: None })
        .collect();
    journal.chunk_swap(swaps).await?;
    if due.is_empty() && removed.is_empty() {
        return Ok(report);
    }
    // Writes of this process that found a condemned pack's chunks (or wrote them) before
    // it was unindexed have ended; those of other processes have the grace period.
    #[cfg(test)]
    let skip = SKIP_SETTLE.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(test))]
    let skip = false;
    if !skip {
        progress.phase("waiting for writes in flight", 0);
        vault.settle_writes().await;
    }
    // What is live now decides: what was, and what records since the mark reference.
    let live = off_thread(journal, move |j| {
        let mut live = live;
        live.extend(referenced_after(j, marked_at)?);
        Ok(live)
    })
    .await?;
    // A pack just condemned that such a write journaled meanwhile is rescued at once, so
    // that the version reads back (and deduplicates) without waiting for the next pass.
    removed.retain(|(name, list)| !due.contains(name) && list.iter().any(|(id, _, _)| live.contains(&ChunkId(*id))));
    for (name, list) in removed {
        journal.chunk_put_all(list.into_iter().map(|(id, value, _)| (id, value)).collect()).await?;
        journal.progress(vec![Progress::Remove(layout::condemned_key(&name))]).await?;
        report.packs_condemned -= 1;
        report.packs_waiting = report.packs_waiting.saturating_sub(1);
        report.packs_rescued += 1;
    }
    let mut forgotten = Vec::new();
    progress.phase("deleting", due.len());
    let started = std::time::Instant::now();
    for name in due {
        progress.step();
        if sweep_one(journal, vault, reclaim, &live, &name, &mut report).await? {
            forgotten.push(Progress::Remove(layout::condemned_key(&name)));
        }
        // Paced, so that the disk deleting shares does not slow client writes much.
        let due_at = Duration::from_secs_f64(report.bytes_reclaimed as f64 / SWEEP_BYTES_PER_SECOND);
        if let Some(ahead) = due_at.checked_sub(started.elapsed()) {
            tokio::time::sleep(ahead).await;
        }
    }
    // Records of deleted packs, at once (one left by a crash is removed by the next pass).
    journal.progress(forgotten).await?;
    Ok(report)
}

/// The index entries naming each of `packs`.
fn entries_of<'a>(
    journal: &Journal,
    packs: impl Iterator<Item = &'a String>,
) -> Result<HashMap<String, Vec<Indexed>>, HistoryError> {
    let mut out: HashMap<String, Vec<Indexed>> = packs.map(|p| (p.clone(), Vec::new())).collect();
    journal.for_each_chunk(|id, value| {
        if let Ok(location) = ChunkLocation::decode(ChunkId(*id), value)
            && let Some(list) = out.get_mut(&location.pack)
        {
            list.push((*id, value.to_vec(), location.entry));
        }
    })?;
    Ok(out)
}

/// Chunks copied and waiting to be written into a new pack, with where they came from.
#[derive(Default)]
struct Batch {
    chunks: Vec<(PackEntry, Bytes)>,
    expected: Vec<([u8; 32], Vec<u8>)>,
    sources: Vec<(String, u64)>,
    bytes: usize,
}

/// Copies the live chunks of each pack in `packs` into new packs and moves their index
/// entries there; returns the packs emptied of live chunks, with their dead bytes, now
/// condemned. `entries` keeps each pack's remaining (dead) entries.
/// What repacking works with.
struct Repack<'a> {
    journal: &'a Journal,
    vault: &'a Vault,
    now_us: i64,
    progress: &'a Watch,
}

async fn repack_packs(
    ctx: &Repack<'_>,
    live: &HashSet<ChunkId>,
    packs: &[String],
    entries: &mut HashMap<String, Vec<Indexed>>,
    report: &mut GcReport,
) -> Result<Vec<(String, u64)>, HistoryError> {
    let Repack { vault, progress, .. } = *ctx;
    let mut emptied = Vec::new();
    let mut batch = Batch::default();
    for name in packs {
        progress.step();
        let list = entries.remove(name).unwrap_or_default();
        let (keep, dead): (Vec<Indexed>, Vec<Indexed>) =
            list.into_iter().partition(|(id, _, _)| live.contains(&ChunkId(*id)));
        let bytes = match vault.backend().get(name).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(pack = name, error = %e, "garbage collection could not read a pack to repack; it stays as it is");
                report.packs_failed += 1;
                entries.insert(name.clone(), keep.into_iter().chain(dead).collect());
                continue;
            }
        };
        let in_bounds = |e: &PackEntry| e.offset + u64::from(e.stored_len) <= bytes.len() as u64;
        if !keep.iter().all(|(_, _, e)| in_bounds(e)) {
            tracing::warn!(
                pack = name,
                "a pack to repack is shorter than its index says; it stays as it is (run `rewind verify`)"
            );
            report.packs_failed += 1;
            continue;
        }
        for (id, value, entry) in keep {
            let start = usize::try_from(entry.offset).expect("invariant: packs are far below 4 GiB");
            let sealed = bytes.slice(start..start + entry.stored_len as usize);
            batch.bytes += sealed.len();
            batch.chunks.push((entry, sealed));
            batch.expected.push((id, value));
        }
        let dead_bytes = dead.iter().map(|(_, _, e)| u64::from(e.stored_len)).sum();
        entries.insert(name.clone(), dead);
        batch.sources.push((name.clone(), dead_bytes));
        if batch.bytes >= TARGET_PACK_SIZE {
            emptied.extend(write_batch(ctx, std::mem::take(&mut batch), report).await?);
        }
    }
    emptied.extend(write_batch(ctx, batch, report).await?);
    Ok(emptied)
}

/// Writes a batch of copied chunks into new packs, points their index entries there, and
/// condemns the packs they came from.
async fn write_batch(
    ctx: &Repack<'_>,
    batch: Batch,
    report: &mut GcReport,
) -> Result<Vec<(String, u64)>, HistoryError> {
    let Repack { journal, vault, now_us, .. } = *ctx;
    if batch.sources.is_empty() {
        return Ok(Vec::new());
    }
    let copied = batch.bytes as u64;
    let written = if batch.chunks.is_empty() {
        Vec::new()
    } else {
        vault.write_packs(batch.chunks).await.map_err(vault_error("writing a repacked pack"))?
    };
    let moved = written.iter().flat_map(|(pack, list)| list.iter().map(move |e| (pack, e)));
    let swaps = batch
        .expected
        .into_iter()
        .zip(moved)
        .map(|((id, expected), (pack, entry))| ChunkSwap {
            id,
            expected,
            new: Some(ChunkLocation { pack: pack.clone(), entry: *entry }.encode()),
        })
        .collect();
    journal.chunk_swap(swaps).await?;
    let records = batch
        .sources
        .iter()
        .map(|(name, _)| Progress::Put(layout::condemned_key(name), layout::condemned_value(now_us, 0)))
        .collect();
    journal.progress(records).await?;
    report.packs_repacked += batch.sources.len() as u64;
    report.bytes_repacked += copied;
    Ok(batch.sources)
}

/// The decision for one due pack: rescued, deleted (then `true`: its record can go), or
/// left for the next pass.
async fn sweep_one(
    journal: &Journal,
    vault: &Vault,
    reclaim: &dyn Reclaim,
    live: &HashSet<ChunkId>,
    name: &str,
    report: &mut GcReport,
) -> Result<bool, HistoryError> {
    let key = layout::condemned_key(name);
    if vault.is_unsynced(name) {
        return Ok(false);
    }
    let entries = match vault.pack_header(name.to_owned()).await {
        Ok((_, entries)) => entries,
        Err(VaultError::NotFound { .. }) => return Ok(true),
        Err(e) => {
            tracing::warn!(pack = name, error = %e, "garbage collection could not read a condemned pack's header; it stays, and the next pass tries again");
            report.packs_failed += 1;
            return Ok(false);
        }
    };
    let mut needed = false;
    let mut put_back = Vec::new();
    for entry in &entries {
        let value = ChunkLocation { pack: name.to_owned(), entry: *entry }.encode();
        match journal.chunk_get(&entry.id.0)? {
            Some(current) => needed |= current == value,
            None => {
                needed |= live.contains(&entry.id);
                put_back.push((entry.id.0, value));
            }
        }
    }
    if needed {
        // A write found it before it was unindexed and journaled a version using it (or
        // the pack was indexed meanwhile): it is needed after all. Its chunks go back in
        // the index (the dead ones too, so that a later pass repacks it).
        journal.chunk_put_all(put_back).await?;
        journal.progress(vec![Progress::Remove(key)]).await?;
        report.packs_rescued += 1;
        return Ok(false);
    }
    match reclaim.delete(name).await {
        Ok(Deleted::Gone | Deleted::Missing) => {
            report.packs_deleted += 1;
            report.bytes_reclaimed += entries.iter().map(|e| u64::from(e.stored_len)).sum::<u64>();
            Ok(true)
        }
        Ok(Deleted::Locked { until_us }) => {
            let (at, _) = journal.progress_get(&key)?.as_deref().and_then(layout::parse_condemned).unwrap_or((0, 0));
            journal.progress(vec![Progress::Put(key, layout::condemned_value(at, until_us))]).await?;
            report.packs_locked += 1;
            Ok(false)
        }
        Err(e) => {
            tracing::warn!(pack = name, error = %e, "garbage collection could not delete a condemned pack; it stays condemned, and the next pass tries again");
            report.packs_failed += 1;
            Ok(false)
        }
    }
}

#[cfg(test)]
#[path = "sweep_tests.rs"]
pub(crate) mod tests;
