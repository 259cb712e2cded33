//! The S3 front: every operation s3s understands is forwarded to the upstream.
//!
//! s3s's `S3` trait answers NotImplemented for any method not written out, so every
//! operation is listed here explicitly (the macro below); forgetting one would make that
//! operation fail for clients rather than pass through. Uploads get their bodies verified
//! on the way (see `body.rs`). Two operations are refused on purpose:
//! - PostObject (browser form upload): it would write around the capture path later
//!   issues add, and s3s-aws cannot forward it;
//! - WriteGetObjectResponse: an S3 Object Lambda callback, meaningless behind a gateway.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use s3s::dto;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::body::{ChecksumCheck, VerifiedUpload, strip_aws_chunked};
use crate::errors;
use crate::metrics::Metrics;
use crate::request::RequestInfo;

/// Why browser-form POST uploads are refused.
pub const POST_OBJECT_REFUSAL: &str = "Browser-form POST uploads are not supported by Rewind; use PutObject.";

/// Forwards S3 operations to the upstream through aws-sdk-s3.
pub struct Forwarder {
    proxy: s3s_aws::Proxy,
    metrics: Metrics,
}

impl Forwarder {
    /// A forwarder that sends every operation to `client`'s endpoint.
    pub fn new(client: aws_sdk_s3::Client, metrics: Metrics) -> Self {
        Self { proxy: s3s_aws::Proxy::from(client), metrics }
    }

    /// Runs one upstream call, timing it and mapping its error.
    async fn timed<O>(
        &self,
        operation: &'static str,
        info: &RequestInfo,
        call: impl Future<Output = S3Result<S3Response<O>>>,
    ) -> S3Result<S3Response<O>> {
        let start = Instant::now();
        let result = call.await;
        self.metrics.observe_upstream(operation, result.is_ok(), start.elapsed().as_secs_f64());
        result.map_err(|e| errors::from_upstream(operation, e, info.fault()))
    }
}

/// The request's shared info, inserted by the HTTP layer (a fresh one when called directly).
fn request_info<T>(req: &S3Request<T>) -> Arc<RequestInfo> {
    req.extensions.get::<Arc<RequestInfo>>().cloned().unwrap_or_default()
}

/// `PutObjectInput` -> `PutObject`, at compile time.
const fn operation_name(input_type: &'static str) -> &'static str {
    input_type.split_at(input_type.len() - "Input".len()).0
}

/// Prepares an upload's body for forwarding: verified, counted, and with the client's
/// checksum algorithm requested upstream so the stored object carries the same checksum.
fn verified_body(
    body: Option<dto::StreamingBlob>,
    content_length: Option<i64>,
    checksum_algorithm: &mut Option<dto::ChecksumAlgorithm>,
    check: Option<ChecksumCheck>,
    info: &Arc<RequestInfo>,
) -> Option<dto::StreamingBlob> {
    if let Some(check) = &check
        && checksum_algorithm.is_none()
    {
        *checksum_algorithm = Some(dto::ChecksumAlgorithm::from_static(check.algorithm.name()));
    }
    let declared = content_length.and_then(|n| u64::try_from(n).ok());
    body.map(|b| VerifiedUpload::wrap(b, declared, check, info.clone()))
}

/// Writes the `S3` impl: the hand-written methods as given, and a forwarding method for
/// every listed operation. The impl is produced whole so that `async_trait` sees the
/// generated methods (it runs before macros inside an impl would expand).
macro_rules! impl_s3 {
    (
        custom { $($custom:item)* }
        forward { $($op:ident($input:ident) -> $output:ident;)* }
    ) => {
        #[async_trait::async_trait]
        impl S3 for Forwarder {
            $($custom)*
            $(
                async fn $op(&self, req: S3Request<dto::$input>) -> S3Result<S3Response<dto::$output>> {
                    const OPERATION: &str = operation_name(stringify!($input));
                    let info = request_info(&req);
                    self.timed(OPERATION, &info, self.proxy.$op(req)).await
                }
            )*
        }
    };
}

impl_s3! {
    custom {
    async fn put_object(&self, mut req: S3Request<dto::PutObjectInput>) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let info = request_info(&req);
        let check = ChecksumCheck::from_request(&req.headers, req.trailing_headers.clone());
        let input = &mut req.input;
        input.content_encoding = strip_aws_chunked(input.content_encoding.take());
        input.body = verified_body(input.body.take(), input.content_length, &mut input.checksum_algorithm, check, &info);
        self.timed("PutObject", &info, self.proxy.put_object(req)).await
    }

    async fn upload_part(&self, mut req: S3Request<dto::UploadPartInput>) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let info = request_info(&req);
        let check = ChecksumCheck::from_request(&req.headers, req.trailing_headers.clone());
        let input = &mut req.input;
        input.body = verified_body(input.body.take(), input.content_length, &mut input.checksum_algorithm, check, &info);
        self.timed("UploadPart", &info, self.proxy.upload_part(req)).await
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

    }
    forward {
        abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
        complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
        copy_object(CopyObjectInput) -> CopyObjectOutput;
        create_bucket(CreateBucketInput) -> CreateBucketOutput;
        create_bucket_metadata_table_configuration(CreateBucketMetadataTableConfigurationInput) -> CreateBucketMetadataTableConfigurationOutput;
        create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
        create_session(CreateSessionInput) -> CreateSessionOutput;
        delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
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
        delete_object(DeleteObjectInput) -> DeleteObjectOutput;
        delete_object_tagging(DeleteObjectTaggingInput) -> DeleteObjectTaggingOutput;
        delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
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
        get_bucket_versioning(GetBucketVersioningInput) -> GetBucketVersioningOutput;
        get_bucket_website(GetBucketWebsiteInput) -> GetBucketWebsiteOutput;
        get_object(GetObjectInput) -> GetObjectOutput;
        get_object_acl(GetObjectAclInput) -> GetObjectAclOutput;
        get_object_attributes(GetObjectAttributesInput) -> GetObjectAttributesOutput;
        get_object_legal_hold(GetObjectLegalHoldInput) -> GetObjectLegalHoldOutput;
        get_object_lock_configuration(GetObjectLockConfigurationInput) -> GetObjectLockConfigurationOutput;
        get_object_retention(GetObjectRetentionInput) -> GetObjectRetentionOutput;
        get_object_tagging(GetObjectTaggingInput) -> GetObjectTaggingOutput;
        get_object_torrent(GetObjectTorrentInput) -> GetObjectTorrentOutput;
        get_public_access_block(GetPublicAccessBlockInput) -> GetPublicAccessBlockOutput;
        head_bucket(HeadBucketInput) -> HeadBucketOutput;
        head_object(HeadObjectInput) -> HeadObjectOutput;
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
        list_parts(ListPartsInput) -> ListPartsOutput;
        put_bucket_accelerate_configuration(PutBucketAccelerateConfigurationInput) -> PutBucketAccelerateConfigurationOutput;
        put_bucket_acl(PutBucketAclInput) -> PutBucketAclOutput;
        put_bucket_analytics_configuration(PutBucketAnalyticsConfigurationInput) -> PutBucketAnalyticsConfigurationOutput;
        put_bucket_cors(PutBucketCorsInput) -> PutBucketCorsOutput;
        put_bucket_encryption(PutBucketEncryptionInput) -> PutBucketEncryptionOutput;
        put_bucket_intelligent_tiering_configuration(PutBucketIntelligentTieringConfigurationInput) -> PutBucketIntelligentTieringConfigurationOutput;
        put_bucket_inventory_configuration(PutBucketInventoryConfigurationInput) -> PutBucketInventoryConfigurationOutput;
        put_bucket_lifecycle_configuration(PutBucketLifecycleConfigurationInput) -> PutBucketLifecycleConfigurationOutput;
        put_bucket_logging(PutBucketLoggingInput) -> PutBucketLoggingOutput;
        put_bucket_metrics_configuration(PutBucketMetricsConfigurationInput) -> PutBucketMetricsConfigurationOutput;
        put_bucket_notification_configuration(PutBucketNotificationConfigurationInput) -> PutBucketNotificationConfigurationOutput;
        put_bucket_ownership_controls(PutBucketOwnershipControlsInput) -> PutBucketOwnershipControlsOutput;
        put_bucket_policy(PutBucketPolicyInput) -> PutBucketPolicyOutput;
        put_bucket_replication(PutBucketReplicationInput) -> PutBucketReplicationOutput;
        put_bucket_request_payment(PutBucketRequestPaymentInput) -> PutBucketRequestPaymentOutput;
        put_bucket_tagging(PutBucketTaggingInput) -> PutBucketTaggingOutput;
        put_bucket_versioning(PutBucketVersioningInput) -> PutBucketVersioningOutput;
        put_bucket_website(PutBucketWebsiteInput) -> PutBucketWebsiteOutput;
        put_object_acl(PutObjectAclInput) -> PutObjectAclOutput;
        put_object_legal_hold(PutObjectLegalHoldInput) -> PutObjectLegalHoldOutput;
        put_object_lock_configuration(PutObjectLockConfigurationInput) -> PutObjectLockConfigurationOutput;
        put_object_retention(PutObjectRetentionInput) -> PutObjectRetentionOutput;
        put_object_tagging(PutObjectTaggingInput) -> PutObjectTaggingOutput;
        put_public_access_block(PutPublicAccessBlockInput) -> PutPublicAccessBlockOutput;
        restore_object(RestoreObjectInput) -> RestoreObjectOutput;
        select_object_content(SelectObjectContentInput) -> SelectObjectContentOutput;
        upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
    }
}
