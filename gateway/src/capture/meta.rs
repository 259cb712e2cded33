//! The headers, user metadata and tags a version is restored with, taken from a request
//! (what the client asked for) or from an upstream response (what the object has).

use std::collections::HashMap;

use s3s::dto;

/// Content headers, user metadata and tags, as stored in a commit record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Lower-case header names and values.
    pub headers: Vec<(String, String)>,
    /// User metadata without the `x-amz-meta-` prefix, sorted.
    pub metadata: Vec<(String, String)>,
    /// Tags, sorted.
    pub tags: Vec<(String, String)>,
}

fn push(headers: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        headers.push((name.to_owned(), v.to_owned()));
    }
}

fn sorted(map: Option<&HashMap<String, String>>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = map.into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort();
    v
}

fn http_date(t: Option<&dto::Timestamp>) -> Option<String> {
    let mut out = Vec::new();
    t?.format(dto::TimestampFormat::HttpDate, &mut out).ok()?;
    String::from_utf8(out).ok()
}

/// Parses an `x-amz-tagging` value (`k1=v1&k2=v2`, URL-encoded).
pub fn parse_tagging(tagging: Option<&str>) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = tagging
        .map(|t| form_urlencoded::parse(t.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default();
    tags.sort();
    tags
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

impl ObjectMeta {
    /// What a PutObject asks for (its content-encoding already stripped of aws-chunked).
    pub fn from_put(i: &dto::PutObjectInput) -> Self {
        Self {
            headers: content_headers!(i, i.content_encoding.as_deref()),
            metadata: sorted(i.metadata.as_ref()),
            tags: parse_tagging(i.tagging.as_deref()),
        }
    }

    /// What a CreateMultipartUpload asks for.
    pub fn from_create_multipart(i: &dto::CreateMultipartUploadInput) -> Self {
        Self {
            headers: content_headers!(i, i.content_encoding.as_deref()),
            metadata: sorted(i.metadata.as_ref()),
            tags: parse_tagging(i.tagging.as_deref()),
        }
    }

    /// What a CopyObject with `REPLACE` directives asks for.
    pub fn from_copy(i: &dto::CopyObjectInput) -> Self {
        Self {
            headers: content_headers!(i, i.content_encoding.as_deref()),
            metadata: sorted(i.metadata.as_ref()),
            tags: parse_tagging(i.tagging.as_deref()),
        }
    }

    /// What an upstream object has (tags are fetched separately).
    pub fn from_get(o: &aws_sdk_s3::operation::get_object::GetObjectOutput) -> Self {
        let mut h = Vec::new();
        push(&mut h, "cache-control", o.cache_control());
        push(&mut h, "content-disposition", o.content_disposition());
        push(&mut h, "content-encoding", o.content_encoding());
        push(&mut h, "content-language", o.content_language());
        push(&mut h, "content-type", o.content_type());
        let expires = o.expires_string();
        push(&mut h, "expires", expires);
        push(&mut h, "x-amz-website-redirect-location", o.website_redirect_location());
        Self { headers: h, metadata: sorted(o.metadata()), tags: Vec::new() }
    }
}
