//! Why a capture failed, and how upstream failures are told.

use aws_sdk_s3::error::SdkError;
use rewind_journal::JournalError;
use rewind_vault::VaultError;

use crate::metrics::refusal;

/// Why the vault side of an upload (the tee of its body into the vault) failed.
#[derive(Debug, thiserror::Error)]
pub enum TeeError {
    /// The client's body failed (bad checksum, cut short...); the upstream saw the error.
    #[error("the request body failed")]
    Body,
    /// The vault could not store the bytes.
    #[error("the vault could not store the upload: {0}")]
    Vault(#[source] VaultError),
    /// The vault did not accept a piece within the capture timeout.
    #[error("the vault was too slow")]
    Slow,
    /// The upstream stopped reading (it failed, or the request was dropped).
    #[error("the upstream stopped reading the body")]
    UpstreamGone,
    /// The body's end was withheld from the upstream: the write was refused (its key's
    /// lock, capture-before-destroy or intent failed) after the body arrived.
    #[error("the write was refused before the upstream could apply it")]
    Withheld,
}

/// Why a mutation could not be captured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The journal refused an append.
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The vault could not store or read bytes.
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    /// The tee into the vault failed.
    #[error(transparent)]
    Tee(#[from] TeeError),
    /// Reading from the upstream failed, or it answered without what was asked.
    #[error("reading from the upstream: {detail}")]
    Upstream {
        /// What happened, in one sentence (see [`describe`]).
        detail: String,
        /// The upstream client's error, when there was one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An earlier mutation of the key, by a gateway that is still alive, stayed unresolved
    /// for longer than a write waits for it (that gateway lost its database connection).
    #[error("an earlier mutation of this key by gateway {owner} is still unresolved")]
    Unsettled {
        /// The gateway that owns the open intent.
        owner: String,
    },
    /// The upstream refused to read the version (a client error: the key or request is
    /// invalid there). The mutation would be refused the same way, so the client is told so.
    #[error("the upstream refused to read it: {code}: {message}")]
    Refused {
        /// The upstream's S3 error code.
        code: String,
        /// Its message.
        message: String,
        /// Its HTTP status (4xx).
        status: u16,
    },
}

impl CaptureError {
    /// The upstream answered without what was asked (no error of its own to keep).
    pub fn upstream(detail: impl Into<String>) -> Self {
        Self::Upstream { detail: detail.into(), source: None }
    }

    /// The `reason` label of the refusal metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Journal(_) | Self::Unsettled { .. } => refusal::JOURNAL,
            Self::Vault(_) | Self::Tee(TeeError::Vault(_)) => refusal::VAULT,
            Self::Tee(TeeError::Slow) => refusal::SLOW_VAULT,
            Self::Tee(TeeError::Body) => refusal::CLIENT_BODY,
            Self::Tee(TeeError::UpstreamGone) => refusal::UPSTREAM,
            Self::Tee(TeeError::Withheld) => refusal::CAPTURE_BEFORE_DESTROY,
            Self::Upstream { .. } | Self::Refused { .. } => refusal::CAPTURE_BEFORE_DESTROY,
        }
    }
}

/// What a client reads when the upstream refused a capture step without saying why.
const BARE_REFUSAL: &str = "Rewind reads the version a change replaces before making the change, and the upstream \
refused that read without an error code, so the change was not made. The upstream answered";

/// An upstream call's failure as a capture error: a client error (4xx) is the upstream
/// refusing, anything else is the upstream failing; the SDK's error is kept as the source.
pub fn upstream_error<E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    e: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> CaptureError {
    if let SdkError::ServiceError(s) = &e {
        let status = s.raw().status().as_u16();
        if (400..500).contains(&status) {
            return refused(status, s.err().code(), s.err().message());
        }
    }
    CaptureError::Upstream { detail: describe(&e), source: Some(Box::new(e)) }
}

/// An upstream's error answer (`status`, and the code and message of its document) as a
/// capture error, as [`upstream_error`] tells it; for callers that read answers themselves.
pub fn answer_error(status: u16, code: Option<&str>, message: Option<&str>) -> CaptureError {
    if (400..500).contains(&status) {
        return refused(status, code, message);
    }
    CaptureError::upstream(answered(status, code.unwrap_or("an error"), message))
}

fn refused(status: u16, code: Option<&str>, message: Option<&str>) -> CaptureError {
    let (code, message) = match code {
        Some(code) => (code.to_owned(), message.unwrap_or_default().to_owned()),
        // Nothing of the upstream's own to pass on (a HEAD's answer has no document).
        None => ("InvalidRequest".to_owned(), format!("{BARE_REFUSAL} {status}.")),
    };
    CaptureError::Refused { code, message, status }
}

/// "the upstream answered 503 SlowDown: ..." for an error answer.
fn answered(status: u16, code: &str, message: Option<&str>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!("the upstream answered {status} {code}: {m}"),
        _ => format!("the upstream answered {status} {code}"),
    }
}

/// One sentence for an upstream call's failure: what an operator reads in a log line or a
/// restore's failure list (the SDK's debug form ran to 2.5 KB a failure).
pub fn describe<E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static>(
    e: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> String {
    match e {
        SdkError::ServiceError(s) => {
            answered(s.raw().status().as_u16(), s.err().code().unwrap_or("an error"), s.err().message())
        }
        SdkError::TimeoutError(_) => "the upstream did not answer in time".to_owned(),
        SdkError::DispatchFailure(d) => match d.as_connector_error() {
            Some(c) => format!("could not reach the upstream: {c}"),
            None => "could not reach the upstream".to_owned(),
        },
        SdkError::ResponseError(_) => "the upstream's answer could not be read".to_owned(),
        _ => format!("the upstream call failed: {}", aws_smithy_types::error::display::DisplayErrorContext(e)),
    }
}

/// Whether an upstream error says the object (or its bucket) is not there, or that the
/// version asked for is a delete marker (405 with `x-amz-delete-marker: true`, as S3
/// answers a HEAD or GET of one): no bytes to read either way.
pub(crate) fn is_absent<E>(e: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(s) => {
            let raw = s.raw();
            let delete_marker =
                raw.status().as_u16() == 405 && raw.headers().get("x-amz-delete-marker") == Some("true");
            raw.status().as_u16() == 404
                || delete_marker
                || matches!(s.err().code(), Some("NoSuchKey" | "NotFound" | "NoSuchBucket" | "NoSuchVersion"))
        }
        _ => false,
    }
}

/// Whether an upstream error is a 400 without an error code: what moto answers a HEAD of
/// a version it does not have (a HEAD answer has no document to carry a code).
pub(crate) fn is_bare_bad_request<E>(e: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    matches!(e, SdkError::ServiceError(s) if s.raw().status().as_u16() == 400 && s.err().code().is_none())
}

/// `Ok(None)` when an upstream error says the object (or its bucket) is not there; the
/// error otherwise.
pub(crate) fn absent_or_error<T, E>(
    e: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> Result<Option<T>, CaptureError>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if is_absent(&e) {
        return Ok(None);
    }
    Err(upstream_error(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::head_object::HeadObjectError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn refused(status: u16, meta: ErrorMetadata) -> CaptureError {
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        upstream_error(SdkError::service_error(HeadObjectError::generic(meta), raw))
    }

    #[test]
    fn a_refusal_without_a_code_says_what_was_refused() {
        let CaptureError::Refused { code, message, status } = refused(400, ErrorMetadata::builder().build()) else {
            panic!("a 4xx is a refusal")
        };
        assert_eq!((code.as_str(), status), ("InvalidRequest", 400));
        assert!(message.contains("without an error code") && message.ends_with("answered 400."), "{message}");

        let meta = ErrorMetadata::builder().code("AccessDenied").message("Access Denied").build();
        let CaptureError::Refused { code, message, .. } = refused(403, meta) else { panic!("a refusal") };
        assert_eq!((code.as_str(), message.as_str()), ("AccessDenied", "Access Denied"), "the upstream's own words");
    }
}
