//! Rewind's configuration: one TOML file, `REWIND_*` environment overrides, then flags.
//! This file is the schema's table of contents (every section's struct and defaults) and
//! the env overrides, which is why it is long; sections with logic of their own (journal,
//! mirrors, retention, tripwire, validation) have files of their own.
//!
//! Precedence is flag > env > file > default. [`Config::finish`] loads the secrets named
//! by the configuration and validates everything, reporting every problem at once; it
//! never silently corrects a value. Secrets come from files or the environment only, so a
//! configuration file can be shared or committed without leaking anything.

mod env;
mod gc_credentials;
mod journal;
mod mirrors;
mod retention;
mod secret;
mod tripwire;
mod units;
mod validate;

use validate::read_secret;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use env::ENV_VARS;
pub use gc_credentials::GcCredentials;
pub use journal::{JournalBackend, JournalConfig};
pub use mirrors::{MirrorConfig, add_locations as add_mirror_locations};
pub use retention::{BucketRetention, RetentionConfig, RetentionPolicy};
pub use secret::{Secret, random_key_pair};
pub use tripwire::{BucketTripwire, TripwireAction, TripwireConfig, TripwirePolicy};
pub use units::{ByteSize, HumanDuration};

/// The whole configuration of a gateway.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners, data directory, limits.
    pub server: ServerConfig,
    /// The S3 endpoint the gateway forwards to.
    pub upstream: UpstreamConfig,
    /// Access keys that clients use to talk to the gateway.
    pub credentials: CredentialsConfig,
    /// Which buckets Rewind protects.
    pub protection: ProtectionConfig,
    /// Where captured data goes, and how capture uses memory.
    pub vault: VaultConfig,
    /// Where the journal lives: embedded, or a database several gateways share.
    pub journal: JournalConfig,
    /// How long history is kept.
    pub retention: RetentionConfig,
    /// The ransomware tripwire.
    pub tripwire: TripwireConfig,
    /// Logs.
    pub telemetry: TelemetryConfig,
}

/// Listeners, data directory, and the limits that protect the gateway from its clients.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// S3 listener address.
    pub listen: String,
    /// Operations listener: /metrics, /health, /ready.
    pub admin_listen: String,
    /// Where Rewind keeps its state (generated credentials, the embedded upstream).
    pub data_dir: PathBuf,
    /// Base domains for virtual-host-style addressing (`bucket.<domain>`); requests to
    /// any other host name are path-style.
    pub base_domains: Vec<String>,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Threads that serve requests (the async runtime's workers); 0 picks half the cores
    /// the gateway may use ([`ServerConfig::workers`]).
    pub worker_threads: usize,
    /// Time a client may take to send a request's headers.
    pub header_read_timeout: HumanDuration,
    /// Longest pause allowed while a client sends a request body.
    pub body_idle_timeout: HumanDuration,
    /// Largest XML request body accepted (DeleteObjects, CompleteMultipartUpload, configurations),
    /// and largest object body taken without a declared length (read whole, then captured).
    pub max_xml_body_size: ByteSize,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace: HumanDuration,
    /// Accept Signature Version 2 requests (HMAC-SHA1; still what aws cli v1 uses for
    /// `aws s3 presign`). They are verified by the gateway in constant time, presigned
    /// ones valid 7 days at most. `false` refuses every SigV2 request.
    pub allow_sigv2: bool,
    /// Forward unsigned (anonymous) requests to the upstream unsigned, so its bucket
    /// policies and ACLs decide, as S3 would; `false` refuses them with AccessDenied.
    pub allow_anonymous: bool,
    /// Host names the admin listener answers to besides IP addresses and `localhost`
    /// (e.g. a Kubernetes service name); others are refused, so that a web page cannot
    /// reach it through a name of its own pointed at 127.0.0.1 (DNS rebinding).
    pub admin_hosts: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9000".into(),
            admin_listen: "127.0.0.1:9001".into(),
            data_dir: PathBuf::from("./rewind-data"),
            base_domains: vec!["localhost".into()],
            max_connections: 1024,
            worker_threads: 0,
            header_read_timeout: HumanDuration::secs(30),
            body_idle_timeout: HumanDuration::secs(60),
            // What real bodies need: a DeleteObjects of 1,000 keys of 1,024 bytes is ~1.1 MiB,
            // a CompleteMultipartUpload of 10,000 parts with checksums ~1.5 MiB. Each such
            // body is held whole in memory, so the limit bounds what one request can pin.
            max_xml_body_size: ByteSize::mib(4),
            shutdown_grace: HumanDuration::secs(30),
            allow_sigv2: true,
            allow_anonymous: false,
            admin_hosts: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// The request-serving threads on a host where the gateway may use `cores`: as set,
    /// or half of them (at least one). The gateway's other work runs on threads of its
    /// own (sealing and vault writes on the blocking pool, the journal's writer, RocksDB's
    /// background jobs), and each idle worker more is one more thread that every request
    /// may wake (a futex wake and two context switches) to find nothing to do.
    pub fn workers(&self, cores: usize) -> usize {
        match self.worker_threads {
            0 => (cores / 2).max(1),
            set => set,
        }
    }
}

/// When the upstream client adds a checksum to what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumPolicy {
    /// Whenever the operation supports one (aws-chunked body with a CRC trailer).
    WhenSupported,
    /// Only when the operation requires one; for stores that reject aws-chunked bodies.
    WhenRequired,
}

/// The S3 endpoint behind the gateway.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Endpoint URL (`http://host:port` or `https://...`); unset means the embedded
    /// upstream, a local directory under the data dir served as S3.
    pub endpoint: Option<String>,
    /// Region used to sign upstream requests.
    pub region: String,
    /// Upstream access key id (also `REWIND_UPSTREAM_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// File holding the upstream secret key (or `REWIND_UPSTREAM_SECRET_ACCESS_KEY`).
    pub secret_access_key_file: Option<PathBuf>,
    /// The loaded upstream secret key.
    #[serde(skip)]
    pub secret_access_key: Option<Secret>,
    /// Address buckets as `endpoint/bucket` rather than `bucket.endpoint`.
    pub force_path_style: bool,
    /// When the upstream client sends checksums.
    pub request_checksum_calculation: ChecksumPolicy,
    /// Time allowed to open a connection to the upstream.
    pub connect_timeout: HumanDuration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key_file: None,
            secret_access_key: None,
            force_path_style: true,
            request_checksum_calculation: ChecksumPolicy::WhenSupported,
            connect_timeout: HumanDuration::secs(5),
        }
    }
}

/// Client access keys. With none configured, the gateway generates one pair on first
/// start into `<data_dir>/credentials.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Each key clients may sign with.
    pub client_keys: Vec<ClientKey>,
    /// File holding the admin API's bearer token. Without it (and without
    /// `REWIND_ADMIN_TOKEN`), one is generated on first start into `<data_dir>/admin-token`.
    pub admin_token_file: Option<PathBuf>,
    /// The loaded admin token.
    #[serde(skip)]
    pub admin_token: Option<Secret>,
}

/// One client access key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKey {
    /// The access key id clients put in their signatures.
    pub access_key_id: String,
    /// File holding the secret key.
    pub secret_access_key_file: Option<PathBuf>,
    /// The loaded secret key.
    #[serde(skip)]
    pub secret_access_key: Option<Secret>,
}

/// Which buckets Rewind protects (captures). Forwarding covers every bucket regardless.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtectionConfig {
    /// Bucket names, or patterns with one trailing `*` (`"prod-*"`, `"*"` for all).
    pub buckets: Vec<String>,
    /// Let clients set bucket configurations that delete data behind the journal's back
    /// (lifecycle expiration, replication of deletes); they are journaled when allowed.
    pub allow_destructive_bucket_config: bool,
    /// How often every protected bucket is reconciled with the upstream (objects written
    /// or deleted behind the gateway's back, or before it was installed); the first pass
    /// runs at start-up. `0s` turns the background reconcile off.
    pub reconcile_interval: HumanDuration,
    /// Most objects a reconcile captures per second (0: no limit).
    pub reconcile_objects_per_second: u32,
    /// Most bytes a reconcile reads from the upstream per second (0: no limit).
    pub reconcile_bytes_per_second: ByteSize,
    /// Objects a reconcile captures at once.
    pub reconcile_parallel: usize,
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        Self {
            buckets: vec!["*".into()],
            allow_destructive_bucket_config: false,
            reconcile_interval: HumanDuration::secs(3600),
            reconcile_objects_per_second: 0,
            reconcile_bytes_per_second: ByteSize(0),
            reconcile_parallel: 4,
        }
    }
}

/// The vault (captured bytes) and the capture pipeline's limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultConfig {
    /// A directory, or `s3://bucket/prefix`; unset means `<data_dir>/vault`.
    pub location: Option<String>,
    /// Endpoint URL of an S3 vault.
    pub endpoint: Option<String>,
    /// Region used to sign S3 vault requests.
    pub region: String,
    /// S3 vault access key id (also `REWIND_VAULT_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// File holding the S3 vault secret key (or `REWIND_VAULT_SECRET_ACCESS_KEY`).
    pub secret_access_key_file: Option<PathBuf>,
    /// The loaded S3 vault secret key.
    #[serde(skip)]
    pub secret_access_key: Option<Secret>,
    /// Key file that unlocks the vault; unset means `<data_dir>/vault.key`, created with
    /// the vault. Ignored when `REWIND_VAULT_PASSPHRASE` is set.
    pub key_file: Option<PathBuf>,
    /// The vault passphrase, from `REWIND_VAULT_PASSPHRASE` only.
    #[serde(skip)]
    pub passphrase: Option<Secret>,
    /// zstd level for chunks that compress (1–19); 0 stores every chunk uncompressed.
    pub compression_level: i32,
    /// Upload bytes all requests together may hold on their way into the vault; when
    /// it is used up, uploads wait (the vault slows clients, nothing is dropped). Mirrors
    /// hold at most as much again of written packs for copying.
    pub memory_budget: ByteSize,
    /// How long an upload may wait for the vault before it is refused with 503 SlowDown.
    pub capture_timeout: HumanDuration,
    /// How often the gateway runs a light verify (hash chain, checkpoints, every chunk
    /// present, the journal against the vault's newest checkpoint, a share of the chunks
    /// read back) and sets `rewind_verify_last_success_timestamp_seconds`.
    pub verify_interval: HumanDuration,
    /// How long the scheduled verifies take to read back every chunk once, a share each
    /// run (`verify_interval / verify_read_cycle` of the chunks), so that damage to the
    /// vault's data is found within this time.
    pub verify_read_cycle: HumanDuration,
    /// How often journal records are sealed into a segment and shipped to the vault: what
    /// losing the gateway host (and its data directory) can lose at most.
    pub segment_interval: HumanDuration,
    /// S3 Object Lock for what the gateway writes to an S3 vault.
    pub object_lock: ObjectLock,
    /// How long each vault object is locked from its creation.
    pub object_lock_retention: HumanDuration,
    /// What garbage collection deletes with on an S3 vault.
    pub gc_credentials: GcCredentials,
    /// Further vaults every object is copied to, in the background (`[[vault.mirrors]]`).
    pub mirrors: Vec<MirrorConfig>,
    /// How often each mirror is compared with the primary in full, to copy what the
    /// gateway's own queue missed (another gateway's writes, a restart).
    pub mirror_check_interval: HumanDuration,
    /// How long a clean stop waits for the mirrors to catch up.
    pub mirror_stop_wait: HumanDuration,
}

/// Whether vault objects are written with an Object Lock retention date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectLock {
    /// Governance mode when the vault bucket has Object Lock enabled; nothing otherwise.
    #[default]
    Auto,
    /// Governance mode (users with s3:BypassGovernanceRetention can still delete early);
    /// the bucket must have Object Lock enabled.
    Governance,
    /// Compliance mode (nobody, not even the account root, can delete early); the bucket
    /// must have Object Lock enabled.
    Compliance,
    /// No retention date, even if the bucket supports it.
    Off,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            location: None,
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key_file: None,
            secret_access_key: None,
            key_file: None,
            passphrase: None,
            compression_level: 3,
            // Eight maximum-size chunks: enough for several uploads to stream at full
            // speed, small enough that a 2 GiB upload stays far below 256 MiB of memory.
            memory_budget: ByteSize::mib(64),
            capture_timeout: HumanDuration::secs(60),
            verify_interval: HumanDuration::secs(6 * 3600),
            verify_read_cycle: HumanDuration::secs(30 * 86_400),
            segment_interval: HumanDuration::secs(10),
            object_lock: ObjectLock::Auto,
            object_lock_retention: HumanDuration::secs(30 * 86_400),
            gc_credentials: GcCredentials::default(),
            mirrors: Vec::new(),
            mirror_check_interval: HumanDuration::secs(600),
            mirror_stop_wait: HumanDuration::secs(60),
        }
    }
}

impl VaultConfig {
    /// The S3 bucket and prefix when the vault is `s3://bucket/prefix`.
    pub fn s3_location(&self) -> Option<(&str, &str)> {
        let rest = self.location.as_deref()?.strip_prefix("s3://")?;
        Some(rest.split_once('/').map_or((rest, ""), |(b, p)| (b, p.trim_end_matches('/'))))
    }
}

impl ProtectionConfig {
    /// Whether `bucket` is protected.
    pub fn covers(&self, bucket: &str) -> bool {
        self.buckets.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => bucket.starts_with(prefix),
            None => p == bucket,
        })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line for log pipelines.
    Json,
}

/// Logs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// Filter in `tracing` syntax, e.g. `info` or `info,rewind_gateway=debug`.
    pub log_level: String,
    /// Print object keys in logs; off by default since keys are customer data.
    pub log_object_keys: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { log_format: LogFormat::Human, log_level: "info".into(), log_object_keys: false }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for this schema.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation, with line and column.
        message: String,
    },
    /// One or more values are unusable; every problem is listed.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

/// One unusable setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The setting, as `section.field` (or the env var that set it).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} configuration problem(s):", self.0.len())?;
        for p in self.0 {
            write!(f, "\n  - {}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

/// The shortest admin token accepted: 32 characters (a generated one has 40).
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

impl Config {
    /// Parses a configuration file's text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse { path: origin.to_path_buf(), message: e.to_string() })
    }

    /// Reads and parses a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::from_toml(&text, path)
    }

    /// Applies `REWIND_*` overrides; `env` looks a variable up (the process environment
    /// in the binary, a map in tests). Returns problems with values that cannot be parsed.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(v) = env("REWIND_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = env("REWIND_ADMIN_LISTEN") {
            self.server.admin_listen = v;
        }
        if let Some(v) = env("REWIND_DATA_DIR") {
            self.server.data_dir = v.into();
        }
        if let Some(v) = env("REWIND_BASE_DOMAINS") {
            self.server.base_domains = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Into::into).collect();
        }
        if let Some(v) = env("REWIND_UPSTREAM") {
            self.upstream.endpoint = Some(v);
        }
        if let Some(v) = env("REWIND_UPSTREAM_REGION") {
            self.upstream.region = v;
        }
        if let Some(v) = env("REWIND_UPSTREAM_ACCESS_KEY_ID") {
            self.upstream.access_key_id = Some(v);
        }
        if let Some(v) = env("REWIND_UPSTREAM_SECRET_ACCESS_KEY") {
            self.upstream.secret_access_key = Some(Secret::new(v));
        }
        if let Some(v) = env("REWIND_ADMIN_TOKEN") {
            self.credentials.admin_token = Some(Secret::new(v));
        }
        match (env("REWIND_ACCESS_KEY_ID"), env("REWIND_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => self.set_client_key(id, Secret::new(secret)),
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => problems.push(Problem {
                field: "REWIND_ACCESS_KEY_ID/REWIND_SECRET_ACCESS_KEY".into(),
                message: "set both or neither".into(),
            }),
        }
        if let Some(v) = env("REWIND_VAULT") {
            self.vault.location = Some(v);
        }
        if let Some(v) = env("REWIND_VAULT_ENDPOINT") {
            self.vault.endpoint = Some(v);
        }
        if let Some(v) = env("REWIND_VAULT_REGION") {
            self.vault.region = v;
        }
        if let Some(v) = env("REWIND_VAULT_ACCESS_KEY_ID") {
            self.vault.access_key_id = Some(v);
        }
        if let Some(v) = env("REWIND_VAULT_SECRET_ACCESS_KEY") {
            self.vault.secret_access_key = Some(Secret::new(v));
        }
        self.vault.gc_credentials.apply_env(&env);
        if let Some(v) = env("REWIND_VAULT_MIRRORS") {
            add_mirror_locations(&mut self.vault.mirrors, v.split(','));
        }
        self.journal.apply_env(&env);
        if let Some(v) = env("REWIND_VAULT_PASSPHRASE") {
            self.vault.passphrase = Some(Secret::new(v));
        }
        if let Some(v) = env("REWIND_KEY_FILE") {
            self.vault.key_file = Some(v.into());
        }
        self.apply_retention_env(&env, &mut problems);
        if let Some(v) = env("REWIND_LOG_FORMAT") {
            match v.as_str() {
                "human" => self.telemetry.log_format = LogFormat::Human,
                "json" => self.telemetry.log_format = LogFormat::Json,
                other => problems.push(Problem {
                    field: "REWIND_LOG_FORMAT".into(),
                    message: format!("{other:?} is not a log format; use \"human\" or \"json\""),
                }),
            }
        }
        if let Some(v) = env("REWIND_LOG") {
            self.telemetry.log_level = v;
        }
        problems
    }

    fn apply_retention_env(&mut self, env: &impl Fn(&str) -> Option<String>, problems: &mut Vec<Problem>) {
        let r = &mut self.retention;
        for (name, slot) in [
            ("REWIND_RETENTION_KEEP_ALL_WITHIN", &mut r.keep_all_within),
            ("REWIND_RETENTION_MIN_KEEP_ALL_WITHIN", &mut r.min_keep_all_within),
            ("REWIND_RETENTION_GC_GRACE", &mut r.gc_grace),
            ("REWIND_RETENTION_SCHEDULE", &mut r.schedule),
        ] {
            if let Some(v) = env(name) {
                match humantime::parse_duration(v.trim()) {
                    Ok(d) => *slot = HumanDuration(d),
                    Err(e) => problems.push(Problem {
                        field: name.into(),
                        message: format!("{v:?} is not a duration ({e}); write e.g. \"0s\", \"36h\" or \"30d\""),
                    }),
                }
            }
        }
        for (name, slot) in [
            ("REWIND_RETENTION_KEEP_HOURLY", &mut r.keep_hourly),
            ("REWIND_RETENTION_KEEP_DAILY", &mut r.keep_daily),
            ("REWIND_RETENTION_KEEP_WEEKLY", &mut r.keep_weekly),
            ("REWIND_RETENTION_KEEP_MONTHLY", &mut r.keep_monthly),
            ("REWIND_RETENTION_KEEP_YEARLY", &mut r.keep_yearly),
        ] {
            if let Some(v) = env(name) {
                match v.trim().parse::<u32>() {
                    Ok(n) => *slot = n,
                    Err(_) => problems.push(Problem {
                        field: name.into(),
                        message: format!("{v:?} is not a count; write a whole number such as 0 or 24"),
                    }),
                }
            }
        }
    }

    /// Adds a client key, replacing one with the same id.
    pub fn set_client_key(&mut self, access_key_id: String, secret: Secret) {
        self.credentials.client_keys.retain(|k| k.access_key_id != access_key_id);
        self.credentials.client_keys.push(ClientKey {
            access_key_id,
            secret_access_key_file: None,
            secret_access_key: Some(secret),
        });
    }

    /// Loads secrets named by `*_file` settings, then validates. `earlier` carries problems
    /// found while applying overrides, so that all of them are reported together.
    pub fn finish(mut self, mut earlier: Vec<Problem>) -> Result<Self, ConfigError> {
        self.load_secret_files(&mut earlier);
        earlier.extend(self.validate());
        if earlier.is_empty() { Ok(self) } else { Err(ConfigError::Invalid(earlier)) }
    }

    fn load_secret_files(&mut self, problems: &mut Vec<Problem>) {
        if let Some(path) = &self.credentials.admin_token_file
            && self.credentials.admin_token.is_none()
        {
            self.credentials.admin_token = read_secret(path, "credentials.admin_token_file", problems);
        }
        if let Some(path) = &self.upstream.secret_access_key_file
            && self.upstream.secret_access_key.is_none()
        {
            self.upstream.secret_access_key = read_secret(path, "upstream.secret_access_key_file", problems);
        }
        if let Some(path) = &self.vault.secret_access_key_file
            && self.vault.secret_access_key.is_none()
        {
            self.vault.secret_access_key = read_secret(path, "vault.secret_access_key_file", problems);
        }
        self.vault.gc_credentials.load_secret_file(problems);
        for (i, m) in self.vault.mirrors.iter_mut().enumerate() {
            m.load_secret_file(&format!("vault.mirrors[{i}].secret_access_key_file"), problems);
        }
        self.journal.load_secret_file(problems);
        for (i, key) in self.credentials.client_keys.iter_mut().enumerate() {
            if let Some(path) = &key.secret_access_key_file
                && key.secret_access_key.is_none()
            {
                let field = format!("credentials.client_keys[{i}].secret_access_key_file");
                key.secret_access_key = read_secret(path, &field, problems);
            }
        }
    }
}

#[cfg(test)]
mod tests;
