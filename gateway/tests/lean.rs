//! The lean forwarding path for reads (`rewind_forward::lean`): what goes upstream for a
//! GET or HEAD, and that the upstream's answer comes back whole. The upstream here is a
//! recording stand-in on loopback, so the request it received can be read back.

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rewind_testkit::{TestGateway, key_pair, raw};

/// What the stand-in upstream received: method, path and query, headers.
type Seen = Arc<Mutex<Vec<(String, String, http::HeaderMap)>>>;

/// A loopback HTTP server that answers every request with a small object and a header no
/// SDK output has a field for, and records what it received.
async fn recording_upstream() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let target = req.uri().path_and_query().map(ToString::to_string).unwrap_or_default();
                    record.lock().unwrap().push((req.method().to_string(), target, req.headers().clone()));
                    async move {
                        let res = http::Response::builder()
                            .header("etag", "\"5d41402abc4b2a76b9719d911017c592\"")
                            .header("content-type", "text/plain")
                            .header("x-amz-meta-owner", "alice")
                            .header("x-amz-probe-only-upstream-knows", "passed on")
                            .header("x-amz-request-id", "UPSTREAMID")
                            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"hello")))
                            .unwrap();
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

#[tokio::test]
async fn a_read_goes_upstream_as_sent_re_signed_and_comes_back_whole() {
    let (endpoint, seen) = recording_upstream().await;
    let (upstream_id, upstream_secret) = key_pair();
    let target = rewind_capture::upstream::UpstreamTarget {
        endpoint,
        access_key_id: upstream_id.clone(),
        secret: rewind_config::Secret::new(upstream_secret),
    };
    let gw = TestGateway::start_with(&target, |c| c.protection.buckets = Vec::new()).await;
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

        let (got_method, target, headers) = seen.lock().unwrap().pop().unwrap();
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
