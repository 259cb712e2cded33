//! `rewind journal migrate`: moves a single gateway's journal (RocksDB, under a stopped
//! gateway's data directory) into a PostgreSQL database, where several gateways can share
//! it (docs/SCALE.md).
//!
//! Entries are copied as stored (records stay encrypted and chained under the same key),
//! table by table, `meta` last: the target has a head only once everything it vouches for
//! is there. Copying is idempotent, so a migration that was interrupted is run again, and
//! it refuses a target that holds another installation's history. At the end the target is
//! checked: the same head and the same number of entries in every table as the source, and
//! `verify` walks its whole chain with the vault's key.

use std::sync::Arc;

use rewind_config::Config;
use rewind_journal::engine::{Engine, Table, Write};
use rewind_journal::{Access, Journal, PostgresEngine, PostgresOptions, layout};
use serde::Serialize;

use crate::open::{self, OpenError, Purpose};

/// Entries written to the target per transaction.
const BATCH: usize = 2000;

/// What a migration did.
#[derive(Debug, Clone, Serialize)]
pub struct Migrated {
    /// Entries copied, over every table.
    pub entries: u64,
    /// The head both journals have.
    pub head_seq: u64,
    /// Records the target's `verify` walked.
    pub records_verified: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// Why a migration stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The source could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The target or the copy failed; running the command again continues.
    #[error("{0}. Nothing in the source changed; run the same command again once fixed")]
    Failed(String),
    /// The target holds other history.
    #[error("{0}")]
    Refused(String),
}

fn failed(e: impl std::fmt::Display) -> MigrateError {
    MigrateError::Failed(e.to_string())
}

/// Copies the journal of `config`'s data directory (a stopped gateway's) into the database
/// `to`; `progress` hears each table's name and the entries copied so far.
pub async fn migrate(
    config: &Config,
    to: PostgresOptions,
    progress: impl Fn(&str, u64) + Send + Sync + 'static,
) -> Result<Migrated, MigrateError> {
    let started = std::time::Instant::now();
    let source = open::open(config, Purpose::Inspect).await?;
    let keys = source.keys.clone();
    let journal = source.journal.clone();
    let url = to.url.clone();
    let target: Arc<dyn Engine> = Arc::new(
        tokio::task::spawn_blocking(move || PostgresEngine::connect(&to))
            .await
            .map_err(failed)?
            .map_err(|e| failed(format!("journal database {url}: {e}")))?,
    );
    let from = journal.engine().clone();
    let head = journal.head().map_err(failed)?.seq.0;
    let there = Journal::over(target.clone(), keys.clone(), Access::ReadOnly).map_err(failed)?;
    if there.head().map_err(failed)?.seq.0 > head {
        return Err(MigrateError::Refused(
            "the target database's journal is ahead of this one: it is not an earlier migration of it; migrate into an empty database".into(),
        ));
    }
    drop(there);
    let copied = {
        let (from, target) = (from.clone(), target.clone());
        tokio::task::spawn_blocking(move || copy(&*from, &*target, &progress)).await.map_err(failed)??
    };
    let migrated = Journal::over(target.clone(), keys, Access::ReadOnly).map_err(failed)?;
    if migrated.head().map_err(failed)?.seq.0 != head {
        return Err(failed("the target's head differs from the source's after the copy"));
    }
    for table in Table::ALL {
        let (a, b) = (count(&*from, table).map_err(failed)?, count(&*target, table).map_err(failed)?);
        if a != b {
            return Err(failed(format!("table {}: {a} entries in the source, {b} in the target", table.name())));
        }
    }
    let checked = migrated.verify().map_err(failed)?;
    if !checked.problems.is_empty() {
        return Err(failed(format!("verify found problems in the target: {:?}", checked.problems)));
    }
    Ok(Migrated {
        entries: copied,
        head_seq: head,
        records_verified: checked.records,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Copies every table, `meta` last; returns the entries copied.
fn copy(from: &dyn Engine, to: &dyn Engine, progress: &dyn Fn(&str, u64)) -> Result<u64, MigrateError> {
    let vault_of = |e: &dyn Engine| e.get(Table::Meta, layout::VAULT_ID_KEY).map_err(failed);
    if let (Some(theirs), Some(ours)) = (vault_of(to)?, vault_of(from)?)
        && theirs != ours
    {
        return Err(MigrateError::Refused(format!(
            "the target database holds the journal of another vault (id {}); migrate into an empty database",
            String::from_utf8_lossy(&theirs)
        )));
    }
    let mut copied = 0u64;
    let order = [Table::Records, Table::Versions, Table::Unresolved, Table::Chunks, Table::Progress, Table::Meta];
    for table in order {
        let mut batch = Vec::with_capacity(BATCH);
        let mut failure = None;
        let mut in_table = 0u64;
        from.scan(table, &[], &mut |k, v| {
            batch.push(Write::Put(table, k.to_vec(), v.to_vec()));
            if batch.len() == BATCH {
                if let Err(e) = to.write(std::mem::take(&mut batch), false) {
                    failure = Some(e);
                    return false;
                }
                in_table += BATCH as u64;
                progress(table.name(), in_table);
            }
            true
        })
        .map_err(failed)?;
        if let Some(e) = failure {
            return Err(failed(e));
        }
        in_table += batch.len() as u64;
        to.write(batch, true).map_err(failed)?;
        progress(table.name(), in_table);
        copied += in_table;
    }
    Ok(copied)
}

fn count(engine: &dyn Engine, table: Table) -> Result<u64, rewind_journal::EngineError> {
    let mut n = 0u64;
    engine.scan(table, &[], &mut |_, _| {
        n += 1;
        true
    })?;
    Ok(n)
}
