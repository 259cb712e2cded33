//! Rewind's operations on history: what a bucket held at any instant, what changed between
//! two instants, every version of a key (read from the journal; the vault holds the bytes),
//! and the operations that act on it — restore plans and runs, reconcile, verify,
//! snapshots, status — behind one facade, [`ops::Operations`], that the gateway's admin API
//! and the CLI both call.

pub mod api;
pub mod at;
pub mod forget;
pub mod gc;
pub mod ops;
pub mod plan;
pub mod reconcile;
pub mod restore;
pub mod retention;
pub mod sweep;
pub mod undo;
pub mod verify;

mod status;
pub use status::status;

use rewind_journal::{Journal, JournalError};
use rewind_model::{Body, Commit, Effect, Intent, Observed, Op, Seq};

pub use at::{At, AtError};
pub use rewind_journal::Entry;

/// Why history could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The vault failed.
    #[error("{what}: {source}")]
    Vault {
        /// What could not be done.
        what: &'static str,
        /// What the vault said.
        #[source]
        source: rewind_vault::VaultError,
    },
    /// The instant is before the first record.
    #[error("{at} is before history began (the first record is from {first}); pick a later time")]
    BeforeHistory {
        /// What was asked.
        at: At,
        /// When the first record was written.
        first: At,
    },
    /// No snapshot has that name.
    #[error(
        "there is no snapshot named {0:?}: `rewind snapshot list` shows them (times are RFC 3339, now, -15m or seq:N)"
    )]
    UnknownSnapshot(String),
    /// A snapshot name is taken or malformed.
    #[error("{0}")]
    BadSnapshot(String),
    /// The sequence number is past the journal's head.
    #[error("seq:{asked} is past the newest record (seq:{head}); pick seq:{head} or earlier")]
    AfterHead {
        /// What was asked.
        asked: u64,
        /// The newest record.
        head: u64,
    },
}

/// Calls `f` with every record that decodes, oldest first, in batches; records that do not
/// decode (damage `verify` reports) are skipped, so one bad record does not hide the rest.
pub(crate) fn each_record(journal: &Journal, mut f: impl FnMut(rewind_journal::Record)) -> Result<(), HistoryError> {
    const BATCH: usize = 1024;
    let head = journal.head()?.seq.0;
    let mut next = 1u64;
    while next <= head {
        match journal.records(Seq(next), BATCH) {
            Ok(records) => {
                let Some(last) = records.last().map(|r| r.seq.0) else { break };
                records.into_iter().for_each(&mut f);
                next = last + 1;
            }
            // Somewhere in this batch is a damaged record: go one by one.
            Err(_) => {
                for seq in next..(next + BATCH as u64).min(head + 1) {
                    if let Ok(Some(r)) = journal.record(Seq(seq)) {
                        f(r);
                    }
                }
                next += BATCH as u64;
            }
        }
    }
    Ok(())
}

/// A difference between two states of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key exists only in the later state.
    Added(Entry),
    /// The key exists in both, with different content, headers, metadata or tags.
    Changed {
        /// Before.
        from: Box<Entry>,
        /// After.
        to: Box<Entry>,
    },
    /// The key exists only in the earlier state.
    Deleted(Entry),
}

/// One committed mutation of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The commit's position.
    pub seq: Seq,
    /// Gateway time of the commit, µs since the epoch.
    pub timestamp_us: i64,
    /// What kind of mutation.
    pub op: Op,
    /// The client access key that made it (empty for captures the gateway made itself).
    pub access_key: String,
    /// The request id in the gateway's log line.
    pub request_id: String,
    /// What it did.
    pub effect: Effect,
}

/// Reads history from a journal.
#[derive(Clone, Copy)]
pub struct History<'a> {
    journal: &'a Journal,
}

impl<'a> History<'a> {
    /// History as `journal` records it.
    pub fn new(journal: &'a Journal) -> Self {
        Self { journal }
    }

    /// The journal position an instant stands for: the last record at or before it.
    pub fn resolve(&self, at: &At) -> Result<Seq, HistoryError> {
        let head = self.journal.head()?.seq;
        match *at {
            At::Seq(n) if n > head.0 => Err(HistoryError::AfterHead { asked: n, head: head.0 }),
            At::Seq(n) => Ok(Seq(n)),
            At::TimeUs(us) => match self.journal.seq_at(us)? {
                Seq(0) if head.0 > 0 => {
                    let first = self.journal.record(Seq(1))?.map_or(0, |r| r.timestamp_us);
                    Err(HistoryError::BeforeHistory { at: at.clone(), first: At::TimeUs(first) })
                }
                seq => Ok(seq),
            },
            At::Name(ref name) => self
                .journal
                .labels()?
                .into_iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, seq, _)| seq)
                .ok_or_else(|| HistoryError::UnknownSnapshot(name.clone())),
        }
    }

    /// Every named snapshot, by name.
    pub fn snapshots(&self) -> Result<Vec<api::Snapshot>, HistoryError> {
        let mut out = Vec::new();
        for (name, seq, created_us) in self.journal.labels()? {
            let at_us = self.journal.record(seq)?.map_or(0, |r| r.timestamp_us);
            out.push(api::Snapshot {
                name,
                seq: seq.0,
                time: api::time_text(at_us),
                created: api::time_text(created_us),
            });
        }
        Ok(out)
    }

    /// Names the instant `at` (default: now, the journal's head).
    pub async fn create_snapshot(&self, name: &str, at: &At) -> Result<api::Snapshot, HistoryError> {
        if !at::valid_name(name) {
            return Err(HistoryError::BadSnapshot(format!(
                "{name:?} cannot name a snapshot: use a letter, then letters, digits, '.', '_' or '-' (at most {} characters)",
                at::MAX_NAME_LEN
            )));
        }
        let seq = self.resolve(at)?;
        if !self.journal.label_put(name, seq).await? {
            return Err(HistoryError::BadSnapshot(format!(
                "a snapshot named {name:?} exists: pick another name, or `rewind snapshot delete {name}` first"
            )));
        }
        self.snapshots()?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| HistoryError::UnknownSnapshot(name.to_owned()))
    }

    /// Removes a snapshot's name (the history it named stays).
    pub async fn delete_snapshot(&self, name: &str) -> Result<(), HistoryError> {
        if self.journal.label_delete(name).await? {
            Ok(())
        } else {
            Err(HistoryError::UnknownSnapshot(name.to_owned()))
        }
    }

    /// The version of `bucket`/`key` as of `at` (`None`: absent, or deleted by then).
    pub fn version_at(&self, bucket: &str, key: &str, at: Seq) -> Result<Option<Entry>, HistoryError> {
        Ok(self.journal.version_at(bucket, key, at)?)
    }

    /// Every object of `bucket` under `prefix` as of `at`, in key order.
    pub fn state_at(&self, bucket: &str, prefix: &str, at: Seq) -> Result<Vec<Entry>, HistoryError> {
        Ok(self.journal.state_at(bucket, prefix, at)?)
    }

    /// What changed under `prefix` between `from` and `to`, in key order.
    pub fn diff(&self, bucket: &str, prefix: &str, from: Seq, to: Seq) -> Result<Vec<Change>, HistoryError> {
        let before = self.state_at(bucket, prefix, from)?;
        let after = self.state_at(bucket, prefix, to)?;
        let (mut b, mut a) = (before.into_iter().peekable(), after.into_iter().peekable());
        let mut out = Vec::new();
        loop {
            match (b.peek(), a.peek()) {
                (None, None) => return Ok(out),
                (Some(_), None) => out.extend(b.next().map(Change::Deleted)),
                (None, Some(_)) => out.extend(a.next().map(Change::Added)),
                (Some(x), Some(y)) => match x.key.cmp(&y.key) {
                    std::cmp::Ordering::Less => out.extend(b.next().map(Change::Deleted)),
                    std::cmp::Ordering::Greater => out.extend(a.next().map(Change::Added)),
                    std::cmp::Ordering::Equal => {
                        let (from, to) = (b.next().expect("peeked"), a.next().expect("peeked"));
                        if from.version != to.version {
                            out.push(Change::Changed { from: Box::new(from), to: Box::new(to) });
                        }
                    }
                },
            }
        }
    }

    /// Every committed mutation of `bucket`/`key`, oldest first.
    pub fn log(&self, bucket: &str, key: &str) -> Result<Vec<LogEntry>, HistoryError> {
        let mut out = Vec::new();
        for record in self.journal.history(bucket, key)? {
            let (Intent { op, access_key, request_id, .. }, effect) = match record.body {
                Body::Observed(Observed { intent, effect }) => (intent, effect),
                Body::Commit(Commit { intent, effect, .. }) => match self.journal.record(intent)?.map(|r| r.body) {
                    Some(Body::Intent(intent)) => (intent, effect),
                    _ => continue,
                },
                _ => continue,
            };
            out.push(LogEntry {
                seq: record.seq,
                timestamp_us: record.timestamp_us,
                op,
                access_key,
                request_id,
                effect,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod model_tests;
