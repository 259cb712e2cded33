//! The RocksDB engine: the journal on local disk, one column family per [`Table`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, DB, DBRecoveryMode, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::engine::{Engine, EngineError, Entry, Table, Visit, Write};
use crate::{Access, JournalError};

/// The file, in the journal's directory, that a process holds a lock on while it has the
/// journal open: exclusive for a writer, shared for readers. RocksDB's own `LOCK` covers
/// writers only, and its error is a sentence to parse; this one is typed.
const LOCK_FILE: &str = "rewind.lock";

/// A journal's RocksDB database.
pub struct RocksEngine {
    db: DB,
    /// Held for as long as the database is open (see [`lock`]).
    _lock: std::fs::File,
}

impl RocksEngine {
    /// Opens (read-write: creates) the database in `dir`. A write-ahead log damaged
    /// anywhere but in an incomplete last record (what a crash mid-write leaves) refuses to
    /// open: RocksDB's default recovery would silently drop every record after the damage
    /// (review F1). Read-only opens write nothing, not even the log's recovery.
    pub fn open(dir: &Path, access: Access) -> Result<Self, JournalError> {
        let lock = lock(dir, access)?;
        let mut opts = Options::default();
        opts.create_if_missing(access == Access::ReadWrite);
        opts.create_missing_column_families(access == Access::ReadWrite);
        opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        opts.set_paranoid_checks(true);
        let cfs = Table::ALL.map(|t| ColumnFamilyDescriptor::new(t.name(), Options::default()));
        let db = match access {
            Access::ReadWrite => DB::open_cf_descriptors(&opts, dir, cfs),
            Access::ReadOnly => DB::open_cf_descriptors_read_only(&opts, dir, cfs, false),
        }
        .map_err(EngineError::from)?;
        Ok(Self { db, _lock: lock })
    }

    fn cf(&self, table: Table) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(table.name()).expect("invariant: column families are created on open")
    }
}

/// The first key after every key starting with `prefix`; `None` when there is none (an
/// empty prefix, or one of only 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

impl Engine for RocksEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.db.get_cf(self.cf(table), key)?)
    }

    fn scan(&self, table: Table, from: &[u8], f: Visit<'_>) -> Result<(), EngineError> {
        for item in self.db.iterator_cf(self.cf(table), IteratorMode::From(from, Direction::Forward)) {
            let (k, v) = item?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn scan_prefix_entries(&self, table: Table, prefix: &[u8], f: Visit<'_>) -> Result<(), EngineError> {
        // Bounded, so RocksDB stops at the prefix's end instead of stepping over every
        // deleted entry after it to find the next live one.
        let mut options = rocksdb::ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            options.set_iterate_upper_bound(end);
        }
        let mode = IteratorMode::From(prefix, Direction::Forward);
        for item in self.db.iterator_cf_opt(self.cf(table), options, mode) {
            let (k, v) = item?;
            if !k.starts_with(prefix) || !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn last_at_or_before(&self, table: Table, key: &[u8]) -> Result<Option<Entry>, EngineError> {
        let mut it = self.db.raw_iterator_cf(self.cf(table));
        it.seek_for_prev(key);
        match (it.key(), it.value()) {
            (Some(k), Some(v)) => Ok(Some((k.to_vec(), v.to_vec()))),
            _ => {
                it.status()?;
                Ok(None)
            }
        }
    }

    fn write(&self, writes: Vec<Write>, sync: bool) -> Result<(), EngineError> {
        let mut wb = WriteBatch::default();
        for w in writes {
            match w {
                Write::Put(t, k, v) => wb.put_cf(self.cf(t), k, v),
                Write::Delete(t, k) => wb.delete_cf(self.cf(t), k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        Ok(self.db.write_opt(wb, &wo)?)
    }
}

/// Takes the journal's process lock, without waiting.
fn lock(dir: &Path, access: Access) -> Result<std::fs::File, JournalError> {
    use rustix::fs::{FlockOperation, flock};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |e: std::io::Error| JournalError::Io { path: dir.to_path_buf(), source: Arc::new(e) };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(LOCK_FILE))
        .map_err(io)?;
    let how = match access {
        Access::ReadWrite => FlockOperation::NonBlockingLockExclusive,
        Access::ReadOnly => FlockOperation::NonBlockingLockShared,
    };
    match flock(&file, how) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(JournalError::InUse { path: PathBuf::from(dir) }),
        Err(e) => Err(io(e.into())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_prefix_ends_at_its_successor() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }

    /// Open intents come and go: their table holds, after any key's marks, the deleted
    /// marks of every key after it. A prefix scan must not step over those (it did once
    /// per write, review of issue 20: a quarter of a small capture's CPU).
    #[test]
    fn a_prefix_scan_does_not_step_over_deleted_entries_after_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let engine = RocksEngine::open(dir.path(), Access::ReadWrite).unwrap();
        let key = |i: u32| format!("mark/{i:06}").into_bytes();
        let puts = (0..5000).map(|i| Write::Put(Table::Unresolved, key(i), Vec::new())).collect();
        engine.write(puts, false).unwrap();
        let deletes = (1..5000).map(|i| Write::Delete(Table::Unresolved, key(i))).collect();
        engine.write(deletes, false).unwrap();
        engine.write(vec![Write::Put(Table::Unresolved, b"zzz".to_vec(), Vec::new())], false).unwrap();

        rocksdb::perf::set_perf_stats(rocksdb::perf::PerfStatsLevel::EnableCount);
        let mut context = rocksdb::perf::PerfContext::default();
        context.reset();
        let mut found = Vec::new();
        engine
            .scan_prefix_entries(Table::Unresolved, b"mark/000000", &mut |k, _| {
                found.push(k.to_vec());
                true
            })
            .unwrap();
        let skipped = context.metric(rocksdb::perf::PerfMetric::InternalDeleteSkippedCount);
        rocksdb::perf::set_perf_stats(rocksdb::perf::PerfStatsLevel::Disable);
        assert_eq!(found, [key(0)]);
        assert!(skipped < 10, "the scan stepped over {skipped} deleted entries past its prefix");
    }
}
