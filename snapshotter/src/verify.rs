//! `verify`: walks the journal's hash chain and checkpoints, then checks that every chunk
//! of every journaled version is in the vault (and, when asked, reads, decrypts and
//! re-hashes it), naming each damaged version.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rewind_journal::Journal;
use rewind_model::{ChunkId, Effect, ObjectChange};
use rewind_vault::Vault;

use crate::HistoryError;
use crate::api::{Damage, VerifyReport};

/// Which chunks to read back, decrypt and re-hash: those whose id falls in a share
/// `[from, to)` of the id space. Ids are uniform, so a share of the space is that share of
/// the chunks; a fixed share checks the same chunks each run, a rotating one
/// ([`ReadData::rotating`]) covers all of them over a cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadData {
    /// Start of the share, 0 to 1.
    pub from: f64,
    /// End of the share, 0 to 1 (1 includes the last id).
    pub to: f64,
}

impl ReadData {
    /// Only check that chunks exist.
    pub const NONE: Self = Self { from: 0.0, to: 0.0 };
    /// Read every chunk.
    pub const ALL: Self = Self { from: 0.0, to: 1.0 };

    /// The first `fraction` of the chunks (0 to 1).
    pub fn share(fraction: f64) -> Self {
        Self { from: 0.0, to: fraction.clamp(0.0, 1.0) }
    }

    /// The share a run at `now_us` reads when runs come every `every` and every chunk must
    /// be read once per `cycle`: window `k` of `n = cycle / every`, where `k` counts runs
    /// since the epoch, so restarts do not reset the rotation.
    pub fn rotating(now_us: i64, every: Duration, cycle: Duration) -> Self {
        let every_us = every.as_micros().max(1);
        let windows = (cycle.as_micros() / every_us).max(1);
        let k = (u128::try_from(now_us.max(0)).unwrap_or(0) / every_us) % windows;
        Self { from: k as f64 / windows as f64, to: (k + 1) as f64 / windows as f64 }
    }

    /// Whether this share ends the id space: a rotation is complete after it.
    pub fn completes_cycle(self) -> bool {
        self.to >= 1.0
    }

    fn covers(self, id: &ChunkId) -> bool {
        let n = u64::from_le_bytes(id.0[..8].try_into().expect("invariant: ids are 32 bytes"));
        let x = n as f64 / u64::MAX as f64;
        x >= self.from && (x < self.to || self.to >= 1.0)
    }
}

/// Checks the journal and every chunk it references.
pub async fn verify(journal: &Journal, vault: &Vault, read: ReadData) -> Result<VerifyReport, HistoryError> {
    let checked = journal.verify()?;
    let mut report = VerifyReport {
        journal_problems: checked.problems,
        checkpoints: checked.checkpoints,
        ..VerifyReport::default()
    };
    if checked.more > 0 {
        report.journal_problems.push(format!("... and {} more problems", checked.more));
    }
    let packs: HashSet<String> = vault
        .pack_names()
        .await
        .map_err(|source| HistoryError::Vault { what: "cannot list the vault's packs", source })?
        .into_iter()
        .collect();
    // Each chunk is checked once: `None` when sound, else what is wrong.
    let mut verdicts: HashMap<ChunkId, Option<String>> = HashMap::new();
    let mut versions = Vec::new();
    crate::each_record(journal, |record| {
        report.records += 1;
        if let Some(ObjectChange { bucket, key, effect: Effect::Version(version) }) = record.body.into_change() {
            versions.push((record.seq, bucket, key, version.chunks));
        }
    })?;
    for (seq, bucket, key, chunks) in versions {
        report.versions += 1;
        let mut problem = None;
        for id in &chunks {
            let verdict = match verdicts.get(id) {
                Some(v) => v.clone(),
                None => {
                    let v = check_chunk(vault, &packs, id, read, &mut report).await;
                    verdicts.insert(*id, v.clone());
                    v
                }
            };
            if problem.is_none() {
                problem = verdict;
            }
        }
        if let Some(problem) = problem {
            report.damaged.push(Damage { bucket, key, seq: seq.0, problem });
        }
    }
    Ok(report)
}

async fn check_chunk(
    vault: &Vault,
    packs: &HashSet<String>,
    id: &ChunkId,
    read: ReadData,
    report: &mut VerifyReport,
) -> Option<String> {
    report.chunks += 1;
    let location = match vault.locate(id) {
        Ok(Some(l)) => l,
        Ok(None) => return Some(format!("chunk {id} is not in the vault's index")),
        Err(e) => return Some(format!("chunk {id}: {e}")),
    };
    if !packs.contains(&location.pack) {
        return Some(format!("chunk {id}: its pack {} is missing from the vault", location.pack));
    }
    if read.covers(id) {
        report.chunks_read += 1;
        if let Err(e) = vault.read_chunk(id).await {
            return Some(format!("chunk {id} in pack {} does not read back: {e}", location.pack));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_reads_every_chunk_once_per_cycle() {
        let (every, cycle) = (Duration::from_secs(6 * 3600), Duration::from_secs(30 * 86_400));
        let ids: Vec<ChunkId> = (0..2000u64).map(|i| ChunkId(*blake3::hash(&i.to_le_bytes()).as_bytes())).collect();
        let mut read = vec![0u32; ids.len()];
        let runs = 120; // 30 days of 6-hour runs
        for run in 0..runs {
            let share = ReadData::rotating(run * every.as_micros() as i64 + 1, every, cycle);
            assert!(share.to - share.from < 0.01, "{share:?}");
            for (i, id) in ids.iter().enumerate() {
                read[i] += u32::from(share.covers(id));
            }
            assert_eq!(share.completes_cycle(), run == runs - 1);
        }
        assert!(read.iter().all(|&n| n == 1), "every chunk exactly once per cycle");
        assert!(ids.iter().all(|id| ReadData::ALL.covers(id) && !ReadData::NONE.covers(id)));
    }
}
