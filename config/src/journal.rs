//! Where the journal lives (`[journal]`): embedded RocksDB under the data directory, or a
//! PostgreSQL database that several gateways share.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::validate::read_secret;
use crate::{HumanDuration, Problem, Secret};

/// The journal's storage engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalBackend {
    /// Embedded, under `<data_dir>/journal`: one gateway.
    #[default]
    Rocksdb,
    /// A PostgreSQL database (`journal.url`): any number of gateways.
    Postgres,
}

/// `[journal]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// `rocksdb` (default) or `postgres`. Setting `--journal` or `REWIND_JOURNAL_URL`
    /// chooses `postgres`.
    pub backend: JournalBackend,
    /// `postgres://user@host:port/database`, without the password.
    pub url: Option<String>,
    /// File holding the database password (or `REWIND_JOURNAL_PASSWORD`).
    pub password_file: Option<PathBuf>,
    /// The loaded password.
    #[serde(skip)]
    pub password: Option<Secret>,
    /// PEM file of CAs trusted for the database's TLS certificate, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Connections each gateway keeps to the database.
    pub pool_size: usize,
    /// Longest wait for a connection to the database.
    pub connect_timeout: HumanDuration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            backend: JournalBackend::Rocksdb,
            url: None,
            password_file: None,
            password: None,
            ca_file: None,
            pool_size: 16,
            connect_timeout: HumanDuration::secs(10),
        }
    }
}

impl JournalConfig {
    /// A shared journal at `url` (from `--journal` or `REWIND_JOURNAL_URL`).
    pub fn set_url(&mut self, url: String) {
        self.url = Some(url);
        self.backend = JournalBackend::Postgres;
    }

    pub(crate) fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        if let Some(v) = env("REWIND_JOURNAL_URL") {
            self.set_url(v);
        }
        if let Some(v) = env("REWIND_JOURNAL_PASSWORD") {
            self.password = Some(Secret::new(v));
        }
        if let Some(v) = env("REWIND_JOURNAL_CA_FILE") {
            self.ca_file = Some(PathBuf::from(v));
        }
    }

    pub(crate) fn load_secret_file(&mut self, problems: &mut Vec<Problem>) {
        if let Some(path) = &self.password_file
            && self.password.is_none()
        {
            self.password = read_secret(path, "journal.password_file", problems);
        }
    }

    pub(crate) fn problems(&self) -> Vec<Problem> {
        let bad = |field: &str, message: &str| Problem { field: field.into(), message: message.into() };
        let mut problems = Vec::new();
        match (self.backend, &self.url) {
            (JournalBackend::Postgres, None) => problems.push(bad(
                "journal.url",
                "the postgres journal needs a URL: --journal postgres://user@host:port/database (or REWIND_JOURNAL_URL)",
            )),
            (JournalBackend::Rocksdb, Some(_)) => problems.push(bad(
                "journal.url",
                "is set but journal.backend is rocksdb: set backend = \"postgres\", or remove the URL",
            )),
            (JournalBackend::Postgres, Some(url)) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    problems.push(bad("journal.url", "must start with postgres:// (or postgresql://)"));
                } else if url_has_password(url) {
                    problems.push(bad(
                        "journal.url",
                        "carries a password: remove it from the URL and give it in REWIND_JOURNAL_PASSWORD or journal.password_file",
                    ));
                }
            }
            (JournalBackend::Rocksdb, None) => {}
        }
        if self.pool_size < 2 {
            problems.push(bad("journal.pool_size", "must be at least 2 (the writer holds one while others read)"));
        }
        problems
    }
}

/// Whether `url`'s user part (before the host) has a `user:password`.
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(user, _)| user.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn problems_with(env: &[(&str, &str)], toml: &str) -> Vec<String> {
        let mut config = Config::from_toml(toml, std::path::Path::new("t.toml")).unwrap();
        let env: std::collections::HashMap<String, String> =
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        config.apply_env(|k| env.get(k).cloned());
        config.journal.problems().into_iter().map(|p| format!("{}: {}", p.field, p.message)).collect()
    }

    #[test]
    fn a_journal_url_from_the_environment_chooses_postgres_and_bad_ones_are_named() {
        let mut config = Config::default();
        config.apply_env(|k| (k == "REWIND_JOURNAL_URL").then(|| "postgres://u@h/db".to_owned()));
        assert_eq!(config.journal.backend, JournalBackend::Postgres);
        assert!(config.journal.problems().is_empty());

        assert!(problems_with(&[], "").is_empty(), "the embedded default needs nothing");
        let no_url = problems_with(&[], "[journal]\nbackend = \"postgres\"\n");
        assert!(no_url[0].contains("needs a URL"), "{no_url:?}");
        let stray = problems_with(&[], "[journal]\nurl = \"postgres://u@h/db\"\n");
        assert!(stray[0].contains("backend is rocksdb"), "{stray:?}");
        let with_password = problems_with(&[("REWIND_JOURNAL_URL", "postgres://u:hunter2@h/db")], "");
        assert!(with_password[0].contains("carries a password"), "{with_password:?}");
        assert!(!with_password[0].contains("hunter2"), "the password is never repeated");
        let scheme = problems_with(&[("REWIND_JOURNAL_URL", "mysql://u@h/db")], "");
        assert!(scheme[0].contains("postgres://"), "{scheme:?}");
    }

    #[test]
    fn a_password_in_the_url_is_found_and_nothing_else_is_taken_for_one() {
        assert!(url_has_password("postgres://u:pw@h:5432/db"));
        assert!(!url_has_password("postgres://u@h:5432/db"));
        assert!(!url_has_password("postgres://h:5432/db"));
        assert!(!url_has_password("postgres://u@h/db?options=a:b@c"));
    }
}
