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
    if *err.code() == S3ErrorCode::AccessDenied {
        // AWS names the upstream principal and account in these (review R10): the client
        // learns only that access was denied; the log keeps the upstream's words.
        tracing::warn!(operation, upstream_message = err.message().unwrap_or_default(), "the upstream denied access");
        let mut denied = S3Error::with_message(S3ErrorCode::AccessDenied, "Access Denied");
        if let Some(status) = err.status_code() {
            denied.set_status_code(status);
        }
        return denied;
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
    chain(err.code().as_str().to_owned(), err.source().map(|s| s as _))
}

/// `head`, then each error of the chain from `cause` on, joined by ": " (for log lines).
pub(crate) fn chain(head: String, cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    let (mut text, mut cause) = (head, cause);
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

/// The message S3 gives with `code`, for errors that carry none: SDKs print "Unknown"
/// without one (the embedded upstream's and s3s's own errors have none).
pub fn standard_message(code: &str) -> &'static str {
    match code {
        "AccessDenied" => "Access Denied",
        "BadDigest" => "The Content-MD5 or checksum you specified did not match what was received.",
        "BucketAlreadyExists" => "The requested bucket name is not available. Select a different name and try again.",
        "BucketAlreadyOwnedByYou" => {
            "Your previous request to create the named bucket succeeded and you already own it."
        }
        "BucketNotEmpty" => "The bucket you tried to delete is not empty.",
        "EntityTooLarge" => "Your proposed upload exceeds the maximum allowed object size.",
        "EntityTooSmall" => "Your proposed upload is smaller than the minimum allowed object size.",
        "IncompleteBody" => "You did not provide the number of bytes specified by the Content-Length HTTP header.",
        "InternalError" => "We encountered an internal error. Please try again.",
        "InvalidAccessKeyId" => "The AWS Access Key Id you provided does not exist in our records.",
        "InvalidArgument" => "Invalid Argument",
        "InvalidBucketName" => "The specified bucket is not valid.",
        "InvalidDigest" => "The Content-MD5 you specified is not valid.",
        "InvalidPart" => "One or more of the specified parts could not be found.",
        "InvalidPartOrder" => "The list of parts was not in ascending order.",
        "InvalidRange" => "The requested range is not satisfiable.",
        "InvalidRequest" => "Invalid Request",
        "InvalidStorageClass" => "The storage class you specified is not valid.",
        "KeyTooLongError" => "Your key is too long.",
        "MalformedXML" => "The XML you provided was not well-formed or did not validate against our published schema.",
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "NoSuchBucket" => "The specified bucket does not exist.",
        "NoSuchKey" => "The specified key does not exist.",
        "NoSuchUpload" => "The specified multipart upload does not exist.",
        "NoSuchVersion" => "The specified version does not exist.",
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "PreconditionFailed" => "At least one of the preconditions you specified did not hold.",
        "RequestTimeTooSkewed" => "The difference between the request time and the current time is too large.",
        "ServiceUnavailable" => "Please reduce your request rate.",
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        }
        "SlowDown" => "Please reduce your request rate.",
        _ => "The request could not be completed.",
    }
}

/// An S3 error document without a `<Message>` gets its code's standard message.
fn with_standard_message(xml: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(xml).ok()?;
    if !text.contains("<Error>") || text.contains("<Message>") {
        return None;
    }
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    let insert_at = end + "</Code>".len();
    let message = standard_message(&text[start..end]);
    Some([&text[..insert_at], "<Message>", message, "</Message>", &text[insert_at..]].concat().into_bytes())
}

/// An error document as the gateway sends it, and the request id its answer's
/// `x-amz-request-id` must carry: the document's code gets its standard message if it
/// has none (s3s's own errors and the embedded upstream's carry none, and SDKs then print
/// "Unknown"), and `request_id` if it has no `<RequestId>` (an upstream's own id is kept,
/// and then the header says it too). `None` when the document needs no change.
pub fn complete_error_document(document: &[u8], request_id: &str) -> (Option<Vec<u8>>, String) {
    let mut fixed = with_standard_message(document);
    let current = fixed.as_deref().unwrap_or(document);
    let id = match request_id_of(current) {
        Some(upstream) => upstream.to_owned(),
        None => {
            fixed = with_request_id(current, request_id).or(fixed);
            request_id.to_owned()
        }
    };
    (fixed, id)
}

/// The `<RequestId>` of an S3 error document, if it has one.
fn request_id_of(xml: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(xml).ok()?;
    let start = text.find("<RequestId>")? + "<RequestId>".len();
    Some(&text[start..start + text[start..].find("</RequestId>")?])
}

/// An S3 error document without a `<RequestId>` gets `id` (clients match it with the
/// `x-amz-request-id` header).
fn with_request_id(xml: &[u8], id: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(xml).ok()?;
    if text.contains("<RequestId>") {
        return None;
    }
    let end = text.rfind("</Error>")?;
    Some([&text[..end], "<RequestId>", id, "</RequestId>", &text[end..]].concat().into_bytes())
}

pub use rewind_embedded::body::from_body_fault;

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
pub fn capture_refused(operation: &str, err: &rewind_capture::CaptureError, applied: Applied) -> S3Error {
    use rewind_capture::{CaptureError, TeeError};
    if let CaptureError::Refused { code, message, status } = err {
        // The upstream judged the request itself: its answer, as it would have given it.
        tracing::info!(operation, code, "mutation refused: the upstream refused to read the version it would replace");
        let message = if message.is_empty() { standard_message(code).to_owned() } else { message.clone() };
        let mut e = S3Error::with_message(
            S3ErrorCode::from_bytes(code.as_bytes()).unwrap_or(S3ErrorCode::Custom(code.clone().into())),
            message,
        );
        e.set_status_code(http::StatusCode::from_u16(*status).unwrap_or(http::StatusCode::BAD_REQUEST));
        return e;
    }
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

/// A write refused because its client key has an open incident in protect mode.
pub fn tripwire_refused(incident: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessDenied,
        format!(
            "Rewind's tripwire stopped writes of this access key to this bucket: incident {incident}. An operator can review it (rewind incidents show {incident}) and allow writes again (rewind incidents ack {incident})."
        ),
    )
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
    fn error_documents_without_a_message_get_the_standard_one() {
        let doc = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchBucket</Code><RequestId>1</RequestId></Error>";
        let fixed = String::from_utf8(with_standard_message(doc).unwrap()).unwrap();
        assert!(
            fixed.contains("<Code>NoSuchBucket</Code><Message>The specified bucket does not exist.</Message>"),
            "{fixed}"
        );
        assert_eq!(with_standard_message(fixed.as_bytes()), None, "a message is kept");
        assert_eq!(with_standard_message(b"<ListBucketResult/>"), None);
        assert_eq!(request_id_of(doc), Some("1"));
        let bare = b"<Error><Code>NoSuchKey</Code></Error>";
        let stamped = with_request_id(bare, "abc").unwrap();
        assert_eq!(stamped, b"<Error><Code>NoSuchKey</Code><RequestId>abc</RequestId></Error>");
        assert_eq!(with_request_id(doc, "abc"), None, "the upstream's id is kept");
        let (completed, id) = complete_error_document(bare, "abc");
        let completed = String::from_utf8(completed.unwrap()).unwrap();
        assert!(completed.contains("<Message>") && completed.contains("<RequestId>abc</RequestId>"), "{completed}");
        assert_eq!(id, "abc");
        assert_eq!(complete_error_document(fixed.as_bytes(), "abc"), (None, "1".to_owned()));
    }

    #[test]
    fn upstream_access_denied_says_no_more_than_that() {
        let mut e = S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "User: arn:aws:iam::123456789012:user/upstream is not authorized",
        );
        e.set_status_code(http::StatusCode::FORBIDDEN);
        let out = from_upstream("GetObject", e, None);
        assert_eq!(out.message(), Some("Access Denied"));
        assert_eq!(out.status_code().map(|s| s.as_u16()), Some(403));
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
