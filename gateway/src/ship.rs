//! Ships the journal to the vault (G7): every `vault.segment_interval`, the records not yet
//! shipped are sealed into a segment (`journal/src/segment.rs`), chained to the previous
//! one, and written to the vault with a signed checkpoint of its last record. Losing the
//! gateway host then loses at most the records of one interval.

use std::sync::Arc;
use std::time::Duration;

use rewind_journal::{Journal, JournalError, segment};
use rewind_model::Seq;
use rewind_vault::{Backend, VaultError};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

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
}

/// Ships until nothing is left (records, then the snapshot labels if they changed);
/// returns the number of segments written.
pub async fn ship_pending(journal: &Journal, vault: &dyn Backend) -> Result<usize, ShipError> {
    let written = ship_segments(journal, vault).await?;
    ship_labels(journal, vault).await?;
    Ok(written)
}

/// Ships the snapshot labels as a new generation if they changed since the last one.
async fn ship_labels(journal: &Journal, vault: &dyn Backend) -> Result<(), ShipError> {
    let (generation, shipped) = journal.labels_shipped()?;
    let labels = journal.labels()?;
    if segment::labels_digest(&labels) == shipped || (generation == 0 && labels.is_empty()) {
        return Ok(());
    }
    let mut next = generation + 1;
    loop {
        let (bytes, digest) = journal.seal_labels(next)?;
        match vault.put(&segment::labels_name(next), bytes.into()).await {
            Ok(()) => return Ok(journal.set_labels_shipped(next, &digest)?),
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
        let records = journal.raw_records(Seq(shipped.0 + 1), SEGMENT_RECORDS)?;
        let Some((last, last_bytes)) = records.last() else { return Ok(written) };
        let sealed = journal.seal_segment(&records, prev)?;
        let hash = match vault.put(&segment::name(sealed.first, sealed.last), sealed.bytes.into()).await {
            Ok(()) => sealed.hash,
            // Shipped before a crash that lost the mark: that copy is the chain's link.
            Err(VaultError::AlreadyExists { name }) => {
                let existing = vault.get(&name).await?;
                journal.open_segment(&existing)?.0.hash
            }
            Err(e) => return Err(e.into()),
        };
        match vault.put(&segment::checkpoint_name(*last), journal.checkpoint_of(*last, last_bytes).into()).await {
            Ok(()) | Err(VaultError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        journal.set_shipped(*last, &hash)?;
        written += 1;
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
            Ok(n) => metrics.segments_shipped.inc_by(n as u64),
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
