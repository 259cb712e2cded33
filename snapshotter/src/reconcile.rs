//! Reconcile: list a protected bucket upstream and bring the journal up to it. Objects the
//! journal does not hold at their current ETag and size (written before Rewind was
//! installed, or behind its back) are captured; keys the journal has but the upstream no
//! longer lists are checked and journaled as deleted. The first pass over a bucket is its
//! baseline import.
//!
//! Pages of the listing are processed in order, the keys of a page in parallel, each under
//! its key's lock (so a client write racing a reconcile is ordered, and neither is lost).
//! After each page the last key is kept as a resume point in the journal's work in
//! progress, so an interrupted pass resumes after it. Captures are paced by objects and
//! bytes per second.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::{ReconcileCounts, ReconcileEvent};
use futures::StreamExt;
use rewind_journal::Progress;
use rewind_model::Seq;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use rewind_capture::Actor;
use rewind_capture::Metrics;
use rewind_capture::reconcile::{Reconciled, Staged};
use rewind_capture::{Capture, CaptureError, Held, listed_object};

/// The client identity reconcile's records carry (`rewind log` shows it).
pub const RECONCILE_ACTOR: &str = "rewind-reconcile";
/// Keys per listing page (and resume point).
const PAGE: i32 = 1000;
/// Captures made durable and committed together, at most: by count ...
const BATCH_OBJECTS: usize = 256;
/// ... and by bytes (a pack is 32 MiB).
const BATCH_BYTES: u64 = 16 << 20;
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Limits of one pass.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Keys reconciled at once.
    pub parallel: usize,
    /// Most captures per second (0: no limit).
    pub objects_per_second: u32,
    /// Most bytes captured per second (0: no limit).
    pub bytes_per_second: u64,
}

/// Spaces captures out to stay within [`Limits`].
struct Pace {
    next: Mutex<Instant>,
    per_object: Duration,
    bytes_per_second: u64,
}

impl Pace {
    fn new(limits: Limits) -> Self {
        let per_object = match limits.objects_per_second {
            0 => Duration::ZERO,
            n => Duration::from_secs_f64(1.0 / f64::from(n)),
        };
        Self { next: Mutex::new(Instant::now()), per_object, bytes_per_second: limits.bytes_per_second }
    }

    /// Waits for this capture's turn.
    async fn turn(&self) {
        let at = {
            let mut next = self.next.lock().expect("invariant: no panics while holding this lock");
            let at = (*next).max(Instant::now());
            *next = at + self.per_object;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }

    /// Charges `bytes` read to the following captures.
    fn spent(&self, bytes: u64) {
        if self.bytes_per_second > 0 {
            let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
            let mut next = self.next.lock().expect("invariant: no panics while holding this lock");
            *next = (*next).max(Instant::now()) + cost;
        }
    }
}

/// Keys of a pass waiting for their lock.
#[derive(Default)]
struct LockWaits {
    waiting: AtomicU64,
    changed: tokio::sync::Notify,
}

impl LockWaits {
    /// Locks `key`, counted as waiting while someone else holds its stripe.
    async fn lock(&self, capture: &Capture, bucket: &str, key: &str) -> Result<Held, CaptureError> {
        if let Some(held) = capture.try_lock(bucket, key) {
            return Ok(held);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        let held = capture.lock(bucket, key).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        held
    }

    /// Returns once some key is waiting for its lock.
    async fn someone_waiting(&self) {
        loop {
            let changed = self.changed.notified();
            if self.waiting.load(Ordering::SeqCst) > 0 {
                return;
            }
            changed.await;
        }
    }
}

/// What a pass shares between its keys.
struct Run<'a> {
    bucket: &'a str,
    actor: Actor,
    counters: Counters,
    pace: Pace,
    events: Option<mpsc::Sender<ReconcileEvent>>,
}

/// Staged captures waiting to be made durable and journaled together.
#[derive(Default)]
struct Batch {
    staged: Vec<(String, Box<Staged>)>,
    bytes: u64,
}

impl Batch {
    /// Adds a capture; returns whether the batch is full.
    fn add(&mut self, key: String, staged: Box<Staged>) -> bool {
        self.bytes += staged.size();
        self.staged.push((key, staged));
        self.staged.len() >= BATCH_OBJECTS || self.bytes >= BATCH_BYTES
    }

    fn take(&mut self) -> Vec<(String, Box<Staged>)> {
        self.bytes = 0;
        std::mem::take(&mut self.staged)
    }
}

/// What one key came to.
enum Tally {
    Unchanged,
    Captured(u64),
    Deleted,
}

#[derive(Default)]
struct Counters {
    listed: AtomicU64,
    unchanged: AtomicU64,
    captured: AtomicU64,
    captured_bytes: AtomicU64,
    deleted: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ReconcileCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ReconcileCounts {
            listed: get(&self.listed),
            unchanged: get(&self.unchanged),
            captured: get(&self.captured),
            captured_bytes: get(&self.captured_bytes),
            deleted: get(&self.deleted),
            failed: get(&self.failed),
        }
    }
}

/// Runs reconcile passes, one at a time per bucket.
pub struct Reconciler {
    capture: Arc<Capture>,
    metrics: Metrics,
    limits: Limits,
    running: Mutex<HashSet<String>>,
    /// Per bucket: objects found not protected and not captured yet (the gauge is the sum).
    unprotected: Mutex<HashMap<String, i64>>,
    /// Cancelled when the gateway stops: a pass stops between keys, keeping its resume point.
    stop: CancellationToken,
}

/// Why a pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Another pass over the bucket is running.
    #[error(
        "a reconcile of bucket {0:?} is already running; wait for it (rewind_reconcile_objects_total shows its progress)"
    )]
    Busy(String),
    /// The bucket is not protected.
    #[error("bucket {0:?} is not protected by this gateway (protection.buckets), so there is nothing to reconcile")]
    NotProtected(String),
    /// The gateway is stopping; the next pass resumes where this one stopped.
    #[error("the gateway is stopping; the reconcile resumes where it stopped on the next run")]
    Stopped,
    /// Listing or capturing failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The journal failed.
    #[error("journal: {0}")]
    Journal(#[from] rewind_journal::JournalError),
}

impl Reconciler {
    /// A reconciler over `capture`, with default `limits` for passes.
    pub fn new(capture: Arc<Capture>, metrics: Metrics, limits: Limits, stop: CancellationToken) -> Self {
        Self { capture, metrics, limits, running: Mutex::default(), unprotected: Mutex::default(), stop }
    }

    /// Changes `bucket`'s count of unprotected objects (`None`: resets it to 0).
    fn unprotected(&self, bucket: &str, delta: Option<i64>) {
        let mut map = self.unprotected.lock().expect("invariant: no panics while holding this lock");
        let entry = map.entry(bucket.to_owned()).or_default();
        *entry = delta.map_or(0, |d| *entry + d);
        self.metrics.unprotected_objects.set(map.values().sum());
    }

    /// The default limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// One pass over `bucket`; progress goes to `events` when given.
    pub async fn run(
        &self,
        bucket: &str,
        limits: Limits,
        events: Option<mpsc::Sender<ReconcileEvent>>,
    ) -> Result<ReconcileCounts, ReconcileError> {
        if !self.capture.protects(bucket) {
            return Err(ReconcileError::NotProtected(bucket.to_owned()));
        }
        if !self.running.lock().expect("invariant: no panics while holding this lock").insert(bucket.to_owned()) {
            return Err(ReconcileError::Busy(bucket.to_owned()));
        }
        let result = self.pass(bucket, limits, events).await;
        self.running.lock().expect("invariant: no panics while holding this lock").remove(bucket);
        result
    }

    async fn pass(
        &self,
        bucket: &str,
        limits: Limits,
        events: Option<mpsc::Sender<ReconcileEvent>>,
    ) -> Result<ReconcileCounts, ReconcileError> {
        let capture = &self.capture;
        let journal = capture.journal();
        let resume = rewind_journal::layout::reconcile_resume(bucket);
        let resume_after = journal.progress_get(&resume)?.map(|v| String::from_utf8_lossy(&v).into_owned());
        if let Some(after) = &resume_after {
            tracing::info!(bucket, after = %rewind_model::LogKey(after), "resuming an interrupted reconcile");
        }
        // What the journal says the bucket holds, by key (as of the start of the pass; each
        // key is re-checked under its lock before anything is written).
        let known = {
            let journal = journal.clone();
            let bucket = bucket.to_owned();
            tokio::task::spawn_blocking(move || journal.state_at(&bucket, "", Seq::LATEST))
                .await
                .expect("invariant: reading the journal does not panic")?
        };
        let mut known = known.into_iter().filter(|e| resume_after.as_ref().is_none_or(|a| e.key > *a)).peekable();
        if resume_after.is_none() {
            self.unprotected(bucket, None);
        }
        let waits = LockWaits::default();
        let actor = Actor::internal(RECONCILE_ACTOR, format!("reconcile-{:08x}", rand::random::<u32>()));
        let run = Run { bucket, actor, counters: Counters::default(), pace: Pace::new(limits), events };
        let counters = &run.counters;
        let started = Instant::now();
        let mut last_report = Instant::now();
        let mut token: Option<String> = None;
        loop {
            if self.stop.is_cancelled() {
                return Err(ReconcileError::Stopped);
            }
            let page = capture
                .upstream()
                .list_objects_v2()
                .bucket(bucket)
                .max_keys(PAGE)
                .set_start_after(resume_after.clone().filter(|_| token.is_none()))
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(rewind_capture::upstream_error)?;
            let listed: Vec<(String, String, u64)> = page.contents().iter().filter_map(listed_object).collect();
            let last_page = !page.is_truncated().unwrap_or(false);
            counters.listed.fetch_add(listed.len() as u64, Ordering::Relaxed);
            // Keys to look at: listed ones the journal does not hold as listed, and journal
            // keys this page skips over (gone upstream). After the last page, every
            // remaining journal key.
            let mut todo = Vec::new();
            for (key, etag, size) in &listed {
                while let Some(k) = known.next_if(|e| e.key < *key) {
                    todo.push(k.key);
                }
                match known.next_if(|e| e.key == *key) {
                    Some(e) if e.version.etag == *etag && e.version.size == *size => {
                        counters.unchanged.fetch_add(1, Ordering::Relaxed);
                        self.metrics.reconcile_objects.with_label_values(&["unchanged"]).inc();
                    }
                    _ => todo.push(key.clone()),
                }
            }
            if last_page {
                todo.extend(known.by_ref().map(|e| e.key));
            }
            self.unprotected(bucket, Some(i64::try_from(todo.len()).unwrap_or(i64::MAX)));
            let (run, waits) = (&run, &waits);
            let mut outcomes = futures::stream::iter(todo)
                .take_while(|_| futures::future::ready(!self.stop.is_cancelled()))
                .map(|key| async move {
                    run.pace.turn().await;
                    let outcome = match waits.lock(capture, bucket, &key).await {
                        Ok(lock) => capture.reconcile_key(bucket, &key, &run.actor, lock).await,
                        Err(e) => Err(e),
                    };
                    (key, outcome)
                })
                .buffer_unordered(limits.parallel.max(1));
            // Captures wait here, their keys locked, until a batch is made durable and
            // journaled together. Locks are striped, so a key being reconciled may wait for
            // one a staged capture holds: the batch is then committed at once.
            let mut batch = Batch::default();
            loop {
                let next = if batch.staged.is_empty() {
                    outcomes.next().await
                } else {
                    tokio::select! {
                        next = outcomes.next() => next,
                        () = waits.someone_waiting() => {
                            self.commit_batch(run, batch.take()).await;
                            continue;
                        }
                    }
                };
                let Some((key, outcome)) = next else { break };
                match outcome {
                    Ok(Reconciled::Staged(staged)) => {
                        if batch.add(key, staged) {
                            self.commit_batch(run, batch.take()).await;
                        }
                    }
                    Ok(Reconciled::Unchanged) => self.tally(run, key, Ok(Tally::Unchanged)).await,
                    Ok(Reconciled::Deleted) => self.tally(run, key, Ok(Tally::Deleted)).await,
                    Err(e) => self.tally(run, key, Err(e)).await,
                }
                // Within a page too: against a slow upstream one page takes seconds.
                if let Some(events) = &run.events
                    && last_report.elapsed() >= PROGRESS_EVERY
                {
                    last_report = Instant::now();
                    let _gone = events.send(ReconcileEvent::Progress(counters.snapshot())).await;
                }
            }
            self.commit_batch(run, batch.take()).await;
            if self.stop.is_cancelled() {
                return Err(ReconcileError::Stopped); // this page is not done: no resume point
            }
            if let Some((key, _, _)) = listed.last() {
                journal.progress(vec![Progress::Put(resume.clone(), key.as_bytes().to_vec())]).await?;
            }
            if let Some(events) = &run.events
                && last_report.elapsed() >= PROGRESS_EVERY
            {
                last_report = Instant::now();
                let _gone = events.send(ReconcileEvent::Progress(counters.snapshot())).await;
            }
            token = page.next_continuation_token().map(str::to_owned);
            if last_page || token.is_none() {
                break;
            }
        }
        journal.progress(vec![Progress::Remove(resume)]).await?;
        let counts = counters.snapshot();
        if counts.failed == 0 {
            self.metrics.reconcile_last_success.set(rewind_capture::now_seconds());
        }
        tracing::info!(
            bucket,
            seconds = started.elapsed().as_secs_f64(),
            listed = counts.listed,
            unchanged = counts.unchanged,
            captured = counts.captured,
            captured_bytes = counts.captured_bytes,
            deleted = counts.deleted,
            failed = counts.failed,
            "reconcile pass done"
        );
        if let Some(events) = &run.events {
            let _gone = events.send(ReconcileEvent::Done(counts.clone())).await;
        }
        Ok(counts)
    }

    /// Makes a batch of staged captures durable and commits them, then counts each.
    async fn commit_batch(&self, run: &Run<'_>, batch: Vec<(String, Box<Staged>)>) {
        let (keys, staged): (Vec<String>, Vec<Box<Staged>>) = batch.into_iter().unzip();
        for (key, result) in keys.into_iter().zip(self.capture.commit_staged(staged, &run.actor).await) {
            if let Ok(size) = result {
                run.pace.spent(size);
            }
            self.tally(run, key, result.map(Tally::Captured)).await;
        }
    }

    /// Counts what reconciling `key` came to, and reports a failure.
    async fn tally(&self, run: &Run<'_>, key: String, outcome: Result<Tally, CaptureError>) {
        let (bucket, counters) = (run.bucket, &run.counters);
        let result = match outcome {
            Ok(Tally::Unchanged) => {
                counters.unchanged.fetch_add(1, Ordering::Relaxed);
                "unchanged"
            }
            Ok(Tally::Captured(size)) => {
                counters.captured.fetch_add(1, Ordering::Relaxed);
                counters.captured_bytes.fetch_add(size, Ordering::Relaxed);
                "captured"
            }
            Ok(Tally::Deleted) => {
                counters.deleted.fetch_add(1, Ordering::Relaxed);
                "deleted"
            }
            // Still unprotected: it stays counted until a pass captures it.
            Err(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                self.metrics.reconcile_objects.with_label_values(&["failed"]).inc();
                // Logged whoever asked: a scheduled pass has no one to send events to.
                tracing::warn!(bucket, key = %rewind_model::LogKey(&key), error = %e, "reconcile could not capture a key; the next pass retries it");
                if let Some(events) = &run.events {
                    let _gone = events.send(ReconcileEvent::Failed { key, error: e.to_string() }).await;
                }
                return;
            }
        };
        self.unprotected(bucket, Some(-1));
        self.metrics.reconcile_objects.with_label_values(&[result]).inc();
    }

    /// Reconciles every protected bucket upstream now and then every `every`, until the
    /// gateway stops.
    pub async fn on_schedule(self: Arc<Self>, every: Duration) {
        if every.is_zero() {
            return;
        }
        let stop = self.stop.clone();
        loop {
            match self.capture.upstream().list_buckets().send().await {
                Ok(out) => {
                    for bucket in out.buckets().iter().filter_map(|b| b.name()) {
                        if stop.is_cancelled() {
                            return;
                        }
                        if !self.capture.protects(bucket) {
                            continue;
                        }
                        let pass = self.run(bucket, self.limits, None);
                        tokio::select! {
                            () = stop.cancelled() => return,
                            result = pass => if let Err(e) = result {
                                tracing::warn!(bucket, error = %e, "scheduled reconcile failed; it runs again at the next interval");
                            },
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(e), "reconcile cannot list the upstream's buckets; retrying at the next interval")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
