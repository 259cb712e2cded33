//! Restore planning: compare what a bucket held at an instant with what the destination
//! holds now, and list what to write and what to delete.
//!
//! "Now" is a listing of the destination, read with the journal: a listed key whose ETag
//! and size are the journal's current version is that version; a key listed otherwise was
//! changed behind the gateway's back; a key the journal has but the listing lacks is gone.
//! Planning from the journal alone said "Nothing to restore" while objects deleted behind
//! the gateway's back stayed missing (review F6). Each object a restore writes is
//! committed like any other write, so a re-run finds it already as it was: restores are
//! resumable.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use rewind_model::Seq;

use crate::api::{Mode, PlanSummary};
use crate::{Entry, History, HistoryError};

/// Keys of each kind shown in a plan's summary.
const SAMPLE: usize = 10;

/// What a restore does.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The summary shown to the operator.
    pub summary: PlanSummary,
    /// Versions to write, in key order.
    pub writes: Vec<Entry>,
    /// Keys to delete, in key order.
    pub deletes: Vec<String>,
}

/// Which keys a restore covers.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// The bucket whose history is read.
    pub bucket: &'a str,
    /// Keys under this prefix.
    pub prefix: &'a str,
    /// Or exactly this key.
    pub key: Option<&'a str>,
    /// The bucket written.
    pub to_bucket: &'a str,
}

/// What the destination holds now, by key: ETag (without quotes) and size, as a listing
/// of it shows.
pub type Destination = BTreeMap<String, (String, u64)>;

impl History<'_> {
    fn scoped(&self, bucket: &str, scope: &Scope<'_>, at: Seq) -> Result<Vec<Entry>, HistoryError> {
        match scope.key {
            Some(key) => Ok(self.version_at(bucket, key, at)?.into_iter().collect()),
            None => self.state_at(bucket, scope.prefix, at),
        }
    }

    /// The plan that brings `scope` back to how it was at `at`, taking the journal's view
    /// of the destination as what it holds now.
    pub fn plan(&self, scope: &Scope<'_>, at: Seq, mode: Mode) -> Result<Plan, HistoryError> {
        let now =
            self.scoped(scope.to_bucket, scope, Seq::LATEST)?.into_iter().map(|e| (e.key.clone(), Some(e))).collect();
        self.plan_from(scope, at, mode, now)
    }

    /// The plan that brings `scope` back to how it was at `at`, given what a listing of the
    /// destination shows it holds now (see the module documentation).
    pub fn plan_against(
        &self,
        scope: &Scope<'_>,
        at: Seq,
        mode: Mode,
        listed: &Destination,
    ) -> Result<Plan, HistoryError> {
        let journaled: HashMap<String, Entry> =
            self.scoped(scope.to_bucket, scope, Seq::LATEST)?.into_iter().map(|e| (e.key.clone(), e)).collect();
        let wanted = |key: &str| scope.key.map_or(key.starts_with(scope.prefix), |k| k == key);
        let now = listed
            .iter()
            .filter(|(key, _)| wanted(key))
            .map(|(key, (etag, size))| {
                let known = journaled.get(key).filter(|e| e.version.etag == *etag && e.version.size == *size).cloned();
                (key.clone(), known)
            })
            .collect();
        self.plan_from(scope, at, mode, now)
    }

    /// Plans from `now`: each key present in the destination, with its version when the
    /// journal knows it (`None`: present, content unknown).
    fn plan_from(
        &self,
        scope: &Scope<'_>,
        at: Seq,
        mode: Mode,
        now: Vec<(String, Option<Entry>)>,
    ) -> Result<Plan, HistoryError> {
        let then = self.scoped(scope.bucket, scope, at)?;
        let mut plan = Plan::default();
        plan.summary.seq = at.0;
        plan.summary.to_bucket = scope.to_bucket.to_owned();
        let (mut t, mut n) = (then.into_iter().peekable(), now.into_iter().peekable());
        loop {
            let order = match (t.peek(), n.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(a), Some((b, _))) => a.key.cmp(b),
            };
            match order {
                Ordering::Less => plan.writes.extend(t.next()),
                Ordering::Greater => {
                    let (gone, _) = n.next().expect("peeked");
                    match mode {
                        Mode::Rewind => plan.deletes.push(gone),
                        Mode::NonDestructive => plan.summary.kept += 1,
                    }
                }
                Ordering::Equal => {
                    let (was, (_, is)) = (t.next().expect("peeked"), n.next().expect("peeked"));
                    if is.is_some_and(|is| was.version.same_object(&is.version)) {
                        plan.summary.unchanged += 1;
                    } else if mode == Mode::Rewind {
                        plan.writes.push(was);
                    } else {
                        plan.summary.kept += 1;
                    }
                }
            }
        }
        plan.finish_summary();
        Ok(plan)
    }
}

impl Plan {
    /// Counts and samples the summary from the writes and deletes.
    pub(crate) fn finish_summary(&mut self) {
        self.summary.writes = self.writes.len() as u64;
        self.summary.write_bytes = self.writes.iter().map(|e| e.version.size).sum();
        self.summary.deletes = self.deletes.len() as u64;
        self.summary.sample_writes = self.writes.iter().take(SAMPLE).map(|e| e.key.clone()).collect();
        self.summary.sample_deletes = self.deletes.iter().take(SAMPLE).cloned().collect();
    }
}
