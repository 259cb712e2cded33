//! The embedded upstream: a local directory served as S3 (s3s-fs, made faithful to S3 where
//! the gateway relies on it, `fs.rs`) on a loopback port, the default when no upstream is
//! configured. It shares with the gateway's S3 front what both need to answer like S3: the
//! accept loop with its connection limits (`server.rs`) and the checks of upload bodies
//! against their declared digests (`body.rs`). The front's own request checks that need
//! no server state live here too, below it: SigV2 verification (`sigv2.rs`) and the query
//! string it reads (`query.rs`); so does the thread that writes the gateway's log lines in
//! batches (`log_lines.rs`).

pub mod body;
pub mod fs;
pub mod log_lines;
pub mod query;
pub mod server;
pub mod sigv2;

use std::convert::Infallible;
use std::path::Path;
use std::time::Duration;

use hyper::body::Incoming;
use rewind_capture::upstream::UpstreamTarget;
use rewind_config::random_key_pair;
use tokio_util::sync::CancellationToken;

use crate::server::ConnLimits;

/// Where the upstream of `config` is: the configured endpoint, or the embedded upstream
/// started on `<data-dir>/upstream` (serving until `shutdown`, as a task of `tracker`).
pub async fn upstream_target(
    config: &rewind_config::Config,
    shutdown: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> std::io::Result<UpstreamTarget> {
    let u = &config.upstream;
    match &u.endpoint {
        Some(endpoint) => Ok(UpstreamTarget {
            endpoint: endpoint.clone(),
            access_key_id: u.access_key_id.clone().expect("invariant: validate() requires upstream keys"),
            secret: u.secret_access_key.clone().expect("invariant: validate() requires upstream keys"),
        }),
        None => {
            let root = config.server.data_dir.join("upstream");
            Ok(EmbeddedUpstream::start(&root, shutdown, tracker).await?.target)
        }
    }
}

/// The embedded upstream: a local directory served as S3 on a loopback port that only this
/// process knows the credentials for. It makes `rewind-gateway` alone a working endpoint.
pub struct EmbeddedUpstream {
    /// How to reach it.
    pub target: UpstreamTarget,
}

/// Connections the embedded upstream serves at once; the gateway's own pool is the only client.
const EMBEDDED_MAX_CONNECTIONS: usize = 256;

impl EmbeddedUpstream {
    /// Serves `root` (created if missing) until `shutdown` is cancelled.
    pub async fn start(
        root: &Path,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> std::io::Result<Self> {
        Self::start_answering_after(root, Duration::ZERO, shutdown, tracker).await
    }

    /// [`EmbeddedUpstream::start`], holding every answer back by `delay`: a loopback
    /// upstream with a remote one's latency, for benches and tests.
    pub async fn start_answering_after(
        root: &Path,
        delay: Duration,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let fs = crate::fs::EmbeddedFs::new(root)?;
        let (access_key_id, secret) = random_key_pair();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key_id.as_str(), secret.expose()));
        builder.set_access(EmbeddedPolicy);
        let service = builder.build();
        let listener = server::bind("127.0.0.1:0", "(embedded upstream)").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let limits = ConnLimits {
            max_connections: EMBEDDED_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        };
        tracker.spawn(server::serve(
            "embedded-upstream",
            listener,
            S3sService { service, delay },
            limits,
            shutdown,
            None,
        ));
        Ok(Self { target: UpstreamTarget { endpoint, access_key_id, secret } })
    }
}

/// s3s-fs stores a PutObject's Content-Encoding verbatim, including the `aws-chunked`
/// marker aws-sdk-s3 adds when it frames a streamed body; real S3 strips it. Without this,
/// objects in the embedded upstream would come back with `Content-Encoding: aws-chunked`.
struct EmbeddedPolicy;

#[async_trait::async_trait]
impl s3s::access::S3Access for EmbeddedPolicy {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        match cx.credentials() {
            Some(_) => Ok(()),
            None => Err(s3s::s3_error!(AccessDenied, "Signature is required")),
        }
    }

    async fn put_object(&self, req: &mut s3s::S3Request<s3s::dto::PutObjectInput>) -> s3s::S3Result<()> {
        req.input.content_encoding = crate::body::strip_aws_chunked(req.input.content_encoding.take());
        Ok(())
    }
}

/// Adapts an s3s service (whose errors are `HttpError`) to the accept loop's `Infallible`,
/// answering each request no sooner than `delay` after it arrived.
#[derive(Clone)]
struct S3sService {
    service: s3s::service::S3Service,
    delay: Duration,
}

impl hyper::service::Service<http::Request<Incoming>> for S3sService {
    type Response = s3s::HttpResponse;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let (service, delay) = (self.service.clone(), self.delay);
        Box::pin(async move {
            let answer_at = tokio::time::Instant::now() + delay;
            let res = service.call(req.map(s3s::Body::from)).await;
            if !delay.is_zero() {
                tokio::time::sleep_until(answer_at).await;
            }
            Ok(res.unwrap_or_else(|_| {
                let mut res = http::Response::new(s3s::Body::empty());
                *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                res
            }))
        })
    }
}
