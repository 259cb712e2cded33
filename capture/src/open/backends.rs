//! Where the vault lives: the primary's storage (a directory, or S3 with its Object Lock
//! setting), the handle garbage collection deletes with, and the mirrors'.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rewind_config::Config;
use rewind_vault::{Backend, LocalBackend, Reclaim, S3Backend};

use super::OpenError;

/// The backend named by the configuration; an S3 vault gets the Object Lock setting.
pub async fn backend(config: &Config) -> Result<(Arc<dyn Backend>, String), OpenError> {
    let (backend, _, location) = backend_and_reclaim(config).await?;
    Ok((backend, location))
}

/// [`backend`], and the handle garbage collection deletes with: on an S3 vault, a client of
/// `vault.gc_credentials` when they are set.
pub async fn backend_and_reclaim(config: &Config) -> Result<(Arc<dyn Backend>, Arc<dyn Reclaim>, String), OpenError> {
    backend_and_reclaim_of(&config.vault, &config.server.data_dir).await
}

/// [`backend_and_reclaim`] of the vault `v` (a local one defaults to `data_dir/vault`).
async fn backend_and_reclaim_of(
    v: &rewind_config::VaultConfig,
    data_dir: &Path,
) -> Result<(Arc<dyn Backend>, Arc<dyn Reclaim>, String), OpenError> {
    if let Some((bucket, prefix)) = v.s3_location() {
        let location = format!("s3://{bucket}/{prefix}");
        let endpoint = v.endpoint.clone().expect("invariant: validate() requires an S3 vault endpoint");
        let settings = rewind_config::UpstreamConfig { region: v.region.clone(), ..Default::default() };
        let client = |access_key_id: &str, secret: &rewind_config::Secret| {
            let target = crate::upstream::UpstreamTarget {
                endpoint: endpoint.clone(),
                access_key_id: access_key_id.to_owned(),
                secret: secret.clone(),
            };
            crate::upstream::client(&settings, &target)
        };
        let everyday = client(
            v.access_key_id.as_deref().expect("invariant: validate() requires S3 vault keys"),
            v.secret_access_key.as_ref().expect("invariant: validate() requires S3 vault keys"),
        );
        let backend = S3Backend::new(everyday, bucket, prefix);
        let backend = with_object_lock(backend, v, &location).await?;
        let reclaim = match v.gc_credentials.pair() {
            Some((id, secret)) => backend.with_client(client(id, secret)),
            None => backend.clone(),
        };
        return Ok((Arc::new(backend), Arc::new(reclaim), location));
    }
    let (backend, location) = local_backend_of(v, data_dir)?;
    Ok((Arc::new(backend.clone()), Arc::new(backend), location))
}

/// The mirrors `vault.mirrors` names, of the primary vault `primary` (with its deleting
/// handle `reclaim`): the primary's handles that queue for them, and the mirrors.
pub async fn mirrors(
    config: &Config,
    primary: Arc<dyn Backend>,
    reclaim: Arc<dyn Reclaim>,
) -> Result<(Arc<dyn Backend>, Arc<dyn Reclaim>, Option<Arc<crate::mirror::Mirrors>>), OpenError> {
    if config.vault.mirrors.is_empty() {
        return Ok((primary, reclaim, None));
    }
    let mut each = Vec::new();
    for (i, m) in config.vault.mirrors.iter().enumerate() {
        let (backend, reclaim, location) =
            backend_and_reclaim_of(&m.as_vault(&config.vault), &config.server.data_dir).await?;
        let mirror = crate::mirror::Mirror::new(i + 1, location, backend, reclaim);
        each.push(mirror.holding(config.vault.memory_budget.0));
    }
    let mirrors = crate::mirror::Mirrors::new(primary, each);
    Ok((
        Arc::new(crate::mirror::Mirrored::new(mirrors.clone())),
        Arc::new(crate::mirror::MirroredReclaim::new(reclaim, mirrors.clone())),
        Some(mirrors),
    ))
}

fn local_backend(config: &Config) -> Result<(LocalBackend, String), OpenError> {
    local_backend_of(&config.vault, &config.server.data_dir)
}

fn local_backend_of(v: &rewind_config::VaultConfig, data_dir: &Path) -> Result<(LocalBackend, String), OpenError> {
    let dir = v.location.as_ref().map_or_else(|| data_dir.join("vault"), PathBuf::from);
    let location = dir.display().to_string();
    let backend = LocalBackend::open(&dir).map_err(|source| OpenError::Vault { location: location.clone(), source })?;
    Ok((backend, location))
}

/// A serving gateway's claim on a local vault: two gateways shipping journals into one
/// vault would fork its history. An S3 vault has no lock to take; there a second
/// gateway's journal is behind the vault's at start (refused), or forks it later
/// (`rewind_journal_diverged`, and shipping stops).
pub(super) fn claim_local_vault(config: &Config) -> Result<Option<std::fs::File>, OpenError> {
    if config.vault.s3_location().is_some() {
        return Ok(None);
    }
    let (backend, location) = local_backend(config)?;
    match backend.claim_writer() {
        Ok(Some(lock)) => Ok(Some(lock)),
        Ok(None) => Err(OpenError::VaultInUse { location }),
        Err(source) => Err(OpenError::Vault { location, source }),
    }
}

/// Applies `vault.object_lock` to an S3 vault, checking the bucket supports what is asked.
async fn with_object_lock(
    backend: S3Backend,
    v: &rewind_config::VaultConfig,
    location: &str,
) -> Result<S3Backend, OpenError> {
    use rewind_config::ObjectLock;
    use rewind_vault::s3::ObjectLockMode;
    let mode = match v.object_lock {
        ObjectLock::Off => return Ok(backend),
        ObjectLock::Auto | ObjectLock::Governance => ObjectLockMode::Governance,
        ObjectLock::Compliance => ObjectLockMode::Compliance,
    };
    let enabled = match backend.bucket_has_object_lock().await {
        Ok(enabled) => enabled,
        Err(e) if v.object_lock == ObjectLock::Auto => {
            tracing::warn!(vault = location, error = %e, "cannot tell whether the vault bucket has Object Lock; writing without retention dates");
            false
        }
        Err(source) => return Err(OpenError::Vault { location: location.to_owned(), source }),
    };
    match (enabled, v.object_lock) {
        (true, _) => {
            tracing::info!(vault = location, mode = mode.as_str(), retention = ?v.object_lock_retention, "vault objects are written with an Object Lock retention date");
            Ok(backend.with_object_lock(mode, v.object_lock_retention.0))
        }
        (false, ObjectLock::Auto) => Ok(backend),
        (false, _) => Err(OpenError::Vault {
            location: location.to_owned(),
            source: rewind_vault::VaultError::Io(std::io::Error::other(
                "vault.object_lock asks for Object Lock but the vault bucket does not have it enabled: create the bucket with Object Lock, or set vault.object_lock = \"auto\" or \"off\"",
            )),
        }),
    }
}
