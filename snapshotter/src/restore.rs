//! Running a restore plan: objects are restored in parallel, each through the capture
//! steps (`capture/restore.rs`), while counts stream to the caller. A caller that goes away
//! stops the restore between objects; a re-run plans only what is left.
//!
//! The objects in flight are futures polled by this one task, not tasks of their own: a
//! task per object made every wake-up cross between the runtime's threads, which cost a
//! 4 KiB object 45% more CPU than its upload (measured with `cli/benches/restore.rs`).
//! The admin API runs this function as a task of its own, so objects in flight still
//! finish, and are journaled, when the caller goes away.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Entry;
use crate::api::RestoreEvent;
use crate::plan::{Destination, Plan};
use aws_sdk_s3::error::ProvideErrorMetadata;
use futures::StreamExt;
use tokio::sync::mpsc;

use rewind_capture::Actor;
use rewind_capture::restore::{Listed, Restored};
use rewind_capture::{Capture, CaptureError, listed_object};

/// The client identity restores are journaled under (`rewind log` shows it).
pub const RESTORE_ACTOR: &str = "rewind-restore";
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Counts {
    written: AtomicU64,
    deleted: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

impl Counts {
    fn progress(&self) -> RestoreEvent {
        RestoreEvent::Progress {
            done: self.written.load(Ordering::Relaxed) + self.deleted.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

enum Step {
    Write(Box<Entry>),
    Delete(String),
}

/// Why the destination could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The bucket does not exist upstream.
    #[error(
        "bucket {0:?} does not exist upstream: create it first (e.g. `aws s3 mb s3://{0}`), then run the restore again"
    )]
    NoSuchBucket(String),
    /// Anything else the upstream said.
    #[error(transparent)]
    Upstream(#[from] CaptureError),
}

/// What the destination holds under `prefix` now, by key: what restore plans against.
pub async fn list_destination(capture: &Capture, bucket: &str, prefix: &str) -> Result<Destination, ListError> {
    let mut out = Destination::new();
    let mut pages = capture.upstream().list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(p) => p,
            Err(e) if e.as_service_error().is_some_and(|s| s.code() == Some("NoSuchBucket")) => {
                return Err(ListError::NoSuchBucket(bucket.to_owned()));
            }
            Err(e) => return Err(ListError::Upstream(rewind_capture::upstream_error(e))),
        };
        for o in page.contents() {
            if let Some((key, etag, size)) = listed_object(o) {
                out.insert(key, (etag, size));
            }
        }
    }
    Ok(out)
}

/// Applies `plan` to `to_bucket` with `parallel` objects at once, sending events to
/// `events` and ending with [`RestoreEvent::Done`]. `listed` is what the destination held
/// when the plan was made (it spares a HEAD per key). `before_seq` is the journal head
/// before the restore (restoring to it undoes this one).
pub async fn run(
    capture: Arc<Capture>,
    plan: Plan,
    listed: Arc<Destination>,
    parallel: usize,
    before_seq: u64,
    events: mpsc::Sender<RestoreEvent>,
) {
    let to_bucket = plan.summary.to_bucket.clone();
    let id = format!("restore-{:08x}", rand::random::<u32>());
    tracing::info!(restore = %id, bucket = %to_bucket, writes = plan.writes.len(), deletes = plan.deletes.len(), "restore started");
    let counts = Arc::new(Counts::default());
    let ticker = {
        let (counts, events) = (counts.clone(), events.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                if events.send(counts.progress()).await.is_err() {
                    return;
                }
            }
        })
    };
    let steps =
        plan.writes.into_iter().map(|e| Step::Write(Box::new(e))).chain(plan.deletes.into_iter().map(Step::Delete));
    let hint =
        |key: &str| Some(listed.get(key).map_or(Listed::Absent, |(etag, size)| Listed::Present(etag.clone(), *size)));
    let actor = Actor::internal(RESTORE_ACTOR, id.clone());
    let (capture, counts, events, to_bucket, actor) = (&capture, &counts, &events, &to_bucket, &actor);
    let work = futures::stream::iter(steps)
        .take_while(|_| futures::future::ready(!events.is_closed()))
        .map(|step| async move {
            let (key, result) = match step {
                Step::Write(entry) => {
                    let h = hint(&entry.key);
                    let r = capture.restore_version(to_bucket, &entry.key, &entry.version, h.as_ref(), actor).await;
                    if matches!(r, Ok(Restored::Done)) {
                        counts.written.fetch_add(1, Ordering::Relaxed);
                        counts.bytes.fetch_add(entry.version.size, Ordering::Relaxed);
                    }
                    (entry.key, r)
                }
                Step::Delete(key) => {
                    let r = capture.restore_delete(to_bucket, &key, actor).await;
                    if matches!(r, Ok(Restored::Done)) {
                        counts.deleted.fetch_add(1, Ordering::Relaxed);
                    }
                    (key, r)
                }
            };
            report(counts, events, key, result).await;
        })
        .buffer_unordered(parallel.max(1));
    work.for_each(|_| futures::future::ready(())).await;
    ticker.abort();
    let (written, deleted) = (counts.written.load(Ordering::Relaxed), counts.deleted.load(Ordering::Relaxed));
    let (failed, bytes) = (counts.failed.load(Ordering::Relaxed), counts.bytes.load(Ordering::Relaxed));
    if events.is_closed() {
        tracing::info!(restore = %id, bucket = %to_bucket, written, deleted, failed, bytes, before_seq, "restore stopped: the caller went away");
    } else {
        tracing::info!(restore = %id, bucket = %to_bucket, written, deleted, failed, bytes, before_seq, "restore ended");
    }
    let _gone = events.send(RestoreEvent::Done { written, deleted, failed, bytes, before_seq }).await;
}

async fn report(
    counts: &Counts,
    events: &mpsc::Sender<RestoreEvent>,
    key: String,
    result: Result<Restored, CaptureError>,
) {
    if let Err(e) = result {
        counts.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(key = %rewind_model::LogKey(&key), error = %e, "restoring an object failed");
        let _gone = events.send(RestoreEvent::Failed { key, error: e.to_string() }).await;
    }
}
