//! Rewind's S3 gateway: authenticates clients with Rewind's own keys, forwards every S3
//! operation to the upstream endpoint, and serves metrics and health on a second listener.

pub mod admin;
pub mod api;
pub mod auth;
pub mod credentials;
pub mod front;
pub mod metrics;
pub mod telemetry;
mod timers;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use rewind_capture::{open, rebuild};
use rewind_config::{Config, Secret};
use rewind_snapshotter::ops::Engine;
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::S3ServiceBuilder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AccessPolicy, ClientKeys, VirtualHosts};
use crate::metrics::Metrics;
use rewind_embedded::server::{self, ConnLimits};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data directory cannot be created or used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The admin token cannot be read or written.
    #[error("admin token: {0}")]
    AdminToken(#[source] std::io::Error),
    /// Generated credentials cannot be read or written.
    #[error("client credentials: {0}")]
    Credentials(#[source] std::io::Error),
    /// The embedded upstream did not start.
    #[error("embedded upstream: {0}")]
    Embedded(#[source] std::io::Error),
    /// The vault or the journal could not be opened.
    #[error(transparent)]
    Stores(#[from] open::OpenError),
    /// A listener could not be bound.
    #[error("{0}")]
    Listen(#[source] std::io::Error),
}

/// What the embedding program wants besides the configuration.
#[derive(Debug, Default, Clone)]
pub struct StartOptions {
    /// Print a newly generated client key pair (and how to use it) to standard output.
    pub announce_generated_credentials: bool,
}

/// A running gateway.
pub struct Gateway {
    /// Where the S3 listener listens.
    pub s3_addr: SocketAddr,
    /// Where the admin listener listens.
    pub admin_addr: SocketAddr,
    /// The client access keys in force (id, secret), for callers that generated them.
    pub client_keys: Vec<(String, Secret)>,
    /// The metrics registry, for embedding programs and tests.
    pub metrics: Metrics,
    capture: Arc<rewind_capture::Capture>,
    ops: rewind_snapshotter::ops::Operations,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The mirrors' copying: stopped after everything else, so that what the last
    /// shipping wrote reaches them too.
    mirroring: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Gateway {
    /// Starts serving according to `config` (already validated).
    ///
    /// The listeners are bound first and the stores opened next, so that a start that
    /// fails (a port in use, a damaged journal) creates no credentials it never shows.
    pub async fn start(mut config: Config, options: StartOptions) -> Result<Self, StartError> {
        rewind_model::set_key_redaction(!config.telemetry.log_object_keys);
        // A data directory rebuilt from a vault names its vault and key file.
        rebuild::apply_stores_file(&mut config).map_err(|e| StartError::Credentials(std::io::Error::other(e)))?;
        let data_dir = config.server.data_dir.clone();
        create_private_dir(&data_dir).map_err(|source| StartError::DataDir { path: data_dir.clone(), source })?;
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();

        let s3_listener = server::bind(&config.server.listen, "--listen").await.map_err(StartError::Listen)?;
        let admin_listener =
            server::bind(&config.server.admin_listen, "--admin-listen").await.map_err(StartError::Listen)?;
        let s3_addr = s3_listener.local_addr().map_err(StartError::Listen)?;
        let admin_addr = admin_listener.local_addr().map_err(StartError::Listen)?;

        let stores = Arc::new(open::open(&config, open::Purpose::Serve).await?);
        if let Some(path) = &stores.created_key_file {
            tracing::warn!(key_file = %path.display(), vault = %stores.vault_location, "created a new vault and its key file: keep a copy of the key file elsewhere, the vault cannot be read without it");
        }
        rewind_model::set_key_fingerprint_key(stores.keys.log_fingerprint());
        let (client_keys, generated) = client_keys(&config)?;
        let admin_token = credentials::admin_token(config.credentials.admin_token.as_ref(), &data_dir)
            .map_err(StartError::AdminToken)?;
        credentials::warn_if_readable_by_others(&config, &data_dir);

        let target = rewind_embedded::upstream_target(&config, shutdown.child_token(), &tracker)
            .await
            .map_err(StartError::Embedded)?;
        let rests = upstream::longest_rest(&config);
        let upstream = upstream::paced(&upstream::client(&config.upstream, &target), rests);
        let unsigned = upstream::paced(&upstream::unsigned_client(&config.upstream, &target), rests);
        // One pool of upstream connections for forwarding and restores.
        let lean = rewind_capture::lean::LeanClient::new(&config.upstream, &target, upstream::stall_grace(rests));
        let metrics = Metrics::new();
        let Engine { capture, reconciler, ops } = Engine::new(
            &config,
            stores.clone(),
            upstream.clone(),
            lean.clone(),
            metrics.engine.clone(),
            tracker.clone(),
            shutdown.child_token(),
        );
        {
            let (capture, stop) = (capture.clone(), shutdown.child_token());
            tracker.spawn(async move { capture.recover_until_done(stop).await });
        }
        {
            // Mutations whose outcome the journal refused while this gateway runs.
            let (capture, stop) = (capture.clone(), shutdown.child_token());
            tracker.spawn(async move { capture.recover_orphans_until(stop).await });
        }
        let parts = timers::Parts {
            config: Arc::new(config.clone()),
            stores: stores.clone(),
            ops: ops.clone(),
            reconciler: reconciler.clone(),
            capture: capture.clone(),
            metrics: metrics.engine.clone(),
            views: metrics.views.clone(),
        };
        timers::start(&parts, &shutdown, &tracker);
        let mirroring = stores.mirrors.clone().map(|mirrors| {
            let stop = CancellationToken::new();
            let run = mirrors.run(
                metrics.engine.mirror.clone(),
                config.vault.mirror_check_interval.0,
                config.vault.mirror_stop_wait.0,
                stop.clone(),
            );
            (stop, tokio::spawn(run))
        });
        let api = api::Api::new(ops.clone(), admin_token).with_s3_endpoint(endpoint_url(s3_addr));

        let views = rewind_views::ViewServer::new(stores.journal.clone(), stores.vault.clone(), metrics.views.clone());
        let mut forwarder =
            rewind_forward::Forwarder::new(upstream.clone(), unsigned, metrics.upstream.clone(), Some(capture.clone()))
                .with_views(views);
        if config.upstream.endpoint.is_none() {
            forwarder = forwarder.with_key_rule(rewind_embedded::fs::unstorable_key);
        }
        if let Some(lean) = lean {
            forwarder = forwarder.with_lean(rewind_forward::LeanUpstream::over(lean, &config.upstream));
        }
        let mut builder = S3ServiceBuilder::new(forwarder);
        let view_keys = rewind_views::ViewKeys::new(stores.journal.clone(), stores.keys.clone());
        let keys =
            ClientKeys::new(client_keys.iter().map(|(id, s)| (id.as_str(), s.expose()))).with_views(view_keys.clone());
        let hosts = VirtualHosts::new(config.server.base_domains.clone());
        builder.set_auth(keys.clone());
        builder.set_access(AccessPolicy {
            max_xml_body: config.server.max_xml_body_size.0,
            views: Some(view_keys),
            allow_anonymous: config.server.allow_anonymous,
        });
        builder.set_host(hosts.clone());
        builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(s3s_limits(&config)))));
        let gate = front::Gate {
            keys,
            hosts,
            allow_sigv2: config.server.allow_sigv2,
            budget: stores.vault.budget().clone(),
            max_xml_body: config.server.max_xml_body_size.0,
            budget_wait: config.vault.capture_timeout.0,
            vault: stores.vault.clone(),
        };
        let front = front::S3Front::new(builder.build(), metrics.clone(), config.server.body_idle_timeout.0, gate);

        let limits = conn_limits(&config);
        tracker.spawn(server::serve(
            "s3",
            s3_listener,
            front,
            limits.clone(),
            shutdown.child_token(),
            Some(metrics.connections()),
        ));
        let admin = admin::Admin::new(metrics.clone(), Some(upstream), Some(stores.vault.clone()), data_dir.clone())
            .with_api(api)
            .with_hosts(config.server.admin_hosts.clone());
        tracker.spawn(server::serve("admin", admin_listener, admin, limits, shutdown.child_token(), None));
        tracing::info!(s3 = %s3_addr, admin = %admin_addr, upstream = %target.endpoint, "gateway listening");
        if options.announce_generated_credentials {
            let (id, secret) = &client_keys[0];
            let endpoints = credentials::Endpoints { s3: s3_addr, admin: admin_addr, data_dir: &data_dir };
            let shown = credentials::Banner {
                generated,
                access_key_id: id,
                secret,
                endpoints,
                token_configured: config.credentials.admin_token.is_some(),
            };
            print!("{}", shown.render(std::io::IsTerminal::is_terminal(&std::io::stdout())));
        }
        if let (Some(key_file), true) = (&stores.created_key_file, options.announce_generated_credentials) {
            println!(
                "Every change is captured into the vault at {}, encrypted with the key in {}.\nKeep a copy of that key file somewhere else: without it the vault cannot be read.\n",
                stores.vault_location,
                key_file.display()
            );
        }
        Ok(Self { s3_addr, admin_addr, client_keys, metrics, capture, ops, shutdown, tracker, mirroring })
    }

    /// The operations on history (what the admin API serves), for embedding programs and
    /// tests.
    pub fn operations(&self) -> &rewind_snapshotter::ops::Operations {
        &self.ops
    }

    /// The capture side (journal and vault), for embedding programs and tests.
    pub fn capture(&self) -> &Arc<rewind_capture::Capture> {
        &self.capture
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, and returns
    /// when every listener has stopped.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        if let Some((stop, copying)) = self.mirroring {
            stop.cancel();
            let _ = copying.await;
        }
    }
}

/// The configured client keys, or the generated pair when none is configured; the flag
/// says whether that pair was generated just now (so it is shown exactly once).
fn client_keys(config: &Config) -> Result<(Vec<(String, Secret)>, bool), StartError> {
    let configured: Vec<(String, Secret)> = config
        .credentials
        .client_keys
        .iter()
        .map(|k| {
            let secret = k.secret_access_key.clone().expect("invariant: validate() requires a secret per key");
            (k.access_key_id.clone(), secret)
        })
        .collect();
    if !configured.is_empty() {
        return Ok((configured, false));
    }
    let data_dir = &config.server.data_dir;
    let (id, secret, created) = credentials::load_or_generate(data_dir).map_err(StartError::Credentials)?;
    if !created {
        let file = data_dir.join(credentials::CREDENTIALS_FILE);
        tracing::info!(access_key = %id, file = %file.display(), "using the generated client key");
    }
    Ok((vec![(id, secret)], created))
}

/// The URL clients reach the S3 listener at: a wildcard address is shown as loopback.
fn endpoint_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { addr.ip() };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// What s3s may read into memory. Browser-form POSTs are refused before s3s sees them
/// (`front.rs`); the form limits are zero as well, so that even a request that got past
/// that check could not make s3s buffer a file part.
fn s3s_limits(config: &Config) -> S3Config {
    let mut limits = S3Config::default();
    limits.xml_max_body_size = usize::try_from(config.server.max_xml_body_size.0).unwrap_or(usize::MAX);
    limits.post_object_max_file_size = 0;
    limits.form_max_field_size = 0;
    limits.form_max_fields_size = 0;
    limits.form_max_parts = 0;
    limits
}

/// How every listener treats its connections.
fn conn_limits(config: &Config) -> ConnLimits {
    ConnLimits {
        max_connections: config.server.max_connections,
        header_read_timeout: config.server.header_read_timeout.0,
        shutdown_grace: config.server.shutdown_grace.0,
    }
}

/// Creates the data directory private to its owner, and makes an existing one private:
/// it holds the journal, the key file and, for the embedded upstream, every object in
/// plain text (review F18: a directory made beforehand with `mkdir` stayed 0755).
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        tracing::warn!(dir = %dir.display(), was = format!("{:o}", mode & 0o777), "the data directory was readable by other users; made it private (0700)");
    }
    Ok(())
}
