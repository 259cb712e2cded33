//! Restoring one object: the same capture steps as a client's write (lock,
//! capture-before-destroy, intent, upstream write, commit), journaled as a restore, with
//! the bytes read from the vault and checked against the version's BLAKE3 before the
//! upstream is allowed to keep them.
//!
//! Capture-before-destroy without a HEAD per key: when a listing of the destination agrees
//! with the journal, the object is written on condition that the upstream still holds what
//! the listing showed (`If-None-Match: *` for an absent key, `If-Match` for a present one).
//! Anything written behind the gateway's back since then fails that condition, and is
//! captured before the write is made again.

use std::collections::HashMap;

use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use rewind_model::{Effect, ObjectVersion, Op};
use rewind_vault::Check;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sigv4::http_request::SignableBody;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Full, Limited};

use super::{Capture, CaptureError, answer_error, plain_etag, upstream_error};
use crate::Actor;
use crate::lean::{Call, LeanClient, element, unescape};
use crate::upstream::sdk_key;

/// What S3 reports for an object stored without a content type. The SDK would otherwise
/// send its own default, so a version recorded without one is restored with S3's.
const S3_DEFAULT_TYPE: &str = "binary/octet-stream";
/// Objects up to this size are written with one PutObject, held in memory whole.
pub const SINGLE_PUT_MAX: u64 = 16 << 20;
/// Part size for larger objects (S3 wants at least 5 MiB per part but the last).
const PART_SIZE: usize = 16 << 20;
/// The largest chunk: a part's buffer can overshoot the part size by one.
const MAX_CHUNK: usize = 8 << 20;

/// What a listing of the destination, made when the restore started, showed for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// Not there.
    Absent,
    /// There, with this ETag and size.
    Present(String, u64),
}

/// What restoring a key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The upstream now holds the version (or the key is deleted).
    Done,
    /// It already did; nothing was written.
    AlreadyThere,
}

fn tagging(tags: &[(String, String)]) -> Option<String> {
    (!tags.is_empty()).then(|| form_urlencoded::Serializer::new(String::new()).extend_pairs(tags).finish())
}

fn header<'a>(v: &'a ObjectVersion, name: &str) -> Option<&'a str> {
    v.headers.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
}

fn expires(v: &ObjectVersion) -> Option<DateTime> {
    DateTime::from_str(header(v, "expires")?, DateTimeFormat::HttpDate).ok()
}

fn metadata(v: &ObjectVersion) -> Option<HashMap<String, String>> {
    (!v.metadata.is_empty()).then(|| v.metadata.iter().cloned().collect())
}

/// The condition under which a write may skip capture-before-destroy: the listing agrees
/// with the journal, so the journal holds what the upstream has, as long as the upstream
/// still has what the listing showed. `None` when the listing does not agree (or there is
/// none): then capture-before-destroy runs first, as for any write.
fn unchanged_since_listing(current: Option<&ObjectVersion>, listed: Option<&Listed>) -> Option<Unchanged> {
    match (listed, current) {
        (Some(Listed::Absent), None) => Some(Unchanged::Absent),
        (Some(Listed::Present(etag, size)), Some(v)) if v.etag == *etag && v.size == *size && !etag.is_empty() => {
            Some(Unchanged::Etag(format!("\"{etag}\"")))
        }
        _ => None,
    }
}

/// What the upstream must still hold for a conditional write to go through.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unchanged {
    /// Nothing (`If-None-Match: *`).
    Absent,
    /// This ETag (`If-Match`).
    Etag(String),
}

/// Why an upload did not go through.
enum UploadError {
    /// The upstream no longer held what the condition named (412), or cannot evaluate
    /// conditions (501): capture what is there, then write unconditionally.
    Changed,
    /// Anything else.
    Failed(CaptureError),
}

impl From<CaptureError> for UploadError {
    fn from(e: CaptureError) -> Self {
        Self::Failed(e)
    }
}

fn upload_error<E>(e: SdkError<E, aws_smithy_runtime_api::http::Response>, conditional: bool) -> UploadError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    if conditional && condition_failed(status, e.as_service_error().and_then(ProvideErrorMetadata::code)) {
        return UploadError::Changed;
    }
    UploadError::Failed(upstream_error(e))
}

/// Whether a conditional write's error says the condition did not hold: the object changed
/// (412), or the upstream cannot write on condition (501; then the write is made again after
/// capture-before-destroy, unconditionally).
fn condition_failed(status: Option<u16>, code: Option<&str>) -> bool {
    matches!(status, Some(412 | 501)) || matches!(code, Some("PreconditionFailed" | "NotImplemented"))
}

/// The most of an error answer read to find its code and message.
const ERROR_BODY_MAX: usize = 64 * 1024;

/// A single PUT of `body`, `v`'s bytes, through the lean client, with `v`'s headers,
/// metadata and tags (what [`with_object_meta`] gives the SDK's), on the condition
/// `unchanged` sets. The body's SHA-256 is signed: the upstream checks the bytes it keeps.
/// Returns the new ETag and version id.
async fn put_lean(
    lean: &LeanClient,
    bucket: &str,
    key: &str,
    v: &ObjectVersion,
    body: bytes::Bytes,
    unchanged: Option<&Unchanged>,
) -> Result<(String, Option<String>), UploadError> {
    let mut headers = HeaderMap::new();
    let mut set = |name: &str, value: &str| -> Result<(), UploadError> {
        let (Ok(header), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) else {
            return Err(UploadError::Failed(CaptureError::upstream(format!(
                "the version's header or metadata {name:?} cannot be sent in a request"
            ))));
        };
        headers.append(header, value);
        Ok(())
    };
    set("content-length", &body.len().to_string())?;
    set("content-type", header(v, "content-type").unwrap_or(S3_DEFAULT_TYPE))?;
    for name in [
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "x-amz-website-redirect-location",
    ] {
        if let Some(value) = header(v, name) {
            set(name, value)?;
        }
    }
    if let Some(expires) = expires(v).and_then(|t| t.fmt(DateTimeFormat::HttpDate).ok()) {
        set("expires", &expires)?;
    }
    for (name, value) in &v.metadata {
        set(&format!("x-amz-meta-{name}"), value)?;
    }
    if let Some(tags) = tagging(&v.tags) {
        set("x-amz-tagging", &tags)?;
    }
    match unchanged {
        Some(Unchanged::Absent) => set("if-none-match", "*")?,
        Some(Unchanged::Etag(etag)) => set("if-match", etag)?,
        None => {}
    }
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let call = Call {
        method: &Method::PUT,
        bucket,
        key,
        query: "",
        headers,
        body: Full::new(body).map_err(|never| match never {}).boxed_unsync(),
        signed_as: SignableBody::Precomputed(sha256),
        anonymous: false,
    };
    let response = lean.send(call).await.map_err(|e| {
        UploadError::Failed(CaptureError::Upstream { detail: e.to_string(), source: Some(Box::new(e)) })
    })?;
    let (parts, answer) = response.into_parts();
    let read = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if parts.status.is_success() {
        let etag = plain_etag(read("etag").unwrap_or_default()).to_owned();
        return Ok((etag, read("x-amz-version-id").map(Into::into)));
    }
    let document = Limited::new(answer, ERROR_BODY_MAX).collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let document = std::str::from_utf8(&document).unwrap_or_default();
    let (code, message) = (element(document, "Code"), element(document, "Message").map(|m| unescape(&m)));
    let status = parts.status.as_u16();
    if unchanged.is_some() && condition_failed(Some(status), code.as_deref()) {
        return Err(UploadError::Changed);
    }
    Err(UploadError::Failed(answer_error(status, code.as_deref(), message.as_deref())))
}

/// Sets a version's content headers, user metadata and tags on a PutObject or
/// CreateMultipartUpload builder (the two SDK builders share these setters, not a type).
macro_rules! with_object_meta {
    ($builder:expr, $v:expr) => {{
        let v = $v;
        $builder
            .set_cache_control(header(v, "cache-control").map(Into::into))
            .set_content_disposition(header(v, "content-disposition").map(Into::into))
            .set_content_encoding(header(v, "content-encoding").map(Into::into))
            .set_content_language(header(v, "content-language").map(Into::into))
            .content_type(header(v, "content-type").unwrap_or(S3_DEFAULT_TYPE))
            .set_expires(expires(v))
            .set_website_redirect_location(header(v, "x-amz-website-redirect-location").map(Into::into))
            .set_metadata(metadata(v))
            .set_tagging(tagging(&v.tags))
    }};
}

fn mismatch() -> CaptureError {
    CaptureError::Vault(rewind_vault::VaultError::Corrupt {
        what: "restored object".into(),
        detail: "its bytes read from the vault do not match the journaled BLAKE3; run `rewind verify --read-data`"
            .into(),
    })
}

impl Capture {
    /// Writes `version` to `bucket`/`key` in the upstream, journaled as a restore.
    ///
    /// `listed` is what a listing of the destination showed when the restore started: when
    /// it agrees with the journal, the journal holds what the upstream has and the per-key
    /// HEAD of capture-before-destroy is skipped (one LIST per 1,000 keys instead of a HEAD
    /// per key). When it disagrees, or is absent, the HEAD decides as for any write.
    pub async fn restore_version(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
        listed: Option<&Listed>,
        actor: &Actor,
    ) -> Result<Restored, CaptureError> {
        let _lock = self.lock(bucket, key).await?;
        let current = self.current(bucket, key)?;
        // Under the lock: a concurrent or earlier run may have restored it already, if the
        // upstream still holds it (the listing, else a HEAD, says so: an object deleted
        // behind the gateway's back is not "already there", review F6).
        if let Some(now) = current.as_ref().filter(|now| now.same_object(version)) {
            let held = match listed {
                Some(listed) => unchanged_since_listing(Some(now), Some(listed)).is_some(),
                None => self.head(bucket, key, None).await?.is_some_and(|h| h.etag == now.etag && h.size == now.size),
            };
            if held {
                return Ok(Restored::AlreadyThere);
            }
        }
        // Large objects go up in parts, whose completion is not made conditional here.
        let mut unchanged =
            unchanged_since_listing(current.as_ref(), listed).filter(|_| version.size <= SINGLE_PUT_MAX);
        if unchanged.is_none() {
            self.protect_current(bucket, key, None, actor).await?;
        }
        loop {
            let pending = self.begin(Op::Restore, bucket, key, actor).await?;
            match self.upload_version(bucket, key, version, unchanged.as_ref()).await {
                Ok((etag, version_id, parts)) => {
                    // A new object upstream: no checksum (the upload carried none), and the
                    // commit's time is its Last-Modified.
                    let restored = ObjectVersion {
                        etag,
                        version_id,
                        parts,
                        checksums: Vec::new(),
                        modified_us: None,
                        ..version.clone()
                    };
                    self.commit(pending, Effect::Version(restored)).await?;
                    return Ok(Restored::Done);
                }
                Err(UploadError::Changed) => {
                    self.abort(pending, "restore: the destination changed since it was listed").await;
                    // Written behind the gateway's back since the listing: captured first.
                    self.protect_current(bucket, key, None, actor).await?;
                    unchanged = None;
                }
                Err(UploadError::Failed(e)) => {
                    self.abort(pending, "restore: writing the object upstream failed").await;
                    return Err(e);
                }
            }
        }
    }

    /// Deletes `bucket`/`key` upstream, journaled as a restore's delete. S3 has no
    /// conditional delete for general-purpose buckets, so the HEAD of capture-before-destroy
    /// always runs first, whatever a listing showed.
    pub async fn restore_delete(&self, bucket: &str, key: &str, actor: &Actor) -> Result<Restored, CaptureError> {
        let _lock = self.lock(bucket, key).await?;
        let current = self.current(bucket, key)?;
        if current.is_none() {
            return Ok(Restored::AlreadyThere);
        }
        self.protect_current(bucket, key, None, actor).await?;
        let pending = self.begin(Op::RestoreDelete, bucket, key, actor).await?;
        match self.upstream.delete_object().bucket(bucket).key(sdk_key(key)).send().await {
            Ok(out) => {
                let version_id = out.version_id().map(Into::into);
                self.commit(pending, Effect::Deleted { version_id }).await?;
                Ok(Restored::Done)
            }
            Err(e) => {
                self.abort(pending, "restore: deleting the object upstream failed").await;
                Err(upstream_error(e))
            }
        }
    }

    /// Uploads `version`'s bytes with its headers, metadata and tags; returns the new ETag,
    /// version id and part sizes (none for a single PUT). The bytes are checked against
    /// the version before the upload is allowed to complete.
    async fn upload_version(
        &self,
        bucket: &str,
        key: &str,
        v: &ObjectVersion,
        unchanged: Option<&Unchanged>,
    ) -> Result<(String, Option<String>, Vec<u64>), UploadError> {
        // What this object holds while it goes up, from the restores' share of the memory
        // budget: however many objects run at once, they hold no more than the share
        // (review R13: `--parallel 64` of 16 MiB objects held about 2 GiB).
        // A single PUT holds its chunks and their concatenation; a multipart upload a part
        // (which can overshoot by a chunk) and the chunk being read.
        let holds = if v.size <= SINGLE_PUT_MAX { 2 * v.size as usize } else { PART_SIZE + 2 * MAX_CHUNK };
        let _held = self.vault.budget().restores.acquire(holds).await;
        if v.size <= SINGLE_PUT_MAX {
            // Each chunk's envelope is authenticated; the whole object's BLAKE3 checks content.
            let mut chunks = Vec::with_capacity(v.chunks.len());
            for id in &v.chunks {
                chunks.push(self.vault.read_chunk_checked(id, Check::Envelope).await.map_err(CaptureError::from)?);
            }
            // A one-chunk object goes up from the buffer it was decrypted in.
            let body = if chunks.len() == 1 { chunks.remove(0) } else { bytes::Bytes::from(chunks.concat()) };
            if body.len() as u64 != v.size || *blake3::hash(&body).as_bytes() != v.blake3 {
                return Err(mismatch().into());
            }
            if let Some(lean) = &self.lean {
                let (etag, version_id) = put_lean(lean, bucket, key, v, body, unchanged).await?;
                return Ok((etag, version_id, Vec::new()));
            }
            let put = self.upstream.put_object().bucket(bucket).key(sdk_key(key)).body(ByteStream::from(body));
            let put = match unchanged {
                Some(Unchanged::Absent) => put.if_none_match("*"),
                Some(Unchanged::Etag(etag)) => put.if_match(etag),
                None => put,
            };
            let out = with_object_meta!(put, v).send().await.map_err(|e| upload_error(e, unchanged.is_some()))?;
            let etag = plain_etag(out.e_tag().unwrap_or_default()).to_owned();
            return Ok((etag, out.version_id().map(Into::into), Vec::new()));
        }
        let create = self.upstream.create_multipart_upload().bucket(bucket).key(sdk_key(key));
        let created = with_object_meta!(create, v).send().await.map_err(upstream_error)?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let result = self.upload_parts(bucket, key, &upload_id, v).await.map_err(UploadError::Failed);
        if result.is_err() {
            let abort = self.upstream.abort_multipart_upload().bucket(bucket).key(sdk_key(key)).upload_id(&upload_id);
            if let Err(e) = abort.send().await {
                tracing::warn!(bucket, error = %upstream_error(e), "could not abort a failed restore's multipart upload");
            }
        }
        result
    }

    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        v: &ObjectVersion,
    ) -> Result<(String, Option<String>, Vec<u64>), CaptureError> {
        let mut hasher = blake3::Hasher::new();
        let (mut size, mut parts, mut buf) = (0u64, Vec::new(), Vec::with_capacity(PART_SIZE + MAX_CHUNK));
        let mut sizes = Vec::new();
        let mut chunks = v.chunks.iter().peekable();
        while let Some(id) = chunks.next() {
            let chunk = self.vault.read_chunk_checked(id, Check::Envelope).await?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            buf.extend_from_slice(&chunk);
            let last = chunks.peek().is_none();
            if buf.len() < PART_SIZE && !last {
                continue;
            }
            // The last part goes up only once the whole object is known to be right.
            if last && (size != v.size || *hasher.finalize().as_bytes() != v.blake3) {
                return Err(mismatch());
            }
            let number = i32::try_from(parts.len() + 1).expect("invariant: far fewer than 2^31 parts");
            sizes.push(buf.len() as u64);
            let out = self
                .upstream
                .upload_part()
                .bucket(bucket)
                .key(sdk_key(key))
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(std::mem::take(&mut buf)))
                .send()
                .await
                .map_err(upstream_error)?;
            parts.push(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag().map(Into::into)).build());
        }
        let out = self
            .upstream
            .complete_multipart_upload()
            .bucket(bucket)
            .key(sdk_key(key))
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(upstream_error)?;
        Ok((plain_etag(out.e_tag().unwrap_or_default()).to_owned(), out.version_id().map(Into::into), sizes))
    }
}
