//! Ships the journal to the vault (G7): every `vault.segment_interval`, the records not yet
//! shipped are sealed into a segment (`journal/src/segment.rs`), chained to the previous
//! one, and written to the vault with a signed checkpoint of its last record. Losing the
//! gateway host then loses at most the records of one interval.
//!
//! What was shipped is also the yardstick for the local journal (review F1, R4, R5): a
//! journal whose head is behind the vault's newest checkpoint, or whose record disagrees
//! with one, lost or changed acknowledged history, and must not be written to (it would
//! fork the vault's copy). [`check_against_vault`] runs at every start; shipping never
//! writes a segment that overlaps one already there, nor accepts a different one under
//! the same name; and [`compare_with_vault`] re-reads every shipped segment for `verify`.

use std::sync::Arc;
use std::time::Duration;

use rewind_journal::{Journal, JournalError, segment};
use rewind_model::Seq;
use rewind_vault::{Backend, VaultError};
use tokio_util::sync::CancellationToken;

use crate::Metrics;
use crate::chain::{self, ChainError};

/// Most records in one segment.
const SEGMENT_RECORDS: usize = 4096;

/// Why shipping failed (it is retried at the next interval).
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The journal failed.
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The vault failed.
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    /// The vault already holds a different history for these records.
    #[error(transparent)]
    Diverged(#[from] Divergence),
}

/// How the local journal and the vault's copy of it disagree. Each means records were
/// lost or changed locally (a damaged disk, an old backup of the data directory restored)
/// or that another journal ships into this vault; the vault's copy is the one to trust.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Divergence {
    /// The vault vouches for records past the local head.
    #[error(
        "the vault holds a checkpoint of seq:{vault} but the local journal ends at seq:{local}: records that were acknowledged are missing from the local journal"
    )]
    Behind {
        /// The local head.
        local: u64,
        /// The newest checkpoint in the vault.
        vault: u64,
    },
    /// A record differs from what the vault holds for its position.
    #[error(
        "the local record seq:{seq} differs from the vault's copy of it: the local journal and the vault hold different histories"
    )]
    Forked {
        /// The first position found to differ.
        seq: u64,
    },
}

/// What to tell an operator whose journal diverged from the vault.
pub const REPAIR: &str = "Stop writing to this data directory and rebuild one from the vault: `rewind rebuild --vault <vault> --key-file <key file> --data-dir <new dir>`, then start the gateway on the new directory (docs/OPERATIONS.md, \"The journal disagrees with the vault\")";

/// Checks the local journal against what the vault holds of it: no checkpoint past the
/// local head, and the record last shipped unchanged. Run at every start, before anything
/// is appended; cheap (one listing past the head, one small object).
pub async fn check_against_vault(journal: &Journal, vault: &dyn Backend) -> Result<(), ShipError> {
    let head = journal.head()?.seq;
    let ahead = vault.list_after("checkpoints/", &segment::checkpoint_name(head)).await?;
    for name in ahead.iter().rev() {
        // Only a checkpoint sealed with this vault's key vouches for anything.
        if let Ok((seq, _)) = journal.open_checkpoint(&vault.get(name).await?)
            && seq > head
        {
            return Err(Divergence::Behind { local: head.0, vault: seq.0 }.into());
        }
    }
    let (shipped, _) = journal.shipped()?;
    if shipped.0 == 0 {
        return Ok(());
    }
    let bytes = match vault.get(&segment::checkpoint_name(shipped)).await {
        Ok(b) => b,
        // Shipped before checkpoints were written with every segment, or removed: the
        // segments themselves are compared by `verify`.
        Err(VaultError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let (seq, hash) = journal.open_checkpoint(&bytes)?;
    if !vouched(journal, seq, &hash)? {
        return Err(Divergence::Forked { seq: seq.0 }.into());
    }
    Ok(())
}

/// Whether the journal holds record `seq` with `hash`, or `forget` removed it (it is at
/// or before the horizon; the horizon's own record is known by its hash).
fn vouched(journal: &Journal, seq: Seq, hash: &[u8; 32]) -> Result<bool, ShipError> {
    if let Some(record) = journal.record(seq)? {
        return Ok(record.hash == *hash);
    }
    Ok(journal.horizon()?.is_some_and(|h| seq < h.seq || (seq == h.seq && h.hash == *hash)))
}

/// What [`compare_with_vault`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Segments read back and compared record by record.
    pub segments: u64,
    /// Checkpoints whose MAC and record hash were checked.
    pub checkpoints: u64,
    /// What disagrees, one line each.
    pub problems: Vec<String>,
}

/// Reads every segment and checkpoint the vault holds and compares them with the local
/// journal: each shipped record must be the local record at its position, the segments
/// must chain, and every checkpoint must verify and name a local record with its hash.
/// One segment is held at a time.
pub async fn compare_with_vault(journal: &Journal, vault: &dyn Backend) -> Result<Comparison, ShipError> {
    let mut found = Comparison::default();
    if let Err(ShipError::Diverged(d)) = check_against_vault(journal, vault).await {
        found.problems.push(d.to_string());
    }
    let horizon = journal.horizon()?;
    let (mut prev, mut next) = ([0u8; 32], 1u64);
    // The newest base stands for every segment up to its horizon.
    if let Some(name) = vault.list("bases/").await?.pop() {
        match journal.open_base(&vault.get(&name).await?) {
            Ok((h, records)) => {
                let local = journal.raw_records(Seq(1), usize::MAX)?.into_iter().take_while(|(s, _)| *s <= h.seq);
                if horizon.is_none_or(|l| l.seq < h.seq) {
                    found.problems.push(format!("{name} has a horizon past the local journal's"));
                }
                compare_run(&name, &records, local, horizon, &mut found);
                found.segments += 1;
                (prev, next) = (h.segment, h.seq.0 + 1);
            }
            Err(e) => found.problems.push(format!("{name} cannot be read: {e}")),
        }
    }
    let names: Vec<String> = vault
        .list("segments/")
        .await?
        .into_iter()
        // Covered by the base: left for the next compaction to delete.
        .filter(|n| segment::range_of_name(n).is_none_or(|(_, last)| last >= next))
        .collect();
    let chain = match chain::chain_of(&names, vault, journal, (next, prev)).await {
        Ok(chain) => chain,
        Err(ChainError::Vault(e)) => return Err(e.into()),
        Err(ChainError::NoStart(_)) if names.is_empty() => Vec::new(),
        Err(e) => {
            found.problems.push(e.to_string());
            Vec::new()
        }
    };
    let mut reached = next - 1;
    for name in &names {
        let bytes = vault.get(name).await?;
        let (seg, records) = match journal.open_segment(&bytes) {
            Ok(opened) => opened,
            Err(e) => {
                found.problems.push(format!("{name} cannot be read: {e}"));
                continue;
            }
        };
        found.segments += 1;
        // Off the chain, a segment still holds only the journal's records (a shipper
        // killed mid-write leaves a shorter copy of a run shipped again): anything else is
        // another history.
        if chain.contains(name) {
            if seg.first.0 != next || seg.prev != prev {
                found
                    .problems
                    .push(format!("{name} does not follow the segment before it (a fork, or a segment missing)"));
            }
            (prev, next, reached) = (seg.hash, seg.last.0 + 1, seg.last.0);
        }
        let local = journal.raw_records(seg.first, records.len())?;
        let local = local.into_iter().take_while(|(s, _)| *s <= seg.last);
        compare_run(name, &records, local, horizon, &mut found);
    }
    if let Some(beyond) = names.iter().filter_map(|n| segment::range_of_name(n)).map(|(_, last)| last).max()
        && beyond > reached
    {
        found.problems.push(format!(
            "the segments stop chaining after seq:{reached} but go on to seq:{beyond} (a fork, or a segment missing)"
        ));
    }
    for name in vault.list("checkpoints/").await? {
        match journal.open_checkpoint(&vault.get(&name).await?) {
            Ok((seq, hash)) => {
                found.checkpoints += 1;
                if !vouched(journal, seq, &hash)? {
                    found
                        .problems
                        .push(format!("{name} vouches for a record seq:{} the local journal does not hold", seq.0));
                }
            }
            Err(e) => found.problems.push(format!("{name}: {e}")),
        }
    }
    Ok(found)
}

/// Compares a shipped run of records (a segment's, a base's) with the local records from
/// its first position on: each must be there unchanged, unless `forget` removed it since
/// (at or before the local horizon; compaction drops it from the vault later). Says the
/// first difference.
fn compare_run(
    name: &str,
    shipped: &[(Seq, Vec<u8>)],
    local: impl Iterator<Item = (Seq, Vec<u8>)>,
    horizon: Option<rewind_journal::Horizon>,
    found: &mut Comparison,
) {
    let removed = |seq: Seq| horizon.is_some_and(|h| seq <= h.seq);
    let mut local = local.peekable();
    for (seq, bytes) in shipped {
        if let Some((s, _)) = local.peek().filter(|(s, _)| s < seq) {
            found.problems.push(format!("{name} lacks record seq:{} the local journal holds", s.0));
            return;
        }
        match local.peek() {
            Some((s, b)) if s == seq => {
                if b != bytes {
                    found.problems.push(format!("{name}: record seq:{} differs from the local journal's", seq.0));
                    return;
                }
                local.next();
            }
            _ if removed(*seq) => {}
            _ => {
                found.problems.push(format!("{name} holds record seq:{} the local journal lacks", seq.0));
                return;
            }
        }
    }
    if let Some((s, _)) = local.next() {
        found.problems.push(format!("{name} lacks record seq:{} the local journal holds", s.0));
    }
}

/// Ships until nothing is left (records, then the snapshot labels if they changed);
/// returns the number of segments written.
pub async fn ship_pending(journal: &Journal, vault: &dyn Backend) -> Result<usize, ShipError> {
    let written = ship_segments(journal, vault).await?;
    ship_labels(journal, vault).await?;
    Ok(written)
}

/// Ships the snapshot labels, legal holds and views as a new generation if they changed
/// since the last one.
async fn ship_labels(journal: &Journal, vault: &dyn Backend) -> Result<(), ShipError> {
    let (generation, shipped) = journal.labels_shipped()?;
    let set = journal.side_set()?;
    if set.digest() == shipped || (generation == 0 && set.is_empty()) {
        return Ok(());
    }
    let mut next = generation + 1;
    loop {
        let (bytes, digest) = journal.seal_labels(next)?;
        match vault.put(&segment::labels_name(next), bytes.into()).await {
            Ok(()) => return Ok(journal.set_labels_shipped(next, &digest).await?),
            // Written before a crash that lost the mark: the next generation supersedes it.
            Err(VaultError::AlreadyExists { .. }) => next += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn ship_segments(journal: &Journal, vault: &dyn Backend) -> Result<usize, ShipError> {
    let mut written = 0;
    loop {
        let (shipped, prev) = journal.shipped()?;
        let first = Seq(shipped.0 + 1);
        // A segment already starting here was shipped before a crash lost the mark, or
        // belongs to another history (F1: a rolled-back journal shipped 1-201 beside the
        // good 1-402, and rebuild then refused the vault). Adopt it only if it holds
        // exactly the local records.
        let starting_here = vault.list(&format!("segments/{:020}-", first.0)).await?;
        if !starting_here.is_empty() {
            let (last, hash) = adopt(journal, vault, &starting_here, prev).await?;
            journal.set_shipped(last, &hash).await?;
            continue;
        }
        let records = journal.raw_records(first, SEGMENT_RECORDS)?;
        let Some((last, last_bytes)) = records.last() else { return Ok(written) };
        let sealed = journal.seal_segment(&records, prev)?;
        let name = segment::name(sealed.first, sealed.last);
        let hash = match vault.put(&name, sealed.bytes.into()).await {
            Ok(()) => sealed.hash,
            // Another process shipped it meanwhile: the same checks as above.
            Err(VaultError::AlreadyExists { name }) => adopt(journal, vault, &[name], prev).await?.1,
            Err(e) => return Err(e.into()),
        };
        put_checkpoint(journal, vault, *last, last_bytes).await?;
        journal.set_shipped(*last, &hash).await?;
        written += 1;
    }
}

/// The one of `names` (segments starting where shipping resumes) that holds exactly the
/// local records for its run after `prev`: its last record and hash, with its checkpoint
/// written if it was not. Any other content is another history (R5).
async fn adopt(
    journal: &Journal,
    vault: &dyn Backend,
    names: &[String],
    prev: [u8; 32],
) -> Result<(Seq, [u8; 32]), ShipError> {
    let mut differs = None;
    for name in names {
        let (existing, shipped) = journal.open_segment(&vault.get(name).await?)?;
        let local = journal.raw_records(existing.first, shipped.len())?;
        if existing.prev == prev && local == shipped {
            let (last, last_bytes) = shipped.last().expect("invariant: segments are never empty");
            put_checkpoint(journal, vault, *last, last_bytes).await?;
            return Ok((existing.last, existing.hash));
        }
        let first_difference = shipped.iter().zip(&local).find(|(a, b)| a != b).map(|(a, _)| a.0);
        differs.get_or_insert(first_difference.unwrap_or(existing.first));
    }
    let seq = differs.expect("invariant: called with at least one name");
    Err(Divergence::Forked { seq: seq.0 }.into())
}

async fn put_checkpoint(journal: &Journal, vault: &dyn Backend, last: Seq, last_bytes: &[u8]) -> Result<(), ShipError> {
    match vault.put(&segment::checkpoint_name(last), journal.checkpoint_of(last, last_bytes).into()).await {
        Ok(()) | Err(VaultError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Seconds since the oldest record not yet shipped was written (0 when all are shipped).
fn lag_seconds(journal: &Journal) -> Result<f64, JournalError> {
    let (shipped, _) = journal.shipped()?;
    let Some(oldest) = journal.record(Seq(shipped.0 + 1))? else { return Ok(0.0) };
    Ok((crate::now_us() - oldest.timestamp_us).max(0) as f64 / 1e6)
}

/// Ships every `every` until `stop`, then once more (so a clean stop leaves nothing behind).
pub async fn ship_on_schedule(
    journal: Arc<Journal>,
    vault: Arc<dyn Backend>,
    every: Duration,
    metrics: Metrics,
    stop: CancellationToken,
) {
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(every) => false,
        };
        match ship_pending(&journal, vault.as_ref()).await {
            Ok(n) => {
                metrics.segments_shipped.inc_by(n as u64);
                metrics.journal_diverged.set(0);
            }
            Err(ShipError::Diverged(d)) => {
                metrics.segment_ship_errors.inc();
                metrics.journal_diverged.set(1);
                tracing::error!(divergence = %d, repair = REPAIR, "the journal disagrees with the vault's copy of it: shipping stopped");
            }
            Err(e) => {
                metrics.segment_ship_errors.inc();
                tracing::warn!(error = %e, "could not ship the journal to the vault; retrying at the next interval");
            }
        }
        if let Ok(lag) = lag_seconds(&journal) {
            metrics.segment_ship_lag.set(lag);
        }
        if stopping {
            return;
        }
    }
}
