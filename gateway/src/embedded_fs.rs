//! The embedded upstream's storage: s3s-fs, with whole-object GETs read in large blocks.
//!
//! s3s-fs streams a GetObject through `tokio::fs` 4 KiB at a time, and every read is a
//! round trip to tokio's blocking pool: a 1 GiB baseline import made 262,144 of them and
//! spent more CPU switching threads than hashing. Here a whole-object GET of a plainly
//! named key reads the same file in 512 KiB blocks on one blocking task; everything else
//! (ranges, parts, other operations, keys s3s-fs resolves differently) is s3s-fs's own.

use std::future::Future;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use s3s::dto::{StreamingBlob, Timestamp};
use s3s::{S3, S3Request, S3Response, S3Result, dto};

/// Bytes read from the file at once.
const BLOCK: usize = 512 * 1024;
/// Blocks read ahead of the connection.
const READ_AHEAD: usize = 2;

/// s3s-fs with large reads.
pub struct EmbeddedFs {
    inner: s3s_fs::FileSystem,
    /// The root, resolved as s3s-fs resolves it.
    root: PathBuf,
}

impl EmbeddedFs {
    /// Serves `root`, which must exist.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        let inner = s3s_fs::FileSystem::new(root)
            .map_err(|e| std::io::Error::other(format!("embedded upstream at {}: {e:?}", root.display())))?;
        let root = std::env::current_dir()?.join(root).canonicalize()?;
        Ok(Self { inner, root })
    }

    /// Where s3s-fs keeps `bucket/key`, for names made only of plain components (no `..`,
    /// `.`, leading `/`): those are joined onto the root unchanged. `None` for any other.
    fn object_path(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        let plain = |s: &str| !s.is_empty() && Path::new(s).components().all(|c| matches!(c, Component::Normal(_)));
        (plain(bucket) && !bucket.contains('/') && plain(key) && !key.ends_with('/'))
            .then(|| self.root.join(bucket).join(key))
    }
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

#[async_trait::async_trait]
impl S3 for EmbeddedFs {
    delegate! {
        create_bucket: CreateBucketInput => CreateBucketOutput;
        copy_object: CopyObjectInput => CopyObjectOutput;
        delete_bucket: DeleteBucketInput => DeleteBucketOutput;
        delete_object: DeleteObjectInput => DeleteObjectOutput;
        delete_objects: DeleteObjectsInput => DeleteObjectsOutput;
        get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
        head_bucket: HeadBucketInput => HeadBucketOutput;
        head_object: HeadObjectInput => HeadObjectOutput;
        list_buckets: ListBucketsInput => ListBucketsOutput;
        list_objects: ListObjectsInput => ListObjectsOutput;
        list_objects_v2: ListObjectsV2Input => ListObjectsV2Output;
        put_object: PutObjectInput => PutObjectOutput;
        create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput;
        upload_part: UploadPartInput => UploadPartOutput;
        upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput;
        list_parts: ListPartsInput => ListPartsOutput;
        complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
        abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
    }

    async fn get_object(&self, req: S3Request<dto::GetObjectInput>) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let whole = req.input.range.is_none() && req.input.part_number.is_none();
        let path = whole.then(|| self.object_path(&req.input.bucket, &req.input.key)).flatten();
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
