//! The lean forwarding path (`rewind_forward::lean`): what goes upstream for a GET or
//! HEAD and for an upload to a bucket the gateway does not capture, and that the upstream's
//! answer comes back whole. The upstream here is a
//! recording stand-in on loopback, so the request it received can be read back.

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rewind_testkit::{TestGateway, key_pair, raw};

/// What the stand-in upstream received: method, path and query, headers, body.
type Seen = Arc<Mutex<Vec<(String, String, http::HeaderMap, Vec<u8>)>>>;

/// A loopback HTTP server that records what it received and answers every request with a
/// small object and a header no SDK output has a field for, or, with `forward_to`, with
/// what that endpoint answers it.
async fn recorder(forward_to: Option<String>) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let forward = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (record, forward, forward_to) = (record.clone(), forward.clone(), forward_to.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (record, forward, forward_to) = (record.clone(), forward.clone(), forward_to.clone());
                    async move {
                        let target = req.uri().path_and_query().map(ToString::to_string).unwrap_or_default();
                        let (parts, body) = req.into_parts();
                        let body = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
                        record.lock().unwrap().push((
                            parts.method.to_string(),
                            target.clone(),
                            parts.headers.clone(),
                            body.to_vec(),
                        ));
                        let res = match forward_to {
                            Some(to) => {
                                // Host stays as signed: the endpoint checks the signature.
                                let mut out = http::Request::new(http_body_util::Full::new(body));
                                *out.method_mut() = parts.method;
                                *out.uri_mut() = format!("{to}{target}").parse().unwrap();
                                *out.headers_mut() = parts.headers;
                                let (head, body) = forward.request(out).await.unwrap().into_parts();
                                let body = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
                                http::Response::from_parts(head, http_body_util::Full::new(body))
                            }
                            None => http::Response::builder()
                                .header("etag", "\"5d41402abc4b2a76b9719d911017c592\"")
                                .header("content-type", "text/plain")
                                .header("x-amz-meta-owner", "alice")
                                .header("x-amz-probe-only-upstream-knows", "passed on")
                                .header("x-amz-request-id", "UPSTREAMID")
                                .body(http_body_util::Full::new(bytes::Bytes::from_static(b"hello")))
                                .unwrap(),
                        };
                        Ok::<_, std::convert::Infallible>(res)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (endpoint, seen)
}

/// A gateway capturing no bucket in front of a [`recorder`], and the upstream's
/// access key id.
async fn gateway_before_recorder() -> (TestGateway, Seen, String) {
    let (endpoint, seen) = recorder(None).await;
    let (upstream_id, upstream_secret) = key_pair();
    let target = rewind_capture::upstream::UpstreamTarget {
        endpoint,
        access_key_id: upstream_id.clone(),
        secret: rewind_config::Secret::new(upstream_secret),
    };
    let gw = TestGateway::start_with(&target, |c| c.protection.buckets = Vec::new()).await;
    (gw, seen, upstream_id)
}

#[tokio::test]
async fn a_read_goes_upstream_as_sent_re_signed_and_comes_back_whole() {
    let (gw, seen, upstream_id) = gateway_before_recorder().await;
    let base = gw.endpoint();

    for method in ["GET", "HEAD"] {
        let uri = format!("{base}/photos/2026/a%20b%2Bc.txt?versionId=v%2B1&response-cache-control=no-store");
        let mut req = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header("range", "bytes=0-3")
            .header("if-none-match", "\"other\"")
            .body(Vec::new())
            .unwrap();
        raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), "UNSIGNED-PAYLOAD");
        let res = raw::send(gw.addr(), &req).await;
        assert_eq!(res.status, 200, "{method}: {}", String::from_utf8_lossy(&res.body));
        let header = |name: &str| res.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        // The upstream's answer, whole: a header the SDK's outputs have no field for too.
        assert_eq!(header("x-amz-probe-only-upstream-knows").as_deref(), Some("passed on"), "{method}");
        assert_eq!(header("x-amz-meta-owner").as_deref(), Some("alice"), "{method}");
        assert_eq!(header("etag").as_deref(), Some("\"5d41402abc4b2a76b9719d911017c592\""), "{method}");
        assert_eq!(header("content-length").as_deref(), Some("5"), "{method}");
        // The gateway's request id, not the upstream's.
        assert_ne!(header("x-amz-request-id").as_deref(), Some("UPSTREAMID"), "{method}");
        if method == "GET" {
            assert_eq!(res.body, b"hello");
        }

        let (got_method, target, headers, _) = seen.lock().unwrap().pop().unwrap();
        assert_eq!(got_method, method);
        // Path-style to an IP endpoint, the key encoded as S3 encodes it, the query kept.
        assert_eq!(target, "/photos/2026/a%20b%2Bc.txt?versionId=v%2B1&response-cache-control=no-store");
        let sent = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(sent("range").as_deref(), Some("bytes=0-3"));
        assert_eq!(sent("if-none-match").as_deref(), Some("\"other\""));
        // Signed anew with the upstream's key, never the client's.
        let auth = sent("authorization").unwrap();
        assert!(auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={upstream_id}/")), "{auth}");
        assert!(!auth.contains(&gw.access_key_id), "{auth}");
        assert!(auth.contains("SignedHeaders=") && auth.contains("range"), "{auth}");
        assert_eq!(sent("x-amz-content-sha256").as_deref(), Some("UNSIGNED-PAYLOAD"));
    }
    gw.gateway.shutdown().await;
}

/// An upload to a bucket the gateway does not capture goes upstream decoded, re-signed,
/// with the checksum the client chose: its header as sent, its trailer framed anew with the
/// verified value, or, when it chose none, a CRC32 trailer of the gateway's own.
#[tokio::test]
async fn an_upload_goes_upstream_decoded_re_signed_and_with_its_checksum() {
    let (gw, seen, upstream_id) = gateway_before_recorder().await;
    let data = b"hello world";
    // CRC32("hello world") = 0x0d4a1185.
    let crc = "DUoRhQ==";
    let put = |key: &str, body: Vec<u8>| {
        http::Request::builder()
            .method("PUT")
            .uri(format!("{}/photos/{key}", gw.endpoint()))
            .header("x-amz-meta-owner", "alice")
            .body(body)
            .unwrap()
    };

    // A trailer, as current SDKs send it.
    let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
    framed.extend_from_slice(data);
    framed.extend_from_slice(format!("\r\n0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n").as_bytes());
    let mut trailer = put("trailer", framed.clone());
    let h = trailer.headers_mut();
    h.insert("content-encoding", "aws-chunked".parse().unwrap());
    h.insert("x-amz-decoded-content-length", data.len().to_string().parse().unwrap());
    h.insert("x-amz-trailer", "x-amz-checksum-crc32".parse().unwrap());
    raw::sign_request(
        &mut trailer,
        &gw.access_key_id,
        &gw.secret,
        SystemTime::now(),
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    );
    // A checksum header, with a plain body.
    let mut header = put("header", data.to_vec());
    header.headers_mut().insert("x-amz-checksum-crc32", crc.parse().unwrap());
    raw::sign_request(&mut header, &gw.access_key_id, &gw.secret, SystemTime::now(), &raw::sha256_hex(data));
    // No checksum at all.
    let mut none = put("none", data.to_vec());
    raw::sign_request(&mut none, &gw.access_key_id, &gw.secret, SystemTime::now(), "UNSIGNED-PAYLOAD");

    for (req, framed_upstream) in [(trailer, true), (header, false), (none, true)] {
        let key = req.uri().path().to_owned();
        let res = raw::send(gw.addr(), &req).await;
        assert_eq!(res.status, 200, "{key}: {}", res.text());
        let etag = res.headers.iter().find(|(n, _)| n == "etag").map(|(_, v)| v.clone());
        assert_eq!(etag.as_deref(), Some("\"5d41402abc4b2a76b9719d911017c592\""), "{key}: the upstream's answer");

        let (method, path, headers, body) = seen.lock().unwrap().pop().unwrap();
        assert_eq!((method.as_str(), path.as_str()), ("PUT", key.as_str()));
        let sent = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(sent("x-amz-meta-owner").as_deref(), Some("alice"), "{key}");
        let auth = sent("authorization").unwrap();
        assert!(auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={upstream_id}/")), "{key}: {auth}");
        assert_eq!(sent("content-length"), Some(body.len().to_string()), "{key}");
        if framed_upstream {
            assert_eq!(body, framed, "{key}: one chunk, then the verified CRC32 as the trailer");
            assert_eq!(sent("content-encoding").as_deref(), Some("aws-chunked"), "{key}");
            assert_eq!(sent("x-amz-decoded-content-length").as_deref(), Some("11"), "{key}");
            assert_eq!(sent("x-amz-trailer").as_deref(), Some("x-amz-checksum-crc32"), "{key}");
            assert_eq!(sent("x-amz-content-sha256").as_deref(), Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER"), "{key}");
        } else {
            assert_eq!(body, data, "{key}: the body as decoded");
            assert_eq!(sent("x-amz-checksum-crc32").as_deref(), Some(crc), "{key}");
            assert_eq!(sent("content-encoding"), None, "{key}");
            assert_eq!(sent("x-amz-trailer"), None, "{key}");
            assert_eq!(sent("x-amz-content-sha256").as_deref(), Some("UNSIGNED-PAYLOAD"), "{key}");
        }
    }
    gw.gateway.shutdown().await;
}

/// A stand-in upstream that reads a request's head and then stalls: a PUT's body is never
/// read; a GET is answered 10 of the 100 bytes it promises.
async fn stalling_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8];
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                if head.starts_with(b"GET") {
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";
                    stream.write_all(answer).await.unwrap();
                }
                tokio::time::sleep(std::time::Duration::from_secs(120)).await;
                drop(stream);
            });
        }
    });
    endpoint
}

/// An upstream that stops reading an upload, or stops sending an answer, is given up
/// after the stall grace (here 5.3 s: the gateway's 300 ms waits and a 5 s margin), as the
/// SDK's stall check gives it up on the typed path, instead of holding the request forever.
#[tokio::test]
async fn an_upstream_that_stalls_is_given_up() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (upstream_id, upstream_secret) = key_pair();
    let target = rewind_capture::upstream::UpstreamTarget {
        endpoint: stalling_upstream().await,
        access_key_id: upstream_id,
        secret: rewind_config::Secret::new(upstream_secret),
    };
    let short = rewind_config::HumanDuration(std::time::Duration::from_millis(300));
    let gw = TestGateway::start_with(&target, |c| {
        c.protection.buckets = Vec::new();
        c.server.body_idle_timeout = short;
        c.vault.capture_timeout = short;
    })
    .await;
    let limit = std::time::Duration::from_secs(30);
    let signed = |method: &str, key: &str| {
        let uri = format!("{}/photos/{key}", gw.endpoint());
        let mut req = http::Request::builder().method(method).uri(uri).body(Vec::new()).unwrap();
        raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), "UNSIGNED-PAYLOAD");
        req
    };

    // An upload far larger than the socket buffers between the gateway and the upstream.
    let upload = async {
        let size = 64 << 20;
        let req = signed("PUT", "big");
        let (mut from_gateway, mut to_gateway) = raw::send_head(gw.addr(), &req, size).await.into_split();
        let writer = tokio::spawn(async move {
            let piece = vec![7u8; 1 << 20];
            for _ in 0..size >> 20 {
                if to_gateway.write_all(&piece).await.is_err() {
                    return;
                }
            }
        });
        let mut answer = Vec::new();
        let read = tokio::time::timeout(limit, from_gateway.read_to_end(&mut answer)).await;
        writer.abort();
        assert!(read.is_ok(), "the gateway still waits on an upstream that stopped reading");
        String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
    };
    let download = async {
        let res = tokio::time::timeout(limit, raw::send(gw.addr(), &signed("GET", "cut"))).await;
        let res = res.expect("the gateway still waits on an upstream that stopped sending");
        (res.status, res.body.len())
    };
    let (upload, download) = tokio::join!(upload, download);
    assert!(upload.contains(" 503 "), "{upload}");
    // The answer's head was already sent; the cut body ends the connection early.
    assert_eq!(download, (200, 10));
    gw.gateway.shutdown().await;
}

/// Capture-before-destroy's HEAD goes through the lean client, not the SDK's, and so does a
/// restore's single PUT: with the version's headers, metadata and tags, the listing's
/// condition, and the body's SHA-256 signed, so the upstream checks the bytes it keeps.
#[tokio::test]
async fn capture_heads_and_restore_puts_go_through_the_lean_client() {
    let upstream = rewind_testkit::FsUpstream::start().await;
    let (endpoint, seen) = recorder(Some(upstream.target.endpoint.clone())).await;
    let target = rewind_capture::upstream::UpstreamTarget { endpoint, ..upstream.target.clone() };
    let gw = TestGateway::start(&target).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let data = b"restored through the lean client";
    s3.put_object()
        .bucket("bkt")
        .key("docs/a b.txt")
        .content_type("text/markdown")
        .cache_control("no-cache")
        .metadata("owner", "alice")
        .tagging("team=red")
        .body(data.to_vec().into())
        .send()
        .await
        .unwrap();
    // Capture-before-destroy asked what the key held with a HEAD of its own, also lean.
    let heads: Vec<_> =
        seen.lock().unwrap().iter().filter(|r| r.0 == "HEAD").map(|r| (r.1.clone(), r.2.clone())).collect();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].0, "/bkt/docs/a%20b.txt");
    assert!(heads[0].1.get("amz-sdk-invocation-id").is_none(), "{:?}", heads[0].1);
    let capture = gw.gateway.capture();
    let entry = capture.journal().state_at("bkt", "", rewind_model::Seq::LATEST).unwrap().pop().unwrap();
    s3.delete_object().bucket("bkt").key("docs/a b.txt").send().await.unwrap();
    seen.lock().unwrap().clear();

    let actor = rewind_capture::Actor::internal("rewind-restore", "test".into());
    let listed = rewind_capture::restore::Listed::Absent;
    let done = capture.restore_version("bkt", "docs/a b.txt", &entry.version, Some(&listed), &actor).await.unwrap();
    assert_eq!(done, rewind_capture::restore::Restored::Done);

    let (method, path, headers, body) = seen.lock().unwrap().pop().unwrap();
    assert_eq!((method.as_str(), path.as_str(), &body[..]), ("PUT", "/bkt/docs/a%20b.txt", &data[..]));
    let sent = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    // No SDK on the way: it would add its invocation id.
    assert_eq!(sent("amz-sdk-invocation-id"), None);
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data));
    assert_eq!(sent("x-amz-content-sha256"), Some(sha256));
    assert_eq!(sent("if-none-match").as_deref(), Some("*"));
    assert_eq!(sent("content-type").as_deref(), Some("text/markdown"));
    assert_eq!(sent("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(sent("x-amz-meta-owner").as_deref(), Some("alice"));
    assert_eq!(sent("x-amz-tagging").as_deref(), Some("team=red"));

    // What the upstream now holds, read back through the gateway (s3s-fs keeps no tags).
    let got = s3.get_object().bucket("bkt").key("docs/a b.txt").send().await.unwrap();
    assert_eq!(got.content_type(), Some("text/markdown"));
    assert_eq!(got.metadata().unwrap().get("owner").map(String::as_str), Some("alice"));
    assert_eq!(&got.body.collect().await.unwrap().into_bytes()[..], data);
    let history = capture.journal().state_at("bkt", "", rewind_model::Seq::LATEST).unwrap();
    assert_eq!(history.len(), 1, "the restore is journaled");
    gw.gateway.shutdown().await;
    upstream.stop().await;
}
