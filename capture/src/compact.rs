//! Compacting the vault's copy of the journal after `forget`: the shipped segments up to
//! the horizon are replaced by one base (`rewind_journal::base`) holding what `forget`
//! left there, so that the vault keeps no record the journal removed, and a rebuild gives
//! the compacted journal back.
//!
//! The base is written before anything is deleted, and deleting is idempotent: killed at
//! any point, the next `forget` (or this, run again) finishes the work. Until then a
//! rebuild uses the newest base and ignores the segments it covers.

use rewind_journal::{Journal, base, segment};
use rewind_model::Seq;
use rewind_vault::{Backend, Deleted, Reclaim, VaultError};

use crate::ship::ShipError;

/// What a compaction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// The horizon compacted to (0: the journal has none).
    pub horizon: u64,
    /// Whether a new base was written.
    pub base_written: bool,
    /// Segments, older bases and checkpoints deleted.
    pub objects_deleted: u64,
}

/// The segment holding record `seq`, and its hash (what the segment after it names).
pub async fn segment_holding(vault: &dyn Backend, seq: Seq) -> Result<Option<(Seq, [u8; 32])>, ShipError> {
    for name in vault.list("segments/").await? {
        if let Some((first, last)) = segment::range_of_name(&name)
            && first <= seq.0
            && seq.0 <= last
        {
            let bytes = vault.get(&name).await?;
            return Ok(Some((Seq(last), *blake3::hash(&bytes).as_bytes())));
        }
    }
    Ok(None)
}

/// Brings the vault's copy of the journal in line with the journal's horizon.
pub async fn compact(journal: &Journal, vault: &dyn Backend, reclaim: &dyn Reclaim) -> Result<Compacted, ShipError> {
    let Some(horizon) = journal.horizon()? else { return Ok(Compacted::default()) };
    let h = horizon.seq;
    let mut done = Compacted { horizon: h.0, ..Compacted::default() };
    let name = base::name(h);
    if !vault.exists(&name).await? {
        let records = journal.raw_records(Seq(1), usize::MAX)?;
        let kept: Vec<_> = records.into_iter().take_while(|(s, _)| *s <= h).collect();
        match vault.put(&name, journal.seal_base(&horizon, &kept)?.into()).await {
            Ok(()) | Err(VaultError::AlreadyExists { .. }) => done.base_written = true,
            Err(e) => return Err(e.into()),
        }
    }
    let mut stale = Vec::new();
    for old in vault.list("bases/").await? {
        if base::seq_of_name(&old).is_some_and(|s| s < h) {
            stale.push(old);
        }
    }
    for seg in vault.list("segments/").await? {
        if segment::range_of_name(&seg).is_some_and(|(_, last)| last <= h.0) {
            stale.push(seg);
        }
    }
    // Checkpoints of records forget removed vouch for nothing any more.
    for cp in vault.list_after("checkpoints/", "").await? {
        let seq = cp.strip_prefix("checkpoints/").and_then(|s| s.parse::<u64>().ok()).map(Seq);
        if let Some(seq) = seq.filter(|s| *s <= h)
            && journal.record(seq)?.is_none()
        {
            stale.push(segment::checkpoint_name(seq));
        }
    }
    for object in stale {
        match reclaim.delete(&object).await? {
            Deleted::Gone => done.objects_deleted += 1,
            Deleted::Missing => {}
            Deleted::Locked { .. } => {
                tracing::info!(
                    object,
                    "a compacted journal object is under Object Lock; it is deleted by a later forget"
                );
            }
        }
    }
    Ok(done)
}
