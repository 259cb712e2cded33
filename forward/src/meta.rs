//! The headers, user metadata and tags an S3 request asks for (see
//! `rewind_capture::meta` for the type and what an upstream object has).

use rewind_capture::ObjectMeta;
use rewind_capture::meta::{parse_tagging, push, sorted};
use s3s::dto;

fn http_date(t: Option<&dto::Timestamp>) -> Option<String> {
    let mut out = Vec::new();
    t?.format(dto::TimestampFormat::HttpDate, &mut out).ok()?;
    String::from_utf8(out).ok()
}

/// Tags of a PutObjectTagging body.
pub fn tag_set(tags: &[dto::Tag]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        tags.iter().map(|t| (t.key.clone().unwrap_or_default(), t.value.clone().unwrap_or_default())).collect();
    out.sort();
    out
}

macro_rules! content_headers {
    ($input:expr, $content_encoding:expr) => {{
        let i = $input;
        let mut h = Vec::new();
        push(&mut h, "cache-control", i.cache_control.as_deref());
        push(&mut h, "content-disposition", i.content_disposition.as_deref());
        push(&mut h, "content-encoding", $content_encoding);
        push(&mut h, "content-language", i.content_language.as_deref());
        push(&mut h, "content-type", i.content_type.as_deref());
        push(&mut h, "expires", http_date(i.expires.as_ref()).as_deref());
        push(&mut h, "x-amz-website-redirect-location", i.website_redirect_location.as_deref());
        h
    }};
}

/// What a PutObject asks for (its content-encoding already stripped of aws-chunked).
pub fn from_put(i: &dto::PutObjectInput) -> ObjectMeta {
    ObjectMeta {
        headers: content_headers!(i, i.content_encoding.as_deref()),
        metadata: sorted(i.metadata.as_ref()),
        tags: parse_tagging(i.tagging.as_deref()),
    }
}

/// What a CreateMultipartUpload asks for.
pub fn from_create_multipart(i: &dto::CreateMultipartUploadInput) -> ObjectMeta {
    ObjectMeta {
        headers: content_headers!(i, i.content_encoding.as_deref()),
        metadata: sorted(i.metadata.as_ref()),
        tags: parse_tagging(i.tagging.as_deref()),
    }
}

/// What a CopyObject with `REPLACE` directives asks for.
pub fn from_copy(i: &dto::CopyObjectInput) -> ObjectMeta {
    ObjectMeta {
        headers: content_headers!(i, i.content_encoding.as_deref()),
        metadata: sorted(i.metadata.as_ref()),
        tags: parse_tagging(i.tagging.as_deref()),
    }
}

/// The checksums an upstream answer carries (PutObject, CompleteMultipartUpload, a copy's
/// result), named as S3 names them less the `checksum_` prefix, with `type` last.
macro_rules! checksums {
    ($output:expr) => {{
        let o = $output;
        let mut c = Vec::new();
        rewind_capture::meta::push(&mut c, "crc32", o.checksum_crc32.as_deref());
        rewind_capture::meta::push(&mut c, "crc32c", o.checksum_crc32c.as_deref());
        rewind_capture::meta::push(&mut c, "crc64nvme", o.checksum_crc64nvme.as_deref());
        rewind_capture::meta::push(&mut c, "sha1", o.checksum_sha1.as_deref());
        rewind_capture::meta::push(&mut c, "sha256", o.checksum_sha256.as_deref());
        if !c.is_empty() {
            rewind_capture::meta::push(&mut c, "type", o.checksum_type.as_ref().map(|t| t.as_str()));
        }
        c
    }};
}
pub(crate) use checksums;
