//! Writers waiting for the vault's memory budget wait their turn, however long the writer
//! ahead of them holds it (up to `vault.capture_timeout`), and then land.

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use rewind_testkit::{FsUpstream, TestGateway, pattern, raw};
use tokio::io::AsyncWriteExt;

/// aws-sdk-s3 gave up on an upload whose body sent nothing for 5 s (its stalled-stream
/// check), and the gateway answered the waiting writer 503: `rewind-bench --memory`'s 16
/// uploads of 64 MiB failed that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_waits_for_the_budget_longer_than_five_seconds_and_lands() {
    let upstream = FsUpstream::start().await;
    let gw =
        TestGateway::start_with(&upstream.target, |c| c.vault.memory_budget = rewind_config::ByteSize::mib(16)).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();

    // The look-ahead share is a quarter of the budget (4 MiB): a writer declaring 4 MiB
    // reserves all of it with its first piece, until its object ends.
    let held = pattern(4 << 20, 1);
    let mut req = http::Request::put(format!("{}/bkt/holder", gw.endpoint())).body(Vec::new()).unwrap();
    raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), &raw::sha256_hex(&held));
    let mut holder = raw::send_head(gw.addr(), &req, held.len()).await;
    holder.write_all(&held[..64 * 1024]).await.unwrap();
    holder.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let waiter_body = pattern(1 << 20, 2);
    let waiter = {
        let (s3, body) = (s3.clone(), waiter_body.clone());
        tokio::spawn(
            async move { s3.put_object().bucket("bkt").key("waiter").body(ByteStream::from(body)).send().await },
        )
    };
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(!waiter.is_finished(), "the waiting writer was answered before the budget was free: {:?}", waiter.await);

    holder.write_all(&held[64 * 1024..]).await.unwrap();
    let answer = raw::read_response(holder).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    waiter.await.unwrap().unwrap();
    for (key, body) in [("holder", &held), ("waiter", &waiter_body)] {
        let got = upstream.client().get_object().bucket("bkt").key(key).send().await.unwrap();
        assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), &body[..], "{key}");
    }
    gw.gateway.shutdown().await;
}
