//! Which keys have open intents, known without reading the store, on a journal one process
//! has to itself.
//!
//! Each intent files a mark under its key's lock id (`layout::open_mark`); its commit or
//! abort deletes it. Before a mutation, the key's marks are scanned (G2: an interrupted
//! mutation is resolved before the next one passes it). In RocksDB each deleted mark stays
//! behind as a tombstone until compaction, and a scan steps over every one of them: a key
//! rewritten 100,000 times cost 17 ms per scan on the bench machine, growing with each
//! write. The writer thread knows every mark it files and deletes, so on an engine no other
//! process writes it keeps a count per lock id, and a key with none is answered without a
//! scan. Shared engines (other gateways file marks too) always scan.
//!
//! The count never undercounts what the store holds: a mark is counted before its batch is
//! written, and uncounted only once the batch deleting it is in. A failed batch leaves a
//! count too high, which costs a scan, never a missed intent.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::engine::{Engine, Table, Write};
use crate::{JournalError, layout};

/// Open-intent marks per key lock id; `None` when the store must be asked each time.
pub(crate) struct OpenMarks(Option<Mutex<HashMap<i64, u32>>>);

impl OpenMarks {
    /// Always asks the store (shared engines, read-only journals).
    pub(crate) fn unknown() -> Self {
        Self(None)
    }

    /// Counts the marks in `engine`, which only this process writes from now on.
    pub(crate) fn load(engine: &dyn Engine) -> Result<Self, JournalError> {
        let mut counts = HashMap::new();
        engine.scan_prefix_entries(Table::Unresolved, &[layout::OPEN_MARK_TAG], &mut |k, _| {
            if let Some(id) = layout::open_mark_id(k) {
                *counts.entry(id).or_insert(0u32) += 1;
            }
            true
        })?;
        Ok(Self(Some(Mutex::new(counts))))
    }

    fn counts(&self) -> Option<MutexGuard<'_, HashMap<i64, u32>>> {
        Some(self.0.as_ref()?.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether key lock id `id` may have open marks (false: it has none).
    pub(crate) fn may_have(&self, id: i64) -> bool {
        self.counts().is_none_or(|counts| counts.contains_key(&id))
    }

    /// Before `writes` go to the store: counts the marks they file, and returns the lock
    /// ids of those they delete, for [`OpenMarks::deleted`] once they are in.
    pub(crate) fn filing(&self, writes: &[Write]) -> Vec<i64> {
        let Some(mut counts) = self.counts() else { return Vec::new() };
        let mut deleted = Vec::new();
        for w in writes {
            match w {
                Write::Put(Table::Unresolved, k, _) => {
                    if let Some(id) = layout::open_mark_id(k) {
                        *counts.entry(id).or_insert(0) += 1;
                    }
                }
                Write::Delete(Table::Unresolved, k) => deleted.extend(layout::open_mark_id(k)),
                _ => {}
            }
        }
        deleted
    }

    /// After the batch deleting marks under `ids` is written.
    pub(crate) fn deleted(&self, ids: &[i64]) {
        let Some(mut counts) = self.counts() else { return };
        for id in ids {
            if let Some(n) = counts.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(id);
                }
            }
        }
    }
}
