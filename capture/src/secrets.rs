//! The data directory's own secrets, generated on first start so that a newcomer gets a
//! working endpoint without writing any configuration: the client key pair and the admin
//! token; and a warning for secret files other users can read.

use std::path::Path;

use rewind_config::{Secret, random_key_pair};
use serde::{Deserialize, Serialize};

/// The file, under the data dir, that holds a generated client key pair.
pub const CREDENTIALS_FILE: &str = "credentials.toml";

/// A client key pair as saved on disk.
#[derive(Serialize, Deserialize)]
struct SavedKey {
    access_key_id: String,
    secret_access_key: String,
}

/// The generated client key in `data_dir`: loaded if present, else created (mode 0600).
/// The flag says whether it was created now, so the caller prints it exactly once.
pub fn load_or_generate(data_dir: &Path) -> std::io::Result<(String, Secret, bool)> {
    let path = data_dir.join(CREDENTIALS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let saved: SavedKey = toml::from_str(&text).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is damaged ({e}); delete it to generate a new key pair", path.display()),
                )
            })?;
            Ok((saved.access_key_id, Secret::new(saved.secret_access_key), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (id, secret) = random_key_pair();
            let saved = SavedKey { access_key_id: id.clone(), secret_access_key: secret.expose().to_owned() };
            let text = toml::to_string(&saved).expect("invariant: two strings serialize");
            match rewind_vault::durable::create_new(&path, text.as_bytes(), 0o600) {
                Ok(()) => Ok((id, secret, true)),
                // Another gateway on this data dir generated one first: use that.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_generate(data_dir),
                Err(e) => Err(std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))),
            }
        }
        Err(e) => Err(std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))),
    }
}

/// The file, under the data dir, that holds a generated admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The admin API's token: the configured one, else the one in `<data_dir>/admin-token`,
/// created (mode 0600, 40 random characters) when missing.
pub fn admin_token(configured: Option<&Secret>, data_dir: &Path) -> std::io::Result<Secret> {
    if let Some(token) = configured {
        return Ok(token.clone());
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= rewind_config::MIN_ADMIN_TOKEN_LEN => Ok(Secret::new(text.trim())),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} holds fewer than {} characters, too short to guard the admin API; delete it to generate a new admin token",
                path.display(),
                rewind_config::MIN_ADMIN_TOKEN_LEN
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token: String =
                rand::Rng::sample_iter(rand::rng(), rand::distr::Alphanumeric).take(40).map(char::from).collect();
            match rewind_vault::durable::create_new(&path, format!("{token}\n").as_bytes(), 0o600) {
                Ok(()) => Ok(Secret::new(token)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => admin_token(None, data_dir),
                Err(e) => Err(std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))),
            }
        }
        Err(e) => Err(std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))),
    }
}

/// Warns about secret files other local users can read (review F19): the vault key file
/// decrypts the whole vault, `credentials.toml` and `admin-token` open the gateway. Not a
/// refusal: Kubernetes mounts secrets 0644 unless told otherwise.
pub fn warn_if_readable_by_others(config: &rewind_config::Config, data_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let key_file = config.vault.key_file.clone().unwrap_or_else(|| data_dir.join("vault.key"));
    let mut files = vec![data_dir.join(CREDENTIALS_FILE), data_dir.join(ADMIN_TOKEN_FILE)];
    if config.vault.passphrase.is_none() {
        files.push(key_file);
    }
    files.extend(config.credentials.admin_token_file.clone());
    for file in files {
        if let Ok(meta) = std::fs::metadata(&file)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %file.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "a secret file is readable by other users: restrict it with `chmod 600`"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn generates_once_with_private_mode_then_loads_the_same_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (id, secret, created) = load_or_generate(dir.path()).unwrap();
        assert!(created && id.starts_with("RWND") && id.len() == 20 && secret.expose().len() == 40);
        let mode = std::fs::metadata(dir.path().join(CREDENTIALS_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (id2, secret2, created2) = load_or_generate(dir.path()).unwrap();
        assert_eq!((id2, secret2.expose(), created2), (id, secret.expose(), false));
    }

    #[test]
    fn the_admin_token_is_generated_once_private_unless_configured() {
        let dir = tempfile::tempdir().unwrap();
        let token = admin_token(None, dir.path()).unwrap();
        assert_eq!(token.expose().len(), 40);
        let mode = std::fs::metadata(dir.path().join(ADMIN_TOKEN_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(admin_token(None, dir.path()).unwrap().expose(), token.expose());
        let configured = Secret::new("from-config-0123456789-0123456789");
        assert_eq!(admin_token(Some(&configured), dir.path()).unwrap().expose(), configured.expose());
    }

    #[test]
    fn a_short_admin_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "short\n").unwrap();
        let err = admin_token(None, dir.path()).err().unwrap().to_string();
        assert!(err.contains("too short") && err.contains("delete it"), "{err}");
    }

    #[test]
    fn a_damaged_file_says_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CREDENTIALS_FILE), "not toml = = =").unwrap();
        let err = load_or_generate(dir.path()).err().unwrap().to_string();
        assert!(err.contains("delete it"), "{err}");
    }
}
