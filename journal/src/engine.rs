//! Where the journal's bytes live: an ordered key-value store of a few tables, written in
//! atomic batches that may be synced. The journal's logic (encryption, chaining, indexes,
//! group commit, verify) is the same over every engine; an engine only stores bytes.
//!
//! Engines: RocksDB ([`crate::rocks`], the default, on local disk), PostgreSQL
//! ([`crate::postgres`], one journal shared by several gateways) and memory
//! ([`crate::memory`], for tests and tools). The conformance suite (`conformance.rs`) runs
//! the journal's behaviour over each.

/// The tables of a journal. Names on disk are [`Table::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// seq (u64 big-endian) → sealed record.
    Records,
    /// (bucket, key, seq) → empty: the commits and observations of each key.
    Versions,
    /// The head, checkpoints, snapshot labels, shipping marks.
    Meta,
    /// seq → empty: intents with neither a commit nor an abort yet.
    Unresolved,
    /// The vault's chunk index (values in the vault's encoding).
    Chunks,
    /// State of work in progress (multipart uploads, reconcile resume points), encrypted.
    Progress,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 6] =
        [Table::Records, Table::Versions, Table::Meta, Table::Unresolved, Table::Chunks, Table::Progress];

    /// Its name in storage (RocksDB column family). Kept from the first format: `open`
    /// and `pending` are the unresolved intents and the work in progress.
    pub fn name(self) -> &'static str {
        match self {
            Table::Records => "records",
            Table::Versions => "versions",
            Table::Meta => "meta",
            Table::Unresolved => "open",
            Table::Chunks => "chunks",
            Table::Progress => "pending",
        }
    }
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Sets `key` to `value`.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Removes `key`.
    Delete(Table, Vec<u8>),
}

/// What an engine reports when it cannot read or write.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// RocksDB failed (disk full, I/O error, damaged files, …).
    #[error("journal storage: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// PostgreSQL failed, or cannot be reached. The message is the server's or the
    /// client's, which never carries the password.
    #[error("journal database: {0}")]
    Database(String),
    /// PostgreSQL refused this process (authentication, a missing password, no such
    /// database, no privilege): retrying will not help until the setup changes.
    #[error("journal database: {0}")]
    Refused(String),
    /// A write a test engine was told to fail (what a crash or a full disk leaves).
    #[error("journal storage: injected failure")]
    Injected,
}

impl EngineError {
    /// Whether the stored data is damaged (rather than the storage unavailable).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Self::Rocks(e) if e.kind() == rocksdb::ErrorKind::Corruption)
    }

    /// Whether the database refused this process, rather than being unreachable.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused(_))
    }
}

/// A stored entry: key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// An entry, and the value another table holds under the end of its key (see
/// [`Engine::last_at_or_before_each_then`]).
pub type EntryThen = (Entry, Option<Vec<u8>>);

/// A scan's callback: called with each entry, it returns whether to go on.
pub type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> bool;

/// A prefix scan's callback.
pub(crate) type VisitOr<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<(), crate::JournalError>;

/// Builds a writer batch from the value of the key read first: the writes, and whether
/// to sync them (`None`: nothing to write).
pub type BuildBatch<'a> = &'a mut dyn FnMut(Option<Vec<u8>>) -> Option<(Vec<Write>, bool)>;

/// An ordered key-value store with tables and atomic batches.
///
/// Reads may run on any thread at any time. Writes come from the journal's one writer
/// thread (and from tests that simulate damage): engines need not order concurrent writes.
pub trait Engine: Send + Sync + 'static {
    /// The value of `key`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Calls `f` with each entry from `from` on, in key order, until it returns `false`.
    /// `f` may read the engine (not write it).
    fn scan(&self, table: Table, from: &[u8], f: Visit<'_>) -> Result<(), EngineError>;

    /// Calls `f` with each entry whose key starts with `prefix`, in key order, until it
    /// returns `false`. An engine that can should stop at the prefix's end without reading
    /// past it: a table whose entries come and go (open intents) holds, right after a
    /// prefix, the deleted entries of every key after it, which a scan stopping only at
    /// the next live entry would step over one by one.
    fn scan_prefix_entries(&self, table: Table, prefix: &[u8], f: Visit<'_>) -> Result<(), EngineError> {
        self.scan(table, prefix, &mut |k, v| k.starts_with(prefix) && f(k, v))
    }

    /// The last entry at or before `key`.
    fn last_at_or_before(&self, table: Table, key: &[u8]) -> Result<Option<Entry>, EngineError>;

    /// [`Engine::last_at_or_before`] of each of `keys`, in order; a database answers them
    /// in one round trip.
    fn last_at_or_before_each(&self, table: Table, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, EngineError> {
        keys.iter().map(|k| self.last_at_or_before(table, k)).collect()
    }

    /// [`Engine::last_at_or_before_each`], each entry found with the value in `then` under
    /// the last `suffix` bytes of its key (an index entry ending in what it points at), or
    /// `None` when `then` has no such entry; a database answers it all in one round trip.
    fn last_at_or_before_each_then(
        &self,
        table: Table,
        keys: &[&[u8]],
        then: Table,
        suffix: usize,
    ) -> Result<Vec<Option<EntryThen>>, EngineError> {
        self.last_at_or_before_each(table, keys)?
            .into_iter()
            .map(|found| {
                found
                    .map(|(k, v)| {
                        let pointed = match k.len().checked_sub(suffix) {
                            Some(start) => self.get(then, &k[start..])?,
                            None => None,
                        };
                        Ok(((k, v), pointed))
                    })
                    .transpose()
            })
            .collect()
    }

    /// Applies `writes` all or none; with `sync`, durably before returning.
    fn write(&self, writes: Vec<Write>, sync: bool) -> Result<(), EngineError>;

    /// Locks held across every process that shares this store, when it is shared.
    fn shared_locks(&self) -> Option<std::sync::Arc<dyn SharedLocks>> {
        None
    }

    /// Whether other processes write to this store at the same time (several gateways on
    /// one database). The writer then reads the head afresh at every batch.
    fn shared(&self) -> bool {
        false
    }

    /// Writes one batch of the journal's writer: calls `build` once, while no other writer
    /// of the store (in any process) is between its own `build` and the end of its write,
    /// then applies what `build` returned (writes, and whether to sync); `None` writes
    /// nothing. `build` may read the engine, and sees every batch written before it.
    /// `build` is given the value of `first` (read under the same exclusion), which a
    /// database can fetch in the round trip that takes its lock.
    fn write_batch(&self, first: Option<(Table, &[u8])>, build: BuildBatch<'_>) -> Result<(), EngineError> {
        let value = match first {
            Some((table, key)) => self.get(table, key)?,
            None => None,
        };
        match build(value) {
            Some((writes, sync)) => self.write(writes, sync),
            None => Ok(()),
        }
    }
}

/// Exclusive locks by number, shared by every process of a shared store (per-key mutation
/// locks across gateways). A process that dies, or loses its connection, releases all of
/// its own. Locks are re-entrant within one process: the process's own per-key locks
/// order its requests.
pub trait SharedLocks: Send + Sync {
    /// Takes the locks `ids` (taken in ascending order, so two callers cannot deadlock),
    /// waiting as long as another process holds one. Answers the ids under which intents
    /// were left open (marks in `open`, see `layout::open_mark`), read after each lock was
    /// taken: in the round trip that takes it where the store can.
    fn acquire(&self, ids: Vec<i64>) -> futures::future::BoxFuture<'static, Result<Vec<i64>, EngineError>>;

    /// Releases locks `ids`, taken once each by [`SharedLocks::acquire`], without waiting.
    fn release(&self, ids: Vec<i64>);
}

/// Helpers every engine gets.
pub(crate) trait EngineExt {
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, table: Table, prefix: &[u8], f: VisitOr<'_>) -> Result<(), crate::JournalError>;
}

impl<E: Engine + ?Sized> EngineExt for E {
    fn scan_prefix(&self, table: Table, prefix: &[u8], f: VisitOr<'_>) -> Result<(), crate::JournalError> {
        let mut failed = None;
        self.scan_prefix_entries(table, prefix, &mut |k, v| match f(k, v) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        failed.map_or(Ok(()), Err)
    }
}
