//! The headers, user metadata and tags a version is restored with, taken from a request
//! (what the client asked for) or from an upstream response (what the object has).

use std::collections::HashMap;

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

/// Adds header `name` when it has a value.
pub fn push(headers: &mut Vec<(String, String)>, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        headers.push((name.to_owned(), v.to_owned()));
    }
}

/// A map's entries, sorted.
pub fn sorted(map: Option<&HashMap<String, String>>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = map.into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort();
    v
}

/// Parses an `x-amz-tagging` value (`k1=v1&k2=v2`, URL-encoded).
pub fn parse_tagging(tagging: Option<&str>) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = tagging
        .map(|t| form_urlencoded::parse(t.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default();
    tags.sort();
    tags
}

impl ObjectMeta {
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
