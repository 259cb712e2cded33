//! The credentials garbage collection deletes from an S3 vault with (`vault.gc_credentials`).
//! They are kept apart from the vault's everyday ones so that the gateway's own key can
//! stay add-only (G4): an operator gives delete rights to this key alone.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::validate::read_secret;
use crate::{Problem, Secret};

/// What garbage collection deletes with on an S3 vault. Unset, it uses the vault's own
/// credentials (which then need delete rights, or garbage collection reports each pack it
/// could not delete).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcCredentials {
    /// Access key id (also `REWIND_VAULT_GC_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// File holding the secret key (or `REWIND_VAULT_GC_SECRET_ACCESS_KEY`).
    pub secret_access_key_file: Option<PathBuf>,
    /// The loaded secret key.
    #[serde(skip)]
    pub secret_access_key: Option<Secret>,
}

impl GcCredentials {
    /// Both halves, when both are set.
    pub fn pair(&self) -> Option<(&str, &Secret)> {
        Some((self.access_key_id.as_deref()?, self.secret_access_key.as_ref()?))
    }

    pub(crate) fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        if let Some(v) = env("REWIND_VAULT_GC_ACCESS_KEY_ID") {
            self.access_key_id = Some(v);
        }
        if let Some(v) = env("REWIND_VAULT_GC_SECRET_ACCESS_KEY") {
            self.secret_access_key = Some(Secret::new(v));
        }
    }

    pub(crate) fn load_secret_file(&mut self, problems: &mut Vec<Problem>) {
        if let Some(path) = &self.secret_access_key_file
            && self.secret_access_key.is_none()
        {
            self.secret_access_key = read_secret(path, "vault.gc_credentials.secret_access_key_file", problems);
        }
    }

    /// Half a pair is a mistake worth stopping for: deletion would silently use the
    /// everyday key instead.
    pub(crate) fn problem(&self) -> Option<Problem> {
        (self.access_key_id.is_some() != self.secret_access_key.is_some()).then(|| Problem {
            field: "vault.gc_credentials".into(),
            message: "set both access_key_id and the secret (secret_access_key_file or REWIND_VAULT_GC_SECRET_ACCESS_KEY), or neither".into(),
        })
    }
}
