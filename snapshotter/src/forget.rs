//! Retention's `forget`: applies the policy to the journal. The records of every entry no
//! promised instant needs (see `retention.rs`), with their intents, are removed under a
//! sealed horizon (`rewind_journal::horizon`), and the vault's copy of the journal is
//! compacted to match (`rewind_capture::compact`). The chunks only they used are then
//! unreferenced, and garbage collection reclaims them.
//!
//! Only records already shipped are removed (the pass ships first): the horizon is the end
//! of a shipped segment, so the vault's base replaces whole segments.

use std::collections::BTreeSet;

use rewind_capture::compact;
use rewind_capture::ship::{self, ShipError};
use rewind_config::RetentionConfig;
use rewind_journal::Journal;
use rewind_model::{Body, ChunkId, Commit, Seq};
use rewind_vault::{Backend, Reclaim};

use crate::HistoryError;
use crate::api::ForgetReport;
use crate::retention::{assess, summarize};

/// Why `forget` could not run (nothing is removed unless the journal's own change
/// succeeded; the vault's copy is brought in line by the next run).
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// Reading or changing the journal failed.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// Shipping or compacting the journal's copy in the vault failed.
    #[error("cannot bring the journal's copy in the vault in line: {0}")]
    Vault(#[from] ShipError),
    /// A record to remove is in no segment the vault holds.
    #[error(
        "record seq:{0} is not in any segment the vault holds: run `rewind verify` to compare the journal with the vault"
    )]
    NotShipped(u64),
}

impl From<rewind_journal::JournalError> for ForgetError {
    fn from(e: rewind_journal::JournalError) -> Self {
        Self::History(e.into())
    }
}

/// Applies the policies of `retention` at `now_us` to `only` or every bucket; the report's
/// plan gives each chunk the size `stored` says.
pub async fn forget(
    journal: &Journal,
    vault: &dyn Backend,
    reclaim: &dyn Reclaim,
    retention: &RetentionConfig,
    only: Option<&str>,
    now_us: i64,
    stored: impl Fn(&ChunkId) -> Result<u64, HistoryError>,
) -> Result<ForgetReport, ForgetError> {
    ship::ship_pending(journal, vault).await?;
    let (shipped, _) = journal.shipped()?;
    let assessment = assess(journal, retention, now_us)?;
    let plan = summarize(&assessment, stored, only, now_us)?;
    let mut remove = BTreeSet::new();
    // Per bucket, the first position whose state no removed entry shaped: instants before
    // it can no longer be read exactly (a time-travel view is refused there).
    let mut exact_from: Vec<(String, Seq)> = Vec::new();
    for (bucket, seqs) in &assessment.expired_seqs {
        if only.is_some_and(|o| o != bucket) {
            continue;
        }
        let removed = seqs.iter().filter(|(s, _)| *s <= shipped);
        let reign = removed.clone().map(|&(seq, end)| end.unwrap_or(Seq(seq.0 + 1))).max();
        exact_from.extend(reign.map(|s| (bucket.clone(), s)));
        for &(seq, _) in removed {
            remove.insert(seq);
            // A commit's intent goes with it; observations have none.
            if let Some(Body::Commit(Commit { intent, .. })) = journal.record(seq)?.map(|r| r.body) {
                remove.insert(intent);
            }
        }
    }
    let mut report = ForgetReport { plan, ..ForgetReport::default() };
    if let Some(&last) = remove.last() {
        let current = journal.horizon()?;
        let (upto, segment) = match current {
            Some(h) if last <= h.seq => (h.seq, h.segment),
            _ => compact::segment_holding(vault, last).await?.ok_or(ForgetError::NotShipped(last.0))?,
        };
        let horizon = journal.horizon_after(&remove, upto, segment)?;
        report.records_removed = remove.len() as u64;
        journal.forget(remove, horizon, exact_from).await?;
    }
    // The first whole positions ship with the labels, by the gateway's next shipping pass
    // or when a CLI session closes: not here, between the removal and the compaction.
    let compacted = compact::compact(journal, vault, reclaim).await?;
    report.horizon = compacted.horizon;
    report.base_written = compacted.base_written;
    report.vault_objects_deleted = compacted.objects_deleted;
    Ok(report)
}
