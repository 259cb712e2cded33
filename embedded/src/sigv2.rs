//! Signature Version 2 (HMAC-SHA1), verified here rather than by s3s.
//!
//! aws cli v1 still signs `aws s3 presign` links with SigV2 by default, so refusing it
//! breaks "share a link". s3s 0.14.1 does verify SigV2, but compares signatures in
//! variable time, applies no clock-skew check to signed headers and no lifetime cap to
//! presigned URLs. So the HTTP layer verifies SigV2 itself — constant-time comparison, a
//! 15-minute skew window for `Date`, a 7-day cap on presigned `Expires`, as S3 allows —
//! then removes the signature from the request and tells the access check who signed it.
//! `server.allow_sigv2 = false` refuses every SigV2 request instead.
//!
//! String to sign (S3's REST authentication, version 2):
//! `VERB \n Content-MD5 \n Content-Type \n Date-or-Expires \n x-amz-headers… resource`,
//! where the resource is the path as sent (prefixed with `/bucket` for a virtual host)
//! followed by the sub-resources S3 names, sorted, with decoded values.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use s3s::{S3Error, S3ErrorCode};

use crate::query::{Pair, Query};

/// The longest a presigned URL may stay valid, as S3 defines it (7 days).
pub const MAX_PRESIGNED_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// How far a signed request's `Date` may be from the gateway's clock (S3's 15 minutes).
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Query parameters that are part of the signed resource (S3's sub-resources and the
/// response-header overrides); all others are not signed in SigV2.
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// The query parameters of a presigned SigV2 URL.
pub const QUERY_PARAMETERS: [&str; 3] = ["AWSAccessKeyId", "Signature", "Expires"];

/// How a request carries a SigV2 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carrier {
    /// `Authorization: AWS <key id>:<signature>`.
    Header {
        /// The access key id.
        access_key: String,
        /// The signature, base64.
        signature: String,
    },
    /// `?AWSAccessKeyId=…&Expires=…&Signature=…`.
    Query {
        /// The access key id.
        access_key: String,
        /// The expiry, seconds since the epoch, as sent.
        expires: String,
        /// The signature, base64 (decoded from the query).
        signature: String,
    },
}

/// Finds a SigV2 signature in a request, if it carries one. A request that names only
/// some of the query parameters still counts (and fails verification), so a partial one
/// can never slip past as anonymous.
pub fn carrier(headers: &HeaderMap, query: &Query) -> Option<Carrier> {
    if let Some(auth) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Some(rest) = auth.strip_prefix("AWS ")
    {
        let (access_key, signature) = rest.trim().rsplit_once(':').unwrap_or((rest.trim(), ""));
        return Some(Carrier::Header { access_key: access_key.to_owned(), signature: signature.to_owned() });
    }
    if query.has("X-Amz-Signature") || !QUERY_PARAMETERS.iter().any(|p| query.has(p)) {
        return None;
    }
    let value = |name| query.get(name).unwrap_or_default().to_owned();
    Some(Carrier::Query {
        access_key: value("AWSAccessKeyId"),
        expires: value("Expires"),
        signature: value("Signature"),
    })
}

/// What a verification needs of the request.
pub struct Signed<'a> {
    /// The method.
    pub method: &'a http::Method,
    /// The path as sent (still percent-encoded).
    pub raw_path: &'a str,
    /// The query.
    pub query: &'a Query,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The bucket named by a virtual host (`bucket.domain`), if any.
    pub virtual_bucket: Option<&'a str>,
}

/// Verifies `carrier` with the secret `secret_of` gives its access key (`None`: no such
/// key); returns the access key id that signed.
pub fn verify(
    carrier: &Carrier,
    request: &Signed<'_>,
    secret_of: impl Fn(&str) -> Option<String>,
    now: SystemTime,
) -> Result<String, S3Error> {
    let (access_key, signature, date_line) = match carrier {
        Carrier::Header { access_key, signature } => {
            check_date(request.headers, now)?;
            let date = if request.headers.contains_key("x-amz-date") { "" } else { header(request.headers, "date") };
            (access_key, signature, date.to_owned())
        }
        Carrier::Query { access_key, expires, signature } => {
            check_expires(expires, now)?;
            (access_key, signature, expires.clone())
        }
    };
    let secret = secret_of(access_key).ok_or_else(|| {
        S3Error::with_message(
            S3ErrorCode::InvalidAccessKeyId,
            "The AWS Access Key Id you provided does not exist in our records.",
        )
    })?;
    let text = string_to_sign(request, &date_line);
    let provided = base64::engine::general_purpose::STANDARD.decode(signature.trim()).unwrap_or_default();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("invariant: HMAC takes any key length");
    mac.update(text.as_bytes());
    // Constant time: the comparison's duration says nothing about how much matched.
    match mac.verify_slice(&provided) {
        Ok(()) => Ok(access_key.clone()),
        Err(_) => Err(S3Error::with_message(
            S3ErrorCode::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        )),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).map_or("", str::trim)
}

/// A signed header request must carry a `Date` (or `x-amz-date`) within the skew window.
fn check_date(headers: &HeaderMap, now: SystemTime) -> Result<(), S3Error> {
    let text = headers.get("x-amz-date").or_else(|| headers.get(http::header::DATE)).and_then(|v| v.to_str().ok());
    let Some(text) = text else {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header",
        ));
    };
    let Some(when) = parse_date(text.trim()) else {
        return Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header",
        ));
    };
    let skew = now.duration_since(when).or_else(|e| Ok::<_, ()>(e.duration())).unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(S3Error::with_message(
            S3ErrorCode::RequestTimeTooSkewed,
            "The difference between the request time and the current time is too large.",
        ));
    }
    Ok(())
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) or the RFC 2822 form with a numeric
/// zone that some clients send (s3cmd: `… 08:49:37 +0000`).
fn parse_date(text: &str) -> Option<SystemTime> {
    if let Ok(t) = httpdate::parse_http_date(text) {
        return Some(t);
    }
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc2822).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(t.unix_timestamp()).ok()?))
}

/// A presigned URL must not have expired, nor be valid for more than 7 days from now.
fn check_expires(expires: &str, now: SystemTime) -> Result<(), S3Error> {
    let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let Ok(at) = expires.parse::<u64>() else {
        return Err(S3Error::with_message(
            S3ErrorCode::AuthorizationQueryParametersError,
            "Query-string authentication requires the AWSAccessKeyId, Expires and Signature parameters.",
        ));
    };
    if at < now_secs {
        return Err(S3Error::with_message(S3ErrorCode::AccessDenied, "Request has expired"));
    }
    if at - now_secs > MAX_PRESIGNED_LIFETIME.as_secs() {
        return Err(S3Error::with_message(
            S3ErrorCode::AuthorizationQueryParametersError,
            "Expires must be less than a week (604800 seconds) in the future.",
        ));
    }
    Ok(())
}

/// S3's SigV2 string to sign; `date_line` is the `Date` header, or `Expires` for a URL.
fn string_to_sign(request: &Signed<'_>, date_line: &str) -> String {
    let h = request.headers;
    let mut out = format!(
        "{}\n{}\n{}\n{}\n",
        request.method.as_str(),
        header(h, "content-md5"),
        header(h, "content-type"),
        date_line
    );
    let mut amz: Vec<(String, Vec<&str>)> = Vec::new();
    for (name, value) in h {
        let name = name.as_str();
        if !name.starts_with("x-amz-") {
            continue;
        }
        let value = value.to_str().unwrap_or_default().trim();
        match amz.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value),
            None => amz.push((name.to_owned(), vec![value])),
        }
    }
    amz.sort();
    for (name, values) in amz {
        out.push_str(&name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    if let Some(bucket) = request.virtual_bucket {
        out.push('/');
        out.push_str(bucket);
    }
    out.push_str(request.raw_path);
    let mut signed: Vec<&Pair> =
        request.query.pairs().iter().filter(|p| SUBRESOURCES.contains(&p.name.as_str())).collect();
    signed.sort_by(|a, b| a.name.cmp(&b.name));
    for (i, p) in signed.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&p.name);
        if let Some(v) = &p.value {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> impl Fn(&str) -> Option<String> {
        |id: &str| (id == "AKIDEXAMPLE").then(|| "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned())
    }

    fn sign(text: &str) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY").unwrap();
        mac.update(text.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn a_presigned_get_verifies_and_only_subresources_are_signed() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let expires = "1700000600";
        let signature = sign(&format!("GET\n\n\n{expires}\n/photos/a%20b.jpg?versionId=v 1"));
        let raw = format!(
            "AWSAccessKeyId=AKIDEXAMPLE&Expires={expires}&Signature={}&versionId=v%201&x-id=GetObject",
            percent_encoding::utf8_percent_encode(&signature, percent_encoding::NON_ALPHANUMERIC)
        );
        let query = Query::parse(Some(&raw));
        let c = carrier(&HeaderMap::new(), &query).unwrap();
        let method = http::Method::GET;
        let request = Signed {
            method: &method,
            raw_path: "/photos/a%20b.jpg",
            query: &query,
            headers: &HeaderMap::new(),
            virtual_bucket: None,
        };
        assert_eq!(verify(&c, &request, keys(), now).unwrap(), "AKIDEXAMPLE");
        // Another path, or a later clock, fails.
        let moved = Signed { raw_path: "/photos/other.jpg", ..request };
        let err = verify(&c, &moved, keys(), now).unwrap_err();
        assert_eq!(err.code(), &S3ErrorCode::SignatureDoesNotMatch);
        let err = verify(&c, &request, keys(), now + Duration::from_secs(601)).unwrap_err();
        assert_eq!(err.code(), &S3ErrorCode::AccessDenied);
    }

    #[test]
    fn presigned_urls_are_capped_at_seven_days() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let far = (1_700_000_000u64 + MAX_PRESIGNED_LIFETIME.as_secs() + 1).to_string();
        assert_eq!(check_expires(&far, now).unwrap_err().code(), &S3ErrorCode::AuthorizationQueryParametersError);
        let within = (1_700_000_000u64 + MAX_PRESIGNED_LIFETIME.as_secs()).to_string();
        check_expires(&within, now).unwrap();
    }

    #[test]
    fn header_auth_checks_the_date_and_the_amz_headers() {
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let mut headers = HeaderMap::new();
        headers.insert("date", date.parse().unwrap());
        headers.insert("content-type", "text/plain".parse().unwrap());
        headers.insert("x-amz-meta-b", "2".parse().unwrap());
        headers.append("x-amz-meta-a", "1".parse().unwrap());
        headers.append("x-amz-meta-a", " 3 ".parse().unwrap());
        let text = format!("PUT\n\ntext/plain\n{date}\nx-amz-meta-a:1,3\nx-amz-meta-b:2\n/bucket/key");
        headers.insert("authorization", format!("AWS AKIDEXAMPLE:{}", sign(&text)).parse().unwrap());
        let query = Query::parse(None);
        let c = carrier(&headers, &query).unwrap();
        let method = http::Method::PUT;
        let request = Signed {
            method: &method,
            raw_path: "/key",
            query: &query,
            headers: &headers,
            virtual_bucket: Some("bucket"),
        };
        assert_eq!(verify(&c, &request, keys(), now).unwrap(), "AKIDEXAMPLE");
        let err = verify(&c, &request, keys(), now + Duration::from_secs(16 * 60)).unwrap_err();
        assert_eq!(err.code(), &S3ErrorCode::RequestTimeTooSkewed);
    }

    #[test]
    fn dates_in_either_form_parse() {
        let want = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(want));
        assert_eq!(parse_date("Sun, 06 Nov 1994 08:49:37 +0000"), Some(want));
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn a_sigv4_presigned_url_is_not_sigv2() {
        let query = Query::parse(Some("X-Amz-Signature=abc&Signature=x"));
        assert_eq!(carrier(&HeaderMap::new(), &query), None);
        // Any one of the SigV2 parameters, even percent-encoded, marks the request as SigV2.
        let query = Query::parse(Some("%41WSAccessKeyId=AKIDEXAMPLE"));
        assert!(matches!(carrier(&HeaderMap::new(), &query), Some(Carrier::Query { .. })));
    }
}
