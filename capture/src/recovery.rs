//! Start-up recovery: intents that a crash (or a dropped request) left without a commit or
//! an abort are resolved against what the upstream holds now.
//!
//! For an object mutation, the key's current upstream state is compared with the journal:
//! a version the journal lacks is captured and committed under the intent; a key that is
//! gone is committed as deleted; an unchanged key means the mutation never happened, and
//! the intent is aborted. Bucket operations are checked with HeadBucket. Tag changes are
//! aborted: the version they applied to is in the journal, and the next reconcile sees
//! the tags.

use std::time::Duration;

use rewind_journal::Record;
use rewind_model::{Body, Effect, LogKey, Op, Seq};

use super::{Capture, CaptureError, Pending};

/// Pause between recovery rounds while some intent cannot be resolved (upstream down).
const RETRY_EVERY: Duration = Duration::from_secs(10);
/// How often a running process looks for its own orphaned intents.
const ORPHANS_EVERY: Duration = Duration::from_secs(2);
/// How long a mutation waits for a live gateway to resolve the intent it left open on the
/// key: longer than a liveness lease, so a gateway that stopped answering lapses first.
const SETTLE_WAIT: Duration = Duration::from_secs(45);
/// First and longest pause between looks at such an intent.
const SETTLE_POLL_FIRST: Duration = Duration::from_millis(20);
const SETTLE_POLL_MOST: Duration = Duration::from_millis(500);

/// What recovery did in one round.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Intents committed from the upstream's state.
    pub committed: usize,
    /// Intents aborted.
    pub aborted: usize,
    /// Intents left open (the upstream could not be asked); retried later.
    pub unresolved: usize,
}

impl Capture {
    /// Resolves once every intent that was open when this process opened the journal.
    /// Later intents belong to requests in flight (their own commit or abort settles them):
    /// recovery must not race them (review R6).
    pub async fn recover(&self) -> Result<Recovered, CaptureError> {
        self.recover_through(self.recover_up_to).await
    }

    /// Resolves once every open intent up to `last` (tests simulate a crash with it) that
    /// this process or a single-process journal left, and every intent of a gateway whose
    /// liveness lease has lapsed (on a shared journal); intents of live gateways are theirs.
    pub async fn recover_through(&self, last: rewind_model::Seq) -> Result<Recovered, CaptureError> {
        let mut done = Recovered::default();
        for (record, owner) in self.journal.unresolved_owned()? {
            let interrupted = if owner.is_empty() || owner == self.journal.owner() {
                record.seq <= last
            } else {
                !self.journal.owner_alive(&owner)?
            };
            if !interrupted {
                continue;
            }
            match self.resolve(&record).await {
                Ok(true) => done.committed += 1,
                Ok(false) => done.aborted += 1,
                Err(e) => {
                    tracing::warn!(seq = record.seq.0, error = %e, "could not resolve an interrupted mutation yet; will retry");
                    done.unresolved += 1;
                }
            }
        }
        self.metrics.unresolved_intents.set(i64::try_from(done.unresolved).unwrap_or(i64::MAX));
        Ok(done)
    }

    /// Runs recovery until nothing is left open, or `stop` is cancelled.
    pub async fn recover_until_done(&self, stop: tokio_util::sync::CancellationToken) {
        loop {
            match self.recover().await {
                Ok(r) if r.unresolved == 0 => {
                    if r.committed + r.aborted > 0 {
                        tracing::info!(committed = r.committed, aborted = r.aborted, "resolved interrupted mutations");
                    }
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "recovery could not read the journal; will retry"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RETRY_EVERY) => {}
            }
        }
    }

    /// Resolves the intents of this process that no request will resolve any more (their
    /// commit or abort could not be journaled), as a restart's recovery would; those it
    /// cannot resolve yet stay for the next call.
    pub async fn recover_orphans(&self) -> Recovered {
        let orphans: Vec<Seq> = self.orphans.lock().iter().copied().collect();
        let mut done = Recovered::default();
        for seq in orphans {
            let record = match self.journal.is_unresolved(seq) {
                Ok(true) => self.journal.record(seq).map_err(CaptureError::from),
                Ok(false) => Ok(None), // its commit or abort got in after all
                Err(e) => Err(e.into()),
            };
            let outcome = match record {
                Ok(Some(record)) => self.resolve(&record).await,
                Ok(None) => Ok(false),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(committed) => {
                    self.orphans.lock().remove(&seq);
                    if committed { done.committed += 1 } else { done.aborted += 1 }
                }
                Err(e) => {
                    tracing::debug!(seq = seq.0, error = %e, "cannot resolve an orphaned mutation yet");
                    done.unresolved += 1;
                }
            }
        }
        done
    }

    /// Resolves orphaned intents ([`Capture::recover_orphans`]) every few seconds until
    /// `stop` is cancelled.
    pub async fn recover_orphans_until(&self, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(ORPHANS_EVERY) => {}
            }
            let r = self.recover_orphans().await;
            if r.committed + r.aborted > 0 {
                tracing::info!(
                    committed = r.committed,
                    aborted = r.aborted,
                    left = r.unresolved,
                    "resolved mutations whose outcome could not be journaled"
                );
            }
        }
    }

    /// Resolves, under `bucket`/`key`'s lock, every intent on the key that no running
    /// request will settle, before the lock's holder mutates the key: a gateway that died
    /// (or this process, before a restart or after losing the outcome) may have applied
    /// its mutation upstream, and the next one must not pass it (G2). Intents of this
    /// process are resolved at once: holding the key's lock, none of its requests is still
    /// at work on it. Those of another gateway are resolved once its liveness lease has
    /// lapsed; while it lives (it lost its database connection, so its own recovery will
    /// resolve them), the lock's holder waits, up to [`SETTLE_WAIT`].
    pub(crate) async fn settle_interrupted(&self, bucket: &str, key: &str) -> Result<(), CaptureError> {
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        let mut pause = SETTLE_POLL_FIRST;
        loop {
            let mut waiting_on = None;
            for (record, owner) in self.journal.unresolved_on(bucket, key)? {
                if owner.is_empty() || owner == self.journal.owner() || !self.journal.owner_alive(&owner)? {
                    let committed = self.resolve_locked(&record).await?;
                    tracing::info!(bucket, key = %LogKey(key), seq = record.seq.0, committed, "resolved an interrupted mutation before the next one of its key");
                } else {
                    waiting_on = Some(owner);
                }
            }
            let Some(owner) = waiting_on else { return Ok(()) };
            if tokio::time::Instant::now() >= deadline {
                return Err(CaptureError::Unsettled { owner });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(SETTLE_POLL_MOST);
        }
    }

    /// Resolves one intent: `true` when committed, `false` when aborted (or found settled
    /// meanwhile).
    async fn resolve(&self, record: &Record) -> Result<bool, CaptureError> {
        let Body::Intent(intent) = &record.body else { return Ok(false) };
        let _lock = match intent.op {
            Op::CreateBucket | Op::DeleteBucket | Op::BucketConfig => None,
            // Under the key's lock, the intent's own request (if still running) is done with
            // it. The lock table's own: settling the key's intents is this call's work.
            _ => Some(self.locks.lock(&intent.bucket, &intent.key).await.map_err(|e| CaptureError::Journal(e.into()))?),
        };
        self.resolve_locked(record).await
    }

    /// [`Capture::resolve`], its key's lock held.
    async fn resolve_locked(&self, record: &Record) -> Result<bool, CaptureError> {
        let Body::Intent(intent) = &record.body else { return Ok(false) };
        let bucket = intent.bucket.as_str();
        if !self.journal.is_unresolved(record.seq)? {
            return Ok(false);
        }
        let pending = Pending {
            seq: record.seq,
            bucket: intent.bucket.clone(),
            key: intent.key.clone(),
            journal: self.journal.clone(),
            armed: false,
            then: Vec::new(),
            tasks: self.tasks.clone(),
            orphans: self.orphans.clone(),
            _writes: self.vault.enter_write(),
        };
        match intent.op {
            Op::CreateBucket | Op::DeleteBucket => {
                let exists = self.upstream.head_bucket().bucket(bucket).send().await.is_ok();
                if exists == (intent.op == Op::CreateBucket) {
                    self.commit(pending, Effect::Bucket).await?;
                    return Ok(true);
                }
                self.abort(pending, "recovery: the bucket is not in the state the operation would leave").await;
                Ok(false)
            }
            Op::PutTagging | Op::DeleteTagging | Op::BucketConfig => {
                self.abort(pending, "recovery: interrupted; the next reconcile records the outcome").await;
                Ok(false)
            }
            _ => self.resolve_object(record, pending).await,
        }
    }

    /// Resolves an object mutation's intent by what the upstream holds now.
    async fn resolve_object(&self, record: &Record, pending: Pending) -> Result<bool, CaptureError> {
        let (bucket, key) = (pending.bucket.clone(), pending.key.clone());
        let (bucket, key) = (bucket.as_str(), key.as_str());
        let known = self.current(bucket, key)?;
        match self.head(bucket, key, None).await? {
            // Gone upstream. In a versioned bucket the delete left a marker that HEAD cannot
            // show (also when the key was already deleted): its version id is the commit's.
            None => match (self.unjournaled_delete_marker(bucket, key).await?, known.is_some()) {
                (Some(marker), _) => {
                    self.commit(pending, Effect::Deleted { version_id: Some(marker) }).await?;
                    Ok(true)
                }
                (None, true) => {
                    self.commit(pending, Effect::Deleted { version_id: None }).await?;
                    Ok(true)
                }
                (None, false) => {
                    self.abort(pending, "recovery: the object is not upstream").await;
                    Ok(false)
                }
            },
            Some(head) if known.as_ref().is_some_and(|v| v.etag == head.etag && v.size == head.size) => {
                self.abort(pending, "recovery: the upstream still holds the journaled version").await;
                Ok(false)
            }
            Some(head) => match self.capture_upstream(bucket, key, head.version_id.as_deref()).await? {
                Some(v) => {
                    tracing::info!(bucket, key = %LogKey(key), seq = record.seq.0, "recovery captured the outcome of an interrupted mutation");
                    self.commit(pending, Effect::Version(v)).await?;
                    Ok(true)
                }
                None => {
                    self.abort(pending, "recovery: the object vanished while being captured").await;
                    Ok(false)
                }
            },
        }
    }

    /// The upstream's latest delete marker of `bucket`/`key` when it is the key's current
    /// entry and the journal has no delete with its version id; `None` otherwise (and in
    /// buckets that do not version, where listing versions shows no markers).
    async fn unjournaled_delete_marker(&self, bucket: &str, key: &str) -> Result<Option<String>, CaptureError> {
        let listed = self.upstream.list_object_versions().bucket(bucket).prefix(key).max_keys(16).send().await;
        let Ok(listed) = listed else { return Ok(None) };
        let latest = listed
            .delete_markers()
            .iter()
            .find(|m| m.key() == Some(key) && m.is_latest() == Some(true))
            .and_then(|m| m.version_id().map(str::to_owned));
        let Some(marker) = latest else { return Ok(None) };
        let journaled = self.journal.history(bucket, key)?.into_iter().any(|r| {
            matches!(&r.body, Body::Commit(c) if matches!(&c.effect, Effect::Deleted { version_id: Some(v) } if *v == marker))
        });
        Ok((!journaled).then_some(marker))
    }
}

/// Intents of this process that no request will resolve any more: recovery resolves them
/// while the process runs ([`Capture::recover_orphans`]), as it would after a restart.
#[derive(Clone, Default)]
pub(crate) struct Orphans(std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<Seq>>>);

impl Orphans {
    pub(crate) fn add(&self, intent: Seq) {
        tracing::warn!(seq = intent.0, "a mutation's outcome could not be journaled; recovery will resolve it");
        self.lock().insert(intent);
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<Seq>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
