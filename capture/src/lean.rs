//! The upstream's lean client: requests signed with SigV4 (`sigv4.rs`, the day's signing
//! key kept) and sent through one pooled hyper client, without aws-sdk-s3's orchestrator (endpoint rules, interceptors, retries),
//! which costs more CPU than a small request's whole transfer.
//!
//! This is only the transport: where a request goes (virtual-hosted or path-style, as
//! aws-sdk-s3 would address it), its signature, the pool, and when a stalled upstream is
//! given up. What a request carries and what its answer means is the caller's: the
//! gateway's pass-through (`rewind-forward`'s lean path), and restores' small uploads
//! (`restore.rs`).

mod sigv4;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rewind_config::UpstreamConfig;

use crate::upstream::UpstreamTarget;

/// How stalls are caught: a write to the upstream (a request's head or a piece of its body)
/// or a read from it (its answer) pending for the grace fails, and with it the connection.
/// A read's wait restarts at every write, so a long upload is never a stalled read; a body
/// waiting on its own source (a slow client, the vault's budget) has no write pending, and
/// those waits have limits shorter than the grace ([`crate::upstream::stall_grace`]).
/// This is the SDK client's stall check ([`crate::upstream::paced`]), for one connection;
/// without it an upstream that stopped reading would hold the request, the client's body
/// and the vault's budget share forever.
type Connector = hyper_timeout::TimeoutConnector<hyper_rustls::HttpsConnector<HttpConnector>>;
/// Any error a body can end with.
pub type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;
/// What a request carries: nothing, or a body.
pub type Body = UnsyncBoxBody<Bytes, StdError>;

/// Idle connections kept per upstream host: enough for a burst of small requests from many
/// clients without reconnecting.
const IDLE_PER_HOST: usize = 256;
/// How long an idle upstream connection is kept (below S3's own idle cut of about 20 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// Characters a path segment or query part keeps unencoded: RFC 3986's unreserved ones
/// (S3's rule; `/` is kept by encoding each segment apart).
pub const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One pooled, signing HTTP client for the upstream. Cloning shares the pool.
#[derive(Clone)]
pub struct LeanClient {
    http: Client<Connector, Body>,
    scheme: http::uri::Scheme,
    /// `host[:port]` of the endpoint.
    authority: http::uri::Authority,
    /// The endpoint's path, without a trailing `/` (usually empty).
    base_path: String,
    /// Whether the endpoint is an IP address (never virtual-hosted).
    ip_host: bool,
    force_path_style: bool,
    /// Shared by clones, with the day's signing key.
    signer: Arc<sigv4::Signer>,
}

/// One request to send.
pub struct Call<'a> {
    pub method: &'a Method,
    pub bucket: &'a str,
    pub key: &'a str,
    /// The query, already encoded (with [`SEGMENT`]), without `?`; empty for none.
    pub query: &'a str,
    /// Every header but `Host` and the signature's, which are added here.
    pub headers: HeaderMap,
    pub body: Body,
    /// How the signature covers the body.
    pub signed_as: SignableBody<'static>,
    /// Sent unsigned (for a client's anonymous request).
    pub anonymous: bool,
}

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum LeanError {
    /// The bucket or key make no valid URL or host.
    #[error("the request cannot be addressed: {0}")]
    Address(String),
    /// The request could not be signed (a body of a kind the signer does not know, a
    /// precomputed hash or key id that cannot be a header value).
    #[error("the request could not be signed: {0}")]
    Sign(String),
    /// The upstream could not be reached, stalled, or the request's body failed.
    #[error("could not reach the upstream: {0}")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
}

impl LeanClient {
    /// A client for `target`, as `cfg` says to reach it, that gives up a connection whose
    /// upstream has stopped reading or sending for `stall_grace` (see `Connector`); `None`
    /// when its endpoint is not a URL this client can use (then the SDK's client serves).
    pub fn new(cfg: &UpstreamConfig, target: &UpstreamTarget, stall_grace: Duration) -> Option<Self> {
        let uri: http::Uri = target.endpoint.parse().ok()?;
        let scheme = uri.scheme().cloned()?;
        let authority = uri.authority().cloned()?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout.0));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .ok()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let mut connector = hyper_timeout::TimeoutConnector::new(connector);
        connector.set_read_timeout(Some(stall_grace));
        connector.set_write_timeout(Some(stall_grace));
        connector.set_reset_reader_on_write(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_PER_HOST)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        Some(Self {
            http: client,
            scheme,
            ip_host: host.parse::<std::net::IpAddr>().is_ok(),
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            force_path_style: cfg.force_path_style,
            signer: Arc::new(sigv4::Signer::new(&target.access_key_id, target.secret.expose(), &cfg.region)),
        })
    }

    /// Sends `call`: the upstream's answer, whatever its status.
    pub async fn send(&self, call: Call<'_>) -> Result<http::Response<hyper::body::Incoming>, LeanError> {
        let request = self.request(call)?;
        self.http.request(request).await.map_err(LeanError::Unreachable)
    }

    /// The request: addressed, `Host` set, signed.
    fn request(&self, call: Call<'_>) -> Result<http::Request<Body>, LeanError> {
        let Call { method, bucket, key, query, headers, body, signed_as, anonymous } = call;
        let key_path: String =
            key.split('/').map(|s| utf8_percent_encode(s, SEGMENT).to_string()).collect::<Vec<_>>().join("/");
        let (authority, path) = if self.virtual_hosted(bucket) {
            (format!("{bucket}.{}", self.authority), format!("{}/{key_path}", self.base_path))
        } else {
            (
                self.authority.to_string(),
                format!("{}/{}/{key_path}", self.base_path, utf8_percent_encode(bucket, SEGMENT)),
            )
        };
        let target = if query.is_empty() {
            format!("{}://{authority}{path}", self.scheme)
        } else {
            format!("{}://{authority}{path}?{query}", self.scheme)
        };
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(&target)
            .body(body)
            .map_err(|e| LeanError::Address(e.to_string()))?;
        *request.headers_mut() = headers;
        let host = HeaderValue::from_str(&authority).map_err(|_| LeanError::Address("not a valid host".into()))?;
        request.headers_mut().insert(http::header::HOST, host);
        if !anonymous {
            let payload = sigv4::payload_hash(signed_as)
                .ok_or_else(|| LeanError::Sign("aws-sigv4 names a body this client does not sign".into()))?;
            let signable = sigv4::Signable { method: method.as_str(), path: &path, query, payload };
            self.signer.sign(&signable, request.headers_mut(), SystemTime::now()).map_err(LeanError::Sign)?;
        }
        Ok(request)
    }

    /// Addressed as `bucket.host` rather than `host/bucket`: as aws-sdk-s3 would, unless
    /// path style is forced, the host is an IP address, or the name cannot be a host label.
    fn virtual_hosted(&self, bucket: &str) -> bool {
        !self.force_path_style
            && !self.ip_host
            && (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !bucket.starts_with('-')
            && !bucket.ends_with('-')
    }
}

/// The text of the first `<name>...</name>` in `xml`, whatever its parent, trimmed;
/// `None` if absent or empty. Entities stay as they are ([`unescape`]).
pub fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    let value = xml[start..end].trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// `text` with XML's five entities replaced by their characters.
pub fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}
