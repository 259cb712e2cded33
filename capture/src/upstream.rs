//! The upstream S3 endpoint's client.
//!
//! aws-sdk-s3 takes a key of only whitespace (" ", "\t") for a missing one and will not
//! send the request, where S3 stores such keys like any other. Every key handed to the SDK
//! goes through [`sdk_key`]: such a key travels as a stand-in the SDK accepts, which the
//! client's [`BlankKeys`] interceptor turns back into the key in the request's path before
//! the request is signed.

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use std::borrow::Cow;
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
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
    aws_sdk_s3::Client::from_conf(builder(cfg, target).credentials_provider(credentials).build())
}

/// The same client without credentials: it sends requests unsigned, for the anonymous
/// requests the gateway forwards (`server.allow_anonymous`), so the upstream's policies
/// judge them, never the gateway's own key.
pub fn unsigned_client(cfg: &UpstreamConfig, target: &UpstreamTarget) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(builder(cfg, target).allow_no_auth().build())
}

/// Beyond the SDK's own grace (nothing moving for 5 s), how long a paced body may rest.
const STALL_MARGIN: Duration = Duration::from_secs(5);

/// How long a body the gateway paces may rest: a captured body waits for the vault's
/// memory budget (up to `vault.capture_timeout` per wait), a client's body for its client
/// (up to `server.body_idle_timeout`).
pub fn longest_rest(config: &rewind_config::Config) -> Duration {
    config.vault.capture_timeout.0.max(config.server.body_idle_timeout.0)
}

/// How long a transfer whose bodies may rest up to `wait` may move nothing before it is
/// given up as stalled: `wait` and a margin.
pub fn stall_grace(wait: Duration) -> Duration {
    wait + STALL_MARGIN
}

/// `client` for bodies the gateway paces, which may rest up to `wait`: a captured body waits
/// for the vault's memory budget (up to `vault.capture_timeout` per wait), a client's body
/// for its client (up to `server.body_idle_timeout`). The SDK's stall check ends a transfer
/// that moves nothing for 5 s; it cut off writers that only had to wait their turn (503 to
/// the back of 16 concurrent 64 MiB uploads). It now allows `wait` and a margin, so it
/// still ends a transfer an upstream has stopped serving.
pub fn paced(client: &aws_sdk_s3::Client, wait: Duration) -> aws_sdk_s3::Client {
    let stalls = StalledStreamProtectionConfig::enabled().grace_period(stall_grace(wait)).build();
    aws_sdk_s3::Client::from_conf(client.config().to_builder().stalled_stream_protection(stalls).build())
}

fn builder(cfg: &UpstreamConfig, target: &UpstreamTarget) -> aws_sdk_s3::config::Builder {
    let checksums = match cfg.request_checksum_calculation {
        ChecksumPolicy::WhenSupported => RequestChecksumCalculation::WhenSupported,
        ChecksumPolicy::WhenRequired => RequestChecksumCalculation::WhenRequired,
    };
    aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&target.endpoint)
        .region(Region::new(cfg.region.clone()))
        .force_path_style(cfg.force_path_style)
        .request_checksum_calculation(checksums)
        // Clients validate what they asked for; validating again here costs CPU per byte.
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(TimeoutConfig::builder().connect_timeout(cfg.connect_timeout.0).build())
        .interceptor(BlankKeys)
}

/// Starts a blank key's stand-in: a control character, which keys in practice never hold.
const BLANK_KEY_MARK: &str = "\u{1}rewind-blank-key\u{1}";
/// The mark as it appears in a request's path.
const BLANK_KEY_MARK_ENCODED: &str = "%01rewind-blank-key%01";

/// The key to give aws-sdk-s3 for `key`: itself, or for a key of only whitespace, a
/// stand-in that carries it (the mark, then the key's bytes in hex).
pub fn sdk_key(key: &str) -> Cow<'_, str> {
    if key.is_empty() || !key.trim().is_empty() {
        return Cow::Borrowed(key);
    }
    Cow::Owned(format!("{BLANK_KEY_MARK}{}", hex::encode(key)))
}

/// [`sdk_key`] in place, for an input about to be handed to the SDK.
pub fn to_sdk_key(key: &mut String) {
    if let Cow::Owned(stand_in) = sdk_key(key) {
        *key = stand_in;
    }
}

/// Whether a client's key could be taken for a stand-in (refused: it is reserved).
pub fn is_reserved_key(key: &str) -> bool {
    key.starts_with(BLANK_KEY_MARK)
}

/// Puts blank keys back in place of their stand-ins (see the module's comment).
#[derive(Debug)]
struct BlankKeys;

impl Intercept for BlankKeys {
    fn name(&self) -> &'static str {
        "RewindBlankKeys"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        if let Some(uri) = with_blank_key(request.uri()) {
            request.set_uri(uri)?;
        }
        Ok(())
    }
}

/// `uri` with a stand-in's encoding replaced by its key's, if it holds one.
fn with_blank_key(uri: &str) -> Option<String> {
    let start = uri.find(BLANK_KEY_MARK_ENCODED)?;
    let digits = start + BLANK_KEY_MARK_ENCODED.len();
    let end = uri[digits..].find(|c: char| !c.is_ascii_hexdigit()).map_or(uri.len(), |n| digits + n);
    let key = hex::decode(&uri[digits..end]).ok()?;
    let encoded: String = key.iter().map(|b| format!("%{b:02X}")).collect();
    Some(format!("{}{encoded}{}", &uri[..start], &uri[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_keys_travel_as_stand_ins_and_come_back_in_the_path() {
        assert_eq!(sdk_key("a b"), "a b");
        assert_eq!(sdk_key(""), "");
        let stand_in = sdk_key(" \t");
        assert!(is_reserved_key(&stand_in));
        let uri = format!("http://127.0.0.1:9000/bkt/%01rewind-blank-key%01{}?x-id=PutObject", hex::encode(" \t"));
        assert_eq!(with_blank_key(&uri).unwrap(), "http://127.0.0.1:9000/bkt/%20%09?x-id=PutObject");
        assert_eq!(with_blank_key("http://h/bkt/key"), None);
    }
}
