//! The one writer: every change to a journal goes through this thread, which folds
//! whatever requests are waiting into one batch (group commit). A batch is synced if any
//! request in it asked for durability, so one fsync covers many concurrent commits, and
//! nothing that syncs runs on an async worker or under a lock others wait for.
//!
//! A request is either records to append (with the changes to work-in-progress state that
//! go with them, in the same atomic batch) or a change built from the journal as it stands
//! (labels, marks, chunk index entries, imports). Builders see the writes of the requests
//! before them in the batch, so a batch is the same as its requests applied one by one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rewind_crypto::KeySet;
use rewind_model::{Abort, Body, Commit, Effect, Seq};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Engine, Entry, Table, Write};
use crate::horizon::{Horizon, RetainedDigest};
use crate::layout;
use crate::marks::OpenMarks;
use crate::{Appended, Durability, JournalError, record};

/// Records between checkpoints. A checkpoint costs one small extra write per batch.
pub const CHECKPOINT_EVERY: u64 = 1024;
/// Longest time a quiet journal goes without a checkpoint of its latest record.
pub const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// Most requests folded into one batch: bounds the latency a batch adds to its first request.
const MAX_BATCH: usize = 512;
/// Requests waiting for the writer; past this, callers wait (backpressure, not loss).
pub(crate) const QUEUE_DEPTH: usize = 4096;

/// Builds a change from the journal as it stands (and the batch so far).
pub(crate) type Build = Box<dyn FnOnce(&View<'_>) -> Result<Vec<Write>, JournalError> + Send>;

/// What the writer is asked to do.
pub(crate) enum Request {
    /// Appends records, in order, with their side changes, atomically.
    Append {
        bodies: Vec<Body>,
        side: Build,
        durability: Durability,
        reply: oneshot::Sender<Result<Vec<Appended>, JournalError>>,
    },
    /// Applies a change, durably.
    Change { build: Build, reply: oneshot::Sender<Result<(), JournalError>> },
    /// Appends records that were sealed elsewhere (a rebuild from the vault), checking each
    /// is the next position, decrypts and chains.
    /// With a horizon, the records are a base (see `horizon.rs`): at or before it, with
    /// gaps, going into an empty journal.
    Import {
        records: Vec<(Seq, Vec<u8>)>,
        horizon: Option<Horizon>,
        reply: oneshot::Sender<Result<Appended, JournalError>>,
    },
}

/// An entry as a builder sees it: its key, and its value (`None`: the batch deletes it).
pub(crate) type Pending = (Vec<u8>, Option<Vec<u8>>);

/// The journal as a builder sees it: the engine, with the batch's writes so far on top.
pub(crate) struct View<'a> {
    engine: &'a dyn Engine,
    overlay: &'a BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
}

impl View<'_> {
    /// The value of `key`.
    pub(crate) fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, JournalError> {
        match self.overlay.get(&(table, key.to_vec())) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.engine.get(table, key)?),
        }
    }

    /// Every key starting with `prefix`.
    pub(crate) fn keys_with_prefix(&self, table: Table, prefix: &[u8]) -> Result<Vec<Vec<u8>>, JournalError> {
        let mut keys = std::collections::BTreeSet::new();
        self.engine.scan_prefix_entries(table, prefix, &mut |k, _| {
            keys.insert(k.to_vec());
            true
        })?;
        for ((t, k), v) in self.overlay.range((table, prefix.to_vec())..) {
            if *t != table || !k.starts_with(prefix) {
                break;
            }
            if v.is_some() {
                keys.insert(k.clone());
            } else {
                keys.remove(k);
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Up to `limit` stored entries from `from` on, in key order. The batch's own writes
    /// are not merged in: a caller that writes an entry back asks [`View::deletes`] first.
    pub(crate) fn stored_from(&self, table: Table, from: &[u8], limit: usize) -> Result<Vec<Entry>, JournalError> {
        let mut out = Vec::new();
        self.engine.scan(table, from, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Whether the batch so far deletes `key`.
    pub(crate) fn deletes(&self, table: Table, key: &[u8]) -> bool {
        matches!(self.overlay.get(&(table, key.to_vec())), Some(None))
    }

    /// The stored record each of the `versions` entries `entries` points at, in one round
    /// trip; `None` for one gone, or deleted by the batch so far.
    pub(crate) fn records_of(&self, entries: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, JournalError> {
        let found =
            self.engine.last_at_or_before_each_then(Table::Versions, entries, Table::Records, layout::SEQ_KEY_LEN)?;
        Ok(entries
            .iter()
            .zip(found)
            .map(|(asked, found)| match found {
                Some(((k, _), Some(record))) if k == *asked => {
                    let at = k.len() - layout::SEQ_KEY_LEN;
                    (!self.deletes(Table::Records, &k[at..])).then_some(record)
                }
                _ => None,
            })
            .collect())
    }

    /// The last entry at or before `key`.
    pub(crate) fn last_at_or_before(&self, table: Table, key: &[u8]) -> Result<Option<Pending>, JournalError> {
        let stored = self.engine.last_at_or_before(table, key)?;
        let pending = self.overlay.range((table, Vec::new())..=(table, key.to_vec())).next_back();
        Ok(match (stored, pending) {
            (stored, Some(((_, k), v))) if stored.as_ref().is_none_or(|(s, _)| k >= s) => Some((k.clone(), v.clone())),
            (stored, _) => stored.map(|(k, v)| (k, Some(v))),
        })
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) engine: Arc<dyn Engine>,
    pub(crate) keys: Arc<KeySet>,
    pub(crate) head: Appended,
    pub(crate) last_checkpoint: Seq,
    pub(crate) last_checkpoint_at: std::time::Instant,
    pub(crate) clock: crate::Clock,
    /// Who this journal's intents belong to (see `leases.rs`); empty on a journal one
    /// process has to itself.
    pub(crate) owner: Arc<str>,
    /// Keys with open intents, counted as batches file and delete their marks.
    pub(crate) marks: Arc<OpenMarks>,
}

/// A batch being built.
#[derive(Default)]
struct Batch {
    writes: Vec<Write>,
    overlay: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
    sync: bool,
}

impl Batch {
    fn add(&mut self, writes: Vec<Write>) {
        for w in &writes {
            match w {
                Write::Put(t, k, v) => self.overlay.insert((*t, k.clone()), Some(v.clone())),
                Write::Delete(t, k) => self.overlay.insert((*t, k.clone()), None),
            };
        }
        self.writes.extend(writes);
    }
}

/// What a request will be answered, once the batch is written.
enum Answer {
    Appended(oneshot::Sender<Result<Vec<Appended>, JournalError>>, Result<Vec<Appended>, JournalError>),
    Changed(oneshot::Sender<Result<(), JournalError>>, Result<(), JournalError>),
    Imported(oneshot::Sender<Result<Appended, JournalError>>, Result<Appended, JournalError>),
}

impl Writer {
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut requests = vec![first];
            while requests.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => requests.push(r),
                    Err(_) => break,
                }
            }
            self.write(requests);
        }
    }

    /// Writes one group; on failure every request in it fails and the head is unchanged.
    fn write(&mut self, requests: Vec<Request>) {
        let engine = self.engine.clone();
        let mut requests = Some(requests);
        let mut answers = Vec::new();
        let mut start = (self.head, self.last_checkpoint);
        let first = engine.shared().then_some((Table::Meta, layout::HEAD_KEY));
        let mut unmarked = Vec::new();
        let written = engine.write_batch(first, &mut |stored_head| {
            let requests = requests.take()?;
            if let Err(e) = self.refresh(stored_head) {
                answers.extend(requests.into_iter().map(|r| Answer::failed(r, e.clone())));
                return None;
            }
            start = (self.head, self.last_checkpoint);
            let batch = self.build(requests, &mut answers);
            unmarked = self.marks.filing(&batch.writes);
            (!batch.writes.is_empty()).then_some((batch.writes, batch.sync))
        });
        match written {
            Ok(()) => self.marks.deleted(&unmarked),
            Err(_) => (self.head, self.last_checkpoint) = start,
        }
        answer(answers, written.err().map(JournalError::Storage));
    }

    /// On an engine other processes write to, takes up the head where the last batch (of
    /// any process) left it: `stored`, read under the writers' lock.
    fn refresh(&mut self, stored: Option<Vec<u8>>) -> Result<(), JournalError> {
        if !self.engine.shared() {
            return Ok(());
        }
        let head = crate::head_of(stored)?;
        if head != self.head {
            self.head = head;
            self.last_checkpoint = crate::last_checkpoint(&*self.engine)?.unwrap_or(Seq(0));
        }
        Ok(())
    }

    /// Builds the batch of `requests`, adding each one's answer to `answers`.
    fn build(&mut self, requests: Vec<Request>, answers: &mut Vec<Answer>) -> Batch {
        let start = self.head;
        let mut batch = Batch::default();
        for request in requests {
            answers.push(match request {
                Request::Append { bodies, side, durability, reply } => {
                    let outcome = self.append(&mut batch, bodies, side);
                    batch.sync |= outcome.is_ok() && durability == Durability::Synced;
                    Answer::Appended(reply, outcome)
                }
                Request::Change { build, reply } => {
                    let outcome = build(&View { engine: &*self.engine, overlay: &batch.overlay }).map(|w| batch.add(w));
                    batch.sync |= outcome.is_ok();
                    Answer::Changed(reply, outcome)
                }
                Request::Import { records, horizon, reply } => {
                    let outcome = match horizon {
                        None => self.import(&mut batch, &records),
                        Some(horizon) => self.import_base(&mut batch, &records, &horizon),
                    };
                    batch.sync |= outcome.is_ok();
                    Answer::Imported(reply, outcome)
                }
            });
        }
        if batch.writes.is_empty() {
            return batch;
        }
        let due = self.head.seq.0 - self.last_checkpoint.0 >= CHECKPOINT_EVERY
            || (self.head.seq != self.last_checkpoint && self.last_checkpoint_at.elapsed() >= CHECKPOINT_INTERVAL);
        if due {
            self.last_checkpoint_at = std::time::Instant::now();
            let mut v = self.head.hash.to_vec();
            v.extend_from_slice(&record::checkpoint_mac(&self.keys, self.head.seq, &self.head.hash));
            batch.writes.push(Write::Put(Table::Meta, layout::checkpoint_key(self.head.seq), v));
            self.last_checkpoint = self.head.seq;
        }
        if self.head != start {
            batch.writes.push(Write::Put(Table::Meta, layout::HEAD_KEY.to_vec(), layout::head_value(&self.head)));
        }
        batch
    }

    /// Seals `bodies` after the head, indexes them, and adds the side change; all or none.
    fn append(&mut self, batch: &mut Batch, bodies: Vec<Body>, side: Build) -> Result<Vec<Appended>, JournalError> {
        let side = side(&View { engine: &*self.engine, overlay: &batch.overlay })?;
        let before = self.head;
        let mut writes = Vec::new();
        let mut appended = Vec::with_capacity(bodies.len());
        let mut indexer = Indexer::new(&self.keys, self.owner.as_bytes());
        for body in &bodies {
            let seq = Seq(self.head.seq.0 + 1);
            // The gateway clock, never going backwards within the journal.
            let timestamp_us = (self.clock)().max(self.head.timestamp_us);
            match record::encode(&self.keys, seq, timestamp_us, &self.head.hash, body) {
                Ok((bytes, hash)) => {
                    writes.push(Write::Put(Table::Records, layout::seq_key(seq).to_vec(), bytes));
                    let view = View { engine: &*self.engine, overlay: &batch.overlay };
                    indexer.index(&view, &mut writes, seq, body);
                    self.head = Appended { seq, hash, timestamp_us };
                    appended.push(self.head);
                }
                Err(e) => {
                    self.head = before;
                    return Err(e);
                }
            }
        }
        batch.add(writes);
        batch.add(side);
        Ok(appended)
    }

    fn import(&mut self, batch: &mut Batch, records: &[(Seq, Vec<u8>)]) -> Result<Appended, JournalError> {
        let mut head = self.head;
        let mut writes = Vec::new();
        let mut indexer = Indexer::new(&self.keys, &[]);
        for (seq, bytes) in records {
            if seq.0 != head.seq.0 + 1 {
                return Err(JournalError::Corrupt { seq: *seq, detail: format!("expected record {}", head.seq.0 + 1) });
            }
            let record = record::decode(&self.keys, *seq, bytes)?;
            if record.prev_hash != head.hash {
                return Err(JournalError::Corrupt { seq: *seq, detail: "does not chain to the record before".into() });
            }
            writes.push(Write::Put(Table::Records, layout::seq_key(*seq).to_vec(), bytes.clone()));
            let view = View { engine: &*self.engine, overlay: &batch.overlay };
            indexer.index(&view, &mut writes, *seq, &record.body);
            head = Appended { seq: *seq, hash: record.hash, timestamp_us: record.timestamp_us };
        }
        batch.add(writes);
        self.head = head;
        // Imported records carry their own checkpoints (see `Journal::import_checkpoint`).
        self.last_checkpoint = head.seq;
        Ok(head)
    }
}

impl Writer {
    /// Imports a base: the records left at or before `horizon` by `forget`, checked
    /// against its digest, into an empty journal whose head becomes the horizon's record.
    fn import_base(
        &mut self,
        batch: &mut Batch,
        records: &[(Seq, Vec<u8>)],
        horizon: &Horizon,
    ) -> Result<Appended, JournalError> {
        let corrupt = |seq: Seq, detail: &str| JournalError::Corrupt { seq, detail: format!("base: {detail}") };
        if self.head.seq.0 != 0 {
            return Err(corrupt(self.head.seq, "a base goes only into an empty journal"));
        }
        let mut digest = RetainedDigest::default();
        let mut writes = Vec::new();
        let mut indexer = Indexer::new(&self.keys, &[]);
        let mut prev = crate::GENESIS_HEAD;
        for (seq, bytes) in records {
            if *seq <= prev.seq || *seq > horizon.seq {
                return Err(corrupt(*seq, "records out of order or past the horizon"));
            }
            let record = record::decode(&self.keys, *seq, bytes)?;
            if seq.0 == prev.seq.0 + 1 && record.prev_hash != prev.hash {
                return Err(corrupt(*seq, "does not chain to the record before"));
            }
            digest.add(*seq, &record.hash);
            writes.push(Write::Put(Table::Records, layout::seq_key(*seq).to_vec(), bytes.clone()));
            let view = View { engine: &*self.engine, overlay: &batch.overlay };
            indexer.index(&view, &mut writes, *seq, &record.body);
            prev = Appended { seq: *seq, hash: record.hash, timestamp_us: record.timestamp_us };
        }
        if digest.finish() != horizon.retained {
            return Err(corrupt(horizon.seq, "its records are not the ones its horizon vouches for"));
        }
        writes.push(Write::Put(Table::Meta, layout::HORIZON_KEY.to_vec(), horizon.seal(&self.keys)));
        batch.add(writes);
        self.head = Appended { seq: horizon.seq, hash: horizon.hash, timestamp_us: prev.timestamp_us };
        self.last_checkpoint = self.head.seq;
        Ok(self.head)
    }
}

impl Answer {
    /// The answer of a request that was not tried.
    fn failed(request: Request, e: JournalError) -> Self {
        match request {
            Request::Append { reply, .. } => Answer::Appended(reply, Err(e)),
            Request::Change { reply, .. } => Answer::Changed(reply, Err(e)),
            Request::Import { reply, .. } => Answer::Imported(reply, Err(e)),
        }
    }
}

fn answer(answers: Vec<Answer>, failure: Option<JournalError>) {
    for a in answers {
        // The caller may have gone away (client disconnected); what was written stands.
        match a {
            Answer::Appended(reply, outcome) => {
                let _ = reply.send(failure.clone().map_or(outcome, Err));
            }
            Answer::Changed(reply, outcome) => {
                let _ = reply.send(failure.clone().map_or(outcome, Err));
            }
            Answer::Imported(reply, outcome) => {
                let _ = reply.send(failure.clone().map_or(outcome, Err));
            }
        }
    }
}

/// Indexes the records of one request (an append or an import), in order. It remembers,
/// for each key it has indexed, the base a tag change of the key would name next, so that
/// a request of many records (an import) looks none of its own up.
struct Indexer<'a> {
    keys: &'a KeySet,
    /// Who the request's intents belong to (see [`index`]).
    owner: &'a [u8],
    /// By the key's `versions` prefix: the base a tag change of it would name next.
    bases: HashMap<Vec<u8>, Option<Seq>>,
}

impl<'a> Indexer<'a> {
    fn new(keys: &'a KeySet, owner: &'a [u8]) -> Self {
        Self { keys, owner, bases: HashMap::new() }
    }

    /// Adds to `writes` (this request's writes so far, on top of `view`) the index entries
    /// of the record at `seq`.
    fn index(&mut self, view: &View<'_>, writes: &mut Vec<Write>, seq: Seq, body: &Body) {
        let aborted = aborted_id(self.keys, view, writes, body);
        let base = body.change().and_then(|(bucket, key, effect)| {
            let prefix = layout::version_prefix(bucket, key);
            let base = match effect {
                Effect::Tags(_) => match self.bases.get(&prefix) {
                    Some(named) => *named,
                    None => stored_base(self.keys, view, bucket, key, seq),
                },
                Effect::Version(_) | Effect::Deleted { .. } | Effect::Bucket => None,
            };
            let next = match effect {
                Effect::Version(_) => Some(seq),
                Effect::Tags(_) => base,
                Effect::Deleted { .. } | Effect::Bucket => None,
            };
            self.bases.insert(prefix, next);
            base
        });
        index(writes, seq, body, self.owner, aborted, base);
    }
}

/// The index entries a record adds: its key's `versions` entry (naming, for a change of
/// tags alone, the `base` version they apply to when known), and the unresolved-intent
/// entry and mark it opens (naming the intent's `owner`) or closes. An abort names only its
/// intent: `aborted` says which key lock id that intent was marked under.
fn index(writes: &mut Vec<Write>, seq: Seq, body: &Body, owner: &[u8], aborted: Option<i64>, base: Option<Seq>) {
    // Commits and observations are versions of their key.
    if let Some((bucket, key, _)) = body.change() {
        let value = base.map_or_else(Vec::new, |b| b.0.to_be_bytes().to_vec());
        writes.push(Write::Put(Table::Versions, layout::version_key(bucket, key, seq), value));
    }
    match body {
        Body::Intent(i) => {
            writes.push(Write::Put(Table::Unresolved, layout::seq_key(seq).to_vec(), owner.to_vec()));
            writes.push(Write::Put(
                Table::Unresolved,
                layout::open_mark(layout::key_lock_id(&i.bucket, &i.key), seq),
                Vec::new(),
            ));
        }
        Body::Commit(Commit { intent, bucket, key, .. }) => {
            writes.push(Write::Delete(Table::Unresolved, layout::seq_key(*intent).to_vec()));
            writes.push(Write::Delete(Table::Unresolved, layout::open_mark(layout::key_lock_id(bucket, key), *intent)));
        }
        Body::Abort(Abort { intent, .. }) => {
            writes.push(Write::Delete(Table::Unresolved, layout::seq_key(*intent).to_vec()));
            if let Some(id) = aborted {
                writes.push(Write::Delete(Table::Unresolved, layout::open_mark(id, *intent)));
            }
        }
        _ => {}
    }
}

/// The key lock id an aborted intent was marked under: read from `local` (writes not yet in
/// the batch) or else `view`; `None` for a body that is no abort, or an intent not found.
fn aborted_id(keys: &KeySet, view: &View<'_>, local: &[Write], body: &Body) -> Option<i64> {
    let Body::Abort(Abort { intent, .. }) = body else { return None };
    match read_body(keys, view, local, *intent)? {
        Body::Intent(i) => Some(layout::key_lock_id(&i.bucket, &i.key)),
        _ => None,
    }
}

/// For a change of `bucket`/`key`'s tags alone at `seq`, the position of the version the
/// tags apply to, to be stored in its `versions` entry: a read of the key jumps there
/// instead of reading back through every tag change since the version (a key retagged
/// 50,000 times took about 300 ms per read; `cargo bench --bench hot_key`). The key's
/// previous entry, in the store or an earlier request of the batch, says it: a version is
/// the base, a tag change that names one passes it on. `None` when it does not say (a
/// deletion, a tag change indexed before entries named their base, an entry the batch
/// deletes): readers then read back record by record, as before.
pub(crate) fn stored_base(keys: &KeySet, view: &View<'_>, bucket: &str, key: &str, seq: Seq) -> Option<Seq> {
    let prefix = layout::version_prefix(bucket, key);
    let before = layout::version_key(bucket, key, Seq(seq.0.checked_sub(1)?));
    let (k, value) = view.last_at_or_before(Table::Versions, &before).ok().flatten()?;
    if k.len() != prefix.len() + 8 || !k.starts_with(&prefix) {
        return None;
    }
    match value?.as_slice() {
        [] => {}
        named => return layout::base_of(named),
    }
    let prev = layout::seq_of(&k[prefix.len()..])?;
    match read_body(keys, view, &[], prev)?.change()? {
        (_, _, Effect::Version(_)) => Some(prev),
        _ => None,
    }
}

/// The body of the record at `seq`, from `local` (writes not yet in the batch) or else
/// `view`; `None` when absent or unreadable.
fn read_body(keys: &KeySet, view: &View<'_>, local: &[Write], seq: Seq) -> Option<Body> {
    let key = layout::seq_key(seq);
    let bytes = local
        .iter()
        .rev()
        .find_map(|w| match w {
            Write::Put(Table::Records, k, v) if k[..] == key => Some(v.clone()),
            _ => None,
        })
        .or_else(|| view.get(Table::Records, &key).ok().flatten())?;
    Some(record::decode(keys, seq, &bytes).ok()?.body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A builder sees the batch's writes on top of the store: the later of the two wins,
    /// and an entry the batch deletes is found with no value.
    #[test]
    fn a_view_finds_the_last_entry_across_store_and_batch() {
        let engine = crate::MemoryEngine::new();
        let put = |k: &[u8]| Write::Put(Table::Versions, k.to_vec(), k.to_vec());
        engine
            .write(vec![put(b"a1"), put(b"a3"), put(b"a5"), Write::Put(Table::Meta, b"a4".to_vec(), vec![])], true)
            .unwrap();
        let mut overlay = BTreeMap::new();
        overlay.insert((Table::Versions, b"a2".to_vec()), Some(b"new".to_vec()));
        overlay.insert((Table::Versions, b"a5".to_vec()), None);
        let view = View { engine: &engine, overlay: &overlay };
        let last = |k: &[u8]| view.last_at_or_before(Table::Versions, k).unwrap();
        assert_eq!(last(b"a0"), None);
        assert_eq!(last(b"a1"), Some((b"a1".to_vec(), Some(b"a1".to_vec()))), "the store's, nothing later");
        assert_eq!(last(b"a2z"), Some((b"a2".to_vec(), Some(b"new".to_vec()))), "the batch's, later");
        assert_eq!(
            last(b"a4"),
            Some((b"a3".to_vec(), Some(b"a3".to_vec()))),
            "the store's, later; other tables unseen"
        );
        assert_eq!(last(b"a9"), Some((b"a5".to_vec(), None)), "deleted by the batch");
    }
}
