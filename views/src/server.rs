//! The S3 operations a view answers, from the journal and the vault.

use std::ops::Range;
use std::sync::Arc;

use rewind_journal::{Entry, Journal, ViewEntry};
use rewind_vault::Vault;
use s3s::dto::{self, ETag};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::listing::{self, Ask, Item};
use crate::object::{self, Conditions};
use crate::versions::{self, Kept, Listed};
use crate::{ViewMetrics, ViewRequest, internal, other_bucket};

/// The most items a listing page holds, as S3.
const MAX_KEYS: i32 = 1000;

/// Answers the operations of [`crate::SERVED`] for requests signed with a view's key.
#[derive(Clone)]
pub struct ViewServer {
    journal: Arc<Journal>,
    vault: Arc<Vault>,
    metrics: ViewMetrics,
}

impl ViewServer {
    /// Views over `journal` (what existed) and `vault` (the bytes).
    pub fn new(journal: Arc<Journal>, vault: Arc<Vault>, metrics: ViewMetrics) -> Self {
        Self { journal, vault, metrics }
    }

    /// Counts an answer.
    fn counted<T>(&self, operation: &str, result: S3Result<T>) -> S3Result<T> {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics.requests.with_label_values(&[operation, outcome]).inc();
        result
    }

    /// One page of the view's objects, read on the blocking pool.
    async fn objects_page(&self, view: &ViewEntry, ask: PageAsk) -> S3Result<listing::Page> {
        let (bucket, seq) = (view.bucket.clone(), view.seq);
        self.read(move |j| {
            let PageAsk { prefix, delimiter, after, max } = &ask;
            let ask = Ask { prefix, delimiter: delimiter.as_deref(), after: after.as_deref(), max: *max };
            listing::objects(j, &bucket, seq, ask).map_err(|e| internal("cannot list from the journal", e))
        })
        .await
    }

    /// The version a HEAD or GET means, its id, checked against the request's conditions,
    /// and the bytes it asks for (`None`: all).
    fn object_for(&self, view: &ViewEntry, ask: &ObjectAsk<'_>) -> S3Result<(Entry, String, Option<Range<u64>>)> {
        let (entry, id) = object::find(&self.journal, &view.bucket, ask.key, view.seq, ask.version_id)?;
        ask.conditions.check(&entry)?;
        let range = object::byte_range(&entry, ask.range, ask.part_number)?;
        Ok((entry, id, range))
    }

    /// Runs a journal read on the blocking pool.
    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Journal) -> S3Result<T> + Send + 'static) -> S3Result<T> {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || f(&journal)).await.map_err(|e| internal("a view's read stopped", e))?
    }
}

/// What a listing page asks for, owned (it crosses to the blocking pool).
struct PageAsk {
    prefix: String,
    delimiter: Option<String>,
    after: Option<String>,
    max: usize,
}

/// What a HEAD or GET asks for.
struct ObjectAsk<'a> {
    key: &'a str,
    version_id: Option<&'a str>,
    conditions: Conditions<'a>,
    range: Option<&'a dto::Range>,
    part_number: Option<i32>,
}

/// The objects and common prefixes of a page, as a listing answers them.
fn page_items(page: &listing::Page, url: bool, owner_too: bool) -> (Vec<dto::Object>, Option<Vec<dto::CommonPrefix>>) {
    let (mut contents, mut prefixes) = (Vec::new(), Vec::new());
    for item in &page.items {
        match item {
            Item::Object(e) => contents.push(listed_object(e, url, owner_too)),
            Item::Prefix(p) => prefixes.push(dto::CommonPrefix { prefix: Some(out_name(p, url)) }),
        }
    }
    (contents, (!prefixes.is_empty()).then_some(prefixes))
}

/// The view a request was signed for, and the bucket it names checked to be the view's.
fn view_for<T>(req: &S3Request<T>, bucket: Option<&str>) -> S3Result<Arc<ViewEntry>> {
    let view = req.extensions.get::<ViewRequest>().map(|v| v.0.clone()).ok_or_else(|| {
        S3Error::with_message(S3ErrorCode::AccessDenied, "This request is not signed with a view's key.")
    })?;
    match bucket {
        Some(b) if b != view.bucket => Err(other_bucket(&view, b)),
        _ => Ok(view),
    }
}

fn owner() -> dto::Owner {
    dto::Owner { display_name: Some("rewind-view".into()), id: Some("rewind-view".into()) }
}

fn storage_class() -> dto::ObjectStorageClass {
    dto::ObjectStorageClass::from_static(dto::ObjectStorageClass::STANDARD)
}

fn max_keys(asked: Option<i32>) -> S3Result<usize> {
    match asked {
        Some(n) if n < 0 => {
            Err(S3Error::with_message(S3ErrorCode::InvalidArgument, "max-keys must be a positive integer"))
        }
        Some(n) => Ok(usize::try_from(n.min(MAX_KEYS)).unwrap_or(0)),
        None => Ok(MAX_KEYS as usize),
    }
}

/// Whether the client asked for keys URL-encoded in the answer (the aws cli does).
fn url_encoded(encoding: Option<&dto::EncodingType>) -> bool {
    encoding.is_some_and(|e| e.as_str().eq_ignore_ascii_case(dto::EncodingType::URL))
}

/// A key or prefix as the answer carries it: percent-encoded, `/` kept, when asked.
fn out_name(name: &str, url: bool) -> String {
    if !url {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A continuation token: the last item of the page, hex-encoded (opaque to clients).
fn token(last: &str) -> String {
    hex::encode(last)
}

fn from_token(token: &str) -> S3Result<String> {
    hex::decode(token).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| {
        S3Error::with_message(S3ErrorCode::InvalidArgument, "The continuation token provided is incorrect")
    })
}

fn listed_object(entry: &Entry, url: bool, owner_too: bool) -> dto::Object {
    dto::Object {
        key: Some(out_name(&entry.key, url)),
        e_tag: Some(object::etag(&entry.version.etag)),
        size: Some(i64::try_from(entry.version.size).unwrap_or(i64::MAX)),
        last_modified: Some(object::last_modified(entry)),
        storage_class: Some(storage_class()),
        owner: owner_too.then(owner),
        ..Default::default()
    }
}

fn tags(entry: &Entry) -> dto::TagSet {
    entry.version.tags.iter().map(|(k, v)| dto::Tag { key: Some(k.clone()), value: Some(v.clone()) }).collect()
}

fn size_of(entry: &Entry) -> i64 {
    i64::try_from(entry.version.size).unwrap_or(i64::MAX)
}

/// What a HeadObject or GetObject input asks for (the two share these fields, not a type).
macro_rules! object_ask {
    ($input:expr) => {{
        let i = $input;
        ObjectAsk {
            key: &i.key,
            version_id: i.version_id.as_deref(),
            conditions: Conditions {
                if_match: i.if_match.as_ref(),
                if_none_match: i.if_none_match.as_ref(),
                if_modified_since: i.if_modified_since.as_ref(),
                if_unmodified_since: i.if_unmodified_since.as_ref(),
            },
            range: i.range.as_ref(),
            part_number: i.part_number,
        }
    }};
}

/// Fills the headers GetObject and HeadObject share from the version, then the response
/// header overrides a GET may carry.
macro_rules! object_headers {
    ($out:expr, $entry:expr, $id:expr) => {{
        let (out, entry) = (&mut $out, $entry);
        out.e_tag = Some(object::etag(&entry.version.etag));
        out.last_modified = Some(object::last_modified(entry));
        out.accept_ranges = Some("bytes".into());
        out.cache_control = object::header(entry, "cache-control").map(str::to_owned);
        out.content_disposition = object::header(entry, "content-disposition").map(str::to_owned);
        out.content_encoding = object::header(entry, "content-encoding").map(str::to_owned);
        out.content_language = object::header(entry, "content-language").map(str::to_owned);
        out.content_type = object::header(entry, "content-type").and_then(|t| t.parse().ok());
        out.website_redirect_location = object::header(entry, "x-amz-website-redirect-location").map(str::to_owned);
        out.expires = object::expires(entry);
        out.metadata = object::metadata(entry);
        out.parts_count = object::parts_count(entry);
        out.version_id = Some($id);
        out.storage_class = None;
    }};
}

/// Whether a request asked for the object's checksums (`x-amz-checksum-mode: ENABLED`).
fn wants_checksums(mode: Option<&dto::ChecksumMode>) -> bool {
    mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(dto::ChecksumMode::ENABLED))
}

/// Sets the checksums the upstream gave the version when it was written.
macro_rules! object_checksums {
    ($out:expr, $entry:expr) => {{
        let (out, entry) = (&mut $out, $entry);
        let sum = |name: &str| object::checksum(entry, name).map(str::to_owned);
        out.checksum_crc32 = sum("crc32");
        out.checksum_crc32c = sum("crc32c");
        out.checksum_crc64nvme = sum("crc64nvme");
        out.checksum_sha1 = sum("sha1");
        out.checksum_sha256 = sum("sha256");
        out.checksum_type = sum("type").map(dto::ChecksumType::from);
    }};
}

#[async_trait::async_trait]
impl S3 for ViewServer {
    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let view = view_for(&req, None)?;
        let created = time::OffsetDateTime::from_unix_timestamp(view.at_us.div_euclid(1_000_000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let bucket =
            dto::Bucket { name: Some(view.bucket.clone()), creation_date: Some(created.into()), ..Default::default() };
        let out = dto::ListBucketsOutput { buckets: Some(vec![bucket]), owner: Some(owner()), ..Default::default() };
        self.counted("ListBuckets", Ok(S3Response::new(out)))
    }

    async fn head_bucket(&self, req: S3Request<dto::HeadBucketInput>) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        let result = view_for(&req, Some(&req.input.bucket)).map(|_| S3Response::new(dto::HeadBucketOutput::default()));
        self.counted("HeadBucket", result)
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        let result =
            view_for(&req, Some(&req.input.bucket)).map(|_| S3Response::new(dto::GetBucketLocationOutput::default()));
        self.counted("GetBucketLocation", result)
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<dto::GetBucketVersioningInput>,
    ) -> S3Result<S3Response<dto::GetBucketVersioningOutput>> {
        // A view keeps every version the journal does, so it lists and reads them by id.
        let result = view_for(&req, Some(&req.input.bucket)).map(|_| {
            let status = dto::BucketVersioningStatus::from_static(dto::BucketVersioningStatus::ENABLED);
            S3Response::new(dto::GetBucketVersioningOutput { status: Some(status), ..Default::default() })
        });
        self.counted("GetBucketVersioning", result)
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let result = async {
            let view = view_for(&req, Some(&req.input.bucket))?;
            let i = req.input;
            let max = max_keys(i.max_keys)?;
            let after = match &i.continuation_token {
                Some(t) => Some(from_token(t)?),
                None => i.start_after.clone().filter(|s| !s.is_empty()),
            };
            let (prefix, delimiter) = (i.prefix.clone().unwrap_or_default(), i.delimiter.clone());
            let ask = PageAsk { prefix: prefix.clone(), delimiter: delimiter.clone(), after, max };
            let page = self.objects_page(&view, ask).await?;
            let url = url_encoded(i.encoding_type.as_ref());
            let (contents, common_prefixes) = page_items(&page, url, i.fetch_owner.unwrap_or(false));
            let next = page.truncated.then(|| page.items.last().map(|l| token(l.name()))).flatten();
            Ok(S3Response::new(dto::ListObjectsV2Output {
                name: Some(view.bucket.clone()),
                prefix: Some(out_name(&prefix, url)),
                delimiter: delimiter.map(|d| out_name(&d, url)),
                max_keys: Some(i32::try_from(max).unwrap_or(MAX_KEYS)),
                key_count: Some(i32::try_from(page.items.len()).unwrap_or(MAX_KEYS)),
                is_truncated: Some(page.truncated),
                continuation_token: i.continuation_token,
                next_continuation_token: next,
                start_after: i.start_after.map(|s| out_name(&s, url)),
                encoding_type: i.encoding_type,
                contents: Some(contents),
                common_prefixes,
                ..Default::default()
            }))
        }
        .await;
        self.counted("ListObjectsV2", result)
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let result = async {
            let view = view_for(&req, Some(&req.input.bucket))?;
            let i = req.input;
            let max = max_keys(i.max_keys)?;
            let (prefix, delimiter) = (i.prefix.clone().unwrap_or_default(), i.delimiter.clone());
            let after = i.marker.clone().filter(|m| !m.is_empty());
            let page = self
                .objects_page(&view, PageAsk { prefix: prefix.clone(), delimiter: delimiter.clone(), after, max })
                .await?;
            let url = url_encoded(i.encoding_type.as_ref());
            let (contents, common_prefixes) = page_items(&page, url, true);
            let next = page.truncated.then(|| page.items.last().map(|l| out_name(l.name(), url))).flatten();
            Ok(S3Response::new(dto::ListObjectsOutput {
                name: Some(view.bucket.clone()),
                prefix: Some(out_name(&prefix, url)),
                delimiter: delimiter.map(|d| out_name(&d, url)),
                marker: i.marker.map(|m| out_name(&m, url)),
                max_keys: Some(i32::try_from(max).unwrap_or(MAX_KEYS)),
                is_truncated: Some(page.truncated),
                next_marker: next,
                encoding_type: i.encoding_type,
                contents: Some(contents),
                common_prefixes,
                ..Default::default()
            }))
        }
        .await;
        self.counted("ListObjects", result)
    }

    async fn list_object_versions(
        &self,
        req: S3Request<dto::ListObjectVersionsInput>,
    ) -> S3Result<S3Response<dto::ListObjectVersionsOutput>> {
        let result = async {
            let view = view_for(&req, Some(&req.input.bucket))?;
            let i = req.input;
            let max = max_keys(i.max_keys)?;
            let (prefix, delimiter) = (i.prefix.clone().unwrap_or_default(), i.delimiter.clone());
            let page = {
                let (bucket, seq, prefix, delimiter) =
                    (view.bucket.clone(), view.seq, prefix.clone(), delimiter.clone());
                let (after, marker) = (i.key_marker.clone().filter(|m| !m.is_empty()), i.version_id_marker.clone());
                self.read(move |j| {
                    let ask = Ask { prefix: &prefix, delimiter: delimiter.as_deref(), after: after.as_deref(), max };
                    versions::page(j, &bucket, seq, ask, marker.as_deref().filter(|m| !m.is_empty()))
                        .map_err(|e| internal("cannot list versions from the journal", e))
                })
                .await?
            };
            let url = url_encoded(i.encoding_type.as_ref());
            let (mut listed, mut markers, mut prefixes) = (Vec::new(), Vec::new(), Vec::new());
            for item in page.items {
                match item {
                    Listed::Kept { kept: Kept::Version { id, entry }, latest } => listed.push(dto::ObjectVersion {
                        key: Some(out_name(&entry.key, url)),
                        version_id: Some(id),
                        is_latest: Some(latest),
                        e_tag: Some(object::etag(&entry.version.etag)),
                        size: Some(size_of(&entry)),
                        last_modified: Some(object::last_modified(&entry)),
                        storage_class: Some(dto::ObjectVersionStorageClass::from_static(
                            dto::ObjectVersionStorageClass::STANDARD,
                        )),
                        owner: Some(owner()),
                        ..Default::default()
                    }),
                    Listed::Kept { kept: Kept::Marker { id, key, timestamp_us }, latest } => {
                        let modified = time::OffsetDateTime::from_unix_timestamp(timestamp_us.div_euclid(1_000_000))
                            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                        markers.push(dto::DeleteMarkerEntry {
                            key: Some(out_name(&key, url)),
                            version_id: Some(id),
                            is_latest: Some(latest),
                            last_modified: Some(modified.into()),
                            owner: Some(owner()),
                        });
                    }
                    Listed::Prefix(p) => prefixes.push(dto::CommonPrefix { prefix: Some(out_name(&p, url)) }),
                }
            }
            let (next_key, next_version) = page.next.map_or((None, None), |(k, v)| (Some(out_name(&k, url)), v));
            Ok(S3Response::new(dto::ListObjectVersionsOutput {
                name: Some(view.bucket.clone()),
                prefix: Some(out_name(&prefix, url)),
                delimiter: delimiter.map(|d| out_name(&d, url)),
                key_marker: i.key_marker.map(|m| out_name(&m, url)),
                version_id_marker: i.version_id_marker,
                max_keys: Some(i32::try_from(max).unwrap_or(MAX_KEYS)),
                is_truncated: Some(next_key.is_some()),
                next_key_marker: next_key,
                next_version_id_marker: next_version,
                encoding_type: i.encoding_type,
                versions: (!listed.is_empty()).then_some(listed),
                delete_markers: (!markers.is_empty()).then_some(markers),
                common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
                ..Default::default()
            }))
        }
        .await;
        self.counted("ListObjectVersions", result)
    }

    async fn head_object(&self, req: S3Request<dto::HeadObjectInput>) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let result = (|| {
            let view = view_for(&req, Some(&req.input.bucket))?;
            let i = &req.input;
            let (entry, id, range) = self.object_for(&view, &object_ask!(i))?;
            let mut out = dto::HeadObjectOutput::default();
            object_headers!(out, &entry, id);
            if wants_checksums(i.checksum_mode.as_ref()) && range.is_none() {
                object_checksums!(out, &entry);
            }
            out.content_length =
                Some(range.as_ref().map_or(size_of(&entry), |r| i64::try_from(r.end - r.start).unwrap_or(i64::MAX)));
            out.content_range = range.as_ref().map(|r| object::content_range(r, entry.version.size));
            Ok(S3Response::new(out))
        })();
        self.counted("HeadObject", result)
    }

    async fn get_object(&self, req: S3Request<dto::GetObjectInput>) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let result = (|| {
            let view = view_for(&req, Some(&req.input.bucket))?;
            let i = &req.input;
            let (entry, id, range) = self.object_for(&view, &object_ask!(i))?;
            let mut out = dto::GetObjectOutput::default();
            object_headers!(out, &entry, id);
            if wants_checksums(i.checksum_mode.as_ref()) && range.is_none() {
                object_checksums!(out, &entry);
            }
            out.tag_count =
                (!entry.version.tags.is_empty()).then(|| i32::try_from(entry.version.tags.len()).unwrap_or(i32::MAX));
            out.content_length =
                Some(range.as_ref().map_or(size_of(&entry), |r| i64::try_from(r.end - r.start).unwrap_or(i64::MAX)));
            out.content_range = range.as_ref().map(|r| object::content_range(r, entry.version.size));
            out.body = Some(object::body(&self.vault, &entry, range.as_ref(), &self.metrics)?);
            // Response header overrides, as S3 applies them to a signed GET.
            if let Some(v) = &i.response_cache_control {
                out.cache_control = Some(v.clone());
            }
            if let Some(v) = &i.response_content_disposition {
                out.content_disposition = Some(v.clone());
            }
            if let Some(v) = &i.response_content_encoding {
                out.content_encoding = Some(v.clone());
            }
            if let Some(v) = &i.response_content_language {
                out.content_language = Some(v.clone());
            }
            if let Some(v) = &i.response_content_type {
                out.content_type = Some(v.clone());
            }
            if let Some(v) = &i.response_expires {
                out.expires = Some(v.clone());
            }
            Ok(S3Response::new(out))
        })();
        self.counted("GetObject", result)
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<dto::GetObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        let result = (|| {
            let view = view_for(&req, Some(&req.input.bucket))?;
            let i = &req.input;
            let (entry, id) = object::find(&self.journal, &view.bucket, &i.key, view.seq, i.version_id.as_deref())?;
            Ok(S3Response::new(dto::GetObjectTaggingOutput { tag_set: tags(&entry), version_id: Some(id) }))
        })();
        self.counted("GetObjectTagging", result)
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<dto::GetObjectAttributesInput>,
    ) -> S3Result<S3Response<dto::GetObjectAttributesOutput>> {
        let result = (|| {
            let view = view_for(&req, Some(&req.input.bucket))?;
            let i = &req.input;
            let (entry, id) = object::find(&self.journal, &view.bucket, &i.key, view.seq, i.version_id.as_deref())?;
            let wants = |name: &str| i.object_attributes.iter().any(|a| a.as_str().eq_ignore_ascii_case(name));
            Ok(S3Response::new(dto::GetObjectAttributesOutput {
                e_tag: wants(dto::ObjectAttributes::ETAG)
                    .then(|| ETag::Strong(object::etag(&entry.version.etag).value().to_owned())),
                object_size: wants(dto::ObjectAttributes::OBJECT_SIZE).then(|| size_of(&entry)),
                storage_class: wants(dto::ObjectAttributes::STORAGE_CLASS)
                    .then(|| dto::StorageClass::from_static(dto::StorageClass::STANDARD)),
                checksum: (wants(dto::ObjectAttributes::CHECKSUM) && !entry.version.checksums.is_empty()).then(|| {
                    let mut c = dto::Checksum::default();
                    object_checksums!(c, &entry);
                    c
                }),
                last_modified: Some(object::last_modified(&entry)),
                version_id: Some(id),
                ..Default::default()
            }))
        })();
        self.counted("GetObjectAttributes", result)
    }
}
