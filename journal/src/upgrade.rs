//! One-time upgrades of what older versions indexed, run by a serving gateway in the
//! background and resumed where they stopped.
//!
//! Naming retag bases: a `versions` entry of a change of tags alone names the version its
//! tags apply to (see `writer.rs`, `stored_base`), so a read of a key retagged many times
//! jumps there. Entries indexed before that are empty, and a read of such a key goes back
//! record by record through every tag change since its version, until its next version.
//! [`Journal::name_retag_bases`] walks the `versions` table once, in steps through the
//! writer, and names the base of every such entry whose base is known.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rewind_crypto::KeySet;
use rewind_model::{Effect, Seq};

use crate::engine::{Table, Write};
use crate::writer::{View, stored_base};
use crate::{Journal, JournalError, layout, record};

/// `versions` entries one step reads. A step runs on the writer thread (appends wait for
/// it), reading and decrypting the record of each entry that names nothing yet: about a
/// millisecond (`cargo bench --bench hot_key`).
pub const RETAG_STEP: usize = 128;

/// What [`Journal::name_retag_bases`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BasesNamed {
    /// `versions` entries read (0: the journal was upgraded before).
    pub entries: u64,
    /// Tag changes that now name their base.
    pub named: u64,
}

impl Journal {
    /// Names the base of every tag change indexed before entries named theirs, in steps of
    /// `step` entries, each a synced change that also records how far it got (a restart
    /// resumes there), with a pause as long as the step between steps. Tag changes appended
    /// meanwhile name their own. Returns at once on a journal already upgraded; `stop` is
    /// asked between steps.
    pub async fn name_retag_bases(&self, step: usize, stop: impl Fn() -> bool) -> Result<BasesNamed, JournalError> {
        let entries = Arc::new(AtomicU64::new(0));
        let named = Arc::new(AtomicU64::new(0));
        while !self.retag_bases_named()? && !stop() {
            let (keys, entries, named) = (self.keys.clone(), entries.clone(), named.clone());
            let took = Arc::new(std::sync::Mutex::new(Duration::ZERO));
            let timed = took.clone();
            self.change(Box::new(move |view: &View<'_>| {
                let start = Instant::now();
                let (read, writes) = name_step(&keys, view, step.max(1))?;
                entries.fetch_add(read, Ordering::Relaxed);
                // Every write but the cursor's names one base.
                named.fetch_add(writes.len().saturating_sub(1) as u64, Ordering::Relaxed);
                *timed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = start.elapsed();
                Ok(writes)
            }))
            .await?;
            // As long again for everyone else: appends meanwhile wait for one step at most,
            // and the writer spends at most half its time on the upgrade.
            let took = *took.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            tokio::time::sleep(took).await;
        }
        Ok(BasesNamed { entries: entries.load(Ordering::Relaxed), named: named.load(Ordering::Relaxed) })
    }

    /// Whether every tag change this journal indexed names its base where it is known.
    pub fn retag_bases_named(&self) -> Result<bool, JournalError> {
        Ok(self.engine.get(Table::Meta, layout::BASES_NAMED_KEY)?.is_some_and(|v| v.is_empty()))
    }
}

/// One step: the writes naming the bases of the next `step` entries after the cursor, and
/// the cursor's new value (the last entry read; empty once the table is done). Returns how
/// many entries it read. Three round trips to a database: the entries, the records of
/// those naming nothing, and the entry before the first.
fn name_step(keys: &KeySet, view: &View<'_>, step: usize) -> Result<(u64, Vec<Write>), JournalError> {
    let from = match view.get(Table::Meta, layout::BASES_NAMED_KEY)? {
        None => Vec::new(),
        Some(done) if done.is_empty() => return Ok((0, Vec::new())),
        Some(mut last) => {
            last.push(0); // the first key after it
            last
        }
    };
    let entries = view.stored_from(Table::Versions, &from, step)?;
    let unnamed: Vec<&[u8]> = entries.iter().filter(|(_, v)| v.is_empty()).map(|(k, _)| k.as_slice()).collect();
    let mut records = view.records_of(&unnamed)?.into_iter();
    let mut writes = Vec::new();
    // The key being walked (its `versions` prefix) and the base a tag change of it names.
    let mut walking: Option<(Vec<u8>, Option<Seq>)> = None;
    for (k, value) in &entries {
        let record = if value.is_empty() { records.next().flatten() } else { None };
        let Some((bucket, key, seq)) = layout::split_version(k) else { continue };
        let prefix = layout::version_prefix(&bucket, &key);
        let base = match walking.take() {
            Some((p, base)) if p == prefix => base,
            // A key's first entry: nothing before it.
            Some(_) => None,
            // The step's first entry may continue a key the step before walked.
            None => stored_base(keys, view, &bucket, &key, seq),
        };
        let next = if value.is_empty() {
            let body = record.and_then(|bytes| record::decode(keys, seq, &bytes).ok()).map(|r| r.body);
            match body.as_ref().and_then(|b| b.change()) {
                Some((_, _, Effect::Version(_))) => Some(seq),
                Some((_, _, Effect::Tags(_))) => {
                    if let Some(b) = base.filter(|_| !view.deletes(Table::Versions, k)) {
                        writes.push(Write::Put(Table::Versions, k.clone(), b.0.to_be_bytes().to_vec()));
                    }
                    base
                }
                // A deletion, or a record gone or unreadable: nothing known to pass on.
                _ => None,
            }
        } else {
            layout::base_of(value)
        };
        walking = Some((prefix, next));
    }
    let cursor = match entries.last() {
        Some((k, _)) if entries.len() == step => k.clone(),
        _ => Vec::new(),
    };
    writes.push(Write::Put(Table::Meta, layout::BASES_NAMED_KEY.to_vec(), cursor));
    Ok((entries.len() as u64, writes))
}
