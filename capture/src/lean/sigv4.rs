//! Signature Version 4 for the lean client, with the day's signing key kept.
//!
//! aws-sigv4 derives the signing key (four HMACs) and builds its canonical request from
//! owned copies of every header on each call: 10–15% of a small pass-through request's
//! CPU. Here the key is derived once per UTC day and the canonical request is written into
//! one buffer. What is signed is what aws-sigv4 signs with the lean client's settings
//! (single percent-encoding, no path normalisation, `x-amz-content-sha256` sent), and the
//! tests hold the two to the same `Authorization` header.

use std::sync::Mutex;
use std::time::SystemTime;

use aws_sigv4::http_request::SignableBody;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2_v11::{Digest, Sha256};
use zeroize::Zeroizing;

/// Headers never signed: the signature's own, and those a proxy may change on the way
/// (aws-sigv4's default exclusions).
const UNSIGNED_HEADERS: [&str; 4] = ["authorization", "user-agent", "x-amzn-trace-id", "transfer-encoding"];

/// What the signature says of the body: its SHA-256 in hex, or one of S3's markers
/// (`UNSIGNED-PAYLOAD`, `STREAMING-UNSIGNED-PAYLOAD-TRAILER`, ...).
pub(crate) type PayloadHash<'a> = std::borrow::Cow<'a, str>;

/// Signs requests with one key pair for one region, as service `s3`.
pub(crate) struct Signer {
    access_key_id: String,
    secret: Zeroizing<String>,
    region: String,
    /// The signing key of the last day signed for: `(YYYYMMDD, key)`.
    day_key: Mutex<Option<(String, Zeroizing<[u8; 32]>)>>,
}

/// The parts of a request the signature covers besides its headers.
pub(crate) struct Signable<'a> {
    pub method: &'a str,
    /// The path as sent, already percent-encoded.
    pub path: &'a str,
    /// The query as sent, already percent-encoded (unreserved characters only), without `?`.
    pub query: &'a str,
    pub payload: PayloadHash<'a>,
}

impl Signer {
    pub(crate) fn new(access_key_id: &str, secret: &str, region: &str) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            secret: Zeroizing::new(secret.to_owned()),
            region: region.to_owned(),
            day_key: Mutex::new(None),
        }
    }

    /// Adds `x-amz-date`, `x-amz-content-sha256` and `Authorization` to `headers` (which
    /// must hold `Host`), signing every header but [`UNSIGNED_HEADERS`]. Fails when the
    /// payload hash a caller precomputed, or the configured key id, cannot be a header value.
    pub(crate) fn sign(&self, request: &Signable<'_>, headers: &mut HeaderMap, now: SystemTime) -> Result<(), String> {
        let now = time::OffsetDateTime::from(now);
        let date = format!("{:04}{:02}{:02}", now.year(), u8::from(now.month()), now.day());
        let amz_date = format!("{date}T{:02}{:02}{:02}Z", now.hour(), now.minute(), now.second());
        headers.insert(
            HeaderName::from_static("x-amz-date"),
            HeaderValue::from_str(&amz_date).expect("invariant: digits and letters"),
        );
        let payload = HeaderValue::from_str(&request.payload)
            .map_err(|_| "the body's hash is not a header value (expected hex digits)".to_owned())?;
        headers.insert(HeaderName::from_static("x-amz-content-sha256"), payload);

        let (canonical, signed_headers) = canonical_request(request, headers);
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let string_to_sign =
            format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(&canonical)));
        let signature = hex::encode(hmac(&self.key_of(&date)[..], string_to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key_id
        );
        // The message names the setting, never the key id's value.
        let mut value = HeaderValue::from_str(&authorization)
            .map_err(|_| "the upstream's access key id has characters a header cannot carry".to_owned())?;
        value.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, value);
        Ok(())
    }

    /// The signing key of `date` (YYYYMMDD), derived on the first request of each day.
    fn key_of(&self, date: &str) -> Zeroizing<[u8; 32]> {
        let mut kept = self.day_key.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((day, key)) = kept.as_ref()
            && day == date
        {
            return key.clone();
        }
        let secret = Zeroizing::new(format!("AWS4{}", self.secret.as_str()));
        let mut key = hmac(secret.as_bytes(), date.as_bytes());
        for part in [self.region.as_bytes(), b"s3", b"aws4_request"] {
            key = hmac(&key, part);
        }
        let key = Zeroizing::new(key);
        *kept = Some((date.to_owned(), key.clone()));
        key
    }
}

/// The canonical request, and the names of the headers it signs (`;`-separated).
fn canonical_request(request: &Signable<'_>, headers: &HeaderMap) -> (Vec<u8>, String) {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(request.method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(if request.path.is_empty() { "/" } else { request.path }.as_bytes());
    out.push(b'\n');
    let mut params: Vec<(&str, &str)> =
        request.query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).collect();
    params.sort_unstable();
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'\n');
    // HeaderMap's names are lowercase; its keys iterate once per name, in insertion order.
    let mut names: Vec<&HeaderName> = headers.keys().filter(|n| !UNSIGNED_HEADERS.contains(&n.as_str())).collect();
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    for name in &names {
        out.extend_from_slice(name.as_str().as_bytes());
        out.push(b':');
        for (i, value) in headers.get_all(*name).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            trim_all_into(value.as_bytes(), &mut out);
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    let signed_headers = names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(";");
    out.extend_from_slice(signed_headers.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(request.payload.as_bytes());
    (out, signed_headers)
}

/// `value` without leading and trailing spaces, each run of spaces inside made one.
fn trim_all_into(value: &[u8], out: &mut Vec<u8>) {
    let mut words = value.split(|&b| b == b' ').filter(|w| !w.is_empty());
    if let Some(first) = words.next() {
        out.extend_from_slice(first);
    }
    for word in words {
        out.push(b' ');
        out.extend_from_slice(word);
    }
}

/// What the signature says of `body`.
pub(crate) fn payload_hash(body: SignableBody<'_>) -> Option<PayloadHash<'_>> {
    Some(match body {
        SignableBody::Bytes(data) => hex::encode(Sha256::digest(data)).into(),
        SignableBody::Precomputed(hash) => hash.into(),
        SignableBody::UnsignedPayload => "UNSIGNED-PAYLOAD".into(),
        SignableBody::StreamingUnsignedPayloadTrailer => "STREAMING-UNSIGNED-PAYLOAD-TRAILER".into(),
        SignableBody::StreamingSignedPayloadTrailer => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER".into(),
        _ => return None,
    })
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("invariant: HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SignableRequest, SigningSettings, UriPathNormalizationMode, sign,
    };
    use aws_sigv4::sign::v4;

    use super::*;

    /// One request to sign: as the lean client addresses it, and its headers (with `Host`).
    struct Case {
        method: &'static str,
        authority: &'static str,
        path: &'static str,
        query: &'static str,
        headers: &'static [(&'static str, &'static str)],
        body: SignableBody<'static>,
    }

    fn headers_of(case: &Case) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static(case.authority));
        for (name, value) in case.headers {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        headers
    }

    /// The headers aws-sigv4 adds, with the settings the lean client used it with.
    fn by_aws_sigv4(case: &Case, (id, secret, region): (&str, &str, &str), now: SystemTime) -> HeaderMap {
        let identity: aws_smithy_runtime_api::client::identity::Identity =
            Credentials::new(id, secret, None, None, "test").into();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let uri = match case.query {
            "" => format!("http://{}{}", case.authority, case.path),
            query => format!("http://{}{}?{query}", case.authority, case.path),
        };
        let headers = headers_of(case);
        let list = headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap()));
        let signable = SignableRequest::new(case.method, &uri, list, case.body.clone()).unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut request = http::Request::builder().method(case.method).uri(&uri).body(()).unwrap();
        *request.headers_mut() = headers;
        instructions.apply_to_request_http1x(&mut request);
        request.headers().clone()
    }

    fn by_signer(case: &Case, signer: &Signer, now: SystemTime) -> HeaderMap {
        let mut headers = headers_of(case);
        let payload = payload_hash(case.body.clone()).unwrap();
        let signable = Signable { method: case.method, path: case.path, query: case.query, payload };
        signer.sign(&signable, &mut headers, now).unwrap();
        headers
    }

    const CASES: [Case; 5] = [
        // A GET as the gateway forwards one, path-style.
        Case {
            method: "GET",
            authority: "127.0.0.1:9000",
            path: "/bucket/dir/key.txt",
            query: "",
            headers: &[("range", "bytes=0-99"), ("if-none-match", "\"abc\"")],
            body: SignableBody::UnsignedPayload,
        },
        // Virtual-hosted, a query out of order and a parameter without a value, a value with
        // runs of spaces, a header sent twice, and one aws-sigv4 leaves unsigned.
        Case {
            method: "GET",
            authority: "bucket.s3.example.com",
            path: "/k%20e%C3%A9y/part",
            query: "versionId=a%2Bb&partNumber=2&response-content-type=text%2Fplain&acl",
            headers: &[
                ("x-amz-meta-note", "  two   spaces  here "),
                ("x-amz-meta-twice", "one"),
                ("x-amz-meta-twice", "two"),
                ("user-agent", "aws-cli/2"),
            ],
            body: SignableBody::UnsignedPayload,
        },
        // A small PUT whose body is hashed.
        Case {
            method: "PUT",
            authority: "localhost:9000",
            path: "/restore/a/b",
            query: "",
            headers: &[
                ("content-type", "application/octet-stream"),
                ("content-md5", "XUFAKrxLKna5cZ2REBfFkg=="),
                ("x-amz-checksum-crc32", "NhCmhg=="),
            ],
            body: SignableBody::Bytes(b"hello"),
        },
        // A part with a trailer, and a precomputed hash.
        Case {
            method: "PUT",
            authority: "localhost:9000",
            path: "/b/k",
            query: "uploadId=abc-123&partNumber=7",
            headers: &[("x-amz-trailer", "x-amz-checksum-crc32"), ("content-encoding", "aws-chunked")],
            body: SignableBody::StreamingUnsignedPayloadTrailer,
        },
        Case {
            method: "HEAD",
            authority: "localhost:9000",
            path: "/b/k",
            query: "",
            headers: &[],
            body: SignableBody::Precomputed(String::new()),
        },
    ];

    #[test]
    fn signatures_equal_aws_sigv4s() {
        let empty = hex::encode(Sha256::digest(b""));
        let long_secret = "s".repeat(100);
        let pairs = [
            ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1"),
            ("id", &*long_secret, "eu-west-3"),
        ];
        for (id, secret, region) in pairs {
            let signer = Signer::new(id, secret, region);
            // Two instants of one day, then the next day: the kept key must follow the date.
            for seconds in [1_764_633_600, 1_764_719_999, 1_764_720_000] {
                let now = UNIX_EPOCH + Duration::from_secs(seconds);
                for case in &CASES {
                    let case = match &case.body {
                        SignableBody::Precomputed(_) => {
                            &Case { body: SignableBody::Precomputed(empty.clone()), ..*case }
                        }
                        _ => case,
                    };
                    let ours = by_signer(case, &signer, now);
                    let theirs = by_aws_sigv4(case, (id, secret, region), now);
                    assert_eq!(ours, theirs, "{} {}?{} at {seconds}", case.method, case.path, case.query);
                }
            }
        }
    }

    #[test]
    fn a_hash_or_key_id_that_cannot_be_a_header_is_an_error() {
        let now = SystemTime::now();
        let bad_hash = Signable { method: "PUT", path: "/b/k", query: "", payload: "ab\ncd".into() };
        let err =
            Signer::new("id", "secret", "us-east-1").sign(&bad_hash, &mut headers_of(&CASES[0]), now).unwrap_err();
        assert!(err.contains("hash"), "{err}");
        let fine = Signable { method: "GET", path: "/b/k", query: "", payload: "UNSIGNED-PAYLOAD".into() };
        let err = Signer::new("id\n", "secret", "us-east-1").sign(&fine, &mut headers_of(&CASES[0]), now).unwrap_err();
        assert!(err.contains("access key id") && !err.contains("id\n"), "{err}");
    }

    #[test]
    fn the_authorization_header_is_marked_sensitive() {
        let signer = Signer::new("id", "secret", "us-east-1");
        let headers = by_signer(&CASES[0], &signer, SystemTime::now());
        assert!(headers[http::header::AUTHORIZATION].is_sensitive());
    }
}
