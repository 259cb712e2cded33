//! Per-key locks across gateways, on a session of their own.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::db_err;
use crate::engine::{EngineError, SharedLocks};
use crate::layout;

/// Per-key locks across gateways: PostgreSQL advisory locks of one session per gateway, a
/// connection of its own outside the pool. A gateway that dies (or whose connection drops)
/// loses its session, and with it every lock it held. Waiting is polling with
/// `pg_try_advisory_lock`, so one waiter never blocks the session for the others.
#[derive(Clone)]
pub(super) struct PgLocks(pub(super) Arc<LockSession>);

pub(super) struct LockSession {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    handle: tokio::runtime::Handle,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    /// Locks to release, sent together by [`release_in_batches`].
    unlocks: tokio::sync::mpsc::UnboundedSender<i64>,
}

/// Most locks released by one query.
const UNLOCK_BATCH: usize = 256;

impl PgLocks {
    pub(super) fn new(config: tokio_postgres::Config, tls: MakeRustlsConnect, handle: tokio::runtime::Handle) -> Self {
        let (unlocks, queue) = tokio::sync::mpsc::unbounded_channel();
        let session = Arc::new(LockSession {
            config,
            tls,
            handle: handle.clone(),
            session: tokio::sync::Mutex::new(None),
            unlocks,
        });
        handle.spawn(release_in_batches(Arc::downgrade(&session), queue));
        Self(session)
    }
}

/// Releases the locks queued for release, every lock queued meanwhile in the same round trip:
/// under load, one query per batch instead of one per mutation. Ends with the session. A
/// release queued behind a later acquire of the same lock by this gateway is harmless:
/// advisory locks of one session stack.
async fn release_in_batches(
    session: std::sync::Weak<LockSession>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<i64>,
) {
    let mut ids = Vec::new();
    while queue.recv_many(&mut ids, UNLOCK_BATCH).await > 0 {
        let Some(session) = session.upgrade() else { return };
        if let Ok(s) = session.session().await {
            let sql: String = ids.iter().map(|id| format!("SELECT pg_advisory_unlock({id});")).collect();
            let _ = s.client.simple_query(&sql).await;
        }
        ids.clear();
    }
}

/// First and longest pause between tries of a lock another gateway holds.
const LOCK_POLL_FIRST: Duration = Duration::from_millis(2);
const LOCK_POLL_MOST: Duration = Duration::from_millis(50);

/// The connection locks are held on, and its two statements, prepared once: planned on
/// every call, they were a fifth of the database's CPU per mutation.
struct Session {
    client: tokio_postgres::Client,
    /// `pg_try_advisory_lock($1)`.
    try_lock: tokio_postgres::Statement,
    /// Whether an open-intent mark lies strictly between `$1` and `$2`.
    marked: tokio_postgres::Statement,
}

impl LockSession {
    /// The lock session, connected (again) if it is not.
    async fn session(&self) -> Result<Arc<Session>, EngineError> {
        let mut session = self.session.lock().await;
        if let Some(s) = session.as_ref().filter(|s| !s.client.is_closed()) {
            return Ok(s.clone());
        }
        if session.take().is_some() {
            tracing::error!(
                "the journal database's lock session was lost: locks held by requests in flight on this gateway are gone"
            );
        }
        let (client, connection) = self.config.connect(self.tls.clone()).await.map_err(db_err)?;
        tokio::spawn(connection);
        let try_lock = client.prepare("SELECT pg_try_advisory_lock($1)").await.map_err(db_err)?;
        let marked = client
            .prepare("SELECT EXISTS (SELECT 1 FROM rewind_open WHERE k > $1 AND k < $2)")
            .await
            .map_err(db_err)?;
        let fresh = Arc::new(Session { client, try_lock, marked });
        *session = Some(fresh.clone());
        Ok(fresh)
    }
}

impl SharedLocks for PgLocks {
    fn acquire(&self, mut ids: Vec<i64>) -> futures::future::BoxFuture<'static, Result<Vec<i64>, EngineError>> {
        ids.sort_unstable();
        ids.dedup();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        self.0.handle.spawn(async move {
            let mut taken = 0;
            let mut marked = Vec::new();
            let outcome = async {
                let mut pause = LOCK_POLL_FIRST;
                while taken < ids.len() {
                    let session = this.0.session().await?;
                    // Two statements sent back to back (one round trip), each its own
                    // transaction: the marks are read by a snapshot taken after the lock.
                    let id = ids[taken];
                    let prefix = layout::open_mark_prefix(id);
                    let (lower, upper) = (prefix.to_vec(), past(&prefix));
                    let (lock_params, mark_params): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 2]) =
                        ([&id], [&lower, &upper]);
                    let (locked, has_marks) = futures::join!(
                        session.client.query_one(&session.try_lock, &lock_params),
                        session.client.query_one(&session.marked, &mark_params),
                    );
                    let (locked, has_marks): (bool, bool) =
                        (locked.map_err(db_err)?.get(0), has_marks.map_err(db_err)?.get(0));
                    if locked {
                        if has_marks {
                            marked.push(id);
                        }
                        taken += 1;
                        pause = LOCK_POLL_FIRST;
                    } else {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(LOCK_POLL_MOST);
                    }
                }
                Ok(())
            }
            .await;
            if outcome.is_err() && taken > 0 {
                this.release(ids[..taken].to_vec());
            }
            let _ = tx.send(outcome.map(|()| marked));
        });
        Box::pin(
            async move { rx.await.map_err(|_| EngineError::Database("the lock task ended without an answer".into()))? },
        )
    }

    fn release(&self, ids: Vec<i64>) {
        for id in ids {
            // Fails only once the batching task has ended, with the session.
            let _ = self.0.unlocks.send(id);
        }
    }
}

/// The first key past every key that starts with `prefix` (which ends in a byte below 0xFF
/// somewhere).
fn past(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            break;
        }
    }
    end
}
