//! The admin API (`/admin/v1/...` on the admin listener), which the `rewind` CLI talks to.
//! Every route needs `Authorization: Bearer <admin token>`. Answers are JSON (the shapes of
//! `rewind_snapshotter::api`); errors are `{"error": "..."}` saying what to do next.
//!
//! | route | answer |
//! |---|---|
//! | `GET status` | [`Status`] |
//! | `GET ls?bucket&prefix&at` | [`Listing`] |
//! | `GET log?bucket&key` | [`LogLine`]s |
//! | `GET diff?bucket&prefix&from&to` | [`DiffReport`] |
//! | `GET object?bucket&key&at` | the bytes, with `x-rewind-size`, `x-rewind-blake3`, `x-rewind-seq` |
//! | `GET snapshots`, `POST snapshots?name&at`, `DELETE snapshots?name` | [`Snapshot`]s |
//! | `POST verify?read_data=F` | [`VerifyReport`] |
//! | `GET holds`, `POST holds?bucket&prefix|key&reason`, `DELETE holds?bucket&prefix|key` | `HoldInfo`s |
//! | `GET gc` | `GcPlan`: what garbage collection would reclaim |
//! | `POST gc` | `GcReport`: one garbage collection pass, run now (409 while one runs) |
//! | `GET gc/progress` | `GcProgress`: how far the pass running has got |
//! | `GET forget?bucket` | `ForgetPlan`: what the retention policy would expire |
//! | `POST forget?bucket` | `ForgetReport`: the policy applied now (409 while a retention pass runs) |
//! | `GET views`, `POST views?bucket&at&ttl`, `DELETE views?id` | `ViewInfo`s: time-travel views (the secret only when made) |
//! | `POST restore` ([`RestoreRequest`] body) | newline-delimited [`RestoreEvent`]s |
//! | `POST undo` ([`UndoRequest`] body) | newline-delimited [`RestoreEvent`]s |
//! | `POST reconcile?bucket&parallel&objects_per_second&bytes_per_second` | newline-delimited [`ReconcileEvent`]s |

use std::collections::HashMap;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use rewind_capture::now_us;
use rewind_config::Secret;
use rewind_snapshotter::At;
use rewind_snapshotter::api::{ApiError, RestoreRequest, UndoRequest};
use rewind_snapshotter::ops::{Compare, HoldScope, Kind, OpError, Operations, ReconcileAsk};
use rewind_snapshotter::verify::ReadData;
use serde::Serialize;
use tokio::sync::mpsc;

/// A response body: whole or streamed.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Largest restore request body.
const MAX_REQUEST_BODY: usize = 64 << 10;

/// The admin API: HTTP in front of the operations on history.
#[derive(Clone)]
pub struct Api {
    ops: Operations,
    token: Secret,
    /// The S3 endpoint clients reach, told to whoever makes a view.
    s3_endpoint: Option<String>,
}

/// An error answer: status and message.
struct Failure(StatusCode, String);

impl From<OpError> for Failure {
    fn from(e: OpError) -> Self {
        let status = match e.kind() {
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Invalid => StatusCode::BAD_REQUEST,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Unavailable => StatusCode::BAD_GATEWAY,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, e.to_string())
    }
}

fn bad(message: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message.into())
}

type Answer = Result<Response<Body>, Failure>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

fn json<T: Serialize>(value: &T) -> Answer {
    let mut body = serde_json::to_vec(value).map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    body.push(b'\n');
    let mut res = Response::new(full(body));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

fn failure(Failure(status, error): Failure) -> Response<Body> {
    let body = serde_json::to_vec(&ApiError { error }).unwrap_or_default();
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Query(HashMap<String, String>);

impl Query {
    fn of(req: &Request<Incoming>) -> Self {
        Self(form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn need(&self, name: &str) -> Result<&str, Failure> {
        self.get(name).ok_or_else(|| bad(format!("missing {name}: pass --{name}")))
    }

    fn at(&self, name: &str) -> Result<At, Failure> {
        match self.get(name) {
            None => Ok(At::TimeUs(now_us())),
            Some(text) => At::parse(text, now_us()).map_err(|e| bad(e.to_string())),
        }
    }
}

impl Api {
    /// The API over `ops`, guarded by `token`.
    pub fn new(ops: Operations, token: Secret) -> Self {
        Self { ops, token, s3_endpoint: None }
    }

    /// Tells the makers of views where the S3 endpoint is.
    pub fn with_s3_endpoint(mut self, endpoint: String) -> Self {
        self.s3_endpoint = Some(endpoint);
        self
    }

    /// Answers one request under `/admin/`.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Err(f) = self.authorize(&req) {
            return failure(f);
        }
        let route = req.uri().path().trim_start_matches("/admin/v1/").to_owned();
        let answer = match (req.method().clone(), route.as_str()) {
            (Method::GET, "status") => self.ops.status().await.map_err(Failure::from).and_then(|s| json(&s)),
            (Method::GET, "ls") => self.ls(Query::of(&req)).await,
            (Method::GET, "log") => self.log(Query::of(&req)).await,
            (Method::GET, "diff") => self.diff(Query::of(&req)).await,
            (Method::GET, "object") => self.object(Query::of(&req)).await,
            (Method::GET | Method::POST | Method::DELETE, "snapshots") => {
                self.snapshots(req.method(), Query::of(&req)).await
            }
            (Method::POST, "verify") => self.verify(Query::of(&req)).await,
            (Method::GET | Method::POST | Method::DELETE, "views") => self.views(req.method(), Query::of(&req)).await,
            (Method::GET | Method::POST | Method::DELETE, "holds") => self.holds(req.method(), Query::of(&req)).await,
            (Method::GET, "gc") => self.ops.gc_plan().await.map_err(Failure::from).and_then(|p| json(&p)),
            (Method::POST, "gc") => self.ops.gc().await.map_err(Failure::from).and_then(|r| json(&r)),
            (Method::GET, "gc/progress") => json(&self.ops.gc_progress()),
            (Method::GET, "forget") => {
                let bucket = Query::of(&req).get("bucket").map(str::to_owned);
                self.ops.forget_plan(bucket).await.map_err(Failure::from).and_then(|p| json(&p))
            }
            (Method::POST, "forget") => {
                let bucket = Query::of(&req).get("bucket").map(str::to_owned);
                self.ops.forget(bucket).await.map_err(Failure::from).and_then(|r| json(&r))
            }
            (Method::POST, "restore") => self.restore(req).await,
            (Method::POST, "undo") => self.undo(req).await,
            (Method::GET, "incidents") => self.incidents(Query::of(&req)).await,
            (Method::POST, "incidents/ack") => self.acknowledge(Query::of(&req)).await,
            (Method::POST, "reconcile") => self.reconcile(Query::of(&req)),
            _ => Err(Failure(
                StatusCode::NOT_FOUND,
                format!(
                    "no admin route {} {}; this gateway speaks /admin/v1 (upgrade the rewind CLI?)",
                    req.method(),
                    req.uri().path()
                ),
            )),
        };
        answer.unwrap_or_else(failure)
    }

    fn authorize(&self, req: &Request<Incoming>) -> Result<(), Failure> {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match given.and_then(|v| v.strip_prefix("Bearer ")) {
            None => Err(Failure(
                StatusCode::UNAUTHORIZED,
                "the admin API needs the admin token: pass --admin-token or set REWIND_ADMIN_TOKEN (a generated one is in <data-dir>/admin-token)".into(),
            )),
            // An empty token never matches, even if one were configured (validate() refuses that).
            Some(t) if !t.trim().is_empty() && same_token(t.trim().as_bytes(), self.token.expose().as_bytes()) => Ok(()),
            Some(_) => Err(Failure(
                StatusCode::FORBIDDEN,
                "wrong admin token: use the gateway's (credentials.admin_token_file, REWIND_ADMIN_TOKEN, or <data-dir>/admin-token)".into(),
            )),
        }
    }

    async fn ls(&self, q: Query) -> Answer {
        let (bucket, prefix) = (q.need("bucket")?.to_owned(), q.get("prefix").unwrap_or("").to_owned());
        json(&self.ops.ls(bucket, prefix, q.at("at")?).await?)
    }

    async fn log(&self, q: Query) -> Answer {
        json(&self.ops.log(q.need("bucket")?.to_owned(), q.need("key")?.to_owned()).await?)
    }

    async fn diff(&self, q: Query) -> Answer {
        let (bucket, prefix) = (q.need("bucket")?.to_owned(), q.get("prefix").unwrap_or("").to_owned());
        let from = At::parse(q.need("from")?, now_us()).map_err(|e| bad(e.to_string()))?;
        json(&self.ops.diff(bucket, prefix, from, q.at("to")?).await?)
    }

    /// One version's bytes, streamed chunk by chunk from the vault.
    async fn object(&self, q: Query) -> Answer {
        let (bucket, key) = (q.need("bucket")?.to_owned(), q.need("key")?.to_owned());
        let entry = self.ops.version(bucket, key, q.at("at")?).await?;
        let stream = self.ops.read(&entry).map(|chunk| chunk.map(Frame::data).map_err(std::io::Error::other));
        let mut res = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.version.size));
        headers.insert("x-rewind-size", HeaderValue::from(entry.version.size));
        headers.insert("x-rewind-seq", HeaderValue::from(entry.seq.0));
        let blake3 = hex::encode(entry.version.blake3);
        headers.insert("x-rewind-blake3", HeaderValue::from_str(&blake3).expect("invariant: hex is a valid header"));
        Ok(res)
    }

    async fn snapshots(&self, method: &Method, q: Query) -> Answer {
        let answer = match (method, q.get("name")) {
            (&Method::POST, Some(name)) => vec![self.ops.create_snapshot(name, &q.at("at")?).await?],
            (&Method::DELETE, Some(name)) => {
                self.ops.delete_snapshot(name).await?;
                Vec::new()
            }
            (&Method::GET, _) => self.ops.snapshots().await?,
            _ => return Err(bad("missing name: pass the snapshot's name")),
        };
        json(&answer)
    }

    async fn views(&self, method: &Method, q: Query) -> Answer {
        match *method {
            Method::POST => {
                let ttl = match q.get("ttl") {
                    None => std::time::Duration::from_secs(24 * 3600),
                    Some(text) => rewind_config::HumanDuration::parse(text).map_err(bad)?.0,
                };
                let mut made = self.ops.view_create(q.need("bucket")?.to_owned(), q.at("at")?, ttl).await?;
                made.endpoint.clone_from(&self.s3_endpoint);
                json(&vec![made])
            }
            Method::DELETE => {
                self.ops.view_rm(q.need("id")?).await?;
                json(&Vec::<rewind_snapshotter::api::ViewInfo>::new())
            }
            _ => json(&self.ops.views(false).await?),
        }
    }

    async fn holds(&self, method: &Method, q: Query) -> Answer {
        if method == Method::GET {
            return json(&self.ops.holds().await?);
        }
        let bucket = q.need("bucket")?;
        let scope = match (q.get("key"), q.get("prefix")) {
            (Some(_), Some(_)) => return Err(bad("pass a key or a prefix, not both")),
            (Some(key), None) => HoldScope::Key(key.to_owned()),
            (None, prefix) => HoldScope::Prefix(prefix.unwrap_or("").to_owned()),
        };
        if method == Method::POST {
            self.ops.hold_add(bucket, &scope, q.get("reason").unwrap_or("")).await?;
        } else {
            self.ops.hold_rm(bucket, &scope).await?;
        }
        json(&self.ops.holds().await?)
    }

    async fn verify(&self, q: Query) -> Answer {
        let fraction = match q.get("read_data") {
            None => 0.0,
            Some(f) => f
                .parse::<f64>()
                .ok()
                .filter(|f| (0.0..=1.0).contains(f))
                .ok_or_else(|| bad(format!("read_data {f:?} must be a fraction from 0 to 1")))?,
        };
        json(&self.ops.verify(ReadData::share(fraction), Compare::Segments).await?)
    }

    async fn restore(&self, req: Request<Incoming>) -> Answer {
        let ask: RestoreRequest = json_body(req, "restore").await?;
        Ok(ndjson(self.ops.restore(ask).await?))
    }

    async fn incidents(&self, q: Query) -> Answer {
        match q.get("id") {
            Some(id) => json(&self.ops.incident(id).await?),
            None => json(&self.ops.incidents().await?),
        }
    }

    async fn acknowledge(&self, q: Query) -> Answer {
        json(&self.ops.acknowledge_incident(q.need("id")?).await?)
    }

    async fn undo(&self, req: Request<Incoming>) -> Answer {
        let ask: UndoRequest = json_body(req, "undo").await?;
        Ok(ndjson(self.ops.undo(ask).await?))
    }

    fn reconcile(&self, q: Query) -> Answer {
        let number = |name: &str| -> Result<Option<u64>, Failure> {
            q.get(name)
                .map(|v| v.parse::<u64>().map_err(|_| bad(format!("{name} {v:?} must be a whole number"))))
                .transpose()
        };
        let ask = ReconcileAsk {
            parallel: number("parallel")?,
            objects_per_second: number("objects_per_second")?,
            bytes_per_second: number("bytes_per_second")?,
        };
        Ok(ndjson(self.ops.reconcile(q.need("bucket")?.to_owned(), ask)?))
    }
}

/// The JSON body of a `what` request.
async fn json_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>, what: &str) -> Result<T, Failure> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|e| bad(format!("cannot read the {what} request: {e}")))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| bad(format!("malformed {what} request: {e}")))
}

/// A streamed answer of newline-delimited JSON events.
fn ndjson<T: Serialize + Send + 'static>(rx: mpsc::Receiver<T>) -> Response<Body> {
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::io::Error>(Frame::data(Bytes::from(line))), rx))
    });
    let mut res = Response::new(BodyExt::boxed_unsync(StreamBody::new(lines)));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    res
}
