//! Rewind's journal: the only code that touches RocksDB.
//!
//! Records are appended by one writer thread that batches whatever requests are waiting
//! into one `WriteBatch` (group commit): a batch is synced if any request in it asked for
//! durability, so one fsync covers many concurrent commits. Each record is encrypted and
//! chained to the previous one (see `record.rs`); every [`CHECKPOINT_EVERY`] records a
//! checkpoint MAC over (seq, hash) is stored, so `verify` detects a dropped, reordered,
//! altered or forged record.
//!
//! Column families: `records` (seq, big-endian → record), `versions` ((bucket, key, seq) →
//! empty, for commit records: point-in-time lookups), `meta` (head, checkpoints), `open`
//! (seq of every intent not yet committed or aborted, for start-up recovery), `chunks`
//! (the vault's chunk index, opaque to the journal) and `pending` (state of multipart
//! uploads in progress, encrypted with the journal key).

pub mod record;
pub mod segment;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rewind_crypto::{CryptoError, KeySet, aead};
use rewind_model::{Abort, Body, Commit, Seq};
use rocksdb::{ColumnFamilyDescriptor, DB, DBRecoveryMode, Direction, IteratorMode, Options, WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot};

pub use record::Record;

const CF_RECORDS: &str = "records";
const CF_VERSIONS: &str = "versions";
const CF_META: &str = "meta";
const CF_OPEN: &str = "open";
const CF_CHUNKS: &str = "chunks";
const CF_PENDING: &str = "pending";
const COLUMN_FAMILIES: [&str; 6] = [CF_RECORDS, CF_VERSIONS, CF_META, CF_OPEN, CF_CHUNKS, CF_PENDING];
const HEAD_KEY: &[u8] = b"head";
const CHECKPOINT_PREFIX: &[u8] = b"checkpoint/";
const LABEL_PREFIX: &[u8] = b"label/";
const SHIPPED_KEY: &[u8] = b"shipped";
const LABELS_SHIPPED_KEY: &[u8] = b"labels-shipped";

/// Records between checkpoints. A checkpoint costs one small extra write per batch.
pub const CHECKPOINT_EVERY: u64 = 1024;
/// Longest time a quiet journal goes without a checkpoint of its latest record.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// Most requests folded into one batch: bounds the latency a batch adds to its first request.
const MAX_BATCH: usize = 512;
/// Appends waiting for the writer; past this, appenders wait (backpressure, not loss).
const QUEUE_DEPTH: usize = 4096;

/// What went wrong in the journal.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// RocksDB failed (disk full, I/O error, …).
    #[error("journal storage: {0}")]
    Db(#[from] rocksdb::Error),
    /// A stored record does not decode, decrypt or chain.
    #[error("journal record {} is corrupt: {detail}", seq.0)]
    Corrupt {
        /// The record.
        seq: Seq,
        /// What is wrong.
        detail: String,
    },
    /// Encrypting a record failed.
    #[error("journal encryption: {0}")]
    Crypto(String),
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
        Self::Crypto(e.to_string())
    }
}

pub use rewind_crypto::ErrorClass;

impl JournalError {
    /// How a caller should treat the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Db(e) if e.kind() == rocksdb::ErrorKind::Corruption => ErrorClass::Corruption,
            Self::Db(_) | Self::Crypto(_) | Self::Closed | Self::InUse { .. } | Self::Io { .. } => {
                ErrorClass::Transient
            }
            Self::Corrupt { .. } => ErrorClass::Corruption,
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

const GENESIS_HEAD: Appended = Appended { seq: Seq(0), hash: record::GENESIS, timestamp_us: 0 };

struct Request {
    body: Body,
    durability: Durability,
    reply: oneshot::Sender<Result<Appended, JournalError>>,
}

/// What [`Journal::verify`] checked and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Records walked.
    pub records: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// What is wrong (the first [`Checked::MAX_PROBLEMS`]); empty when intact.
    pub problems: Vec<String>,
    /// Problems past those listed.
    pub more: u64,
}

impl Checked {
    /// Problems listed; a journal damaged throughout is not reported line by line.
    pub const MAX_PROBLEMS: usize = 1000;

    fn problem(&mut self, text: String) {
        if self.problems.len() < Self::MAX_PROBLEMS {
            self.problems.push(text);
        } else {
            self.more += 1;
        }
    }
}

/// A pending-state entry: key and decrypted value.
pub type PendingEntry = (Vec<u8>, Vec<u8>);

/// An open journal.
pub struct Journal {
    db: Arc<DB>,
    keys: Arc<KeySet>,
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<std::thread::JoinHandle<()>>,
    access: Access,
    /// Held for as long as the journal is open (see [`lock`]).
    _lock: std::fs::File,
}

/// The file, in the journal's directory, that a process holds a lock on while it has the
/// journal open: exclusive for a writer, shared for readers. RocksDB's own `LOCK` covers
/// writers only, and its error is a sentence to parse; this one is typed.
const LOCK_FILE: &str = "rewind.lock";

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
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(JournalError::InUse { path: dir.to_path_buf() }),
        Err(e) => Err(io(e.into())),
    }
}

impl Journal {
    /// Opens (or creates) the journal in `dir` for appending.
    pub fn open(dir: &Path, keys: Arc<KeySet>) -> Result<Self, JournalError> {
        Self::open_with(dir, keys, Access::ReadWrite)
    }

    /// Opens the journal in `dir` as `access` says. A write-ahead log damaged anywhere but
    /// in an incomplete last record (what a crash mid-write leaves) refuses to open: RocksDB's
    /// default recovery would silently drop every record after the damage (review F1).
    pub fn open_with(dir: &Path, keys: Arc<KeySet>, access: Access) -> Result<Self, JournalError> {
        let lock = lock(dir, access)?;
        let mut opts = Options::default();
        opts.create_if_missing(access == Access::ReadWrite);
        opts.create_missing_column_families(access == Access::ReadWrite);
        opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        opts.set_paranoid_checks(true);
        let cfs = COLUMN_FAMILIES.map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = match access {
            Access::ReadWrite => DB::open_cf_descriptors(&opts, dir, cfs)?,
            Access::ReadOnly => DB::open_cf_descriptors_read_only(&opts, dir, cfs, false)?,
        };
        let db = Arc::new(db);
        let head = read_head(&db)?;
        if access == Access::ReadOnly {
            return Ok(Self { db, keys, tx: None, writer: None, access, _lock: lock });
        }
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer = {
            let (db, keys) = (db.clone(), keys.clone());
            std::thread::Builder::new()
                .name("journal-writer".into())
                .spawn(move || {
                    let last_checkpoint_at = std::time::Instant::now();
                    Writer { db, keys, head, last_checkpoint: head.seq, last_checkpoint_at }.run(rx)
                })
                .map_err(|e| JournalError::Crypto(format!("cannot start the journal writer: {e}")))?
        };
        Ok(Self { db, keys, tx: Some(tx), writer: Some(writer), access, _lock: lock })
    }

    /// Appends a record; returns once it is stored with the asked durability.
    pub async fn append(&self, body: Body, durability: Durability) -> Result<Appended, JournalError> {
        let (reply, answer) = oneshot::channel();
        if self.access == Access::ReadOnly {
            return Err(JournalError::ReadOnly);
        }
        let tx = self.tx.as_ref().ok_or(JournalError::Closed)?;
        tx.send(Request { body, durability, reply }).await.map_err(|_| JournalError::Closed)?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// The last record's position, hash and time (seq 0 when empty).
    pub fn head(&self) -> Result<Appended, JournalError> {
        read_head(&self.db)
    }

    /// One record.
    pub fn record(&self, seq: Seq) -> Result<Option<Record>, JournalError> {
        let cf = self.cf(CF_RECORDS);
        match self.db.get_cf(cf, seq.0.to_be_bytes())? {
            Some(bytes) => record::decode(&self.keys, seq, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Records from `from` on, at most `limit`.
    pub fn records(&self, from: Seq, limit: usize) -> Result<Vec<Record>, JournalError> {
        let start = from.0.to_be_bytes();
        let iter = self.db.iterator_cf(self.cf(CF_RECORDS), IteratorMode::From(&start, Direction::Forward));
        iter.take(limit)
            .map(|item| {
                let (k, v) = item?;
                record::decode(&self.keys, seq_of(&k), &v)
            })
            .collect()
    }

    /// The last commit record for `bucket`/`key` at or before `at`.
    pub fn latest_at(&self, bucket: &str, key: &str, at: Seq) -> Result<Option<Record>, JournalError> {
        let prefix = version_prefix(bucket, key);
        let mut target = prefix.clone();
        target.extend_from_slice(&at.0.to_be_bytes());
        let mut it = self.db.raw_iterator_cf(self.cf(CF_VERSIONS));
        it.seek_for_prev(&target);
        match it.key() {
            Some(k) if k.len() == prefix.len() + 8 && k.starts_with(&prefix) => self.record(seq_of(&k[prefix.len()..])),
            _ => {
                it.status()?;
                Ok(None)
            }
        }
    }

    /// Every commit record of `bucket`/`key`, oldest first.
    pub fn history(&self, bucket: &str, key: &str) -> Result<Vec<Record>, JournalError> {
        let prefix = version_prefix(bucket, key);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_VERSIONS), IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, _) = item?;
            if !k.starts_with(&prefix) || k.len() != prefix.len() + 8 {
                break;
            }
            out.extend(self.record(seq_of(&k[prefix.len()..]))?);
        }
        Ok(out)
    }

    /// For every key of `bucket` that starts with `prefix` and has a commit at or before
    /// `at`: the key and its latest such commit, in key order (one pass over the index).
    pub fn latest_commits(&self, bucket: &str, prefix: &str, at: Seq) -> Result<Vec<(String, Seq)>, JournalError> {
        let mut scan = Vec::with_capacity(bucket.len() + prefix.len() + 4);
        push_escaped(&mut scan, bucket);
        let bucket_len = scan.len();
        push_escaped(&mut scan, prefix);
        scan.truncate(scan.len() - 2); // a prefix of the key: no terminator
        let mut out: Vec<(String, Seq)> = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_VERSIONS), IteratorMode::From(&scan, Direction::Forward)) {
            let (k, _) = item?;
            if !k.starts_with(&scan) {
                break;
            }
            let Some((key, seq)) = split_version_key(&k[bucket_len..]) else {
                return Err(JournalError::Corrupt { seq: Seq(0), detail: "malformed version index entry".into() });
            };
            if seq > at {
                continue;
            }
            match out.last_mut() {
                Some((last, s)) if *last == key => *s = seq,
                _ => out.push((key, seq)),
            }
        }
        Ok(out)
    }

    /// The last record appended at or before gateway time `timestamp_us` (µs since the
    /// epoch); `Seq(0)` when none is that old. Timestamps never decrease along the chain.
    pub fn seq_at(&self, timestamp_us: i64) -> Result<Seq, JournalError> {
        let (mut lo, mut hi) = (0u64, self.head()?.seq.0); // answer in [lo, hi]
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let record = self
                .record(Seq(mid))?
                .ok_or_else(|| JournalError::Corrupt { seq: Seq(mid), detail: "record is missing".into() })?;
            if record.timestamp_us <= timestamp_us { lo = mid } else { hi = mid - 1 }
        }
        Ok(Seq(lo))
    }

    /// Records from `from` on, at most `limit`, as stored (encrypted, chained): what
    /// segments carry to the vault.
    pub fn raw_records(&self, from: Seq, limit: usize) -> Result<segment::RawRecords, JournalError> {
        let start = from.0.to_be_bytes();
        let iter = self.db.iterator_cf(self.cf(CF_RECORDS), IteratorMode::From(&start, Direction::Forward));
        iter.take(limit)
            .map(|item| {
                let (k, v) = item?;
                Ok((seq_of(&k), v.to_vec()))
            })
            .collect()
    }

    /// The last record shipped to the vault and the hash of the segment that holds it
    /// (`Seq(0)` and zeros before the first).
    pub fn shipped(&self) -> Result<(Seq, [u8; 32]), JournalError> {
        let (seq, hash) = self.mark(SHIPPED_KEY)?;
        Ok((Seq(seq), hash))
    }

    /// Records that every record up to `seq` is in the vault, in the segment hashing to
    /// `segment_hash`; durably.
    pub fn set_shipped(&self, seq: Seq, segment_hash: &[u8; 32]) -> Result<(), JournalError> {
        self.set_mark(SHIPPED_KEY, seq.0, segment_hash)
    }

    /// A shipping mark in `meta`: a number (u64 be) and a hash; 0 and zeros when unset.
    fn mark(&self, key: &[u8]) -> Result<(u64, [u8; 32]), JournalError> {
        Ok(match self.db.get_cf(self.cf(CF_META), key)? {
            Some(v) if v.len() == 40 => (seq_of(&v[..8]).0, v[8..].try_into().expect("invariant: 32 bytes")),
            Some(_) => {
                let detail = format!("malformed {} mark", String::from_utf8_lossy(key));
                return Err(JournalError::Corrupt { seq: Seq(0), detail });
            }
            None => (0, [0; 32]),
        })
    }

    /// Sets a shipping mark, durably.
    fn set_mark(&self, key: &[u8], n: u64, hash: &[u8; 32]) -> Result<(), JournalError> {
        let mut v = n.to_be_bytes().to_vec();
        v.extend_from_slice(hash);
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_META), key, v);
        self.write_synced(wb)
    }

    /// Appends records shipped from another journal (a rebuild from the vault), checking
    /// each decrypts, is the next position and chains to the one before, and indexing it.
    /// Only for a journal nothing else appends to; reopen it afterwards so that the writer
    /// continues from the imported head.
    pub fn import(&self, records: &[(Seq, Vec<u8>)]) -> Result<Appended, JournalError> {
        let mut head = self.head()?;
        let mut wb = WriteBatch::default();
        for (seq, bytes) in records {
            if seq.0 != head.seq.0 + 1 {
                return Err(JournalError::Corrupt { seq: *seq, detail: format!("expected record {}", head.seq.0 + 1) });
            }
            let record = record::decode(&self.keys, *seq, bytes)?;
            if record.prev_hash != head.hash {
                return Err(JournalError::Corrupt { seq: *seq, detail: "does not chain to the record before".into() });
            }
            wb.put_cf(self.cf(CF_RECORDS), seq.0.to_be_bytes(), bytes);
            index(&self.db, &mut wb, *seq, &record.body);
            head = Appended { seq: *seq, hash: record.hash, timestamp_us: record.timestamp_us };
        }
        wb.put_cf(self.cf(CF_META), HEAD_KEY, head_value(&head));
        self.write_synced(wb)?;
        Ok(head)
    }

    /// Stores a shipped checkpoint (from [`Journal::checkpoint_of`]) if its MAC is this
    /// journal's and it names an imported record with that hash; `false` otherwise.
    pub fn import_checkpoint(&self, bytes: &[u8]) -> Result<bool, JournalError> {
        let Ok((seq, hash)) = segment::open_checkpoint(&self.keys, bytes) else { return Ok(false) };
        if self.record(seq)?.is_none_or(|r| r.hash != hash) {
            return Ok(false);
        }
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_META), checkpoint_key(seq), &bytes[8..]);
        self.write_synced(wb)?;
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

    /// Every bucket with at least one commit, in name order (one seek per bucket).
    pub fn buckets(&self) -> Result<Vec<String>, JournalError> {
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.cf(CF_VERSIONS));
        it.seek_to_first();
        while let Some(k) = it.key() {
            let Some((bucket, _)) = split_version_key(&[k, &[0u8; 8][..]].concat()) else {
                return Err(JournalError::Corrupt { seq: Seq(0), detail: "malformed version index entry".into() });
            };
            let mut next = Vec::with_capacity(bucket.len() + 2);
            push_escaped(&mut next, &bucket);
            *next.last_mut().expect("invariant: escaped names end in 0 0") = 1;
            out.push(bucket);
            it.seek(&next);
        }
        it.status()?;
        Ok(out)
    }

    /// The newest checkpoint: its seq, or `None` before the first.
    pub fn last_checkpoint(&self) -> Result<Option<Seq>, JournalError> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_META));
        it.seek_for_prev(checkpoint_key(Seq(u64::MAX)));
        match it.key() {
            Some(k) if k.starts_with(CHECKPOINT_PREFIX) => Ok(Some(seq_of(&k[CHECKPOINT_PREFIX.len()..]))),
            _ => {
                it.status()?;
                Ok(None)
            }
        }
    }

    /// Names `seq` (a named restore point), durably; `false` if the name is taken.
    pub fn label_put(&self, name: &str, seq: Seq) -> Result<bool, JournalError> {
        let (key, value) = label_entry(name, seq, now_us());
        if self.db.get_pinned_cf(self.cf(CF_META), &key)?.is_some() {
            return Ok(false);
        }
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_META), key, value);
        self.write_synced(wb)?;
        Ok(true)
    }

    /// Every label: name, seq, and when it was made (µs since the epoch), by name.
    pub fn labels(&self) -> Result<Vec<(String, Seq, i64)>, JournalError> {
        let mut out = Vec::new();
        let meta = self.cf(CF_META);
        for item in self.db.iterator_cf(meta, IteratorMode::From(LABEL_PREFIX, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(LABEL_PREFIX) {
                break;
            }
            if v.len() != 16 {
                return Err(JournalError::Corrupt { seq: Seq(0), detail: "malformed label".into() });
            }
            let name = String::from_utf8_lossy(&k[LABEL_PREFIX.len()..]).into_owned();
            let created = i64::from_be_bytes(v[8..16].try_into().expect("invariant: 8 bytes"));
            out.push((name, seq_of(&v[..8]), created));
        }
        Ok(out)
    }

    /// Restores labels shipped from another journal (a rebuild from the vault) with their
    /// creation times; those naming a record past this journal's head are left out (their
    /// records were lost with the host). Returns how many were kept.
    pub fn import_labels(&self, labels: &[(String, Seq, i64)]) -> Result<usize, JournalError> {
        let head = self.head()?.seq;
        let mut wb = WriteBatch::default();
        let mut kept = 0;
        for (name, seq, created) in labels.iter().filter(|(_, seq, _)| *seq <= head) {
            let (key, value) = label_entry(name, *seq, *created);
            wb.put_cf(self.cf(CF_META), key, value);
            kept += 1;
        }
        self.write_synced(wb)?;
        Ok(kept)
    }

    /// The generation and digest of the label set last shipped to the vault (0 and zeros
    /// before the first).
    pub fn labels_shipped(&self) -> Result<(u64, [u8; 32]), JournalError> {
        self.mark(LABELS_SHIPPED_KEY)
    }

    /// Records that label set `generation`, with `digest`, is in the vault; durably.
    pub fn set_labels_shipped(&self, generation: u64, digest: &[u8; 32]) -> Result<(), JournalError> {
        self.set_mark(LABELS_SHIPPED_KEY, generation, digest)
    }

    /// Seals the current labels as shipped generation `generation`; also returns their digest.
    pub fn seal_labels(&self, generation: u64) -> Result<(Vec<u8>, [u8; 32]), JournalError> {
        let labels = self.labels()?;
        Ok((segment::seal_labels(&self.keys, generation, &labels)?, segment::labels_digest(&labels)))
    }

    /// Opens a label set sealed with this journal's key.
    pub fn open_labels(&self, bytes: &[u8]) -> Result<(u64, segment::Labels), JournalError> {
        segment::open_labels(&self.keys, bytes)
    }

    /// Removes a label; `false` if there was none.
    pub fn label_delete(&self, name: &str) -> Result<bool, JournalError> {
        let key = [LABEL_PREFIX, name.as_bytes()].concat();
        if self.db.get_pinned_cf(self.cf(CF_META), &key)?.is_none() {
            return Ok(false);
        }
        let mut wb = WriteBatch::default();
        wb.delete_cf(self.cf(CF_META), key);
        self.write_synced(wb)?;
        Ok(true)
    }

    /// Whether the intent at `seq` has neither a commit nor an abort yet.
    pub fn is_open(&self, seq: Seq) -> Result<bool, JournalError> {
        Ok(self.db.get_pinned_cf(self.cf(CF_OPEN), seq.0.to_be_bytes())?.is_some())
    }

    /// Intents with neither a commit nor an abort, oldest first: what a crash interrupted.
    pub fn open_intents(&self) -> Result<Vec<Record>, JournalError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_OPEN), IteratorMode::Start) {
            let (k, _) = item?;
            out.extend(self.record(seq_of(&k))?);
        }
        Ok(out)
    }

    /// Looks a chunk up in the vault's chunk index (values are the vault's encoding).
    pub fn chunk_get(&self, id: &[u8; 32]) -> Result<Option<Vec<u8>>, JournalError> {
        Ok(self.db.get_cf(self.cf(CF_CHUNKS), id)?)
    }

    /// Calls `f` with every chunk index entry (id, value), in id order.
    pub fn for_each_chunk(&self, mut f: impl FnMut(&[u8; 32], &[u8])) -> Result<(), JournalError> {
        for item in self.db.iterator_cf(self.cf(CF_CHUNKS), IteratorMode::Start) {
            let (k, v) = item?;
            if let Ok(id) = <&[u8; 32]>::try_from(&k[..]) {
                f(id, &v);
            }
        }
        Ok(())
    }

    /// Adds chunk index entries durably (synced), keeping existing ones.
    pub fn chunk_put_all(&self, entries: &[([u8; 32], Vec<u8>)]) -> Result<(), JournalError> {
        let cf = self.cf(CF_CHUNKS);
        let mut wb = WriteBatch::default();
        for (id, location) in entries {
            if self.db.get_pinned_cf(cf, id)?.is_none() {
                wb.put_cf(cf, id, location);
            }
        }
        self.write_synced(wb)
    }

    /// Stores state of work in progress under `key`, encrypted and bound to the key, synced.
    pub fn pending_put(&self, key: &[u8], value: &[u8]) -> Result<(), JournalError> {
        let sealed = aead::seal(&self.keys.pending_key(key), &pending_aad(PENDING_V2, key), value)?;
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(CF_PENDING), key, sealed);
        self.write_synced(wb)
    }

    /// Every pending entry whose key starts with `prefix`, decrypted, in key order.
    pub fn pending_scan(&self, prefix: &[u8]) -> Result<Vec<PendingEntry>, JournalError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_PENDING), IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            // Entries written before per-entry keys are opened with the journal key.
            let plain =
                aead::open(&self.keys.pending_key(&k), &pending_aad(PENDING_V2, &k), &v, "pending journal state")
                    .or_else(|_| {
                        aead::open(
                            self.keys.journal.expose(),
                            &pending_aad(PENDING_V1, &k),
                            &v,
                            "pending journal state",
                        )
                    })
                    .map_err(|e| JournalError::Corrupt { seq: Seq(0), detail: e.to_string() })?;
            out.push((k.to_vec(), plain));
        }
        Ok(out)
    }

    /// Removes every pending entry whose key starts with `prefix`.
    pub fn pending_remove(&self, prefix: &[u8]) -> Result<(), JournalError> {
        let cf = self.cf(CF_PENDING);
        let mut wb = WriteBatch::default();
        for item in self.db.iterator_cf(cf, IteratorMode::From(prefix, Direction::Forward)) {
            let (k, _) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            wb.delete_cf(cf, k);
        }
        self.write_synced(wb)
    }

    fn write_synced(&self, wb: WriteBatch) -> Result<(), JournalError> {
        if self.access == Access::ReadOnly {
            return Err(JournalError::ReadOnly);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        Ok(self.db.write_opt(wb, &wo)?)
    }

    /// Walks every record, checkpoint and index entry, and says what is wrong. Memory is
    /// bounded by the intents still open, not by the journal's length.
    pub fn verify(&self) -> Result<Checked, JournalError> {
        let mut found = Checked::default();
        let mut prev = GENESIS_HEAD;
        let mut changes = 0u64;
        let mut open = std::collections::BTreeSet::new();
        for item in self.db.iterator_cf(self.cf(CF_RECORDS), IteratorMode::Start) {
            let (k, v) = item?;
            let seq = seq_of(&k);
            found.records += 1;
            if seq.0 != prev.seq.0 + 1 {
                found.problem(format!("records {} to {} are missing", prev.seq.0 + 1, seq.0.saturating_sub(1)));
            }
            match record::decode(&self.keys, seq, &v) {
                Ok(r) => {
                    if r.prev_hash != prev.hash {
                        found.problem(format!("record {} does not chain to record {}", seq.0, prev.seq.0));
                    }
                    changes += u64::from(r.body.change().is_some());
                    match &r.body {
                        Body::Intent(_) => {
                            open.insert(seq.0);
                        }
                        Body::Commit(Commit { intent, .. }) | Body::Abort(Abort { intent, .. }) => {
                            open.remove(&intent.0);
                        }
                        _ => {}
                    }
                    prev = Appended { seq, hash: r.hash, timestamp_us: r.timestamp_us };
                }
                Err(e) => {
                    found.problem(e.to_string());
                    prev = Appended { seq, hash: *blake3::hash(&v).as_bytes(), timestamp_us: prev.timestamp_us };
                }
            }
        }
        let head = self.head()?;
        if head.seq != prev.seq || head.hash != prev.hash {
            found.problem(format!("the head says record {} but the last record is {}", head.seq.0, prev.seq.0));
        }
        self.verify_checkpoints(&mut found)?;
        self.verify_versions_index(changes, &mut found)?;
        let indexed: std::collections::BTreeSet<u64> = self.open_seqs()?.into_iter().map(|s| s.0).collect();
        if indexed != open {
            found.problem(format!(
                "the index of open intents lists {} intents, the records leave {} open",
                indexed.len(),
                open.len()
            ));
        }
        Ok(found)
    }

    fn verify_checkpoints(&self, found: &mut Checked) -> Result<(), JournalError> {
        let meta = self.cf(CF_META);
        for item in self.db.iterator_cf(meta, IteratorMode::From(CHECKPOINT_PREFIX, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(CHECKPOINT_PREFIX) {
                break;
            }
            found.checkpoints += 1;
            let seq = seq_of(&k[CHECKPOINT_PREFIX.len()..]);
            let stored = self.db.get_cf(self.cf(CF_RECORDS), seq.0.to_be_bytes())?;
            let ok = v.len() == 64
                && stored.is_some_and(|r| blake3::hash(&r).as_bytes()[..] == v[..32])
                && record::checkpoint_mac(&self.keys, seq, v[..32].try_into().expect("invariant: 32 bytes"))[..]
                    == v[32..];
            if !ok {
                found.problem(format!("checkpoint at record {} does not verify", seq.0));
            }
        }
        Ok(())
    }

    /// Every entry of the `versions` index must point at a record that changes the bucket
    /// and key the entry names, and there must be one entry per such record: together,
    /// the index is exactly what the records say (review R3: an edited index could hide a
    /// delete or point a key at another key's version, and verify said nothing).
    fn verify_versions_index(&self, changes: u64, found: &mut Checked) -> Result<(), JournalError> {
        let mut entries = 0u64;
        for item in self.db.iterator_cf(self.cf(CF_VERSIONS), IteratorMode::Start) {
            let (k, _) = item?;
            entries += 1;
            let Some((bucket, key, seq)) = split_index_key(&k) else {
                found.problem("a versions index entry is malformed".into());
                continue;
            };
            let names =
                self.record(seq).ok().flatten().and_then(|r| r.body.change().map(|(b, k, _)| b == bucket && k == key));
            if names != Some(true) {
                found.problem(format!(
                    "the versions index points {bucket}/{key:?} at record {}, which does not change it",
                    seq.0
                ));
            }
        }
        if entries != changes {
            found.problem(format!("the versions index has {entries} entries for {changes} records that change a key"));
        }
        Ok(())
    }

    /// The seqs of the `open` index.
    fn open_seqs(&self) -> Result<Vec<Seq>, JournalError> {
        self.db.iterator_cf(self.cf(CF_OPEN), IteratorMode::Start).map(|item| Ok(seq_of(&item?.0))).collect()
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

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("invariant: column families are created on open")
    }

    /// Raw access for tests that simulate damage.
    #[cfg(test)]
    pub(crate) fn raw_db(&self) -> (&DB, &rocksdb::ColumnFamily) {
        (&self.db, self.cf(CF_RECORDS))
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn read_head(db: &DB) -> Result<Appended, JournalError> {
    let meta = db.cf_handle(CF_META).expect("invariant: column families are created on open");
    Ok(match db.get_cf(meta, HEAD_KEY)? {
        Some(v) if v.len() == 48 => Appended {
            seq: seq_of(&v[..8]),
            hash: v[8..40].try_into().expect("invariant: 32 bytes"),
            timestamp_us: i64::from_be_bytes(v[40..48].try_into().expect("invariant: 8 bytes")),
        },
        Some(_) => return Err(JournalError::Corrupt { seq: Seq(0), detail: "the stored head is malformed".into() }),
        None => GENESIS_HEAD,
    })
}

/// The stored head: what [`read_head`] reads.
fn head_value(head: &Appended) -> Vec<u8> {
    let mut v = head.seq.0.to_be_bytes().to_vec();
    v.extend_from_slice(&head.hash);
    v.extend_from_slice(&head.timestamp_us.to_be_bytes());
    v
}

/// The `meta` key of the checkpoint at `seq`.
fn checkpoint_key(seq: Seq) -> Vec<u8> {
    [CHECKPOINT_PREFIX, &seq.0.to_be_bytes()].concat()
}

/// The `meta` key and value of a label.
fn label_entry(name: &str, seq: Seq, created_us: i64) -> (Vec<u8>, Vec<u8>) {
    ([LABEL_PREFIX, name.as_bytes()].concat(), [seq.0.to_be_bytes(), created_us.to_be_bytes()].concat())
}

/// The index entries a record adds (the `open` and `versions` column families).
fn index(db: &DB, wb: &mut WriteBatch, seq: Seq, body: &Body) {
    let cf = |n| db.cf_handle(n).expect("invariant: column families are created on open");
    // Commits and observations are versions of their key.
    if let Some((bucket, key, _)) = body.change() {
        let mut k = version_prefix(bucket, key);
        k.extend_from_slice(&seq.0.to_be_bytes());
        wb.put_cf(cf(CF_VERSIONS), k, []);
    }
    match body {
        Body::Intent(_) => wb.put_cf(cf(CF_OPEN), seq.0.to_be_bytes(), []),
        Body::Commit(Commit { intent, .. }) | Body::Abort(Abort { intent, .. }) => {
            wb.delete_cf(cf(CF_OPEN), intent.0.to_be_bytes());
        }
        _ => {}
    }
}

const PENDING_V1: &[u8] = b"rewind pending v1 ";
const PENDING_V2: &[u8] = b"rewind pending v2 ";

fn pending_aad(version: &[u8], key: &[u8]) -> Vec<u8> {
    let mut aad = version.to_vec();
    aad.extend_from_slice(key);
    aad
}

fn seq_of(be: &[u8]) -> Seq {
    Seq(u64::from_be_bytes(be[..8].try_into().expect("invariant: keys end in an 8-byte seq")))
}

/// Escapes a name so that concatenations sort like the names and never prefix each other:
/// 0x00 becomes 0x00 0xFF, and 0x00 0x00 ends it.
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Splits a `versions` index key, `escaped bucket | escaped key | seq (u64 be)`.
fn split_index_key(bytes: &[u8]) -> Option<(String, String, Seq)> {
    let (bucket, rest) = split_escaped(bytes)?;
    let (key, rest) = split_escaped(rest)?;
    (rest.len() == 8).then(|| (bucket, key, seq_of(rest)))
}

/// Splits one escaped name (see [`push_escaped`]) off the front of `bytes`.
fn split_escaped(bytes: &[u8]) -> Option<(String, &[u8])> {
    let mut name = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (0, 0) => return Some((String::from_utf8(name).ok()?, &bytes[i + 2..])),
            (0, 0xFF) => {
                name.push(0);
                i += 2;
            }
            (b, _) => {
                name.push(b);
                i += 1;
            }
        }
    }
    None
}

/// Splits `escaped key | 0 0 | seq (u64 be)` into the key and the seq.
fn split_version_key(bytes: &[u8]) -> Option<(String, Seq)> {
    let (key, rest) = split_escaped(bytes)?;
    Some((key, seq_of(rest.get(..8)?)))
}

fn version_prefix(bucket: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bucket.len() + key.len() + 12);
    push_escaped(&mut out, bucket);
    push_escaped(&mut out, key);
    out
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

struct Writer {
    db: Arc<DB>,
    keys: Arc<KeySet>,
    head: Appended,
    last_checkpoint: Seq,
    last_checkpoint_at: std::time::Instant,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.write(batch);
        }
    }

    /// Writes one group; on failure every request in it fails and the head is unchanged.
    fn write(&mut self, requests: Vec<Request>) {
        let start = (self.head, self.last_checkpoint);
        let db = &self.db;
        let cf = |n| db.cf_handle(n).expect("invariant: column families are created on open");
        let mut wb = WriteBatch::default();
        let mut sync = false;
        let mut outcomes = Vec::with_capacity(requests.len());
        for req in &requests {
            let seq = Seq(self.head.seq.0 + 1);
            // The gateway clock, never going backwards within the journal.
            let timestamp_us = now_us().max(self.head.timestamp_us);
            match record::encode(&self.keys, seq, timestamp_us, &self.head.hash, &req.body) {
                Ok((bytes, hash)) => {
                    wb.put_cf(cf(CF_RECORDS), seq.0.to_be_bytes(), bytes);
                    index(db, &mut wb, seq, &req.body);
                    self.head = Appended { seq, hash, timestamp_us };
                    sync |= req.durability == Durability::Synced;
                    outcomes.push(Ok(self.head));
                }
                Err(e) => outcomes.push(Err(e)),
            }
        }
        let due = self.head.seq.0 - self.last_checkpoint.0 >= CHECKPOINT_EVERY
            || (self.head.seq != self.last_checkpoint && self.last_checkpoint_at.elapsed() >= CHECKPOINT_INTERVAL);
        if due {
            self.last_checkpoint_at = std::time::Instant::now();
            let mut v = self.head.hash.to_vec();
            v.extend_from_slice(&record::checkpoint_mac(&self.keys, self.head.seq, &self.head.hash));
            wb.put_cf(cf(CF_META), checkpoint_key(self.head.seq), v);
            self.last_checkpoint = self.head.seq;
        }
        wb.put_cf(cf(CF_META), HEAD_KEY, head_value(&self.head));
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        if let Err(e) = self.db.write_opt(wb, &wo) {
            (self.head, self.last_checkpoint) = start;
            for req in requests {
                let _ = req.reply.send(Err(JournalError::Db(e.clone())));
            }
            return;
        }
        for (req, outcome) in requests.into_iter().zip(outcomes) {
            // The appender may have gone away (client disconnected); the record stands.
            let _ = req.reply.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests;
