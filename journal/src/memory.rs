//! The memory engine: a journal that lives as long as its [`MemoryEngine`], for tests and
//! tools. "Reopening" is a new [`crate::Journal`] over the same engine.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use crate::engine::{Engine, EngineError, Entry, Table, Visit, Write};

/// Entries handed to a scan's callback per turn of the lock: the callback may read the
/// engine, so it never runs under the lock.
const SCAN_STEP: usize = 256;

/// Every table's entries, keyed by (table, key).
type Tables = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

/// An in-memory engine.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    tables: Mutex<Tables>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().expect("invariant: no panics while holding this lock")
    }
}

impl Engine for MemoryEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.lock().get(&(table, key.to_vec())).cloned())
    }

    fn scan(&self, table: Table, from: &[u8], f: Visit<'_>) -> Result<(), EngineError> {
        let mut start = Bound::Included((table, from.to_vec()));
        loop {
            let step: Vec<(Vec<u8>, Vec<u8>)> = self
                .lock()
                .range((start, Bound::Unbounded))
                .take_while(|((t, _), _)| *t == table)
                .take(SCAN_STEP)
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect();
            let Some((last, _)) = step.last() else { return Ok(()) };
            let next = Bound::Excluded((table, last.clone()));
            let full = step.len() == SCAN_STEP;
            for (k, v) in &step {
                if !f(k, v) {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
            start = next;
        }
    }

    fn last_at_or_before(&self, table: Table, key: &[u8]) -> Result<Option<Entry>, EngineError> {
        let tables = self.lock();
        let found = tables.range(..=(table, key.to_vec())).next_back();
        Ok(found.filter(|((t, _), _)| *t == table).map(|((_, k), v)| (k.clone(), v.clone())))
    }

    fn write(&self, writes: Vec<Write>, _sync: bool) -> Result<(), EngineError> {
        let mut tables = self.lock();
        for w in writes {
            match w {
                Write::Put(t, k, v) => tables.insert((t, k), v),
                Write::Delete(t, k) => tables.remove(&(t, k)),
            };
        }
        Ok(())
    }
}
