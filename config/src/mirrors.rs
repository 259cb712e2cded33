//! Mirrors: further vaults every object of the primary vault is copied to, in the
//! background (`[[vault.mirrors]]`, `REWIND_VAULT_MIRRORS`, `--vault-mirror`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::validate::read_secret;
use crate::{HumanDuration, ObjectLock, Problem, Secret, VaultConfig};

/// One mirror. Unset fields of an S3 mirror (endpoint, region, credentials, Object Lock)
/// are the primary vault's.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// A directory, or `s3://bucket/prefix`.
    pub location: String,
    /// Endpoint URL of an S3 mirror.
    pub endpoint: Option<String>,
    /// Region used to sign its requests.
    pub region: Option<String>,
    /// Its access key id.
    pub access_key_id: Option<String>,
    /// File holding its secret key.
    pub secret_access_key_file: Option<PathBuf>,
    /// The loaded secret key.
    #[serde(skip)]
    pub secret_access_key: Option<Secret>,
    /// S3 Object Lock for what is copied there.
    pub object_lock: Option<ObjectLock>,
    /// How long each copied object is locked from its creation.
    pub object_lock_retention: Option<HumanDuration>,
}

impl MirrorConfig {
    /// A mirror at `location`, everything else as the primary's.
    pub fn at(location: impl Into<String>) -> Self {
        Self { location: location.into(), ..Self::default() }
    }

    /// This mirror as a vault: the primary's settings, with what this mirror sets.
    pub fn as_vault(&self, primary: &VaultConfig) -> VaultConfig {
        let own_keys = self.access_key_id.is_some();
        VaultConfig {
            location: Some(self.location.clone()),
            endpoint: self.endpoint.clone().or_else(|| primary.endpoint.clone()),
            region: self.region.clone().unwrap_or_else(|| primary.region.clone()),
            access_key_id: if own_keys { self.access_key_id.clone() } else { primary.access_key_id.clone() },
            secret_access_key_file: None,
            secret_access_key: if own_keys {
                self.secret_access_key.clone()
            } else {
                primary.secret_access_key.clone()
            },
            object_lock: self.object_lock.unwrap_or(primary.object_lock),
            object_lock_retention: self.object_lock_retention.unwrap_or(primary.object_lock_retention),
            mirrors: Vec::new(),
            ..primary.clone()
        }
    }

    pub(crate) fn load_secret_file(&mut self, field: &str, problems: &mut Vec<Problem>) {
        if let Some(path) = &self.secret_access_key_file
            && self.secret_access_key.is_none()
        {
            self.secret_access_key = read_secret(path, field, problems);
        }
    }
}

/// Adds the comma-separated locations of `REWIND_VAULT_MIRRORS` (or `--vault-mirror`) not
/// already configured.
pub fn add_locations<'a>(mirrors: &mut Vec<MirrorConfig>, locations: impl IntoIterator<Item = &'a str>) {
    for location in locations.into_iter().map(str::trim).filter(|l| !l.is_empty()) {
        if !mirrors.iter().any(|m| m.location == location) {
            mirrors.push(MirrorConfig::at(location));
        }
    }
}
