//! Capture-before-destroy (G2): what the upstream holds under a key, read back and stored
//! in the vault and the journal before a mutation may replace it.

use rewind_model::{Body, Commit, Effect, LogKey, ObjectVersion, Op};
use rewind_vault::Manifest;

use aws_sigv4::http_request::SignableBody;
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Empty};
use percent_encoding::utf8_percent_encode;

use crate::error::{absent_or_error, is_absent, is_bare_bad_request};
use crate::lean::{Call, LeanClient, SEGMENT};
use crate::upstream::sdk_key;
use crate::{Actor, Capture, CaptureError, ObjectMeta, TeeError, plain_etag, upstream_error, version_of};

/// What capture-before-destroy found under a key.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    /// The upstream held a version the journal lacked, and it is captured now.
    pub captured: bool,
    /// The version a mutation of the key replaces (`None`: the key does not exist).
    pub replaced: Option<ObjectVersion>,
}

/// What the upstream holds under a key now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamHead {
    /// Its ETag.
    pub etag: String,
    /// Its size.
    pub size: u64,
    /// Its version id, if the bucket versions.
    pub version_id: Option<String>,
}

impl UpstreamHead {
    /// From an answer's ETag, Content-Length and version id headers.
    fn of(etag: Option<&str>, length: Option<i64>, version_id: Option<&str>) -> Self {
        Self {
            etag: plain_etag(etag.unwrap_or_default()).to_owned(),
            size: length.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            version_id: version_id.map(Into::into),
        }
    }
}

impl Capture {
    /// What the upstream holds under `bucket`/`key` (a specific version when given), or
    /// `None` when nothing (or no such bucket).
    pub async fn head(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<UpstreamHead>, CaptureError> {
        if let Some(lean) = &self.lean
            && let Some(known) = lean_head(lean, bucket, key, version_id).await
        {
            return Ok(known);
        }
        let result = self
            .upstream
            .head_object()
            .bucket(bucket)
            .key(sdk_key(key))
            .set_version_id(version_id.map(Into::into))
            .send()
            .await;
        match result {
            Ok(o) => Ok(Some(UpstreamHead::of(o.e_tag(), o.content_length(), o.version_id()))),
            Err(e) if is_null_version(version_id) && !is_absent(&e) => {
                let current = Box::pin(self.head(bucket, key, None)).await?;
                Ok(current.filter(|h| h.version_id.as_deref().is_none_or(|v| v == NULL_VERSION)))
            }
            Err(e) if version_id.is_some() && is_bare_bad_request(&e) => {
                self.head_by_get(bucket, key, version_id).await
            }
            Err(e) => absent_or_error(e),
        }
    }

    /// [`Capture::head`] by a GET, for a HEAD answered with a bare 400: a GET's error
    /// carries a code that says whether the version is absent. Its body is left unread.
    async fn head_by_get(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<UpstreamHead>, CaptureError> {
        let get = self.upstream.get_object().bucket(bucket).key(sdk_key(key));
        match get.set_version_id(version_id.map(Into::into)).send().await {
            Ok(o) => Ok(Some(UpstreamHead::of(o.e_tag(), o.content_length(), o.version_id()))),
            Err(e) => absent_or_error(e),
        }
    }

    /// G2: if the upstream's current version of `bucket`/`key` (or `version_id`) is not in
    /// the journal, captures it from the upstream first. Called under the key's lock.
    /// Returns whether it captured a version.
    pub async fn protect_current(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        actor: &Actor,
    ) -> Result<bool, CaptureError> {
        Ok(self.protect(bucket, key, version_id, actor).await?.captured)
    }

    /// [`Capture::protect_current`], also saying which version the mutation replaces.
    pub async fn protect(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        actor: &Actor,
    ) -> Result<Protected, CaptureError> {
        let Some(head) = self.head(bucket, key, version_id).await? else { return Ok(Protected::default()) };
        let current = self.current(bucket, key)?;
        if let Some(v) = current.filter(|v| v.etag == head.etag && v.size == head.size) {
            return Ok(Protected { captured: false, replaced: Some(v) });
        }
        if head.version_id.is_some()
            && let Some(v) = self.journaled_version(bucket, key, &head)?
        {
            return Ok(Protected { captured: false, replaced: Some(v) });
        }
        let replaced = self.capture_existing_version(bucket, key, &head, actor).await?;
        Ok(Protected { captured: replaced.is_some(), replaced })
    }

    /// Captures the upstream version `head` describes as a version the journal lacked;
    /// returns its size, or `None` when it vanished meanwhile. Called under the key's lock.
    pub async fn capture_existing(
        &self,
        bucket: &str,
        key: &str,
        head: &UpstreamHead,
        actor: &Actor,
    ) -> Result<Option<u64>, CaptureError> {
        Ok(self.capture_existing_version(bucket, key, head, actor).await?.map(|v| v.size))
    }

    /// [`Capture::capture_existing`], returning the version captured.
    async fn capture_existing_version(
        &self,
        bucket: &str,
        key: &str,
        head: &UpstreamHead,
        actor: &Actor,
    ) -> Result<Option<ObjectVersion>, CaptureError> {
        let _writes = self.vault.enter_write();
        let Some(v) = self.capture_upstream(bucket, key, head.version_id.as_deref()).await? else { return Ok(None) };
        let size = v.size;
        self.observe(Op::CaptureExisting, bucket, key, actor, Effect::Version(v.clone())).await?;
        // Before a client's write destroyed it: worth a line each (imports count theirs).
        tracing::info!(bucket, key = %LogKey(key), size, "captured a version the journal lacked (written before Rewind or behind its back)");
        Ok(Some(v))
    }

    /// The newest journaled version with `head`'s version id and ETag (versioned buckets).
    pub fn journaled_version(
        &self,
        bucket: &str,
        key: &str,
        head: &UpstreamHead,
    ) -> Result<Option<ObjectVersion>, CaptureError> {
        Ok(self.journal.history(bucket, key)?.into_iter().rev().find_map(|r| match r.body {
            Body::Commit(Commit { effect: Effect::Version(v), .. })
                if v.version_id == head.version_id && v.etag == head.etag =>
            {
                Some(v)
            }
            _ => None,
        }))
    }

    /// Reads an object from the upstream into the vault: its bytes, headers, metadata and
    /// tags. `None` when it does not exist. The caller holds a write guard
    /// ([`Vault::enter_write`]) until the version is journaled.
    pub async fn capture_upstream(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ObjectVersion>, CaptureError> {
        self.read_upstream(bucket, key, version_id, true).await
    }

    /// [`Capture::capture_upstream`], leaving the object's last chunks in the vault's open
    /// pack unless `durable`.
    pub(crate) async fn read_upstream(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        durable: bool,
    ) -> Result<Option<ObjectVersion>, CaptureError> {
        let result = self
            .upstream
            .get_object()
            .bucket(bucket)
            .key(sdk_key(key))
            .set_version_id(version_id.map(Into::into))
            .send()
            .await;
        let mut out = match result {
            Ok(o) => o,
            Err(e) if is_null_version(version_id) && !is_absent(&e) => {
                // The null version of a bucket that never versioned is its current object.
                if self.head(bucket, key, version_id).await?.is_none() {
                    return Ok(None);
                }
                return Box::pin(self.read_upstream(bucket, key, None, durable)).await;
            }
            Err(e) => return absent_or_error(e),
        };
        let mut meta = ObjectMeta::from_get(&out);
        if out.tag_count().unwrap_or(0) > 0 {
            meta.tags = self.upstream_tags(bucket, key, out.version_id()).await?;
        }
        let body = std::mem::take(&mut out.body);
        let size = out.content_length().and_then(|n| u64::try_from(n).ok());
        let manifest = self.store(body, size, durable).await?;
        let mut version = version_of(manifest, plain_etag(out.e_tag().unwrap_or_default()), out.version_id(), meta);
        version.modified_us = out.last_modified().map(|t| t.secs() * 1_000_000 + i64::from(t.subsec_nanos() / 1000));
        Ok(Some(version))
    }

    async fn upstream_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Vec<(String, String)>, CaptureError> {
        let tags = self
            .upstream
            .get_object_tagging()
            .bucket(bucket)
            .key(sdk_key(key))
            .set_version_id(version_id.map(Into::into))
            .send()
            .await
            .map_err(upstream_error)?;
        let mut out: Vec<(String, String)> =
            tags.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
        out.sort();
        Ok(out)
    }

    /// Stores a byte stream read from the upstream into the vault.
    pub async fn store_stream(
        &self,
        body: aws_sdk_s3::primitives::ByteStream,
        size: Option<u64>,
    ) -> Result<Manifest, CaptureError> {
        self.store(body, size, true).await
    }

    async fn store(
        &self,
        mut body: aws_sdk_s3::primitives::ByteStream,
        size: Option<u64>,
        durable: bool,
    ) -> Result<Manifest, CaptureError> {
        let mut writer = self.vault.writer_sized(size);
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| CaptureError::Upstream {
                detail: "the upstream's body broke off".into(),
                source: Some(Box::new(e)),
            })?;
            tokio::time::timeout(self.timeout, writer.push(&piece)).await.map_err(|_| TeeError::Slow)??;
        }
        let finish = async { if durable { writer.finish().await } else { writer.finish_unsynced().await } };
        Ok(tokio::time::timeout(self.timeout, finish).await.map_err(|_| TeeError::Slow)??)
    }
}

/// A reconcile's capture, at DEBUG: an import of a million objects is counted by its
/// pass's summary, not a million INFO lines.
pub(crate) fn log_captured(bucket: &str, key: &str, size: u64) {
    tracing::debug!(bucket, key = %LogKey(key), size, "captured a version the journal lacked (written before Rewind or behind its back)");
}

/// The version id S3 gives objects written while a bucket did not version.
const NULL_VERSION: &str = "null";

/// Whether `version_id` names the null version. S3 accepts `versionId=null` on any bucket,
/// meaning the object written while versioning was off; some stores (moto) refuse it on a
/// bucket that never versioned, where it is simply the current object. Tools that empty a
/// bucket send it (boto3's `object_versions.delete()`, the s3-tests suite).
/// A HEAD through the lean client, for the answers whose meaning is plain: the object
/// (2xx), or nothing there (404, or 405 for a delete marker). `None` for any other answer
/// or failure: the SDK's HEAD then asks again and tells what it means (a moto's bare 400, a
/// refusal, an unreachable upstream), so both clients judge every answer alike.
async fn lean_head(
    lean: &LeanClient,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Option<Option<UpstreamHead>> {
    let query = version_id.map(|v| format!("versionId={}", utf8_percent_encode(v, SEGMENT))).unwrap_or_default();
    let call = Call {
        method: &Method::HEAD,
        bucket,
        key,
        query: &query,
        headers: HeaderMap::new(),
        body: Empty::new().map_err(|never| match never {}).boxed_unsync(),
        signed_as: SignableBody::Bytes(b""),
        anonymous: false,
    };
    let answer = lean.send(call).await.ok()?;
    let read = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok());
    match answer.status().as_u16() {
        200..=299 => Some(Some(UpstreamHead::of(
            read("etag"),
            read("content-length").and_then(|n| n.parse().ok()),
            read("x-amz-version-id"),
        ))),
        404 => Some(None),
        405 if read("x-amz-delete-marker") == Some("true") => Some(None),
        _ => None,
    }
}

fn is_null_version(version_id: Option<&str>) -> bool {
    version_id == Some(NULL_VERSION)
}
