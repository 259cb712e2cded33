//! The S3 front: every operation s3s understands is forwarded to the upstream.
//!
//! s3s's `S3` trait answers NotImplemented for any method not written out, so every
//! operation is listed here explicitly (the macro below); forgetting one would make that
//! operation fail for clients rather than pass through. Uploads get their bodies verified
//! on the way (see `body.rs`). Three operations are refused on purpose:
//! - PostObject (browser form upload): it would write around the capture path later
//!   issues add, and s3s-aws cannot forward it;
//! - WriteGetObjectResponse: an S3 Object Lambda callback, meaningless behind a gateway;
//! - CreateSession (S3 Express): its answer is a temporary credential for the caller,
//!   which upstream is the gateway's own key, so a client would get keys that write to
//!   the upstream directly, around capture.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use s3s::dto;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use rewind_model::Op;

use crate::errors;
use crate::metrics::UpstreamMetrics;
use crate::request::RequestInfo;
use rewind_capture::Capture;
use rewind_embedded::body::{ChecksumCheck, VerifiedUpload, strip_aws_chunked};

/// Why browser-form POST uploads are refused.
pub const POST_OBJECT_REFUSAL: &str = "Browser-form POST uploads are not supported by Rewind; use PutObject.";

/// Forwards S3 operations to the upstream through aws-sdk-s3.
pub struct Forwarder {
    proxy: s3s_aws::Proxy,
    /// The same upstream without signing, for anonymous requests ([`crate::Anonymous`]).
    unsigned: s3s_aws::Proxy,
    pub(crate) upstream: aws_sdk_s3::Client,
    pub(crate) metrics: UpstreamMetrics,
    /// Captures mutations of protected buckets; `None` forwards everything as is.
    pub(crate) capture: Option<Arc<Capture>>,
    /// Keys the upstream cannot store, and why (the embedded upstream's rule): refused
    /// before any capture step, with the upstream's own answer.
    pub(crate) unstorable: Option<fn(&str) -> Option<&'static str>>,
    /// Answers requests signed with a time-travel view's key, from the journal and vault.
    pub(crate) views: Option<rewind_views::ViewServer>,
    /// Sends the reads that need no typed handling (`lean.rs`); `None` sends them typed.
    pub(crate) lean: Option<crate::LeanUpstream>,
}

impl Forwarder {
    /// A forwarder that sends every operation to `client`'s endpoint, anonymous requests
    /// through `unsigned` (the same endpoint, no credentials:
    /// `rewind_capture::upstream::unsigned_client`), capturing mutations when `capture`
    /// is given.
    pub fn new(
        client: aws_sdk_s3::Client,
        unsigned: aws_sdk_s3::Client,
        metrics: UpstreamMetrics,
        capture: Option<Arc<Capture>>,
    ) -> Self {
        // What the forwarding clients keep of an answer beyond what s3s-aws passes on.
        let forwarding = |c: &aws_sdk_s3::Client| {
            let config = c.config().to_builder().interceptor(crate::lenient::HeadTaggingCount).build();
            s3s_aws::Proxy::from(aws_sdk_s3::Client::from_conf(config))
        };
        Self {
            proxy: forwarding(&client),
            unsigned: forwarding(&unsigned),
            upstream: client,
            metrics,
            capture,
            unstorable: None,
            views: None,
            lean: None,
        }
    }

    /// Sends GetObject, HeadObject, and uploads to buckets it does not capture through
    /// `lean` instead of aws-sdk-s3.
    pub fn with_lean(mut self, lean: crate::LeanUpstream) -> Self {
        self.lean = Some(lean);
        self
    }

    /// Verifies `req`'s upload body on its way, and says which path takes it upstream: the
    /// lean one when it can carry the upload (its length known up front), else the typed
    /// one, with the client's checksum algorithm requested so that the stored object
    /// carries the same checksum.
    fn prepare_upload<T: UploadInput>(&self, req: &mut S3Request<T>, info: &Arc<RequestInfo>) -> Via<'_> {
        let length = req.input.content_length();
        if let Some(lean) = self.lean.as_ref().filter(|_| crate::lean::fits(length, req.input.body().as_ref())) {
            let body = req.input.body().take();
            let (body, framing) = crate::lean::verified(lean, req, body, length, info);
            *req.input.body() = Some(body);
            return Via::Lean(lean, framing);
        }
        let checks = ChecksumCheck::from_request(&req.headers, req.trailing_headers.clone());
        if let Some(check) = checks.iter().find(|c| c.algorithm.is_checksum())
            && req.input.checksum_algorithm().is_none()
        {
            *req.input.checksum_algorithm() = Some(dto::ChecksumAlgorithm::from_static(check.algorithm.name()));
        }
        let declared = length.and_then(|n| u64::try_from(n).ok());
        let body = req.input.body().take();
        *req.input.body() = body.map(|b| VerifiedUpload::wrap(b, declared, checks, info.clone()));
        Via::Typed
    }

    /// Sends PutObject upstream `via` one path or the other.
    pub(crate) async fn put_upstream(
        &self,
        req: S3Request<dto::PutObjectInput>,
        via: Via<'_>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        match via {
            Via::Lean(lean, framing) => crate::lean::put_object(lean, req, framing).await,
            Via::Typed => self.proxy_for(&req).put_object(crate::sdk::ForSdk::for_sdk(req)).await,
        }
    }

    /// Sends UploadPart upstream `via` one path or the other.
    pub(crate) async fn upload_part_upstream(
        &self,
        req: S3Request<dto::UploadPartInput>,
        via: Via<'_>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        match via {
            Via::Lean(lean, framing) => crate::lean::upload_part(lean, req, framing).await,
            Via::Typed => self.proxy_for(&req).upload_part(crate::sdk::ForSdk::for_sdk(req)).await,
        }
    }

    /// Refuses keys `rule` names a reason for, before anything else (see `unstorable`).
    pub fn with_key_rule(mut self, rule: fn(&str) -> Option<&'static str>) -> Self {
        self.unstorable = Some(rule);
        self
    }

    /// Answers requests signed with a time-travel view's key with `views`.
    pub fn with_views(mut self, views: rewind_views::ViewServer) -> Self {
        self.views = Some(views);
        self
    }

    /// What sends `req` upstream: signed with the gateway's key, or unsigned for an
    /// anonymous request.
    pub(crate) fn proxy_for<T>(&self, req: &S3Request<T>) -> &s3s_aws::Proxy {
        match req.extensions.get::<crate::Anonymous>() {
            Some(_) => &self.unsigned,
            None => &self.proxy,
        }
    }

    /// `InvalidArgument` when the upstream cannot store `key`.
    pub(crate) fn check_key(&self, key: &str) -> S3Result<()> {
        if rewind_capture::upstream::is_reserved_key(key) {
            let why = "Keys starting with this control character and name are reserved by Rewind.";
            return Err(S3Error::with_message(S3ErrorCode::InvalidArgument, why));
        }
        match self.unstorable.and_then(|rule| rule(key)) {
            None => Ok(()),
            Some(why) => Err(rewind_embedded::fs::unstorable_error(why)),
        }
    }

    /// Runs one upstream call, timing it and mapping its error.
    pub(crate) async fn timed<O>(
        &self,
        operation: &'static str,
        info: &RequestInfo,
        call: impl Future<Output = S3Result<S3Response<O>>>,
    ) -> S3Result<S3Response<O>> {
        let start = Instant::now();
        let result = call.await;
        self.metrics.observe(operation, result.is_ok(), start.elapsed().as_secs_f64());
        result.map_err(|e| errors::from_upstream(operation, e, info.fault()))
    }
}

/// How an upload goes upstream.
pub(crate) enum Via<'a> {
    /// Through aws-sdk-s3, its body verified by `Forwarder::prepare_upload`.
    Typed,
    /// Through the lean client, its body verified by `lean::verified`.
    Lean(&'a crate::LeanUpstream, crate::lean::Framing),
}

/// The request's shared info, inserted by the HTTP layer (a fresh one when called directly).
pub(crate) fn request_info<T>(req: &S3Request<T>) -> Arc<RequestInfo> {
    req.extensions.get::<Arc<RequestInfo>>().cloned().unwrap_or_default()
}

/// `PutObjectInput` -> `PutObject`, at compile time.
const fn operation_name(input_type: &'static str) -> &'static str {
    input_type.split_at(input_type.len() - "Input".len()).0
}

/// What [`Forwarder::prepare_upload`] touches of an upload's input.
trait UploadInput {
    fn body(&mut self) -> &mut Option<dto::StreamingBlob>;
    fn content_length(&self) -> Option<i64>;
    fn checksum_algorithm(&mut self) -> &mut Option<dto::ChecksumAlgorithm>;
}

macro_rules! upload_input {
    ($($input:ident),*) => {$(
        impl UploadInput for dto::$input {
            fn body(&mut self) -> &mut Option<dto::StreamingBlob> {
                &mut self.body
            }
            fn content_length(&self) -> Option<i64> {
                self.content_length
            }
            fn checksum_algorithm(&mut self) -> &mut Option<dto::ChecksumAlgorithm> {
                &mut self.checksum_algorithm
            }
        }
    )*};
}
upload_input!(PutObjectInput, UploadPartInput);

/// Writes the `S3` impl: the hand-written methods as given, and a forwarding method for
/// every listed operation. The impl is produced whole so that `async_trait` sees the
/// generated methods (it runs before macros inside an impl would expand).
macro_rules! impl_s3 {
    (
        custom { $($custom:item)* }
        forward { $($op:ident($input:ident) -> $output:ident $(, $key:ident)? $(via $lenient:path)? $(, lean $lean:path)?;)* }
    ) => {
        #[async_trait::async_trait]
        impl S3 for Forwarder {
            $($custom)*
            $(
                async fn $op(&self, req: S3Request<dto::$input>) -> S3Result<S3Response<dto::$output>> {
                    const OPERATION: &str = operation_name(stringify!($input));
                    // A view's request is answered from the journal and vault, never upstream.
                    if req.extensions.get::<rewind_views::ViewRequest>().is_some() {
                        return match &self.views {
                            Some(views) => S3::$op(views, req).await,
                            None => Err(S3Error::with_message(S3ErrorCode::AccessDenied, "Time-travel views are not served here.")),
                        };
                    }
                    let info = request_info(&req);
                    // A read that needs no typed handling, sent as the client sent it.
                    $(if let Some(lean) = &self.lean {
                        return self.timed(OPERATION, &info, $lean(lean, req)).await;
                    })?
                    $(let req = { let _ = stringify!($key); crate::sdk::ForSdk::for_sdk(req) };)?
                    let call = self.proxy_for(&req).$op(req);
                    // What s3s-aws loses of an answer, read again from the raw one (`crate::lenient`).
                    $(let call = async move { $lenient(call.await) };)?
                    self.timed(OPERATION, &info, call).await
                }
            )*
        }
    };
}

impl_s3! {
    custom {
    async fn put_object(&self, mut req: S3Request<dto::PutObjectInput>) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let info = request_info(&req);
        // The object's encoding, as recorded and as the typed path sends it.
        req.input.content_encoding = strip_aws_chunked(req.input.content_encoding.take());
        let via = self.prepare_upload(&mut req, &info);
        self.captured_put_object(req, via).await
    }

    async fn upload_part(&self, mut req: S3Request<dto::UploadPartInput>) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let info = request_info(&req);
        let via = self.prepare_upload(&mut req, &info);
        self.captured_upload_part(req, via).await
    }

    async fn create_multipart_upload(&self, req: S3Request<dto::CreateMultipartUploadInput>) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        self.captured_create_multipart_upload(req).await
    }

    async fn upload_part_copy(&self, req: S3Request<dto::UploadPartCopyInput>) -> S3Result<S3Response<dto::UploadPartCopyOutput>> {
        self.captured_upload_part_copy(req).await
    }

    async fn complete_multipart_upload(&self, req: S3Request<dto::CompleteMultipartUploadInput>) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        self.captured_complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(&self, req: S3Request<dto::AbortMultipartUploadInput>) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        self.captured_abort_multipart_upload(req).await
    }

    async fn copy_object(&self, req: S3Request<dto::CopyObjectInput>) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        self.captured_copy_object(req).await
    }

    async fn delete_object(&self, req: S3Request<dto::DeleteObjectInput>) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        self.captured_delete_object(req).await
    }

    async fn delete_objects(&self, req: S3Request<dto::DeleteObjectsInput>) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        self.captured_delete_objects(req).await
    }

    async fn put_object_tagging(&self, req: S3Request<dto::PutObjectTaggingInput>) -> S3Result<S3Response<dto::PutObjectTaggingOutput>> {
        self.captured_put_object_tagging(req).await
    }

    async fn delete_object_tagging(&self, req: S3Request<dto::DeleteObjectTaggingInput>) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        self.captured_delete_object_tagging(req).await
    }

    async fn create_bucket(&self, req: S3Request<dto::CreateBucketInput>) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let (info, bucket) = (request_info(&req), req.input.bucket.clone());
        self.captured_bucket_op("CreateBucket", Op::CreateBucket, &bucket, &info, self.proxy_for(&req).create_bucket(req)).await
    }

    async fn delete_bucket(&self, req: S3Request<dto::DeleteBucketInput>) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let (info, bucket) = (request_info(&req), req.input.bucket.clone());
        self.captured_bucket_op("DeleteBucket", Op::DeleteBucket, &bucket, &info, self.proxy_for(&req).delete_bucket(req)).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<dto::PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<dto::PutBucketLifecycleConfigurationOutput>> {
        const OP: &str = "PutBucketLifecycleConfiguration";
        let (info, bucket) = (request_info(&req), req.input.bucket.clone());
        let rules = req.input.lifecycle_configuration.as_ref().map(|c| c.rules.as_slice()).unwrap_or_default();
        let expires = rules.iter().any(|r| {
            r.status.as_str() == dto::ExpirationStatus::ENABLED
                && (r.expiration.is_some() || r.noncurrent_version_expiration.is_some())
        });
        let destructive = expires.then_some("a lifecycle rule that expires objects");
        self.captured_bucket_config(OP, &bucket, &info, destructive, self.proxy_for(&req).put_bucket_lifecycle_configuration(req)).await
    }

    async fn put_bucket_replication(
        &self,
        req: S3Request<dto::PutBucketReplicationInput>,
    ) -> S3Result<S3Response<dto::PutBucketReplicationOutput>> {
        const OP: &str = "PutBucketReplication";
        let (info, bucket) = (request_info(&req), req.input.bucket.clone());
        let deletes = req.input.replication_configuration.rules.iter().any(|r| {
            r.delete_marker_replication.as_ref().and_then(|d| d.status.as_ref()).is_some_and(|s| s.as_str() == dto::DeleteMarkerReplicationStatus::ENABLED)
        });
        let destructive = deletes.then_some("replication of deletes");
        self.captured_bucket_config(OP, &bucket, &info, destructive, self.proxy_for(&req).put_bucket_replication(req)).await
    }

    async fn post_object(&self, _req: S3Request<dto::PostObjectInput>) -> S3Result<S3Response<dto::PostObjectOutput>> {
        // Normally refused by the HTTP layer before s3s reads the form (front.rs).
        Err(S3Error::with_message(S3ErrorCode::NotImplemented, POST_OBJECT_REFUSAL))
    }

    async fn write_get_object_response(
        &self,
        _req: S3Request<dto::WriteGetObjectResponseInput>,
    ) -> S3Result<S3Response<dto::WriteGetObjectResponseOutput>> {
        Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "WriteGetObjectResponse is an S3 Object Lambda callback and is not available through Rewind.",
        ))
    }


    async fn create_session(&self, _req: S3Request<dto::CreateSessionInput>) -> S3Result<S3Response<dto::CreateSessionOutput>> {
        Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "CreateSession is not available through Rewind: it would hand out upstream credentials that bypass the journal.",
        ))
    }

    }
    forward {
        create_bucket_metadata_table_configuration(CreateBucketMetadataTableConfigurationInput) -> CreateBucketMetadataTableConfigurationOutput;
        delete_bucket_analytics_configuration(DeleteBucketAnalyticsConfigurationInput) -> DeleteBucketAnalyticsConfigurationOutput;
        delete_bucket_cors(DeleteBucketCorsInput) -> DeleteBucketCorsOutput;
        delete_bucket_encryption(DeleteBucketEncryptionInput) -> DeleteBucketEncryptionOutput;
        delete_bucket_intelligent_tiering_configuration(DeleteBucketIntelligentTieringConfigurationInput) -> DeleteBucketIntelligentTieringConfigurationOutput;
        delete_bucket_inventory_configuration(DeleteBucketInventoryConfigurationInput) -> DeleteBucketInventoryConfigurationOutput;
        delete_bucket_lifecycle(DeleteBucketLifecycleInput) -> DeleteBucketLifecycleOutput;
        delete_bucket_metadata_table_configuration(DeleteBucketMetadataTableConfigurationInput) -> DeleteBucketMetadataTableConfigurationOutput;
        delete_bucket_metrics_configuration(DeleteBucketMetricsConfigurationInput) -> DeleteBucketMetricsConfigurationOutput;
        delete_bucket_ownership_controls(DeleteBucketOwnershipControlsInput) -> DeleteBucketOwnershipControlsOutput;
        delete_bucket_policy(DeleteBucketPolicyInput) -> DeleteBucketPolicyOutput;
        delete_bucket_replication(DeleteBucketReplicationInput) -> DeleteBucketReplicationOutput;
        delete_bucket_tagging(DeleteBucketTaggingInput) -> DeleteBucketTaggingOutput;
        delete_bucket_website(DeleteBucketWebsiteInput) -> DeleteBucketWebsiteOutput;
        delete_public_access_block(DeletePublicAccessBlockInput) -> DeletePublicAccessBlockOutput;
        get_bucket_accelerate_configuration(GetBucketAccelerateConfigurationInput) -> GetBucketAccelerateConfigurationOutput;
        get_bucket_acl(GetBucketAclInput) -> GetBucketAclOutput;
        get_bucket_analytics_configuration(GetBucketAnalyticsConfigurationInput) -> GetBucketAnalyticsConfigurationOutput;
        get_bucket_cors(GetBucketCorsInput) -> GetBucketCorsOutput;
        get_bucket_encryption(GetBucketEncryptionInput) -> GetBucketEncryptionOutput;
        get_bucket_intelligent_tiering_configuration(GetBucketIntelligentTieringConfigurationInput) -> GetBucketIntelligentTieringConfigurationOutput;
        get_bucket_inventory_configuration(GetBucketInventoryConfigurationInput) -> GetBucketInventoryConfigurationOutput;
        get_bucket_lifecycle_configuration(GetBucketLifecycleConfigurationInput) -> GetBucketLifecycleConfigurationOutput;
        get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
        get_bucket_logging(GetBucketLoggingInput) -> GetBucketLoggingOutput;
        get_bucket_metadata_table_configuration(GetBucketMetadataTableConfigurationInput) -> GetBucketMetadataTableConfigurationOutput;
        get_bucket_metrics_configuration(GetBucketMetricsConfigurationInput) -> GetBucketMetricsConfigurationOutput;
        get_bucket_notification_configuration(GetBucketNotificationConfigurationInput) -> GetBucketNotificationConfigurationOutput;
        get_bucket_ownership_controls(GetBucketOwnershipControlsInput) -> GetBucketOwnershipControlsOutput;
        get_bucket_policy(GetBucketPolicyInput) -> GetBucketPolicyOutput;
        get_bucket_policy_status(GetBucketPolicyStatusInput) -> GetBucketPolicyStatusOutput;
        get_bucket_replication(GetBucketReplicationInput) -> GetBucketReplicationOutput;
        get_bucket_request_payment(GetBucketRequestPaymentInput) -> GetBucketRequestPaymentOutput;
        get_bucket_tagging(GetBucketTaggingInput) -> GetBucketTaggingOutput;
        get_bucket_versioning(GetBucketVersioningInput) -> GetBucketVersioningOutput via crate::lenient::get_bucket_versioning;
        get_bucket_website(GetBucketWebsiteInput) -> GetBucketWebsiteOutput;
        get_object(GetObjectInput) -> GetObjectOutput, key via crate::lenient::with_error_headers::<aws_sdk_s3::operation::get_object::GetObjectError, _>, lean crate::lean::get_object;
        get_object_acl(GetObjectAclInput) -> GetObjectAclOutput, key;
        get_object_attributes(GetObjectAttributesInput) -> GetObjectAttributesOutput, key;
        get_object_legal_hold(GetObjectLegalHoldInput) -> GetObjectLegalHoldOutput, key;
        get_object_lock_configuration(GetObjectLockConfigurationInput) -> GetObjectLockConfigurationOutput;
        get_object_retention(GetObjectRetentionInput) -> GetObjectRetentionOutput, key;
        get_object_tagging(GetObjectTaggingInput) -> GetObjectTaggingOutput, key;
        get_object_torrent(GetObjectTorrentInput) -> GetObjectTorrentOutput, key;
        get_public_access_block(GetPublicAccessBlockInput) -> GetPublicAccessBlockOutput;
        head_bucket(HeadBucketInput) -> HeadBucketOutput;
        head_object(HeadObjectInput) -> HeadObjectOutput, key via crate::lenient::head_object, lean crate::lean::head_object;
        list_bucket_analytics_configurations(ListBucketAnalyticsConfigurationsInput) -> ListBucketAnalyticsConfigurationsOutput;
        list_bucket_intelligent_tiering_configurations(ListBucketIntelligentTieringConfigurationsInput) -> ListBucketIntelligentTieringConfigurationsOutput;
        list_bucket_inventory_configurations(ListBucketInventoryConfigurationsInput) -> ListBucketInventoryConfigurationsOutput;
        list_bucket_metrics_configurations(ListBucketMetricsConfigurationsInput) -> ListBucketMetricsConfigurationsOutput;
        list_buckets(ListBucketsInput) -> ListBucketsOutput;
        list_directory_buckets(ListDirectoryBucketsInput) -> ListDirectoryBucketsOutput;
        list_multipart_uploads(ListMultipartUploadsInput) -> ListMultipartUploadsOutput;
        list_object_versions(ListObjectVersionsInput) -> ListObjectVersionsOutput;
        list_objects(ListObjectsInput) -> ListObjectsOutput;
        list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output;
        list_parts(ListPartsInput) -> ListPartsOutput, key;
        put_bucket_accelerate_configuration(PutBucketAccelerateConfigurationInput) -> PutBucketAccelerateConfigurationOutput;
        put_bucket_acl(PutBucketAclInput) -> PutBucketAclOutput;
        put_bucket_analytics_configuration(PutBucketAnalyticsConfigurationInput) -> PutBucketAnalyticsConfigurationOutput;
        put_bucket_cors(PutBucketCorsInput) -> PutBucketCorsOutput;
        put_bucket_encryption(PutBucketEncryptionInput) -> PutBucketEncryptionOutput;
        put_bucket_intelligent_tiering_configuration(PutBucketIntelligentTieringConfigurationInput) -> PutBucketIntelligentTieringConfigurationOutput;
        put_bucket_inventory_configuration(PutBucketInventoryConfigurationInput) -> PutBucketInventoryConfigurationOutput;
        put_bucket_logging(PutBucketLoggingInput) -> PutBucketLoggingOutput;
        put_bucket_metrics_configuration(PutBucketMetricsConfigurationInput) -> PutBucketMetricsConfigurationOutput;
        put_bucket_notification_configuration(PutBucketNotificationConfigurationInput) -> PutBucketNotificationConfigurationOutput;
        put_bucket_ownership_controls(PutBucketOwnershipControlsInput) -> PutBucketOwnershipControlsOutput;
        put_bucket_policy(PutBucketPolicyInput) -> PutBucketPolicyOutput;
        put_bucket_request_payment(PutBucketRequestPaymentInput) -> PutBucketRequestPaymentOutput;
        put_bucket_tagging(PutBucketTaggingInput) -> PutBucketTaggingOutput;
        put_bucket_versioning(PutBucketVersioningInput) -> PutBucketVersioningOutput;
        put_bucket_website(PutBucketWebsiteInput) -> PutBucketWebsiteOutput;
        put_object_acl(PutObjectAclInput) -> PutObjectAclOutput, key;
        put_object_legal_hold(PutObjectLegalHoldInput) -> PutObjectLegalHoldOutput, key;
        put_object_lock_configuration(PutObjectLockConfigurationInput) -> PutObjectLockConfigurationOutput;
        put_object_retention(PutObjectRetentionInput) -> PutObjectRetentionOutput, key;
        put_public_access_block(PutPublicAccessBlockInput) -> PutPublicAccessBlockOutput;
        restore_object(RestoreObjectInput) -> RestoreObjectOutput, key;
        select_object_content(SelectObjectContentInput) -> SelectObjectContentOutput, key;
    }
}
