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
//! | `POST restore` ([`RestoreRequest`] body) | newline-delimited [`RestoreEvent`]s |
//! | `POST reconcile?bucket&parallel&objects_per_second&bytes_per_second` | newline-delimited [`ReconcileEvent`]s |

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use rewind_config::Secret;
use rewind_journal::Journal;
use rewind_snapshotter::api::{
    ApiError, DiffReport, Listing, LogLine, ReconcileEvent, RestoreEvent, RestoreRequest, VerifyReport,
};
use rewind_snapshotter::plan::Scope;
use rewind_snapshotter::verify::ReadData;
use rewind_snapshotter::{At, History, HistoryError};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::capture::Capture;
use crate::capture::open::Stores;

use crate::metrics::Metrics;
use crate::now_us;

/// A response body: whole or streamed.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Largest restore request body.
const MAX_REQUEST_BODY: usize = 64 << 10;
/// Default objects restored at once.
const DEFAULT_PARALLEL: usize = 8;
/// When the first scheduled verify runs after start.
const FIRST_VERIFY_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
/// Most objects restored at once.
const MAX_PARALLEL: usize = 64;

/// The admin API's state.
#[derive(Clone)]
pub struct Api {
    /// The journal and the vault.
    history: Arc<Stores>,
    /// The write side: `None` when serving an offline, read-only inspection.
    writer: Option<Writer>,
    token: Secret,
    metrics: Metrics,
}

/// What restores and reconciles need besides.
#[derive(Clone)]
struct Writer {
    capture: Arc<Capture>,
    reconciler: Arc<crate::reconcile::Reconciler>,
}

/// An error answer: status and message.
struct Failure(StatusCode, String);

impl From<HistoryError> for Failure {
    fn from(e: HistoryError) -> Self {
        let status = match e {
            HistoryError::Journal(_) | HistoryError::Vault(_) => StatusCode::INTERNAL_SERVER_ERROR,
            HistoryError::UnknownSnapshot(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
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

/// Runs blocking journal work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Failure> + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// Refuses a bucket the journal knows nothing of, naming those it knows.
fn known_bucket(journal: &Journal, bucket: &str) -> Result<(), Failure> {
    let buckets = journal.buckets().map_err(HistoryError::from)?;
    if buckets.iter().any(|b| b == bucket) {
        return Ok(());
    }
    let known = if buckets.is_empty() { "none yet".to_owned() } else { buckets.join(", ") };
    Err(Failure(
        StatusCode::NOT_FOUND,
        format!(
            "bucket {bucket:?} has no history: the gateway journaled no change to it (buckets with history: {known})"
        ),
    ))
}

impl Api {
    /// The API over `capture`'s journal and vault, guarded by `token`.
    pub fn new(
        history: Arc<Stores>,
        capture: Arc<Capture>,
        reconciler: Arc<crate::reconcile::Reconciler>,
        token: Secret,
        metrics: Metrics,
    ) -> Self {
        Self { history, writer: Some(Writer { capture, reconciler }), token, metrics }
    }

    /// The read-only API of an offline inspection: history, verify; no restore or reconcile.
    pub fn read_only(history: Arc<Stores>, token: Secret, metrics: Metrics) -> Self {
        Self { history, writer: None, token, metrics }
    }

    /// The write side, or the answer that there is none offline.
    fn writer(&self) -> Result<&Writer, Failure> {
        self.writer.as_ref().ok_or_else(|| {
            Failure(
                StatusCode::CONFLICT,
                "this needs a gateway: it is not available in a read-only offline session".into(),
            )
        })
    }

    /// Answers one request under `/admin/`.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Err(f) = self.authorize(&req) {
            return failure(f);
        }
        let route = req.uri().path().trim_start_matches("/admin/v1/").to_owned();
        let answer = match (req.method().clone(), route.as_str()) {
            (Method::GET, "status") => self.status().await,
            (Method::GET, "ls") => self.ls(Query::of(&req)).await,
            (Method::GET, "log") => self.log(Query::of(&req)).await,
            (Method::GET, "diff") => self.diff(Query::of(&req)).await,
            (Method::GET, "object") => self.object(Query::of(&req)).await,
            (Method::GET | Method::POST | Method::DELETE, "snapshots") => {
                self.snapshots(req.method(), Query::of(&req)).await
            }
            (Method::POST, "verify") => self.verify(Query::of(&req)).await,
            (Method::POST, "restore") => self.restore(req).await,
            (Method::POST, "reconcile") => self.reconcile(Query::of(&req)).await,
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

    fn journal(&self) -> Arc<Journal> {
        self.history.journal.clone()
    }

    async fn status(&self) -> Answer {
        let (journal, vault_location) = (self.journal(), self.history.vault_location.clone());
        let status = blocking(move || Ok(rewind_snapshotter::status(&journal, vault_location)?)).await?;
        json(&status)
    }

    async fn ls(&self, q: Query) -> Answer {
        let (bucket, prefix, at) =
            (q.need("bucket")?.to_owned(), q.get("prefix").unwrap_or("").to_owned(), q.at("at")?);
        let journal = self.journal();
        let listing = blocking(move || {
            known_bucket(&journal, &bucket)?;
            let history = History::new(&journal);
            let seq = history.resolve(&at)?;
            let objects = history.state_at(&bucket, &prefix, seq)?.iter().map(Into::into).collect();
            Ok(Listing { bucket, prefix, seq: seq.0, objects })
        })
        .await?;
        json(&listing)
    }

    async fn log(&self, q: Query) -> Answer {
        let (bucket, key) = (q.need("bucket")?.to_owned(), q.need("key")?.to_owned());
        let journal = self.journal();
        let lines = blocking(move || {
            known_bucket(&journal, &bucket)?;
            let log = History::new(&journal).log(&bucket, &key)?;
            if log.is_empty() {
                return Err(Failure(
                    StatusCode::NOT_FOUND,
                    format!(
                        "{key:?} has no history in bucket {bucket:?}; `rewind ls --bucket {bucket}` lists its keys"
                    ),
                ));
            }
            Ok(log.iter().map(LogLine::from).collect::<Vec<_>>())
        })
        .await?;
        json(&lines)
    }

    async fn diff(&self, q: Query) -> Answer {
        let (bucket, prefix) = (q.need("bucket")?.to_owned(), q.get("prefix").unwrap_or("").to_owned());
        let (from, to) = (At::parse(q.need("from")?, now_us()).map_err(|e| bad(e.to_string()))?, q.at("to")?);
        let journal = self.journal();
        let report = blocking(move || {
            known_bucket(&journal, &bucket)?;
            let history = History::new(&journal);
            let (from, to) = (history.resolve(&from)?, history.resolve(&to)?);
            Ok(DiffReport::new(from.0, to.0, &history.diff(&bucket, &prefix, from, to)?))
        })
        .await?;
        json(&report)
    }

    /// One version's bytes, streamed chunk by chunk from the vault.
    async fn object(&self, q: Query) -> Answer {
        let (bucket, key, at) = (q.need("bucket")?.to_owned(), q.need("key")?.to_owned(), q.at("at")?);
        let journal = self.journal();
        let entry = blocking(move || {
            known_bucket(&journal, &bucket)?;
            let history = History::new(&journal);
            let seq = history.resolve(&at)?;
            history.version_at(&bucket, &key, seq)?.ok_or_else(|| {
                Failure(
                    StatusCode::NOT_FOUND,
                    format!("{key:?} did not exist in {bucket:?} at {at}; `rewind log --bucket {bucket} --key {key}` shows when it did"),
                )
            })
        })
        .await?;
        let vault = self.history.vault.clone();
        let chunks = entry.version.chunks.clone();
        let stream = futures::stream::iter(chunks).then(move |id| {
            let vault = vault.clone();
            async move { vault.read_chunk(&id).await.map(Frame::data).map_err(std::io::Error::other) }
        });
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
        let journal = self.journal();
        let name = q.get("name").map(str::to_owned);
        let at = q.at("at")?;
        let history = History::new(&journal);
        let answer = match (method, name) {
            (&Method::POST, Some(name)) => vec![history.create_snapshot(&name, &at).await?],
            (&Method::DELETE, Some(name)) => {
                history.delete_snapshot(&name).await?;
                Vec::new()
            }
            (&Method::GET, _) => history.snapshots()?,
            _ => return Err(bad("missing name: pass the snapshot's name")),
        };
        json(&answer)
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
        let report = run_verify(&self.history, &self.metrics, ReadData::share(fraction), Compare::Segments).await?;
        json(&report)
    }

    async fn restore(&self, req: Request<Incoming>) -> Answer {
        let body = http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BODY)
            .collect()
            .await
            .map_err(|e| bad(format!("cannot read the restore request: {e}")))?
            .to_bytes();
        let ask: RestoreRequest =
            serde_json::from_slice(&body).map_err(|e| bad(format!("malformed restore request: {e}")))?;
        let to_bucket = ask.to_bucket.clone().unwrap_or_else(|| ask.bucket.clone());
        let writer = self.writer()?;
        if !writer.capture.protects(&to_bucket) {
            return Err(bad(format!(
                "bucket {to_bucket:?} is not protected by this gateway, so a restore into it could not be journaled or undone: add it to protection.buckets, or restore with --to-dir"
            )));
        }
        let at = At::parse(&ask.at, now_us()).map_err(|e| bad(e.to_string()))?;
        let journal = self.journal();
        known_bucket(&journal, &ask.bucket)?;
        // The plan compares with what the destination holds now, not what the journal
        // believes it holds (objects deleted behind the gateway's back, review F6).
        let under = ask.key.clone().unwrap_or_else(|| ask.prefix.clone());
        let listed =
            crate::restore::list_destination(&writer.capture, &to_bucket, &under).await.map_err(|e| match e {
                crate::restore::ListError::NoSuchBucket(_) => Failure(StatusCode::NOT_FOUND, e.to_string()),
                crate::restore::ListError::Upstream(_) => {
                    Failure(StatusCode::BAD_GATEWAY, format!("cannot list the destination: {e}"))
                }
            })?;
        let listed = Arc::new(listed);
        let (plan, before_seq) = {
            let (ask, to_bucket, listed) = (ask.clone(), to_bucket.clone(), listed.clone());
            blocking(move || {
                let history = History::new(&journal);
                let seq = history.resolve(&at)?;
                let before = journal.head().map_err(HistoryError::from)?.seq;
                let scope =
                    Scope { bucket: &ask.bucket, prefix: &ask.prefix, key: ask.key.as_deref(), to_bucket: &to_bucket };
                Ok((history.plan_against(&scope, seq, ask.mode, &listed)?, before))
            })
            .await?
        };
        let (tx, rx) = mpsc::channel::<RestoreEvent>(64);
        let mut plan = plan;
        plan.summary.before_seq = before_seq.0;
        let summary = RestoreEvent::Plan(plan.summary.clone());
        tx.send(summary).await.map_err(|_| bad("the caller went away"))?;
        if !ask.dry_run {
            let parallel = if ask.parallel == 0 { DEFAULT_PARALLEL } else { ask.parallel.min(MAX_PARALLEL) };
            let (capture, metrics) = (writer.capture.clone(), self.metrics.clone());
            tokio::spawn(async move {
                let (inner_tx, mut inner_rx) = mpsc::channel::<RestoreEvent>(64);
                let runner = tokio::spawn(crate::restore::run(capture, plan, listed, parallel, before_seq.0, inner_tx));
                while let Some(event) = inner_rx.recv().await {
                    if let RestoreEvent::Done { written, deleted, failed, .. } = &event {
                        metrics.restored_objects.with_label_values(&["written"]).inc_by(*written);
                        metrics.restored_objects.with_label_values(&["deleted"]).inc_by(*deleted);
                        metrics.restored_objects.with_label_values(&["failed"]).inc_by(*failed);
                    }
                    if tx.send(event).await.is_err() {
                        break; // the caller went away: dropping inner_rx stops the restore
                    }
                }
                drop(inner_rx);
                let _ = runner.await;
            });
        }
        Ok(ndjson(rx))
    }
}

impl Api {
    async fn reconcile(&self, q: Query) -> Answer {
        let bucket = q.need("bucket")?.to_owned();
        let writer = self.writer()?;
        let mut limits = writer.reconciler.limits();
        let number = |name: &str| -> Result<Option<u64>, Failure> {
            q.get(name)
                .map(|v| v.parse::<u64>().map_err(|_| bad(format!("{name} {v:?} must be a whole number"))))
                .transpose()
        };
        if let Some(n) = number("parallel")? {
            limits.parallel = usize::try_from(n).unwrap_or(usize::MAX).clamp(1, MAX_PARALLEL);
        }
        if let Some(n) = number("objects_per_second")? {
            limits.objects_per_second = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = number("bytes_per_second")? {
            limits.bytes_per_second = n;
        }
        if !writer.capture.protects(&bucket) {
            return Err(bad(crate::reconcile::ReconcileError::NotProtected(bucket).to_string()));
        }
        let (tx, rx) = mpsc::channel::<ReconcileEvent>(64);
        let reconciler = writer.reconciler.clone();
        tokio::spawn(async move {
            if let Err(e) = reconciler.run(&bucket, limits, Some(tx.clone())).await {
                let _gone = tx.send(ReconcileEvent::Stopped { error: e.to_string() }).await;
            }
        });
        Ok(ndjson(rx))
    }
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

/// How much of the vault's copy of the journal a verify compares with the local one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// The start-up check: nothing past the local head, the last shipped record unchanged.
    Head,
    /// Every shipped segment and checkpoint, record by record.
    Segments,
}

/// Runs a verify, recording its outcome in the metrics.
async fn run_verify(
    history: &Arc<Stores>,
    metrics: &Metrics,
    read: ReadData,
    compare: Compare,
) -> Result<VerifyReport, Failure> {
    let result = verify_all(history, read, compare).await;
    match &result {
        Ok(report) if report.ok() => {
            metrics.verify_runs.with_label_values(&["ok"]).inc();
            metrics.verify_last_success.set(crate::now_seconds());
        }
        Ok(report) => {
            metrics.verify_runs.with_label_values(&["damaged"]).inc();
            tracing::error!(
                journal_problems = report.journal_problems.len(),
                damaged_versions = report.damaged.len(),
                "verify found damage: run `rewind verify` for the list"
            );
        }
        Err(e) => {
            metrics.verify_runs.with_label_values(&["error"]).inc();
            tracing::warn!(error = %e.1, "verify could not run");
        }
    }
    result
}

/// The journal and chunks (see `rewind_snapshotter::verify`), then the journal against the
/// vault's copy of it.
async fn verify_all(history: &Arc<Stores>, read: ReadData, compare: Compare) -> Result<VerifyReport, Failure> {
    let mut report = rewind_snapshotter::verify::verify(&history.journal, &history.vault, read).await?;
    let (journal, backend) = (&history.journal, history.backend.as_ref());
    let vault_failure = |e: crate::ship::ShipError| {
        Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot compare the journal with the vault: {e}"))
    };
    match compare {
        Compare::Head => match crate::ship::check_against_vault(journal, backend).await {
            Ok(()) => {}
            Err(crate::ship::ShipError::Diverged(d)) => report.journal_problems.push(d.to_string()),
            Err(e) => return Err(vault_failure(e)),
        },
        Compare::Segments => {
            let found = crate::ship::compare_with_vault(journal, backend).await.map_err(vault_failure)?;
            report.segments += found.segments;
            report.checkpoints += found.checkpoints;
            report.journal_problems.extend(found.problems);
        }
    }
    Ok(report)
}

/// Verifies every `every`, until `stop`: the hash chain, every chunk present, the journal
/// against the vault's newest checkpoint, and a rotating share of the chunks read back,
/// so that damage in the vault's data is found within `read_cycle` (review F22).
pub async fn verify_on_schedule(
    history: Arc<Stores>,
    metrics: Metrics,
    every: std::time::Duration,
    read_cycle: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    // The first run soon after start, so the metric is set on a fresh gateway.
    let mut wait = every.min(FIRST_VERIFY_AFTER);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let read = ReadData::rotating(crate::now_us(), every, read_cycle);
        if let Ok(report) = run_verify(&history, &metrics, read, Compare::Head).await {
            metrics.verify_chunks_read.inc_by(report.chunks_read);
            if read.completes_cycle() && report.ok() {
                metrics.verify_read_cycle_complete.set(crate::now_seconds());
            }
        }
        wait = every;
    }
}
