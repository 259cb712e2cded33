//! Regression tests for the findings of the 2026-11-29 security and reliability review
//! (`../shared/reviews/security-2026-11-29.md`): each reproduces a finding as the review
//! did, against the gateway in process, and holds the fix to it. Findings tested closer to
//! their code live there: the journal's (F1 WAL damage, R2, R3), the vault's (F11), the
//! snapshotter's (F5 history, F6 plans), the CLI's (F14-F17).

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use rewind_config::{Config, HumanDuration};
use rewind_testkit::raw::{self, RawResponse};
use rewind_testkit::{FsUpstream, TestGateway, eventually, pattern};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup(adjust: impl FnOnce(&mut Config)) -> (FsUpstream, TestGateway, aws_sdk_s3::Client) {
    let upstream = FsUpstream::start().await;
    let gw = TestGateway::start_with(&upstream.target, adjust).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    (upstream, gw, s3)
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body.to_vec())).send().await.unwrap();
}

async fn upstream_bytes(up: &FsUpstream, bucket: &str, key: &str) -> Vec<u8> {
    let out = up.client().get_object().bucket(bucket).key(key).send().await.unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

fn code(res: &RawResponse) -> String {
    let text = res.text();
    let start = text.find("<Code>").map_or(0, |i| i + 6);
    text[start..text.find("</Code>").unwrap_or(start)].to_owned()
}

/// F2: `Content-Type: Multipart/Form-Data` (mixed case) made s3s buffer the whole form,
/// up to 5 GiB, before authentication. The answer must come without the body being read.
#[tokio::test]
async fn f2_a_form_post_in_any_letter_case_is_refused_before_its_body_is_read() {
    let (_up, gw, _s3) = setup(|_| {}).await;
    for content_type in ["Multipart/Form-Data; boundary=xyz", "MULTIPART/form-data; boundary=xyz"] {
        let req = http::Request::post(format!("{}/bkt", gw.endpoint()))
            .header("content-type", content_type)
            .body(Vec::new())
            .unwrap();
        // 256 MiB declared, none sent: s3s would wait for all of it.
        let stream = raw::send_head(gw.addr(), &req, 256 << 20).await;
        let res = tokio::time::timeout(Duration::from_secs(10), raw::read_response(stream))
            .await
            .unwrap_or_else(|_| panic!("{content_type}: the gateway waited for the form's body"));
        assert_eq!((res.status, code(&res).as_str()), (501, "NotImplemented"), "{}", res.text());
    }
}

/// F4: keys with `..` reached other keys and buckets of the embedded upstream behind the
/// journal; `..` alone panicked in s3s-fs.
#[tokio::test]
async fn f4_keys_that_would_alias_other_files_are_refused() {
    let gw = TestGateway::start_embedded(|_| {}).await;
    let s3 = gw.client();
    let file =
        |bucket: &str, key: &str| std::fs::read(gw.data_dir.path().join("upstream").join(bucket).join(key)).unwrap();
    for b in ["bkt", "victim"] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    put(&s3, "victim", "file", b"original").await;
    put(&s3, "victim", "other", b"keep me").await;
    for key in ["../victim/file", "a/../../victim/file", "..", ".", "a//b", "x/./y"] {
        let err = s3.put_object().bucket("bkt").key(key).body(ByteStream::from_static(b"evil")).send().await;
        let err = err.unwrap_err();
        assert_eq!(err.code(), Some("InvalidArgument"), "{key}: {err:?}");
    }
    let err = s3.delete_object().bucket("bkt").key("../victim/other").send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidArgument"));
    assert_eq!(file("victim", "file"), b"original");
    assert_eq!(file("victim", "other"), b"keep me");
}

/// An upstream that refuses the key itself (s3s-fs-like, served apart): its 400 reaches
/// the client, not a 503 that would have it retry forever.
#[tokio::test]
async fn an_upstream_that_refuses_a_key_answers_the_client_with_its_error() {
    let (up, _gw, s3) = setup(|_| {}).await;
    let err = s3.put_object().bucket("bkt").key("../escape").body(ByteStream::from_static(b"x")).send().await;
    assert_eq!(err.unwrap_err().raw_response().unwrap().status().as_u16(), 400);
    let err = up.client().put_object().bucket("bkt").key("../victim/file").body(ByteStream::from_static(b"x"));
    assert_eq!(err.send().await.unwrap_err().code(), Some("InvalidArgument"));
}

/// F5: DeleteBucket of a non-empty bucket removed its directory, objects and all, and the
/// journal still listed them.
#[tokio::test]
async fn f5_a_non_empty_bucket_is_not_deleted() {
    let (up, gw, s3) = setup(|c| c.protection.buckets = vec!["bkt".into()]).await;
    put(&s3, "bkt", "a", b"1").await;
    let err = s3.delete_bucket().bucket("bkt").send().await.unwrap_err();
    assert_eq!(err.code(), Some("BucketNotEmpty"), "{err:?}");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 409);
    assert_eq!(upstream_bytes(&up, "bkt", "a").await, b"1");
    // An unprotected bucket is the embedded upstream's to refuse.
    s3.create_bucket().bucket("scratch").send().await.unwrap();
    put(&s3, "scratch", "deep/inside/k", b"2").await;
    assert_eq!(s3.delete_bucket().bucket("scratch").send().await.unwrap_err().code(), Some("BucketNotEmpty"));
    // Emptied, both go.
    s3.delete_object().bucket("bkt").key("a").send().await.unwrap();
    s3.delete_object().bucket("scratch").key("deep/inside/k").send().await.unwrap();
    s3.delete_bucket().bucket("bkt").send().await.unwrap();
    s3.delete_bucket().bucket("scratch").send().await.unwrap();
    let _ = gw;
}

/// F7: the presign lifetime cap and the SigV2 checks read the raw query, so a
/// percent-encoded parameter name (`X-Amz-Expire%73`) slipped a 10-year URL past them.
#[tokio::test]
async fn f7_presigned_lifetimes_are_checked_on_the_decoded_query() {
    let (_up, gw, s3) = setup(|_| {}).await;
    put(&s3, "bkt", "secret", b"secret-data").await;
    let uri = format!("{}/bkt/secret", gw.endpoint());
    let ten_years = Duration::from_secs(10 * 365 * 86_400);
    let url = raw::presign_get(&uri, &gw.access_key_id, &gw.secret, ten_years);
    for variant in [url.clone(), url.replace("X-Amz-Expires=", "X-Amz-Expire%73=")] {
        let res = raw::send(gw.addr(), &http::Request::get(variant.as_str()).body(Vec::new()).unwrap()).await;
        assert_eq!((res.status, code(&res).as_str()), (400, "AuthorizationQueryParametersError"), "{variant}");
    }
    // SigV2: a 10-year URL, with the key parameter's name encoded or not, is refused.
    let far = UNIX_EPOCH.elapsed().unwrap().as_secs() + ten_years.as_secs();
    let v2 = raw::sigv2_presign(&gw.endpoint(), "GET", "/bkt/secret", &gw.access_key_id, &gw.secret, far);
    for variant in [v2.clone(), v2.replace("AWSAccessKeyId=", "%41WSAccessKeyId=")] {
        let res = raw::send(gw.addr(), &http::Request::get(variant.as_str()).body(Vec::new()).unwrap()).await;
        assert_eq!((res.status, code(&res).as_str()), (400, "AuthorizationQueryParametersError"), "{variant}");
    }
}

/// SigV2, as aws cli v1 presigns: verified (a wrong secret or an expired URL refused),
/// and the identity it carries journaled.
#[tokio::test]
async fn sigv2_presigned_urls_and_signed_headers_work_and_are_checked() {
    let (_up, gw, s3) = setup(|_| {}).await;
    put(&s3, "bkt", "shared", b"shared-data").await;
    let soon = UNIX_EPOCH.elapsed().unwrap().as_secs() + 3600;
    let addr = gw.addr();
    let get =
        |url: String| async move { raw::send(addr, &http::Request::get(url.as_str()).body(Vec::new()).unwrap()).await };
    let url = raw::sigv2_presign(&gw.endpoint(), "GET", "/bkt/shared", &gw.access_key_id, &gw.secret, soon);
    let res = get(url.clone()).await;
    assert_eq!((res.status, res.body.ends_with(b"shared-data")), (200, true), "{}", res.text());
    // The parameter name percent-encoded decodes to the same URL: still verified.
    assert_eq!(get(url.replace("AWSAccessKeyId=", "%41WSAccessKeyId=")).await.status, 200);
    let wrong = raw::sigv2_presign(&gw.endpoint(), "GET", "/bkt/shared", &gw.access_key_id, "not-the-secret", soon);
    assert_eq!(code(&get(wrong).await), "SignatureDoesNotMatch");
    let past = raw::sigv2_presign(&gw.endpoint(), "GET", "/bkt/shared", &gw.access_key_id, &gw.secret, soon - 7200);
    assert_eq!(code(&get(past).await), "AccessDenied");
    let other_key = raw::sigv2_presign(&gw.endpoint(), "GET", "/bkt/other", &gw.access_key_id, &gw.secret, soon);
    assert_eq!(code(&get(other_key.replace("/bkt/other", "/bkt/shared")).await), "SignatureDoesNotMatch");

    // A presigned PUT, and a header-signed one: journaled under the key that signed.
    let url = raw::sigv2_presign(&gw.endpoint(), "PUT", "/bkt/uploaded", &gw.access_key_id, &gw.secret, soon);
    let res = raw::send(gw.addr(), &http::Request::put(url.as_str()).body(b"via a link".to_vec()).unwrap()).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let mut req = http::Request::put(format!("{}/bkt/header", gw.endpoint()))
        .header("content-type", "text/plain")
        .body(b"signed v2".to_vec())
        .unwrap();
    raw::sigv2_sign(&mut req, "/bkt/header", &gw.access_key_id, &gw.secret);
    assert_eq!(raw::send(gw.addr(), &req).await.status, 200);
    let journal = gw.gateway.capture().journal();
    let log = rewind_snapshotter::History::new(journal).log("bkt", "header").unwrap();
    assert_eq!(log.last().unwrap().access_key, gw.access_key_id);
    let got = s3.get_object().bucket("bkt").key("uploaded").send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(got.into_bytes().as_ref(), b"via a link");
}

/// F8: DeleteObjects took any number of keys (40,000 held every write for 30 s).
#[tokio::test]
async fn f8_delete_objects_names_at_most_1000_keys() {
    let (_up, _gw, s3) = setup(|_| {}).await;
    let delete = |n: usize| {
        let ids = (0..n).map(|i| ObjectIdentifier::builder().key(format!("k{i}")).build().unwrap()).collect();
        s3.delete_objects().bucket("bkt").delete(Delete::builder().set_objects(Some(ids)).build().unwrap()).send()
    };
    let err = delete(1001).await.unwrap_err();
    assert_eq!(err.code(), Some("MalformedXML"), "{err:?}");
    delete(1000).await.unwrap();
}

/// F9: an HTTP/2 connection that sent its preface and then nothing held a connection slot
/// forever; `max_connections` of them blocked the listener.
#[tokio::test]
async fn f9_idle_http2_connections_are_closed() {
    let (_up, gw, s3) = setup(|c| {
        c.server.max_connections = 2;
        c.server.header_read_timeout = HumanDuration(Duration::from_secs(1));
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap();
        idle.push(stream);
    }
    // The listener is full; the idle connections must be closed to let this through.
    let listed = tokio::time::timeout(Duration::from_secs(10), s3.list_buckets().send()).await;
    assert!(listed.is_ok_and(|r| r.is_ok()), "a request waited behind idle HTTP/2 connections");
    for mut stream in idle {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "an idle HTTP/2 connection stayed open");
    }
}

/// F10: an upload refused with BadDigest (a wrong Content-MD5, or a right CRC32 with a
/// wrong SHA-256) still replaced the object in the embedded upstream.
#[tokio::test]
async fn f10_an_upload_refused_for_its_digest_changes_nothing() {
    let (up, gw, s3) = setup(|_| {}).await;
    put(&s3, "bkt", "m", b"version one").await;
    let err = s3
        .put_object()
        .bucket("bkt")
        .key("m")
        .content_md5("AAAAAAAAAAAAAAAAAAAAAA==")
        .body(ByteStream::from_static(b"version two (bad md5)"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("BadDigest"), "{err:?}");
    assert_eq!(upstream_bytes(&up, "bkt", "m").await, b"version one");

    let body = b"version three (crc32 ok, sha256 wrong)".to_vec();
    let crc = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(&body).to_be_bytes())
    };
    let mut req = http::Request::put(format!("{}/bkt/m", gw.endpoint()))
        .header("x-amz-checksum-crc32", crc)
        .header("x-amz-checksum-sha256", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .body(body.clone())
        .unwrap();
    raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), &raw::sha256_hex(&body));
    let res = raw::send(gw.addr(), &req).await;
    assert_eq!((res.status, code(&res).as_str()), (400, "BadDigest"), "{}", res.text());
    assert_eq!(upstream_bytes(&up, "bkt", "m").await, b"version one");

    // Straight to the embedded upstream: it checks before the file lands, too.
    let direct = up.client().put_object().bucket("bkt").key("m").content_md5("AAAAAAAAAAAAAAAAAAAAAA==");
    let err = direct.body(ByteStream::from_static(b"direct, bad md5")).send().await.unwrap_err();
    assert_eq!(err.code(), Some("BadDigest"));
    assert_eq!(upstream_bytes(&up, "bkt", "m").await, b"version one");
}

/// F12: the chunks of an upload refused for its digest stayed in the vault for good. A
/// garbage collection pass (here with no grace period) reclaims them: they share a pack
/// with a later upload's, so that pack is repacked and the old one deleted. Every journaled
/// version still reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f12_chunks_of_a_refused_upload_are_collected() {
    let (_up, gw, s3) = setup(|c| c.retention.gc_grace = HumanDuration(Duration::ZERO)).await;
    put(&s3, "bkt", "before", &pattern(100_000, 1)).await;
    let refused = s3.put_object().bucket("bkt").key("cut").content_md5("AAAAAAAAAAAAAAAAAAAAAA==");
    // Large enough that chunks are cut and stored before the digest is found wrong.
    let err = refused.body(ByteStream::from(pattern(12_000_000, 2))).send().await.unwrap_err();
    assert_eq!(err.code(), Some("BadDigest"), "{err:?}");
    put(&s3, "bkt", "after", &pattern(100_000, 3)).await;
    let packs = gw.data_dir.path().join("vault").join("packs");
    let stored = |files: &[std::path::PathBuf]| files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum::<u64>();
    let before = stored(&walk(&packs));
    assert!(before > 4_000_000, "the refused upload's chunks are in the vault: {before} bytes");

    let admin = async |method: http::Method, path: &str| {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}/admin/v1/{path}", gw.admin_url()))
            .header("authorization", format!("Bearer {}", gw.admin_token()))
            .body(Vec::new())
            .unwrap();
        raw::send(gw.gateway.admin_addr, &req).await
    };
    let res = admin(http::Method::POST, "gc").await;
    assert_eq!(res.status, 200, "{}", res.text());
    let report: serde_json::Value = serde_json::from_str(&res.text()).unwrap();
    assert!(report["packs_deleted"].as_u64().unwrap() >= 1, "{report}");
    let after = stored(&walk(&packs));
    assert!(after < 300_000, "the refused upload's chunks are gone: {before} -> {after} bytes");
    let res = admin(http::Method::GET, "gc/progress").await;
    let progress: serde_json::Value = serde_json::from_str(&res.text()).unwrap();
    assert_eq!(progress["running"].as_bool(), Some(false), "{progress}");
    let res = admin(http::Method::POST, "verify?read_data=1").await;
    let verify: serde_json::Value = serde_json::from_str(&res.text()).unwrap();
    assert_eq!(verify["damaged"].as_array().map(Vec::len), Some(0), "{verify}");
    assert!(verify["journal_problems"].as_array().unwrap().is_empty(), "{verify}");
    let metrics = &gw.gateway.metrics.engine;
    assert!(metrics.gc_packs.with_label_values(&["deleted"]).get() >= 1);
    assert!(metrics.gc_last_success.get() > 0.0);
}

/// F13: with the smallest budget, concurrent uploads wait for memory instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f13_uploads_beyond_the_memory_budget_wait_and_succeed() {
    let (_up, gw, s3) = setup(|c| c.vault.memory_budget = rewind_config::ByteSize::mib(16)).await;
    let uploads: Vec<_> = (0..8u64)
        .map(|i| {
            let s3 = s3.clone();
            tokio::spawn(async move {
                let body = pattern(8 << 20, i);
                s3.put_object().bucket("bkt").key(format!("big{i}")).body(ByteStream::from(body)).send().await
            })
        })
        .collect();
    for u in uploads {
        u.await.unwrap().unwrap();
    }
    let budget = gw.gateway.capture().vault().budget().clone();
    assert!(budget.shares().iter().all(|s| s.used() <= s.size()));
}

/// F18: a data directory made beforehand (`mkdir`, 0755) stayed readable by everyone.
#[tokio::test]
async fn f18_the_data_directory_is_made_private() {
    use std::os::unix::fs::PermissionsExt;
    let upstream = FsUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = data.clone();
    let gw = TestGateway::start_with(&upstream.target, move |c| c.server.data_dir = data_dir).await;
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    let _ = gw;
}

/// F21: the admin listener answered any Host, so a web page could read it through a DNS
/// name of its own pointed at 127.0.0.1.
#[tokio::test]
async fn f21_the_admin_listener_answers_only_its_own_names() {
    let (_up, gw, _s3) = setup(|c| c.server.admin_hosts = vec!["rewind.internal".into()]).await;
    let addr: std::net::SocketAddr = gw.gateway.admin_addr;
    for (host, status) in
        [("attacker.example.com", 421), ("localhost", 200), ("127.0.0.1", 200), ("rewind.internal:9001", 200)]
    {
        let req = http::Request::get("/metrics").header("host", host).body(Vec::new()).unwrap();
        assert_eq!(raw::send(addr, &req).await.status, status, "Host: {host}");
    }
}

/// F22: the scheduled verify never read data, so a damaged pack went unnoticed until a
/// restore. Each run now reads a share; with the cycle equal to the interval, all of it.
#[tokio::test]
async fn f22_scheduled_verifies_read_the_vaults_data() {
    let (_up, gw, s3) = setup(|c| {
        c.vault.verify_interval = HumanDuration(Duration::from_secs(1));
        c.vault.verify_read_cycle = HumanDuration(Duration::from_secs(1));
    })
    .await;
    put(&s3, "bkt", "k", &pattern(100_000, 1)).await;
    let packs = gw.data_dir.path().join("vault").join("packs");
    let pack = walk(&packs).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&pack, &bytes).unwrap();
    let metrics = gw.gateway.metrics.engine.clone();
    let found =
        eventually(Duration::from_secs(20), async || metrics.verify_runs.with_label_values(&["damaged"]).get() > 0)
            .await;
    assert!(found, "the scheduled verify did not read the damaged chunk");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// R1: CreateSession returns credentials for the caller, upstream the gateway's own key.
#[tokio::test]
async fn r1_create_session_is_refused() {
    let (_up, _gw, s3) = setup(|_| {}).await;
    let err = s3.create_session().bucket("bkt").send().await.unwrap_err();
    assert_eq!(err.code(), Some("NotImplemented"), "{err:?}");
}

/// Errors without a message reached clients as "Unknown" (aws cli prints the message).
#[tokio::test]
async fn errors_carry_a_message() {
    let (_up, _gw, s3) = setup(|_| {}).await;
    let err = s3.create_bucket().bucket("bkt").send().await.unwrap_err();
    assert!(err.message().is_some_and(|m| !m.is_empty()), "{err:?}");
    let err = s3.list_objects_v2().bucket("no-such-bucket").send().await.unwrap_err();
    assert_eq!(err.message(), Some("The specified bucket does not exist."), "{err:?}");
    let wrong = rewind_testkit::s3_client(&_gw.endpoint(), &_gw.access_key_id, "wrong-secret-0123456789");
    let err = wrong.list_buckets().send().await.unwrap_err();
    assert!(err.message().is_some_and(|m| m.contains("signature")), "{err:?}");
}

/// R5: shipping accepted whatever segment already had a name, so a second history's
/// records could be marked shipped without being in the vault.
#[tokio::test]
async fn r5_shipping_never_takes_another_history_for_its_own() {
    use rewind_capture::ship::{Divergence, ShipError, ship_pending};
    use rewind_journal::{Durability, Journal};
    use rewind_model::{Abort, Body, Seq};
    let keys = std::sync::Arc::new(rewind_crypto::KeySet::derive(&rewind_crypto::SecretKey::generate().unwrap()));
    let (vault_dir, a_dir, b_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let vault = rewind_vault::LocalBackend::open(vault_dir.path()).unwrap();
    let abort = |why: &str| Body::Abort(Abort { intent: Seq(1), reason: why.into() });
    let a = Journal::open(a_dir.path(), keys.clone()).unwrap();
    let b = Journal::open(b_dir.path(), keys).unwrap();
    for i in 0..3 {
        a.append(abort(&format!("a{i}")), Durability::Synced).await.unwrap();
        b.append(abort(&format!("b{i}")), Durability::Synced).await.unwrap();
    }
    assert_eq!(ship_pending(&a, &vault).await.unwrap(), 1);
    // Same positions, other records: refused, and nothing marked shipped.
    let err = ship_pending(&b, &vault).await.unwrap_err();
    assert!(matches!(err, ShipError::Diverged(Divergence::Forked { seq: 1 })), "{err}");
    assert_eq!(b.shipped().unwrap().0, Seq(0));
    // After a crash that lost the mark, the same records are adopted, not re-shipped.
    a.set_shipped(Seq(0), &[0; 32]).await.unwrap();
    a.append(abort("a3"), Durability::Synced).await.unwrap();
    ship_pending(&a, &vault).await.unwrap();
    assert_eq!(a.shipped().unwrap().0, Seq(4));
    // And the check at start-up sees that the vault vouches for nothing past A's head.
    rewind_capture::ship::check_against_vault(&a, &vault).await.unwrap();
    assert!(matches!(
        rewind_capture::ship::check_against_vault(&b, &vault).await,
        Err(ShipError::Diverged(Divergence::Behind { local: 3, vault: 4 }))
    ));
}

/// A shipper killed while its segment's write was in flight (a forget interrupted by a
/// crash, an S3 PUT already sent): the write lands after the next shipper shipped the same
/// records again in a longer segment. The vault then holds two segments starting at one
/// position, both the journal's own: verify follows the chain and stays clean, and still
/// names a segment of another history.
#[tokio::test]
async fn a_shorter_copy_of_a_shipped_run_landing_late_is_no_fork() {
    use rewind_capture::ship::{compare_with_vault, ship_pending};
    use rewind_journal::{Durability, Journal, segment};
    use rewind_model::{Abort, Body, Seq};
    use rewind_vault::Backend;
    let keys = std::sync::Arc::new(rewind_crypto::KeySet::derive(&rewind_crypto::SecretKey::generate().unwrap()));
    let (vault_dir, a_dir, b_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let vault = rewind_vault::LocalBackend::open(vault_dir.path()).unwrap();
    let abort = |why: &str| Body::Abort(Abort { intent: Seq(1), reason: why.into() });
    let a = Journal::open(a_dir.path(), keys.clone()).unwrap();
    for i in 0..3 {
        a.append(abort(&format!("a{i}")), Durability::Synced).await.unwrap();
    }
    ship_pending(&a, &vault).await.unwrap();
    // The killed shipper sealed records 4-5; its write has not landed yet.
    a.append(abort("a3"), Durability::Synced).await.unwrap();
    a.append(abort("a4"), Durability::Synced).await.unwrap();
    let (_, prev) = a.shipped().unwrap();
    let late = a.seal_segment(&a.raw_records(Seq(4), 2).unwrap(), prev).unwrap();
    a.append(abort("a5"), Durability::Synced).await.unwrap();
    ship_pending(&a, &vault).await.unwrap();
    vault.put(&segment::name(late.first, late.last), late.bytes.into()).await.unwrap();
    a.append(abort("a6"), Durability::Synced).await.unwrap();
    ship_pending(&a, &vault).await.unwrap();
    let found = compare_with_vault(&a, &vault).await.unwrap();
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    assert_eq!(found.segments, 4);

    // A segment of another history at the same position is still named.
    let b = Journal::open(b_dir.path(), keys).unwrap();
    for i in 0..4 {
        b.append(abort(&format!("b{i}")), Durability::Synced).await.unwrap();
    }
    let fork = b.seal_segment(&b.raw_records(Seq(4), 1).unwrap(), prev).unwrap();
    vault.put(&segment::name(fork.first, fork.last), fork.bytes.into()).await.unwrap();
    let found = compare_with_vault(&a, &vault).await.unwrap();
    assert!(found.problems.iter().any(|p| p.contains("differs from the local journal")), "{:?}", found.problems);
}

/// Newcomer bug 2: an empty PUT could end its body before the tee's pump saw the upstream
/// answer, and was refused with 503 although the upstream had stored it. A storm of them,
/// concurrent, then the journal and the upstream compared key by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_empty_puts_is_acknowledged_and_journaled_exactly() {
    let (up, gw, s3) = setup(|_| {}).await;
    let keys: Vec<String> = (0..400).map(|i| format!("empty/{i:03}")).collect();
    let results = futures::future::join_all(keys.chunks(50).map(|batch| {
        let s3 = s3.clone();
        async move {
            let mut failures = Vec::new();
            for key in batch {
                if let Err(e) = s3.put_object().bucket("bkt").key(key).body(ByteStream::from_static(b"")).send().await {
                    failures.push(format!("{key}: {:?}", e.code()));
                }
            }
            failures
        }
    }))
    .await;
    let failures: Vec<String> = results.into_iter().flatten().collect();
    assert!(
        failures.is_empty(),
        "{} of {} refused, first: {:?}",
        failures.len(),
        keys.len(),
        &failures[..5.min(failures.len())]
    );
    let upstream = rewind_testkit::list_keys(&up.client(), "bkt").await;
    assert_eq!(upstream, keys, "the upstream holds exactly the acknowledged keys");
    let capture = gw.gateway.capture();
    for key in &keys {
        let version = capture.current("bkt", key).unwrap().unwrap_or_else(|| panic!("{key} not journaled"));
        assert_eq!(version.size, 0, "{key}");
    }
    let metrics = gw.gateway.metrics.render();
    assert!(!metrics.contains("rewind_capture_refusals_total{"), "a refusal was counted");
}

/// Newcomer bug 1: an empty PUT with `Expect: 100-continue` gets its final status without
/// `100 Continue` (there is no body to invite); botocore then misreads the next response
/// on that connection. The gateway closes such a connection after answering.
#[tokio::test]
async fn an_empty_put_waiting_for_continue_closes_its_connection() {
    let (_up, gw, _s3) = setup(|_| {}).await;
    let exchange = async || {
        let mut req = http::Request::put(format!("{}/bkt/empty", gw.endpoint()))
            .header("host", gw.addr().to_string())
            .header("expect", "100-continue")
            .body(Vec::new())
            .unwrap();
        raw::sign_request(&mut req, &gw.access_key_id, &gw.secret, SystemTime::now(), &raw::sha256_hex(b""));
        let mut stream = tokio::net::TcpStream::connect(gw.addr()).await.unwrap();
        let mut head = "PUT /bkt/empty HTTP/1.1\r\ncontent-length: 0\r\n".to_owned();
        for (k, v) in req.headers() {
            head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        // Read until the server closes, or give up after a while: a kept-alive connection
        // stays open.
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
                Ok(Ok(0)) => break true,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Ok(Err(_)) => break true,
                Err(_) => break false,
            }
        };
        (String::from_utf8_lossy(&got).to_ascii_lowercase(), closed)
    };
    let (response, closed) = exchange().await;
    assert!(response.starts_with("http/1.1 200"), "{response}");
    assert!(response.contains("connection: close") && closed, "kept alive: {response}");
}
