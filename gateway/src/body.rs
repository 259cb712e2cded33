//! Upload bodies on their way upstream: counted, checksum-verified, and held back by one
//! piece so that the upstream never receives a complete body the gateway has not accepted.
//!
//! s3s 0.14.1 decodes aws-chunked framing and checks chunk signatures, but it does not
//! verify trailing checksums, and the signed-payload SHA-256 and declared length are only
//! checked as the stream ends. If the last bytes were already upstream by then, an upload
//! with a fixed Content-Length would be complete there and stored. Holding back the latest
//! piece until the next one (or the verified end) arrives makes every failure a truncated
//! upload, which the upstream discards.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::Stream;
use http::HeaderMap;
use s3s::TrailingHeaders;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::{ChecksumAlgorithm, StreamingBlob};
use s3s::stream::{ByteStream, DynByteStream, RemainingLength};

use crate::request::{BodyFault, RequestInfo};

type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The checksum algorithms S3 defines, with their header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    const ALL: [Self; 5] = [Self::Crc32, Self::Crc32c, Self::Crc64Nvme, Self::Sha1, Self::Sha256];

    /// The name S3 uses (`x-amz-sdk-checksum-algorithm`, error messages).
    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32 => ChecksumAlgorithm::CRC32,
            Self::Crc32c => ChecksumAlgorithm::CRC32C,
            Self::Crc64Nvme => ChecksumAlgorithm::CRC64NVME,
            Self::Sha1 => ChecksumAlgorithm::SHA1,
            Self::Sha256 => ChecksumAlgorithm::SHA256,
        }
    }

    /// The header (or trailer) that carries this checksum.
    pub fn header(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The algorithm whose header is `name`, case-insensitively.
    pub fn from_header(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.header().eq_ignore_ascii_case(name.trim()))
    }

    fn hasher(self) -> ChecksumHasher {
        let mut h = ChecksumHasher::default();
        match self {
            Self::Crc32 => h.crc32 = Some(s3s::crypto::Crc32::new()),
            Self::Crc32c => h.crc32c = Some(s3s::crypto::Crc32c::new()),
            Self::Crc64Nvme => h.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
            Self::Sha1 => h.sha1 = Some(s3s::crypto::Sha1::new()),
            Self::Sha256 => h.sha256 = Some(s3s::crypto::Sha256::new()),
        }
        h
    }

    fn finish(self, hasher: ChecksumHasher) -> Option<String> {
        let sums = hasher.finalize();
        match self {
            Self::Crc32 => sums.checksum_crc32,
            Self::Crc32c => sums.checksum_crc32c,
            Self::Crc64Nvme => sums.checksum_crc64nvme,
            Self::Sha1 => sums.checksum_sha1,
            Self::Sha256 => sums.checksum_sha256,
        }
    }
}

/// Where the expected checksum comes from.
#[derive(Debug)]
pub enum Expected {
    /// Sent as a request header, known up front.
    Header(String),
    /// Sent as a trailer after the body (aws-chunked); read when the body ends.
    Trailer(TrailingHeaders),
}

/// A checksum the client asked the gateway to hold its body to.
#[derive(Debug)]
pub struct ChecksumCheck {
    pub algorithm: Algorithm,
    pub expected: Expected,
}

impl ChecksumCheck {
    /// Finds the checksum a request declares: an `x-amz-trailer` naming a checksum (its
    /// value arrives after the body), or an `x-amz-checksum-*` header.
    pub fn from_request(headers: &HeaderMap, trailers: Option<TrailingHeaders>) -> Option<Self> {
        if let (Some(trailer), Some(handle)) = (headers.get("x-amz-trailer"), trailers)
            && let Some(algorithm) = trailer.to_str().ok().and_then(Algorithm::from_header)
        {
            return Some(Self { algorithm, expected: Expected::Trailer(handle) });
        }
        Algorithm::ALL.into_iter().find_map(|algorithm| {
            let value = headers.get(algorithm.header())?.to_str().ok()?;
            Some(Self { algorithm, expected: Expected::Header(value.trim().to_owned()) })
        })
    }

    fn expected_value(&self) -> Option<String> {
        match &self.expected {
            Expected::Header(v) => Some(v.clone()),
            Expected::Trailer(t) => t
                .read(|h| h.get(self.algorithm.header()).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned()))
                .flatten(),
        }
    }
}

/// Wraps an upload body: see the module documentation.
pub struct VerifiedUpload {
    inner: DynByteStream,
    held: Option<Bytes>,
    declared: Option<u64>,
    received: u64,
    check: Option<(ChecksumCheck, ChecksumHasher)>,
    info: Arc<RequestInfo>,
    finished: bool,
}

impl VerifiedUpload {
    /// Wraps `body`, whose declared (decoded) length is `declared`.
    pub fn wrap(
        body: StreamingBlob,
        declared: Option<u64>,
        check: Option<ChecksumCheck>,
        info: Arc<RequestInfo>,
    ) -> StreamingBlob {
        let check = check.map(|c| {
            let hasher = c.algorithm.hasher();
            (c, hasher)
        });
        StreamingBlob::new(Self { inner: body.into(), held: None, declared, received: 0, check, info, finished: false })
    }

    fn fail(&mut self, fault: BodyFault) -> Poll<Option<Result<Bytes, StdError>>> {
        let message = format!("upload body rejected: {fault:?}");
        self.info.set_fault(fault);
        self.finished = true;
        self.held = None;
        Poll::Ready(Some(Err(message.into())))
    }

    /// Runs once the client's body has ended: length and checksum must match.
    fn verify_end(&mut self) -> Result<(), BodyFault> {
        if self.declared.is_some_and(|d| d != self.received) {
            return Err(BodyFault::Incomplete);
        }
        if let Some((check, hasher)) = self.check.take() {
            let computed = check.algorithm.finish(hasher);
            // A declared trailer that never came is as bad as a wrong one.
            if check.expected_value().is_none() || computed != check.expected_value() {
                return Err(BodyFault::ChecksumMismatch { algorithm: check.algorithm.name() });
            }
        }
        Ok(())
    }
}

impl Stream for VerifiedUpload {
    type Item = Result<Bytes, StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(this.held.take().map(Ok));
            }
            match ready!(this.inner.as_mut().poll_next(cx)) {
                Some(Ok(piece)) => {
                    this.received += piece.len() as u64;
                    if this.declared.is_some_and(|d| this.received > d) {
                        return this.fail(BodyFault::Incomplete);
                    }
                    if let Some((_, hasher)) = &mut this.check {
                        hasher.update(&piece);
                    }
                    if piece.is_empty() {
                        continue;
                    }
                    if let Some(previous) = this.held.replace(piece) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Some(Err(e)) => {
                    let fault = this.info.fault().cloned().unwrap_or_else(|| classify_s3s_body_error(&*e));
                    return this.fail(fault);
                }
                None => {
                    if let Err(fault) = this.verify_end() {
                        return this.fail(fault);
                    }
                    this.finished = true;
                }
            }
        }
    }
}

impl ByteStream for VerifiedUpload {
    fn remaining_length(&self) -> RemainingLength {
        let held = self.held.as_ref().map_or(0, Bytes::len);
        match self.declared {
            // What the upstream still has to receive: declared minus what it already got.
            // Saturating: after a too-long body was refused, `received` exceeds `d`.
            Some(d) => RemainingLength::new_exact(
                usize::try_from(d.saturating_sub(self.received - held as u64)).unwrap_or(usize::MAX),
            ),
            None => {
                let rest = self.inner.remaining_length();
                match rest.exact() {
                    Some(n) => RemainingLength::new_exact(n + held),
                    None => RemainingLength::unknown(),
                }
            }
        }
    }
}

/// s3s's body error types are private; their messages (pinned s3s 0.14.1) tell which
/// check failed. The tests in `tests/auth.rs` pin this down end to end.
fn classify_s3s_body_error(e: &(dyn std::error::Error + 'static)) -> BodyFault {
    let text = e.to_string();
    if text.contains("SignatureMismatch") {
        BodyFault::ChunkSignatureMismatch
    } else if text.contains("Sha256Mismatch") {
        BodyFault::PayloadHashMismatch
    } else {
        BodyFault::Incomplete
    }
}

/// Removes the `aws-chunked` marker from a Content-Encoding: the gateway decoded that
/// framing, and forwarding the marker makes upstreams reject the body (NOTES-deps.md).
pub fn strip_aws_chunked(encoding: Option<String>) -> Option<String> {
    let encoding = encoding?;
    let rest: Vec<&str> = encoding
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!rest.is_empty()).then(|| rest.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn blob(pieces: Vec<&'static [u8]>) -> StreamingBlob {
        let stream = futures::stream::iter(pieces.into_iter().map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p))));
        StreamingBlob::wrap(stream)
    }

    fn crc32_of(data: &[u8]) -> String {
        let mut h = Algorithm::Crc32.hasher();
        h.update(data);
        Algorithm::Crc32.finish(h).unwrap()
    }

    async fn drain(mut s: StreamingBlob) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => return (out, false),
            }
        }
        (out, true)
    }

    fn header_check(algorithm: Algorithm, value: String) -> Option<ChecksumCheck> {
        Some(ChecksumCheck { algorithm, expected: Expected::Header(value) })
    }

    #[tokio::test]
    async fn passes_a_matching_body_through_unchanged() {
        let info = Arc::new(RequestInfo::default());
        let check = header_check(Algorithm::Crc32, crc32_of(b"hello world"));
        let body = VerifiedUpload::wrap(blob(vec![b"hello", b" ", b"world"]), Some(11), check, info.clone());
        assert_eq!(body.remaining_length().exact(), Some(11));
        assert_eq!(drain(body).await, (b"hello world".to_vec(), true));
        assert_eq!(info.fault(), None);
    }

    #[tokio::test]
    async fn a_checksum_mismatch_never_releases_the_last_piece() {
        let info = Arc::new(RequestInfo::default());
        let check = header_check(Algorithm::Crc32, crc32_of(b"something else"));
        let body = VerifiedUpload::wrap(blob(vec![b"hello", b" ", b"world"]), Some(11), check, info.clone());
        let (got, ok) = drain(body).await;
        assert!(!ok);
        assert!(got.len() < 11, "the upstream must never see the whole body: got {got:?}");
        assert_eq!(info.fault(), Some(&BodyFault::ChecksumMismatch { algorithm: "CRC32" }));
    }

    #[tokio::test]
    async fn the_size_hint_stays_sane_after_a_too_long_body_is_refused() {
        let info = Arc::new(RequestInfo::default());
        let mut body = VerifiedUpload::wrap(blob(vec![b"abc", b"defg"]), Some(4), None, info);
        while body.next().await.is_some() {}
        assert_eq!(body.remaining_length().exact(), Some(0));
    }

    #[tokio::test]
    async fn short_and_long_bodies_are_incomplete() {
        for (pieces, declared) in [(vec![b"abc" as &[u8]], 4), (vec![b"abc", b"de"], 4)] {
            let info = Arc::new(RequestInfo::default());
            let (got, ok) = drain(VerifiedUpload::wrap(blob(pieces), Some(declared), None, info.clone())).await;
            assert!(!ok && got.len() < declared as usize);
            assert_eq!(info.fault(), Some(&BodyFault::Incomplete));
        }
    }

    #[test]
    fn aws_chunked_marker_is_removed_and_other_encodings_kept() {
        assert_eq!(strip_aws_chunked(Some("aws-chunked".into())), None);
        assert_eq!(strip_aws_chunked(Some("aws-chunked, gzip".into())).as_deref(), Some("gzip"));
        assert_eq!(strip_aws_chunked(Some("gzip".into())).as_deref(), Some("gzip"));
        assert_eq!(strip_aws_chunked(None), None);
    }

    #[test]
    fn checksum_headers_are_found_and_trailers_preferred() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-checksum-sha256", "abc=".parse().unwrap());
        let c = ChecksumCheck::from_request(&h, None).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.expected_value().as_deref(), Some("abc="));
        assert!(ChecksumCheck::from_request(&HeaderMap::new(), None).is_none());
    }
}
