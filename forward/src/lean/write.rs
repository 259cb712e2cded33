//! Uploads through the lean path: PutObject and UploadPart whose length is known up front,
//! captured or not. Capture reads what it records of the answer (ETag, version, checksums)
//! from the answer's headers; everything else the typed path did per field, the upstream's
//! headers now carry whole.
//!
//! The body goes upstream as s3s decoded it, through [`VerifiedUpload`]: counted, held to
//! every digest the client declared, its last piece released only once they match. The
//! checksum the upstream stores with the object is the one the client chose:
//! - declared in a header: the header travels, and the body goes plain;
//! - declared as a trailer (aws-chunked): the body goes upstream framed anew as one
//!   aws-chunked chunk with that trailer, its value the verified one;
//! - none, with `upstream.request_checksum_calculation = "when_supported"`: the gateway
//!   sends a CRC32 trailer of its own, as the typed path's SDK would.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use aws_sigv4::http_request::SignableBody;
use bytes::Bytes;
use futures::Stream;
use http::{HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use rewind_config::ChecksumPolicy;
use rewind_embedded::body::{Algorithm, ChecksumCheck, Digests, Expected, VerifiedUpload, strip_aws_chunked};
use s3s::dto::{self, StreamingBlob};
use s3s::{S3Request, S3Response, S3Result};

use super::{LeanUpstream, Payload, Read, StdError};
use crate::request::RequestInfo;

/// How a verified upload body goes upstream: [`verified`] makes it, [`put_object`] and
/// [`upload_part`] send the body with it (the body itself, or what a tee passes on of it).
pub(crate) struct Framing {
    /// The checksum sent as the body's trailer, and where its value comes from.
    trailer: Option<(Algorithm, Digests)>,
    /// The client's Content-Encoding without `aws-chunked`.
    encoding: Option<String>,
    /// The body's decoded length.
    decoded: u64,
}

/// Whether an upload can take the lean path: its decoded length must be known before it
/// starts, for the upstream's Content-Length.
pub(crate) fn fits(content_length: Option<i64>, body: Option<&StreamingBlob>) -> bool {
    content_length.is_some() || body.is_none()
}

/// `req`'s upload `body`, `declared` bytes long (for uploads that [`fits`]), verified as the
/// typed path verifies it, and how it is to go upstream.
pub(crate) fn verified<T>(
    lean: &LeanUpstream,
    req: &S3Request<T>,
    body: Option<StreamingBlob>,
    declared: Option<i64>,
    info: &Arc<RequestInfo>,
) -> (StreamingBlob, Framing) {
    let mut checks = ChecksumCheck::from_request(&req.headers, req.trailing_headers.clone());
    let mut trailer = checks.iter().find(|c| matches!(c.expected, Expected::Trailer(_))).map(|c| c.algorithm);
    if trailer.is_none()
        && lean.checksums == ChecksumPolicy::WhenSupported
        && !checks.iter().any(|c| c.algorithm.is_checksum())
    {
        checks.push(ChecksumCheck::computed(Algorithm::Crc32));
        trailer = Some(Algorithm::Crc32);
    }
    let declared = match &body {
        Some(_) => declared.and_then(|n| u64::try_from(n).ok()),
        None => Some(0),
    };
    let body = body.unwrap_or_else(no_body);
    let (body, digests) = VerifiedUpload::wrap_reporting(body, declared, checks, info.clone());
    let encoding = req.headers.get(http::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    let framing = Framing {
        trailer: trailer.map(|algorithm| (algorithm, digests)),
        encoding: strip_aws_chunked(encoding.map(str::to_owned)),
        decoded: declared.unwrap_or(0),
    };
    (body, framing)
}

/// PutObject through the lean path: the body (from [`verified`]) sent with `framing`. The
/// answer's headers pass back whole, and the output has the fields capture reads.
pub(crate) async fn put_object(
    lean: &LeanUpstream,
    mut req: S3Request<dto::PutObjectInput>,
    framing: Framing,
) -> S3Result<S3Response<dto::PutObjectOutput>> {
    let body = req.input.body.take();
    let headers = send(lean, &req, (&req.input.bucket, &req.input.key), body, framing).await?;
    let read = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let output = dto::PutObjectOutput {
        e_tag: headers.get(http::header::ETAG).and_then(|v| dto::ETag::parse_http_header(v.as_bytes()).ok()),
        version_id: read("x-amz-version-id"),
        checksum_crc32: read("x-amz-checksum-crc32"),
        checksum_crc32c: read("x-amz-checksum-crc32c"),
        checksum_crc64nvme: read("x-amz-checksum-crc64nvme"),
        checksum_sha1: read("x-amz-checksum-sha1"),
        checksum_sha256: read("x-amz-checksum-sha256"),
        checksum_type: read("x-amz-checksum-type").map(dto::ChecksumType::from),
        ..Default::default()
    };
    let mut response = S3Response::new(output);
    response.headers = headers;
    Ok(response)
}

/// UploadPart through the lean path, as [`put_object`].
pub(crate) async fn upload_part(
    lean: &LeanUpstream,
    mut req: S3Request<dto::UploadPartInput>,
    framing: Framing,
) -> S3Result<S3Response<dto::UploadPartOutput>> {
    let body = req.input.body.take();
    let headers = send(lean, &req, (&req.input.bucket, &req.input.key), body, framing).await?;
    let e_tag = headers.get(http::header::ETAG).and_then(|v| dto::ETag::parse_http_header(v.as_bytes()).ok());
    let mut response = S3Response::new(dto::UploadPartOutput { e_tag, ..Default::default() });
    response.headers = headers;
    Ok(response)
}

/// Sends `req`'s upload of `body` to `bucket`/`key`: the answer's headers.
async fn send<T>(
    lean: &LeanUpstream,
    req: &S3Request<T>,
    (bucket, key): (&str, &str),
    body: Option<StreamingBlob>,
    framing: Framing,
) -> S3Result<http::HeaderMap> {
    let body = body.unwrap_or_else(no_body);
    let answer = lean.send(&Read::of(req, bucket, key), Upload::payload(body, framing)).await?;
    Ok(answer.headers)
}

/// The body of an upload that came without one.
fn no_body() -> StreamingBlob {
    StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>())
}

/// An upload's body on its way upstream: see the module documentation.
struct Upload {
    /// The chunk's size line, before the first byte of a framed body.
    head: Option<Bytes>,
    /// The verified body, until it ends.
    body: Option<StreamingBlob>,
    /// The trailer to close a framed body with, and where its value comes from.
    trailer: Option<(Algorithm, Digests)>,
    /// The body's decoded length.
    decoded: u64,
    /// What is still to be sent, framing included.
    remaining: u64,
}

impl Upload {
    /// What goes upstream for `body`, framed as `framing` says.
    fn payload(body: StreamingBlob, framing: Framing) -> Payload {
        let Framing { trailer, encoding, decoded } = framing;
        let upload = Self::new(body, trailer, decoded);
        let mut headers = Vec::new();
        match &upload.trailer {
            Some((algorithm, _)) => {
                let encoding = encoding.map_or_else(|| "aws-chunked".to_owned(), |e| format!("aws-chunked,{e}"));
                headers.push((http::header::CONTENT_ENCODING, value(&encoding)));
                headers.push((HeaderName::from_static("x-amz-decoded-content-length"), HeaderValue::from(decoded)));
                headers.push((HeaderName::from_static("x-amz-trailer"), HeaderValue::from_static(algorithm.header())));
            }
            None => headers.extend(encoding.map(|e| (http::header::CONTENT_ENCODING, value(&e)))),
        }
        headers.push((http::header::CONTENT_LENGTH, HeaderValue::from(upload.remaining)));
        let signed_as = match upload.trailer {
            Some(_) => SignableBody::StreamingUnsignedPayloadTrailer,
            None => SignableBody::UnsignedPayload,
        };
        Payload { body: upload.boxed_unsync(), headers, signed_as }
    }

    /// `body`, `decoded` bytes long, framed with `trailer` when one is given.
    fn new(body: StreamingBlob, trailer: Option<(Algorithm, Digests)>, decoded: u64) -> Self {
        let head = (trailer.is_some() && decoded > 0).then(|| Bytes::from(format!("{decoded:x}\r\n")));
        let framing = trailer.as_ref().map_or(0, |(algorithm, _)| {
            let head = head.as_ref().map_or(0, Bytes::len) as u64;
            head + tail_len(*algorithm, decoded) as u64
        });
        Self { head, body: Some(body), trailer, decoded, remaining: decoded + framing }
    }

    fn sent(&mut self, piece: Bytes) -> Poll<Option<Result<Frame<Bytes>, StdError>>> {
        self.remaining = self.remaining.saturating_sub(piece.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }
}

/// What closes a framed body of `decoded` bytes: the end of its one data chunk, the last
/// (empty) chunk, and the trailer.
fn tail(algorithm: Algorithm, value: &str, decoded: u64) -> Bytes {
    let end_of_data = if decoded > 0 { "\r\n" } else { "" };
    Bytes::from(format!("{end_of_data}0\r\n{}:{value}\r\n\r\n", algorithm.header()))
}

/// [`tail`]'s length, known before the value is.
fn tail_len(algorithm: Algorithm, decoded: u64) -> usize {
    let end_of_data = if decoded > 0 { 2 } else { 0 };
    end_of_data + "0\r\n".len() + algorithm.header().len() + 1 + algorithm.value_len() + "\r\n\r\n".len()
}

fn value(text: &str) -> HeaderValue {
    // From a header that was a valid value, less a marker: still a valid value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = StdError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, StdError>>> {
        let this = self.get_mut();
        if let Some(head) = this.head.take() {
            return this.sent(head);
        }
        while let Some(body) = &mut this.body {
            match ready!(Pin::new(body).poll_next(cx)) {
                Some(Ok(piece)) if piece.is_empty() => {}
                Some(Ok(piece)) => return this.sent(piece),
                Some(Err(e)) => {
                    this.body = None;
                    this.trailer = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.body = None,
            }
        }
        let Some((algorithm, digests)) = this.trailer.take() else { return Poll::Ready(None) };
        // The body ended verified, so its digests are in; a value of another length would
        // break the Content-Length the upstream was promised.
        match digests.value(algorithm).filter(|v| v.len() == algorithm.value_len()) {
            Some(value) => {
                let tail = tail(algorithm, value, this.decoded);
                this.sent(tail)
            }
            None => Poll::Ready(Some(Err(format!("no {} digest for the upload's trailer", algorithm.name()).into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.body.is_none() && self.trailer.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pieces` behind a verified body declared `declared` bytes long, framed with the
    /// CRC32 the gateway computes.
    fn crc32_upload(pieces: &'static [&'static [u8]], declared: u64) -> Upload {
        let stream = futures::stream::iter(pieces.iter().map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p))));
        let (body, digests) = VerifiedUpload::wrap_reporting(
            StreamingBlob::wrap(stream),
            Some(declared),
            vec![ChecksumCheck::computed(Algorithm::Crc32)],
            Arc::new(rewind_embedded::body::Fault::default()),
        );
        Upload::new(body, Some((Algorithm::Crc32, digests)), declared)
    }

    #[tokio::test]
    async fn a_framed_body_is_one_chunk_then_its_trailer_and_as_long_as_promised() {
        let cases: [(&'static [&'static [u8]], &[u8]); 2] = [
            // CRC32 of "hello world" is 0x0d4a1185.
            (&[b"hello ", b"", b"world"], b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"),
            // An empty body is only its last chunk and the trailer.
            (&[], b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"),
        ];
        for (pieces, expected) in cases {
            let upload = crc32_upload(pieces, pieces.iter().map(|p| p.len() as u64).sum());
            let promised = http_body::Body::size_hint(&upload).exact().unwrap();
            let bytes = upload.collect().await.unwrap().to_bytes();
            assert_eq!(bytes, expected);
            assert_eq!(promised, bytes.len() as u64);
        }
    }

    #[tokio::test]
    async fn a_body_that_fails_its_checks_ends_in_an_error_not_a_trailer() {
        // Declared longer than it is: the verified body fails at its end.
        assert!(crc32_upload(&[b"short"], 10).collect().await.is_err());
    }
}
