//! `verify`: walks the journal's hash chain and checkpoints, then checks that every chunk
//! of every journaled version is in the vault (and, when asked, reads, decrypts and
//! re-hashes it), naming each damaged version.

use std::collections::{HashMap, HashSet};

use rewind_journal::Journal;
use rewind_model::{ChunkId, Effect, ObjectChange};
use rewind_vault::Vault;

use crate::HistoryError;
use crate::api::{Damage, VerifyReport};

/// How much data to read back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadData {
    /// Fraction of the chunks to read, decrypt and re-hash: 0 (presence only) to 1 (all).
    /// The sample is chosen by chunk id, which is uniform, so repeated runs with a
    /// fraction check the same chunks; vary nothing and run `--read-data` for all.
    pub fraction: f64,
}

impl ReadData {
    /// Only check that chunks exist.
    pub const NONE: Self = Self { fraction: 0.0 };
    /// Read every chunk.
    pub const ALL: Self = Self { fraction: 1.0 };

    fn covers(self, id: &ChunkId) -> bool {
        if self.fraction >= 1.0 {
            return true;
        }
        let n = u64::from_le_bytes(id.0[..8].try_into().expect("invariant: ids are 32 bytes"));
        (n as f64 / u64::MAX as f64) < self.fraction
    }
}

/// Checks the journal and every chunk it references.
pub async fn verify(journal: &Journal, vault: &Vault, read: ReadData) -> Result<VerifyReport, HistoryError> {
    let mut report = VerifyReport { journal_problems: journal.verify()?, ..VerifyReport::default() };
    let packs: HashSet<String> = vault
        .pack_names()
        .await
        .map_err(|e| HistoryError::Vault(format!("cannot list the vault's packs: {e}")))?
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
