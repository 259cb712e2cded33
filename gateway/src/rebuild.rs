//! Rebuilding a data directory from the vault alone (G7): the journal's records from the
//! shipped segments (their chain and each record's own chain checked), the signed
//! checkpoints, the shipping mark, and the chunk index from the packs' headers. The new
//! data directory records where its vault and key file are (`stores.toml`), so the gateway
//! and `rewind --data-dir` find them without repeating them.

use std::path::Path;
use std::time::Instant;

use rewind_config::Config;
use rewind_journal::segment::{self, RawRecords};
use rewind_model::Seq;
use serde::{Deserialize, Serialize};

use crate::capture::open::{self, JOURNAL_DIR, MASTER_KEY_OBJECT, OpenError};

/// The file, in a data directory, naming the vault and key file it belongs to.
pub const STORES_FILE: &str = "stores.toml";

/// What [`STORES_FILE`] holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoresFile {
    /// The vault: a directory or `s3://bucket/prefix`.
    pub vault: Option<String>,
    /// The key file.
    pub key_file: Option<std::path::PathBuf>,
}

/// Fills in the vault location and key file from `<data_dir>/stores.toml` where the
/// configuration leaves them unset.
pub fn apply_stores_file(config: &mut Config) -> Result<(), String> {
    let path = config.server.data_dir.join(STORES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let stores: StoresFile = toml::from_str(&text).map_err(|e| format!("{} is damaged: {e}", path.display()))?;
    if config.vault.location.is_none() {
        config.vault.location = stores.vault;
    }
    if config.vault.key_file.is_none() {
        config.vault.key_file = stores.key_file;
    }
    Ok(())
}

/// What a rebuild did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rebuilt {
    /// Segments read.
    pub segments: u64,
    /// Records imported.
    pub records: u64,
    /// Checkpoints verified and kept.
    pub checkpoints: u64,
    /// Snapshot labels restored.
    pub labels: u64,
    /// Packs whose headers were indexed.
    pub packs: u64,
    /// Chunks indexed.
    pub chunks: u64,
    /// How long it took.
    pub seconds: f64,
}

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The target already has a journal.
    #[error("{0} already holds a journal: rebuild into a new, empty data directory")]
    NotEmpty(String),
    /// The vault has no key material: it is not a Rewind vault (or the location is wrong).
    #[error("no Rewind vault at {0} (no {MASTER_KEY_OBJECT}): check --vault")]
    NoVault(String),
    /// Opening the stores failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The segments or packs are damaged or do not chain.
    #[error("{0}")]
    Damaged(String),
}

fn damaged(e: impl std::fmt::Display) -> RebuildError {
    RebuildError::Damaged(e.to_string())
}

/// Rebuilds `config.server.data_dir` from the vault `config` names.
pub async fn rebuild(config: &Config) -> Result<Rebuilt, RebuildError> {
    let start = Instant::now();
    let data_dir = &config.server.data_dir;
    if data_dir.join(JOURNAL_DIR).exists() {
        return Err(RebuildError::NotEmpty(data_dir.display().to_string()));
    }
    let (backend, location) = open::backend(config).await?;
    if !backend.exists(MASTER_KEY_OBJECT).await.map_err(damaged)? {
        return Err(RebuildError::NoVault(location));
    }
    std::fs::create_dir_all(data_dir).map_err(damaged)?;
    let mut done = Rebuilt::default();
    {
        let stores = open::open(config).await?;
        let journal = &stores.journal;
        let (mut prev, mut next) = ([0u8; 32], 1u64);
        for name in backend.list("segments/").await.map_err(damaged)? {
            let bytes = backend.get(&name).await.map_err(damaged)?;
            let (segment, records): (_, RawRecords) =
                journal.open_segment(&bytes).map_err(|e| damaged(format!("{name}: {e}")))?;
            if segment.prev != prev || segment.first.0 != next {
                return Err(damaged(format!(
                    "{name} does not follow the segment before it: the chain is broken there"
                )));
            }
            journal.import(&records).map_err(|e| damaged(format!("{name}: {e}")))?;
            (prev, next) = (segment.hash, segment.last.0 + 1);
            done.segments += 1;
            done.records += records.len() as u64;
        }
        for name in backend.list("checkpoints/").await.map_err(damaged)? {
            let bytes = backend.get(&name).await.map_err(damaged)?;
            done.checkpoints += u64::from(journal.import_checkpoint(&bytes).map_err(damaged)?);
        }
        if next > 1 {
            journal.set_shipped(Seq(next - 1), &prev).map_err(damaged)?;
        }
        if let Some(name) = backend.list("labels/").await.map_err(damaged)?.pop() {
            let bytes = backend.get(&name).await.map_err(damaged)?;
            let (generation, labels) = journal.open_labels(&bytes).map_err(|e| damaged(format!("{name}: {e}")))?;
            done.labels = journal.import_labels(&labels).map_err(damaged)? as u64;
            journal.set_labels_shipped(generation, &segment::labels_digest(&labels)).map_err(damaged)?;
        }
        let (packs, chunks) = stores.vault.reindex().await.map_err(damaged)?;
        (done.packs, done.chunks) = (packs as u64, chunks as u64);
    }
    let stores_file = StoresFile { vault: config.vault.location.clone(), key_file: config.vault.key_file.clone() };
    let text = toml::to_string(&stores_file).map_err(damaged)?;
    write_private(&data_dir.join(STORES_FILE), &text).map_err(damaged)?;
    done.seconds = start.elapsed().as_secs_f64();
    Ok(done)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    rewind_vault::durable::create_new(path, text.as_bytes(), 0o600)
}
