//! `rewind view`: what it prints, what it refuses, and a view's key ending with its TTL or
//! with `rm`, through the real binary against an in-process gateway.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};
use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use rewind_testkit::{TestGateway, eventually, s3_client};

fn rewind(gw: &TestGateway, args: &[&str]) -> Output {
    let (url, token) = (gw.admin_url(), gw.admin_token());
    Command::new(env!("CARGO_BIN_EXE_rewind"))
        .args(["--admin-url", &url])
        .env("REWIND_ADMIN_TOKEN", &token)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)] // the rewind binary runs against an in-process gateway
async fn view_create_prints_a_key_pair_refuses_bad_input_and_keys_end_with_ttl_or_rm() {
    let gw = TestGateway::start_embedded(|_| {}).await;
    let s3 = gw.client();
    s3.create_bucket().bucket("bkt").send().await.unwrap();
    s3.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"then")).send().await.unwrap();

    let out = rewind(&gw, &["--json", "view", "create", "--bucket", "bkt", "--at", "now", "--ttl", "2h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in ["access_key_id", "secret_access_key", "endpoint", "seq", "at", "expires"] {
        assert!(!made[field].is_null(), "--json lacks {field}: {made}");
    }
    assert_eq!(made["endpoint"].as_str(), Some(gw.endpoint().as_str()));
    let (id, secret) = (made["access_key_id"].as_str().unwrap(), made["secret_access_key"].as_str().unwrap());
    s3.put_object().bucket("bkt").key("k").body(ByteStream::from_static(b"now")).send().await.unwrap();
    let view = s3_client(&gw.endpoint(), id, secret);
    let got = view.get_object().bucket("bkt").key("k").send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(got.into_bytes().as_ref(), b"then");

    // Human output: the pair, the position, and lines to paste.
    let out = rewind(&gw, &["view", "create", "--bucket", "bkt", "--at", "seq:2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("export AWS_ACCESS_KEY_ID=RWVW"), "{text}{}", stderr(&out));
    assert!(text.contains("seq:") && text.contains("aws --endpoint-url") && text.contains("rewind view rm"), "{text}");

    // Bad input, each with what to do next.
    for (args, says) in [
        (vec!["--ttl", "2 parsecs"], "is not a duration"),
        (vec!["--ttl", "0s"], "more than zero"),
        (vec!["--at", "yesterday-ish!"], "is not a time"),
        (vec!["--at", "2001-01-01T00:00:00Z"], "before history began"),
        (vec!["--at", "no-such-snapshot"], "no snapshot named"),
    ] {
        let out = rewind(&gw, &[&["view", "create", "--bucket", "bkt"][..], &args].concat());
        assert!(!out.status.success() && stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let out = rewind(&gw, &["view", "create", "--bucket", "nope"]);
    assert!(!out.status.success() && stderr(&out).contains("has no history"), "{}", stderr(&out));

    let out = rewind(&gw, &["--json", "view", "ls"]);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|v| v["secret_access_key"].is_null()), "ls never shows a secret: {listed:?}");

    let out = rewind(&gw, &["view", "rm", id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let gone = view.get_object().bucket("bkt").key("k").send().await.unwrap_err();
    assert_eq!(gone.code(), Some("InvalidAccessKeyId"));
    let out = rewind(&gw, &["view", "rm", id]);
    assert!(!out.status.success() && stderr(&out).contains("no view with access key id"), "{}", stderr(&out));

    // A view ends by itself at its TTL.
    let out = rewind(&gw, &["--json", "view", "create", "--bucket", "bkt", "--ttl", "1s"]);
    let short: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let brief = s3_client(
        &gw.endpoint(),
        short["access_key_id"].as_str().unwrap(),
        short["secret_access_key"].as_str().unwrap(),
    );
    brief.head_object().bucket("bkt").key("k").send().await.unwrap();
    let ended =
        eventually(Duration::from_secs(5), async || brief.head_object().bucket("bkt").key("k").send().await.is_err())
            .await;
    assert!(ended, "an expired view still answers");
    let err = brief.list_objects_v2().bucket("bkt").send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidAccessKeyId"));
    gw.gateway.shutdown().await;
}
