//! Upstream answers that aws-sdk-s3 cannot decode, or that carry more than s3s-aws
//! passes on, read again from the raw answer the SDK kept.
//!
//! The SDK checks an answer's XML strictly (its root element's name, for one), and a
//! failed decode becomes a 500 for the client although the upstream said 200. moto, for
//! one, answers GetBucketVersioning with a `GetBucketVersioningResponse` root where S3 has
//! `VersioningConfiguration`. Where an answer's meaning survives such a difference, it is
//! read here from the raw bytes the SDK kept.

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_bucket_versioning::GetBucketVersioningError;
use aws_smithy_runtime_api::http::Response;
use s3s::dto;
use s3s::{S3Error, S3Response, S3Result};

/// A GetBucketVersioning the SDK failed to decode, read again from the upstream's bytes
/// when the upstream answered 200; any other failure as it was.
pub(crate) fn get_bucket_versioning(
    answer: S3Result<S3Response<dto::GetBucketVersioningOutput>>,
) -> S3Result<S3Response<dto::GetBucketVersioningOutput>> {
    let err = match answer {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    let Some(body) = undecoded_success::<GetBucketVersioningError>(&err) else { return Err(err) };
    let text = String::from_utf8_lossy(body);
    Ok(S3Response::new(dto::GetBucketVersioningOutput {
        status: element(&text, "Status").map(dto::BucketVersioningStatus::from),
        mfa_delete: element(&text, "MfaDelete").map(dto::MFADeleteStatus::from),
    }))
}

/// Headers of an upstream's error answer that clients read, and s3s-aws drops: a 304's
/// ETag and Last-Modified, and the delete-marker and version headers of a 404 or 405
/// (a HEAD or GET of a delete marker). `E` is the operation's SDK error type.
pub(crate) fn with_error_headers<E: std::error::Error + 'static, O>(
    answer: S3Result<S3Response<O>>,
) -> S3Result<S3Response<O>> {
    const KEPT: [&str; 4] = ["etag", "last-modified", "x-amz-delete-marker", "x-amz-version-id"];
    answer.map_err(|mut err| {
        let Some(raw) = raw_response::<E>(&err) else { return err };
        let mut headers = http::HeaderMap::new();
        for name in KEPT {
            if let Some(value) = raw.headers().get(name).and_then(|v| http::HeaderValue::from_str(v).ok()) {
                headers.insert(name, value);
            }
        }
        if !headers.is_empty() {
            // The error's headers replace the response's, the document's type among them.
            headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
            err.set_headers(headers);
        }
        err
    })
}

/// The upstream's answer behind `err`, if it came from the SDK with one.
fn raw_response<E: std::error::Error + 'static>(err: &S3Error) -> Option<&Response> {
    err.source()?.downcast_ref::<SdkError<E, Response>>()?.raw_response()
}

/// The body of a 2xx answer behind `err`, if the SDK kept it (its decode failed).
fn undecoded_success<E: std::error::Error + 'static>(err: &S3Error) -> Option<&[u8]> {
    let raw = raw_response::<E>(err)?;
    if !raw.status().is_success() {
        return None;
    }
    raw.body().bytes()
}

/// The text of the first `<name>...</name>` in `xml`, whatever its parent, trimmed;
/// `None` if absent or empty.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    let value = xml[start..end].trim();
    (!value.is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_found_under_any_root() {
        let moto = r#"<?xml version="1.0" encoding="utf-8"?>
<GetBucketVersioningResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></GetBucketVersioningResponse>"#;
        assert_eq!(element(moto, "Status").as_deref(), Some("Enabled"));
        assert_eq!(element(moto, "MfaDelete"), None);
        assert_eq!(element("<GetBucketVersioningResponse/>", "Status"), None);
        assert_eq!(element("<V><Status> </Status></V>", "Status"), None);
    }
}
