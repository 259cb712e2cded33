//! The operator's view: metrics, health and readiness, behaviour when the upstream is gone,
//! the connection cap, and a graceful shutdown that lets in-flight requests finish.

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use std::time::{Duration, SystemTime};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use rewind_testkit::{FsUpstream, TestGateway, eventually, raw};
use tokio::io::AsyncWriteExt;

async fn admin_get(gw: &TestGateway, path: &str) -> raw::RawResponse {
    let req = http::Request::get(format!("{}{path}", gw.admin_url())).body(Vec::new()).unwrap();
    raw::send(gw.gateway.admin_addr, &req).await
}

/// The value of one sample line, e.g. `rewind_requests_total{operation="PutObject",status_code="200"}`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

#[tokio::test]
async fn metrics_count_requests_bytes_and_upstream_calls() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start(&upstream.target).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("met").send().await.unwrap();
    for i in 0..3 {
        s3.put_object()
            .bucket("met")
            .key(format!("k{i}"))
            .body(ByteStream::from(vec![1u8; 10_000]))
            .send()
            .await
            .unwrap();
    }
    s3.get_object().bucket("met").key("k0").send().await.unwrap().body.collect().await.unwrap();
    let _ = s3.get_object().bucket("met").key("missing").send().await.unwrap_err();
    let _ =
        rewind_testkit::s3_client(&gw.endpoint(), "NOSUCHKEY1", "wrong-secret-0123456789").list_buckets().send().await;

    let m = admin_get(&gw, "/metrics").await.text();
    assert_eq!(sample(&m, r#"rewind_requests_total{operation="PutObject",status_code="200"}"#), Some(3.0), "{m}");
    assert_eq!(sample(&m, r#"rewind_requests_total{operation="GetObject",status_code="404"}"#), Some(1.0));
    assert_eq!(sample(&m, r#"rewind_requests_total{operation="Unresolved",status_code="403"}"#), Some(1.0));
    assert!(sample(&m, r#"rewind_client_received_bytes_total{operation="PutObject"}"#).unwrap() >= 30_000.0);
    assert!(sample(&m, r#"rewind_client_sent_bytes_total{operation="GetObject"}"#).unwrap() >= 10_000.0);
    assert_eq!(
        sample(&m, r#"rewind_upstream_request_duration_seconds_count{operation="PutObject",outcome="ok"}"#),
        Some(3.0)
    );
    assert_eq!(sample(&m, r#"rewind_request_duration_seconds_count{operation="PutObject"}"#), Some(3.0));
    assert!(m.contains("rewind_build_info{"), "{m}");
    // The test's runtime serves the in-process gateway: its workers are the gateway's.
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    assert_eq!(sample(&m, "rewind_worker_threads"), Some(workers as f64), "{m}");
    assert!(
        !m.contains(&gw.secret) && !m.contains("k0") && !m.contains("\"met\""),
        "no secrets, keys or buckets in metrics"
    );
}

#[tokio::test]
async fn health_and_readiness_follow_the_upstream() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start(&upstream.target).await;
    assert_eq!(admin_get(&gw, "/health").await.status, 200);
    assert_eq!(admin_get(&gw, "/ready").await.status, 200);
    assert_eq!(admin_get(&gw, "/nope").await.status, 404);

    upstream.stop().await;
    let ready = admin_get(&gw, "/ready").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(admin_get(&gw, "/health").await.status, 200, "the process itself is fine");
    assert_eq!(sample(&admin_get(&gw, "/metrics").await.text(), "rewind_upstream_up"), Some(0.0));

    // S3 requests get a retryable 503 that does not reveal the upstream's address.
    let err = gw.client().list_buckets().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ServiceUnavailable"), "{err:?}");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 503);
    assert!(!err.message().unwrap_or_default().contains("127.0.0.1"));
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start_with(&upstream.target, |c| c.server.max_connections = 1).await;
    // Holds the only slot: a connection that sends nothing.
    let hog = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
    assert!(eventually(Duration::from_secs(5), async || gw.gateway.metrics.connections_active.get() == 1).await);

    let s3 = gw.client();
    let waiting = tokio::spawn(async move { s3.list_buckets().send().await });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    let blocked = tokio::time::timeout(Duration::from_millis(300), async {
        while !waiting.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(blocked.is_err(), "a second connection must not be served while the cap is reached");

    drop(hog);
    let served = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("served once the slot frees");
    served.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_lets_in_flight_uploads_finish_and_stops_accepting() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start(&upstream.target).await;
    gw.client().create_bucket().bucket("sht").send().await.unwrap();
    let addr = gw.addr();

    // An upload in progress: headers and half the body sent.
    let body = vec![42u8; 64 * 1024];
    let mut req = http::Request::put(format!("{}/sht/in-flight", gw.endpoint())).body(Vec::new()).unwrap();
    raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), "UNSIGNED-PAYLOAD");
    let mut stream = raw::send_head(addr, &req, body.len()).await;
    stream.write_all(&body[..32 * 1024]).await.unwrap();
    assert!(eventually(Duration::from_secs(5), async || gw.gateway.metrics.requests_in_flight.get() == 1).await);

    let client = upstream.client();
    let TestGateway { gateway, data_dir, .. } = gw;
    let shutdown = tokio::spawn(gateway.shutdown());
    // New connections are refused once the listener is closed.
    assert!(eventually(Duration::from_secs(5), async || { tokio::net::TcpStream::connect(addr).await.is_err() }).await);

    stream.write_all(&body[32 * 1024..]).await.unwrap();
    let res = raw::read_response(stream).await;
    assert_eq!(res.status, 200, "the in-flight upload completes: {}", res.text());
    tokio::time::timeout(Duration::from_secs(10), shutdown).await.expect("shutdown finishes").unwrap();
    let stored = client.get_object().bucket("sht").key("in-flight").send().await.unwrap();
    assert_eq!(stored.body.collect().await.unwrap().into_bytes().len(), body.len());
    drop(data_dir);
}

#[tokio::test]
async fn oversized_xml_bodies_are_refused() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start_with(&upstream.target, |c| {
        c.server.max_xml_body_size = rewind_config::ByteSize(64 * 1024);
    })
    .await;
    gw.client().create_bucket().bucket("xml").send().await.unwrap();
    // A DeleteObjects body of ~115 KiB against a 64 KiB limit.
    let objects: String =
        (0..2000).map(|i| format!("<Object><Key>some/longish/key/number/{i:05}</Key></Object>")).collect();
    let body = format!("<Delete>{objects}</Delete>").into_bytes();
    assert!(body.len() > 64 * 1024);
    let mut req = http::Request::post(format!("{}/xml?delete", gw.endpoint())).body(body.clone()).unwrap();
    raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), &raw::sha256_hex(&body));
    let res = raw::send(gw.addr(), &req).await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.text().contains("MaxMessageLengthExceeded"), "{}", res.text());
}

/// The scheduled retention plan publishes how the vault's bytes divide: an overwrite under a
/// policy that keeps only the current state makes the first version's bytes expired.
#[tokio::test]
async fn the_scheduled_retention_plan_shows_live_and_expired_vault_bytes() {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start_with(&upstream.target, |c| {
        c.retention.schedule = rewind_config::HumanDuration::secs(1);
        c.retention.keep_all_within = rewind_config::HumanDuration::secs(0);
        c.retention.min_keep_all_within = rewind_config::HumanDuration::secs(0);
    })
    .await;
    let s3 = gw.client();
    s3.create_bucket().bucket("ret").send().await.unwrap();
    for seed in [1u8, 2] {
        let body = ByteStream::from(vec![seed; 20_000]);
        s3.put_object().bucket("ret").key("k").body(body).send().await.unwrap();
    }
    let expired = r#"rewind_vault_chunk_bytes{state="expired"}"#;
    let planned = eventually(Duration::from_secs(20), async || {
        let m = admin_get(&gw, "/metrics").await.text();
        sample(&m, expired).is_some_and(|b| b > 0.0)
    })
    .await;
    assert!(planned, "the retention plan did not run");
    let m = admin_get(&gw, "/metrics").await.text();
    assert!(sample(&m, r#"rewind_vault_chunk_bytes{state="live"}"#).unwrap() > 0.0);
    assert!(sample(&m, "rewind_retention_last_plan_timestamp_seconds").unwrap() > 0.0);
}
