//! Where a command runs: a running gateway's admin API, or, with `--data-dir`, the
//! operations on history opened in this process on a stopped gateway's data, with no
//! listener. Both give the same answers (`rewind_snapshotter::api`), so commands do not
//! know which they talk to.
//!
//! Offline, a command that only reads opens the data read-only (nothing recovered, shipped
//! or created: looking must not change what is looked at, review F16). One that writes
//! opens it as a gateway would: interrupted mutations are recovered first, and the journal
//! is shipped to the vault before the command ends. Only restores into a bucket and
//! reconciles reach the upstream (the embedded one is started for them when none is
//! configured).

use rewind_capture::tripwire::Incident;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::Method;
use http_body_util::BodyExt;
use rewind_capture::lean::LeanClient;
use rewind_capture::open::{self, Purpose};
use rewind_capture::{Metrics, ship};
use rewind_config::Config;
use rewind_snapshotter::At;
use rewind_snapshotter::api::{
    DiffReport, ForgetPlan, ForgetReport, GcPlan, GcProgress, GcReport, HoldInfo, Listing, LogLine, ReconcileEvent,
    RestoreEvent, RestoreRequest, Snapshot, Status, UndoRequest, VerifyReport, ViewInfo,
};
use rewind_snapshotter::ops::{Compare, Engine, HoldScope, Operations, ReconcileAsk};
use rewind_snapshotter::verify::ReadData;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::HoldTarget;
use crate::client::{CliError, Client, Lines, with_query};

/// What an offline session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read history only: the data opened read-only.
    Read,
    /// Change history (snapshots, `init`): the journal opened for writing, no upstream.
    Write,
    /// Restore into a bucket or reconcile: also the capture engine and the upstream.
    Upstream,
}

/// Where commands go.
pub enum Target {
    /// A running gateway's admin API.
    Remote(Client),
    /// The operations, in this process.
    Local(Local),
}

/// Operations opened in this process on a data directory.
pub struct Local {
    ops: Operations,
    access: Access,
    /// The S3 endpoint the configuration's gateway listens on, for the makers of views.
    s3_endpoint: String,
    /// Restores and reconciles.
    work: TaskTracker,
    /// The embedded upstream, when one was started.
    servers: TaskTracker,
    stop: CancellationToken,
}

/// A version's bytes, with the size and BLAKE3 the journal has for them.
pub struct ObjectBytes {
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3, hex.
    pub blake3: String,
    /// The bytes, in pieces.
    pub chunks: BoxStream<'static, Result<Bytes, CliError>>,
}

/// A stream of progress events from a restore or reconcile.
pub enum Events<T> {
    /// Newline-delimited JSON from the admin API.
    Remote(Lines),
    /// Events from a task of this process.
    Local(mpsc::Receiver<T>),
}

impl<T: DeserializeOwned> Events<T> {
    /// The next event; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<T>, CliError> {
        match self {
            Self::Remote(lines) => lines.next().await,
            Self::Local(rx) => Ok(rx.recv().await),
        }
    }
}

/// An instant as the command line gives it (default: now).
fn at(text: Option<&str>) -> Result<At, CliError> {
    let now = rewind_capture::now_us();
    match text {
        None => Ok(At::TimeUs(now)),
        Some(t) => At::parse(t, now).map_err(|e| CliError::other(e.to_string())),
    }
}

impl Local {
    /// Opens `config`'s data for `access`.
    pub async fn open(config: &Config, access: Access) -> Result<Self, CliError> {
        rewind_model::set_key_redaction(!config.telemetry.log_object_keys);
        let purpose = if access == Access::Read { Purpose::Inspect } else { Purpose::Serve };
        let stores = Arc::new(
            open::open(config, purpose)
                .await
                .map_err(|source| CliError::Open { dir: config.server.data_dir.clone(), source })?,
        );
        rewind_model::set_key_fingerprint_key(stores.keys.log_fingerprint());
        let (work, servers, stop) = (TaskTracker::new(), TaskTracker::new(), CancellationToken::new());
        let metrics = Metrics::unregistered();
        let listen = &config.server.listen;
        let s3_endpoint = format!("http://{}", listen.replace("0.0.0.0:", "127.0.0.1:").replace("[::]:", "[::1]:"));
        if access != Access::Upstream {
            let ops = Operations::without_capture(stores, metrics).with_retention(config.retention.clone());
            return Ok(Self { ops, access, s3_endpoint, work, servers, stop });
        }
        let target = rewind_embedded::upstream_target(config, stop.child_token(), &servers)
            .await
            .map_err(|e| CliError::other(format!("the embedded upstream did not start: {e}")))?;
        let upstream = rewind_capture::upstream::client(&config.upstream, &target);
        let rests = rewind_capture::upstream::longest_rest(config);
        let lean = LeanClient::new(&config.upstream, &target, rewind_capture::upstream::stall_grace(rests));
        let Engine { capture, ops, .. } =
            Engine::new(config, stores, upstream, lean, metrics, work.clone(), stop.child_token());
        match capture.recover().await {
            Ok(r) if r.committed + r.aborted > 0 => {
                tracing::info!(committed = r.committed, aborted = r.aborted, "resolved interrupted mutations");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not resolve interrupted mutations; the gateway will retry"),
        }
        Ok(Self { ops, access, s3_endpoint, work, servers, stop })
    }

    /// Waits for restores and reconciles in flight, ships what this session journaled to
    /// the vault, and stops the embedded upstream.
    pub async fn close(self) {
        self.work.close();
        self.work.wait().await;
        if self.access != Access::Read {
            let stores = self.ops.stores();
            if let Err(e) = ship::ship_pending(&stores.journal, stores.backend.as_ref()).await {
                eprintln!(
                    "rewind: warning: could not ship the journal to the vault ({e}); the gateway will when it starts"
                );
            }
        }
        self.stop.cancel();
        self.servers.close();
        self.servers.wait().await;
    }
}

impl Target {
    /// The journal's head, the vault, and each bucket's objects.
    pub async fn status(&self) -> Result<Status, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::GET, "status", None).await,
            Self::Local(l) => Ok(l.ops.status().await?),
        }
    }

    /// A bucket's objects as of an instant.
    pub async fn ls(&self, bucket: &str, prefix: &str, at_text: Option<&str>) -> Result<Listing, CliError> {
        match self {
            Self::Remote(c) => {
                let path = with_query("ls", &[("bucket", Some(bucket)), ("prefix", Some(prefix)), ("at", at_text)]);
                c.json(Method::GET, &path, None).await
            }
            Self::Local(l) => Ok(l.ops.ls(bucket.to_owned(), prefix.to_owned(), at(at_text)?).await?),
        }
    }

    /// Every version of a key.
    pub async fn log(&self, bucket: &str, key: &str) -> Result<Vec<LogLine>, CliError> {
        match self {
            Self::Remote(c) => {
                let path = with_query("log", &[("bucket", Some(bucket)), ("key", Some(key))]);
                c.json(Method::GET, &path, None).await
            }
            Self::Local(l) => Ok(l.ops.log(bucket.to_owned(), key.to_owned()).await?),
        }
    }

    /// What changed between two instants.
    pub async fn diff(&self, bucket: &str, prefix: &str, from: &str, to: Option<&str>) -> Result<DiffReport, CliError> {
        match self {
            Self::Remote(c) => {
                let params = [("bucket", Some(bucket)), ("prefix", Some(prefix)), ("from", Some(from)), ("to", to)];
                c.json(Method::GET, &with_query("diff", &params), None).await
            }
            Self::Local(l) => Ok(l.ops.diff(bucket.to_owned(), prefix.to_owned(), at(Some(from))?, at(to)?).await?),
        }
    }

    /// One version's bytes.
    pub async fn object(&self, bucket: &str, key: &str, at_text: Option<&str>) -> Result<ObjectBytes, CliError> {
        match self {
            Self::Remote(c) => {
                let path = with_query("object", &[("bucket", Some(bucket)), ("key", Some(key)), ("at", at_text)]);
                let res = c.send(Method::GET, &path, None).await?;
                let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let size = header("x-rewind-size").and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
                let blake3 = header("x-rewind-blake3").unwrap_or_default();
                let body = res.into_body().into_data_stream();
                let chunks = body
                    .map(|piece| piece.map_err(|e| CliError::other(format!("reading from the gateway failed: {e}"))))
                    .boxed();
                Ok(ObjectBytes { size, blake3, chunks })
            }
            Self::Local(l) => {
                let entry = l.ops.version(bucket.to_owned(), key.to_owned(), at(at_text)?).await?;
                let chunks = l.ops.read(&entry).map(|piece| piece.map_err(|e| CliError::other(e.to_string()))).boxed();
                Ok(ObjectBytes { size: entry.version.size, blake3: hex::encode(entry.version.blake3), chunks })
            }
        }
    }

    /// Every snapshot.
    pub async fn snapshots(&self) -> Result<Vec<Snapshot>, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::GET, "snapshots", None).await,
            Self::Local(l) => Ok(l.ops.snapshots().await?),
        }
    }

    /// Names an instant.
    pub async fn create_snapshot(&self, name: &str, at_text: Option<&str>) -> Result<Vec<Snapshot>, CliError> {
        match self {
            Self::Remote(c) => {
                let path = with_query("snapshots", &[("name", Some(name)), ("at", at_text)]);
                c.json(Method::POST, &path, None).await
            }
            Self::Local(l) => Ok(vec![l.ops.create_snapshot(name, &at(at_text)?).await?]),
        }
    }

    /// Makes a time-travel view of `bucket` at `at_text`, open for `ttl`.
    pub async fn create_view(&self, bucket: &str, at_text: Option<&str>, ttl: &str) -> Result<ViewInfo, CliError> {
        let made: Vec<ViewInfo> = match self {
            Self::Remote(c) => {
                let path = with_query("views", &[("bucket", Some(bucket)), ("at", at_text), ("ttl", Some(ttl))]);
                c.json(Method::POST, &path, None).await?
            }
            Self::Local(l) => {
                let ttl = rewind_config::HumanDuration::parse(ttl).map_err(CliError::other)?.0;
                let mut made = l.ops.view_create(bucket.to_owned(), at(at_text)?, ttl).await?;
                made.endpoint = Some(l.s3_endpoint.clone());
                vec![made]
            }
        };
        made.into_iter().next().ok_or_else(|| CliError::other("the gateway made no view"))
    }

    /// The open views.
    pub async fn views(&self) -> Result<Vec<ViewInfo>, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::GET, "views", None).await,
            Self::Local(l) => Ok(l.ops.views(false).await?),
        }
    }

    /// Removes a view.
    pub async fn remove_view(&self, access_key_id: &str) -> Result<(), CliError> {
        match self {
            Self::Remote(c) => {
                let path = with_query("views", &[("id", Some(access_key_id))]);
                c.json::<Vec<ViewInfo>>(Method::DELETE, &path, None).await.map(|_| ())
            }
            Self::Local(l) => Ok(l.ops.view_rm(access_key_id).await?),
        }
    }

    /// Removes a snapshot's name.
    pub async fn delete_snapshot(&self, name: &str) -> Result<(), CliError> {
        match self {
            Self::Remote(c) => {
                let path = with_query("snapshots", &[("name", Some(name))]);
                c.json::<Vec<Snapshot>>(Method::DELETE, &path, None).await.map(|_| ())
            }
            Self::Local(l) => Ok(l.ops.delete_snapshot(name).await?),
        }
    }

    /// Checks the journal and the vault, reading back `fraction` of the chunks.
    pub async fn verify(&self, fraction: Option<f64>) -> Result<VerifyReport, CliError> {
        match self {
            Self::Remote(c) => {
                let share = fraction.map(|f| f.to_string());
                let path = with_query("verify", &[("read_data", share.as_deref())]);
                c.json(Method::POST, &path, None).await
            }
            Self::Local(l) => Ok(l.ops.verify(ReadData::share(fraction.unwrap_or(0.0)), Compare::Segments).await?),
        }
    }

    /// What the retention policy would expire now.
    pub async fn forget_plan(&self, bucket: Option<&str>) -> Result<ForgetPlan, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::GET, &with_query("forget", &[("bucket", bucket)]), None).await,
            Self::Local(l) => Ok(l.ops.forget_plan(bucket.map(str::to_owned)).await?),
        }
    }

    /// What garbage collection would reclaim now.
    pub async fn gc_plan(&self) -> Result<GcPlan, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::GET, "gc", None).await,
            Self::Local(l) => Ok(l.ops.gc_plan().await?),
        }
    }

    /// Applies the retention policy now.
    pub async fn forget(&self, bucket: Option<&str>) -> Result<ForgetReport, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::POST, &with_query("forget", &[("bucket", bucket)]), None).await,
            Self::Local(l) => Ok(l.ops.forget(bucket.map(str::to_owned)).await?),
        }
    }

    /// One garbage collection pass now.
    pub async fn gc(&self) -> Result<GcReport, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::POST, "gc", None).await,
            Self::Local(l) => Ok(l.ops.gc().await?),
        }
    }

    /// How far the garbage collection pass running has got.
    pub async fn gc_progress(&self) -> Result<GcProgress, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::GET, "gc/progress", None).await,
            Self::Local(l) => Ok(l.ops.gc_progress()),
        }
    }

    /// Every legal hold.
    pub async fn holds(&self) -> Result<Vec<HoldInfo>, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::GET, "holds", None).await,
            Self::Local(l) => Ok(l.ops.holds().await?),
        }
    }

    /// Places (`POST`, with a reason) or lifts (`DELETE`) a hold.
    pub async fn hold(&self, method: Method, t: &HoldTarget, reason: Option<&str>) -> Result<(), CliError> {
        match self {
            Self::Remote(c) => {
                let params = [
                    ("bucket", Some(t.bucket.as_str())),
                    ("prefix", t.prefix.as_deref()),
                    ("key", t.key.as_deref()),
                    ("reason", reason),
                ];
                c.json::<Vec<HoldInfo>>(method, &with_query("holds", &params), None).await.map(|_| ())
            }
            Self::Local(l) => {
                let scope = match (&t.key, &t.prefix) {
                    (Some(key), _) => HoldScope::Key(key.clone()),
                    (None, prefix) => HoldScope::Prefix(prefix.clone().unwrap_or_default()),
                };
                match reason {
                    Some(reason) => Ok(l.ops.hold_add(&t.bucket, &scope, reason).await?),
                    None => Ok(l.ops.hold_rm(&t.bucket, &scope).await?),
                }
            }
        }
    }

    /// Plans a restore and, unless `ask` is a dry run, applies it.
    pub async fn restore(&self, ask: &RestoreRequest) -> Result<Events<RestoreEvent>, CliError> {
        match self {
            Self::Remote(c) => post_events(c, "restore", ask).await,
            Self::Local(l) => Ok(Events::Local(l.ops.restore(ask.clone()).await?)),
        }
    }

    /// Plans (and unless a dry run, applies) an undo; its events are a restore's.
    pub async fn undo(&self, ask: &UndoRequest) -> Result<Events<RestoreEvent>, CliError> {
        match self {
            Self::Remote(c) => post_events(c, "undo", ask).await,
            Self::Local(l) => Ok(Events::Local(l.ops.undo(ask.clone()).await?)),
        }
    }

    /// Every tripwire incident, newest first.
    pub async fn incidents(&self) -> Result<Vec<Incident>, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::GET, "incidents", None).await,
            Self::Local(l) => Ok(l.ops.incidents().await?),
        }
    }

    /// Tripwire incident `id`.
    pub async fn incident(&self, id: &str) -> Result<Incident, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::GET, &with_query("incidents", &[("id", Some(id))]), None).await,
            Self::Local(l) => Ok(l.ops.incident(id).await?),
        }
    }

    /// Acknowledges tripwire incident `id`.
    pub async fn acknowledge_incident(&self, id: &str) -> Result<Incident, CliError> {
        match self {
            Self::Remote(c) => c.json(Method::POST, &with_query("incidents/ack", &[("id", Some(id))]), None).await,
            Self::Local(l) => Ok(l.ops.acknowledge_incident(id).await?),
        }
    }

    /// Starts a reconcile pass.
    pub async fn reconcile(&self, bucket: &str, ask: ReconcileAsk) -> Result<Events<ReconcileEvent>, CliError> {
        match self {
            Self::Remote(c) => {
                let text = |n: Option<u64>| n.map(|n| n.to_string());
                let (p, o, b) = (text(ask.parallel), text(ask.objects_per_second), text(ask.bytes_per_second));
                let params = [
                    ("bucket", Some(bucket)),
                    ("parallel", p.as_deref()),
                    ("objects_per_second", o.as_deref()),
                    ("bytes_per_second", b.as_deref()),
                ];
                Ok(Events::Remote(Lines::of(c.send(Method::POST, &with_query("reconcile", &params), None).await?)))
            }
            Self::Local(l) => Ok(Events::Local(l.ops.reconcile(bucket.to_owned(), ask)?)),
        }
    }

    /// Ends the session (see [`Local::close`]).
    pub async fn close(self) {
        if let Self::Local(l) = self {
            l.close().await;
        }
    }
}

/// POSTs `ask` as JSON to `path` and reads the answer as a stream of events.
async fn post_events<T: DeserializeOwned>(
    client: &Client,
    path: &str,
    ask: &impl serde::Serialize,
) -> Result<Events<T>, CliError> {
    let body = serde_json::to_vec(ask).map_err(|e| CliError::other(e.to_string()))?;
    Ok(Events::Remote(Lines::of(client.send(Method::POST, path, Some(body)).await?)))
}
