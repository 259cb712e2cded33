//! A gateway on a PostgreSQL journal whose database goes away mid-traffic: writes fail
//! closed (503, nothing changed upstream), as they do when the embedded journal fails.

#![allow(clippy::unwrap_used)]

use aws_sdk_s3::primitives::ByteStream;
use rewind_journal::conformance::PostgresServer;
use rewind_testkit::{FsUpstream, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_closed_when_the_journal_database_goes_away() {
    let server = PostgresServer::start().unwrap();
    let upstream = FsUpstream::start().await;
    let url = server.url();
    let gw = TestGateway::start_with(&upstream.target, |c| c.journal.set_url(url)).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    s3.put_object().bucket("bkt").key("before").body(ByteStream::from_static(b"kept")).send().await.unwrap();
    assert_eq!(gw.gateway.capture().journal().history("bkt", "before").unwrap().len(), 1);

    drop(server); // a fast shutdown: every connection of the gateway ends

    let put = s3.put_object().bucket("bkt").key("after").body(ByteStream::from_static(b"new")).send().await;
    let err = put.expect_err("no write without its journal");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503), "{err:?}");
    let del = s3.delete_object().bucket("bkt").key("before").send().await;
    let err = del.expect_err("no delete without its journal");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503), "{err:?}");

    let direct = upstream.client();
    assert!(direct.head_object().bucket("bkt").key("after").send().await.is_err(), "nothing new upstream");
    let kept = direct.get_object().bucket("bkt").key("before").send().await.unwrap();
    assert_eq!(kept.body.collect().await.unwrap().into_bytes().as_ref(), b"kept", "nothing deleted upstream");
    // Reads keep working.
    let read = s3.get_object().bucket("bkt").key("before").send().await.unwrap();
    assert_eq!(read.body.collect().await.unwrap().into_bytes().as_ref(), b"kept");
}
