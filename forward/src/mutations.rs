//! The mutations of protected buckets, each driven through the capture steps as a
//! [`crate::mutation::Mutation`]: lock, capture-before-destroy, intent, forward (teeing
//! bodies), then commit, or abort. Buckets that are not protected are simply forwarded.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::join_all;
use rewind_journal::layout;
use rewind_model::{Effect, ObjectVersion, Op, Seq};
use rewind_vault::Manifest;
use s3s::dto;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use rewind_capture::{Capture, CaptureError, ObjectMeta, Pending, TeeError, plain_etag, version_of};

use crate::errors::{self, Applied};
use crate::meta;
use crate::mutation::{VaultSide, refuse, refuse_if_tripped, unfinished_upload};
use crate::request::RequestInfo;
use crate::s3::{Forwarder, Via, request_info};
use rewind_capture::metrics::refusal;
use rewind_capture::upstream::sdk_key;

use crate::sdk::ForSdk;

/// Concurrent HEADs (and captures) when a batch delete protects its keys first.
const PROTECT_CONCURRENCY: usize = 16;
/// Keys one DeleteObjects may name, as S3 allows: each key costs a HEAD, two journal
/// records and a lock stripe, and 40,000 keys held every write for 30 s (review F8).
const MAX_DELETE_KEYS: usize = 1000;

impl Forwarder {
    /// The capture side, when `bucket` is protected.
    fn capture_for(&self, bucket: &str) -> Option<Arc<Capture>> {
        self.capture.as_ref().filter(|c| c.protects(bucket)).cloned()
    }

    pub(crate) async fn captured_put_object(
        &self,
        mut req: S3Request<dto::PutObjectInput>,
        via: Via<'_>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        const OP: &str = "PutObject";
        let info = request_info(&req);
        let Some(capture) = self.capture_for(&req.input.bucket) else {
            return self.timed(OP, &info, self.put_upstream(req, via)).await;
        };
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        // Refused before a byte moves, rather than after the body.
        self.check_key(&key)?;
        refuse_if_tripped(&capture, &info.actor().access_key, &bucket)?;
        let sse_c = req.input.sse_customer_algorithm.is_some();
        let meta = meta::from_put(&req.input);
        let (side, gate) = VaultSide::start_gated(&capture, &mut req.input.body);
        let upstream = self.timed(OP, &info, self.put_upstream(req, via));
        let gated = gate.is_some();
        let lock_then_complete = async {
            // The key's lock, capture-before-destroy and the intent come once the body is
            // in, and only then may the upstream have its end: bodies of one key's writers
            // stream in parallel, their completions one at a time (see `crate::tee`).
            let gate = gate?;
            gate.arrived.await.ok()?;
            let mutation = self.mutation(&capture, OP, Op::Put, (&bucket, &key), None, &info).await;
            if mutation.is_ok() {
                let _ = gate.open.send(());
            }
            Some(mutation)
        };
        let (upstream, mutation) = if gated {
            tokio::join!(upstream, lock_then_complete)
        } else {
            // Nothing to hold back: the upstream may apply it on sight, so the lock first.
            let mutation = self.mutation(&capture, OP, Op::Put, (&bucket, &key), None, &info).await?;
            (upstream.await, Some(Ok(mutation)))
        };
        let manifest = side.finish().await;
        let mutation = match mutation {
            Some(m) => m?.with_sse_c(sse_c),
            // The body, the vault or the upstream failed before the body ended: nothing
            // was locked or journaled, and the upstream saw a cut body.
            None => return Err(unfinished_upload(&capture, OP, upstream, manifest)),
        };
        let response = match upstream {
            Ok(r) => r,
            Err(up) => return Err(mutation.refused_upload(up, manifest).await),
        };
        let o = &response.output;
        let etag = o.e_tag.as_ref().map(dto::ETag::value).unwrap_or_default();
        let checksums = meta::checksums!(o);
        let effect = manifest.map(|m| {
            let mut version = version_of(m, etag, o.version_id.as_deref(), meta);
            version.checksums = checksums;
            Some(Effect::Version(version))
        });
        mutation.finish(effect, response).await
    }

    pub(crate) async fn captured_upload_part(
        &self,
        mut req: S3Request<dto::UploadPartInput>,
        via: Via<'_>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        const OP: &str = "UploadPart";
        let info = request_info(&req);
        let i = &req.input;
        let prefix = layout::upload_prefix(&i.bucket, &i.key, &i.upload_id);
        let capture = match self.capture_for(&i.bucket) {
            // Uploads started before the gateway saw them are captured whole on completion.
            Some(c) if c.upload_template(&prefix).map_err(|e| refuse(&c, OP, &e, Applied::No))?.is_some() => c,
            _ => return self.timed(OP, &info, self.upload_part_upstream(req, via)).await,
        };
        let number = req.input.part_number;
        let side = VaultSide::start(&capture, &mut req.input.body);
        let upstream = self.timed(OP, &info, self.upload_part_upstream(req, via)).await;
        let manifest = side.finish().await;
        let (response, manifest) = match (upstream, manifest) {
            (Ok(r), Ok(m)) => (r, m),
            (Err(_), Err(e @ CaptureError::Tee(TeeError::Vault(_) | TeeError::Slow))) => {
                return Err(refuse(&capture, OP, &e, Applied::No));
            }
            // The part is upstream but not captured; completion then reads the object back.
            (Ok(_), Err(e)) => return Err(refuse(&capture, OP, &e, Applied::Upstream)),
            (Err(up), _) => return Err(up),
        };
        let etag = response.output.e_tag.as_ref().map(dto::ETag::value).unwrap_or_default();
        let part = version_of(manifest, etag, None, ObjectMeta::default());
        capture.put_part(&prefix, number, &part).await.map_err(|e| refuse(&capture, OP, &e, Applied::Upstream))?;
        Ok(response)
    }

    pub(crate) async fn captured_create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        const OP: &str = "CreateMultipartUpload";
        let info = request_info(&req);
        self.check_key(&req.input.key)?;
        let capture = self.capture_for(&req.input.bucket);
        let meta = meta::from_create_multipart(&req.input);
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let response = self.timed(OP, &info, self.proxy_for(&req).create_multipart_upload(req.for_sdk())).await?;
        if let (Some(capture), Some(upload_id)) = (capture, response.output.upload_id.as_deref()) {
            let prefix = layout::upload_prefix(&bucket, &key, upload_id);
            if let Err(e) = capture.start_upload(&prefix, meta).await {
                // Without its headers the upload could not be restored faithfully: undo it.
                let _ = self
                    .upstream
                    .abort_multipart_upload()
                    .bucket(&bucket)
                    .key(sdk_key(&key))
                    .upload_id(upload_id)
                    .send()
                    .await;
                return Err(refuse(&capture, OP, &e, Applied::No));
            }
        }
        Ok(response)
    }

    pub(crate) async fn captured_upload_part_copy(
        &self,
        req: S3Request<dto::UploadPartCopyInput>,
    ) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        const OP: &str = "UploadPartCopy";
        let info = request_info(&req);
        let i = &req.input;
        let prefix = layout::upload_prefix(&i.bucket, &i.key, &i.upload_id);
        let capture = match self.capture_for(&i.bucket) {
            Some(c) if c.upload_template(&prefix).map_err(|e| refuse(&c, OP, &e, Applied::No))?.is_some() => c,
            _ => return self.timed(OP, &info, self.proxy_for(&req).upload_part_copy(req.for_sdk())).await,
        };
        let (number, range) = (i.part_number, i.copy_source_range.clone());
        let source = match &i.copy_source {
            dto::CopySource::Bucket { bucket, key, version_id } => {
                Some((bucket.to_string(), key.to_string(), version_id.as_deref().map(str::to_owned)))
            }
            _ => None,
        };
        // The source's ETag before the copy: the part is read back on condition that the
        // source still has it, so a write to the source in between cannot put bytes in the
        // journal that the part never had (review R7).
        let pinned = match &source {
            Some((b, k, v)) => capture.head(b, k, v.as_deref()).await.ok().flatten().map(|h| format!("\"{}\"", h.etag)),
            None => None,
        };
        let response = self.timed(OP, &info, self.proxy_for(&req).upload_part_copy(req.for_sdk())).await?;
        let etag = response.output.copy_part_result.as_ref().and_then(|r| r.e_tag.as_ref()).map(dto::ETag::value);
        // A part missing here makes completion capture the whole object from the upstream
        // instead, so a failure costs time, not history.
        if let (Some((b, k, v)), Some(etag), Some(pinned)) = (source, etag, pinned) {
            let read = self
                .upstream
                .get_object()
                .bucket(b)
                .key(sdk_key(&k))
                .set_version_id(v)
                .set_range(range)
                .if_match(pinned)
                .send()
                .await;
            let stored = match read {
                Ok(o) => {
                    let size = o.content_length().and_then(|n| u64::try_from(n).ok());
                    capture.store_stream(o.body, size).await.map(Some)
                }
                Err(e) => Err(rewind_capture::upstream_error(e)),
            };
            match stored {
                Ok(Some(m)) => {
                    let part = version_of(m, etag, None, ObjectMeta::default());
                    if let Err(e) = capture.put_part(&prefix, number, &part).await {
                        tracing::warn!(error = %e, "could not record a copied part; completion will capture the whole object");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not capture a copied part; completion will capture the whole object")
                }
            }
        }
        Ok(response)
    }

    pub(crate) async fn captured_complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        const OP: &str = "CompleteMultipartUpload";
        let info = request_info(&req);
        let Some(capture) = self.capture_for(&req.input.bucket) else {
            return self.timed(OP, &info, self.proxy_for(&req).complete_multipart_upload(req.for_sdk())).await;
        };
        let i = &req.input;
        let (bucket, key) = (i.bucket.clone(), i.key.clone());
        let prefix = layout::upload_prefix(&bucket, &key, &i.upload_id);
        let chosen: Vec<(i32, String)> = i
            .multipart_upload
            .iter()
            .flat_map(|m| m.parts.iter().flatten())
            .map(|p| (p.part_number.unwrap_or(0), p.e_tag.as_ref().map(|e| e.value().to_owned()).unwrap_or_default()))
            .collect();
        let mutation = self.mutation(&capture, OP, Op::CompleteMultipart, (&bucket, &key), None, &info).await?;
        let (mut mutation, response) =
            mutation.forward(self.proxy_for(&req).complete_multipart_upload(req.for_sdk())).await?;
        let o = &response.output;
        let etag = o.e_tag.as_ref().map(dto::ETag::value).unwrap_or_default().to_owned();
        let (checksums, version_id) = (meta::checksums!(o), o.version_id.clone());
        let version = self.assemble(&capture, &prefix, &chosen, &etag, version_id.as_deref(), (&bucket, &key)).await;
        let version = version.map(|v| ObjectVersion { checksums, ..v });
        mutation.ending_upload(&prefix);
        mutation.finish(version.map(|v| Some(Effect::Version(v))), response).await
    }

    /// The completed object from its captured parts, or, when some part was not captured
    /// (or differs from what the client chose), read back from the upstream.
    async fn assemble(
        &self,
        capture: &Capture,
        prefix: &[u8],
        chosen: &[(i32, String)],
        etag: &str,
        version_id: Option<&str>,
        (bucket, key): (&str, &str),
    ) -> Result<ObjectVersion, CaptureError> {
        if let Some(template) = capture.upload_template(prefix)? {
            let parts = capture.parts(prefix)?;
            let found: Option<Vec<&ObjectVersion>> =
                chosen.iter().map(|(n, e)| parts.get(n).filter(|p| plain_etag(&p.etag) == plain_etag(e))).collect();
            if let Some(found) = found.filter(|f| !f.is_empty()) {
                let chunks: Vec<_> = found.iter().flat_map(|p| p.chunks.iter().copied()).collect();
                let (size, blake3) = capture.vault().hash_chunks(&chunks).await?;
                let meta = ObjectMeta { headers: template.headers, metadata: template.metadata, tags: template.tags };
                let mut version = version_of(Manifest { chunks, size, blake3 }, etag, version_id, meta);
                version.parts = found.iter().map(|p| p.size).collect();
                return Ok(version);
            }
        }
        capture
            .capture_upstream(bucket, key, version_id)
            .await?
            .ok_or_else(|| CaptureError::upstream("the completed object is not readable upstream"))
    }

    pub(crate) async fn captured_abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let info = request_info(&req);
        let capture = self.capture_for(&req.input.bucket);
        let prefix = layout::upload_prefix(&req.input.bucket, &req.input.key, &req.input.upload_id);
        let response = self
            .timed("AbortMultipartUpload", &info, self.proxy_for(&req).abort_multipart_upload(req.for_sdk()))
            .await?;
        if let Some(capture) = capture
            && let Err(e) = capture.end_upload(&prefix).await
        {
            tracing::warn!(error = %e, "could not forget an aborted upload's parts");
        }
        Ok(response)
    }

    pub(crate) async fn captured_copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        const OP: &str = "CopyObject";
        let info = request_info(&req);
        let Some(capture) = self.capture_for(&req.input.bucket) else {
            return self.timed(OP, &info, self.proxy_for(&req).copy_object(req.for_sdk())).await;
        };
        let i = &req.input;
        let (bucket, key) = (i.bucket.clone(), i.key.clone());
        let replace_meta = i.metadata_directive.as_ref().is_some_and(|d| d.as_str() == dto::MetadataDirective::REPLACE);
        let replace_tags = i.tagging_directive.as_ref().is_some_and(|d| d.as_str() == dto::TaggingDirective::REPLACE);
        let asked = meta::from_copy(i);
        let source = match &i.copy_source {
            dto::CopySource::Bucket { bucket, key, .. } => Some((bucket.to_string(), key.to_string())),
            _ => None,
        };
        let sse_c = i.sse_customer_algorithm.is_some();
        let mutation = self.mutation(&capture, OP, Op::Copy, (&bucket, &key), None, &info).await?.with_sse_c(sse_c);
        // Read before the copy: when the source is the destination, this is its old state.
        let known_source = match &source {
            Some((b, k)) if capture.protects(b) => capture.current(b, k).ok().flatten(),
            _ => None,
        };
        let (mutation, response) = mutation.forward(self.proxy_for(&req).copy_object(req.for_sdk())).await?;
        let o = &response.output;
        let etag =
            o.copy_object_result.as_ref().and_then(|r| r.e_tag.as_ref()).map(dto::ETag::value).unwrap_or_default();
        let version = match known_source.filter(|s| plain_etag(&s.etag) == etag) {
            // Same content as a version the vault holds: reference its chunks.
            Some(mut v) => {
                v.etag = etag.to_owned();
                v.version_id = o.version_id.clone();
                v.checksums = o.copy_object_result.as_ref().map(|r| meta::checksums!(r)).unwrap_or_default();
                v.modified_us = None; // a new object: the commit's time is its Last-Modified
                if replace_meta {
                    v.headers = asked.headers;
                    v.metadata = asked.metadata;
                }
                if replace_tags {
                    v.tags = asked.tags;
                }
                Ok(v)
            }
            None => capture
                .capture_upstream(&bucket, &key, o.version_id.as_deref())
                .await
                .and_then(|v| v.ok_or_else(|| CaptureError::upstream("the copy is not readable upstream"))),
        };
        mutation.finish(version.map(|v| Some(Effect::Version(v))), response).await
    }

    pub(crate) async fn captured_delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        const OP: &str = "DeleteObject";
        let info = request_info(&req);
        let Some(capture) = self.capture_for(&req.input.bucket) else {
            return self.timed(OP, &info, self.proxy_for(&req).delete_object(req.for_sdk())).await;
        };
        let (bucket, key, version_id) = (req.input.bucket.clone(), req.input.key.clone(), req.input.version_id.clone());
        let mutation = self.mutation(&capture, OP, Op::Delete, (&bucket, &key), version_id.as_deref(), &info).await?;
        let (mutation, response) = mutation.forward(self.proxy_for(&req).delete_object(req.for_sdk())).await?;
        let marker = response.output.version_id.clone();
        let effect = after_delete(&capture, (&bucket, &key), version_id.as_deref(), marker).await;
        mutation.finish(effect, response).await
    }

    pub(crate) async fn captured_delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        const OP: &str = "DeleteObjects";
        let info = request_info(&req);
        if req.input.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema: a DeleteObjects request names at most 1000 keys.",
            ));
        }
        let Some(capture) = self.capture_for(&req.input.bucket) else {
            return self.timed(OP, &info, self.proxy_for(&req).delete_objects(req)).await;
        };
        let bucket = req.input.bucket.clone();
        let targets: Vec<(String, Option<String>)> =
            req.input.delete.objects.iter().map(|o| (o.key.clone(), o.version_id.clone())).collect();
        for (key, _) in &targets {
            self.check_key(key)?;
        }
        let actor = info.actor();
        refuse_if_tripped(&capture, &actor.access_key, &bucket)?;
        let _locks = capture
            .lock_all(&bucket, targets.iter().map(|(k, _)| k.as_str()))
            .await
            .map_err(|e| refuse(&capture, OP, &e, Applied::No))?;
        let (capture_ref, bucket_ref, actor_ref) = (&capture, &bucket, &actor);
        let protected = futures::stream::iter(targets.clone())
            .map(|(k, v)| async move { capture_ref.protect(bucket_ref, &k, v.as_deref(), actor_ref).await })
            .buffered(PROTECT_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let replaced: Vec<Option<ObjectVersion>> =
            protected.into_iter().map(|p| p.map(|p| p.replaced)).collect::<Result<_, _>>().map_err(|e| {
                capture.refused(refusal::CAPTURE_BEFORE_DESTROY);
                errors::capture_refused(OP, &e, Applied::No)
            })?;
        let existing = replaced.iter().filter(|r| r.is_some()).count() as u64;
        match capture.tripwire().before_batch(&actor.access_key, &bucket, existing).await {
            Ok(None) => {}
            Ok(Some(incident)) => {
                capture.metrics().tripwire_refused.inc();
                return Err(errors::tripwire_refused(&incident));
            }
            Err(e) => tracing::error!(error = %e, bucket, "tripwire: could not record an incident in the journal"),
        }
        let intents = join_all(targets.iter().map(|(k, _)| capture.begin(Op::Delete, &bucket, k, &actor))).await;
        let intents: Vec<Pending> =
            intents.into_iter().collect::<Result<_, _>>().map_err(|e| refuse(&capture, OP, &e, Applied::No))?;
        let response = match self.timed(OP, &info, self.proxy_for(&req).delete_objects(req)).await {
            Ok(r) => r,
            Err(e) => {
                join_all(intents.into_iter().map(|p| capture.abort(p, "the upstream refused it"))).await;
                return Err(e);
            }
        };
        let o = &response.output;
        let failed: std::collections::HashSet<(&str, Option<&str>)> = o
            .errors
            .iter()
            .flatten()
            .map(|e| (e.key.as_deref().unwrap_or_default(), e.version_id.as_deref()))
            .collect();
        let markers: std::collections::HashMap<&str, &str> = o
            .deleted
            .iter()
            .flatten()
            .filter_map(|d| Some((d.key.as_deref()?, d.delete_marker_version_id.as_deref()?)))
            .collect();
        let marker_of = |key: &str| markers.get(key).map(|m| (*m).to_owned());
        let outcomes =
            join_all(targets.iter().zip(intents).zip(&replaced).map(|(((key, version_id), pending), was)| {
                let capture = &capture;
                let failed = failed.contains(&(key.as_str(), version_id.as_deref()));
                let marker = marker_of(key);
                let (bucket, actor) = (&bucket, &actor);
                async move {
                    if failed {
                        capture.abort(pending, "the upstream refused it").await;
                        return Ok(());
                    }
                    let effect = after_delete(capture, (bucket, key), version_id.as_deref(), marker).await;
                    let watched = effect.as_ref().ok().cloned().flatten().filter(|_| capture.tripwire().enabled());
                    let committed = capture.settle(pending, effect, "a non-current version was deleted").await?;
                    if let (Some(seq), Some(effect)) = (committed, watched) {
                        capture.watch(&actor.access_key, bucket, seq, was.as_ref(), &effect, false).await;
                    }
                    Ok(())
                }
            }))
            .await;
        if let Some(Err(e)) = outcomes.into_iter().find(Result::is_err) {
            return Err(refuse(&capture, OP, &e, Applied::Upstream));
        }
        Ok(response)
    }

    pub(crate) async fn captured_put_object_tagging(
        &self,
        req: S3Request<dto::PutObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::PutObjectTaggingOutput>> {
        let info = request_info(&req);
        let tags = meta::tag_set(&req.input.tagging.tag_set);
        let (bucket, key, version) = (req.input.bucket.clone(), req.input.key.clone(), req.input.version_id.clone());
        let forward = self.proxy_for(&req).put_object_tagging(req.for_sdk());
        self.tagging("PutObjectTagging", Op::PutTagging, &info, (bucket, key, version), tags, forward).await
    }

    pub(crate) async fn captured_delete_object_tagging(
        &self,
        req: S3Request<dto::DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        let info = request_info(&req);
        let (bucket, key, version) = (req.input.bucket.clone(), req.input.key.clone(), req.input.version_id.clone());
        let forward = self.proxy_for(&req).delete_object_tagging(req.for_sdk());
        self.tagging("DeleteObjectTagging", Op::DeleteTagging, &info, (bucket, key, version), Vec::new(), forward).await
    }

    async fn tagging<O>(
        &self,
        operation: &'static str,
        op: Op,
        info: &Arc<RequestInfo>,
        (bucket, key, version_id): (String, String, Option<String>),
        tags: Vec<(String, String)>,
        forward: impl Future<Output = S3Result<S3Response<O>>>,
    ) -> S3Result<S3Response<O>> {
        let Some(capture) = self.capture_for(&bucket) else {
            return self.timed(operation, info, forward).await;
        };
        let mutation = self.mutation(&capture, operation, op, (&bucket, &key), version_id.as_deref(), info).await?;
        let current = capture.current(&bucket, &key).ok().flatten();
        let of_current = version_id.is_none() || current.is_some_and(|v| v.version_id == version_id);
        let (mutation, response) = mutation.forward(forward).await?;
        // Tags of a non-current version leave the current state unchanged.
        mutation.finish(Ok(of_current.then_some(Effect::Tags(tags))), response).await
    }

    /// CreateBucket, DeleteBucket and allowed destructive bucket configurations.
    pub(crate) async fn captured_bucket_op<O>(
        &self,
        operation: &'static str,
        op: Op,
        bucket: &str,
        info: &Arc<RequestInfo>,
        forward: impl Future<Output = S3Result<S3Response<O>>>,
    ) -> S3Result<S3Response<O>> {
        let Some(capture) = self.capture_for(bucket) else {
            return self.timed(operation, info, forward).await;
        };
        if op == Op::DeleteBucket && !bucket_is_empty(&capture, bucket).await {
            return Err(S3Error::with_message(
                S3ErrorCode::BucketNotEmpty,
                "The bucket you tried to delete is not empty.",
            ));
        }
        let mutation = self.bucket_mutation(&capture, operation, op, bucket, info).await?;
        let (mutation, response) = mutation.forward(forward).await?;
        mutation.finish(Ok(Some(Effect::Bucket)), response).await
    }

    /// A bucket configuration: forwarded as is, unless `destructive` names what it would
    /// delete behind the journal's back; then refused, or journaled when the operator
    /// allows it.
    pub(crate) async fn captured_bucket_config<O>(
        &self,
        operation: &'static str,
        bucket: &str,
        info: &Arc<RequestInfo>,
        destructive: Option<&str>,
        forward: impl Future<Output = S3Result<S3Response<O>>>,
    ) -> S3Result<S3Response<O>> {
        let Some(what) = destructive else {
            return self.timed(operation, info, forward).await;
        };
        if let Some(c) = self.capture_for(bucket).filter(|c| !c.allows_destructive_config()) {
            c.refused(refusal::DESTRUCTIVE_CONFIG);
            tracing::warn!(bucket, what, "refused a bucket configuration that would delete data behind the journal");
            if operation == "PutBucketLifecycleConfiguration" {
                let head = c.journal().head().map_or(Seq(0), |h| h.seq);
                let change = rewind_capture::tripwire::Change::ExpiringLifecycle;
                if let Err(e) = c.tripwire().observe(&info.actor().access_key, bucket, head, change).await {
                    tracing::error!(error = %e, bucket, "tripwire: could not record an incident in the journal");
                }
            }
            return Err(errors::destructive_config_refused(what));
        }
        self.captured_bucket_op(operation, Op::BucketConfig, bucket, info, forward).await
    }
}

/// Whether the upstream lists no object in `bucket`. S3 refuses to delete a non-empty
/// bucket, but not every store does (s3s-fs removed the directory, review F5): a protected
/// bucket's objects must each go through a journaled delete. A bucket that cannot be
/// listed is left for the upstream to answer for.
async fn bucket_is_empty(capture: &Capture, bucket: &str) -> bool {
    match capture.upstream().list_objects_v2().bucket(bucket).max_keys(1).send().await {
        Ok(page) => page.contents().is_empty(),
        Err(_) => true,
    }
}

/// What a delete did to the key's current state: `Deleted` for a plain delete; for a
/// version-specific one, the version now current (from the journal when it holds it, else
/// captured), `Deleted` when none is left, or `None` when the current version is unchanged.
async fn after_delete(
    capture: &Capture,
    (bucket, key): (&str, &str),
    version_id: Option<&str>,
    marker: Option<String>,
) -> Result<Option<Effect>, CaptureError> {
    if version_id.is_none() {
        return Ok(Some(Effect::Deleted { version_id: marker }));
    }
    let Some(head) = capture.head(bucket, key, None).await? else {
        return Ok(Some(Effect::Deleted { version_id: None }));
    };
    if capture.current(bucket, key)?.is_some_and(|v| v.etag == head.etag && v.version_id == head.version_id) {
        return Ok(None);
    }
    let version = match capture.journaled_version(bucket, key, &head)? {
        Some(v) => Some(v),
        None => capture.capture_upstream(bucket, key, head.version_id.as_deref()).await?,
    };
    Ok(Some(version.map_or(Effect::Deleted { version_id: None }, Effect::Version)))
}
