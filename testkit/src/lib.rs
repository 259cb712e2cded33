//! Test-only helpers: upstream S3 servers on loopback, a gateway harness, S3 clients, and a
//! raw HTTP client for requests no SDK would send.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod moto;
pub mod raw;

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use rewind_config::{Config, Secret};
use rewind_gateway::upstream::{EmbeddedUpstream, UpstreamTarget};
use rewind_gateway::{Gateway, StartOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A fresh random (access key id, secret) pair; tests never share credentials.
pub fn key_pair() -> (String, String) {
    let (id, secret) = rewind_gateway::credentials::random_key_pair();
    (id, secret.expose().to_owned())
}

/// s3s-fs serving a temporary directory on 127.0.0.1 (TCP_NODELAY, random credentials).
pub struct FsUpstream {
    /// Endpoint and credentials.
    pub target: UpstreamTarget,
    /// The served directory: `<root>/<bucket>/<key>`.
    pub root: tempfile::TempDir,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl FsUpstream {
    /// Starts serving an empty temporary directory.
    pub async fn start() -> Self {
        Self::serve(tempfile::tempdir().unwrap()).await
    }

    /// Starts serving an empty directory created under `parent` (e.g. on /dev/shm).
    pub async fn start_in(parent: std::path::PathBuf) -> Self {
        std::fs::create_dir_all(&parent).unwrap();
        Self::serve(tempfile::tempdir_in(parent).unwrap()).await
    }

    /// [`FsUpstream::start_in`], answering every request `delay` late (a remote S3's latency).
    pub async fn start_delayed_in(parent: std::path::PathBuf, delay: std::time::Duration) -> Self {
        std::fs::create_dir_all(&parent).unwrap();
        Self::serve_after(tempfile::tempdir_in(parent).unwrap(), delay).await
    }

    async fn serve(root: tempfile::TempDir) -> Self {
        Self::serve_after(root, std::time::Duration::ZERO).await
    }

    async fn serve_after(root: tempfile::TempDir, delay: std::time::Duration) -> Self {
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let up = EmbeddedUpstream::start_answering_after(root.path(), delay, shutdown.clone(), &tracker).await.unwrap();
        Self { target: up.target, root, shutdown, tracker }
    }

    /// A client that talks to this upstream directly, bypassing the gateway.
    pub fn client(&self) -> aws_sdk_s3::Client {
        s3_client(&self.target.endpoint, &self.target.access_key_id, self.target.secret.expose())
    }

    /// Stops serving and waits for the listener to close.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// A gateway on 127.0.0.1 (ephemeral ports) with one generated client key.
pub struct TestGateway {
    /// The running gateway.
    pub gateway: Gateway,
    /// The client key id.
    pub access_key_id: String,
    /// The client secret.
    pub secret: String,
    /// The data directory (kept alive with the gateway).
    pub data_dir: tempfile::TempDir,
    /// The admin API's token (configured, or generated into the data directory in use).
    token: String,
}

impl TestGateway {
    /// A configuration for a test gateway in front of `upstream`; adjust it, then `start_with`.
    pub fn config(upstream: &UpstreamTarget, data_dir: &std::path::Path) -> Config {
        let mut c = Config::default();
        c.server.listen = "127.0.0.1:0".into();
        c.server.admin_listen = "127.0.0.1:0".into();
        c.server.data_dir = data_dir.to_path_buf();
        c.upstream.endpoint = Some(upstream.endpoint.clone());
        c.upstream.access_key_id = Some(upstream.access_key_id.clone());
        c.upstream.secret_access_key = Some(upstream.secret.clone());
        c.server.shutdown_grace = rewind_config::HumanDuration(Duration::from_secs(5));
        // Tests count journal records: no background reconcile unless a test asks for it.
        c.protection.reconcile_interval = rewind_config::HumanDuration(Duration::ZERO);
        c
    }

    /// Starts a gateway with its own embedded upstream (a directory under its data
    /// directory, `upstream/<bucket>/<key>`), as `rewind-gateway` runs with no `--upstream`.
    pub async fn start_embedded(adjust: impl FnOnce(&mut Config)) -> Self {
        let unused = UpstreamTarget { endpoint: String::new(), access_key_id: String::new(), secret: Secret::new("") };
        Self::start_with(&unused, |c| {
            c.upstream.endpoint = None;
            c.upstream.access_key_id = None;
            c.upstream.secret_access_key = None;
            adjust(c);
        })
        .await
    }

    /// Starts a gateway in front of `upstream` with default settings.
    pub async fn start(upstream: &UpstreamTarget) -> Self {
        Self::start_with(upstream, |_| {}).await
    }

    /// Starts a gateway in front of `upstream`, letting `adjust` change the configuration.
    pub async fn start_with(upstream: &UpstreamTarget, adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = Self::config(upstream, data_dir.path());
        let (id, secret) = key_pair();
        config.set_client_key(id.clone(), Secret::new(secret.clone()));
        adjust(&mut config);
        let config = config.finish(vec![]).unwrap();
        let (configured, in_use) = (config.credentials.admin_token.clone(), config.server.data_dir.clone());
        let gateway = Gateway::start(config, StartOptions::default()).await.unwrap();
        let token = match configured {
            Some(t) => t.expose().to_owned(),
            None => std::fs::read_to_string(in_use.join("admin-token")).unwrap().trim().to_owned(),
        };
        Self { gateway, access_key_id: id, secret, data_dir, token }
    }

    /// `http://127.0.0.1:PORT` of the S3 listener.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.gateway.s3_addr)
    }

    /// `http://127.0.0.1:PORT` of the admin listener.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.gateway.admin_addr)
    }

    /// The admin API's token.
    pub fn admin_token(&self) -> String {
        self.token.clone()
    }

    /// The S3 listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.gateway.s3_addr
    }

    /// An S3 client signed with the gateway's client key.
    pub fn client(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint(), &self.access_key_id, &self.secret)
    }
}

/// An aws-sdk-s3 client for `endpoint` (path-style, us-east-1, no retries so that tests
/// see each answer as it was).
pub fn s3_client(endpoint: &str, access_key_id: &str, secret: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(client_config(endpoint, access_key_id, secret).build())
}

/// The configuration builder behind [`s3_client`], for tests that change one thing.
pub fn client_config(endpoint: &str, access_key_id: &str, secret: &str) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access_key_id, secret, None, None, "test"))
        .force_path_style(true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Polls `check` until it returns true or `deadline` passes (no sleeps as synchronisation).
pub async fn eventually(deadline: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every key in `bucket`, in listing order, across all pages.
pub async fn list_keys(client: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut pages = client.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        keys.extend(page.unwrap().contents().iter().filter_map(|o| o.key.clone()));
    }
    keys
}

/// The names of all buckets, sorted (s3s-fs lists them in directory order).
pub async fn bucket_names(client: &aws_sdk_s3::Client) -> Vec<String> {
    let out = client.list_buckets().send().await.unwrap();
    let mut names: Vec<String> = out.buckets().iter().filter_map(|b| b.name.clone()).collect();
    names.sort();
    names
}

/// A lifecycle configuration that expires objects under `logs/` after 7 days: the kind of
/// bucket configuration the gateway refuses by default.
pub fn expiring_lifecycle() -> aws_sdk_s3::types::BucketLifecycleConfiguration {
    use aws_sdk_s3::types::{ExpirationStatus, LifecycleExpiration, LifecycleRule, LifecycleRuleFilter};
    let rule = LifecycleRule::builder()
        .id("expire-logs")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
        .expiration(LifecycleExpiration::builder().days(7).build())
        .build()
        .unwrap();
    aws_sdk_s3::types::BucketLifecycleConfiguration::builder().rules(rule).build().unwrap()
}
