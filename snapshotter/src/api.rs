//! What the admin API and the `rewind` CLI exchange, as JSON: the same shapes are printed
//! by `--json`, so scripts see exactly what the gateway answered.

use serde::{Deserialize, Serialize};

use crate::{At, Change, Entry, LogEntry};
use rewind_model::Effect;

/// One object as of some instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// The upstream's ETag when it was written.
    pub etag: String,
    /// BLAKE3 of the content, hex.
    pub blake3: String,
    /// The journal position of the last change that shaped it.
    pub seq: u64,
    /// When that change was journaled (RFC 3339, gateway clock).
    pub time: String,
    /// Content headers (content-type, cache-control, ...), lower-case names.
    pub headers: Vec<(String, String)>,
    /// User metadata, without the `x-amz-meta-` prefix.
    pub metadata: Vec<(String, String)>,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

impl From<&Entry> for ObjectInfo {
    fn from(e: &Entry) -> Self {
        Self {
            key: e.key.clone(),
            size: e.version.size,
            etag: e.version.etag.clone(),
            blake3: hex::encode(e.version.blake3),
            seq: e.seq.0,
            time: time_text(e.timestamp_us),
            headers: e.version.headers.clone(),
            metadata: e.version.metadata.clone(),
            tags: e.version.tags.clone(),
        }
    }
}

/// `ls`: a bucket (or prefix) as of an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The bucket.
    pub bucket: String,
    /// The prefix listed (empty: all).
    pub prefix: String,
    /// The journal position the instant resolved to.
    pub seq: u64,
    /// The objects, in key order.
    pub objects: Vec<ObjectInfo>,
}

/// `log`: one committed change of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Journal position.
    pub seq: u64,
    /// When (RFC 3339, gateway clock).
    pub time: String,
    /// The operation (`put`, `delete`, `restore`, ...).
    pub op: String,
    /// `version`, `deleted` or `tags`.
    pub effect: String,
    /// Size of the new version.
    pub size: Option<u64>,
    /// ETag of the new version.
    pub etag: Option<String>,
    /// The upstream's version id of the new version or delete marker (versioned buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The client access key that made it (empty for the gateway's own captures).
    pub access_key: String,
    /// The request id in the gateway's log.
    pub request_id: String,
}

impl From<&LogEntry> for LogLine {
    fn from(e: &LogEntry) -> Self {
        let (effect, size, etag, version_id) = match &e.effect {
            Effect::Version(v) => ("version", Some(v.size), Some(v.etag.clone()), v.version_id.clone()),
            Effect::Deleted { version_id } => ("deleted", None, None, version_id.clone()),
            Effect::Tags(_) => ("tags", None, None, None),
            Effect::Bucket => ("bucket", None, None, None),
        };
        Self {
            seq: e.seq.0,
            time: time_text(e.timestamp_us),
            op: e.op.name().to_owned(),
            effect: effect.to_owned(),
            size,
            etag,
            version_id,
            access_key: e.access_key.clone(),
            request_id: e.request_id.clone(),
        }
    }
}

/// `diff`: what changed between two instants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffReport {
    /// The earlier journal position.
    pub from_seq: u64,
    /// The later journal position.
    pub to_seq: u64,
    /// Keys that exist only at the later instant.
    pub added: Vec<ObjectInfo>,
    /// Keys whose content, headers, metadata or tags differ: (before, after).
    pub changed: Vec<(ObjectInfo, ObjectInfo)>,
    /// Keys that exist only at the earlier instant.
    pub deleted: Vec<ObjectInfo>,
}

impl DiffReport {
    /// Sorts `changes` into the report.
    pub fn new(from_seq: u64, to_seq: u64, changes: &[Change]) -> Self {
        let mut out = Self { from_seq, to_seq, ..Self::default() };
        for c in changes {
            match c {
                Change::Added(e) => out.added.push(e.into()),
                Change::Changed { from, to } => out.changed.push((from.as_ref().into(), to.as_ref().into())),
                Change::Deleted(e) => out.deleted.push(e.into()),
            }
        }
        out
    }
}

/// A named restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Its name.
    pub name: String,
    /// The journal position it names.
    pub seq: u64,
    /// The time of that position's record (RFC 3339).
    pub time: String,
    /// When the snapshot was made (RFC 3339).
    pub created: String,
}

/// A time-travel view: an access key pair that reads one bucket as it was at one
/// position, through the gateway's S3 endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewInfo {
    /// The access key id clients sign with.
    pub access_key_id: String,
    /// Its secret: in the answer that makes the view only (it is derived from the vault
    /// key, never stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// The gateway's S3 endpoint, when the answer comes from a running gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The bucket it shows.
    pub bucket: String,
    /// The journal position it shows the bucket at.
    pub seq: u64,
    /// The instant asked for (RFC 3339).
    pub at: String,
    /// The time of the last change at or before that position (RFC 3339).
    pub last_change: String,
    /// When it was made (RFC 3339).
    pub created: String,
    /// When it stops answering (RFC 3339).
    pub expires: String,
}

/// `status`: the state of the journal and the vault.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The newest record.
    pub head_seq: u64,
    /// Its time (RFC 3339; empty for an empty journal).
    pub head_time: String,
    /// The newest signed checkpoint.
    pub last_checkpoint_seq: Option<u64>,
    /// The newest record shipped to the vault: what a rebuild recovers up to.
    #[serde(default)]
    pub shipped_seq: u64,
    /// Intents with no outcome yet (start-up recovery resolves them).
    pub unresolved_intents: u64,
    /// Where the vault is.
    pub vault_location: String,
    /// Bytes of every version ever captured.
    pub logical_bytes: u64,
    /// Bytes the vault stores for them (compressed, deduplicated, encrypted chunks).
    pub stored_bytes: u64,
    /// Chunks the vault holds.
    pub chunks: u64,
    /// `logical_bytes / stored_bytes` (1.0 when the vault is empty).
    pub dedup_ratio: f64,
    /// Named snapshots.
    pub snapshots: u64,
    /// Every bucket with history.
    pub buckets: Vec<BucketStatus>,
}

/// One bucket in [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketStatus {
    /// Its name.
    pub name: String,
    /// Objects it holds now, as the journal knows.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Versions ever journaled (including deleted and overwritten ones).
    pub versions: u64,
}

/// `verify`: what was checked and what is damaged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Records walked along the hash chain.
    pub records: u64,
    /// Checkpoints checked (the journal's own, and those shipped to the vault).
    pub checkpoints: u64,
    /// Segments shipped to the vault, read back and compared with the journal.
    #[serde(default)]
    pub segments: u64,
    /// Versions whose chunks were checked.
    pub versions: u64,
    /// Distinct chunks checked for presence.
    pub chunks: u64,
    /// Of those, chunks read, decrypted and re-hashed.
    pub chunks_read: u64,
    /// Problems with the journal itself (chain, checkpoints, records).
    pub journal_problems: Vec<String>,
    /// Versions whose data is damaged or missing.
    pub damaged: Vec<Damage>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.journal_problems.is_empty() && self.damaged.is_empty()
    }
}

/// One damaged version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// Its bucket.
    pub bucket: String,
    /// Its key.
    pub key: String,
    /// The commit that wrote it.
    pub seq: u64,
    /// What is wrong (which chunk, which pack).
    pub problem: String,
}

/// How a restore treats keys that exist now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Only write keys that are missing now; touch nothing that exists.
    #[default]
    NonDestructive,
    /// Make the keys exactly as they were: write missing and changed keys, delete keys that
    /// did not exist at the instant.
    Rewind,
}

/// A restore into a bucket, as the CLI asks the gateway for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// The bucket whose history is read.
    pub bucket: String,
    /// The instant, as the operator wrote it.
    pub at: String,
    /// Only keys under this prefix.
    pub prefix: String,
    /// Only this key.
    pub key: Option<String>,
    /// Where to write (default: `bucket` itself).
    pub to_bucket: Option<String>,
    /// How to treat keys that exist now.
    pub mode: Mode,
    /// Only plan.
    pub dry_run: bool,
    /// Objects written at once.
    pub parallel: usize,
}

/// What a restore will do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// The journal position restored to.
    pub seq: u64,
    /// The bucket written.
    pub to_bucket: String,
    /// Objects to write.
    pub writes: u64,
    /// Their bytes.
    pub write_bytes: u64,
    /// Keys to delete (rewind mode).
    pub deletes: u64,
    /// Keys already as they were.
    pub unchanged: u64,
    /// Keys that differ but are left alone (non-destructive mode).
    pub kept: u64,
    /// The first keys of each kind, for the operator to look at.
    pub sample_writes: Vec<String>,
    /// The first keys to delete.
    pub sample_deletes: Vec<String>,
    /// The journal's head before the restore: restoring to it undoes the restore.
    #[serde(default)]
    pub before_seq: u64,
    /// An undo's keys that someone else changed after the actor did, left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<UndoConflict>,
}

/// A key an undo leaves alone: others changed it after the actor did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoConflict {
    /// The object key.
    pub key: String,
    /// Who changed it since (client access key ids, or the gateway's own work).
    pub others: Vec<String>,
}

/// `POST /undo`: revert what one client key changed in a window of time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoRequest {
    /// Undo what a tripwire incident names: its actor and bucket, from its first position
    /// (replaces `actor`, `bucket` and `since`).
    #[serde(default)]
    pub incident: Option<String>,
    /// The client access key id whose changes are undone.
    #[serde(default)]
    pub actor: String,
    /// The bucket.
    #[serde(default)]
    pub bucket: String,
    /// Only keys under this prefix.
    #[serde(default)]
    pub prefix: String,
    /// Changes after this instant...
    #[serde(default)]
    pub since: String,
    /// ...and at or before this one (default: now).
    #[serde(default)]
    pub until: Option<String>,
    /// Also revert keys others changed afterwards (their changes are lost).
    #[serde(default)]
    pub force: bool,
    /// Only plan.
    #[serde(default)]
    pub dry_run: bool,
    /// Objects written at once.
    #[serde(default)]
    pub parallel: usize,
}

/// One line of a restore's progress stream (newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum RestoreEvent {
    /// The plan, first.
    Plan(PlanSummary),
    /// Counts so far.
    Progress {
        /// Objects written or deleted.
        done: u64,
        /// Bytes written.
        bytes: u64,
        /// Objects that failed.
        failed: u64,
    },
    /// One object could not be restored.
    Failed {
        /// Its key.
        key: String,
        /// Why.
        error: String,
    },
    /// The end.
    Done {
        /// Objects written.
        written: u64,
        /// Keys deleted.
        deleted: u64,
        /// Objects that failed (re-run to retry them).
        failed: u64,
        /// Bytes written.
        bytes: u64,
        /// The journal head before the restore began: restoring to it undoes this one.
        before_seq: u64,
    },
}

/// What a reconcile has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileCounts {
    /// Objects listed upstream.
    pub listed: u64,
    /// Keys the journal already held as they are upstream.
    pub unchanged: u64,
    /// Versions captured (written before Rewind, or behind its back).
    pub captured: u64,
    /// Bytes of those versions.
    pub captured_bytes: u64,
    /// Keys found deleted behind the gateway's back.
    pub deleted: u64,
    /// Keys that could not be reconciled (the next pass retries them).
    pub failed: u64,
}

/// One line of a reconcile's progress stream (newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ReconcileEvent {
    /// Counts so far.
    Progress(ReconcileCounts),
    /// One key could not be reconciled.
    Failed {
        /// Its key.
        key: String,
        /// Why.
        error: String,
    },
    /// The pass itself stopped (listing the bucket or the journal failed); the next pass
    /// resumes after the last checkpointed page.
    Stopped {
        /// Why.
        error: String,
    },
    /// The end of the pass.
    Done(ReconcileCounts),
}

/// An error answer of the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong and what to do next.
    pub error: String,
}

/// RFC 3339 text of a gateway time in µs since the epoch.
pub fn time_text(us: i64) -> String {
    At::TimeUs(us).to_string()
}

/// `forget --dry-run`: what applying the retention policy now would expire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForgetPlan {
    /// The instant the policy was applied at (RFC 3339).
    pub at: String,
    /// Per bucket.
    pub buckets: Vec<ForgetBucket>,
}

/// What `rewind forget` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForgetReport {
    /// What the policy expired, per bucket (as the plan said).
    pub plan: ForgetPlan,
    /// Journal records removed (expired entries and their intents).
    pub records_removed: u64,
    /// The journal's horizon: every removed record is at or before it (0: none yet).
    pub horizon: u64,
    /// Whether a new base replaced the vault's segments up to the horizon.
    pub base_written: bool,
    /// Vault objects of the journal's copy (segments, bases, checkpoints) deleted.
    pub vault_objects_deleted: u64,
}

/// One bucket's part of a [`ForgetPlan`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForgetBucket {
    /// The bucket.
    pub bucket: String,
    /// Its policy, in words.
    pub policy: String,
    /// Journal positions the policy keeps restorable in it.
    pub kept_positions: u64,
    /// Object versions in its history.
    pub versions: u64,
    /// Of those, the versions no kept instant needs.
    pub versions_expired: u64,
    /// History entries (versions, deletes, tag changes) no kept instant needs.
    pub entries_expired: u64,
    /// Vault bytes only expired versions reference (shared chunks are counted once, and
    /// not at all when a kept version anywhere uses them).
    pub bytes_expired: u64,
}

/// A legal hold, as `rewind hold ls` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldInfo {
    /// The bucket.
    pub bucket: String,
    /// The prefix held (`""`: the whole bucket), when it holds a prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The key held, when it holds one key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Why.
    pub reason: String,
    /// When it was placed (RFC 3339).
    pub created: String,
}

impl From<&rewind_journal::segment::Hold> for HoldInfo {
    fn from(h: &rewind_journal::segment::Hold) -> Self {
        let (prefix, key) = if h.exact { (None, Some(h.scope.clone())) } else { (Some(h.scope.clone()), None) };
        Self { bucket: h.bucket.clone(), prefix, key, reason: h.reason.clone(), created: time_text(h.created_us) }
    }
}

/// `gc --dry-run`: what garbage collection would reclaim in the vault under the retention
/// policy (bytes are chunk envelopes as stored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcPlan {
    /// The instant the policy was applied at (RFC 3339).
    pub at: String,
    /// Pack objects in the vault.
    pub packs: u64,
    /// Packs no kept version or upload in progress needs: deleted once `gc_grace` passed.
    pub packs_dead: u64,
    /// What those hold.
    pub bytes_in_dead_packs: u64,
    /// Packs holding some dead chunks among live ones: to repack.
    pub packs_partly_dead: u64,
    /// The dead bytes in those.
    pub bytes_dead_in_live_packs: u64,
    /// Bytes of chunks kept versions or uploads in progress use.
    pub bytes_live: u64,
    /// Bytes of chunks only versions the policy expires use.
    pub bytes_expired: u64,
    /// Bytes of chunks no version references at all (uploads cut, refused or aborted).
    pub bytes_unreferenced: u64,
    /// Packs in the vault that the chunk index does not name (left by a crash before the
    /// index was written).
    pub packs_unindexed: u64,
}

/// How far the garbage collection pass running has got (`GET gc/progress`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcProgress {
    /// Whether a pass is running.
    pub running: bool,
    /// What it is doing: marking, repacking, waiting for writes in flight, deleting.
    pub phase: String,
    /// Packs done in this phase.
    pub done: u64,
    /// Packs this phase has to go through.
    pub total: u64,
}

/// What one garbage collection pass did (`rewind gc`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// When it ran (RFC 3339).
    pub at: String,
    /// Pack objects in the vault when it began.
    pub packs: u64,
    /// Packs newly found dead and condemned.
    pub packs_condemned: u64,
    /// What the indexed ones of those hold.
    pub bytes_condemned: u64,
    /// Condemned packs still within the grace period (or under Object Lock).
    pub packs_waiting: u64,
    /// Condemned packs that something needs again: no longer condemned.
    pub packs_rescued: u64,
    /// Packs whose live chunks were copied into new packs (then condemned).
    pub packs_repacked: u64,
    /// Bytes of live chunks copied.
    pub bytes_repacked: u64,
    /// Packs deleted.
    pub packs_deleted: u64,
    /// Chunk bytes those held.
    pub bytes_reclaimed: u64,
    /// Packs Object Lock kept: tried again after their retain-until date.
    pub packs_locked: u64,
    /// Packs that could not be read or deleted: tried again by the next pass.
    pub packs_failed: u64,
}
