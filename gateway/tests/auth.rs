//! Who gets in, and which bodies get through: every refusal must carry the S3 error a
//! client expects, and a refused upload must leave nothing upstream.

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use std::time::{Duration, SystemTime};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_async::time::StaticTimeSource;
use rewind_testkit::raw::{self, RawResponse};
use rewind_testkit::{FsUpstream, TestGateway, client_config, key_pair, s3_client};

async fn setup() -> (FsUpstream, TestGateway) {
    setup_with(|_| {}).await
}

async fn setup_with(configure: impl FnOnce(&mut rewind_config::Config)) -> (FsUpstream, TestGateway) {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start_with(&upstream.target, configure).await;
    gw.client().create_bucket().bucket("sec").send().await.unwrap();
    (upstream, gw)
}

/// A gateway that captures the bucket (uploads take the typed path), and one that does
/// not (uploads take the lean path): bodies must be held to the same checks on both.
async fn both_paths() -> [(FsUpstream, TestGateway); 2] {
    [setup().await, setup_with(|c| c.protection.buckets = Vec::new()).await]
}

fn error_code(res: &RawResponse) -> String {
    let text = res.text();
    let start = text.find("<Code>").map(|i| i + 6).unwrap_or(0);
    let end = text.find("</Code>").unwrap_or(start);
    text[start..end].to_owned()
}

async fn exists_upstream(upstream: &FsUpstream, key: &str) -> bool {
    upstream.client().head_object().bucket("sec").key(key).send().await.is_ok()
}

fn put_request(gw: &TestGateway, key: &str, body: &[u8]) -> http::Request<Vec<u8>> {
    http::Request::builder().method("PUT").uri(format!("{}/sec/{key}", gw.endpoint())).body(body.to_vec()).unwrap()
}

#[tokio::test]
async fn wrong_secret_unknown_key_and_anonymous_requests_are_refused() {
    let (_upstream, gw) = setup().await;
    let wrong_secret = s3_client(&gw.endpoint(), &gw.access_key_id, "not-the-secret-at-all-0123456789");
    let err = wrong_secret.list_objects_v2().bucket("sec").send().await.unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"), "{err:?}");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);

    let (unknown_id, unknown_secret) = key_pair();
    let err = s3_client(&gw.endpoint(), &unknown_id, &unknown_secret).list_buckets().send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidAccessKeyId"), "{err:?}");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);

    let anonymous =
        raw::send(gw.addr(), &http::Request::get(format!("{}/sec", gw.endpoint())).body(Vec::new()).unwrap()).await;
    assert_eq!((anonymous.status, error_code(&anonymous).as_str()), (403, "AccessDenied"), "{}", anonymous.text());
}

#[tokio::test]
async fn the_upstream_keys_do_not_open_the_gateway() {
    let (upstream, gw) = setup().await;
    let with_upstream_keys = s3_client(&gw.endpoint(), &upstream.target.access_key_id, upstream.target.secret.expose());
    let err = with_upstream_keys.list_buckets().send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidAccessKeyId"));
}

#[tokio::test]
async fn a_skewed_client_clock_is_refused() {
    let (_upstream, gw) = setup().await;
    for skew in [Duration::from_secs(3600), Duration::from_secs(1200)] {
        let past = SystemTime::now() - skew;
        let conf = client_config(&gw.endpoint(), &gw.access_key_id, &gw.secret)
            .time_source(StaticTimeSource::new(past))
            .build();
        let err = aws_sdk_s3::Client::from_conf(conf).list_objects_v2().bucket("sec").send().await.unwrap_err();
        assert_eq!(err.code(), Some("RequestTimeTooSkewed"), "skew {skew:?}: {err:?}");
        assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);
    }
    // Within S3's 15-minute allowance the request is fine.
    let conf = client_config(&gw.endpoint(), &gw.access_key_id, &gw.secret)
        .time_source(StaticTimeSource::new(SystemTime::now() - Duration::from_secs(300)))
        .build();
    aws_sdk_s3::Client::from_conf(conf).list_objects_v2().bucket("sec").send().await.unwrap();
}

#[tokio::test]
async fn presigned_get_and_put_work_and_expire() {
    let (upstream, gw) = setup().await;
    let s3 = gw.client();
    let put = s3
        .put_object()
        .bucket("sec")
        .key("presigned.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let mut req = http::Request::builder().method("PUT").uri(put.uri());
    for (k, v) in put.headers() {
        req = req.header(k, v);
    }
    let res = raw::send(gw.addr(), &req.body(b"uploaded with a presigned URL".to_vec()).unwrap()).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(exists_upstream(&upstream, "presigned.txt").await);

    let get = s3
        .get_object()
        .bucket("sec")
        .key("presigned.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let res = raw::send(gw.addr(), &http::Request::get(get.uri()).body(Vec::new()).unwrap()).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body, b"uploaded with a presigned URL");

    let expired = s3
        .get_object()
        .bucket("sec")
        .key("presigned.txt")
        .presigned(
            PresigningConfig::builder()
                .start_time(SystemTime::now() - Duration::from_secs(7200))
                .expires_in(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let res = raw::send(gw.addr(), &http::Request::get(expired.uri()).body(Vec::new()).unwrap()).await;
    assert_eq!((res.status, error_code(&res).as_str()), (403, "AccessDenied"), "{}", res.text());

    let tampered = get.uri().replace("presigned.txt", "other.txt");
    let res = raw::send(gw.addr(), &http::Request::get(tampered).body(Vec::new()).unwrap()).await;
    assert_eq!((res.status, error_code(&res).as_str()), (403, "SignatureDoesNotMatch"));
}

#[tokio::test]
async fn a_body_that_does_not_match_its_signed_hash_is_not_stored() {
    for (upstream, gw) in both_paths().await {
        a_body_that_does_not_match_its_signed_hash_is_not_stored_by(&upstream, &gw).await;
    }
}

async fn a_body_that_does_not_match_its_signed_hash_is_not_stored_by(upstream: &FsUpstream, gw: &TestGateway) {
    let mut req = put_request(gw, "forged", b"what was actually sent");
    raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), &raw::sha256_hex(b"what was signed"));
    let res = raw::send(gw.addr(), &req).await;
    assert_eq!((res.status, error_code(&res).as_str()), (400, "XAmzContentSHA256Mismatch"), "{}", res.text());
    assert!(!exists_upstream(upstream, "forged").await, "a rejected body must not complete upstream");

    // The same request, honestly signed, goes through: the check above can fail.
    let mut req = put_request(gw, "honest", b"what was actually sent");
    raw::sign_request(
        &mut req,
        &gw.access_key_id,
        &gw.secret,
        SystemTime::now(),
        &raw::sha256_hex(b"what was actually sent"),
    );
    assert_eq!(raw::send(gw.addr(), &req).await.status, 200);
    assert!(exists_upstream(upstream, "honest").await);
}

/// A wrong checksum header is caught by the gateway itself, before the upstream sees the
/// whole body.
#[tokio::test]
async fn a_wrong_checksum_header_gets_bad_digest() {
    for (upstream, gw) in both_paths().await {
        let body = b"checksummed body";
        let mut req = put_request(&gw, "bad-crc", body);
        // CRC32 of something else, base64.
        req.headers_mut().insert("x-amz-checksum-crc32", "AAAAAA==".parse().unwrap());
        raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), &raw::sha256_hex(body));
        let res = raw::send(gw.addr(), &req).await;
        assert_eq!((res.status, error_code(&res).as_str()), (400, "BadDigest"), "{}", res.text());
        assert!(!exists_upstream(&upstream, "bad-crc").await);
    }
}

/// An aws-chunked upload (unsigned payload, CRC32 trailer), as current SDKs send it.
fn chunked_upload(gw: &TestGateway, key: &str, data: &[u8], trailer_crc: &str) -> http::Request<Vec<u8>> {
    let mut body = format!("{:x}\r\n", data.len()).into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n0\r\nx-amz-checksum-crc32:{trailer_crc}\r\n\r\n").as_bytes());
    let mut req = put_request(gw, key, &body);
    let h = req.headers_mut();
    h.insert("content-encoding", "aws-chunked".parse().unwrap());
    h.insert("x-amz-decoded-content-length", data.len().to_string().parse().unwrap());
    h.insert("x-amz-trailer", "x-amz-checksum-crc32".parse().unwrap());
    raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    req
}

#[tokio::test]
async fn trailing_checksums_are_verified() {
    for (upstream, gw) in both_paths().await {
        let data = b"hello world";
        // CRC32("hello world") = 0x0d4a1185.
        let good = raw::send(gw.addr(), &chunked_upload(&gw, "trailer-ok", data, "DUoRhQ==")).await;
        assert_eq!(good.status, 200, "{}", good.text());
        let stored = upstream
            .client()
            .get_object()
            .bucket("sec")
            .key("trailer-ok")
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(stored.content_encoding(), None, "the aws-chunked marker is not stored");
        assert_eq!(stored.checksum_crc32(), Some("DUoRhQ=="), "the client's checksum is stored with the object");
        assert_eq!(stored.body.collect().await.unwrap().into_bytes().as_ref(), data, "framing is decoded, not stored");

        let bad = raw::send(gw.addr(), &chunked_upload(&gw, "trailer-bad", data, "AAAAAA==")).await;
        assert_eq!((bad.status, error_code(&bad).as_str()), (400, "BadDigest"), "{}", bad.text());
        assert!(!exists_upstream(&upstream, "trailer-bad").await);
    }
}

#[tokio::test]
async fn a_stalled_body_times_out_and_is_not_stored() {
    for captured in [true, false] {
        let (upstream, gw) = setup_with(|c| {
            c.server.body_idle_timeout = rewind_config::HumanDuration(Duration::from_millis(300));
            if !captured {
                c.protection.buckets = Vec::new();
            }
        })
        .await;
        a_stalled_body_times_out_and_is_not_stored_by(&upstream, &gw).await;
    }
}

async fn a_stalled_body_times_out_and_is_not_stored_by(upstream: &FsUpstream, gw: &TestGateway) {
    let mut req = put_request(gw, "stalled", b"");
    raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), "UNSIGNED-PAYLOAD");
    let mut stream = raw::send_head(gw.addr(), &req, 1000).await;
    tokio::io::AsyncWriteExt::write_all(&mut stream, &[7u8; 100]).await.unwrap();
    // The client now stalls with 900 bytes owed; the gateway must give up on its own.
    let res =
        tokio::time::timeout(Duration::from_secs(20), raw::read_response(stream)).await.expect("the gateway answers");
    assert_eq!((res.status, error_code(&res).as_str()), (400, "RequestTimeout"), "{}", res.text());
    assert!(!exists_upstream(upstream, "stalled").await);

    // The same in HTTP chunks without a length (read whole by the front first).
    let mut req = put_request(gw, "stalled-chunked", b"");
    req.headers_mut().insert("transfer-encoding", http::HeaderValue::from_static("chunked"));
    raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), "UNSIGNED-PAYLOAD");
    let mut stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    let mut head = format!("PUT {} HTTP/1.1\r\nhost: {}\r\n", req.uri().path(), gw.addr());
    for (k, v) in req.headers() {
        head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    head.push_str("\r\n64\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &[7u8; 100]).await.unwrap();
    let res =
        tokio::time::timeout(Duration::from_secs(20), raw::read_response(stream)).await.expect("the gateway answers");
    assert_eq!((res.status, error_code(&res).as_str()), (400, "RequestTimeout"), "{}", res.text());
    assert!(!exists_upstream(upstream, "stalled-chunked").await);
}

/// Browser-form POST uploads are refused before any of the body is read: s3s would buffer
/// the whole file part in memory (up to 5 GB) before authentication decides anything.
#[tokio::test]
async fn browser_post_uploads_are_refused_before_the_body_is_read() {
    let (_upstream, gw) = setup().await;
    let req = http::Request::post(format!("{}/sec", gw.endpoint()))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(Vec::new())
        .unwrap();
    let mut stream = raw::send_head(gw.addr(), &req, 100 * 1024 * 1024).await;
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n",
    )
    .await
    .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), raw::read_response(stream)).await.expect("answered at once");
    assert_eq!((res.status, error_code(&res).as_str()), (501, "NotImplemented"), "{}", res.text());
}

/// SigV2 is refused outright: AWS retired it, and s3s checks v2 signatures in variable time.
#[tokio::test]
async fn sigv2_requests_are_refused_when_turned_off() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start_with(&upstream.target, |c| c.server.allow_sigv2 = false).await;
    gw.client().create_bucket().bucket("sec").send().await.unwrap();
    let by_header = http::Request::get(format!("{}/sec", gw.endpoint()))
        .header("authorization", format!("AWS {}:c2lnbmF0dXJl", gw.access_key_id))
        .header("date", "Thu, 26 Nov 2026 05:00:00 GMT")
        .body(Vec::new())
        .unwrap();
    let by_query = http::Request::get(format!(
        "{}/sec/x?AWSAccessKeyId={}&Expires=4102444800&Signature=c2ln",
        gw.endpoint(),
        gw.access_key_id
    ))
    .body(Vec::new())
    .unwrap();
    for req in [by_header, by_query] {
        let res = raw::send(gw.addr(), &req).await;
        assert_eq!((res.status, error_code(&res).as_str()), (400, "InvalidRequest"), "{}", res.text());
        assert!(res.text().contains("AWS4-HMAC-SHA256"), "{}", res.text());
    }
}

#[tokio::test]
async fn every_configured_client_key_works() {
    let upstream = FsUpstream::start().await;
    let (second_id, second_secret) = key_pair();
    let (id, secret) = (second_id.clone(), second_secret.clone());
    let gw =
        TestGateway::start_with(&upstream.target, move |c| c.set_client_key(id, rewind_config::Secret::new(secret)))
            .await;
    gw.client().create_bucket().bucket("two").send().await.unwrap();
    let second = s3_client(&gw.endpoint(), &second_id, &second_secret);
    second.put_object().bucket("two").key("k").body(ByteStream::from_static(b"v")).send().await.unwrap();
    assert!(exists_in(&upstream, "two", "k").await);
}

async fn exists_in(upstream: &FsUpstream, bucket: &str, key: &str) -> bool {
    upstream.client().head_object().bucket(bucket).key(key).send().await.is_ok()
}

/// Signed streaming uploads: every chunk signature is checked, and a tampered chunk (even
/// a later one) leaves nothing upstream.
#[tokio::test]
async fn signed_chunked_uploads_verify_every_chunk() {
    for (upstream, gw) in both_paths().await {
        signed_chunked_uploads_verify_every_chunk_by(&upstream, &gw).await;
    }
}

async fn signed_chunked_uploads_verify_every_chunk_by(upstream: &FsUpstream, gw: &TestGateway) {
    let (a, b) = (vec![1u8; 64 * 1024], vec![2u8; 10_000]);
    let uri = |key: &str| format!("{}/sec/{key}", gw.endpoint());

    let good = raw::signed_chunked_put(&uri("chunked-ok"), &gw.access_key_id, &gw.secret, &[&a, &b], None);
    let res = raw::send(gw.addr(), &good).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let stored = upstream.client().get_object().bucket("sec").key("chunked-ok").send().await.unwrap();
    let stored = stored.body.collect().await.unwrap().into_bytes();
    assert_eq!(stored.len(), a.len() + b.len());
    assert_eq!((&stored[..a.len()], &stored[a.len()..]), (&a[..], &b[..]));

    let tampered = raw::signed_chunked_put(&uri("chunked-bad"), &gw.access_key_id, &gw.secret, &[&a, &b], Some(1));
    let res = raw::send(gw.addr(), &tampered).await;
    assert_eq!((res.status, error_code(&res).as_str()), (403, "SignatureDoesNotMatch"), "{}", res.text());
    assert!(!exists_upstream(upstream, "chunked-bad").await);
}

#[tokio::test]
async fn presigned_urls_longer_than_a_week_are_refused() {
    let (_upstream, gw) = setup().await;
    gw.client().put_object().bucket("sec").key("p").body(ByteStream::from_static(b"v")).send().await.unwrap();
    let uri = format!("{}/sec/p", gw.endpoint());
    let week = Duration::from_secs(7 * 24 * 3600);

    let ok = raw::presign_get(&uri, &gw.access_key_id, &gw.secret, week);
    assert_eq!(raw::send(gw.addr(), &http::Request::get(ok).body(Vec::new()).unwrap()).await.status, 200);

    let too_long = raw::presign_get(&uri, &gw.access_key_id, &gw.secret, week + Duration::from_secs(1));
    let res = raw::send(gw.addr(), &http::Request::get(too_long).body(Vec::new()).unwrap()).await;
    assert_eq!((res.status, error_code(&res).as_str()), (400, "AuthorizationQueryParametersError"), "{}", res.text());
}
