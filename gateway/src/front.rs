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

use crate::metrics::{Metrics, UNRESOLVED_OPERATION};
use crate::request::{BodyFault, RequestInfo};

type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The S3 listener's service.
#[derive(Clone)]
pub struct S3Front {
    s3: s3s::service::S3Service,
    metrics: Metrics,
    body_idle_timeout: Duration,
}

impl S3Front {
    /// Wraps an s3s service.
    pub fn new(s3: s3s::service::S3Service, metrics: Metrics, body_idle_timeout: Duration) -> Self {
        Self { s3, metrics, body_idle_timeout }
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
        let refusal = refuse_before_s3s(&parts);
        let req = http::Request::from_parts(parts, s3s::Body::http_body(body));
        let s3 = self.s3.clone();
        let metrics = self.metrics.clone();
        metrics.requests_in_flight.inc();
        Box::pin(async move {
            let response = match refusal {
                Some(err) => error_response(err),
                None => s3.call(req).instrument(span.clone()).await.unwrap_or_else(|_| plain_500()),
            };
            let (parts, body) = response.into_parts();
            let completion = Completion { start, is_head, status: parts.status, info, received, metrics, span };
            let declared = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
            let length = http_body::Body::size_hint(&body).exact().or(declared);
            Ok(http::Response::from_parts(
                parts,
                ObservedBody { inner: body, sent: 0, length, completion: Some(completion) },
            ))
        })
    }
}

/// Requests answered before s3s sees them, because what s3s would do first is harmful:
/// - SigV2 (header `AWS key:sig` or query `AWSAccessKeyId=`): retired by AWS, and s3s
///   0.14.1 compares v2 signatures in variable time (SigV4 uses constant time);
/// - browser-form POST uploads: s3s buffers the whole file part in memory (up to 5 GB)
///   before authentication decides anything, and Rewind does not support them anyway.
fn refuse_before_s3s(parts: &http::request::Parts) -> Option<s3s::S3Error> {
    let header = |name| parts.headers.get(name).and_then(|v: &http::HeaderValue| v.to_str().ok());
    let sigv2_header = header(http::header::AUTHORIZATION).is_some_and(|v| v.starts_with("AWS "));
    let sigv2_query = parts.uri.query().is_some_and(|q| q.split('&').any(|kv| kv.starts_with("AWSAccessKeyId=")));
    if sigv2_header || sigv2_query {
        return Some(s3s::S3Error::with_message(
            s3s::S3ErrorCode::InvalidRequest,
            "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
        ));
    }
    let form = header(http::header::CONTENT_TYPE).is_some_and(|v| v.trim_start().starts_with("multipart/form-data"));
    if parts.method == http::Method::POST && form {
        return Some(s3s::S3Error::with_message(s3s::S3ErrorCode::NotImplemented, crate::s3::POST_OBJECT_REFUSAL));
    }
    None
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
    metrics: Metrics,
    span: Span,
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
