//! The PostgreSQL engine: one journal in a database that several gateways share.
//!
//! Each [`Table`] is a table of `(k bytea PRIMARY KEY, v bytea)`; PostgreSQL orders
//! `bytea` byte by byte, as RocksDB orders keys, so scans are index range scans. The
//! journal's writer runs each batch in one transaction that first takes a transaction-level
//! advisory lock (`WRITER_LOCK`): batches of every gateway are applied one at a time, each
//! sees the head the one before left, and the lock goes with the transaction when its
//! connection dies. A batch that needs no sync commits with `synchronous_commit = off`
//! (what the RocksDB engine's unsynced write-ahead log is).
//!
//! The trait is synchronous and is called from the writer's thread and from async tasks,
//! so every statement runs as a task on a small runtime of the engine's own, and the
//! caller's thread waits for its answer on a channel: no caller ever polls a database
//! future, so none depends on which runtime (if any) the caller is in.

use std::collections::BTreeMap;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use std::sync::Arc;

use crate::engine::{BuildBatch, Engine, EngineError, Entry, SharedLocks, Table, Visit, Write};

mod locks;
mod transaction;

use locks::PgLocks;
use transaction::{OpenTransaction, hex, unhex};

/// Advisory lock ids (per database): one Rewind installation per database.
const MIGRATE_LOCK: i64 = 0x5257_4e44_0000_0001;
/// Held by the transaction of each writer batch.
const WRITER_LOCK: i64 = 0x5257_4e44_0000_0002;

/// How long a writer waits for another gateway's batch before it reports an error (a
/// batch takes milliseconds; a wait this long means that gateway is stuck).
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '30s'";

/// Rows fetched by a scan's first round trip, and the most by any later one: most scans
/// stop after a few entries (a seek), some read a whole table.
const SCAN_FIRST: i64 = 16;
const SCAN_MOST: i64 = 1024;

/// The schema, one step per version; each step runs once, in order, in one transaction.
const MIGRATIONS: &[&str] = &[
    // 1: the journal's tables.
    "CREATE TABLE rewind_records (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE rewind_versions (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE rewind_meta (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE rewind_open (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE rewind_chunks (k bytea PRIMARY KEY, v bytea NOT NULL);
     CREATE TABLE rewind_pending (k bytea PRIMARY KEY, v bytea NOT NULL);",
];

/// How to reach the database.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user@host:port/database?...`, without a password.
    pub url: String,
    /// The password, from the environment or a file.
    pub password: Option<zeroize::Zeroizing<String>>,
    /// Connections kept open.
    pub pool_size: usize,
    /// Longest wait for a connection to be made, or for a free one.
    pub connect_timeout: Duration,
    /// PEM file of CAs trusted for the server's certificate, besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("pool_size", &self.pool_size)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl PostgresOptions {
    /// Options for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), password: None, pool_size: 16, connect_timeout: Duration::from_secs(10), ca_file: None }
    }
}

/// Why a journal URL cannot be used (before any connection is tried).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// It does not parse.
    #[error("the journal URL does not parse ({0}); expected postgres://user@host:port/database")]
    Malformed(String),
    /// It carries a password, which would show in process listings and config files.
    #[error(
        "the journal URL carries a password; remove it from the URL and give it in REWIND_JOURNAL_PASSWORD or journal.password_file"
    )]
    PasswordInUrl,
    /// It names no database.
    #[error("the journal URL names no database: add /<database> after the host")]
    NoDatabase,
}

/// The parsed form of a journal URL, checked.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, UrlError> {
    let config = tokio_postgres::Config::from_str(url).map_err(|e| UrlError::Malformed(e.to_string()))?;
    if config.get_password().is_some() {
        return Err(UrlError::PasswordInUrl);
    }
    if config.get_dbname().is_none() {
        return Err(UrlError::NoDatabase);
    }
    Ok(config)
}

/// A journal in PostgreSQL.
pub struct PostgresEngine {
    pool: Pool,
    locks: PgLocks,
    /// Drives the connections; shut down (without waiting) when the engine goes.
    runtime: Option<tokio::runtime::Runtime>,
}

/// The error and its causes, in one line ("error connecting to server: Connection refused").
fn db_err(e: impl std::error::Error) -> EngineError {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    EngineError::Database(text)
}

/// TLS as the URL's `sslmode` asks (`prefer` by default: when the server offers it),
/// verifying the server's certificate against the system's CAs and those in `ca_file`.
fn tls(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, EngineError> {
    let mut roots = rustls::RootCertStore::empty();
    // Certificates of the system store that do not parse are skipped, as browsers do.
    let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject;
        let unreadable = |e: &dyn std::fmt::Display| {
            EngineError::Refused(format!("cannot read the CA file {} (journal.ca_file): {e}", path.display()))
        };
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| unreadable(&e))?
            .collect::<Result<_, _>>()
            .map_err(|e| unreadable(&e))?;
        if certs.is_empty() {
            return Err(unreadable(&"it holds no PEM certificate"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| unreadable(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Refused(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// A connection the pool could not make: refused (see [`EngineError::Refused`]) or not.
fn pool_err(e: deadpool_postgres::PoolError) -> EngineError {
    use tokio_postgres::error::SqlState;
    let refused = match &e {
        deadpool_postgres::PoolError::Backend(pg) => {
            pg.code().is_some_and(|c| {
                [
                    SqlState::INVALID_PASSWORD,
                    SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
                    SqlState::INVALID_CATALOG_NAME,
                    SqlState::INSUFFICIENT_PRIVILEGE,
                ]
                .contains(c)
            }) || pg.to_string().contains("password missing")
        }
        _ => false,
    };
    match db_err(e) {
        EngineError::Database(text) if refused => EngineError::Refused(text),
        other => other,
    }
}

/// The SQL table of `table`.
fn sql_table(table: Table) -> &'static str {
    match table {
        Table::Records => "rewind_records",
        Table::Versions => "rewind_versions",
        Table::Meta => "rewind_meta",
        Table::Unresolved => "rewind_open",
        Table::Chunks => "rewind_chunks",
        Table::Progress => "rewind_pending",
    }
}

impl PostgresEngine {
    /// Connects and brings the schema up to date (safe when several processes start at
    /// once: migrations run one at a time under an advisory lock, each once).
    pub fn connect(options: &PostgresOptions) -> Result<Self, EngineError> {
        let mut config = parse_url(&options.url).map_err(db_err)?;
        if let Some(p) = &options.password {
            config.password(p.as_bytes());
        }
        config.connect_timeout(options.connect_timeout);
        config.application_name("rewind");
        // The migration's "already exists, skipping" notices are not news.
        config.options("-c client_min_messages=warning");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("journal-postgres")
            .enable_all()
            .build()
            .map_err(db_err)?;
        let tls = tls(options.ca_file.as_deref())?;
        let config_for_locks = config.clone();
        let manager =
            Manager::from_config(config, tls.clone(), ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = {
            let _entered = runtime.enter();
            Pool::builder(manager)
                .max_size(options.pool_size.max(2))
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(options.connect_timeout))
                .create_timeout(Some(options.connect_timeout))
                .build()
                .map_err(db_err)?
        };
        let locks = PgLocks::new(config_for_locks, tls, runtime.handle().clone());
        let engine = Self { pool, locks, runtime: Some(runtime) };
        engine.migrate()?;
        Ok(engine)
    }

    /// Runs `task` (given a connection) on the engine's runtime; waits for its answer.
    fn run<T, F>(&self, task: impl FnOnce(deadpool_postgres::Client) -> F + Send + 'static) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let outcome = match pool.get().await {
                Ok(client) => task(client).await.map_err(db_err),
                Err(e) => Err(pool_err(e)),
            };
            let _ = tx.send(outcome);
        });
        let answer = || rx.recv();
        // A caller on an async worker (a request reading the journal) hands its worker's
        // other tasks to another thread while it waits for the database.
        let answer = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(answer)
            }
            _ => answer(),
        };
        answer.map_err(|_| EngineError::Database("the journal database task ended without an answer".into()))?
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("invariant: the runtime lives as long as the engine")
    }

    /// The schema version this build writes.
    pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

    fn migrate(&self) -> Result<(), EngineError> {
        self.run(|mut client| async move {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK]).await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS rewind_schema (
                    version integer PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await?;
            let row = tx.query_one("SELECT coalesce(max(version), 0) FROM rewind_schema", &[]).await?;
            let at: i32 = row.get(0);
            if at > Self::SCHEMA_VERSION {
                return Ok(Err(EngineError::Database(format!(
                    "the database's schema is version {at}, newer than this Rewind knows ({}): upgrade this gateway",
                    Self::SCHEMA_VERSION
                ))));
            }
            for (i, step) in MIGRATIONS.iter().enumerate().skip(usize::try_from(at).unwrap_or(0)) {
                tx.batch_execute(step).await?;
                let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
                tx.execute("INSERT INTO rewind_schema (version) VALUES ($1)", &[&version]).await?;
            }
            tx.commit().await?;
            Ok(Ok(()))
        })?
    }

    /// The one statement that applies `writes` (`None`: nothing to write), with its
    /// parameters: the last change of each key wins, as in a RocksDB batch. Each table's
    /// deletes and upserts are data-modifying `WITH` clauses (each row at most once, so
    /// their order within the statement does not matter).
    fn statement(writes: Vec<Write>) -> Option<(String, Vec<Vec<Vec<u8>>>)> {
        let mut last: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>> = BTreeMap::new();
        for w in writes {
            match w {
                Write::Put(t, k, v) => last.insert((t, k), Some(v)),
                Write::Delete(t, k) => last.insert((t, k), None),
            };
        }
        let mut clauses = Vec::new();
        let mut params: Vec<Vec<Vec<u8>>> = Vec::new();
        for table in Table::ALL {
            let (mut put_k, mut put_v, mut del) = (Vec::new(), Vec::new(), Vec::new());
            while let Some(entry) = last.first_entry().filter(|e| e.key().0 == table) {
                let ((_, k), v) = entry.remove_entry();
                match v {
                    Some(v) => {
                        put_k.push(k);
                        put_v.push(v);
                    }
                    None => del.push(k),
                }
            }
            let name = sql_table(table);
            if !del.is_empty() {
                params.push(del);
                let n = params.len();
                clauses.push(format!("w{n} AS (DELETE FROM {name} WHERE k = ANY(${n}::bytea[]))"));
            }
            if !put_k.is_empty() {
                params.push(put_k);
                params.push(put_v);
                let (k, v) = (params.len() - 1, params.len());
                clauses.push(format!(
                    "w{v} AS (INSERT INTO {name} (k, v) SELECT * FROM unnest(${k}::bytea[], ${v}::bytea[]) \
                     ON CONFLICT (k) DO UPDATE SET v = excluded.v)"
                ));
            }
        }
        (!clauses.is_empty()).then(|| (format!("WITH {} SELECT 1", clauses.join(", ")), params))
    }

    /// The last entry of `table` at or before each of `keys`, in one statement; with
    /// `then`, each with the value `then`'s table holds under the last `suffix` bytes of
    /// its key.
    fn latest_each(
        &self,
        table: Table,
        keys: &[&[u8]],
        then: Option<(Table, usize)>,
    ) -> Result<Vec<Option<crate::engine::EntryThen>>, EngineError> {
        // The second lookup is a subquery per row, not a join: a join's plan, cached while
        // the tables were small, hashed the whole of `then` on every call.
        let pointed = match then {
            Some((then, suffix)) => format!(
                "(SELECT t.v FROM {} t WHERE length(f.k) >= {suffix} AND t.k = substring(f.k FROM length(f.k) - {suffix} + 1))",
                sql_table(then)
            ),
            None => "NULL::bytea".to_owned(),
        };
        let sql = format!(
            "SELECT f.k, f.v, {pointed} FROM unnest($1::bytea[]) WITH ORDINALITY AS a(key, i) \
             LEFT JOIN LATERAL (SELECT k, v FROM {} WHERE k <= a.key ORDER BY k DESC LIMIT 1) f ON true \
             ORDER BY a.i",
            sql_table(table)
        );
        let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        let rows = self.run(move |client| async move {
            let stmt = client.prepare_cached(&sql).await?;
            client.query(&stmt, &[&keys]).await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let key = r.get::<_, Option<Vec<u8>>>(0)?;
                Some(((key, r.get::<_, Option<Vec<u8>>>(1).unwrap_or_default()), r.get::<_, Option<Vec<u8>>>(2)))
            })
            .collect())
    }

    /// One page of a scan: up to `limit` entries from `from` (`inclusive` or after it).
    fn page(&self, table: Table, from: Vec<u8>, inclusive: bool, limit: i64) -> Result<Vec<Entry>, EngineError> {
        let op = if inclusive { ">=" } else { ">" };
        let sql = format!("SELECT k, v FROM {} WHERE k {op} $1 ORDER BY k LIMIT $2", sql_table(table));
        let rows = self.run(move |client| async move {
            let stmt = client.prepare_cached(&sql).await?;
            client.query(&stmt, &[&from, &limit]).await
        })?;
        Ok(rows.into_iter().map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1))).collect())
    }
}

impl Engine for PostgresEngine {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let sql = format!("SELECT v FROM {} WHERE k = $1", sql_table(table));
        let key = key.to_vec();
        let row = self.run(move |client| async move {
            let stmt = client.prepare_cached(&sql).await?;
            client.query_opt(&stmt, &[&key]).await
        })?;
        Ok(row.map(|r| r.get(0)))
    }

    fn scan(&self, table: Table, from: &[u8], f: Visit<'_>) -> Result<(), EngineError> {
        // The callback may read the engine: it never runs while a statement is waited for.
        let (mut from, mut inclusive, mut limit) = (from.to_vec(), true, SCAN_FIRST);
        loop {
            let page = self.page(table, from, inclusive, limit)?;
            let full = i64::try_from(page.len()).unwrap_or(i64::MAX) == limit;
            for (k, v) in &page {
                if !f(k, v) {
                    return Ok(());
                }
            }
            match page.into_iter().last() {
                Some((k, _)) if full => (from, inclusive, limit) = (k, false, (limit * 4).min(SCAN_MOST)),
                _ => return Ok(()),
            }
        }
    }

    fn last_at_or_before(&self, table: Table, key: &[u8]) -> Result<Option<Entry>, EngineError> {
        let sql = format!("SELECT k, v FROM {} WHERE k <= $1 ORDER BY k DESC LIMIT 1", sql_table(table));
        let key = key.to_vec();
        let row = self.run(move |client| async move {
            let stmt = client.prepare_cached(&sql).await?;
            client.query_opt(&stmt, &[&key]).await
        })?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    fn last_at_or_before_each(&self, table: Table, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, EngineError> {
        Ok(self.latest_each(table, keys, None)?.into_iter().map(|found| found.map(|(entry, _)| entry)).collect())
    }

    fn last_at_or_before_each_then(
        &self,
        table: Table,
        keys: &[&[u8]],
        then: Table,
        suffix: usize,
    ) -> Result<Vec<Option<crate::engine::EntryThen>>, EngineError> {
        self.latest_each(table, keys, Some((then, suffix)))
    }

    fn write(&self, writes: Vec<Write>, sync: bool) -> Result<(), EngineError> {
        self.run(move |client| async move {
            let open = OpenTransaction::begin(client, "").await?;
            open.commit(writes, sync).await
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn shared_locks(&self) -> Option<Arc<dyn SharedLocks>> {
        Some(Arc::new(self.locks.clone()))
    }

    fn write_batch(&self, first: Option<(Table, &[u8])>, build: BuildBatch<'_>) -> Result<(), EngineError> {
        // The transaction lives in a task on the engine's runtime; this thread builds the
        // batch while the task holds the lock, and hands it over. One round trip opens the
        // transaction, takes the lock and reads `first`; one applies; one commits.
        enum Step {
            Locked(Option<Vec<u8>>),
            Done(Result<(), EngineError>),
        }
        let mut begin = format!("{LOCK_TIMEOUT}; SELECT pg_advisory_xact_lock({WRITER_LOCK})");
        if let Some((table, key)) = first {
            begin +=
                &format!("; SELECT encode(v, 'hex') FROM {} WHERE k = decode('{}', 'hex')", sql_table(table), hex(key));
        }
        let pool = self.pool.clone();
        let (step_tx, step_rx) = std::sync::mpsc::sync_channel(2);
        let (batch_tx, batch_rx) = tokio::sync::oneshot::channel::<Option<(Vec<Write>, bool)>>();
        self.runtime().spawn(async move {
            let outcome = async {
                let client = pool.get().await.map_err(pool_err)?;
                let mut open = OpenTransaction::begin(client, &begin).await.map_err(db_err)?;
                let value = match open.answer.take() {
                    Some(h) => Some(unhex(&h).ok_or_else(|| EngineError::Database("a malformed bytea value".into()))?),
                    None => None,
                };
                let _ = step_tx.send(Step::Locked(value));
                match batch_rx.await {
                    Ok(Some((writes, sync))) => open.commit(writes, sync).await.map_err(db_err),
                    _ => open.rollback().await.map_err(db_err),
                }
            }
            .await;
            let _ = step_tx.send(Step::Done(outcome));
        });
        let lost = || EngineError::Database("the journal database task ended without an answer".into());
        let value = match step_rx.recv().map_err(|_| lost())? {
            Step::Done(outcome) => return outcome,
            Step::Locked(value) => value,
        };
        // Under the lock: `build` reads the head other gateways left, on other connections.
        let _ = batch_tx.send(build(value));
        match step_rx.recv().map_err(|_| lost())? {
            Step::Done(outcome) => outcome,
            Step::Locked(_) => Err(lost()),
        }
    }
}

impl Drop for PostgresEngine {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which an async caller must not do.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
