//! Upload bodies on their way upstream: counted, checked against every digest the client
//! declared (each `x-amz-checksum-*` header or trailer, and `Content-MD5`), and held back
//! by one piece so that the upstream never receives a complete body the gateway has not
//! accepted.
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

use s3s::{S3Error, S3ErrorCode};

/// Why a client's request body could not be accepted. The first fault wins: a body that
/// stalled and then failed its checksum was a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFault {
    /// No body bytes arrived within the idle timeout.
    IdleTimeout,
    /// The body's trailing checksum differs from what arrived.
    ChecksumMismatch {
        /// The checksum's name as S3 spells it (`CRC32`, `SHA256`...).
        algorithm: &'static str,
    },
    /// The signed payload hash (`x-amz-content-sha256`) differs from what arrived.
    PayloadHashMismatch,
    /// A chunk signature of an aws-chunked body is wrong.
    ChunkSignatureMismatch,
    /// The body was shorter or longer than declared, or its framing was broken.
    Incomplete,
}

/// Where a request records why its body failed, for its answer.
pub trait FaultSink: Send + Sync {
    /// Records `fault`; the first one recorded wins.
    fn set_fault(&self, fault: BodyFault);
    /// The fault recorded so far (an earlier layer, such as the idle timeout, may have).
    fn recorded(&self) -> Option<BodyFault>;
}

/// A body fault recorded once.
#[derive(Debug, Default)]
pub struct Fault(std::sync::OnceLock<BodyFault>);

impl Fault {
    /// The fault, if the body failed.
    pub fn get(&self) -> Option<&BodyFault> {
        self.0.get()
    }
}

impl FaultSink for Fault {
    fn set_fault(&self, fault: BodyFault) {
        let _first_wins = self.0.set(fault);
    }

    fn recorded(&self) -> Option<BodyFault> {
        self.0.get().cloned()
    }
}

/// The S3 error a client expects for a body fault.
pub fn from_body_fault(fault: &BodyFault) -> S3Error {
    match fault {
        BodyFault::IdleTimeout => S3Error::with_message(
            S3ErrorCode::RequestTimeout,
            "Your socket connection to the server was not read from or written to within the timeout period.",
        ),
        BodyFault::ChecksumMismatch { algorithm } => S3Error::with_message(
            S3ErrorCode::BadDigest,
            format!("The {algorithm} you specified did not match the calculated checksum."),
        ),
        BodyFault::PayloadHashMismatch => {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            );
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            e
        }
        BodyFault::ChunkSignatureMismatch => S3Error::with_message(
            S3ErrorCode::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided.",
        ),
        BodyFault::Incomplete => S3Error::with_message(
            S3ErrorCode::IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header.",
        ),
    }
}

type StdError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The digests S3 checks a body against: its checksum algorithms, and `Content-MD5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
    /// `Content-MD5`: not a checksum algorithm an upstream can be asked for.
    Md5,
}

impl Algorithm {
    /// The checksum algorithms (carried in `x-amz-checksum-*` headers or trailers).
    const CHECKSUMS: [Self; 5] = [Self::Crc32, Self::Crc32c, Self::Crc64Nvme, Self::Sha1, Self::Sha256];

    /// The name S3 uses (`x-amz-sdk-checksum-algorithm`, error messages).
    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32 => ChecksumAlgorithm::CRC32,
            Self::Crc32c => ChecksumAlgorithm::CRC32C,
            Self::Crc64Nvme => ChecksumAlgorithm::CRC64NVME,
            Self::Sha1 => ChecksumAlgorithm::SHA1,
            Self::Sha256 => ChecksumAlgorithm::SHA256,
            Self::Md5 => "Content-MD5",
        }
    }

    /// The header (or trailer) that carries this digest.
    pub fn header(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
            Self::Md5 => "content-md5",
        }
    }

    /// The length of this digest's value as S3 writes it (base64).
    pub fn value_len(self) -> usize {
        let digest: usize = match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Md5 => 16,
        };
        digest.div_ceil(3) * 4
    }

    /// Whether an upstream can be asked to store this checksum with the object.
    pub fn is_checksum(self) -> bool {
        self != Self::Md5
    }

    /// The checksum algorithm whose header is `name`, case-insensitively.
    pub fn from_header(name: &str) -> Option<Self> {
        Self::CHECKSUMS.into_iter().find(|a| a.header().eq_ignore_ascii_case(name.trim()))
    }

    fn hasher(self) -> Hasher {
        let mut h = ChecksumHasher::default();
        match self {
            Self::Crc32 => h.crc32 = Some(s3s::crypto::Crc32::new()),
            Self::Crc32c => h.crc32c = Some(s3s::crypto::Crc32c::new()),
            Self::Crc64Nvme => h.crc64nvme = Some(s3s::crypto::Crc64Nvme::new()),
            Self::Sha1 => h.sha1 = Some(s3s::crypto::Sha1::new()),
            Self::Sha256 => h.sha256 = Some(s3s::crypto::Sha256::new()),
            Self::Md5 => return Hasher::Md5(<md5::Md5 as md5::Digest>::new()),
        }
        Hasher::S3(Box::new(h))
    }

    fn finish(self, hasher: Hasher) -> Option<String> {
        let sums = match hasher {
            Hasher::S3(h) => h.finalize(),
            Hasher::Md5(h) => {
                use base64::Engine as _;
                return Some(base64::engine::general_purpose::STANDARD.encode(md5::Digest::finalize(h)));
            }
        };
        match self {
            Self::Crc32 => sums.checksum_crc32,
            Self::Crc32c => sums.checksum_crc32c,
            Self::Crc64Nvme => sums.checksum_crc64nvme,
            Self::Sha1 => sums.checksum_sha1,
            Self::Sha256 => sums.checksum_sha256,
            Self::Md5 => None,
        }
    }
}

/// A running digest of one algorithm.
enum Hasher {
    S3(Box<ChecksumHasher>),
    Md5(md5::Md5),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Self::S3(h) => h.update(data),
            Self::Md5(h) => md5::Digest::update(h, data),
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
    /// Nothing declared: computed only, for the gateway to send upstream itself.
    Computed,
}

/// A digest the client asked the gateway to hold its body to.
#[derive(Debug)]
pub struct ChecksumCheck {
    pub algorithm: Algorithm,
    pub expected: Expected,
}

impl ChecksumCheck {
    /// Every digest a request declares: the checksum named by `x-amz-trailer` (its value
    /// arrives after the body), each `x-amz-checksum-*` header, and `Content-MD5`. All of
    /// them must match: an upstream that checks one after storing the object (s3s-fs
    /// does) would otherwise keep a body the client was told was refused (review F10).
    pub fn from_request(headers: &HeaderMap, trailers: Option<TrailingHeaders>) -> Vec<Self> {
        let mut checks = Vec::new();
        let trailer = headers.get("x-amz-trailer").and_then(|t| t.to_str().ok()).and_then(Algorithm::from_header);
        if let (Some(algorithm), Some(handle)) = (trailer, trailers) {
            checks.push(Self { algorithm, expected: Expected::Trailer(handle) });
        }
        for algorithm in Algorithm::CHECKSUMS.into_iter().chain([Algorithm::Md5]) {
            if Some(algorithm) == trailer {
                continue;
            }
            if let Some(value) = headers.get(algorithm.header()) {
                let value = value.to_str().map(|v| v.trim().to_owned()).unwrap_or_default();
                checks.push(Self { algorithm, expected: Expected::Header(value) });
            }
        }
        checks
    }

    /// A digest of `algorithm` the client did not declare, computed for the upstream.
    pub fn computed(algorithm: Algorithm) -> Self {
        Self { algorithm, expected: Expected::Computed }
    }

    fn expected_value(&self) -> Option<String> {
        match &self.expected {
            Expected::Header(v) => Some(v.clone()),
            Expected::Computed => None,
            Expected::Trailer(t) => t
                .read(|h| h.get(self.algorithm.header()).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned()))
                .flatten(),
        }
    }
}

/// The digests of a body that ended verified, filled when it ends (before its last piece
/// is released): what the gateway may send upstream as the body's trailer.
#[derive(Clone, Default)]
pub struct Digests(Arc<std::sync::OnceLock<Vec<(Algorithm, String)>>>);

impl Digests {
    /// The value of `algorithm`'s digest, once the body has ended verified.
    pub fn value(&self, algorithm: Algorithm) -> Option<&str> {
        self.0.get()?.iter().find(|(a, _)| *a == algorithm).map(|(_, v)| v.as_str())
    }
}

/// Wraps an upload body: see the module documentation.
pub struct VerifiedUpload {
    inner: DynByteStream,
    held: Option<Bytes>,
    declared: Option<u64>,
    received: u64,
    checks: Vec<(ChecksumCheck, Hasher)>,
    info: Arc<dyn FaultSink>,
    finished: bool,
    digests: Digests,
}

impl VerifiedUpload {
    /// Wraps `body`, whose declared (decoded) length is `declared`.
    pub fn wrap(
        body: StreamingBlob,
        declared: Option<u64>,
        checks: Vec<ChecksumCheck>,
        info: Arc<dyn FaultSink>,
    ) -> StreamingBlob {
        Self::wrap_reporting(body, declared, checks, info).0
    }

    /// [`Self::wrap`], and where the digests of `checks` can be read once the body has
    /// ended verified.
    pub fn wrap_reporting(
        body: StreamingBlob,
        declared: Option<u64>,
        checks: Vec<ChecksumCheck>,
        info: Arc<dyn FaultSink>,
    ) -> (StreamingBlob, Digests) {
        let checks = checks.into_iter().map(|c| (c.algorithm.hasher(), c)).map(|(h, c)| (c, h)).collect();
        let digests = Digests::default();
        let blob = StreamingBlob::new(Self {
            inner: body.into(),
            held: None,
            declared,
            received: 0,
            checks,
            info,
            finished: false,
            digests: digests.clone(),
        });
        (blob, digests)
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
        let mut digests = Vec::new();
        for (check, hasher) in std::mem::take(&mut self.checks) {
            let computed = check.algorithm.finish(hasher);
            let expected = check.expected_value();
            // A declared trailer that never came is as bad as a wrong one.
            let declared = !matches!(check.expected, Expected::Computed);
            if declared && (expected.is_none() || computed != expected) {
                return Err(BodyFault::ChecksumMismatch { algorithm: check.algorithm.name() });
            }
            digests.extend(computed.map(|c| (check.algorithm, c)));
        }
        let _ = self.digests.0.set(digests);
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
                    for (_, hasher) in &mut this.checks {
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
                    let fault = this.info.recorded().unwrap_or_else(|| classify_s3s_body_error(&*e));
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

    fn header_check(algorithm: Algorithm, value: String) -> Vec<ChecksumCheck> {
        vec![ChecksumCheck { algorithm, expected: Expected::Header(value) }]
    }

    #[tokio::test]
    async fn passes_a_matching_body_through_unchanged() {
        let info = Arc::new(Fault::default());
        let check = header_check(Algorithm::Crc32, crc32_of(b"hello world"));
        let body = VerifiedUpload::wrap(blob(vec![b"hello", b" ", b"world"]), Some(11), check, info.clone());
        assert_eq!(body.remaining_length().exact(), Some(11));
        assert_eq!(drain(body).await, (b"hello world".to_vec(), true));
        assert_eq!(info.get(), None);
    }

    #[tokio::test]
    async fn a_checksum_mismatch_never_releases_the_last_piece() {
        let info = Arc::new(Fault::default());
        let check = header_check(Algorithm::Crc32, crc32_of(b"something else"));
        let body = VerifiedUpload::wrap(blob(vec![b"hello", b" ", b"world"]), Some(11), check, info.clone());
        let (got, ok) = drain(body).await;
        assert!(!ok);
        assert!(got.len() < 11, "the upstream must never see the whole body: got {got:?}");
        assert_eq!(info.get(), Some(&BodyFault::ChecksumMismatch { algorithm: "CRC32" }));
    }

    #[tokio::test]
    async fn the_size_hint_stays_sane_after_a_too_long_body_is_refused() {
        let info = Arc::new(Fault::default());
        let mut body = VerifiedUpload::wrap(blob(vec![b"abc", b"defg"]), Some(4), Vec::new(), info);
        while body.next().await.is_some() {}
        assert_eq!(body.remaining_length().exact(), Some(0));
    }

    #[tokio::test]
    async fn short_and_long_bodies_are_incomplete() {
        for (pieces, declared) in [(vec![b"abc" as &[u8]], 4), (vec![b"abc", b"de"], 4)] {
            let info = Arc::new(Fault::default());
            let (got, ok) = drain(VerifiedUpload::wrap(blob(pieces), Some(declared), Vec::new(), info.clone())).await;
            assert!(!ok && got.len() < declared as usize);
            assert_eq!(info.get(), Some(&BodyFault::Incomplete));
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
    fn every_declared_digest_is_found() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-checksum-sha256", "abc=".parse().unwrap());
        h.insert("x-amz-checksum-crc32", "def=".parse().unwrap());
        h.insert("content-md5", "ghi=".parse().unwrap());
        let checks = ChecksumCheck::from_request(&h, None);
        let found: Vec<_> = checks.iter().map(|c| (c.algorithm, c.expected_value())).collect();
        assert_eq!(
            found,
            [
                (Algorithm::Crc32, Some("def=".into())),
                (Algorithm::Sha256, Some("abc=".into())),
                (Algorithm::Md5, Some("ghi=".into()))
            ]
        );
        assert!(ChecksumCheck::from_request(&HeaderMap::new(), None).is_empty());
    }

    #[tokio::test]
    async fn one_wrong_digest_among_right_ones_refuses_the_body() {
        let data = b"hello world";
        let md5 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(<md5::Md5 as md5::Digest>::digest(data))
        };
        let right = |a| ChecksumCheck {
            algorithm: a,
            expected: Expected::Header(match a {
                Algorithm::Md5 => md5.clone(),
                _ => crc32_of(data),
            }),
        };
        let info = Arc::new(Fault::default());
        let checks = vec![right(Algorithm::Crc32), right(Algorithm::Md5)];
        let (got, ok) = drain(VerifiedUpload::wrap(blob(vec![b"hello", b" world"]), Some(11), checks, info)).await;
        assert!(ok && got == data);
        // Right CRC32, wrong Content-MD5: the last piece is never released.
        let info = Arc::new(Fault::default());
        let wrong_md5 =
            ChecksumCheck { algorithm: Algorithm::Md5, expected: Expected::Header("AAAAAAAAAAAAAAAAAAAAAA==".into()) };
        let checks = vec![right(Algorithm::Crc32), wrong_md5];
        let (got, ok) =
            drain(VerifiedUpload::wrap(blob(vec![b"hello", b" world"]), Some(11), checks, info.clone())).await;
        assert!(!ok && got.len() < data.len());
        assert_eq!(info.get(), Some(&BodyFault::ChecksumMismatch { algorithm: "Content-MD5" }));
    }
}
