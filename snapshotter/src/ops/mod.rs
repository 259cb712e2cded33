//! Every operation on history behind one facade, [`Operations`]: what the gateway's admin
//! API serves and what `rewind --data-dir` runs in its own process, the same code either
//! way. Reads (ls, log, diff, cat, status, verify, snapshots) need only the stores; restore
//! and reconcile also need the capture engine, so an offline read-only session refuses
//! them with [`OpError::ReadOnly`].
//!
//! Journal reads run on the blocking pool. Restores and reconciles run as tasks of the
//! caller's tracker, so a gateway that stops waits for them; their progress comes back as
//! a channel of events.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rewind_capture::open::Stores;
use rewind_capture::ship::{self, ShipError};
use rewind_capture::{Capture, Metrics};
use rewind_config::RetentionConfig;
use rewind_journal::Journal;
use rewind_vault::VaultError;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::api::{
    DiffReport, Listing, LogLine, ReconcileEvent, RestoreEvent, RestoreRequest, Snapshot, Status, VerifyReport,
};
use crate::plan::Scope;
use crate::reconcile::{Limits, ReconcileError, Reconciler};
use crate::restore::ListError;
use crate::verify::ReadData;
use crate::{At, Entry, History, HistoryError};

mod retention;
mod undo;
mod views;

pub use views::MAX_VIEW_TTL;

/// Default objects restored at once.
const DEFAULT_PARALLEL: usize = 8;
/// Most objects restored or reconciled at once.
pub const MAX_PARALLEL: usize = 64;
/// Events buffered between a running restore or reconcile and its caller.
const EVENTS: usize = 64;

/// Why an operation could not be done, with what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// Reading history failed, or the question was malformed.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The journal has no record of the bucket.
    #[error("bucket {bucket:?} has no history: the gateway journaled no change to it (buckets with history: {known})")]
    UnknownBucket {
        /// The bucket asked for.
        bucket: String,
        /// The buckets with history, or "none yet".
        known: String,
    },
    /// The key had no version at the instant, or no history at all.
    #[error("{0}")]
    NoSuchVersion(String),
    /// The request is malformed or names something it may not.
    #[error("{0}")]
    Invalid(String),
    /// Restores and reconciles need the capture engine, which this session lacks.
    #[error("this needs the capture engine: it is not available in a read-only offline session")]
    ReadOnly,
    /// The restore's destination could not be listed.
    #[error(transparent)]
    Destination(#[from] ListError),
    /// The journal could not be compared with the vault's copy of it.
    #[error("cannot compare the journal with the vault: {0}")]
    Vault(#[source] ShipError),
    /// A reconcile could not start.
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    /// A pass of the same kind is running; one runs at a time.
    #[error("{0}")]
    Busy(&'static str),
}

/// What kind of failure an [`OpError`] is, for callers that answer with a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// What was asked for does not exist.
    NotFound,
    /// The request is wrong; retrying it unchanged fails again.
    Invalid,
    /// It conflicts with the state (a pass already running, a read-only session).
    Conflict,
    /// Something it depends on (the upstream) failed; it may work later.
    Unavailable,
    /// The stores failed or are damaged.
    Internal,
}

impl OpError {
    /// What kind of failure this is.
    pub fn kind(&self) -> Kind {
        match self {
            Self::History(e) => match e {
                HistoryError::Journal(_) | HistoryError::Vault { .. } => Kind::Internal,
                HistoryError::UnknownSnapshot(_) => Kind::NotFound,
                HistoryError::BeforeHistory { .. } | HistoryError::BadSnapshot(_) | HistoryError::AfterHead { .. } => {
                    Kind::Invalid
                }
            },
            Self::UnknownBucket { .. } | Self::NoSuchVersion(_) => Kind::NotFound,
            Self::Invalid(_) => Kind::Invalid,
            Self::ReadOnly => Kind::Conflict,
            Self::Destination(ListError::NoSuchBucket(_)) => Kind::NotFound,
            Self::Destination(ListError::Upstream(_)) => Kind::Unavailable,
            Self::Vault(_) => Kind::Internal,
            Self::Busy(_) => Kind::Conflict,
            Self::Reconcile(e) => match e {
                ReconcileError::Busy(_) => Kind::Conflict,
                ReconcileError::NotProtected(_) => Kind::Invalid,
                ReconcileError::Stopped => Kind::Unavailable,
                ReconcileError::Capture(_) | ReconcileError::Journal(_) => Kind::Internal,
            },
        }
    }
}

/// Overrides of a reconcile's limits (`None`: the configured value).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReconcileAsk {
    /// Keys reconciled at once.
    pub parallel: Option<u64>,
    /// Most objects captured per second.
    pub objects_per_second: Option<u64>,
    /// Most bytes read from the upstream per second.
    pub bytes_per_second: Option<u64>,
}

/// What a legal hold covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldScope {
    /// Every key under a prefix ("": the whole bucket).
    Prefix(String),
    /// One key.
    Key(String),
}

impl HoldScope {
    fn parts(&self) -> (&str, bool) {
        match self {
            Self::Prefix(p) => (p, false),
            Self::Key(k) => (k, true),
        }
    }

    fn describe(&self, bucket: &str) -> String {
        match self {
            Self::Prefix(p) if p.is_empty() => format!("bucket {bucket:?}"),
            Self::Prefix(p) => format!("prefix {p:?} of bucket {bucket:?}"),
            Self::Key(k) => format!("key {k:?} of bucket {bucket:?}"),
        }
    }
}

/// The capture engine, its reconciler and the operations over them: what a gateway, or an
/// offline session that writes, runs.
pub struct Engine {
    /// The capture protocol.
    pub capture: Arc<Capture>,
    /// Reconcile passes.
    pub reconciler: Arc<Reconciler>,
    /// Every operation on history.
    pub ops: Operations,
}

impl Engine {
    /// The engine over `stores` and `upstream` (its SDK client, and its `lean` one when its
    /// endpoint allows one) as `config` sets it up; background work (restores, reconciles,
    /// aborts of requests that went away) runs on `tasks` and passes stop when `stop` is
    /// cancelled. Recovery is the caller's to start.
    pub fn new(
        config: &rewind_config::Config,
        stores: Arc<Stores>,
        upstream: aws_sdk_s3::Client,
        lean: Option<rewind_capture::lean::LeanClient>,
        metrics: Metrics,
        tasks: TaskTracker,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        let capture = Arc::new(
            Capture::new(
                stores.journal.clone(),
                stores.vault.clone(),
                upstream,
                config.protection.clone(),
                config.vault.capture_timeout.0,
                metrics.clone(),
            )
            .with_tasks(tasks.clone())
            .with_lean(lean)
            .with_tripwire(config.tripwire.clone()),
        );
        let p = &config.protection;
        let limits = Limits {
            parallel: p.reconcile_parallel,
            objects_per_second: p.reconcile_objects_per_second,
            bytes_per_second: p.reconcile_bytes_per_second.0,
        };
        let reconciler = Arc::new(Reconciler::new(capture.clone(), metrics.clone(), limits, stop));
        let ops = Operations::new(stores, capture.clone(), reconciler.clone(), metrics, tasks)
            .with_retention(config.retention.clone());
        Self { capture, reconciler, ops }
    }
}

/// How much of the vault's copy of the journal a verify compares with the local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// The scheduled check: nothing past the local head, the last shipped record unchanged.
    Head,
    /// Every shipped segment and checkpoint, record by record.
    Segments,
}

/// The operations on one gateway's history.
#[derive(Clone)]
pub struct Operations {
    stores: Arc<Stores>,
    writer: Option<Writer>,
    metrics: Metrics,
    tasks: TaskTracker,
    retention: Arc<RetentionConfig>,
    /// Held by the retention pass (forget or gc) running, if any.
    gc_turn: Arc<tokio::sync::Mutex<()>>,
    /// Where the garbage collection pass running is.
    gc_watch: Arc<crate::sweep::Watch>,
}

/// What restores and reconciles need besides the stores.
#[derive(Clone)]
struct Writer {
    capture: Arc<Capture>,
    reconciler: Arc<Reconciler>,
}

/// Runs journal reads off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, OpError> + Send + 'static) -> Result<T, OpError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Refuses a bucket the journal knows nothing of, naming those it knows.
fn known_bucket(journal: &Journal, bucket: &str) -> Result<(), OpError> {
    let buckets = journal.buckets().map_err(HistoryError::from)?;
    if buckets.iter().any(|b| b == bucket) {
        return Ok(());
    }
    let known = if buckets.is_empty() { "none yet".to_owned() } else { buckets.join(", ") };
    Err(OpError::UnknownBucket { bucket: bucket.to_owned(), known })
}

impl Operations {
    /// Every operation, over `capture` and `reconciler`; long-running ones are tasks of
    /// `tasks`.
    pub fn new(
        stores: Arc<Stores>,
        capture: Arc<Capture>,
        reconciler: Arc<Reconciler>,
        metrics: Metrics,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            stores,
            writer: Some(Writer { capture, reconciler }),
            metrics,
            tasks,
            retention: Arc::new(RetentionConfig::default()),
            gc_turn: Arc::default(),
            gc_watch: Arc::default(),
        }
    }

    /// History without the capture engine (an offline session): reads, verify and
    /// snapshots (these only if the journal was opened for writing); no restore, no
    /// reconcile.
    pub fn without_capture(stores: Arc<Stores>, metrics: Metrics) -> Self {
        Self {
            stores,
            writer: None,
            metrics,
            tasks: TaskTracker::new(),
            retention: Arc::new(RetentionConfig::default()),
            gc_turn: Arc::default(),
            gc_watch: Arc::default(),
        }
    }

    /// With the retention policies of `retention` (the default policy otherwise).
    pub fn with_retention(mut self, retention: RetentionConfig) -> Self {
        self.retention = Arc::new(retention);
        self
    }

    /// The journal, vault and keys.
    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    fn writer(&self) -> Result<&Writer, OpError> {
        self.writer.as_ref().ok_or(OpError::ReadOnly)
    }

    fn journal(&self) -> Arc<Journal> {
        self.stores.journal.clone()
    }

    /// The journal's head, checkpoints, the vault's size and each bucket's objects.
    pub async fn status(&self) -> Result<Status, OpError> {
        let (journal, location) = (self.journal(), self.stores.vault_location.clone());
        blocking(move || Ok(crate::status(&journal, location)?)).await
    }

    /// The objects of `bucket` under `prefix` as of `at`.
    pub async fn ls(&self, bucket: String, prefix: String, at: At) -> Result<Listing, OpError> {
        let journal = self.journal();
        blocking(move || {
            known_bucket(&journal, &bucket)?;
            let history = History::new(&journal);
            let seq = history.resolve(&at)?;
            let objects = history.state_at(&bucket, &prefix, seq)?.iter().map(Into::into).collect();
            Ok(Listing { bucket, prefix, seq: seq.0, objects })
        })
        .await
    }

    /// Every committed mutation of `bucket`/`key`.
    pub async fn log(&self, bucket: String, key: String) -> Result<Vec<LogLine>, OpError> {
        let journal = self.journal();
        blocking(move || {
            known_bucket(&journal, &bucket)?;
            let log = History::new(&journal).log(&bucket, &key)?;
            if log.is_empty() {
                return Err(OpError::NoSuchVersion(format!(
                    "{key:?} has no history in bucket {bucket:?}; `rewind ls --bucket {bucket}` lists its keys"
                )));
            }
            Ok(log.iter().map(LogLine::from).collect())
        })
        .await
    }

    /// What changed under `prefix` between `from` and `to`.
    pub async fn diff(&self, bucket: String, prefix: String, from: At, to: At) -> Result<DiffReport, OpError> {
        let journal = self.journal();
        blocking(move || {
            known_bucket(&journal, &bucket)?;
            let history = History::new(&journal);
            let (from, to) = (history.resolve(&from)?, history.resolve(&to)?);
            Ok(DiffReport::new(from.0, to.0, &history.diff(&bucket, &prefix, from, to)?))
        })
        .await
    }

    /// The version of `bucket`/`key` as of `at`.
    pub async fn version(&self, bucket: String, key: String, at: At) -> Result<Entry, OpError> {
        let journal = self.journal();
        blocking(move || {
            known_bucket(&journal, &bucket)?;
            let history = History::new(&journal);
            let seq = history.resolve(&at)?;
            history.version_at(&bucket, &key, seq)?.ok_or_else(|| {
                OpError::NoSuchVersion(format!(
                    "{key:?} did not exist in {bucket:?} at {at}; `rewind log --bucket {bucket} --key {key}` shows when it did"
                ))
            })
        })
        .await
    }

    /// A version's bytes, chunk by chunk from the vault, each checked as it is read.
    pub fn read(&self, entry: &Entry) -> impl Stream<Item = Result<Bytes, VaultError>> + Send + 'static {
        let vault = self.stores.vault.clone();
        futures::stream::iter(entry.version.chunks.clone()).then(move |id| {
            let vault = vault.clone();
            async move { vault.read_chunk(&id).await }
        })
    }

    /// Every named snapshot.
    pub async fn snapshots(&self) -> Result<Vec<Snapshot>, OpError> {
        let journal = self.journal();
        blocking(move || Ok(History::new(&journal).snapshots()?)).await
    }

    /// Names the instant `at`.
    pub async fn create_snapshot(&self, name: &str, at: &At) -> Result<Snapshot, OpError> {
        Ok(History::new(&self.stores.journal).create_snapshot(name, at).await?)
    }

    /// Removes a snapshot's name.
    pub async fn delete_snapshot(&self, name: &str) -> Result<(), OpError> {
        Ok(History::new(&self.stores.journal).delete_snapshot(name).await?)
    }

    /// Checks the journal, every chunk (reading `read` of them back), and the journal
    /// against the vault's copy of it; the outcome is counted in the metrics.
    pub async fn verify(&self, read: ReadData, compare: Compare) -> Result<VerifyReport, OpError> {
        let result = self.verify_all(read, compare).await;
        let runs = &self.metrics.verify_runs;
        match &result {
            Ok(report) if report.ok() => {
                runs.with_label_values(&["ok"]).inc();
                self.metrics.verify_last_success.set(rewind_capture::now_seconds());
            }
            Ok(report) => {
                runs.with_label_values(&["damaged"]).inc();
                tracing::error!(
                    journal_problems = report.journal_problems.len(),
                    damaged_versions = report.damaged.len(),
                    "verify found damage: run `rewind verify` for the list"
                );
            }
            Err(e) => {
                runs.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "verify could not run");
            }
        }
        result
    }

    async fn verify_all(&self, read: ReadData, compare: Compare) -> Result<VerifyReport, OpError> {
        let stores = &self.stores;
        let mut report = crate::verify::verify(&stores.journal, &stores.vault, read).await?;
        let (journal, backend) = (&stores.journal, stores.backend.as_ref());
        match compare {
            Compare::Head => match ship::check_against_vault(journal, backend).await {
                Ok(()) => {}
                Err(ShipError::Diverged(d)) => report.journal_problems.push(d.to_string()),
                Err(e) => return Err(OpError::Vault(e)),
            },
            Compare::Segments => {
                let found = ship::compare_with_vault(journal, backend).await.map_err(OpError::Vault)?;
                report.segments += found.segments;
                report.checkpoints += found.checkpoints;
                report.journal_problems.extend(found.problems);
            }
        }
        Ok(report)
    }

    /// Plans a restore against what the destination holds now and, unless it is a dry
    /// run, applies it in a task; the plan is the first event, the outcome the last.
    pub async fn restore(&self, ask: RestoreRequest) -> Result<mpsc::Receiver<RestoreEvent>, OpError> {
        let to_bucket = ask.to_bucket.clone().unwrap_or_else(|| ask.bucket.clone());
        let writer = self.writer()?;
        if !writer.capture.protects(&to_bucket) {
            return Err(OpError::Invalid(format!(
                "bucket {to_bucket:?} is not protected by this gateway, so a restore into it could not be journaled or undone: add it to protection.buckets, or restore with --to-dir"
            )));
        }
        let at = At::parse(&ask.at, rewind_capture::now_us()).map_err(|e| OpError::Invalid(e.to_string()))?;
        let journal = self.journal();
        known_bucket(&journal, &ask.bucket)?;
        // The plan compares with what the destination holds now, not what the journal
        // believes it holds (objects deleted behind the gateway's back, review F6).
        let under = ask.key.clone().unwrap_or_else(|| ask.prefix.clone());
        let listed = Arc::new(crate::restore::list_destination(&writer.capture, &to_bucket, &under).await?);
        let (mut plan, before_seq) = {
            let (ask, to_bucket, listed) = (ask.clone(), to_bucket.clone(), listed.clone());
            blocking(move || {
                let history = History::new(&journal);
                let seq = history.resolve(&at)?;
                let before = journal.head().map_err(HistoryError::from)?.seq;
                let scope =
                    Scope { bucket: &ask.bucket, prefix: &ask.prefix, key: ask.key.as_deref(), to_bucket: &to_bucket };
                Ok((history.plan_against(&scope, seq, ask.mode, &listed)?, before))
            })
            .await?
        };
        plan.summary.before_seq = before_seq.0;
        Ok(self.apply_plan(&writer.capture, plan, listed, ask.parallel, ask.dry_run))
    }

    /// Sends `plan`'s summary, then (unless `dry_run`) applies it in a task, `parallel`
    /// objects at once, streaming its progress: what a restore and an undo share.
    fn apply_plan(
        &self,
        capture: &Arc<Capture>,
        plan: crate::plan::Plan,
        listed: Arc<crate::plan::Destination>,
        parallel: usize,
        dry_run: bool,
    ) -> mpsc::Receiver<RestoreEvent> {
        let (tx, rx) = mpsc::channel::<RestoreEvent>(EVENTS);
        let before_seq = plan.summary.before_seq;
        // Room for one event: the plan always fits.
        let _fits = tx.try_send(RestoreEvent::Plan(plan.summary.clone()));
        if dry_run {
            return rx;
        }
        let parallel = if parallel == 0 { DEFAULT_PARALLEL } else { parallel.min(MAX_PARALLEL) };
        let (capture, metrics) = (capture.clone(), self.metrics.clone());
        self.tasks.spawn(async move {
            // What the restore reads stays in the vault until it is done.
            let _reads = capture.vault().enter_write();
            let (inner_tx, mut inner_rx) = mpsc::channel::<RestoreEvent>(EVENTS);
            let runner = tokio::spawn(crate::restore::run(capture, plan, listed, parallel, before_seq, inner_tx));
            while let Some(event) = inner_rx.recv().await {
                if let RestoreEvent::Done { written, deleted, failed, .. } = &event {
                    metrics.restored_objects.with_label_values(&["written"]).inc_by(*written);
                    metrics.restored_objects.with_label_values(&["deleted"]).inc_by(*deleted);
                    metrics.restored_objects.with_label_values(&["failed"]).inc_by(*failed);
                }
                if tx.send(event).await.is_err() {
                    break; // the caller went away: dropping inner_rx stops the restore
                }
            }
            drop(inner_rx);
            let _ = runner.await;
        });
        rx
    }

    /// Starts a reconcile pass over `bucket` in a task; its progress and outcome come back
    /// as events.
    pub fn reconcile(&self, bucket: String, ask: ReconcileAsk) -> Result<mpsc::Receiver<ReconcileEvent>, OpError> {
        let writer = self.writer()?;
        let mut limits: Limits = writer.reconciler.limits();
        if let Some(n) = ask.parallel {
            limits.parallel = usize::try_from(n).unwrap_or(usize::MAX).clamp(1, MAX_PARALLEL);
        }
        if let Some(n) = ask.objects_per_second {
            limits.objects_per_second = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = ask.bytes_per_second {
            limits.bytes_per_second = n;
        }
        if !writer.capture.protects(&bucket) {
            return Err(ReconcileError::NotProtected(bucket).into());
        }
        let (tx, rx) = mpsc::channel::<ReconcileEvent>(EVENTS);
        let reconciler = writer.reconciler.clone();
        self.tasks.spawn(async move {
            if let Err(e) = reconciler.run(&bucket, limits, Some(tx.clone())).await {
                let _gone = tx.send(ReconcileEvent::Stopped { error: e.to_string() }).await;
            }
        });
        Ok(rx)
    }
}
