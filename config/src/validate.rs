//! Validation: every problem of a configuration found at once, each naming its setting and
//! what to do.

use std::net::SocketAddr;
use std::path::Path;

use crate::{Config, MIN_ADMIN_TOKEN_LEN, Problem, Secret};

impl Config {
    /// Every problem with the current values; empty when the configuration is usable.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut bad = |field: &str, message: String| problems.push(Problem { field: field.into(), message });
        for (field, addr) in
            [("server.listen", &self.server.listen), ("server.admin_listen", &self.server.admin_listen)]
        {
            if addr.parse::<SocketAddr>().is_err() {
                bad(field, format!("{addr:?} is not an address; write IP:PORT, e.g. 127.0.0.1:9000"));
            }
        }
        // Port 0 asks the OS for a free port, so two of those never collide.
        if self.server.listen == self.server.admin_listen && !self.server.listen.ends_with(":0") {
            bad("server.admin_listen", "must differ from server.listen".into());
        }
        for host in &self.server.admin_hosts {
            if !is_host_name(host) {
                bad("server.admin_hosts", format!("{host:?} is not a host name (letters, digits, '-' and '.')"));
            }
        }
        for domain in &self.server.base_domains {
            if !is_host_name(domain) {
                bad("server.base_domains", format!("{domain:?} is not a host name (letters, digits, '-' and '.')"));
            }
        }
        if self.server.max_connections == 0 {
            bad("server.max_connections", "must be at least 1".into());
        }
        for (field, d) in [
            ("server.header_read_timeout", self.server.header_read_timeout),
            ("server.body_idle_timeout", self.server.body_idle_timeout),
            ("upstream.connect_timeout", self.upstream.connect_timeout),
        ] {
            if d.0.is_zero() {
                bad(field, "must be longer than zero".into());
            }
        }
        if self.server.max_xml_body_size.0 < 64 * 1024 {
            bad("server.max_xml_body_size", "must be at least 64KiB or ordinary requests fail".into());
        }
        if let Some(endpoint) = &self.upstream.endpoint
            && let Err(msg) = check_endpoint(endpoint)
        {
            bad("upstream.endpoint", msg);
        }
        if self.upstream.region.trim().is_empty() {
            bad("upstream.region", "must not be empty (use us-east-1 when the store ignores regions)".into());
        }
        // Explicit keys only: a default credential chain would probe cloud metadata
        // endpoints, and a gateway must never sign with credentials nobody chose.
        if self.upstream.endpoint.is_some()
            && (self.upstream.access_key_id.is_none() || self.upstream.secret_access_key.is_none())
        {
            bad(
                "upstream.access_key_id",
                "an upstream endpoint needs an access key id and a secret key (REWIND_UPSTREAM_ACCESS_KEY_ID and REWIND_UPSTREAM_SECRET_ACCESS_KEY, or upstream.access_key_id and upstream.secret_access_key_file)".into(),
            );
        }
        // A short token can be guessed; an empty one (`REWIND_ADMIN_TOKEN=` in an env file)
        // would open the admin API to anyone who reaches its port.
        if let Some(token) = &self.credentials.admin_token
            && token.expose().len() < MIN_ADMIN_TOKEN_LEN
        {
            bad(
                "credentials.admin_token",
                format!(
                    "the admin token (REWIND_ADMIN_TOKEN or credentials.admin_token_file) must be at least {MIN_ADMIN_TOKEN_LEN} characters; unset it to have one generated into <data-dir>/admin-token"
                ),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, key) in self.credentials.client_keys.iter().enumerate() {
            let field = format!("credentials.client_keys[{i}]");
            if key.access_key_id.len() < 3 || !key.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                bad(&field, "access_key_id must be at least 3 letters or digits".into());
            }
            if !seen.insert(&key.access_key_id) {
                bad(&field, format!("access key id {:?} is listed twice", key.access_key_id));
            }
            match &key.secret_access_key {
                None => bad(&field, "has no secret: set secret_access_key_file".into()),
                Some(s) if s.expose().len() < 16 => bad(&field, "secret key must be at least 16 characters".into()),
                Some(_) => {}
            }
        }
        for pattern in &self.protection.buckets {
            if pattern.is_empty() || pattern[..pattern.len() - 1].contains('*') {
                bad("protection.buckets", format!("{pattern:?}: use a bucket name or a prefix ending in one '*'"));
            }
        }
        self.validate_vault(&mut bad);
        if let Err(e) = tracing_filter_syntax(&self.telemetry.log_level) {
            bad("telemetry.log_level", e);
        }
        self.retention.validate(&mut problems);
        self.tripwire.validate(&mut problems);
        problems.extend(self.journal.problems());
        problems
    }
}

impl Config {
    fn validate_vault(&self, bad: &mut impl FnMut(&str, String)) {
        let v = &self.vault;
        match v.s3_location() {
            Some((bucket, _)) => {
                if bucket.is_empty() {
                    bad("vault.location", "an S3 vault is written s3://bucket or s3://bucket/prefix".into());
                }
                match &v.endpoint {
                    None => bad("vault.endpoint", "an S3 vault needs an endpoint (REWIND_VAULT_ENDPOINT)".into()),
                    Some(e) => {
                        if let Err(msg) = check_endpoint(e) {
                            bad("vault.endpoint", msg);
                        }
                    }
                }
                if v.access_key_id.is_none() || v.secret_access_key.is_none() {
                    bad(
                        "vault.access_key_id",
                        "an S3 vault needs its own access key id and secret key (REWIND_VAULT_ACCESS_KEY_ID and REWIND_VAULT_SECRET_ACCESS_KEY); use a credential that can write but not delete".into(),
                    );
                }
                if self.upstream.endpoint.is_some()
                    && v.endpoint == self.upstream.endpoint
                    && v.access_key_id.is_some()
                    && v.access_key_id == self.upstream.access_key_id
                {
                    bad(
                        "vault.access_key_id",
                        "the vault must not use the upstream's credentials: whoever holds those could then destroy history".into(),
                    );
                }
            }
            None => {
                if v.location.as_deref().is_some_and(|l| l.contains("://")) {
                    bad("vault.location", "use a directory path or s3://bucket/prefix".into());
                }
            }
        }
        for (i, m) in v.mirrors.iter().enumerate() {
            let field = format!("vault.mirrors[{i}]");
            let as_vault = m.as_vault(v);
            if m.location.is_empty() {
                bad(&field, "a mirror needs a location: a directory or s3://bucket/prefix".into());
            } else if Some(&m.location) == v.location.as_ref()
                || v.mirrors[..i].iter().any(|o| o.location == m.location)
            {
                bad(&field, format!("{} is named twice: a mirror is a vault of its own", m.location));
            } else if as_vault.s3_location().is_some() {
                if as_vault.endpoint.is_none() {
                    bad(&field, "an S3 mirror needs an endpoint (its own, or the primary vault's)".into());
                }
                if as_vault.access_key_id.is_none() || as_vault.secret_access_key.is_none() {
                    bad(&field, "an S3 mirror needs credentials (its own, or the primary vault's)".into());
                }
            } else if m.location.contains("://") {
                bad(&field, "use a directory path or s3://bucket/prefix".into());
            }
        }
        if let Some(p) = v.gc_credentials.problem() {
            bad(&p.field, p.message);
        }
        if !(0..=19).contains(&v.compression_level) {
            bad("vault.compression_level", "must be 0 (off) or a zstd level from 1 to 19".into());
        }
        if v.memory_budget.0 < 16 * 1024 * 1024 {
            bad("vault.memory_budget", "must be at least 16MiB (two of the largest chunks)".into());
        }
        if self.protection.reconcile_parallel == 0 {
            bad("protection.reconcile_parallel", "must be at least 1".into());
        }
        if v.segment_interval.0.is_zero() {
            bad("vault.segment_interval", "must be longer than zero".into());
        }
        if v.object_lock_retention.0.is_zero() {
            bad("vault.object_lock_retention", "must be longer than zero".into());
        }
        if v.verify_interval.0.is_zero() {
            bad("vault.verify_interval", "must be longer than zero".into());
        }
        if v.verify_read_cycle.0 < v.verify_interval.0 {
            bad("vault.verify_read_cycle", "must be at least vault.verify_interval".into());
        }
        if v.capture_timeout.0.is_zero() {
            bad("vault.capture_timeout", "must be longer than zero".into());
        }
        if v.passphrase.as_ref().is_some_and(|p| p.expose().len() < 12) {
            bad("REWIND_VAULT_PASSPHRASE", "must be at least 12 characters".into());
        }
    }
}

pub(crate) fn read_secret(path: &Path, field: &str, problems: &mut Vec<Problem>) -> Option<Secret> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Some(Secret::new(text.trim())),
        Ok(_) => {
            problems.push(Problem { field: field.into(), message: format!("{} is empty", path.display()) });
            None
        }
        Err(e) => {
            problems.push(Problem { field: field.into(), message: format!("cannot read {}: {e}", path.display()) });
            None
        }
    }
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| format!("{endpoint:?} must start with http:// or https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("{endpoint:?} has no host"));
    }
    Ok(())
}

/// A light check of `tracing` filter directives (`level`, `target`, `target=level`,
/// comma-separated), so a typo is reported with the other problems, not when logging starts.
fn tracing_filter_syntax(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if let Some((_, level)) = directive.rsplit_once('=')
            && !LEVELS.contains(&level.to_ascii_lowercase().as_str())
        {
            return Err(format!("{directive:?}: level must be one of {}", LEVELS.join(", ")));
        }
    }
    Ok(())
}
