//! A vault in an S3 bucket (any S3-compatible store), under an optional prefix, with
//! credentials separate from the gateway's upstream. Objects are created with
//! `If-None-Match: *` where the store honours it, after a HEAD that catches existing names
//! on stores that do not; names are content hashes or unique, so the remaining race only
//! ever writes identical bytes.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::VaultError;
use crate::backend::{Backend, check_name};

/// A vault in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Backend {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    lock: Option<(ObjectLockMode, std::time::Duration)>,
}

/// S3 Object Lock retention modes.
pub use aws_sdk_s3::types::ObjectLockMode;

impl S3Backend {
    /// A vault in `bucket` under `prefix` (empty, or ending in `/`), reached with `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        let mut prefix = prefix.into();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { client, bucket: bucket.into(), prefix, lock: None }
    }

    /// Writes every object with a retention date `retention` from its creation, in `mode`.
    pub fn with_object_lock(mut self, mode: ObjectLockMode, retention: std::time::Duration) -> Self {
        self.lock = Some((mode, retention));
        self
    }

    /// Whether the bucket has Object Lock enabled.
    pub async fn bucket_has_object_lock(&self) -> Result<bool, VaultError> {
        match self.client.get_object_lock_configuration().bucket(&self.bucket).send().await {
            Ok(out) => Ok(out
                .object_lock_configuration()
                .and_then(|c| c.object_lock_enabled())
                .is_some_and(|e| *e == aws_sdk_s3::types::ObjectLockEnabled::Enabled)),
            // Not configured, or a store without Object Lock at all.
            Err(e) if matches!(e.code(), Some("ObjectLockConfigurationNotFoundError" | "NotImplemented")) => Ok(false),
            Err(e) => Err(sdk_error("the bucket's Object Lock configuration", e)),
        }
    }

    fn key(&self, name: &str) -> Result<String, VaultError> {
        check_name(name)?;
        Ok(format!("{}{name}", self.prefix))
    }
}

/// Maps an SDK failure: missing objects are `NotFound`; everything else is I/O, with the
/// S3 code and message kept for the operator.
fn sdk_error<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    name: &str,
    e: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> VaultError {
    let status = e.raw_response().map(|r| r.status().as_u16());
    if status == Some(404) || matches!(e.code(), Some("NoSuchKey" | "NotFound")) {
        return VaultError::NotFound { name: name.to_owned() };
    }
    if status == Some(412) {
        return VaultError::AlreadyExists { name: name.to_owned() };
    }
    let detail = format!("{}: {}", e.code().unwrap_or("no code"), aws_sdk_s3::error::DisplayErrorContext(&e));
    VaultError::Io(std::io::Error::other(detail))
}

#[async_trait::async_trait]
impl Backend for S3Backend {
    async fn put(&self, name: &str, data: Bytes) -> Result<(), VaultError> {
        let key = self.key(name)?;
        if self.exists(name).await? {
            return Err(VaultError::AlreadyExists { name: name.to_owned() });
        }
        let mut put = self.client.put_object().bucket(&self.bucket).key(key).if_none_match("*");
        if let Some((mode, retention)) = &self.lock {
            let until = aws_sdk_s3::primitives::DateTime::from(std::time::SystemTime::now() + *retention);
            put = put
                .object_lock_mode(mode.clone())
                .object_lock_retain_until_date(until)
                // S3 wants an integrity checksum on writes that set a retention.
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32);
        }
        put.body(ByteStream::from(data)).send().await.map_err(|e| sdk_error(name, e))?;
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Bytes, VaultError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(name)?)
            .send()
            .await
            .map_err(|e| sdk_error(name, e))?;
        let body = out.body.collect().await.map_err(|e| VaultError::Io(std::io::Error::other(e)))?;
        Ok(body.into_bytes())
    }

    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, VaultError> {
        let out_of_range = || VaultError::Corrupt {
            what: format!("vault object {name}"),
            detail: format!("range {offset}+{len} beyond its end"),
        };
        if len == 0 {
            return Ok(Bytes::new());
        }
        let last = offset.checked_add(len - 1).ok_or_else(out_of_range)?;
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(name)?)
            .range(format!("bytes={offset}-{last}"))
            .send()
            .await
            .map_err(|e| match e.raw_response().map(|r| r.status().as_u16()) {
                Some(416) => out_of_range(),
                _ => sdk_error(name, e),
            })?;
        let body = out.body.collect().await.map_err(|e| VaultError::Io(std::io::Error::other(e)))?.into_bytes();
        // A store may clamp a range that runs past the end instead of refusing it.
        if body.len() as u64 != len {
            return Err(out_of_range());
        }
        Ok(body)
    }

    async fn get_tail(&self, name: &str, len: u64) -> Result<(Bytes, u64), VaultError> {
        let suffix =
            self.client.get_object().bucket(&self.bucket).key(self.key(name)?).range(format!("bytes=-{}", len.max(1)));
        let out = match suffix.send().await.map_err(|e| sdk_error(name, e)) {
            Ok(out) => out,
            Err(e @ VaultError::NotFound { .. }) => return Err(e),
            // Some S3-compatible stores (s3s-fs) refuse suffix ranges: size, then range.
            Err(_) => {
                let head = self.client.head_object().bucket(&self.bucket).key(self.key(name)?).send().await;
                let size = head.map_err(|e| sdk_error(name, e))?.content_length().unwrap_or(0);
                let size = u64::try_from(size).unwrap_or(0);
                let len = len.min(size);
                return Ok((self.get_range(name, size - len, len).await?, size));
            }
        };
        // `bytes first-last/size`; a store that ignores the range answers the whole object.
        let size = out.content_range().and_then(|r| r.rsplit('/').next()?.parse::<u64>().ok());
        let body = out.body.collect().await.map_err(|e| VaultError::Io(std::io::Error::other(e)))?.into_bytes();
        let size = size.unwrap_or(body.len() as u64);
        let keep = body.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        Ok((body.slice(body.len() - keep..), size))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, VaultError> {
        self.list_from(prefix, None).await
    }

    async fn list_after(&self, prefix: &str, after: &str) -> Result<Vec<String>, VaultError> {
        self.list_from(prefix, Some(after)).await
    }

    async fn exists(&self, name: &str) -> Result<bool, VaultError> {
        match self.client.head_object().bucket(&self.bucket).key(self.key(name)?).send().await {
            Ok(_) => Ok(true),
            Err(e) => match sdk_error(name, e) {
                VaultError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }
}

impl S3Backend {
    /// The same vault reached with another client: garbage collection's, whose credentials
    /// may delete where the gateway's may only add (`vault.gc_credentials`).
    pub fn with_client(&self, client: aws_sdk_s3::Client) -> Self {
        Self { client, ..self.clone() }
    }

    /// Deletes `name` (its one version, on a versioned bucket, so that no delete marker
    /// hides bytes still stored), unless Object Lock retains it.
    pub(crate) async fn delete_unless_locked(&self, name: &str) -> Result<crate::reclaim::Deleted, VaultError> {
        use crate::reclaim::Deleted;
        let key = self.key(name)?;
        let head = match self.client.head_object().bucket(&self.bucket).key(&key).send().await {
            Ok(head) => head,
            Err(e) => {
                return match sdk_error(name, e) {
                    VaultError::NotFound { .. } => Ok(Deleted::Missing),
                    other => Err(other),
                };
            }
        };
        if let Some(until) = head.object_lock_retain_until_date() {
            let until_us = until.to_millis().unwrap_or(i64::MAX).saturating_mul(1000);
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
            if until_us > now_us {
                return Ok(Deleted::Locked { until_us });
            }
        }
        let delete = self.client.delete_object().bucket(&self.bucket).key(&key);
        delete.set_version_id(head.version_id().map(str::to_owned)).send().await.map_err(|e| sdk_error(name, e))?;
        Ok(Deleted::Gone)
    }

    /// Names under `prefix`, after `after` when given.
    async fn list_from(&self, prefix: &str, after: Option<&str>) -> Result<Vec<String>, VaultError> {
        let mut names = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{}{prefix}", self.prefix))
            .set_start_after(after.map(|a| format!("{}{a}", self.prefix)))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(prefix, e))?;
            names.extend(page.contents().iter().filter_map(|o| o.key()?.strip_prefix(&self.prefix).map(str::to_owned)));
        }
        names.sort();
        Ok(names)
    }
}
