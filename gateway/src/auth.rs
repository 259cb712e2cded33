//! Who may talk to the gateway, and how requests name their bucket.
//!
//! Authentication is mandatory: s3s skips both signature checks and the access hooks
//! when no `S3Auth` is set, so the service builder always gets [`ClientKeys`].

use std::collections::HashMap;
use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::{S3Result, s3_error};

use crate::request::{RequestInfo, Resolved};

/// The client access keys the gateway accepts; never the upstream's.
pub struct ClientKeys {
    keys: HashMap<String, SecretKey>,
}

impl ClientKeys {
    /// Builds the key table from (access key id, secret) pairs.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let keys = pairs.into_iter().map(|(id, secret)| (id.to_owned(), SecretKey::from(secret))).collect();
        Self { keys }
    }
}

#[async_trait::async_trait]
impl S3Auth for ClientKeys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.keys.get(access_key) {
            Some(secret) => Ok(secret.clone()),
            // The error AWS gives, so SDKs report "wrong key" rather than a signing bug.
            None => {
                Err(s3_error!(InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records."))
            }
        }
    }
}

/// Runs after authentication, once s3s knows the operation: refuses anonymous requests and
/// oversized XML bodies, and records the operation and names for the request's log line
/// and metrics.
pub struct AccessPolicy {
    /// Largest request body accepted for operations that s3s reads whole (XML inputs).
    pub max_xml_body: u64,
}

/// The longest a presigned URL may be valid, as S3 defines it (7 days).
const MAX_PRESIGNED_EXPIRY_SECS: u64 = 7 * 24 * 3600;

/// Operations whose request body is streamed rather than read whole into memory.
const STREAMING_BODY_OPERATIONS: [&str; 3] = ["PutObject", "UploadPart", "PostObject"];

#[async_trait::async_trait]
impl S3Access for AccessPolicy {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let operation = cx.s3_op().name().to_owned();
        let resolved = Resolved {
            operation: Some(operation.clone()),
            bucket: cx.s3_path().get_bucket_name().map(str::to_owned),
            key: cx.s3_path().get_object_key().map(str::to_owned),
            access_key: cx.credentials().map(|c| c.access_key.clone()),
        };
        let anonymous = resolved.access_key.is_none();
        if let Some(info) = cx.extensions_mut().get::<Arc<RequestInfo>>() {
            info.resolve(resolved);
        }
        if anonymous {
            return Err(s3_error!(
                AccessDenied,
                "Anonymous access is not allowed; sign requests with a Rewind access key."
            ));
        }
        // s3s 0.14 accepts any X-Amz-Expires; a leaked URL must not stay valid for years.
        let expires = cx.uri().query().and_then(|q| {
            q.split('&').find_map(|kv| kv.strip_prefix("X-Amz-Expires=")).and_then(|v| v.parse::<u64>().ok())
        });
        if expires.is_some_and(|e| e > MAX_PRESIGNED_EXPIRY_SECS) {
            return Err(s3_error!(
                AuthorizationQueryParametersError,
                "X-Amz-Expires must be less than a week (in seconds) that is 604800"
            ));
        }
        // s3s enforces this limit too, but answers a streamed oversized body with 500
        // InternalError; refusing on the declared length gives the client the right error.
        let declared =
            cx.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if !STREAMING_BODY_OPERATIONS.contains(&operation.as_str()) && declared.is_some_and(|n| n > self.max_xml_body) {
            return Err(s3_error!(
                MaxMessageLengthExceeded,
                "Your request was too big: the limit for this operation's body is {} bytes.",
                self.max_xml_body
            ));
        }
        Ok(())
    }
}

/// Virtual-host addressing for the configured base domains. Unlike s3s's `SingleDomain`,
/// a host that is not under a base domain is path-style, not a bucket name, so
/// `localhost:9000` and `gateway.internal` keep working.
pub struct VirtualHosts {
    domains: Vec<String>,
}

impl VirtualHosts {
    /// Base domains, e.g. `["localhost", "s3.example.com"]`.
    pub fn new(domains: Vec<String>) -> Self {
        Self { domains }
    }
}

impl S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = strip_port(host);
        for domain in &self.domains {
            if name.eq_ignore_ascii_case(domain) {
                return Ok(VirtualHost::new(domain.as_str()));
            }
            let bucket = name
                .len()
                .checked_sub(domain.len() + 1)
                .filter(|&cut| name.is_char_boundary(cut) && name[cut + 1..].eq_ignore_ascii_case(domain))
                .filter(|&cut| name.as_bytes()[cut] == b'.')
                .map(|cut| &name[..cut]);
            if let Some(bucket) = bucket {
                return Ok(VirtualHost::new(domain.as_str()).with_bucket(bucket));
            }
        }
        Ok(VirtualHost::new(host))
    }
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(hosts: &VirtualHosts, host: &str) -> (String, Option<String>) {
        let vh = hosts.parse_host_header(host).unwrap();
        (vh.domain().to_owned(), vh.bucket().map(str::to_owned))
    }

    #[test]
    fn virtual_hosts_split_bucket_from_base_domain() {
        let hosts = VirtualHosts::new(vec!["localhost".into(), "s3.example.com".into()]);
        assert_eq!(parse(&hosts, "photos.localhost:9000").1.as_deref(), Some("photos"));
        assert_eq!(parse(&hosts, "my.dotted.bucket.s3.example.com").1.as_deref(), Some("my.dotted.bucket"));
        assert_eq!(parse(&hosts, "localhost:9000").1, None);
        assert_eq!(parse(&hosts, "S3.Example.COM").1, None);
        // Not under a base domain: path-style, never a bucket.
        assert_eq!(parse(&hosts, "gateway.internal:9000").1, None);
        assert_eq!(parse(&hosts, "xlocalhost").1, None);
    }
}
