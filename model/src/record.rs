//! What the journal records: positions, operations, intents, versions and their effects.
//! Their versioned binary encoding is in `codec.rs`.

use crate::ChunkId;

/// A journal sequence number: the position of a record in the one global order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl Seq {
    /// Past every record: "as of now" in point-in-time reads.
    pub const LATEST: Seq = Seq(u64::MAX);
}

/// The mutations the journal distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// PutObject.
    Put,
    /// CopyObject.
    Copy,
    /// CompleteMultipartUpload.
    CompleteMultipart,
    /// DeleteObject, or one key of DeleteObjects.
    Delete,
    /// PutObjectTagging.
    PutTagging,
    /// DeleteObjectTagging.
    DeleteTagging,
    /// CreateBucket.
    CreateBucket,
    /// DeleteBucket.
    DeleteBucket,
    /// A version found upstream that the journal lacked (before install, or behind the
    /// gateway's back), captured before it could be destroyed.
    CaptureExisting,
    /// A bucket configuration that can remove data (lifecycle expiration, replication of
    /// deletes), applied because the operator allowed it.
    BucketConfig,
    /// A version written back by `rewind restore`.
    Restore,
    /// A key deleted by `rewind restore --mode rewind` (it did not exist at the instant
    /// restored to).
    RestoreDelete,
    /// A key found deleted upstream without a journaled delete (behind the gateway's back).
    Vanished,
}

impl Op {
    pub(crate) const ALL: [Self; 13] = [
        Self::Put,
        Self::Copy,
        Self::CompleteMultipart,
        Self::Delete,
        Self::PutTagging,
        Self::DeleteTagging,
        Self::CreateBucket,
        Self::DeleteBucket,
        Self::CaptureExisting,
        Self::BucketConfig,
        Self::Restore,
        Self::RestoreDelete,
        Self::Vanished,
    ];

    /// A short lower-case name for logs and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Copy => "copy",
            Self::CompleteMultipart => "multipart",
            Self::Delete => "delete",
            Self::PutTagging => "put-tagging",
            Self::DeleteTagging => "delete-tagging",
            Self::CreateBucket => "create-bucket",
            Self::DeleteBucket => "delete-bucket",
            Self::CaptureExisting => "capture-existing",
            Self::BucketConfig => "bucket-config",
            Self::Restore => "restore",
            Self::RestoreDelete => "restore-delete",
            Self::Vanished => "vanished",
        }
    }

    pub(crate) fn code(self) -> u8 {
        Self::ALL.iter().position(|o| *o == self).expect("invariant: ALL lists every op") as u8 + 1
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

/// A mutation about to be applied upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// What kind.
    pub op: Op,
    /// The bucket.
    pub bucket: String,
    /// The object key (empty for bucket operations).
    pub key: String,
    /// The client's access key id.
    pub access_key: String,
    /// The gateway's request id, to match log lines.
    pub request_id: String,
}

/// One stored version of an object: everything needed to restore it byte-exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the whole object.
    pub blake3: [u8; 32],
    /// Its chunks in order.
    pub chunks: Vec<ChunkId>,
    /// The upstream's ETag.
    pub etag: String,
    /// The upstream's version id, if it versions.
    pub version_id: Option<String>,
    /// Content headers (content-type, cache-control, …), names lower-case.
    pub headers: Vec<(String, String)>,
    /// User metadata (x-amz-meta-*), without the prefix.
    pub metadata: Vec<(String, String)>,
    /// Object tags.
    pub tags: Vec<(String, String)>,
    /// The sizes of the parts a multipart upload made it of, in order (empty: uploaded in
    /// one piece, or its parts are not known, as for a version read back from the
    /// upstream). What `partNumber` reads need.
    pub parts: Vec<u64>,
    /// The upstream's checksums of the object, as S3 names them without the prefix
    /// (`crc32`, `crc32c`, `crc64nvme`, `sha1`, `sha256`, and `type`: `FULL_OBJECT` or
    /// `COMPOSITE`), base64 as S3 sends them; empty when the upstream gave none.
    pub checksums: Vec<(String, String)>,
    /// The upstream's Last-Modified (µs since the epoch) when the version was read back
    /// from the upstream (found there, or captured before it was destroyed); `None` for a
    /// write through the gateway, whose commit time stands for it.
    pub modified_us: Option<i64>,
}

impl ObjectVersion {
    /// A version of content alone: no version id, headers, metadata, tags, part sizes,
    /// checksums or upstream Last-Modified.
    pub fn of_content(size: u64, blake3: [u8; 32], chunks: Vec<ChunkId>, etag: impl Into<String>) -> Self {
        Self {
            size,
            blake3,
            chunks,
            etag: etag.into(),
            version_id: None,
            headers: Vec::new(),
            metadata: Vec::new(),
            tags: Vec::new(),
            parts: Vec::new(),
            checksums: Vec::new(),
            modified_us: None,
        }
    }

    /// Whether `other` restores to the same object: content, headers, metadata and tags
    /// (ETags and version ids are the upstream's, and differ after a rewrite).
    pub fn same_object(&self, other: &Self) -> bool {
        self.size == other.size
            && self.blake3 == other.blake3
            && self.headers == other.headers
            && self.metadata == other.metadata
            && self.tags == other.tags
    }
}

/// What a committed mutation did.
#[derive(Debug, Clone, PartialEq, Eq)]
// Most effects are versions, decoded one record at a time: boxing would add an
// allocation to nearly every record and save no memory.
#[allow(clippy::large_enum_variant)]
pub enum Effect {
    /// A new current version.
    Version(ObjectVersion),
    /// The key was deleted (a delete marker on versioned buckets).
    Deleted {
        /// The upstream version id of the delete marker, if any.
        version_id: Option<String>,
    },
    /// The current version's tags changed.
    Tags(Vec<(String, String)>),
    /// A bucket was created or deleted.
    Bucket,
}

/// A mutation that succeeded upstream and whose data is durable in the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The intent it completes.
    pub intent: Seq,
    /// The bucket (repeated from the intent so indexes need no second lookup).
    pub bucket: String,
    /// The key.
    pub key: String,
    /// What changed.
    pub effect: Effect,
}

/// A mutation that did not happen (or whose capture failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    /// The intent it ends.
    pub intent: Seq,
    /// Why, for operators.
    pub reason: String,
}

/// A change found upstream rather than made through the gateway (a version captured
/// from the upstream, a key found gone): one record, as nothing was applied upstream that
/// recovery would have to resolve. It carries its intent's fields and its commit's effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// What was found, and who looked (op, bucket, key, access key, request id).
    pub intent: Intent,
    /// What it changed in the journal's view.
    pub effect: Effect,
}

/// A record body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// See [`Intent`].
    Intent(Intent),
    /// See [`Commit`].
    Commit(Commit),
    /// See [`Abort`].
    Abort(Abort),
    /// See [`Observed`].
    Observed(Observed),
}

/// A change to an object or bucket, as a commit or an observation records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    /// The bucket.
    pub bucket: String,
    /// The key (empty for bucket operations).
    pub key: String,
    /// What changed.
    pub effect: Effect,
}

impl Body {
    /// The change this record makes to the journal's view of the bucket: commits and
    /// observations make one; intents and aborts none.
    pub fn into_change(self) -> Option<ObjectChange> {
        match self {
            Self::Commit(Commit { bucket, key, effect, .. }) => Some(ObjectChange { bucket, key, effect }),
            Self::Observed(Observed { intent: Intent { bucket, key, .. }, effect }) => {
                Some(ObjectChange { bucket, key, effect })
            }
            Self::Intent(_) | Self::Abort(_) => None,
        }
    }

    /// [`Body::into_change`] by reference: the bucket, key and effect.
    pub fn change(&self) -> Option<(&str, &str, &Effect)> {
        match self {
            Self::Commit(c) => Some((&c.bucket, &c.key, &c.effect)),
            Self::Observed(o) => Some((&o.intent.bucket, &o.intent.key, &o.effect)),
            Self::Intent(_) | Self::Abort(_) => None,
        }
    }
}

/// Why bytes are not a valid body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed record body: {0}")]
pub struct DecodeError(pub String);
