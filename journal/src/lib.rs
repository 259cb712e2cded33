//! Rewind's journal: append-only, encrypted, hash-chained records, and the state that goes
//! with them (indexes, snapshot labels, shipping marks, the vault's chunk index, work in
//! progress), over a storage [`Engine`].
//!
//! Every change goes through one writer thread that folds waiting requests into one atomic
//! batch (`writer.rs`): group commit for records, and the same path for everything else, so
//! a commit and the work-in-progress change that goes with it land together. Each record is
//! encrypted and chained to the previous one (`record.rs`); every [`CHECKPOINT_EVERY`]
//! records a checkpoint MAC over (seq, hash) is stored, so `verify` detects a dropped,
//! reordered, altered or forged record. Stored key layouts are in `layout.rs`.

pub mod base;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod engine;
mod forget;
mod history;
pub mod horizon;
mod incidents;
pub mod layout;
pub mod leases;
mod marks;
pub mod memory;
pub mod postgres;
pub mod record;
pub mod rocks;
pub mod segment;
mod side;
mod upgrade;
mod verify;
pub mod views;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rewind_crypto::{CryptoError, KeySet};
use rewind_model::{Body, Seq};
use tokio::sync::{mpsc, oneshot};

pub use engine::{Engine, EngineError, Table, Write};
pub use history::{Entry, Flow, ScanFrom, indexed_change};
pub use horizon::Horizon;
pub use memory::MemoryEngine;
pub use postgres::{PostgresEngine, PostgresOptions};
pub use record::Record;
pub use rewind_model::ErrorClass;
pub use rocks::RocksEngine;
pub use upgrade::{BasesNamed, RETAG_STEP};
pub use verify::Checked;
pub use views::ViewEntry;
pub use writer::{CHECKPOINT_EVERY, CHECKPOINT_INTERVAL};

use engine::EngineExt;
use marks::OpenMarks;
use side::progress_writes;
use writer::{Build, Request, Writer};

/// What went wrong in the journal.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] EngineError),
    /// A stored record or entry does not decode, decrypt or chain.
    #[error("journal record {} is corrupt: {detail}", seq.0)]
    Corrupt {
        /// The record (0 for entries that are not records).
        seq: Seq,
        /// What is wrong.
        detail: String,
    },
    /// Encrypting a record failed.
    #[error("journal encryption: {0}")]
    Crypto(Arc<CryptoError>),
    /// The journal was closed.
    #[error("the journal is closed")]
    Closed,
    /// Another process (a gateway, or a `rewind` command) has the journal open.
    #[error("the journal at {} is in use by another process (a running gateway, or a rewind command)", path.display())]
    InUse {
        /// The journal's directory.
        path: PathBuf,
    },
    /// The journal was opened read-only.
    #[error("the journal was opened read-only")]
    ReadOnly,
    /// The journal's directory could not be used.
    #[error("journal directory {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl From<CryptoError> for JournalError {
    fn from(e: CryptoError) -> Self {
        Self::Crypto(Arc::new(e))
    }
}

impl JournalError {
    /// How a caller should treat the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Storage(e) if e.is_corruption() => ErrorClass::Corruption,
            Self::Corrupt { .. } => ErrorClass::Corruption,
            Self::Crypto(e) => e.class(),
            Self::Storage(_) | Self::Closed | Self::InUse { .. } | Self::Io { .. } => ErrorClass::Transient,
            Self::ReadOnly => ErrorClass::InvalidInput,
        }
    }
}

/// How a journal is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Appends allowed; one process at a time.
    ReadWrite,
    /// Reads only, with nothing written (not even recovery of the write-ahead log to disk);
    /// any number of readers, but not beside a writer.
    ReadOnly,
}

/// Whether an append must be on disk before it is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before confirming (commits).
    Synced,
    /// In the write-ahead log, synced by the next synced append (intents).
    Buffered,
}

/// A confirmed append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its position.
    pub seq: Seq,
    /// Its hash.
    pub hash: [u8; 32],
    /// Its gateway timestamp, µs since the epoch.
    pub timestamp_us: i64,
}

pub(crate) const GENESIS_HEAD: Appended = Appended { seq: Seq(0), hash: record::GENESIS, timestamp_us: 0 };

/// A change to work-in-progress state made together with an append (see
/// [`Journal::append_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Sets `key` to `value` (stored encrypted, bound to the key).
    Put(Vec<u8>, Vec<u8>),
    /// Removes `key`.
    Remove(Vec<u8>),
    /// Removes every entry whose key starts with the prefix.
    RemovePrefix(Vec<u8>),
    /// Adds chunk index entries (chunk id, the vault's encoded location), keeping existing
    /// ones, as [`Journal::chunk_put_all`] does: a commit carries the entries of the
    /// chunks it references that are durable in the vault and not yet indexed.
    IndexChunks(Vec<([u8; 32], Vec<u8>)>),
}

/// A work-in-progress entry: key and decrypted value.
pub type ProgressEntry = (Vec<u8>, Vec<u8>);

/// One conditional change of the chunk index (see [`Journal::chunk_swap`]).
#[derive(Debug, Clone)]
pub struct ChunkSwap {
    /// The chunk.
    pub id: [u8; 32],
    /// The entry it must still have.
    pub expected: Vec<u8>,
    /// Its new entry, or `None` to remove it.
    pub new: Option<Vec<u8>>,
}

/// Where a journal reads the time (µs since the epoch): the system clock, or a simulated
/// one in tests of what happens over months.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// An open journal.
pub struct Journal {
    engine: Arc<dyn Engine>,
    keys: Arc<KeySet>,
    clock: Clock,
    /// Who the intents this process appends belong to; empty when it has the journal to
    /// itself.
    owner: Arc<str>,
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Keys with open intents, when this process alone writes the engine (see `marks.rs`).
    marks: Arc<OpenMarks>,
}

impl Journal {
    /// Opens (or creates) the RocksDB journal in `dir` for appending.
    pub fn open(dir: &Path, keys: Arc<KeySet>) -> Result<Self, JournalError> {
        Self::open_with(dir, keys, Access::ReadWrite)
    }

    /// Opens the RocksDB journal in `dir` as `access` says.
    pub fn open_with(dir: &Path, keys: Arc<KeySet>, access: Access) -> Result<Self, JournalError> {
        Self::over(Arc::new(RocksEngine::open(dir, access)?), keys, access)
    }

    /// A journal over `engine`: with [`Access::ReadWrite`], its writer starts from the
    /// stored head.
    pub fn over(engine: Arc<dyn Engine>, keys: Arc<KeySet>, access: Access) -> Result<Self, JournalError> {
        Self::over_with_clock(engine, keys, access, Arc::new(now_us))
    }

    /// [`Journal::over`], reading the time from `clock` (which the journal still never
    /// lets go backwards along the chain).
    pub fn over_with_clock(
        engine: Arc<dyn Engine>,
        keys: Arc<KeySet>,
        access: Access,
        clock: Clock,
    ) -> Result<Self, JournalError> {
        Self::over_as(engine, keys, access, clock, "")
    }

    /// [`Journal::over_with_clock`] for one of several processes sharing `engine`: the
    /// intents it appends belong to `owner` (see `leases.rs`).
    pub fn over_as(
        engine: Arc<dyn Engine>,
        keys: Arc<KeySet>,
        access: Access,
        clock: Clock,
        owner: &str,
    ) -> Result<Self, JournalError> {
        let head = read_head(&*engine)?;
        let owner: Arc<str> = Arc::from(owner);
        if access == Access::ReadOnly {
            let marks = Arc::new(OpenMarks::unknown());
            return Ok(Self { engine, keys, clock, owner, tx: None, writer: None, marks });
        }
        let marks = Arc::new(if engine.shared() { OpenMarks::unknown() } else { OpenMarks::load(&*engine)? });
        let last_checkpoint = last_checkpoint(&*engine)?.unwrap_or(Seq(0));
        let (tx, rx) = mpsc::channel(writer::QUEUE_DEPTH);
        let state = Writer {
            engine: engine.clone(),
            keys: keys.clone(),
            head,
            last_checkpoint,
            last_checkpoint_at: std::time::Instant::now(),
            clock: clock.clone(),
            owner: owner.clone(),
            marks: marks.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|e| JournalError::Io { path: PathBuf::new(), source: Arc::new(e) })?;
        Ok(Self { engine, keys, clock, owner, tx: Some(tx), writer: Some(writer), marks })
    }

    /// The time now, by the journal's clock.
    pub(crate) fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The storage engine, for tests that simulate damage and for tools.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// The keys its records are sealed with, for tests that open a second process's
    /// journal over the same engine.
    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, JournalError> {
        let tx = self.tx.as_ref().ok_or(JournalError::ReadOnly)?;
        let (reply, answer) = oneshot::channel();
        tx.send(make(reply)).await.map_err(|_| JournalError::Closed)?;
        answer.await.map_err(|_| JournalError::Closed)
    }

    async fn change(&self, build: Build) -> Result<(), JournalError> {
        self.request(|reply| Request::Change { build, reply }).await?
    }

    /// Appends a record; returns once it is stored with the asked durability.
    pub async fn append(&self, body: Body, durability: Durability) -> Result<Appended, JournalError> {
        self.append_with(body, durability, Vec::new()).await
    }

    /// Appends a record and applies `progress` in the same atomic batch: a commit and the
    /// end of the work it completes land together or not at all.
    pub async fn append_with(
        &self,
        body: Body,
        durability: Durability,
        progress: Vec<Progress>,
    ) -> Result<Appended, JournalError> {
        let mut all = self.append_all(vec![body], durability, progress).await?;
        all.pop().ok_or_else(|| JournalError::Corrupt { seq: Seq(0), detail: "an append returned nothing".into() })
    }

    /// Appends records in order, consecutive, with `progress`, atomically.
    pub async fn append_all(
        &self,
        bodies: Vec<Body>,
        durability: Durability,
        progress: Vec<Progress>,
    ) -> Result<Vec<Appended>, JournalError> {
        let keys = self.keys.clone();
        let side: Build = Box::new(move |view| progress_writes(&keys, view, progress));
        self.request(|reply| Request::Append { bodies, side, durability, reply }).await?
    }

    /// The last record's position, hash and time (seq 0 when empty).
    pub fn head(&self) -> Result<Appended, JournalError> {
        read_head(&*self.engine)
    }

    /// One record.
    pub fn record(&self, seq: Seq) -> Result<Option<Record>, JournalError> {
        match self.engine.get(Table::Records, &layout::seq_key(seq))? {
            Some(bytes) => record::decode(&self.keys, seq, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Records from `from` on, at most `limit`.
    pub fn records(&self, from: Seq, limit: usize) -> Result<Vec<Record>, JournalError> {
        self.raw_records(from, limit)?.into_iter().map(|(seq, bytes)| record::decode(&self.keys, seq, &bytes)).collect()
    }

    /// Records from `from` on, at most `limit`, as stored (encrypted, chained): what
    /// segments carry to the vault.
    pub fn raw_records(&self, from: Seq, limit: usize) -> Result<segment::RawRecords, JournalError> {
        let mut out = Vec::new();
        let mut bad = None;
        self.engine.scan(Table::Records, &layout::seq_key(from), &mut |k, v| {
            if out.len() >= limit {
                return false;
            }
            match layout::seq_of(k) {
                Some(seq) => out.push((seq, v.to_vec())),
                None => bad = Some(JournalError::Corrupt { seq: Seq(0), detail: "a record key is malformed".into() }),
            }
            bad.is_none()
        })?;
        bad.map_or(Ok(out), Err)
    }

    /// Every commit record of `bucket`/`key`, oldest first.
    pub fn history(&self, bucket: &str, key: &str) -> Result<Vec<Record>, JournalError> {
        let prefix = layout::version_prefix(bucket, key);
        let mut seqs = Vec::new();
        self.engine.scan_prefix(Table::Versions, &prefix, &mut |k, _| {
            if let Some(seq) = (k.len() == prefix.len() + 8).then(|| layout::seq_of(&k[prefix.len()..])).flatten() {
                seqs.push(seq);
            }
            Ok(())
        })?;
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            out.extend(self.record(seq)?);
        }
        Ok(out)
    }

    /// For every key of `bucket` that starts with `prefix` and has a commit at or before
    /// `at`: the key and its latest such commit, in key order (one pass over the index).
    pub fn latest_commits(&self, bucket: &str, prefix: &str, at: Seq) -> Result<Vec<(String, Seq)>, JournalError> {
        let (scan, key_at) = layout::version_scan(bucket, prefix);
        let mut out: Vec<(String, Seq)> = Vec::new();
        self.engine.scan_prefix(Table::Versions, &scan, &mut |k, _| {
            let Some((key, seq)) = layout::split_key_seq(&k[key_at..]) else {
                return Err(JournalError::Corrupt { seq: Seq(0), detail: "malformed version index entry".into() });
            };
            if seq <= at {
                match out.last_mut() {
                    Some((last, s)) if *last == key => *s = seq,
                    _ => out.push((key, seq)),
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Every entry of the versions index of `bucket` (commits and observations, its own
    /// bucket-level ones under the key ""): key and position, in key order then position
    /// order.
    pub fn changes(&self, bucket: &str) -> Result<Vec<(String, Seq)>, JournalError> {
        let (scan, key_at) = layout::version_scan(bucket, "");
        let mut out = Vec::new();
        self.engine.scan_prefix(Table::Versions, &scan, &mut |k, _| {
            let entry = layout::split_key_seq(&k[key_at..])
                .ok_or_else(|| JournalError::Corrupt { seq: Seq(0), detail: "malformed version index entry".into() })?;
            out.push(entry);
            Ok(())
        })?;
        Ok(out)
    }

    /// The last record appended at or before gateway time `timestamp_us` (µs since the
    /// epoch); `Seq(0)` when none is that old. Timestamps never decrease along the chain.
    pub fn seq_at(&self, timestamp_us: i64) -> Result<Seq, JournalError> {
        // Records `forget` removed leave gaps: each probe reads the first record at or
        // after its position.
        let (mut lo, mut hi) = (0u64, self.head()?.seq.0); // answer in [lo, hi]
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            match self.first_record_from(Seq(mid))? {
                Some(r) if r.timestamp_us <= timestamp_us => lo = r.seq.0.min(hi),
                _ => hi = mid - 1,
            }
        }
        Ok(Seq(lo))
    }

    /// The first record at or after `seq`.
    fn first_record_from(&self, seq: Seq) -> Result<Option<Record>, JournalError> {
        Ok(self.records(seq, 1)?.pop())
    }

    /// Every bucket with at least one commit, in name order (one seek per bucket).
    pub fn buckets(&self) -> Result<Vec<String>, JournalError> {
        let mut out = Vec::new();
        let mut from = Vec::new();
        loop {
            let mut first = None;
            self.engine.scan(Table::Versions, &from, &mut |k, _| {
                first = Some(k.to_vec());
                false
            })?;
            let Some(k) = first else { return Ok(out) };
            let bucket = layout::bucket_of(&k)
                .ok_or_else(|| JournalError::Corrupt { seq: Seq(0), detail: "malformed version index entry".into() })?;
            from = layout::next_bucket(&bucket);
            out.push(bucket);
        }
    }

    /// The newest checkpoint: its seq, or `None` before the first.
    pub fn last_checkpoint(&self) -> Result<Option<Seq>, JournalError> {
        last_checkpoint(&*self.engine)
    }

    /// The last record shipped to the vault and the hash of the segment that holds it
    /// (`Seq(0)` and zeros before the first).
    pub fn shipped(&self) -> Result<(Seq, [u8; 32]), JournalError> {
        let (seq, hash) = self.mark(layout::SHIPPED_KEY)?;
        Ok((Seq(seq), hash))
    }

    /// Records that every record up to `seq` is in the vault, in the segment hashing to
    /// `segment_hash`; durably.
    pub async fn set_shipped(&self, seq: Seq, segment_hash: &[u8; 32]) -> Result<(), JournalError> {
        self.set_mark(layout::SHIPPED_KEY, seq.0, segment_hash).await
    }

    /// The generation and digest of the label set last shipped to the vault (0 and zeros
    /// before the first).
    pub fn labels_shipped(&self) -> Result<(u64, [u8; 32]), JournalError> {
        self.mark(layout::LABELS_SHIPPED_KEY)
    }

    /// Records that label set `generation`, with `digest`, is in the vault; durably.
    pub async fn set_labels_shipped(&self, generation: u64, digest: &[u8; 32]) -> Result<(), JournalError> {
        self.set_mark(layout::LABELS_SHIPPED_KEY, generation, digest).await
    }

    fn mark(&self, key: &[u8]) -> Result<(u64, [u8; 32]), JournalError> {
        match self.engine.get(Table::Meta, key)? {
            Some(v) => layout::parse_mark(&v).ok_or_else(|| JournalError::Corrupt {
                seq: Seq(0),
                detail: format!("malformed {} mark", String::from_utf8_lossy(key)),
            }),
            None => Ok((0, [0; 32])),
        }
    }

    async fn set_mark(&self, key: &'static [u8], n: u64, hash: &[u8; 32]) -> Result<(), JournalError> {
        let value = layout::mark_value(n, hash);
        self.change(Box::new(move |_| Ok(vec![Write::Put(Table::Meta, key.to_vec(), value)]))).await
    }

    /// Appends records shipped from another journal (a rebuild from the vault), checking
    /// each decrypts, is the next position and chains to the one before, and indexing it.
    pub async fn import(&self, records: Vec<(Seq, Vec<u8>)>) -> Result<Appended, JournalError> {
        self.request(|reply| Request::Import { records, horizon: None, reply }).await?
    }

    /// Imports a base (a rebuild from a vault that `forget` compacted): the records left at
    /// or before `horizon`, into an empty journal, checked against the horizon's digest.
    /// Segments after the horizon are then imported with [`Journal::import`].
    pub async fn import_base(&self, records: Vec<(Seq, Vec<u8>)>, horizon: Horizon) -> Result<Appended, JournalError> {
        self.request(|reply| Request::Import { records, horizon: Some(horizon), reply }).await?
    }

    /// Stores a shipped checkpoint (from [`Journal::checkpoint_of`]) if its MAC is this
    /// journal's and it names an imported record with that hash; `false` otherwise.
    pub async fn import_checkpoint(&self, bytes: &[u8]) -> Result<bool, JournalError> {
        let Ok((seq, hash)) = segment::open_checkpoint(&self.keys, bytes) else { return Ok(false) };
        if self.record(seq)?.is_none_or(|r| r.hash != hash) {
            return Ok(false);
        }
        let value = bytes[8..].to_vec();
        self.change(Box::new(move |_| Ok(vec![Write::Put(Table::Meta, layout::checkpoint_key(seq), value)]))).await?;
        Ok(true)
    }

    /// Opens a shipped checkpoint (see [`segment::open_checkpoint`]).
    pub fn open_checkpoint(&self, bytes: &[u8]) -> Result<(Seq, [u8; 32]), JournalError> {
        segment::open_checkpoint(&self.keys, bytes)
    }

    /// Seals `records` (from [`Journal::raw_records`]) into a segment after `prev`.
    pub fn seal_segment(&self, records: &[(Seq, Vec<u8>)], prev: [u8; 32]) -> Result<segment::Segment, JournalError> {
        segment::seal(&self.keys, records, prev)
    }

    /// Opens a segment sealed with this journal's key.
    pub fn open_segment(&self, bytes: &[u8]) -> Result<(segment::Segment, segment::RawRecords), JournalError> {
        segment::open(&self.keys, bytes)
    }

    /// A signed checkpoint of record `seq` with stored bytes `record`.
    pub fn checkpoint_of(&self, seq: Seq, record: &[u8]) -> Vec<u8> {
        segment::checkpoint(&self.keys, seq, blake3::hash(record).as_bytes())
    }

    /// Stops the writer after it has written what was queued.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn read_head(engine: &dyn Engine) -> Result<Appended, JournalError> {
    head_of(engine.get(Table::Meta, layout::HEAD_KEY)?)
}

/// The head a stored head value (`None`: none stored) says.
fn head_of(stored: Option<Vec<u8>>) -> Result<Appended, JournalError> {
    match stored {
        Some(v) => layout::parse_head(&v)
            .ok_or_else(|| JournalError::Corrupt { seq: Seq(0), detail: "the stored head is malformed".into() }),
        None => Ok(GENESIS_HEAD),
    }
}

fn last_checkpoint(engine: &dyn Engine) -> Result<Option<Seq>, JournalError> {
    let found = engine.last_at_or_before(Table::Meta, &layout::checkpoint_key(Seq::LATEST))?;
    Ok(found.and_then(|(k, _)| k.strip_prefix(layout::CHECKPOINT_PREFIX).and_then(layout::seq_of)))
}

/// The system clock, as a journal reads it.
pub fn system_clock() -> Clock {
    Arc::new(now_us)
}

pub(crate) fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
