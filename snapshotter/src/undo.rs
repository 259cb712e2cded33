//! Undo by actor: put back exactly what one client key changed in a window of time.
//!
//! The journal knows who asked for every change (the access key id in each intent). For
//! each key of the bucket that the actor changed in the window, the undo writes back the
//! version the key had just before the actor's first change there (or deletes the key, if
//! it did not exist then). A key that someone else changed after the actor did is a
//! conflict: undoing it would also undo their change, so it is left alone unless forced.
//! A key already back as it was is unchanged, so an interrupted undo is resumed by running
//! it again. The plan is an ordinary restore plan, and it runs as a restore does: every
//! object it writes is journaled, so an undo can itself be undone.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rewind_model::{Body, Commit, Seq};

use crate::api::UndoConflict;
use crate::plan::{Destination, Plan};
use crate::{History, HistoryError};

/// Records read per round while scanning the window.
const PAGE: usize = 1024;

/// What an undo covers.
#[derive(Debug, Clone)]
pub struct UndoScope<'a> {
    /// The client access key id whose changes are undone.
    pub actor: &'a str,
    /// The bucket.
    pub bucket: &'a str,
    /// Only keys under this prefix.
    pub prefix: &'a str,
    /// The window: changes after this position...
    pub after: Seq,
    /// ...and at or before this one.
    pub until: Seq,
    /// Undo conflicting keys too.
    pub force: bool,
}

impl History<'_> {
    /// The plan that undoes what `scope.actor` changed in `scope`'s window, given what a
    /// listing of the bucket shows it holds now.
    pub fn undo_plan(&self, scope: &UndoScope<'_>, listed: &Destination) -> Result<Plan, HistoryError> {
        let journal = self.journal;
        let touched = self.changed_by(scope)?;
        let mut plan = Plan::default();
        plan.summary.seq = scope.until.0;
        plan.summary.to_bucket = scope.bucket.to_owned();
        for (key, first) in touched {
            let before = match first.0.checked_sub(1) {
                Some(n) if n > 0 => journal.version_at(scope.bucket, &key, Seq(n))?,
                _ => None,
            };
            // Back as it was: absent as it was then, or listed with the ETag and size of the
            // journal's current version, which is the version it was then.
            let back = match (&before, listed.get(&key)) {
                (None, None) => true,
                (Some(was), Some((etag, size))) => {
                    journal.version_at(scope.bucket, &key, Seq::LATEST)?.is_some_and(|is| {
                        is.version.etag == *etag && is.version.size == *size && was.version.same_object(&is.version)
                    })
                }
                _ => false,
            };
            if back {
                plan.summary.unchanged += 1;
                continue;
            }
            let others = self.changed_since(scope, &key, first)?;
            if !others.is_empty() && !scope.force {
                plan.summary.conflicts.push(UndoConflict { key, others: others.into_iter().collect() });
                continue;
            }
            match before {
                Some(entry) => plan.writes.push(entry),
                None => plan.deletes.push(key),
            }
        }
        plan.finish_summary();
        Ok(plan)
    }

    /// The keys of `scope` the actor changed in the window, each with its first change.
    fn changed_by(&self, scope: &UndoScope<'_>) -> Result<BTreeMap<String, Seq>, HistoryError> {
        let journal = self.journal;
        let mut actors = Actors::default();
        let mut first = BTreeMap::new();
        let mut from = Seq(scope.after.0 + 1);
        while from <= scope.until {
            let page = journal.records(from, PAGE)?;
            let Some(last) = page.last().map(|r| r.seq) else { break };
            for record in page {
                if record.seq > scope.until {
                    break;
                }
                actors.note(&record);
                let Body::Commit(Commit { intent, bucket, key, .. }) = &record.body else { continue };
                if bucket != scope.bucket || key.is_empty() || !key.starts_with(scope.prefix) {
                    continue;
                }
                if actors.of(self, *intent)? == scope.actor {
                    first.entry(key.clone()).or_insert(record.seq);
                }
            }
            from = Seq(last.0 + 1);
        }
        Ok(first)
    }

    /// Who else (client keys, or the gateway's own work such as a restore) committed a
    /// change of `key` after `first`, up to now.
    fn changed_since(&self, scope: &UndoScope<'_>, key: &str, first: Seq) -> Result<BTreeSet<String>, HistoryError> {
        let mut others = BTreeSet::new();
        let mut actors = Actors::default();
        for record in self.journal.history(scope.bucket, key)? {
            if record.seq <= first {
                continue;
            }
            if let Body::Commit(Commit { intent, .. }) = &record.body {
                let actor = actors.of(self, *intent)?;
                if actor != scope.actor {
                    others.insert(actor);
                }
            }
        }
        Ok(others)
    }
}

/// The actor of each intent, as the scan meets them (an intent usually comes just before
/// its commit), else read from the journal.
#[derive(Default)]
struct Actors(HashMap<Seq, String>);

impl Actors {
    fn note(&mut self, record: &rewind_journal::Record) {
        if let Body::Intent(intent) = &record.body {
            self.0.insert(record.seq, intent.access_key.clone());
        }
    }

    fn of(&mut self, history: &History<'_>, intent: Seq) -> Result<String, HistoryError> {
        if let Some(actor) = self.0.get(&intent) {
            return Ok(actor.clone());
        }
        let actor = match history.journal.record(intent)?.map(|r| r.body) {
            Some(Body::Intent(i)) => i.access_key,
            _ => String::new(),
        };
        self.0.insert(intent, actor.clone());
        Ok(actor)
    }
}
