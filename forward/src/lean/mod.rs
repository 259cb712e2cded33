//! The lean forwarding path: operations that need no typed handling (GetObject,
//! HeadObject, PutObject and UploadPart, `write.rs`) go upstream
//! as the client sent them, re-signed with the gateway's key and sent through the upstream's
//! lean client (`rewind_capture::lean`: SigV4 and one pooled hyper client), and their
//! answers come back as the upstream gave them, body streamed, headers whole.
//!
//! The typed path (s3s-aws and aws-sdk-s3) converts every field of the input into an SDK
//! request and every field of the output back, and runs the SDK's orchestrator (endpoint
//! rules, interceptors, retries, signing): most of the gateway's CPU for a small GET. Here a
//! request costs a signature and a pooled connection. A header an SDK output has no field
//! for (`x-amz-tagging-count`, `x-amz-mp-parts-count`, a newer checksum) passes through.
//!
//! What travels: the method, the bucket and key (path-style, or virtual-hosted as the SDK
//! would address them), the query without the client's signature, and the client's
//! headers without its authentication and hop-by-hop headers. An error answer becomes the
//! S3 error it names (code, message, status, and the headers clients read on errors), and
//! then goes through the same mapping as the typed path's (`errors::from_upstream`).

mod write;

use aws_sigv4::http_request::SignableBody;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use percent_encoding::utf8_percent_encode;
use rewind_capture::lean::element;
use rewind_capture::lean::{Body, Call, LeanClient, LeanError, SEGMENT, StdError, unescape};
use rewind_config::{ChecksumPolicy, UpstreamConfig};
use s3s::dto;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

pub(crate) use write::{Framing, fits, put_object, upload_part, verified};

/// The most of an error answer read to find its code and message.
const ERROR_BODY_MAX: usize = 64 * 1024;

/// Headers of the client's request that never go upstream: its authentication (the
/// gateway signs anew), and what belongs to one connection.
const NOT_FORWARDED: [&str; 14] = [
    "authorization",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-security-token",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
];

/// Headers that describe the client's body as it arrived: the gateway sends its own
/// (`Payload`), since the body goes upstream decoded, or framed anew.
const BODY_HEADERS: [&str; 4] = ["content-length", "content-encoding", "x-amz-decoded-content-length", "x-amz-trailer"];

/// Query parameters that carry the client's signature (SigV4 presigned URLs).
const SIGNATURE_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// Headers of the upstream's answer that are not passed on: its connection's, and its own
/// request ids (the gateway's answer carries the gateway's).
const NOT_RETURNED: [&str; 7] =
    ["connection", "keep-alive", "transfer-encoding", "date", "server", "x-amz-request-id", "x-amz-id-2"];

/// Headers of an error answer that clients read (a 304's validators, a delete marker's
/// version), kept on the S3 error.
const ERROR_HEADERS: [&str; 4] = ["etag", "last-modified", "x-amz-delete-marker", "x-amz-version-id"];

/// The lean client, with what the gateway adds to what it forwards.
pub struct LeanUpstream {
    client: LeanClient,
    /// Whether uploads the client sent no checksum for get one (CRC32) on the way up, as
    /// the typed path's SDK would.
    checksums: ChecksumPolicy,
}

/// A client's request for an object, as it goes upstream.
#[derive(Clone, Copy)]
pub struct Read<'a> {
    method: &'a Method,
    bucket: &'a str,
    key: &'a str,
    /// The client's URI, for its query.
    uri: &'a http::Uri,
    headers: &'a HeaderMap,
    /// Sent unsigned (the client's was, [`crate::Anonymous`]).
    anonymous: bool,
}

impl<'a> Read<'a> {
    /// The read `req` asks for, of `bucket`/`key`.
    fn of<T>(req: &'a S3Request<T>, bucket: &'a str, key: &'a str) -> Self {
        let anonymous = req.extensions.get::<crate::Anonymous>().is_some();
        Self { method: &req.method, bucket, key, uri: &req.uri, headers: &req.headers, anonymous }
    }
}

/// What goes upstream as the request's body, with the headers that describe it.
struct Payload {
    body: Body,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// How the signature covers the body.
    signed_as: SignableBody<'static>,
}

impl Payload {
    /// No body (GET, HEAD).
    fn none() -> Self {
        Self {
            body: Empty::new().map_err(|never| match never {}).boxed_unsync(),
            headers: Vec::new(),
            signed_as: SignableBody::UnsignedPayload,
        }
    }
}

/// An upstream answer, passed on whole.
pub struct Answer {
    /// A success: 200 or 206.
    pub status: StatusCode,
    /// The upstream's headers, less [`NOT_RETURNED`].
    pub headers: HeaderMap,
    /// The body, streamed.
    pub body: s3s::dto::StreamingBlob,
}

impl LeanUpstream {
    /// The gateway's lean path over `client`, configured by `cfg`.
    pub fn over(client: LeanClient, cfg: &UpstreamConfig) -> Self {
        Self { client, checksums: cfg.request_checksum_calculation }
    }

    /// Sends `read` upstream: the answer, or the S3 error it names.
    pub async fn read(&self, read: &Read<'_>) -> S3Result<Answer> {
        self.send(read, Payload::none()).await
    }

    /// Sends `call` upstream with `payload`: the answer, or the S3 error it names.
    async fn send(&self, call: &Read<'_>, payload: Payload) -> S3Result<Answer> {
        let Read { method, bucket, key, uri, headers: client_headers, anonymous } = *call;
        let Payload { body, headers: described, signed_as } = payload;
        let mut headers = HeaderMap::with_capacity(client_headers.len() + described.len());
        for (name, value) in client_headers {
            if !NOT_FORWARDED.contains(&name.as_str()) && !BODY_HEADERS.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.extend(described);
        let query = forwarded_query(uri.query());
        let call = Call { method, bucket, key, query: &query, headers, body, signed_as, anonymous };
        let response = self.client.send(call).await.map_err(|e| match e {
            LeanError::Address(_) => S3Error::with_message(S3ErrorCode::InvalidURI, format!("The request cannot be forwarded: {e}")),
            LeanError::Sign(_) => {
                tracing::warn!(error = %e, "could not sign an upstream request");
                S3Error::with_message(S3ErrorCode::InternalError, "The gateway could not sign its upstream request.")
            }
            LeanError::Unreachable(e) => {
                // A body that failed its checks ends the request; the client hears why from
                // the fault its body recorded (`errors::from_upstream`), not from here.
                let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<hyper::Error>());
                if !source.is_some_and(hyper::Error::is_user) {
                    tracing::warn!(cause = %crate::errors::chain(e.to_string(), std::error::Error::source(&e)), "upstream unreachable");
                }
                S3Error::with_message(
                    S3ErrorCode::ServiceUnavailable,
                    "The gateway could not reach its upstream S3 endpoint; retry later.",
                )
            }
        })?;
        let (parts, body) = response.into_parts();
        if !parts.status.is_success() {
            let document = read_error_body(body, *method == Method::HEAD).await;
            return Err(error_of(parts.status, &parts.headers, &document));
        }
        let mut headers = parts.headers;
        for name in NOT_RETURNED {
            headers.remove(name);
        }
        Ok(Answer { status: parts.status, headers, body: s3s::dto::StreamingBlob::wrap(body.into_data_stream()) })
    }
}

/// The client's query without its signature, re-encoded the way it will be signed.
fn forwarded_query(query: Option<&str>) -> String {
    let Some(query) = query.filter(|q| !q.is_empty()) else { return String::new() };
    let mut out = String::with_capacity(query.len());
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if SIGNATURE_PARAMS.contains(&name.as_ref()) {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.extend(utf8_percent_encode(&name, SEGMENT));
        out.push('=');
        out.extend(utf8_percent_encode(&value, SEGMENT));
    }
    out
}

/// Up to [`ERROR_BODY_MAX`] of an error answer's body (none for a HEAD's).
async fn read_error_body(body: hyper::body::Incoming, head: bool) -> Vec<u8> {
    if head {
        return Vec::new();
    }
    let limited = http_body_util::Limited::new(body, ERROR_BODY_MAX);
    limited.collect().await.map(|c| c.to_bytes().to_vec()).unwrap_or_default()
}

/// The S3 error an upstream's error answer names: the code and message of its document,
/// or for an answer without one (a HEAD's, a 304), the code S3's SDKs give that status.
fn error_of(status: StatusCode, headers: &HeaderMap, document: &[u8]) -> S3Error {
    let text = std::str::from_utf8(document).unwrap_or_default();
    let code = element(text, "Code").map_or_else(|| code_of_status(status), |c| code_named(&c));
    let mut err = match element(text, "Message") {
        Some(message) => S3Error::with_message(code, unescape(&message)),
        None => S3Error::new(code),
    };
    err.set_status_code(status);
    let mut kept = HeaderMap::new();
    for name in ERROR_HEADERS {
        if let Some(value) = headers.get(name) {
            kept.insert(HeaderName::from_static(name), value.clone());
        }
    }
    if !kept.is_empty() {
        kept.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        err.set_headers(kept);
    }
    err
}

fn code_of_status(status: StatusCode) -> S3ErrorCode {
    let code = match status.as_u16() {
        304 => "NotModified",
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        412 => "PreconditionFailed",
        416 => "InvalidRange",
        503 => "ServiceUnavailable",
        _ => return S3ErrorCode::InternalError,
    };
    code_named(code)
}

fn code_named(code: &str) -> S3ErrorCode {
    S3ErrorCode::from_bytes(code.as_bytes()).unwrap_or(S3ErrorCode::InternalError)
}

/// GetObject through the lean path: the answer's headers and body as the upstream gave them.
pub(crate) async fn get_object(
    lean: &LeanUpstream,
    req: S3Request<dto::GetObjectInput>,
) -> S3Result<S3Response<dto::GetObjectOutput>> {
    let answer = lean.read(&Read::of(&req, &req.input.bucket, &req.input.key)).await?;
    // s3s answers 206 for an output with a range, and takes every other header from ours.
    let content_range = answer.headers.get(http::header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).map(Into::into);
    let partial = answer.status == StatusCode::PARTIAL_CONTENT;
    let output = dto::GetObjectOutput {
        body: Some(answer.body),
        content_range: content_range.filter(|_| partial),
        ..Default::default()
    };
    let mut response = S3Response::new(output);
    response.headers = answer.headers;
    Ok(response)
}

/// HeadObject through the lean path.
pub(crate) async fn head_object(
    lean: &LeanUpstream,
    req: S3Request<dto::HeadObjectInput>,
) -> S3Result<S3Response<dto::HeadObjectOutput>> {
    let answer = lean.read(&Read::of(&req, &req.input.bucket, &req.input.key)).await?;
    let mut response = S3Response::new(dto::HeadObjectOutput::default());
    response.headers = answer.headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_loses_the_clients_signature_and_keeps_the_rest() {
        let q =
            "versionId=a%2Bb&X-Amz-Signature=00&X-Amz-Credential=k%2F1&response-content-type=text%2Fplain&partNumber=2";
        assert_eq!(forwarded_query(Some(q)), "versionId=a%2Bb&response-content-type=text%2Fplain&partNumber=2");
        assert_eq!(forwarded_query(Some("")), "");
        assert_eq!(forwarded_query(None), "");
    }

    #[test]
    fn an_error_document_gives_its_code_message_and_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-delete-marker", HeaderValue::from_static("true"));
        headers.insert("x-amz-request-id", HeaderValue::from_static("upstream"));
        let doc = b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>No &amp; such</Message></Error>";
        let err = error_of(StatusCode::NOT_FOUND, &headers, doc);
        assert_eq!(*err.code(), S3ErrorCode::NoSuchKey);
        assert_eq!(err.message(), Some("No & such"));
        assert_eq!(err.status_code(), Some(StatusCode::NOT_FOUND));
        let kept = err.headers().unwrap();
        assert_eq!(kept.get("x-amz-delete-marker").unwrap(), "true");
        assert!(kept.get("x-amz-request-id").is_none());
    }

    #[test]
    fn an_answer_without_a_document_gets_the_code_of_its_status() {
        let err = error_of(StatusCode::NOT_MODIFIED, &HeaderMap::new(), b"");
        assert_eq!(err.code().as_str(), "NotModified");
        assert_eq!(err.status_code(), Some(StatusCode::NOT_MODIFIED));
        assert!(err.headers().is_none());
        assert_eq!(*error_of(StatusCode::IM_A_TEAPOT, &HeaderMap::new(), b"").code(), S3ErrorCode::InternalError);
    }
}
