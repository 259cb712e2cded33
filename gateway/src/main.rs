//! `rewind-gateway`: the S3 gateway server.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use rewind_config::Config;
use rewind_gateway::{Gateway, StartOptions, telemetry};

/// Rewind's S3 gateway. Point S3 clients at it; it forwards to the upstream endpoint.
///
/// With no arguments it serves S3 on 127.0.0.1:9000 in front of an embedded local-directory
/// upstream under ./rewind-data, captures every change into a vault under ./rewind-data/vault
/// (its key in ./rewind-data/vault.key), and prints a generated access key on first start.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Configuration file (TOML; see deploy/rewind.example.toml).
    #[arg(long, env = "REWIND_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// S3 listener address [default: 127.0.0.1:9000].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Admin listener address: /metrics, /health, /ready [default: 127.0.0.1:9001].
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Data directory [default: ./rewind-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Upstream S3 endpoint URL [default: embedded local directory].
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Vault: a directory or s3://bucket/prefix [default: <data-dir>/vault].
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    vault: Option<String>,
    /// A mirror of the vault, copied to in the background (repeatable; also
    /// REWIND_VAULT_MIRRORS, comma-separated, and [[vault.mirrors]] in the config).
    #[arg(long = "vault-mirror", value_name = "DIR|s3://BUCKET/PREFIX")]
    vault_mirrors: Vec<String>,
    /// A shared journal: postgres://user@host:port/database (the password in
    /// REWIND_JOURNAL_PASSWORD or journal.password_file) [default: embedded, under
    /// <data-dir>/journal].
    #[arg(long, env = "REWIND_JOURNAL_URL", value_name = "URL")]
    journal: Option<String>,
    /// Key file that unlocks the vault [default: <data-dir>/vault.key, created with the vault].
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Validate the configuration, print it as TOML (secrets left out) and exit.
    #[arg(long)]
    check_config: bool,
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let problems = config.apply_env(|name| std::env::var(name).ok());
    if let Some(v) = &args.listen {
        config.server.listen = v.clone();
    }
    if let Some(v) = &args.admin_listen {
        config.server.admin_listen = v.clone();
    }
    if let Some(v) = &args.data_dir {
        config.server.data_dir = v.clone();
    }
    if let Some(v) = &args.upstream {
        config.upstream.endpoint = Some(v.clone());
    }
    if let Some(v) = &args.vault {
        config.vault.location = Some(v.clone());
    }
    if let Some(v) = &args.key_file {
        config.vault.key_file = Some(v.clone());
    }
    rewind_config::add_mirror_locations(&mut config.vault.mirrors, args.vault_mirrors.iter().map(String::as_str));
    if let Some(v) = &args.journal {
        config.journal.set_url(v.clone());
    }
    rewind_capture::rebuild::apply_stores_file(&mut config).map_err(anyhow::Error::msg)?;
    Ok(config.finish(problems)?)
}

/// SIGTERM and SIGINT, listened for from before the listeners are bound: a signal that
/// arrives while the gateway starts is then a graceful stop once it has, not a kill.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rewind-gateway: {e:#}");
            eprintln!(
                "Fix the settings above (file, REWIND_* variables or flags), or run with --check-config to see what is in force."
            );
            std::process::exit(2);
        }
    };
    if args.check_config {
        // TOML that can be pasted into a file; secrets are never part of it (they come
        // from files or the environment, and are not serialised).
        print!("{}", toml::to_string_pretty(&config).context("printing the configuration")?);
        return Ok(());
    }
    // Everything the gateway creates (the embedded upstream's objects, vault packs, keys)
    // is for its own user only (review F18: embedded objects were 0644).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = config.server.workers(cores);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the gateway's threads")?;
    runtime.block_on(serve(config, workers, cores))
}

async fn serve(config: Config, workers: usize, cores: usize) -> anyhow::Result<()> {
    let _flush_logs_on_exit = telemetry::init(&config.telemetry).map_err(anyhow::Error::msg)?;
    tracing::info!(workers, cores, "threads serving requests");
    let mut signals = Signals::listen()?;
    let options = StartOptions { announce_generated_credentials: true };
    let gateway = Gateway::start(config, options).await.context("the gateway could not start")?;
    let signal = signals.next().await;
    tracing::info!(signal, "shutting down: draining in-flight requests");
    gateway.shutdown().await;
    Ok(())
}
