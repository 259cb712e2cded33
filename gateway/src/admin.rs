//! The operations listener: `/metrics` for Prometheus, `/health` (the process serves),
//! `/ready` (the upstream answers, so S3 requests can succeed), and the admin API under
//! `/admin/` (see `api.rs`).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use crate::api::{Api, Body, full};
use crate::metrics::Metrics;

/// Longest wait for the upstream during a readiness probe; probes run every few seconds.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The admin listener's service.
#[derive(Clone)]
pub struct Admin {
    metrics: Metrics,
    /// Probed by `/ready`; none in an offline session.
    upstream: Option<aws_sdk_s3::Client>,
    vault: Option<std::sync::Arc<rewind_vault::Vault>>,
    data_dir: std::path::PathBuf,
    api: Option<Api>,
    /// Host names accepted besides IP addresses and `localhost`.
    hosts: std::sync::Arc<Vec<String>>,
}

impl Admin {
    /// Serves `metrics` (mirroring `vault`'s counters and `data_dir`'s free space), and
    /// probes `upstream` for readiness.
    pub fn new(
        metrics: Metrics,
        upstream: Option<aws_sdk_s3::Client>,
        vault: Option<std::sync::Arc<rewind_vault::Vault>>,
        data_dir: std::path::PathBuf,
    ) -> Self {
        Self { metrics, upstream, vault, data_dir, api: None, hosts: std::sync::Arc::default() }
    }

    /// Also serves the admin API.
    pub fn with_api(mut self, api: Api) -> Self {
        self.api = Some(api);
        self
    }

    /// Also accepts requests naming these hosts (`server.admin_hosts`).
    pub fn with_hosts(mut self, hosts: Vec<String>) -> Self {
        self.hosts = std::sync::Arc::new(hosts);
        self
    }

    /// Whether the request names this listener: an IP address, `localhost`, or a configured
    /// name. A web page the operator visits can point a name it controls at 127.0.0.1 and
    /// read what that name answers (DNS rebinding, review F21); such a name is refused.
    fn host_allowed(&self, req: &Request<Incoming>) -> bool {
        let host = req.uri().host().map(str::to_owned).or_else(|| {
            let h = req.headers().get(header::HOST)?.to_str().ok()?;
            Some(h.parse::<http::uri::Authority>().ok()?.host().to_owned())
        });
        let Some(host) = host else { return true }; // HTTP/1.0 without Host: nothing to rebind
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<std::net::IpAddr>().is_ok()
            || bare.eq_ignore_ascii_case("localhost")
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(bare))
    }

    async fn route(self, req: Request<Incoming>) -> Response<Body> {
        if !self.host_allowed(&req) {
            return text(
                StatusCode::MISDIRECTED_REQUEST,
                "this listener answers to IP addresses, localhost and server.admin_hosts only\n",
            );
        }
        if req.uri().path().starts_with("/admin/") {
            return match &self.api {
                Some(api) => api.handle(req).await,
                None => text(StatusCode::NOT_FOUND, "this listener has no admin API\n"),
            };
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        }
        match req.uri().path() {
            "/metrics" => {
                self.metrics.engine.sample_disk(&self.data_dir);
                if let Some(vault) = &self.vault {
                    self.metrics.engine.mirror_vault(vault.stats());
                    self.metrics.engine.mirror_budget(vault.budget());
                    self.metrics
                        .engine
                        .vault_buffered_bytes
                        .set(i64::try_from(vault.buffered_bytes()).unwrap_or(i64::MAX));
                }
                let mut res = Response::new(full(self.metrics.render()));
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; version=0.0.4"));
                res
            }
            "/health" => text(StatusCode::OK, "ok\n"),
            "/ready" => {
                let Some(upstream) = &self.upstream else {
                    return text(StatusCode::SERVICE_UNAVAILABLE, "not ready: an offline session serves no S3\n");
                };
                let probe =
                    tokio::time::timeout(READY_PROBE_TIMEOUT, upstream.list_buckets().max_buckets(1).send()).await;
                let ready = matches!(probe, Ok(Ok(_)));
                self.metrics.upstream_up.set(i64::from(ready));
                if ready {
                    text(StatusCode::OK, "ready\n")
                } else {
                    let why = match probe {
                        Err(_) => "upstream did not answer in time".to_owned(),
                        Ok(Err(e)) => rewind_capture::describe(&e),
                        Ok(Ok(_)) => unreachable!("handled above"),
                    };
                    tracing::warn!(reason = %why, "readiness probe failed");
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: the upstream S3 endpoint does not answer; see the gateway log\n",
                    )
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found; try /metrics, /health, /ready or /admin/v1/status\n"),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut res = Response::new(full(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res
}

impl hyper::service::Service<Request<Incoming>> for Admin {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.route(req).await) })
    }
}
