//! Hand-made HTTP/1.1 requests: for what no SDK sends (a body that lies about its hash, a
//! client that stalls mid-body, a signature from a skewed clock).

use std::net::SocketAddr;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body bytes (as sent; not de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Hex SHA-256, as x-amz-content-sha256 carries it.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Signs `req` (SigV4, header auth) as of `time`, declaring `payload_hash` as the body's hash.
pub fn sign_request(req: &mut http::Request<Vec<u8>>, key: &str, secret: &str, time: SystemTime, payload_hash: &str) {
    let identity = Credentials::new(key, secret, None, None, "raw").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    // As S3 signs: the path as sent, encoded once, not normalized.
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers: Vec<(String, String)> =
        req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect();
    let uri = req.uri().to_string();
    let signable = SignableRequest::new(
        req.method().as_str(),
        &uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Precomputed(payload_hash.to_owned()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(req);
}

/// Writes the request line and headers (with Host and Content-Length) to a new connection.
pub async fn send_head(addr: SocketAddr, req: &http::Request<Vec<u8>>, content_length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method(), path);
    for (k, v) in req.headers() {
        head.push_str(&format!("{}: {}\r\n", k, v.to_str().unwrap()));
    }
    if !req.headers().contains_key(http::header::HOST) {
        head.push_str(&format!("host: {addr}\r\n"));
    }
    head.push_str(&format!("content-length: {content_length}\r\nconnection: close\r\n\r\n"));
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads a whole response until the server closes the connection.
pub async fn read_response(mut stream: TcpStream) -> RawResponse {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResponse { status, headers, body: raw[split + 4..].to_vec() }
}

/// Sends `req` with its body and returns the response.
pub async fn send(addr: SocketAddr, req: &http::Request<Vec<u8>>) -> RawResponse {
    let mut stream = send_head(addr, req, req.body().len()).await;
    stream.write_all(req.body()).await.unwrap();
    read_response(stream).await
}

/// SHA-256 of nothing, which every chunk's string-to-sign carries.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A PUT with a signed aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), as the Java
/// SDKs and MinIO clients send: each chunk's signature chains from the previous one, seeded
/// by the request's. With `tamper`, that chunk's data is changed after it was signed.
pub fn signed_chunked_put(
    uri: &str,
    key: &str,
    secret: &str,
    chunks: &[&[u8]],
    tamper: Option<usize>,
) -> http::Request<Vec<u8>> {
    let time = SystemTime::now();
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    let mut req = http::Request::put(uri)
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", total.to_string())
        .body(Vec::new())
        .unwrap();
    sign_request(&mut req, key, secret, time, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    let header = |name: &str| req.headers()[name].to_str().unwrap().to_owned();
    let mut previous = header("authorization").rsplit_once("Signature=").unwrap().1.to_owned();
    let amz_date = header("x-amz-date");
    let scope = format!("{}/us-east-1/s3/aws4_request", &amz_date[..8]);
    let signing_key = v4::generate_signing_key(secret, time, "us-east-1", "s3");

    let mut body = Vec::new();
    for (i, chunk) in chunks.iter().copied().chain(std::iter::once(&[][..])).enumerate() {
        let to_sign =
            format!("AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY_SHA256}\n{}", sha256_hex(chunk));
        let signature = v4::calculate_signature(signing_key.as_ref(), to_sign.as_bytes());
        body.extend_from_slice(format!("{:x};chunk-signature={signature}\r\n", chunk.len()).as_bytes());
        let mut data = chunk.to_vec();
        if tamper == Some(i) {
            data[0] ^= 1;
        }
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n");
        previous = signature;
    }
    *req.body_mut() = body;
    req
}

/// A presigned GET URL for `uri`, valid for `expires` from now, signed without any of the
/// SDK presigner's own limits (it refuses more than 7 days).
pub fn presign_get(uri: &str, key: &str, secret: &str, expires: std::time::Duration) -> String {
    let identity = Credentials::new(key, secret, None, None, "raw").into();
    let mut settings = SigningSettings::default();
    settings.signature_location = aws_sigv4::http_request::SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let host = uri.split('/').nth(2).unwrap().to_owned();
    let signable =
        SignableRequest::new("GET", uri, std::iter::once(("host", host.as_str())), SignableBody::UnsignedPayload)
            .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::get(uri).body(()).unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req.uri().to_string()
}

/// A SigV2 signature (HMAC-SHA1, base64) of `string_to_sign`, as aws cli v1 makes them.
pub fn sigv2_signature(secret: &str, string_to_sign: &str) -> String {
    use base64::Engine as _;
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A SigV2 presigned URL for `method` on `path` (`/bucket/key`, already percent-encoded)
/// of the gateway at `endpoint`, expiring at `expires` (seconds since the epoch).
pub fn sigv2_presign(endpoint: &str, method: &str, path: &str, key: &str, secret: &str, expires: u64) -> String {
    let signature = sigv2_signature(secret, &format!("{method}\n\n\n{expires}\n{path}"));
    let encoded = percent_encoding::utf8_percent_encode(&signature, percent_encoding::NON_ALPHANUMERIC);
    format!("{endpoint}{path}?AWSAccessKeyId={key}&Expires={expires}&Signature={encoded}")
}

/// Signs `req` with SigV2 header authentication (`Authorization: AWS key:signature`),
/// dated now; `path` is the request's path as sent, with any sub-resource query.
pub fn sigv2_sign(req: &mut http::Request<Vec<u8>>, path: &str, key: &str, secret: &str) {
    let date = httpdate::fmt_http_date(SystemTime::now());
    let header = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let text = format!("{}\n{}\n{}\n{date}\n{path}", req.method(), header("content-md5"), header("content-type"));
    let signature = sigv2_signature(secret, &text);
    req.headers_mut().insert("date", date.parse().unwrap());
    req.headers_mut().insert("authorization", format!("AWS {key}:{signature}").parse().unwrap());
}
