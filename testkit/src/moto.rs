//! moto's S3 server as an upstream: the broadest S3 semantics available offline
//! (versioning, tagging, conditional requests). `.ci/run` installs it from PyPI.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rewind_config::Secret;
use rewind_gateway::upstream::UpstreamTarget;

/// Time moto may take to start answering (it imports a lot of Python on a cold start).
const MOTO_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A moto server on 127.0.0.1, stopped when dropped.
pub struct Moto {
    child: Child,
    /// Endpoint and credentials (moto accepts any pair; these are fresh per server).
    pub target: UpstreamTarget,
}

impl Moto {
    /// Starts `moto_server` on a free loopback port and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// Starts `moto_server` with extra environment settings (e.g. `S3_UPLOAD_PART_MIN_SIZE`).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run moto_server ({e}); install it with: pip install 'moto[server]' (.ci/run does)")
            });
        let (id, secret) = crate::key_pair();
        let moto = Self {
            child,
            target: UpstreamTarget {
                endpoint: format!("http://127.0.0.1:{port}"),
                access_key_id: id,
                secret: Secret::new(secret),
            },
        };
        let up = crate::eventually(MOTO_START_TIMEOUT, async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        assert!(up, "moto_server did not start listening on port {port}");
        moto
    }

    /// A client that talks to moto directly, bypassing the gateway.
    pub fn client(&self) -> aws_sdk_s3::Client {
        crate::s3_client(&self.target.endpoint, &self.target.access_key_id, self.target.secret.expose())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
