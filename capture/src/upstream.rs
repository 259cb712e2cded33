//! The upstream S3 endpoint's client.

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_smithy_types::timeout::TimeoutConfig;
use rewind_config::{ChecksumPolicy, Secret, UpstreamConfig};

/// Where the upstream is and how to sign for it.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    /// Endpoint URL.
    pub endpoint: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret key.
    pub secret: Secret,
}

/// Builds the aws-sdk-s3 client the gateway forwards with (and captures, restores and
/// reconciles through).
pub fn client(cfg: &UpstreamConfig, target: &UpstreamTarget) -> aws_sdk_s3::Client {
    let credentials = Credentials::new(&target.access_key_id, target.secret.expose(), None, None, "rewind-upstream");
    let checksums = match cfg.request_checksum_calculation {
        ChecksumPolicy::WhenSupported => RequestChecksumCalculation::WhenSupported,
        ChecksumPolicy::WhenRequired => RequestChecksumCalculation::WhenRequired,
    };
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&target.endpoint)
        .region(Region::new(cfg.region.clone()))
        .credentials_provider(credentials)
        .force_path_style(cfg.force_path_style)
        .request_checksum_calculation(checksums)
        // Clients validate what they asked for; validating again here costs CPU per byte.
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(TimeoutConfig::builder().connect_timeout(cfg.connect_timeout.0).build())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}
