//! The one place where failures become S3 errors for the client.
//!
//! - The upstream answered with an S3 error: passed through verbatim (code, message,
//!   status), which s3s-aws already extracted.
//! - The client's body failed verification: the S3 error AWS gives for that fault.
//! - The upstream could not be reached or timed out: 503 ServiceUnavailable, retryable,
//!   with no internal detail (addresses, causes) in the message.

use aws_smithy_runtime_api::client::result::ConnectorError;
use s3s::{S3Error, S3ErrorCode};

use crate::request::BodyFault;

/// Maps an error from an upstream call of `operation`. `fault` is what the client's body
/// did, if it failed: the upstream call then failed because the gateway stopped the body.
pub fn from_upstream(operation: &str, err: S3Error, fault: Option<&BodyFault>) -> S3Error {
    if let Some(fault) = fault {
        return from_body_fault(fault);
    }
    if *err.code() != S3ErrorCode::InternalError {
        return err; // the upstream's own answer, verbatim
    }
    if is_transport_failure(&err) {
        tracing::warn!(operation, cause = %cause_chain(&err), "upstream unreachable");
        return S3Error::with_message(
            S3ErrorCode::ServiceUnavailable,
            "The gateway could not reach its upstream S3 endpoint; retry later.",
        );
    }
    // s3s-aws copies the upstream's status onto errors, including a 200 whose body could
    // not be decoded. An error must never look like success to a client.
    if err.status_code().is_none_or(|s| s.is_success()) {
        tracing::warn!(operation, cause = %cause_chain(&err), "upstream answer could not be understood");
        return S3Error::with_message(
            S3ErrorCode::InternalError,
            "The gateway could not understand the upstream's answer.",
        );
    }
    err
}

/// The error and its causes, for the log line (never for the client).
fn cause_chain(err: &S3Error) -> String {
    let mut text = err.code().as_str().to_owned();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = err.source().map(|s| s as _);
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
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

/// How far a refused mutation got: the client's message says whether the bucket changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing reached the upstream.
    No,
    /// The upstream applied it but the journal could not record it; recovery will.
    Upstream,
}

/// A mutation refused because it could not be captured (fail closed, G1/G2). Logged here,
/// once; the client gets a retryable 503 without internal detail.
pub fn capture_refused(operation: &str, err: &crate::capture::CaptureError, applied: Applied) -> S3Error {
    use crate::capture::{CaptureError, TeeError};
    tracing::error!(operation, error = %err, ?applied, "mutation refused: it could not be captured");
    if matches!(err, CaptureError::Tee(TeeError::Slow)) {
        return S3Error::with_message(S3ErrorCode::SlowDown, "The gateway's vault is too slow right now; retry later.");
    }
    let message = match applied {
        Applied::No => "The gateway could not record this change durably, so it did not make it; retry later.",
        Applied::Upstream => {
            "The change reached the bucket but the gateway could not confirm its record; retry, or check the object."
        }
    };
    S3Error::with_message(S3ErrorCode::ServiceUnavailable, message)
}

/// A bucket configuration refused because it would delete data behind the journal's back.
pub fn destructive_config_refused(what: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessDenied,
        format!(
            "Rewind refuses {what}: it would delete objects without passing through the journal. An operator can allow it with protection.allow_destructive_bucket_config = true."
        ),
    )
}

/// Whether the error's cause is a connection failure or timeout rather than an answer.
/// s3s-aws keeps the SDK's `SdkError` as the source; its variants are told apart by their
/// (stable) display text because the error type is generic over each operation.
fn is_transport_failure(err: &S3Error) -> bool {
    const TRANSPORT_FAILURES: [&str; 2] = ["dispatch failure", "request has timed out"];
    let mut cause: Option<&(dyn std::error::Error + 'static)> = err.source().map(|s| s as _);
    while let Some(e) = cause {
        if e.downcast_ref::<ConnectorError>().is_some() || TRANSPORT_FAILURES.contains(&e.to_string().as_str()) {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_faults_get_the_aws_error_codes() {
        let cases = [
            (BodyFault::IdleTimeout, "RequestTimeout", 400),
            (BodyFault::ChecksumMismatch { algorithm: "CRC32C" }, "BadDigest", 400),
            (BodyFault::PayloadHashMismatch, "XAmzContentSHA256Mismatch", 400),
            (BodyFault::ChunkSignatureMismatch, "SignatureDoesNotMatch", 403),
            (BodyFault::Incomplete, "IncompleteBody", 400),
        ];
        for (fault, code, status) in cases {
            let e = from_upstream("PutObject", S3Error::new(S3ErrorCode::InternalError), Some(&fault));
            assert_eq!(e.code().as_str(), code);
            let got = e.status_code().or_else(|| e.code().status_code()).unwrap();
            assert_eq!(got.as_u16(), status, "{code}");
        }
    }

    #[test]
    fn upstream_answers_pass_through_unchanged() {
        let mut e = S3Error::with_message(S3ErrorCode::NoSuchKey, "The specified key does not exist.");
        e.set_status_code(http::StatusCode::NOT_FOUND);
        let out = from_upstream("GetObject", e, None);
        assert_eq!(out.code(), &S3ErrorCode::NoSuchKey);
        assert_eq!(out.message(), Some("The specified key does not exist."));
    }

    #[test]
    fn an_error_never_carries_a_success_status() {
        let mut e = S3Error::new(S3ErrorCode::InternalError);
        e.set_status_code(http::StatusCode::OK);
        let out = from_upstream("CompleteMultipartUpload", e, None);
        assert_eq!(out.status_code().map(|s| s.as_u16()), Some(500));
        // A 304 from a conditional GET is an answer, not a failure: it passes.
        let mut e = S3Error::new(S3ErrorCode::Custom("NotModified".into()));
        e.set_status_code(http::StatusCode::NOT_MODIFIED);
        assert_eq!(from_upstream("GetObject", e, None).status_code().map(|s| s.as_u16()), Some(304));
    }
}
