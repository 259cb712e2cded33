//! Upstream answers that aws-sdk-s3 cannot decode, or that carry more than s3s-aws
//! passes on, read again from the raw answer the SDK kept.
//!
//! The SDK checks an answer's XML strictly (its root element's name, for one), and a
//! failed decode becomes a 500 for the client although the upstream said 200. moto, for
//! one, answers GetBucketVersioning with a `GetBucketVersioningResponse` root where S3 has
//! `VersioningConfiguration`. Where an answer's meaning survives such a difference, it is
//! read here from the raw bytes the SDK kept.

use aws_sdk_s3::config::ConfigBag;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_bucket_versioning::GetBucketVersioningError;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response;
use rewind_capture::lean::element;
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

/// Where a HEAD's `x-amz-tagging-count` rides from the SDK to the front: a metadata entry
/// no client can set (a header name cannot hold a control character). `HeadObjectOutput`
/// has no field for the header, though S3 sends it and clients read it.
const TAGGING_COUNT: &str = "\u{1}rewind-tagging-count";

/// Keeps a HEAD answer's `x-amz-tagging-count` in its output ([`TAGGING_COUNT`]); for the
/// forwarding clients only, whose outputs [`head_object`] reads.
#[derive(Debug)]
pub(crate) struct HeadTaggingCount;

impl Intercept for HeadTaggingCount {
    fn name(&self) -> &'static str {
        "RewindHeadTaggingCount"
    }

    fn modify_before_attempt_completion(
        &self,
        context: &mut FinalizerInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(count) = context.response().and_then(|r| r.headers().get("x-amz-tagging-count")).map(str::to_owned)
        else {
            return Ok(());
        };
        if let Some(Ok(output)) = context.output_or_error_mut()
            && let Some(head) = output.downcast_mut::<HeadObjectOutput>()
        {
            head.metadata.get_or_insert_default().insert(TAGGING_COUNT.to_owned(), count);
        }
        Ok(())
    }
}

/// A forwarded HeadObject: a delete marker's or a 304's headers kept
/// ([`with_error_headers`]), and the tagging count [`HeadTaggingCount`] kept sent on.
pub(crate) fn head_object(
    answer: S3Result<S3Response<dto::HeadObjectOutput>>,
) -> S3Result<S3Response<dto::HeadObjectOutput>> {
    let mut answer = with_error_headers::<aws_sdk_s3::operation::head_object::HeadObjectError, _>(answer)?;
    let count = answer.output.metadata.as_mut().and_then(|m| m.remove(TAGGING_COUNT));
    if answer.output.metadata.as_ref().is_some_and(|m| m.is_empty()) {
        answer.output.metadata = None;
    }
    if let Some(value) = count.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
        answer.headers.insert("x-amz-tagging-count", value);
    }
    Ok(answer)
}

/// A success document of `operation` as S3 writes it, where s3s writes it otherwise:
/// GetObjectAttributes' `<ETag>` bare (s3s quotes every ETag it writes; S3 quotes none in
/// that document, and clients compare it with the hex digest). `None` when unchanged.
pub fn as_s3_writes(operation: &str, document: &[u8]) -> Option<Vec<u8>> {
    if operation != "GetObjectAttributes" {
        return None;
    }
    let text = std::str::from_utf8(document).ok()?;
    let start = text.find("<ETag>\"")? + "<ETag>".len();
    let end = start + text[start..].find("</ETag>")?;
    let bare = text[start..end].strip_prefix('"')?.strip_suffix('"')?;
    Some([&text[..start], bare, &text[end..]].concat().into_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_attributes_carry_a_bare_etag() {
        let quoted = br#"<GetObjectAttributesResponse><ETag>"acbd18db4cc2f85c-2"</ETag><ObjectSize>3</ObjectSize></GetObjectAttributesResponse>"#;
        let bare = as_s3_writes("GetObjectAttributes", quoted).unwrap();
        assert_eq!(
            String::from_utf8(bare).unwrap(),
            "<GetObjectAttributesResponse><ETag>acbd18db4cc2f85c-2</ETag><ObjectSize>3</ObjectSize></GetObjectAttributesResponse>"
        );
        assert_eq!(as_s3_writes("GetObjectAttributes", b"<R><ETag>abc</ETag></R>"), None, "already bare");
        assert_eq!(as_s3_writes("CopyObject", quoted), None, "other documents quote their ETags, as S3 does");
    }

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
