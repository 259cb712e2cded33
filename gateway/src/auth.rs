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

use rewind_views::{ViewKeys, ViewRequest};

use rewind_forward::request::{RequestInfo, Resolved};

/// The client access keys the gateway accepts; never the upstream's. Cheap to clone: the
/// S3 service (SigV4) and the HTTP layer (SigV2, see `sigv2.rs`) share one table.
/// Time-travel views' keys (`rewind_views::ViewKeys`) are looked up after the configured
/// ones.
#[derive(Clone)]
pub struct ClientKeys {
    keys: Arc<HashMap<String, SecretKey>>,
    views: Option<ViewKeys>,
}

impl ClientKeys {
    /// Builds the key table from (access key id, secret) pairs.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let keys = pairs.into_iter().map(|(id, secret)| (id.to_owned(), SecretKey::from(secret))).collect();
        Self { keys: Arc::new(keys), views: None }
    }

    /// Also accepts the keys of the open time-travel views in `views`.
    pub fn with_views(mut self, views: ViewKeys) -> Self {
        self.views = Some(views);
        self
    }

    /// The secret of `access_key`, if it is one of ours or an open view's.
    pub fn secret(&self, access_key: &str) -> Option<String> {
        match self.keys.get(access_key) {
            Some(secret) => Some(secret.expose().to_owned()),
            None => self.views.as_ref()?.secret(access_key),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for ClientKeys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let view_secret = || self.views.as_ref()?.secret(access_key).map(SecretKey::from);
        match self.keys.get(access_key).cloned().or_else(view_secret) {
            Some(secret) => Ok(secret),
            // The error AWS gives, so SDKs report "wrong key" rather than a signing bug.
            None => {
                Err(s3_error!(InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records."))
            }
        }
    }
}

/// Runs after authentication, once s3s knows the operation: refuses anonymous requests
/// (or marks them to be forwarded unsigned) and
/// oversized XML bodies, and records the operation and names for the request's log line
/// and metrics.
pub struct AccessPolicy {
    /// Largest request body accepted for operations that s3s reads whole (XML inputs).
    pub max_xml_body: u64,
    /// Time-travel views: a request signed with a view's key may only read, and is marked
    /// for the view server (never the upstream).
    pub views: Option<ViewKeys>,
    /// Forward anonymous requests (unsigned, see `server.allow_anonymous`) or refuse them.
    pub allow_anonymous: bool,
}

/// Operations whose request body is streamed rather than read whole into memory.
const STREAMING_BODY_OPERATIONS: [&str; 3] = ["PutObject", "UploadPart", "PostObject"];

#[async_trait::async_trait]
impl S3Access for AccessPolicy {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let operation = cx.s3_op().name().to_owned();
        let info = cx.extensions_mut().get::<Arc<RequestInfo>>().cloned();
        // SigV4 is verified by s3s; SigV2 by the HTTP layer, which then strips it.
        let signed_v2 = info.as_ref().and_then(|i| i.signed_v2().map(str::to_owned));
        let resolved = Resolved {
            operation: Some(operation.clone()),
            bucket: cx.s3_path().get_bucket_name().map(str::to_owned),
            key: cx.s3_path().get_object_key().map(str::to_owned),
            access_key: cx.credentials().map(|c| c.access_key.clone()).or(signed_v2),
        };
        let access_key = resolved.access_key.clone();
        let anonymous = access_key.is_none();
        if let Some(info) = info {
            info.resolve(resolved);
        }
        if anonymous && !self.allow_anonymous {
            return Err(s3_error!(
                AccessDenied,
                "Anonymous access is not allowed; sign requests with a Rewind access key."
            ));
        }
        if anonymous {
            cx.extensions_mut().insert(rewind_forward::Anonymous);
        }
        let view = access_key.as_deref().and_then(|k| self.views.as_ref()?.open_view(k));
        if let Some(view) = view {
            if !rewind_views::SERVED.contains(&operation.as_str()) {
                return Err(rewind_views::refusal(&view, &operation));
            }
            cx.extensions_mut().insert(ViewRequest(Arc::new(view)));
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
#[derive(Debug, Clone)]
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
