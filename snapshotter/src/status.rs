//! `status`: the journal's head and checkpoints, what the vault holds, and each bucket.

use std::collections::BTreeMap;

use rewind_journal::Journal;
use rewind_model::{ChunkId, Effect, ObjectChange};
use rewind_vault::ChunkLocation;

use crate::api::{BucketStatus, Status, time_text};
use crate::{History, HistoryError};

/// The status of `journal` (and of the vault it indexes, at `vault_location`).
///
/// Walks every record and chunk entry once: seconds for millions of records.
pub fn status(journal: &Journal, vault_location: String) -> Result<Status, HistoryError> {
    let head = journal.head()?;
    let mut status = Status {
        head_seq: head.seq.0,
        head_time: if head.seq.0 == 0 { String::new() } else { time_text(head.timestamp_us) },
        last_checkpoint_seq: journal.last_checkpoint()?.map(|s| s.0),
        shipped_seq: journal.shipped()?.0.0,
        unresolved_intents: journal.unresolved_intents()?.len() as u64,
        vault_location,
        snapshots: journal.labels()?.len() as u64,
        ..Status::default()
    };
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    crate::each_record(journal, |record| {
        if let Some(ObjectChange { bucket, effect: Effect::Version(v), .. }) = record.body.into_change() {
            status.logical_bytes += v.size;
            *versions.entry(bucket).or_default() += 1;
        }
    })?;
    journal.for_each_chunk(|id, value| {
        status.chunks += 1;
        if let Ok(location) = ChunkLocation::decode(ChunkId(*id), value) {
            status.stored_bytes += u64::from(location.entry.stored_len);
        }
    })?;
    status.dedup_ratio =
        if status.stored_bytes == 0 { 1.0 } else { status.logical_bytes as f64 / status.stored_bytes as f64 };
    let history = History::new(journal);
    for name in journal.buckets()? {
        let now = history.state_at(&name, "", head.seq)?;
        status.buckets.push(BucketStatus {
            objects: now.len() as u64,
            bytes: now.iter().map(|e| e.version.size).sum(),
            versions: versions.get(&name).copied().unwrap_or(0),
            name,
        });
    }
    Ok(status)
}
