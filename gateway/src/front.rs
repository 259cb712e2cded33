//! The HTTP side of the S3 listener: wraps s3s with what every request needs — a span,
//! byte counts, the body idle timeout, and one log line and metric update when the
//! response's last byte has gone (or the client went away).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use rewind_model::LogKey;
use tracing::{Instrument, Span, field};

use rewind_vault::Charge;

use crate::auth::{ClientKeys, VirtualHosts};
use crate::metrics::{Metrics, UNRESOLVED_OPERATION};
use rewind_embedded::body::FaultSink;
use rewind_embedded::query::Query;
use rewind_embedded::sigv2;
use rewind_forward::request::{BodyFault, RequestInfo};

type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The S3 listener's service.
#[derive(Clone)]
pub struct S3Front {
    s3: s3s::service::S3Service,
    /// Shared: each request holds it until its answer is sent, and a clone of the struct
    /// itself would touch every one of its counters' reference counts.
    metrics: Arc<Metrics>,
    body_idle_timeout: Duration,
    gate: Arc<Gate>,
}

/// What the HTTP layer checks before s3s sees a request.
pub struct Gate {
    /// The client keys, for SigV2.
    pub keys: ClientKeys,
    /// Virtual-host addressing, for the bucket a SigV2 signature covers.
    pub hosts: VirtualHosts,
    /// Whether SigV2 requests are verified (`true`) or refused.
    pub allow_sigv2: bool,
    /// The memory budget: request bodies s3s reads whole are paid for from its share.
    pub budget: Arc<rewind_vault::MemoryBudget>,
    /// The largest body s3s reads whole.
    pub max_xml_body: u64,
    /// How long a request may wait for its share of the budget before 503 SlowDown.
    pub budget_wait: Duration,
    /// The vault: each request counts as a write in progress until it is answered, so
    /// that garbage collection never deletes chunks it found (an upload's part, a copy).
    pub vault: Arc<rewind_vault::Vault>,
}

impl S3Front {
    /// Wraps an s3s service.
    pub fn new(s3: s3s::service::S3Service, metrics: Metrics, body_idle_timeout: Duration, gate: Gate) -> Self {
        Self { s3, metrics: Arc::new(metrics), body_idle_timeout, gate: Arc::new(gate) }
    }
}

impl hyper::service::Service<http::Request<Incoming>> for S3Front {
    type Response = http::Response<ObservedBody>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let start = Instant::now();
        let info = Arc::new(RequestInfo::default());
        let received = Arc::new(AtomicU64::new(0));
        let span = tracing::info_span!(
            "s3_request",
            method = %req.method(),
            operation = field::Empty,
            bucket = field::Empty,
            key = field::Empty,
        );
        // A HEAD response has no body to send, so it is complete when its headers are.
        let is_head = req.method() == http::Method::HEAD;
        let close_after = waits_for_continue_without_body(&req);
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(info.clone());
        let body = IdleTimeoutBody {
            inner: body,
            timeout: self.body_idle_timeout,
            deadline: None,
            armed: false,
            info: info.clone(),
            received: received.clone(),
        };
        let refusal = self.gate.admit(&mut parts, &info).err();
        let whole_body = self.gate.body_read_whole(&parts);
        let undeclared = is_undeclared_object_body(&parts);
        let req = http::Request::from_parts(parts, s3s::Body::http_body(body));
        let s3 = self.s3.clone();
        let metrics = self.metrics.clone();
        let gate = self.gate.clone();
        metrics.requests_in_flight.inc();
        Box::pin(async move {
            let writes = gate.vault.enter_write();
            let mut held = Charge::none();
            let response = match refusal {
                Some(err) => error_response(err),
                None => match gate.hold_body(whole_body).await {
                    Ok(charge) => {
                        held = charge;
                        let req = match undeclared {
                            true => with_declared_length(req, gate.max_xml_body, &info).await,
                            false => Ok(req),
                        };
                        match req {
                            Ok(req) => s3.call(req).instrument(span.clone()).await.unwrap_or_else(|_| plain_500()),
                            Err(err) => error_response(err),
                        }
                    }
                    Err(err) => error_response(err),
                },
            };
            drop(writes);
            let mut response = as_s3_writes(with_error_message(response, info.id()), &info);
            if close_after {
                response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            let (parts, body) = response.into_parts();
            let completion =
                Completion { start, is_head, status: parts.status, info, received, metrics, span, _held: held };
            let declared = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
            let length = http_body::Body::size_hint(&body).exact().or(declared);
            Ok(http::Response::from_parts(
                parts,
                ObservedBody { inner: body, sent: 0, length, completion: Some(completion) },
            ))
        })
    }
}

impl Gate {
    /// Checks what must be decided before s3s reads anything, on the decoded query (s3s
    /// decodes parameter names, so the raw text is not what it acts on):
    /// - browser-form POST uploads are refused: s3s would buffer the whole file part in
    ///   memory (up to 5 GB) before authentication decides anything, and Rewind does not
    ///   support them; any `multipart/*` type, in any letter case, as s3s parses it;
    /// - presigned SigV4 URLs may live 7 days at most (s3s 0.14 accepts any lifetime);
    /// - SigV2 is verified here (`rewind_embedded::sigv2`) and removed, or refused when disabled.
    fn admit(&self, parts: &mut http::request::Parts, info: &RequestInfo) -> Result<(), s3s::S3Error> {
        let content_type = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if parts.method == http::Method::POST && content_type.is_some_and(is_multipart) {
            return Err(s3s::S3Error::with_message(
                s3s::S3ErrorCode::NotImplemented,
                rewind_forward::POST_OBJECT_REFUSAL,
            ));
        }
        let query = Query::parse(parts.uri.query());
        let lifetime = sigv2::MAX_PRESIGNED_LIFETIME.as_secs();
        if query.all("X-Amz-Expires").any(|v| v.trim().parse::<u64>().map_or(true, |s| s > lifetime)) {
            return Err(s3s::S3Error::with_message(
                s3s::S3ErrorCode::AuthorizationQueryParametersError,
                "X-Amz-Expires must be less than a week (in seconds) that is 604800",
            ));
        }
        let Some(carrier) = sigv2::carrier(&parts.headers, &query) else { return Ok(()) };
        if !self.allow_sigv2 {
            return Err(s3s::S3Error::with_message(
                s3s::S3ErrorCode::InvalidRequest,
                "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
            ));
        }
        let host = parts.headers.get(http::header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let virtual_host = s3s::host::S3Host::parse_host_header(&self.hosts, host).ok();
        let signed = sigv2::Signed {
            method: &parts.method,
            raw_path: parts.uri.path(),
            query: &query,
            headers: &parts.headers,
            virtual_bucket: virtual_host.as_ref().and_then(|vh| vh.bucket()),
        };
        let access_key = sigv2::verify(&carrier, &signed, |id| self.keys.secret(id), std::time::SystemTime::now())?;
        // s3s sees an unsigned request; the access check takes the identity from `info`.
        match carrier {
            sigv2::Carrier::Header { .. } => {
                parts.headers.remove(http::header::AUTHORIZATION);
            }
            sigv2::Carrier::Query { .. } => {
                let rest = query.raw_without(&sigv2::QUERY_PARAMETERS);
                let path_and_query = match rest {
                    Some(q) => format!("{}?{q}", parts.uri.path()),
                    None => parts.uri.path().to_owned(),
                };
                let mut uri = http::uri::Parts::from(parts.uri.clone());
                uri.path_and_query = Some(path_and_query.parse().map_err(|_| {
                    s3s::S3Error::with_message(s3s::S3ErrorCode::InvalidURI, "Couldn't parse the specified URI.")
                })?);
                parts.uri = http::Uri::from_parts(uri).map_err(|_| {
                    s3s::S3Error::with_message(s3s::S3ErrorCode::InvalidURI, "Couldn't parse the specified URI.")
                })?;
            }
        }
        info.set_signed_v2(access_key);
        Ok(())
    }
}

/// Query parameters of requests whose body is an object (or a part) streamed into the
/// vault; any other parameter on a PUT or POST means an XML body s3s reads whole.
const STREAMED_BODY_PARAMETERS: [&str; 3] = ["partNumber", "uploadId", "x-id"];

impl Gate {
    /// How much memory s3s will take to read this request's body whole: its declared
    /// length (capped at the XML limit; the limit when undeclared), or `None` for bodies
    /// that stream (object uploads) or requests without one.
    fn body_read_whole(&self, parts: &http::request::Parts) -> Option<u64> {
        let query = Query::parse(parts.uri.query());
        let xml = match parts.method {
            http::Method::POST => true,
            http::Method::PUT => query.pairs().iter().any(|p| !STREAMED_BODY_PARAMETERS.contains(&p.name.as_str())),
            _ => false,
        };
        if !xml {
            return is_undeclared_object_body(parts).then_some(self.max_xml_body);
        }
        let declared =
            parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        Some(declared.unwrap_or(self.max_xml_body).min(self.max_xml_body))
    }

    /// Holds the bodies share for a body read whole, waiting up to `budget_wait`.
    async fn hold_body(&self, bytes: Option<u64>) -> Result<Charge, s3s::S3Error> {
        let Some(bytes) = bytes.and_then(|b| usize::try_from(b).ok()) else { return Ok(Charge::none()) };
        let share = &self.budget.bodies;
        if let Some(charge) = share.try_acquire(bytes) {
            return Ok(charge);
        }
        tokio::time::timeout(self.budget_wait, share.acquire(bytes))
            .await
            .map_err(|_| s3s::S3Error::with_message(s3s::S3ErrorCode::SlowDown, "Please reduce your request rate."))
    }
}

/// Whether a PUT sends its body in HTTP chunks without saying its length (neither
/// Content-Length nor aws-chunked's decoded length). S3 refuses such uploads (411); moto
/// and Ceph take them, and clients that stream from a pipe send them.
fn is_undeclared_object_body(parts: &http::request::Parts) -> bool {
    let chunked =
        parts.headers.get_all(http::header::TRANSFER_ENCODING).iter().any(|v| {
            v.to_str().is_ok_and(|v| v.split(',').any(|coding| coding.trim().eq_ignore_ascii_case("chunked")))
        });
    parts.method == http::Method::PUT
        && chunked
        && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
        && !parts.headers.contains_key("x-amz-decoded-content-length")
}

/// `req` with its body read whole and its length declared, so that it can be captured and
/// sent upstream like any other; past `limit` bytes it is refused as S3 refuses it. The
/// memory is held from the bodies' share beforehand (`Gate::body_read_whole`).
async fn with_declared_length(
    req: http::Request<s3s::Body>,
    limit: u64,
    info: &RequestInfo,
) -> Result<http::Request<s3s::Body>, s3s::S3Error> {
    use http_body_util::BodyExt;
    let (mut parts, body) = req.into_parts();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let why = format!(
                "Send a Content-Length: a body without one is taken only up to {limit} bytes (server.max_xml_body_size)."
            );
            return Err(s3s::S3Error::with_message(s3s::S3ErrorCode::MissingContentLength, why));
        }
        Err(_) => {
            // A stalled client: the answer a body with a length gets (RequestTimeout).
            if let Some(fault) = info.fault() {
                return Err(rewind_forward::errors::from_body_fault(fault));
            }
            let why = "The request body ended before its last chunk.";
            return Err(s3s::S3Error::with_message(s3s::S3ErrorCode::IncompleteBody, why));
        }
    };
    // Added, not replacing anything: a signature that covered Transfer-Encoding still holds.
    parts.headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(bytes.len()));
    Ok(http::Request::from_parts(parts, s3s::Body::from(bytes)))
}

/// Whether an HTTP/1 request asks for `100 Continue` but has no body to send.
///
/// hyper answers such a request with its final status only (there is no body to invite),
/// which HTTP allows, but botocore (aws cli, boto3) then keeps the interim-response state
/// it set up for this request on the connection and misreads the next response on it: a
/// 30 s stall, or a multipart part whose ETag is lost. Closing the connection after the
/// response resets that state, at the cost of one reconnect per empty upload.
fn waits_for_continue_without_body<B>(req: &http::Request<B>) -> bool {
    if req.version() >= http::Version::HTTP_2 {
        return false;
    }
    let headers = req.headers();
    let expects = headers
        .get_all(http::header::EXPECT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.trim().eq_ignore_ascii_case("100-continue")));
    if !expects || headers.contains_key(http::header::TRANSFER_ENCODING) {
        return false;
    }
    match headers.get(http::header::CONTENT_LENGTH) {
        None => true,
        Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) == Some(0),
    }
}

/// Whether a Content-Type names a `multipart/*` type, compared as MIME types are
/// (case-insensitively, parameters and spaces ignored).
fn is_multipart(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.split('/').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart"))
}

/// Every answer carries `x-amz-request-id`; an error document gets its standard message
/// and request id where it lacks them (`errors::complete_error_document`).
fn with_error_message(mut response: s3s::HttpResponse, request_id: &str) -> s3s::HttpResponse {
    let document = (response.status().as_u16() >= 400).then(|| response.body().bytes()).flatten();
    let (fixed, id) = match document {
        Some(document) => rewind_forward::errors::complete_error_document(&document, request_id),
        None => (None, request_id.to_owned()),
    };
    if let Some(fixed) = fixed {
        response.headers_mut().insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(fixed.len()));
        *response.body_mut() = s3s::Body::from(Bytes::from(fixed));
    }
    if let Ok(value) = http::HeaderValue::from_str(&id) {
        response.headers_mut().entry("x-amz-request-id").or_insert(value);
    }
    response
}

/// A success document rewritten where s3s writes it unlike S3 ([`rewind_forward::as_s3_writes`]).
fn as_s3_writes(mut response: s3s::HttpResponse, info: &RequestInfo) -> s3s::HttpResponse {
    let Some(operation) = info.resolved().operation.filter(|_| response.status().is_success()) else { return response };
    let Some(document) = response.body().bytes() else { return response };
    if let Some(fixed) = rewind_forward::as_s3_writes(&operation, &document) {
        response.headers_mut().insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(fixed.len()));
        *response.body_mut() = s3s::Body::from(Bytes::from(fixed));
    }
    response
}

fn error_response(err: s3s::S3Error) -> s3s::HttpResponse {
    err.to_http_response().unwrap_or_else(|_| plain_500())
}

/// For when even an error document cannot be produced.
fn plain_500() -> s3s::HttpResponse {
    let mut res = http::Response::new(s3s::Body::empty());
    *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    res
}

/// A request body that fails when the client pauses longer than the idle timeout, and
/// counts the bytes it received.
struct IdleTimeoutBody {
    inner: Incoming,
    timeout: Duration,
    /// One timer per body, re-armed whenever the client makes us wait (not per frame).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
    info: Arc<RequestInfo>,
    received: Arc<AtomicU64>,
}

impl http_body::Body for IdleTimeoutBody {
    type Data = Bytes;
    type Error = StdError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, StdError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                if let Some(Ok(f)) = &frame
                    && let Some(data) = f.data_ref()
                {
                    this.received.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let wake_at = tokio::time::Instant::now() + this.timeout;
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake_at)));
                if !this.armed {
                    deadline.as_mut().reset(wake_at);
                    this.armed = true;
                }
                ready!(deadline.as_mut().poll(cx));
                this.info.set_fault(BodyFault::IdleTimeout);
                Poll::Ready(Some(Err("client stopped sending the request body".into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body, counting what it sends; completes the request's record when done.
pub struct ObservedBody {
    inner: s3s::Body,
    sent: u64,
    /// The declared length, when known: hyper stops polling once it is sent.
    length: Option<u64>,
    completion: Option<Completion>,
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = StdError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, StdError>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    this.sent += data.len() as u64;
                }
            }
            Some(Err(_)) | None => {
                if let Some(c) = this.completion.take() {
                    c.finish(this.sent, frame.is_none());
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        // Bodies that hyper never polls to the end (HEAD, empty bodies, a declared length
        // fully sent, client gone).
        if let Some(c) = self.completion.take() {
            c.finish(self.sent, self.inner.is_end_stream() || self.length == Some(self.sent));
        }
    }
}

/// Everything needed to record a finished request.
struct Completion {
    start: Instant,
    is_head: bool,
    status: http::StatusCode,
    info: Arc<RequestInfo>,
    received: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    span: Span,
    /// Memory budget held for the request's body until it is answered.
    _held: Charge,
}

impl Completion {
    fn finish(self, sent: u64, body_complete: bool) {
        let complete = body_complete || self.is_head;
        let resolved = self.info.resolved();
        let operation = resolved.operation.as_deref().unwrap_or(UNRESOLVED_OPERATION);
        let received = self.received.load(Ordering::Relaxed);
        let elapsed = self.start.elapsed();
        let m = &self.metrics;
        m.requests_in_flight.dec();
        m.requests.with_label_values(&[operation, self.status.as_str()]).inc();
        m.request_duration.with_label_values(&[operation]).observe(elapsed.as_secs_f64());
        m.received_bytes.with_label_values(&[operation]).inc_by(received);
        m.sent_bytes.with_label_values(&[operation]).inc_by(sent);

        let span = &self.span;
        span.record("operation", operation);
        if let Some(bucket) = &resolved.bucket {
            span.record("bucket", bucket.as_str());
        }
        if let Some(key) = &resolved.key {
            span.record("key", field::display(LogKey(key)));
        }
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        let access_key = resolved.access_key.as_deref().unwrap_or("-");
        let status = self.status.as_u16();
        let request_id = self.info.id();
        if self.status.is_server_error() || !complete {
            tracing::warn!(parent: span, status, bytes_in = received, bytes_out = sent, duration_ms, access_key, request_id, complete, "request");
        } else {
            tracing::info!(parent: span, status, bytes_in = received, bytes_out = sent, duration_ms, access_key, request_id, "request");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_types_are_recognised_in_any_letter_case() {
        for t in ["multipart/form-data; boundary=x", "Multipart/Form-Data", " MULTIPART/mixed", "multipart/form-data"] {
            assert!(is_multipart(t), "{t}");
        }
        for t in ["application/xml", "text/plain; x=multipart/form-data", ""] {
            assert!(!is_multipart(t), "{t}");
        }
    }

    #[test]
    fn only_bodiless_continue_requests_close_their_connection() {
        let req = |version, headers: &[(&str, &str)]| {
            let mut b = http::Request::builder().method("PUT").uri("/b/k").version(version);
            for (n, v) in headers {
                b = b.header(*n, *v);
            }
            b.body(()).unwrap()
        };
        let h11 = http::Version::HTTP_11;
        assert!(waits_for_continue_without_body(&req(h11, &[("expect", "100-continue"), ("content-length", "0")])));
        assert!(waits_for_continue_without_body(&req(h11, &[("expect", "100-Continue")])));
        assert!(!waits_for_continue_without_body(&req(h11, &[("expect", "100-continue"), ("content-length", "5")])));
        assert!(!waits_for_continue_without_body(&req(
            h11,
            &[("expect", "100-continue"), ("transfer-encoding", "chunked")]
        )));
        assert!(!waits_for_continue_without_body(&req(h11, &[("content-length", "0")])));
        assert!(!waits_for_continue_without_body(&req(
            http::Version::HTTP_2,
            &[("expect", "100-continue"), ("content-length", "0")]
        )));
    }
}
