//! The S3 vault backend passes the same conformance suite as the local one, against two
//! independent S3 servers on loopback.

#![allow(clippy::unwrap_used)] // test helpers, like tests, may unwrap

use rewind_testkit::FsUpstream;
use rewind_testkit::moto::Moto;
use rewind_vault::S3Backend;
use rewind_vault::backend::conformance;

#[tokio::test]
async fn s3_backend_conforms_on_s3s_fs() {
    let upstream = FsUpstream::start().await;
    let client = upstream.client();
    client.create_bucket().bucket("vault").send().await.unwrap();
    conformance::run(&S3Backend::new(client, "vault", "")).await;
}

#[tokio::test]
async fn s3_backend_conforms_on_moto_under_a_prefix() {
    let moto = Moto::start().await;
    let client = moto.client();
    client.create_bucket().bucket("offsite").send().await.unwrap();
    // Something else in the bucket, outside the vault's prefix, must stay invisible.
    client.put_object().bucket("offsite").key("other/thing").send().await.unwrap();
    conformance::run(&S3Backend::new(client.clone(), "offsite", "rewind/vault1")).await;
    let keys = rewind_testkit::list_keys(&client, "offsite").await;
    assert!(keys.iter().all(|k| k.starts_with("rewind/vault1/") || k == "other/thing"), "{keys:?}");
}
