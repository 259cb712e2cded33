//! A gateway on a PostgreSQL journal whose database goes away mid-traffic: writes fail
//! closed (503, nothing changed upstream), as they do when the embedded journal fails, and
//! a write cut off from its commit is resolved once the database is back.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use rewind_journal::conformance::PostgresServer;
use rewind_journal::leases::liveness;
use rewind_journal::{Access, Clock, Durability, Journal};
use rewind_model::{Abort, Body, Effect, Intent, Op};
use rewind_testkit::{FsUpstream, TestGateway, eventually, raw};
use tokio::io::AsyncWriteExt;

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

/// The database goes away between a PUT's intent and its commit, after the upstream
/// applied the PUT: its commit cannot be journaled (the client hears 503), and once the
/// database is back the running gateway resolves the intent by itself, recording the
/// version the upstream holds, as a restart's recovery would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_cut_off_from_its_commit_is_resolved_once_the_database_is_back() {
    let mut server = PostgresServer::start().unwrap();
    let upstream = FsUpstream::start().await;
    let proxy = HoldingProxy::start(&upstream.target.endpoint).await;
    let target =
        rewind_gateway::upstream::UpstreamTarget { endpoint: proxy.endpoint.clone(), ..upstream.target.clone() };
    let url = server.url();
    let gw = TestGateway::start_with(&target, |c| c.journal.set_url(url)).await;
    let journal = gw.gateway.capture().journal().clone();
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    s3.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"first")).send().await.unwrap();

    let body = b"the second version".to_vec();
    let mut req = http::Request::put(format!("{}/bkt/k", gw.endpoint())).body(Vec::new()).unwrap();
    raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), &raw::sha256_hex(&body));
    // The upstream's answer to the PUT waits in the proxy until the database is gone.
    proxy.hold(true);
    let mut stream = raw::send_head(gw.addr(), &req, body.len()).await;
    stream.write_all(&body).await.unwrap();
    let intent_open =
        eventually(Duration::from_secs(10), async || !journal.unresolved_owned().unwrap().is_empty()).await;
    assert!(intent_open, "the PUT's intent is journaled before the upstream has its body's end");
    let direct = upstream.client();
    let applied = eventually(Duration::from_secs(10), async || {
        // Mid-write, a read may see the file and the checksum of different versions.
        let Ok(got) = direct.get_object().bucket("bkt").key("k").send().await else { return false };
        got.body.collect().await.is_ok_and(|b| b.into_bytes().as_ref() == &body[..])
    })
    .await;
    assert!(applied, "the upstream applied the PUT");
    server.stop();
    proxy.hold(false);
    let response = raw::read_response(stream).await;
    assert_eq!(
        response.status,
        503,
        "an outcome the journal could not record is not acknowledged: {}",
        response.text()
    );

    server.restart().unwrap();
    let capture = gw.gateway.capture().clone();
    let resolved = eventually(Duration::from_secs(30), async || {
        journal.unresolved_owned().is_ok_and(|open| open.is_empty())
            && capture.current("bkt", "k").ok().flatten().is_some_and(|v| v.size == body.len() as u64)
    })
    .await;
    assert!(resolved, "the running gateway resolved the intent once its database was back");
    assert_eq!(journal.history("bkt", "k").unwrap().len(), 2, "both versions are in the history");
    s3.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"third")).send().await.unwrap();
}

/// Another gateway ("ghost") applied a PUT upstream and died before its commit: its intent
/// stays open and its lock went with its session. The next write of the key here resolves
/// that intent first, once the ghost's liveness lease has lapsed; and a write of a key whose
/// intent belongs to a gateway still alive waits until that gateway settles it. Either way
/// the key's journal keeps the upstream's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_write_of_a_key_settles_what_another_gateway_left_open_first() {
    let server = PostgresServer::start().unwrap();
    let upstream = FsUpstream::start().await;
    let url = server.url();
    let gw = TestGateway::start_with(&upstream.target, |c| c.journal.set_url(url)).await;
    let journal = gw.gateway.capture().journal().clone();
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    let direct = upstream.client();
    let intent = |key: &str| {
        Body::Intent(Intent {
            op: Op::Put,
            bucket: "bkt".into(),
            key: key.into(),
            access_key: "ghost".into(),
            request_id: "r".into(),
        })
    };
    let ghost = |owner: &str| {
        let now: Clock = Arc::new(|| {
            i64::try_from(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_micros()).unwrap()
        });
        Journal::over_as(journal.engine().clone(), journal.keys().clone(), Access::ReadWrite, now, owner).unwrap()
    };

    // A dead gateway: its lease lapses 2 s from now.
    s3.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"first")).send().await.unwrap();
    let dead = ghost("dead-gateway");
    assert!(dead.lease_renew(&liveness("dead-gateway"), Duration::from_secs(2)).await.unwrap());
    dead.append(intent("k"), Durability::Synced).await.unwrap();
    direct.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"the ghost's")).send().await.unwrap();
    drop(dead);
    s3.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"third")).send().await.unwrap();
    let sizes: Vec<u64> = journal
        .history("bkt", "k")
        .unwrap()
        .iter()
        .filter_map(|r| match &r.body {
            Body::Commit(c) => match &c.effect {
                Effect::Version(v) => Some(v.size),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(sizes, [5, 11, 5], "the dead gateway's PUT is committed between the two");

    // A live gateway: the write waits until it aborts its intent.
    let alive = ghost("live-gateway");
    assert!(alive.lease_renew(&liveness("live-gateway"), Duration::from_secs(60)).await.unwrap());
    let open = alive.append(intent("j"), Durability::Synced).await.unwrap();
    let put =
        tokio::spawn(
            async move { s3.put_object().bucket("bkt").key("j").body(ByteStream::from_static(b"j")).send().await },
        );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!put.is_finished(), "the write waits for the live gateway's intent");
    let aborted = alive
        .append(Body::Abort(Abort { intent: open.seq, reason: "its request failed".into() }), Durability::Synced)
        .await
        .unwrap();
    put.await.unwrap().unwrap();
    let committed =
        journal.history("bkt", "j").unwrap().into_iter().find(|r| matches!(r.body, Body::Commit(_))).unwrap();
    assert!(committed.seq > aborted.seq, "the write's commit follows the abort it waited for");
    assert!(journal.unresolved_owned().unwrap().is_empty());
}

/// A gateway started before its journal database is up waits for it (retrying, with the
/// cause in its log) and serves once it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_before_its_database_waits_for_it() {
    let mut server = PostgresServer::start().unwrap();
    let url = server.url();
    server.stop();
    let upstream = FsUpstream::start().await;
    let start = async {
        let gw = TestGateway::start_with(&upstream.target, |c| c.journal.set_url(url)).await;
        (gw, std::time::Instant::now())
    };
    let database_back = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        server.restart().unwrap();
        std::time::Instant::now()
    };
    let ((gw, started), back) = tokio::join!(start, database_back);
    assert!(started >= back, "the gateway started without its database");
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    s3.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"v")).send().await.unwrap();
    assert_eq!(gw.gateway.capture().journal().history("bkt", "k").unwrap().len(), 1);
}

/// A database that holds the journal of another installation (another vault) is refused:
/// a gateway with its own vault does not start on it, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_another_installation_is_refused() {
    let server = PostgresServer::start().unwrap();
    let upstream = FsUpstream::start().await;
    let url = server.url();
    let first = TestGateway::start_with(&upstream.target, |c| c.journal.set_url(url.clone())).await;
    first.client().create_bucket().bucket("bkt").send().await.unwrap();

    // Another installation: its own vault, with history in its own (embedded) journal.
    let other = TestGateway::start(&upstream.target).await;
    other.client().create_bucket().bucket("theirs").send().await.unwrap();
    let TestGateway { gateway, data_dir: other_dir, .. } = other;
    gateway.shutdown().await;
    let mut config = TestGateway::config(&upstream.target, other_dir.path());
    config.journal.set_url(url);
    let (id, secret) = rewind_testkit::key_pair();
    config.set_client_key(id, rewind_config::Secret::new(secret));
    let config = config.finish(vec![]).unwrap();
    let refused = rewind_gateway::Gateway::start(config, rewind_gateway::StartOptions::default()).await;
    let message = refused.err().expect("a gateway started on another installation's journal").to_string();
    // Its key does not open the journal's records (or, were the key shared, its vault id
    // is not the one the journal names).
    assert!(message.contains("another vault") || message.contains("another Rewind installation"), "{message}");
    // The first installation's journal is as it was.
    assert_eq!(first.gateway.capture().journal().history("bkt", "").unwrap().len(), 1);
}

/// Gateways started at the same moment on a new vault and an empty database: one creates
/// the vault (and its key file), the others open it; all serve one history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_started_together_on_a_new_vault_share_it() {
    let server = PostgresServer::start().unwrap();
    let upstream = FsUpstream::start().await;
    let shared = tempfile::tempdir().unwrap();
    let start = || {
        TestGateway::start_with(&upstream.target, |c| {
            c.journal.set_url(server.url());
            c.vault.location = Some(shared.path().join("vault").display().to_string());
            c.vault.key_file = Some(shared.path().join("vault.key"));
        })
    };
    let (a, b, c) = tokio::join!(start(), start(), start());
    a.client().create_bucket().bucket("bkt").send().await.unwrap();
    b.client().put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"1")).send().await.unwrap();
    c.client().put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"2")).send().await.unwrap();
    assert_eq!(a.gateway.capture().journal().history("bkt", "k").unwrap().len(), 2);
}

/// A TCP proxy to the upstream that can hold back the upstream's answers to PUTs (a
/// write's own HEAD of the key, for capture-before-destroy, passes).
struct HoldingProxy {
    endpoint: String,
    hold: tokio::sync::watch::Sender<bool>,
}

impl HoldingProxy {
    async fn start(upstream: &str) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::AsyncReadExt;
        const METHODS: [&[u8]; 5] = [b"GET ", b"HEAD ", b"PUT ", b"POST ", b"DELETE "];
        let to = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (hold, held) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&to).await.unwrap();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                // Whether this connection's request in flight is a PUT. The gateway's client
                // sends a request only after the previous answer, so a request's head starts a read.
                let put = Arc::new(AtomicBool::new(false));
                let put_seen = put.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if METHODS.iter().any(|m| buf[..n].starts_with(m)) {
                            put_seen.store(buf[..n].starts_with(b"PUT "), Ordering::SeqCst);
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut held = held.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let free = !put.load(Ordering::SeqCst) || held.wait_for(|h| !*h).await.is_ok();
                        if !free || client_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { endpoint, hold }
    }

    fn hold(&self, on: bool) {
        self.hold.send_replace(on);
    }
}
