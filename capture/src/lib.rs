//! Capture: every mutation of a protected bucket is journaled, and every byte it wrote is
//! kept in the vault, before the client hears "OK" (DESIGN.md, write path, G1 and G2).
//!
//! The S3 layer (`rewind-forward`) drives each mutation through these steps:
//! 1. take the key's mutation lock ([`Capture::lock`]);
//! 2. capture the version the mutation would destroy, if the vault lacks it
//!    ([`Capture::protect_current`]);
//! 3. append an intent ([`Capture::begin`]), buffered: the commit's fsync covers it;
//! 4. forward upstream, teeing any body into the vault ([`Capture::tee`]);
//! 5. append a synced commit ([`Capture::commit`]), or an abort.
//!
//! An intent left open by a crash or a dropped request is resolved against the upstream by
//! start-up recovery (`recovery.rs`).

pub mod chain;
pub mod compact;
mod error;
mod incidents;
pub mod lean;
pub mod locks;
pub mod meta;
pub mod metrics;
pub mod migrate;
pub mod mirror;
pub mod mirror_check;
mod multipart;
pub mod open;
pub mod rebuild;
pub mod reconcile;
pub mod recovery;
use recovery::Orphans;
mod protect;
pub mod restore;
pub mod secrets;
pub use protect::{Protected, UpstreamHead};
pub mod ship;
pub mod tripwire;
pub mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rewind_config::ProtectionConfig;
use rewind_journal::{Durability, Journal, Progress};
use rewind_model::{Abort, Body, Commit, Effect, Intent, ObjectVersion, Observed, Op, Seq};
use rewind_vault::{Manifest, Vault, WrittenPack};
use tokio_util::task::TaskTracker;

pub use error::{CaptureError, TeeError, answer_error, describe, upstream_error};
pub use locks::{Held, KeyLocks};
pub use meta::ObjectMeta;
pub use metrics::Metrics;

use metrics::record_kind;

/// Now, in microseconds since the Unix epoch (the gateway's clock).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// `us` (µs since the Unix epoch) in RFC 3339.
pub fn rfc3339(us: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{us}µs"))
}

/// Now, in seconds since the Unix epoch, for timestamp gauges.
pub fn now_seconds() -> f64 {
    now_us() as f64 / 1e6
}

/// Who asked for a mutation, as its intent records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The client's access key id (not secret; identifies who acted), or the name of the
    /// gateway's own work (`rewind-restore`, `rewind-reconcile`).
    pub access_key: String,
    /// The request id in the gateway's log line.
    pub request_id: String,
}

impl Actor {
    /// Work the gateway does on its own behalf, journaled as `name` under `request_id`.
    pub fn internal(name: &str, request_id: String) -> Self {
        Self { access_key: name.to_owned(), request_id }
    }
}

/// An intent appended and not yet resolved. Dropping it unresolved (the request went away)
/// enqueues an abort; recovery and the next capture-before-destroy cover whatever the
/// upstream did meanwhile.
pub struct Pending {
    seq: Seq,
    bucket: String,
    key: String,
    journal: Arc<Journal>,
    armed: bool,
    /// Work-in-progress changes its commit or abort makes, in the same atomic batch.
    then: Vec<Progress>,
    /// Where the abort of a dropped, unresolved intent runs.
    tasks: TaskTracker,
    /// Where it goes when that abort cannot be journaled.
    orphans: Orphans,
    /// Keeps garbage collection from deleting chunks the mutation found in the vault
    /// until it is resolved (see `rewind_vault::epoch`).
    _writes: rewind_vault::WriteGuard,
}

impl Pending {
    /// The intent's sequence number.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    /// Makes its resolution (commit, or abort after the upstream applied it) also end the
    /// multipart upload at `upload` (see [`rewind_journal::layout::upload_prefix`]): the
    /// upload's parts are forgotten in the batch that journals the object, never before
    /// and never without it.
    pub fn ending_upload(&mut self, upload: &[u8]) {
        self.then.push(Progress::RemovePrefix(upload.to_vec()));
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (journal, intent, orphans) = (self.journal.clone(), self.seq, self.orphans.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.tasks.spawn_on(
                async move {
                    let body = Body::Abort(Abort { intent, reason: "the request ended before it completed".into() });
                    if journal.append(body, Durability::Buffered).await.is_err() {
                        orphans.add(intent);
                    }
                },
                &rt,
            );
        } else {
            self.orphans.add(intent);
        }
    }
}

/// The capture side of the gateway.
pub struct Capture {
    /// Where background work of requests that went away runs.
    tasks: TaskTracker,
    journal: Arc<Journal>,
    vault: Arc<Vault>,
    upstream: aws_sdk_s3::Client,
    /// The upstream's lean client, for restores' single PUTs (`None`: the SDK's serves).
    lean: Option<lean::LeanClient>,
    locks: KeyLocks,
    protection: ProtectionConfig,
    timeout: Duration,
    metrics: Metrics,
    /// The journal's head when this process opened it: start-up recovery resolves only
    /// intents up to here; later ones belong to requests in flight.
    recover_up_to: Seq,
    /// Intents of this process whose request ended without their commit or abort in the
    /// journal (it refused the write: its database was unreachable, say).
    orphans: Orphans,
    /// The ransomware tripwire (off unless [`Capture::with_tripwire`] set it up).
    tripwire: Arc<tripwire::Tripwire>,
    /// Whether the vault's chunk index is kept in this journal, so a commit can carry the
    /// index entries of the chunks it references (see [`Capture::defers_index`]).
    index_in_journal: bool,
}

impl Capture {
    /// Capture over open stores, reading current versions through `upstream`.
    pub fn new(
        journal: Arc<Journal>,
        vault: Arc<Vault>,
        upstream: aws_sdk_s3::Client,
        protection: ProtectionConfig,
        timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        let recover_up_to = journal.head().map_or(Seq(0), |h| h.seq);
        let locks = KeyLocks::new(journal.engine().shared_locks());
        let tasks = TaskTracker::new();
        let orphans = Orphans::default();
        let off = rewind_config::TripwireConfig { enabled: false, ..Default::default() };
        let tripwire = Arc::new(tripwire::Tripwire::new(off, journal.clone(), metrics.clone()));
        let index_in_journal = vault
            .index()
            .as_any()
            .downcast_ref::<open::JournalIndex>()
            .is_some_and(|index| Arc::ptr_eq(&index.0, &journal));
        Self {
            journal,
            vault,
            upstream,
            lean: None,
            locks,
            protection,
            timeout,
            metrics,
            recover_up_to,
            tasks,
            orphans,
            tripwire,
            index_in_journal,
        }
    }

    /// Restores write small objects through `lean` rather than the SDK's client.
    pub fn with_lean(mut self, lean: Option<lean::LeanClient>) -> Self {
        self.lean = lean;
        self
    }

    /// Spawns the aborts of requests that went away on `tasks` (the gateway's one tracker),
    /// so that a stopping gateway waits for them.
    pub fn with_tasks(mut self, tasks: TaskTracker) -> Self {
        self.tasks = tasks;
        self
    }

    /// Its metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The upstream client.
    pub fn upstream(&self) -> &aws_sdk_s3::Client {
        &self.upstream
    }

    /// The vault.
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// Whether a body stored for a mutation may leave its chunks' index entries to the
    /// mutation's commit ([`rewind_vault::ObjectWriter::finish_written`]): true when the
    /// vault's index is kept in this journal. Every commit carries the entries of every
    /// pack written and not yet indexed, in its own atomic batch, so a commit is never
    /// durable without the index entries of the chunks it references, and a captured PUT
    /// pays one synced journal write fewer.
    pub fn defers_index(&self) -> bool {
        self.index_in_journal
    }

    /// Whether mutations of `bucket` are captured.
    pub fn protects(&self, bucket: &str) -> bool {
        self.protection.covers(bucket)
    }

    /// Whether bucket configurations that delete data may be set.
    pub fn allows_destructive_config(&self) -> bool {
        self.protection.allow_destructive_bucket_config
    }

    /// Counts a refusal.
    pub fn refused(&self, reason: &'static str) {
        self.metrics.capture_refusals.with_label_values(&[reason]).inc();
    }

    /// Takes the mutation lock of one key, then resolves what an interrupted mutation of
    /// the key left open ([`Capture::settle_interrupted`]): the next mutation of a key always follows
    /// every earlier one in the journal.
    pub async fn lock(&self, bucket: &str, key: &str) -> Result<Held, CaptureError> {
        self.lock_all(bucket, std::iter::once(key)).await
    }

    /// Takes the mutation lock of one key if it is free now.
    pub fn try_lock(&self, bucket: &str, key: &str) -> Option<Held> {
        self.locks.try_lock(bucket, key)
    }

    /// Takes the mutation locks of several keys of one bucket.
    pub async fn lock_all<'a>(
        &self,
        bucket: &str,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> Result<Held, CaptureError> {
        let keys: Vec<&str> = keys.into_iter().collect();
        let held =
            self.locks.lock_all(bucket, keys.iter().copied()).await.map_err(|e| CaptureError::Journal(e.into()))?;
        for key in keys {
            if held.may_have_open(bucket, key) {
                self.settle_interrupted(bucket, key).await?;
            }
        }
        Ok(held)
    }

    /// Appends an intent.
    pub async fn begin(&self, op: Op, bucket: &str, key: &str, actor: &Actor) -> Result<Pending, CaptureError> {
        let writes = self.vault.enter_write();
        let intent = intent(op, bucket, key, actor);
        let result = self.journal.append(Body::Intent(intent), Durability::Buffered).await;
        self.count(record_kind::INTENT, result.is_ok());
        Ok(Pending {
            seq: result?.seq,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            journal: self.journal.clone(),
            armed: true,
            then: Vec::new(),
            tasks: self.tasks.clone(),
            orphans: self.orphans.clone(),
            _writes: writes,
        })
    }

    /// Appends, durably, a change found upstream rather than made through the gateway
    /// (`op` is [`Op::CaptureExisting`] or [`Op::Vanished`]): one record, since nothing is
    /// applied upstream that recovery would have to resolve.
    pub async fn observe(
        &self,
        op: Op,
        bucket: &str,
        key: &str,
        actor: &Actor,
        effect: Effect,
    ) -> Result<Seq, CaptureError> {
        let intent = intent(op, bucket, key, actor);
        let result = self.journal.append(Body::Observed(Observed { intent, effect }), Durability::Synced).await;
        self.count(record_kind::OBSERVED, result.is_ok());
        let appended = result?;
        self.metrics.journal_last_commit.set(now_seconds());
        Ok(appended.seq)
    }

    /// Appends the commit of `pending` durably; returns once it is on disk.
    pub async fn commit(&self, mut pending: Pending, effect: Effect) -> Result<Seq, CaptureError> {
        let commit = Commit {
            intent: pending.seq,
            bucket: std::mem::take(&mut pending.bucket),
            key: std::mem::take(&mut pending.key),
            effect,
        };
        // Disarmed first: if this future is dropped while the commit is queued, the commit
        // may still be written, and an abort after it would contradict it. An intent left
        // open instead is resolved by recovery.
        pending.armed = false;
        let start = Instant::now();
        let mut then = std::mem::take(&mut pending.then);
        let indexing = if self.index_in_journal { self.vault.unindexed() } else { Vec::new() };
        if !indexing.is_empty() {
            then.push(Progress::IndexChunks(indexing.iter().flat_map(WrittenPack::index_rows).collect()));
        }
        let result = self.journal.append_with(Body::Commit(commit), Durability::Synced, then).await;
        self.count(record_kind::COMMIT, result.is_ok());
        if result.is_err() {
            self.orphans.add(pending.seq);
        }
        let appended = result?;
        self.vault.indexed(&indexing);
        self.metrics.journal_commit_duration.observe(start.elapsed().as_secs_f64());
        self.metrics.journal_last_commit.set(now_seconds());
        Ok(appended.seq)
    }

    /// Settles `pending` by what its mutation turned out to do: commits the effect; aborts
    /// (saying `unchanged`) when it changed nothing; aborts and returns the error when its
    /// capture failed.
    pub async fn settle(
        &self,
        pending: Pending,
        outcome: Result<Option<Effect>, CaptureError>,
        unchanged: &str,
    ) -> Result<Option<Seq>, CaptureError> {
        match outcome {
            Ok(Some(effect)) => self.commit(pending, effect).await.map(Some),
            Ok(None) => {
                self.abort(pending, unchanged).await;
                Ok(None)
            }
            Err(e) => {
                self.abort(pending, "the upstream applied it but its capture failed").await;
                Err(e)
            }
        }
    }

    /// Appends an abort of `pending`; a failure is logged (recovery resolves the intent).
    pub async fn abort(&self, mut pending: Pending, reason: &str) {
        pending.armed = false;
        let body = Body::Abort(Abort { intent: pending.seq, reason: reason.to_owned() });
        let then = std::mem::take(&mut pending.then);
        let durability = if then.is_empty() { Durability::Buffered } else { Durability::Synced };
        let result = self.journal.append_with(body, durability, then).await;
        self.count(record_kind::ABORT, result.is_ok());
        if let Err(e) = result {
            tracing::warn!(seq = pending.seq.0, error = %e, "could not journal an abort");
            self.orphans.add(pending.seq);
        }
    }

    fn count(&self, record: &'static str, ok: bool) {
        self.metrics.journal_records.with_label_values(&[record, if ok { "ok" } else { "error" }]).inc();
    }

    /// How long a capture waits for the vault before refusing (`vault.capture_timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The current version of a key as the journal knows it (tags applied), or `None` when
    /// the journal has no version or its last word is a delete.
    pub fn current(&self, bucket: &str, key: &str) -> Result<Option<ObjectVersion>, CaptureError> {
        Ok(self.journal.version_at(bucket, key, Seq::LATEST)?.map(|e| e.version))
    }
}

/// What an intent (or an observation) says of `op` on `bucket`/`key` and who asked.
fn intent(op: Op, bucket: &str, key: &str, actor: &Actor) -> Intent {
    Intent {
        op,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        access_key: actor.access_key.clone(),
        request_id: actor.request_id.clone(),
    }
}

/// An ETag without its quotes: the SDK keeps them, s3s strips them; the journal stores
/// the bare value.
pub fn plain_etag(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// An object of a ListObjectsV2 page: its key, ETag (without quotes) and size.
pub fn listed_object(o: &aws_sdk_s3::types::Object) -> Option<(String, String, u64)> {
    let size = o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    Some((o.key()?.to_owned(), plain_etag(o.e_tag().unwrap_or_default()).to_owned(), size))
}

/// A version record from a manifest and what the upstream said about the object.
pub fn version_of(manifest: Manifest, etag: &str, version_id: Option<&str>, meta: ObjectMeta) -> ObjectVersion {
    ObjectVersion {
        size: manifest.size,
        blake3: manifest.blake3,
        chunks: manifest.chunks,
        etag: etag.to_owned(),
        version_id: version_id.map(Into::into),
        headers: meta.headers,
        metadata: meta.metadata,
        tags: meta.tags,
        parts: Vec::new(),
        checksums: Vec::new(),
        modified_us: None,
    }
}
