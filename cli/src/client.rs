//! The admin API client: JSON requests and streamed answers, with errors that say what to
//! do next.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rewind_snapshotter::api::ApiError;
use serde::de::DeserializeOwned;

/// What went wrong, for the operator.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Nothing answers at the admin URL.
    #[error(
        "no Rewind gateway answers at {url} ({detail}): start it (rewind-gateway), pass --admin-url, or work offline on a stopped gateway's data with --data-dir DIR"
    )]
    NotRunning {
        /// The URL tried.
        url: String,
        /// What the connection attempt said.
        detail: String,
    },
    /// The gateway answered with an error.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The gateway's message.
        message: String,
    },
    /// Reading or writing a local file or stream failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// An operation run in this process failed.
    #[error(transparent)]
    Op(#[from] rewind_snapshotter::ops::OpError),
    /// The data directory could not be opened; a journal in use by a running gateway says
    /// so, and what to do.
    #[error("{}", open_message(dir, source))]
    Open {
        /// The data directory.
        dir: std::path::PathBuf,
        /// Why.
        #[source]
        source: rewind_capture::open::OpenError,
    },
    /// Rebuilding from the vault failed.
    #[error(transparent)]
    Rebuild(#[from] rewind_capture::rebuild::RebuildError),
    /// Anything else, said plainly.
    #[error("{0}")]
    Other(String),
}

fn open_message(dir: &std::path::Path, e: &rewind_capture::open::OpenError) -> String {
    match e {
        // The message names the journal and what to do (stop the gateway or use its API).
        rewind_capture::open::OpenError::InUse { .. } => e.to_string(),
        _ => format!("cannot open {}: {e}", dir.display()),
    }
}

impl CliError {
    /// An error from a message.
    pub fn other(message: impl Into<String>) -> Self {
        Self::Other(message.into())
    }
}

/// A connection to one gateway's admin API.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

/// `path?name=value&...`, URL-encoded, skipping absent values.
pub fn with_query(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if let Some(v) = value {
            q.append_pair(name, v);
        }
    }
    let q = q.finish();
    if q.is_empty() { path.to_owned() } else { format!("{path}?{q}") }
}

impl Client {
    /// A client of the admin API at `base` (`http://host:port`), sending `token`.
    pub fn new(base: &str, token: String) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request to `/admin/v1/<path>`; returns the response if it succeeded.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<http::Response<Incoming>, CliError> {
        let url = format!("{}/admin/v1/{path}", self.base);
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| CliError::other(format!("bad admin URL {url}: {e}")))?;
        let res = self.http.request(req).await.map_err(|e| CliError::NotRunning {
            url: self.base.clone(),
            detail: std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string),
        })?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        let bytes = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(e) => e.error,
            Err(_) if status == StatusCode::NOT_FOUND => format!(
                "{} does not serve the admin API (is --admin-url the gateway's --admin-listen address?)",
                self.base
            ),
            Err(_) => format!("the gateway answered {status}: {}", String::from_utf8_lossy(&bytes).trim()),
        };
        Err(CliError::Api { status, message })
    }

    /// Sends a request and decodes its JSON answer.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, CliError> {
        let res = self.send(method, path, body).await?;
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| CliError::other(format!("the gateway's answer broke off: {e}")))?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(|e| {
            CliError::other(format!(
                "unexpected answer from the gateway ({e}); are the CLI and gateway the same version?"
            ))
        })
    }
}

/// Reads newline-delimited JSON values from a streamed body, one at a time.
pub struct Lines {
    body: Incoming,
    buf: Vec<u8>,
}

impl Lines {
    /// Lines of `res`'s body.
    pub fn of(res: http::Response<Incoming>) -> Self {
        Self { body: res.into_body(), buf: Vec::new() }
    }

    /// The next value; `None` at the end.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CliError> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| CliError::other(format!("unexpected progress line from the gateway: {e}")));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(CliError::other(format!("the connection to the gateway broke: {e}"))),
            }
        }
    }
}
