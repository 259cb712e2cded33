//! The embedded upstream's storage: s3s-fs, made faithful to S3 where a gateway relies on
//! it, and with whole-object GETs read in large blocks.
//!
//! s3s-fs maps `bucket/key` onto a file path, which S3 keys do not always survive:
//! - keys with empty, `.` or `..` segments, or NUL, name another key's file, another
//!   bucket's, or s3s-fs's own internal files (review F4: a write through `b1/../b2/k`
//!   changed `b2/k` behind the journal); such keys are refused with `InvalidArgument`, as
//!   MinIO refuses them, and so are keys that cannot coexist with an existing one on a
//!   file system (`a` and `a/b`);
//! - a key whose path is a directory (`docs` when `docs/x` exists) answers NoSuchKey, as
//!   S3 does, instead of failing with 500;
//! - DeleteBucket removed a non-empty bucket's whole directory (F5): it answers
//!   BucketNotEmpty, as S3 does;
//! - s3s-fs renames an upload into place, then compares its Content-MD5 and checksums
//!   (F10): bodies are verified here first, so a refused upload never lands.
//!
//! s3s-fs streams a GetObject through `tokio::fs` 4 KiB at a time, and every read is a
//! round trip to tokio's blocking pool: a 1 GiB baseline import made 262,144 of them and
//! spent more CPU switching threads than hashing. Here a whole-object GET of a plainly
//! named key reads the same file in 512 KiB blocks on one blocking task; everything else
//! (ranges, parts, other operations) is s3s-fs's own.

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use s3s::dto::{StreamingBlob, Timestamp};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, dto};

use crate::body::{ChecksumCheck, Fault, VerifiedUpload};

/// Bytes read from the file at once.
const BLOCK: usize = 512 * 1024;
/// Blocks read ahead of the connection.
const READ_AHEAD: usize = 2;
/// The longest file name the file system takes (NAME_MAX); a longer key segment cannot
/// be stored.
const MAX_SEGMENT: usize = 255;

/// s3s-fs, checked and with large reads.
pub struct EmbeddedFs {
    inner: s3s_fs::FileSystem,
    /// The root, resolved as s3s-fs resolves it.
    root: PathBuf,
}

/// Why a key cannot be stored as a file, or `None` when it can.
pub fn unstorable_key(key: &str) -> Option<&'static str> {
    if key.contains('\0') {
        return Some("it contains a NUL character");
    }
    let body = key.strip_suffix('/').unwrap_or(key); // a trailing '/' names a folder marker
    if body.is_empty() {
        return Some("it has an empty path segment");
    }
    for segment in body.split('/') {
        match segment {
            "" => return Some("it has an empty path segment (a leading '/' or '//')"),
            "." | ".." => return Some("it has a '.' or '..' path segment"),
            s if s.len() > MAX_SEGMENT => return Some("a path segment is longer than 255 bytes"),
            _ => {}
        }
    }
    None
}

fn check_key(key: &str) -> S3Result<()> {
    match unstorable_key(key) {
        None => Ok(()),
        Some(why) => Err(unstorable_error(why)),
    }
}

/// The answer to a key [`unstorable_key`] refuses.
pub fn unstorable_error(why: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InvalidArgument,
        format!(
            "Object name not supported by the embedded upstream: {why}. Use another key, or put Rewind in front of an S3 store."
        ),
    )
}

fn conflict(message: String) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom("KeyConflict".into()), message);
    e.set_status_code(http::StatusCode::CONFLICT);
    e
}

impl EmbeddedFs {
    /// Serves `root`, which must exist.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        let inner = s3s_fs::FileSystem::new(root)
            .map_err(|e| std::io::Error::other(format!("embedded upstream at {}: {e:?}", root.display())))?;
        let root = std::env::current_dir()?.join(root).canonicalize()?;
        Ok(Self { inner, root })
    }

    /// Where `bucket/key` is stored (for a key [`unstorable_key`] accepts).
    fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key.trim_end_matches('/'))
    }

    /// A file can be written at `key`: no ancestor of it is a file, and it is not itself a
    /// folder (a folder marker `key/` may be).
    fn check_writable(&self, bucket: &str, key: &str) -> S3Result<()> {
        let mut path = self.root.join(bucket);
        let segments: Vec<&str> = key.trim_end_matches('/').split('/').collect();
        for (i, segment) in segments.iter().enumerate() {
            path.push(segment);
            let last = i + 1 == segments.len();
            match std::fs::metadata(&path) {
                Ok(m) if !last && m.is_file() => {
                    return Err(conflict(format!(
                        "The embedded upstream cannot store this key: the key {:?} exists, and a file system cannot hold a key under it.",
                        segments[..=i].join("/")
                    )));
                }
                Ok(m) if last && m.is_dir() && !key.ends_with('/') => {
                    return Err(conflict(
                        "The embedded upstream cannot store this key: keys exist under it (KEY/...), and a file system cannot hold both.".into(),
                    ));
                }
                Ok(_) => {}
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// Listed objects with their ETags, which s3s-fs leaves out of listings; S3 always
    /// gives them, and restore plans compare them with the journal (review F6).
    async fn with_etags(&self, bucket: String, mut objects: Vec<dto::Object>) -> Vec<dto::Object> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            for o in &mut objects {
                if o.e_tag.is_none()
                    && let Some(key) = o.key.as_deref()
                {
                    o.e_tag = etag_of(&root, &bucket, key).map(dto::ETag::Strong);
                }
            }
            objects
        })
        .await
        .unwrap_or_default()
    }

    /// NoSuchKey for a plain key whose path is a folder: S3 has no object there.
    fn absent_if_folder(&self, bucket: &str, key: &str) -> S3Result<()> {
        if !key.ends_with('/') && self.object_path(bucket, key).is_dir() {
            return Err(S3Error::with_message(S3ErrorCode::NoSuchKey, "The specified key does not exist."));
        }
        Ok(())
    }
}

/// An upload body, verified against every digest the request declares before s3s-fs may
/// see its end; `fault` records why it failed.
fn verified(
    body: Option<StreamingBlob>,
    length: Option<i64>,
    headers: &http::HeaderMap,
    trailers: Option<s3s::TrailingHeaders>,
    fault: &Arc<Fault>,
) -> Option<StreamingBlob> {
    let checks = ChecksumCheck::from_request(headers, trailers);
    let declared = length.and_then(|n| u64::try_from(n).ok());
    body.map(|b| VerifiedUpload::wrap(b, declared, checks, fault.clone()))
}

/// The client's fault, if the body failed verification; else s3s-fs's own answer.
fn upload_result<T>(result: S3Result<T>, fault: &Fault) -> S3Result<T> {
    result.map_err(|e| fault.get().map_or(e, crate::body::from_body_fault))
}

/// The ETag s3s-fs gives `bucket/key`: the one it recorded when it stored the object (in
/// its internal file, named as s3s-fs 0.14 names it), or the MD5 of the file when there is
/// none or the file changed after it was recorded (written behind s3s-fs's back).
fn etag_of(root: &Path, bucket: &str, key: &str) -> Option<String> {
    use base64::Engine as _;
    let encode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let object = root.join(bucket).join(key);
    let info = root.join(format!(".bucket-{}.object-{}.internal.json", encode(bucket), encode(key)));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(written), Some(recorded)) = (modified(&object), modified(&info))
        && written <= recorded
        && let Some(etag) = std::fs::read(&info)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("e_tag")?.as_str().map(str::to_owned))
    {
        return Some(etag);
    }
    let mut file = std::fs::File::open(&object).ok()?;
    let mut hasher = <md5::Md5 as md5::Digest>::new();
    let mut buf = vec![0; 64 << 10];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        md5::Digest::update(&mut hasher, &buf[..n]);
    }
    Some(hex::encode(md5::Digest::finalize(hasher)))
}

/// Whether `dir` holds a file anywhere below it. Empty folders are what deleted keys under
/// a prefix leave behind (and what folder markers look like), so they do not count.
fn holds_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_dir() => holds_files(&e.path()),
        _ => true,
    })
}

/// Opens `path` for a whole-object read: the file and its length and modification time.
fn open(path: &Path) -> std::io::Result<(std::fs::File, u64, std::time::SystemTime)> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a file"));
    }
    Ok((file, meta.len(), meta.modified()?))
}

/// Streams `len` bytes of `file` in blocks read on one blocking task.
fn stream(mut file: std::fs::File, len: u64) -> StreamingBlob {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let want = left.min(BLOCK as u64);
            // Read into spare capacity: zeroing a buffer first costs as much as the copy.
            let mut block = Vec::with_capacity(want as usize);
            let read = match (&mut file).take(want).read_to_end(&mut block) {
                Ok(n) if n as u64 == want => Ok(Bytes::from(block)),
                Ok(_) => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
                Err(e) => Err(e),
            };
            let failed = read.is_err();
            // A closed channel means the client went away: stop reading.
            if tx.blocking_send(read).is_err() || failed {
                return;
            }
            left -= want;
        }
    });
    StreamingBlob::wrap(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// The key a copy reads from, when it names one in a bucket.
fn copy_source_key(source: &dto::CopySource) -> Option<&str> {
    match source {
        dto::CopySource::Bucket { key, .. } => Some(key),
        _ => None,
    }
}

/// Hands operations to s3s-fs. Written out in the shape `async_trait` gives trait methods,
/// since the attribute does not reach into a macro's expansion.
macro_rules! delegate {
    ($($op:ident: $input:ident => $output:ident;)*) => {
        $(
            fn $op<'a, 'b>(
                &'a self,
                req: S3Request<dto::$input>,
            ) -> Pin<Box<dyn Future<Output = S3Result<S3Response<dto::$output>>> + Send + 'b>>
            where
                'a: 'b,
                Self: 'b,
            {
                self.inner.$op(req)
            }
        )*
    };
}

/// Hands key-addressed operations to s3s-fs once their key is one a file can hold.
macro_rules! delegate_checked {
    ($($op:ident: $input:ident => $output:ident;)*) => {
        $(
            fn $op<'a, 'b>(
                &'a self,
                req: S3Request<dto::$input>,
            ) -> Pin<Box<dyn Future<Output = S3Result<S3Response<dto::$output>>> + Send + 'b>>
            where
                'a: 'b,
                Self: 'b,
            {
                Box::pin(async move {
                    check_key(&req.input.key)?;
                    self.inner.$op(req).await
                })
            }
        )*
    };
}

#[async_trait::async_trait]
impl S3 for EmbeddedFs {
    delegate! {
        create_bucket: CreateBucketInput => CreateBucketOutput;
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
        head_bucket: HeadBucketInput => HeadBucketOutput;
        list_buckets: ListBucketsInput => ListBucketsOutput;
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let mut response = self.inner.list_objects(req).await?;
        let objects = response.output.contents.take().unwrap_or_default();
        response.output.contents = Some(self.with_etags(bucket, objects).await);
        Ok(response)
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let bucket = req.input.bucket.clone();
        let mut response = self.inner.list_objects_v2(req).await?;
        let objects = response.output.contents.take().unwrap_or_default();
        response.output.contents = Some(self.with_etags(bucket, objects).await);
        Ok(response)
    }

    delegate_checked! {
        delete_object: DeleteObjectInput => DeleteObjectOutput;
        list_parts: ListPartsInput => ListPartsOutput;
        complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
    }

    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let dir = self.root.join(&req.input.bucket);
        if tokio::task::spawn_blocking(move || holds_files(&dir)).await.unwrap_or(true) {
            return Err(S3Error::with_message(
                S3ErrorCode::BucketNotEmpty,
                "The bucket you tried to delete is not empty.",
            ));
        }
        self.inner.delete_bucket(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        check_key(&req.input.key)?;
        self.check_writable(&req.input.bucket, &req.input.key)?;
        self.inner.create_multipart_upload(req).await
    }

    async fn copy_object(&self, req: S3Request<dto::CopyObjectInput>) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        check_key(&req.input.key)?;
        if let Some(source) = copy_source_key(&req.input.copy_source) {
            check_key(source)?;
        }
        self.check_writable(&req.input.bucket, &req.input.key)?;
        self.inner.copy_object(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        check_key(&req.input.key)?;
        if let Some(source) = copy_source_key(&req.input.copy_source) {
            check_key(source)?;
        }
        self.inner.upload_part_copy(req).await
    }

    async fn delete_objects(
        &self,
        mut req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let (ok, refused): (Vec<_>, Vec<_>) =
            std::mem::take(&mut req.input.delete.objects).into_iter().partition(|o| unstorable_key(&o.key).is_none());
        req.input.delete.objects = ok;
        let mut response = self.inner.delete_objects(req).await?;
        let errors = response.output.errors.get_or_insert_with(Vec::new);
        errors.extend(refused.into_iter().map(|o| dto::Error {
            code: Some("InvalidArgument".into()),
            key: Some(o.key),
            message: Some("Object name not supported by the embedded upstream.".into()),
            version_id: o.version_id,
        }));
        Ok(response)
    }

    async fn put_object(&self, mut req: S3Request<dto::PutObjectInput>) -> S3Result<S3Response<dto::PutObjectOutput>> {
        check_key(&req.input.key)?;
        self.check_writable(&req.input.bucket, &req.input.key)?;
        let fault = Arc::new(Fault::default());
        let (length, trailers) = (req.input.content_length, req.trailing_headers.clone());
        req.input.body = verified(req.input.body.take(), length, &req.headers, trailers, &fault);
        upload_result(self.inner.put_object(req).await, &fault)
    }

    async fn upload_part(
        &self,
        mut req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        check_key(&req.input.key)?;
        let fault = Arc::new(Fault::default());
        let (length, trailers) = (req.input.content_length, req.trailing_headers.clone());
        req.input.body = verified(req.input.body.take(), length, &req.headers, trailers, &fault);
        upload_result(self.inner.upload_part(req).await, &fault)
    }

    async fn head_object(&self, req: S3Request<dto::HeadObjectInput>) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        check_key(&req.input.key)?;
        self.absent_if_folder(&req.input.bucket, &req.input.key)?;
        self.inner.head_object(req).await
    }

    async fn get_object(&self, req: S3Request<dto::GetObjectInput>) -> S3Result<S3Response<dto::GetObjectOutput>> {
        check_key(&req.input.key)?;
        self.absent_if_folder(&req.input.bucket, &req.input.key)?;
        let whole = req.input.range.is_none() && req.input.part_number.is_none() && !req.input.key.ends_with('/');
        let path = whole.then(|| self.object_path(&req.input.bucket, &req.input.key));
        // Opened before s3s-fs answers, so a PUT replacing the file in between shows as a
        // different length or time below, and s3s-fs's own body is kept.
        let opened = match path {
            Some(path) => tokio::task::spawn_blocking(move || open(&path).ok()).await.ok().flatten(),
            None => None,
        };
        let mut response = self.inner.get_object(req).await?;
        if let Some((file, len, modified)) = opened {
            let output = &mut response.output;
            let same = output.content_length == i64::try_from(len).ok()
                && output.last_modified.as_ref() == Some(&Timestamp::from(modified));
            if same {
                output.body = Some(stream(file, len));
            }
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_alias_other_files_are_unstorable() {
        for key in ["..", ".", "a/../b", "../victim/k", "a//b", "/abs", "a/./b", "a\0b", "./", "//", "/"] {
            assert!(unstorable_key(key).is_some(), "{key:?} must be refused");
        }
        for key in ["a", "a/b", "dir/", "a..b", "...", ".hidden", "x/.y/z", "ünïcødé", "a b"] {
            assert_eq!(unstorable_key(key), None, "{key:?} must be accepted");
        }
        assert!(unstorable_key(&"x".repeat(256)).is_some());
        assert_eq!(unstorable_key(&"x".repeat(255)), None);
    }
}
