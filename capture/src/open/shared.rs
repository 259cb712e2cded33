//! Opening a journal that several gateways share: reaching its database (waiting for it
//! at a gateway's start), this process's id among the gateways, and the check that the
//! journal belongs to the vault it is opened with.

use std::path::Path;
use std::sync::Arc;

use rewind_config::Config;
use rewind_journal::{Access, Engine, Journal, PostgresEngine, PostgresOptions};

use super::{OpenError, Purpose};

/// A new id for this process among the gateways of a shared journal: host name and a
/// random part, so that logs and `rewind` tell the gateways apart.
pub(super) fn new_owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect();
    let mut random = [0u8; 4];
    let _ = rewind_crypto::aead::random_bytes(&mut random);
    format!("{}-{}", if host.is_empty() { "gateway" } else { &host }, hex::encode(random))
}

/// Longest a gateway waits at start for its journal database to be reachable.
const DATABASE_START_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Connects to the shared journal (migrating its schema). A gateway waits for a database
/// that is not up yet, retrying; a command reports at once.
pub(super) async fn connect(config: &Config, purpose: Purpose) -> Result<(Arc<dyn Engine>, String), OpenError> {
    let url = config.journal.url.clone().unwrap_or_default();
    let mut options = PostgresOptions::new(url.clone());
    options.password = config.journal.password.as_ref().map(|p| zeroize::Zeroizing::new(p.expose().to_owned()));
    options.pool_size = config.journal.pool_size;
    options.connect_timeout = config.journal.connect_timeout.0;
    options.ca_file = config.journal.ca_file.clone();
    let deadline = std::time::Instant::now() + DATABASE_START_WAIT;
    loop {
        let attempt = options.clone();
        match tokio::task::spawn_blocking(move || PostgresEngine::connect(&attempt)).await {
            Ok(Ok(engine)) => return Ok((Arc::new(engine), url)),
            Ok(Err(e)) if purpose == Purpose::Serve && !e.is_refusal() && std::time::Instant::now() < deadline => {
                tracing::warn!(journal = %url, error = %e, "the journal database is not reachable yet; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Ok(Err(e)) => {
                return Err(OpenError::Journal {
                    path: url.into(),
                    detail: format!(
                        "{e}. Check journal.url (--journal / REWIND_JOURNAL_URL), that the database is up, the password (REWIND_JOURNAL_PASSWORD or journal.password_file) and, with TLS, the CA of the database's certificate (journal.ca_file)"
                    ),
                });
            }
            Err(e) => return Err(OpenError::Journal { path: url.into(), detail: e.to_string() }),
        }
    }
}

/// The journal records the id of its vault on first start; a journal (a shared database
/// above all) that names another vault belongs to another installation and is refused.
pub(super) async fn check_vault_id(
    journal: &Journal,
    vault_id: Option<&str>,
    place: &Path,
    location: &str,
    access: Access,
) -> Result<(), OpenError> {
    let fail = |detail: String| OpenError::Journal { path: place.to_path_buf(), detail };
    let Some(vault_id) = vault_id else {
        return Ok(()); // a format-1 vault has no id: the key check is all there is
    };
    let named = match access {
        Access::ReadWrite => journal.claim_vault_id(vault_id).await,
        Access::ReadOnly => journal.vault_id().map(|id| id.unwrap_or_else(|| vault_id.to_owned())),
    }
    .map_err(|e| fail(e.to_string()))?;
    if named != vault_id {
        return Err(fail(format!(
            "it belongs to the vault with id {named}, but the vault at {location} has id {vault_id}: this is the journal of another Rewind installation. Check --journal (REWIND_JOURNAL_URL) and --vault"
        )));
    }
    Ok(())
}

/// The `vault_id` in a vault's parameters (format 2 on).
pub(super) fn params_vault_id(bytes: &[u8]) -> Option<String> {
    let table: toml::Table = std::str::from_utf8(bytes).ok()?.parse().ok()?;
    table.get("vault_id")?.as_str().map(str::to_owned)
}
