//! Rebuilding a data directory from the vault alone (G7): the journal's records from the
//! shipped segments (their chain and each record's own chain checked), the signed
//! checkpoints, the shipping mark, and the chunk index from the packs' headers. The new
//! data directory records where its vault and key file are (`stores.toml`), so the gateway
//! and `rewind --data-dir` find them without repeating them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rewind_config::Config;
use rewind_journal::JournalError;
use rewind_journal::segment::{self, RawRecords};
use rewind_model::Seq;
use rewind_vault::VaultError;
use serde::{Deserialize, Serialize};

use crate::chain::{self, ChainError};
use crate::open::{self, JOURNAL_DIR, MASTER_KEY_OBJECT, OpenError};

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
    /// Segments of another history (a fork) left out.
    pub segments_skipped: u64,
    /// Records imported.
    pub records: u64,
    /// Checkpoints verified and kept.
    pub checkpoints: u64,
    /// Snapshot labels restored.
    pub labels: u64,
    /// Legal holds restored.
    pub holds: u64,
    /// Time-travel views restored.
    #[serde(default)]
    pub views: u64,
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
    /// The vault could not be read (or its packs indexed).
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    /// A segment, checkpoint or label set does not open, or the new journal refused it.
    #[error("{what}: {source}")]
    Journal {
        /// Which object of the vault, or what was being done.
        what: String,
        /// What the journal said (corruption, or its storage failing).
        #[source]
        source: JournalError,
    },
    /// The segments do not form one chain from the first record.
    #[error("{0}")]
    Broken(String),
    /// The data directory could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// A journal error about `what`.
fn journal_err(what: impl Into<String>) -> impl FnOnce(JournalError) -> RebuildError {
    let what = what.into();
    move |source| RebuildError::Journal { what, source }
}

/// Rebuilds `config.server.data_dir` from the vault `config` names.
pub async fn rebuild(config: &Config) -> Result<Rebuilt, RebuildError> {
    let start = Instant::now();
    let data_dir = &config.server.data_dir;
    if data_dir.join(JOURNAL_DIR).exists() {
        return Err(RebuildError::NotEmpty(data_dir.display().to_string()));
    }
    let (backend, location) = open::backend(config).await?;
    if !backend.exists(MASTER_KEY_OBJECT).await? {
        return Err(RebuildError::NoVault(location));
    }
    std::fs::create_dir_all(data_dir).map_err(|source| RebuildError::Io { path: data_dir.clone(), source })?;
    let mut done = Rebuilt::default();
    {
        let stores = open::open(config, open::Purpose::Rebuild).await?;
        let journal = &stores.journal;
        let (mut prev, mut next) = ([0u8; 32], 1u64);
        // A vault that `forget` compacted starts with a base: what was kept up to its
        // horizon; the segments it covers are left over from an interrupted compaction.
        if let Some(name) = backend.list("bases/").await?.pop() {
            let bytes = backend.get(&name).await?;
            let (horizon, records) = journal.open_base(&bytes).map_err(journal_err(&name))?;
            done.records += records.len() as u64;
            journal.import_base(records, horizon).await.map_err(journal_err(&name))?;
            (prev, next) = (horizon.segment, horizon.seq.0 + 1);
        }
        let names: Vec<String> = backend
            .list("segments/")
            .await?
            .into_iter()
            .filter(|n| segment::range_of_name(n).is_none_or(|(_, last)| last >= next))
            .collect();
        let chain = chain::chain_of(&names, backend.as_ref(), journal, (next, prev)).await.map_err(|e| match e {
            ChainError::Vault(e) => RebuildError::Vault(e),
            ChainError::Unreadable { name, source } => journal_err(name)(source),
            broken => RebuildError::Broken(broken.to_string()),
        })?;
        done.segments_skipped = (names.len() - chain.len()) as u64;
        if done.segments_skipped > 0 {
            tracing::warn!(
                skipped = done.segments_skipped,
                "the vault holds segments of more than one history; rebuilding the longest, the others are left in the vault"
            );
        }
        for name in chain {
            let bytes = backend.get(&name).await?;
            let (segment, records): (_, RawRecords) = journal.open_segment(&bytes).map_err(journal_err(&name))?;
            if segment.prev != prev || segment.first.0 != next {
                return Err(RebuildError::Broken(format!(
                    "{name} does not follow the segment before it: the chain is broken there"
                )));
            }
            done.records += records.len() as u64;
            journal.import(records).await.map_err(journal_err(&name))?;
            (prev, next) = (segment.hash, segment.last.0 + 1);
            done.segments += 1;
        }
        for name in backend.list("checkpoints/").await? {
            let bytes = backend.get(&name).await?;
            done.checkpoints += u64::from(journal.import_checkpoint(&bytes).await.map_err(journal_err(&name))?);
        }
        if next > 1 {
            journal.set_shipped(Seq(next - 1), &prev).await.map_err(journal_err("recording the shipped mark"))?;
        }
        if let Some(name) = backend.list("labels/").await?.pop() {
            let bytes = backend.get(&name).await?;
            let (generation, set) = journal.open_labels(&bytes).map_err(journal_err(&name))?;
            done.labels = journal.import_labels(&set.labels).await.map_err(journal_err(&name))? as u64;
            journal.import_holds(&set.holds).await.map_err(journal_err(&name))?;
            done.holds = set.holds.len() as u64;
            done.views = journal.import_views(&set.views).await.map_err(journal_err(&name))? as u64;
            for (bucket, seq) in &set.exact {
                journal.raise_exact_from(bucket, *seq).await.map_err(journal_err(&name))?;
            }
            journal.set_labels_shipped(generation, &set.digest()).await.map_err(journal_err(&name))?;
        }
        let (packs, chunks) = stores.vault.reindex().await?;
        (done.packs, done.chunks) = (packs as u64, chunks as u64);
    }
    // Absolute, so the data directory works from wherever the gateway or CLI is started.
    let vault = config.vault.location.as_ref().map(|v| match config.vault.s3_location() {
        Some(_) => v.clone(),
        None => absolute(Path::new(v)).display().to_string(),
    });
    let key_file = config.vault.key_file.as_deref().map(absolute);
    let stores_file = StoresFile { vault, key_file };
    let text = toml::to_string(&stores_file).expect("invariant: two optional strings serialize");
    let path = data_dir.join(STORES_FILE);
    write_private(&path, &text).map_err(|source| RebuildError::Io { path, source })?;
    done.seconds = start.elapsed().as_secs_f64();
    Ok(done)
}

/// `path` made absolute (and resolved, when it exists).
fn absolute(path: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(path).or_else(|_| std::path::absolute(path)).unwrap_or_else(|_| path.to_path_buf())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    rewind_vault::durable::create_new(path, text.as_bytes(), 0o600)
}
