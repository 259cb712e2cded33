//! The chain of journal segments in a vault. Usually every segment follows the one before
//! it. Two cases leave segments that overlap: a shipper killed while its write to the
//! vault was in flight (the write lands after its successor shipped the same records again,
//! in a longer segment), and a vault that holds two histories (a journal that lost records
//! and shipped again, review F1). Readers then take the chain that links from the first
//! record and reaches furthest.

use rewind_journal::{Journal, JournalError, segment};
use rewind_vault::{Backend, VaultError};

/// Why no chain could be read.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The vault failed.
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    /// A segment could not be opened.
    #[error("{name}: {source}")]
    Unreadable {
        /// The segment.
        name: String,
        /// Why.
        #[source]
        source: JournalError,
    },
    /// A name under `segments/` that is no segment's.
    #[error("{0} is not a segment name")]
    NotASegment(String),
    /// No segment starts where the chain must go on.
    #[error("no segment starts where the journal goes on (seq {0}): the vault's segments are incomplete")]
    NoStart(u64),
}

/// The segments of `names` (sorted, as a listing gives them) that form the chain, in order.
/// `start` is the first record and the hash of the segment before it (after a base, its
/// horizon's). Headers are read only when the names overlap.
pub async fn chain_of(
    names: &[String],
    vault: &dyn Backend,
    journal: &Journal,
    start: (u64, [u8; 32]),
) -> Result<Vec<String>, ChainError> {
    let ranges: Vec<(u64, u64)> = names
        .iter()
        .map(|n| segment::range_of_name(n).ok_or_else(|| ChainError::NotASegment(n.clone())))
        .collect::<Result<_, _>>()?;
    let linear = ranges.iter().scan(start.0, |next, &(first, last)| {
        let ok = first == *next && last >= first;
        *next = last + 1;
        Some(ok)
    });
    if linear.into_iter().all(|ok| ok) {
        return Ok(names.to_vec());
    }
    // Headers: (first, last, prev, hash) per segment.
    let mut heads = Vec::with_capacity(names.len());
    for name in names {
        let (seg, _) = journal
            .open_segment(&vault.get(name).await?)
            .map_err(|source| ChainError::Unreadable { name: name.clone(), source })?;
        heads.push((seg.first.0, seg.last.0, seg.prev, seg.hash));
    }
    // Furthest record reachable from each segment, computed from the end (segments sort by
    // first record, so links only go forward in the list).
    let mut starting_at: std::collections::HashMap<u64, Vec<usize>> = std::collections::HashMap::new();
    for (j, h) in heads.iter().enumerate() {
        starting_at.entry(h.0).or_default().push(j);
    }
    let mut reach: Vec<(u64, Option<usize>)> = vec![(0, None); heads.len()];
    for i in (0..heads.len()).rev() {
        let (_, last, _, hash) = heads[i];
        reach[i] = (last, None);
        for &j in starting_at.get(&(last + 1)).into_iter().flatten() {
            if j > i && heads[j].2 == hash && reach[j].0 > reach[i].0 {
                reach[i] = (reach[j].0, Some(j));
            }
        }
    }
    let first = (0..heads.len())
        .filter(|&i| heads[i].0 == start.0 && heads[i].2 == start.1)
        .max_by_key(|&i| reach[i].0)
        .ok_or(ChainError::NoStart(start.0))?;
    let mut chain = vec![names[first].clone()];
    let mut at = first;
    while let Some(next) = reach[at].1 {
        chain.push(names[next].clone());
        at = next;
    }
    Ok(chain)
}
