//! Garbage collection's mark: which vault packs hold nothing that is still needed.
//!
//! A chunk is live while a journal record references it or a multipart upload in progress
//! captured it (retention's `forget` removes the records of expired versions; what they
//! alone used then stops being live). [`plan`] forecasts under the retention policy, as if
//! `forget` had run; [`crate::sweep`] acts on what the journal references now.

use std::collections::{BTreeMap, HashSet};

use rewind_config::RetentionConfig;
use rewind_journal::{Journal, indexed_change, layout};
use rewind_model::{ChunkId, Effect, ObjectVersion};
use rewind_vault::ChunkLocation;

use crate::HistoryError;
use crate::api::{GcPlan, time_text};
use crate::retention::{Assessment, assess};

/// What a pack holds, by the state of its chunks.
#[derive(Default)]
pub(crate) struct PackUse {
    pub(crate) live: u64,
    pub(crate) expired: u64,
    pub(crate) unreferenced: u64,
}

/// Chunks that multipart uploads in progress captured: live until the upload completes
/// (then a version holds them) or is aborted.
fn upload_chunks(journal: &Journal) -> Result<HashSet<ChunkId>, HistoryError> {
    let mut live = HashSet::new();
    for (_, value) in journal.progress_scan(layout::UPLOADS)? {
        // Templates and parts are object versions.
        if let Ok(part) = ObjectVersion::decode(&value) {
            live.extend(part.chunks);
        }
    }
    Ok(live)
}

/// Every chunk a journal record or an upload in progress references: what must stay.
pub(crate) fn referenced(journal: &Journal) -> Result<HashSet<ChunkId>, HistoryError> {
    let mut live = upload_chunks(journal)?;
    for bucket in journal.buckets()? {
        for (key, seq) in journal.changes(&bucket)? {
            let Some(record) = journal.record(seq)? else { continue };
            if let Some(change) = indexed_change(record.body, seq, &bucket, &key)?
                && let Effect::Version(v) = change.effect
            {
                live.extend(v.chunks);
            }
        }
    }
    Ok(live)
}

/// Chunks the records after `after` reference, and those of uploads in progress: what
/// became live since a mark that read the journal up to `after` (records are only ever
/// added while garbage collection runs; forget waits for it).
pub(crate) fn referenced_after(journal: &Journal, after: rewind_model::Seq) -> Result<HashSet<ChunkId>, HistoryError> {
    let mut live = upload_chunks(journal)?;
    for record in journal.records(rewind_model::Seq(after.0 + 1), usize::MAX)? {
        if let Some((_, _, Effect::Version(v))) = record.body.change() {
            live.extend(v.chunks.iter().copied());
        }
    }
    Ok(live)
}

/// Bytes of each indexed pack's chunks, by whether they are `live`, `expired`, or neither.
pub(crate) fn usage_by_pack(
    journal: &Journal,
    live: &HashSet<ChunkId>,
    expired: &HashSet<ChunkId>,
) -> Result<BTreeMap<String, PackUse>, HistoryError> {
    let mut by_pack: BTreeMap<String, PackUse> = BTreeMap::new();
    let mut bad = None;
    journal.for_each_chunk(|id, value| {
        let id = ChunkId(*id);
        match ChunkLocation::decode(id, value) {
            Ok(location) => {
                let bytes = u64::from(location.entry.stored_len);
                let pack = by_pack.entry(location.pack).or_default();
                if live.contains(&id) {
                    pack.live += bytes;
                } else if expired.contains(&id) {
                    pack.expired += bytes;
                } else {
                    pack.unreferenced += bytes;
                }
            }
            Err(source) => bad = Some(source),
        }
    })?;
    match bad {
        Some(source) => Err(HistoryError::Vault { what: "a chunk index entry does not decode", source }),
        None => Ok(by_pack),
    }
}

/// The mark of a GC at `now_us` under `retention`, as a plan (nothing changes): `packs`
/// are the vault's pack objects (as chunk locations name them). Chunks only versions the
/// policy expires use count as dead, as they will be once `forget` has run.
pub fn plan(
    journal: &Journal,
    retention: &RetentionConfig,
    now_us: i64,
    packs: &[String],
) -> Result<GcPlan, HistoryError> {
    let Assessment { kept_chunks, expired_chunks, .. } = assess(journal, retention, now_us)?;
    let mut live: HashSet<ChunkId> = kept_chunks;
    live.extend(upload_chunks(journal)?);
    let expired: HashSet<ChunkId> = expired_chunks.into_values().flatten().collect();
    let by_pack = usage_by_pack(journal, &live, &expired)?;
    let mut plan = GcPlan { at: time_text(now_us), packs: packs.len() as u64, ..GcPlan::default() };
    for usage in by_pack.values() {
        let dead = usage.expired + usage.unreferenced;
        plan.bytes_live += usage.live;
        plan.bytes_expired += usage.expired;
        plan.bytes_unreferenced += usage.unreferenced;
        if usage.live == 0 {
            plan.packs_dead += 1;
            plan.bytes_in_dead_packs += dead;
        } else if dead > 0 {
            plan.packs_partly_dead += 1;
            plan.bytes_dead_in_live_packs += dead;
        }
    }
    let indexed: HashSet<&str> = by_pack.keys().map(String::as_str).collect();
    plan.packs_unindexed = packs.iter().filter(|p| !indexed.contains(p.as_str())).count() as u64;
    Ok(plan)
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
