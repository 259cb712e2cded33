//! Opening (or, on first start, creating) the vault and the journal. What is particular to
//! a journal several gateways share (reaching the database, the vault id, gateway ids) is
//! in `open/shared.rs`.
//!
//! A vault holds its master key wrapped (`keys/master`) and its parameters (`vault.toml`);
//! the key file (or passphrase) that unwraps it lives outside the vault. The journal's
//! records are encrypted with a key derived from the same master key, so a journal and a
//! vault that do not belong together are detected at start-up, not discovered at restore.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rewind_config::{Config, JournalBackend};
use rewind_crypto::keys::{key_file_text, parse_key_file};
use rewind_crypto::{Argon2Params, KeySet, SecretKey, Unlock, WrappedMasterKey};
use rewind_journal::{Access, Engine, Journal, JournalError, RocksEngine};
use rewind_model::ChunkId;
use rewind_vault::{
    Backend, ChunkIndex, ChunkLocation, ChunkSizes, PackEntry, Reclaim, Vault, VaultError, VaultSettings,
};

mod backends;
mod shared;

use backends::claim_local_vault;
pub use backends::{backend, backend_and_reclaim, mirrors};

/// Vault object holding the wrapped master key.
pub const MASTER_KEY_OBJECT: &str = "keys/master";
/// Vault object holding the vault's parameters.
pub const VAULT_PARAMS_OBJECT: &str = "vault.toml";
/// Longest a gateway waits for another that is creating the same new vault.
const VAULT_CREATION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Key file name under the data directory when none is configured.
pub const DEFAULT_KEY_FILE: &str = "vault.key";
/// The journal's directory under the data directory.
pub const JOURNAL_DIR: &str = "journal";

/// Why the stores could not be opened; each message says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The vault cannot be reached or read.
    #[error("vault at {location}: {source}")]
    Vault {
        /// Where.
        location: String,
        /// Why.
        #[source]
        source: VaultError,
    },
    /// The vault exists but nothing offered unlocks it.
    #[error("cannot unlock the vault at {location}: {detail}")]
    Locked {
        /// Where.
        location: String,
        /// Why, and what to pass.
        detail: String,
    },
    /// The journal and the vault do not belong together, or the journal is unusable.
    #[error("journal at {path}: {detail}")]
    Journal {
        /// Where.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The key file could not be written.
    #[error("cannot create the key file {path}: {source}")]
    KeyFile {
        /// Where.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Another process has the journal open.
    #[error(
        "the journal in {} is in use: a gateway (or another rewind command) is running on it. Stop it, or go through the running gateway's admin API instead of --data-dir",
        path.display()
    )]
    InUse {
        /// The journal's directory.
        path: PathBuf,
    },
    /// Another gateway writes to this local vault.
    #[error(
        "the vault at {location} is in use: another gateway is writing to it. Each gateway needs its own vault; stop the other one, or give this one --vault"
    )]
    VaultInUse {
        /// Where the vault is.
        location: String,
    },
    /// The journal's storage is damaged, or lost records the vault vouches for: it must
    /// not be written to, or the vault's copy of history would fork.
    #[error("journal at {}: {problem}. {repair}", path.display())]
    Damaged {
        /// The journal's directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// The command that rebuilds a data directory from the vault.
        repair: String,
    },
}

/// What the stores are opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A gateway: read-write, created on first start, checked against the vault first.
    Serve,
    /// `rewind rebuild`: a new, empty journal filled from the vault.
    Rebuild,
    /// Offline reads (`rewind --data-dir … ls`): read-only, nothing recovered, shipped or
    /// created; a disagreement with the vault is for `verify` to report.
    Inspect,
}

/// An open journal and vault sharing one key.
pub struct Stores {
    /// The journal.
    pub journal: Arc<Journal>,
    /// The vault.
    pub vault: Arc<Vault>,
    /// The vault's storage, for what is not chunks (journal segments, checkpoints).
    pub backend: Arc<dyn Backend>,
    /// What garbage collection deletes packs with; nothing else uses it.
    pub reclaim: Arc<dyn Reclaim>,
    /// The vault's mirrors, when it has any: `backend` and `reclaim` queue for them, and
    /// the gateway runs their copying ([`crate::mirror::Mirrors::run`]).
    pub mirrors: Option<Arc<crate::mirror::Mirrors>>,
    /// Where the vault is, for messages.
    pub vault_location: String,
    /// Set when this start created the vault and its key file.
    pub created_key_file: Option<PathBuf>,
    /// The keys derived from the vault's master key.
    pub keys: Arc<KeySet>,
    /// A serving gateway's lock on its local vault, held as long as the stores are.
    _writer_lock: Option<std::fs::File>,
}

/// The chunk index kept in the journal's database (so one fsync'd store holds both).
pub struct JournalIndex(pub Arc<Journal>);

#[async_trait::async_trait]
impl ChunkIndex for JournalIndex {
    fn lookup(&self, id: &ChunkId) -> Result<Option<ChunkLocation>, VaultError> {
        match self.0.chunk_get(id.as_bytes()).map_err(index_error)? {
            Some(bytes) => ChunkLocation::decode(*id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    async fn insert_pack(&self, pack: &str, entries: &[PackEntry]) -> Result<(), VaultError> {
        self.0.chunk_put_all(ChunkLocation::rows(pack, entries)).await.map_err(index_error)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn index_error(e: JournalError) -> VaultError {
    VaultError::Index { class: e.class(), source: Arc::new(e) }
}

/// Opens the vault and journal for `purpose`, creating both (and the key file) on a
/// gateway's first start.
pub async fn open(config: &Config, purpose: Purpose) -> Result<Stores, OpenError> {
    let (backend, reclaim, location) = backend_and_reclaim(config).await?;
    let (backend, reclaim, mirrors) = mirrors(config, backend, reclaim).await?;
    let data_dir = &config.server.data_dir;
    let journal_dir = data_dir.join(JOURNAL_DIR);
    let vault_err = |source| OpenError::Vault { location: location.clone(), source };
    let key_file = config.vault.key_file.clone().unwrap_or_else(|| data_dir.join(DEFAULT_KEY_FILE));
    let passphrase = config.vault.passphrase.as_ref().map(|p| p.expose().to_owned());

    // A shared journal is reached first: whether it already holds history decides below
    // whether an empty vault may be created.
    let shared = match config.journal.backend {
        JournalBackend::Postgres => Some(shared::connect(config, purpose).await?),
        JournalBackend::Rocksdb => None,
    };
    let has_history = match &shared {
        Some((engine, url)) => engine
            .get(rewind_journal::Table::Meta, rewind_journal::layout::HEAD_KEY)
            .map_err(|e| OpenError::Journal { path: url.into(), detail: e.to_string() })?
            .is_some(),
        None => journal_dir.join("CURRENT").exists(),
    };
    let journal_place = shared.as_ref().map_or_else(|| journal_dir.clone(), |(_, url)| PathBuf::from(url));

    // Gateways started together on a new vault race to create it: the one whose parameters
    // object lands first creates it, the others wait for its master key and open it.
    let racing_until = std::time::Instant::now() + VAULT_CREATION_WAIT;
    let (master, sizes, created_key_file, vault_id) = loop {
        break match backend.get(MASTER_KEY_OBJECT).await {
            Ok(wrapped) => {
                let wrapped = WrappedMasterKey { bytes: wrapped.to_vec() };
                let master = unlock(&wrapped, &key_file, passphrase.as_deref(), &location)?;
                let params = backend.get(VAULT_PARAMS_OBJECT).await.map_err(vault_err)?;
                let sizes = parse_params(&params, &KeySet::derive(&master), &location)?;
                (master, sizes, None, shared::params_vault_id(&params))
            }
            Err(VaultError::NotFound { .. }) if purpose == Purpose::Inspect => {
                return Err(OpenError::Locked {
                    location,
                    detail:
                        "there is no vault there (no keys/master): check --vault, or the data directory's stores.toml"
                            .into(),
                });
            }
            Err(VaultError::NotFound { .. }) => {
                if has_history {
                    return Err(OpenError::Locked {
                        location,
                        detail: format!(
                            "the vault is empty but the journal at {} already has history: is the vault location right (--vault)? Refusing to start a new vault under an existing journal.",
                            journal_place.display()
                        ),
                    });
                }
                match create(&*backend, &key_file, passphrase.as_deref(), &location).await {
                    Ok((master, sizes, created, vault_id)) => (master, sizes, created, Some(vault_id)),
                    Err(OpenError::Vault { source: VaultError::AlreadyExists { .. }, .. })
                        if std::time::Instant::now() < racing_until =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(source) => return Err(vault_err(source)),
        };
    };

    let keys = Arc::new(KeySet::derive(&master));
    let access = if purpose == Purpose::Inspect { Access::ReadOnly } else { Access::ReadWrite };
    let repair = || repair_command(&location, config.vault.key_file.as_deref().unwrap_or(&key_file));
    let engine: Arc<dyn Engine> = match shared {
        Some((engine, _)) => engine,
        None => Arc::new(RocksEngine::open(&journal_dir, access).map_err(|e| journal_error(e, &journal_dir, &repair))?),
    };
    // On a shared journal this process's intents carry its own id, and its liveness lease
    // is taken before it appends any: another gateway resolves them only once it lapses.
    let owner = if engine.shared() { shared::new_owner_id() } else { String::new() };
    let journal = Journal::over_as(engine, keys.clone(), access, rewind_journal::system_clock(), &owner)
        .map_err(|e| journal_error(e, &journal_place, &repair))?;
    let journal_dir = journal_place;
    if !owner.is_empty() && access == Access::ReadWrite {
        let live = rewind_journal::leases::liveness(&owner);
        journal
            .lease_renew(&live, rewind_journal::leases::LEASE_TTL)
            .await
            .map_err(|e| OpenError::Journal { path: journal_dir.clone(), detail: e.to_string() })?;
        tracing::info!(gateway = %owner, "joined the shared journal");
    }
    check_journal_key(&journal, &journal_dir)?;
    shared::check_vault_id(&journal, vault_id.as_deref(), &journal_dir, &location, access).await?;
    // After the journal's own lock, so a second gateway on one data directory hears that.
    // Gateways sharing a journal share its vault: their packs are named by content and
    // their chunk index is the journal's.
    let writer_lock = if purpose == Purpose::Serve && config.journal.backend == JournalBackend::Rocksdb {
        claim_local_vault(config)?
    } else {
        None
    };
    if purpose == Purpose::Serve {
        match crate::ship::check_against_vault(&journal, &*backend).await {
            Ok(()) => {}
            Err(crate::ship::ShipError::Diverged(d)) => {
                return Err(OpenError::Damaged { path: journal_dir, problem: d.to_string(), repair: repair() });
            }
            Err(crate::ship::ShipError::Vault(source)) => return Err(OpenError::Vault { location, source }),
            Err(crate::ship::ShipError::Journal(e)) => {
                return Err(OpenError::Journal { path: journal_dir, detail: e.to_string() });
            }
        }
    }
    let journal = Arc::new(journal);
    let settings = VaultSettings {
        sizes,
        compression: (config.vault.compression_level > 0).then_some(config.vault.compression_level),
        memory_budget: usize::try_from(config.vault.memory_budget.0).unwrap_or(usize::MAX),
    };
    let vault = Arc::new(Vault::new(keys.clone(), backend.clone(), Arc::new(JournalIndex(journal.clone())), settings));
    Ok(Stores {
        journal,
        vault,
        backend,
        reclaim,
        mirrors,
        vault_location: location,
        created_key_file,
        keys,
        _writer_lock: writer_lock,
    })
}

/// What opening the journal's storage failed with, for an operator.
fn journal_error(e: JournalError, place: &Path, repair: &dyn Fn() -> String) -> OpenError {
    match e {
        JournalError::InUse { path } => OpenError::InUse { path },
        e if e.class() == rewind_journal::ErrorClass::Corruption => OpenError::Damaged {
            path: place.to_path_buf(),
            problem: format!("its storage is damaged ({e})"),
            repair: repair(),
        },
        e => OpenError::Journal { path: place.to_path_buf(), detail: e.to_string() },
    }
}

/// How to rebuild a data directory from the vault at `location` with `key_file`.
fn repair_command(location: &str, key_file: &Path) -> String {
    format!(
        "Do not write to it: move the data directory aside, then rebuild one from the vault with `rewind rebuild --vault {location} --key-file {} --data-dir <new dir>` and start the gateway on that (docs/OPERATIONS.md, \"The journal is damaged\")",
        key_file.display()
    )
}

/// The last record must decrypt with this vault's key, or the two do not belong together.
fn check_journal_key(journal: &Journal, dir: &Path) -> Result<(), OpenError> {
    let fail = |detail: String| OpenError::Journal { path: dir.to_path_buf(), detail };
    let head = journal.head().map_err(|e| fail(e.to_string()))?;
    if head.seq.0 > 0 {
        journal.record(head.seq).map_err(|_| {
            fail("its records do not decrypt with this vault's key: the journal belongs to another vault (check --vault and --key-file)".into())
        })?;
    }
    Ok(())
}

fn unlock(
    wrapped: &WrappedMasterKey,
    key_file: &Path,
    passphrase: Option<&str>,
    location: &str,
) -> Result<SecretKey, OpenError> {
    let locked = |detail: String| OpenError::Locked { location: location.to_owned(), detail };
    let result = match passphrase {
        Some(p) => wrapped.unwrap(Unlock::Passphrase(p)),
        None => {
            let text = std::fs::read_to_string(key_file).map_err(|e| {
                locked(format!(
                    "cannot read the key file {}: {e}. Pass the vault's key file with --key-file (or REWIND_KEY_FILE), or its passphrase in REWIND_VAULT_PASSPHRASE.",
                    key_file.display()
                ))
            })?;
            let key = parse_key_file(&text).map_err(|e| locked(format!("{}: {e}", key_file.display())))?;
            wrapped.unwrap(Unlock::KeyFile(&key))
        }
    };
    result.map_err(|e| locked(format!("{e}. Check --key-file / REWIND_VAULT_PASSPHRASE.")))
}

async fn create(
    backend: &dyn Backend,
    key_file: &Path,
    passphrase: Option<&str>,
    location: &str,
) -> Result<(SecretKey, ChunkSizes, Option<PathBuf>, String), OpenError> {
    let vault_err = |source| OpenError::Vault { location: location.to_owned(), source };
    let crypto_err = |e: rewind_crypto::CryptoError| vault_err(VaultError::Crypto(e));
    let master = SecretKey::generate().map_err(crypto_err)?;
    let mut vault_id = [0u8; 16];
    rewind_crypto::aead::random_bytes(&mut vault_id).map_err(crypto_err)?;
    let mut generated = None;
    let wrapped = match passphrase {
        Some(p) => WrappedMasterKey::wrap(&master, vault_id, Unlock::Passphrase(p), Argon2Params::default()),
        None => {
            let kek = match std::fs::read_to_string(key_file) {
                // An operator-provided key file for a new vault.
                Ok(text) => parse_key_file(&text).map_err(|e| OpenError::Locked {
                    location: location.to_owned(),
                    detail: format!("{}: {e}", key_file.display()),
                })?,
                Err(_) => {
                    let kek = SecretKey::generate().map_err(crypto_err)?;
                    if let Some(parent) = key_file.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|source| OpenError::KeyFile { path: key_file.to_path_buf(), source })?;
                    }
                    match rewind_vault::durable::create_new(key_file, key_file_text(&kek).as_bytes(), 0o600) {
                        Ok(()) => {
                            generated = Some(key_file.to_path_buf());
                            kek
                        }
                        // Another gateway starting on this vault made it a moment ago.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            let text = std::fs::read_to_string(key_file)
                                .map_err(|source| OpenError::KeyFile { path: key_file.to_path_buf(), source })?;
                            parse_key_file(&text).map_err(|e| OpenError::Locked {
                                location: location.to_owned(),
                                detail: format!("{}: {e}", key_file.display()),
                            })?
                        }
                        Err(source) => return Err(OpenError::KeyFile { path: key_file.to_path_buf(), source }),
                    }
                }
            };
            WrappedMasterKey::wrap(&master, vault_id, Unlock::KeyFile(&kek), Argon2Params::default())
        }
    };
    let wrapped = wrapped.map_err(crypto_err)?;
    let sizes = ChunkSizes::default();
    let vault_id = hex::encode(vault_id);
    let mac = params_mac(&KeySet::derive(&master), &vault_id, sizes);
    let params = format!(
        "# Rewind vault parameters; written once when the vault was created.\nformat = 2\nvault_id = \"{vault_id}\"\nchunk_min = {}\nchunk_avg = {}\nchunk_max = {}\nmac = \"{mac}\"\n",
        sizes.min, sizes.avg, sizes.max
    );
    backend.put(VAULT_PARAMS_OBJECT, Bytes::from(params)).await.map_err(vault_err)?;
    backend.put(MASTER_KEY_OBJECT, Bytes::from(wrapped.bytes)).await.map_err(vault_err)?;
    tracing::info!(vault = %location, "created a new vault");
    Ok((master, sizes, generated, vault_id))
}

/// The MAC over a vault's parameters (format 2): whoever can write to the vault but does
/// not hold its key cannot change them unnoticed (review F20).
fn params_mac(keys: &KeySet, vault_id: &str, sizes: ChunkSizes) -> String {
    let text = format!("rewind vault parameters v2\n{vault_id}\n{}\n{}\n{}\n", sizes.min, sizes.avg, sizes.max);
    hex::encode(blake3::keyed_hash(keys.vault_params.expose(), text.as_bytes()).as_bytes())
}

fn parse_params(bytes: &[u8], keys: &KeySet, location: &str) -> Result<ChunkSizes, OpenError> {
    let bad = |detail: String| OpenError::Vault {
        location: location.to_owned(),
        source: VaultError::Corrupt { what: VAULT_PARAMS_OBJECT.into(), detail },
    };
    let table: toml::Table = std::str::from_utf8(bytes)
        .map_err(|e| bad(e.to_string()))?
        .parse()
        .map_err(|e: toml::de::Error| bad(e.to_string()))?;
    let format = table.get("format").and_then(toml::Value::as_integer);
    if !matches!(format, Some(1 | 2)) {
        return Err(bad("unknown vault format; a newer Rewind wrote this vault".into()));
    }
    let size = |name: &str| {
        table
            .get(name)
            .and_then(toml::Value::as_integer)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| bad(format!("{name} is missing")))
    };
    let sizes = ChunkSizes { min: size("chunk_min")?, avg: size("chunk_avg")?, max: size("chunk_max")? };
    sizes.check().map_err(bad)?;
    if format == Some(2) {
        let text = |name: &str| table.get(name).and_then(toml::Value::as_str).unwrap_or_default();
        let expected = params_mac(keys, text("vault_id"), sizes);
        let given = text("mac");
        let same = given.len() == expected.len()
            && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return Err(bad("its parameters were altered: the MAC does not match this vault's key".into()));
        }
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> KeySet {
        KeySet::derive(&SecretKey::generate().unwrap())
    }

    fn params(keys: &KeySet, sizes: ChunkSizes) -> String {
        format!(
            "format = 2\nvault_id = \"abc\"\nchunk_min = {}\nchunk_avg = {}\nchunk_max = {}\nmac = \"{}\"\n",
            sizes.min,
            sizes.avg,
            sizes.max,
            params_mac(keys, "abc", sizes)
        )
    }

    #[test]
    fn vault_parameters_are_authenticated_and_bounded() {
        let k = keys();
        let text = params(&k, ChunkSizes::default());
        assert_eq!(parse_params(text.as_bytes(), &k, "v").unwrap(), ChunkSizes::default());
        // Edited sizes (review F20: 64/128/256 made every upload panic) fail the MAC.
        let edited = text.replace("chunk_min = 524288", "chunk_min = 64");
        let err = parse_params(edited.as_bytes(), &k, "v").unwrap_err().to_string();
        assert!(err.contains("altered"), "{err}");
        // Another vault's key does not vouch for them either.
        assert!(parse_params(text.as_bytes(), &keys(), "v").is_err());
        // A format-1 file (no MAC) is held to the bounds.
        let old = "format = 1\nchunk_min = 64\nchunk_avg = 128\nchunk_max = 256\n";
        let err = parse_params(old.as_bytes(), &k, "v").unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
        let old = "format = 1\nchunk_min = 524288\nchunk_avg = 1048576\nchunk_max = 8388608\n";
        assert_eq!(parse_params(old.as_bytes(), &k, "v").unwrap(), ChunkSizes::default());
    }
}
