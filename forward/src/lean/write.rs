//! Uploads through the lean path: PutObject and UploadPart to buckets the gateway does not
//! capture. Nothing is recorded for them, so they need none of the typed path's fields;
//! what they need is the body checked as the typed path checks it.
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

/// PutObject through the lean path (for uploads that [`fits`]).
pub(crate) async fn put_object(
    lean: &LeanUpstream,
    mut req: S3Request<dto::PutObjectInput>,
    info: &Arc<RequestInfo>,
) -> S3Result<S3Response<dto::PutObjectOutput>> {
    let body = req.input.body.take();
    let (bucket, key, length) = (&req.input.bucket, &req.input.key, req.input.content_length);
    send(lean, &req, (bucket, key), body, length, info).await
}

/// UploadPart through the lean path.
pub(crate) async fn upload_part(
    lean: &LeanUpstream,
    mut req: S3Request<dto::UploadPartInput>,
    info: &Arc<RequestInfo>,
) -> S3Result<S3Response<dto::UploadPartOutput>> {
    let body = req.input.body.take();
    let (bucket, key, length) = (&req.input.bucket, &req.input.key, req.input.content_length);
    send(lean, &req, (bucket, key), body, length, info).await
}

/// Sends `req`'s upload of `body` (`length` bytes decoded) to `bucket`/`key`; the answer's
/// headers (ETag, version, checksums) pass back whole.
async fn send<T, O: Default>(
    lean: &LeanUpstream,
    req: &S3Request<T>,
    (bucket, key): (&str, &str),
    body: Option<StreamingBlob>,
    length: Option<i64>,
    info: &Arc<RequestInfo>,
) -> S3Result<S3Response<O>> {
    let upload = Upload::of(lean, req, body, length, info);
    let answer = lean.send(&Read::of(req, bucket, key), upload).await?;
    let mut response = S3Response::new(O::default());
    response.headers = answer.headers;
    Ok(response)
}

/// Whether an upload can take the lean path: its decoded length must be known before it
/// starts, for the upstream's Content-Length.
pub(crate) fn fits(content_length: Option<i64>, body: Option<&StreamingBlob>) -> bool {
    content_length.is_some() || body.is_none()
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
    /// The payload for `req`'s upload of `body`, `declared` bytes long.
    fn of<T>(
        lean: &LeanUpstream,
        req: &S3Request<T>,
        body: Option<StreamingBlob>,
        declared: Option<i64>,
        info: &Arc<RequestInfo>,
    ) -> Payload {
        let mut checks = ChecksumCheck::from_request(&req.headers, req.trailing_headers.clone());
        let mut trailer = checks.iter().find(|c| matches!(c.expected, Expected::Trailer(_))).map(|c| c.algorithm);
        if trailer.is_none()
            && lean.checksums == ChecksumPolicy::WhenSupported
            && !checks.iter().any(|c| c.algorithm.is_checksum())
        {
            checks.push(ChecksumCheck::computed(Algorithm::Crc32));
            trailer = Some(Algorithm::Crc32);
        }
        let declared = declared.and_then(|n| u64::try_from(n).ok());
        let body =
            body.unwrap_or_else(|| StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>()));
        let decoded = declared.unwrap_or(0);
        let (body, digests) = VerifiedUpload::wrap_reporting(body, declared, checks, info.clone());
        let encoding = req.headers.get(http::header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
        let encoding = strip_aws_chunked(encoding.map(str::to_owned));
        let mut headers = Vec::new();
        let framed = trailer.map(|algorithm| (algorithm, digests));
        let upload = Self::new(body, framed, decoded);
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
