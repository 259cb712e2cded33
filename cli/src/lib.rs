//! The `rewind` operator CLI. Every command talks to a gateway's admin API: a running
//! gateway's (`--admin-url`, `--admin-token`), or, with `--data-dir`, one served inside
//! this process on a stopped gateway's data (loopback only, stopped when the command ends),
//! so both ways run exactly the same code. Offline, commands that only read history open
//! the data read-only (nothing recovered, shipped or created); restore, reconcile and
//! snapshot changes start a whole gateway on it.

/// `println!` that ends the process quietly when standard output's reader went away
/// (`rewind ls | head`) instead of panicking: exit code 141, as a process killed by
/// SIGPIPE reports.
macro_rules! outln {
    () => {
        $crate::write_out(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::write_out(format_args!($($arg)*))
    };
}

pub mod client;
mod print;
mod todir;

/// Writes one line to standard output (see `outln!`).
fn write_out(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}") {
        quit_if_pipe_closed(&e);
        eprintln!("rewind: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// Ends the process, quietly, when `e` says the reader of standard output went away.
pub fn quit_if_pipe_closed(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
}

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use http::Method;
use rewind_config::{Config, Secret};
use rewind_gateway::{Gateway, Inspector, StartOptions};
use rewind_snapshotter::api::{
    DiffReport, Listing, LogLine, Mode, PlanSummary, ReconcileEvent, RestoreEvent, RestoreRequest, Snapshot, Status,
    VerifyReport,
};

pub use client::{CliError, Client, Lines, with_query};

/// Rewind's operator tool: list, diff, browse and restore any point in a bucket's history.
///
/// Times (--at, --from, --to) accept RFC 3339 (2026-11-25T09:41:00Z), now, relative times
/// (-15m, -2h, -3d, -1w), a journal position (seq:1234), or a snapshot name.
#[derive(Debug, Parser)]
#[command(name = "rewind", version)]
pub struct Cli {
    /// The gateway's admin API.
    #[arg(long, env = "REWIND_ADMIN_URL", default_value = "http://127.0.0.1:9001", global = true)]
    pub admin_url: String,
    /// The admin token. Prefer --admin-token-file: a token on the command line is visible
    /// to other users in `ps`.
    #[arg(long, env = "REWIND_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
    /// A file holding the admin token [default: ./rewind-data/admin-token when it exists].
    #[arg(long, env = "REWIND_ADMIN_TOKEN_FILE", value_name = "FILE", global = true, conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// Work offline on a stopped gateway's data directory instead of through its admin API.
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: the gateway's configuration file (upstream, vault, protection).
    #[arg(long, env = "REWIND_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Keys, sizes, ETags and times of a bucket as of an instant; without --bucket, the
    /// buckets with history.
    Ls {
        /// The bucket [default: list the buckets].
        #[arg(long)]
        bucket: Option<String>,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// The instant [default: now].
        #[arg(long, allow_hyphen_values = true)]
        at: Option<String>,
    },
    /// Every version of a key: seq, time, operation, size, client access key, request id.
    Log {
        /// The bucket.
        #[arg(long)]
        bucket: String,
        /// The key.
        #[arg(long)]
        key: String,
    },
    /// Keys added, changed and deleted between two instants.
    Diff {
        /// The bucket.
        #[arg(long)]
        bucket: String,
        /// The earlier instant.
        #[arg(long, allow_hyphen_values = true)]
        from: String,
        /// The later instant [default: now].
        #[arg(long, allow_hyphen_values = true)]
        to: Option<String>,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// One version's bytes, to standard output.
    Cat {
        /// The bucket.
        #[arg(long)]
        bucket: String,
        /// The key.
        #[arg(long)]
        key: String,
        /// The instant [default: now].
        #[arg(long, allow_hyphen_values = true)]
        at: Option<String>,
    },
    /// Put a bucket, a prefix or one key back as it was at an instant.
    Restore(RestoreArgs),
    /// Named restore points.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Check the journal's hash chain and checkpoints, and that every chunk is in the vault.
    Verify {
        /// Also read, decrypt and re-hash every chunk.
        #[arg(long)]
        read_data: bool,
        /// Read only this share of the chunks, e.g. 10%.
        #[arg(long, value_name = "PERCENT", conflicts_with = "read_data")]
        read_data_subset: Option<String>,
    },
    /// Journal head, checkpoints, vault size and dedup, and each bucket's objects.
    Status,
    /// Capture what the upstream holds that the journal lacks (objects written before Rewind
    /// or behind its back) and record keys deleted behind its back. Resumable.
    Reconcile {
        /// The bucket.
        #[arg(long)]
        bucket: String,
        /// Keys reconciled at once [default: protection.reconcile_parallel].
        #[arg(long)]
        parallel: Option<u64>,
        /// Most objects captured per second [default: protection.reconcile_objects_per_second].
        #[arg(long)]
        objects_per_second: Option<u64>,
        /// Most bytes read from the upstream per second, e.g. 50MB [default:
        /// protection.reconcile_bytes_per_second].
        #[arg(long, value_parser = parse_size)]
        bytes_per_second: Option<u64>,
    },
    /// Create the vault and its key file in --data-dir without serving anything.
    Init,
    /// Rebuild a data directory (journal, indexes) from the vault alone, after losing the
    /// gateway host: `rewind rebuild --vault DIR|s3://... --key-file FILE --data-dir NEW`.
    Rebuild {
        /// The vault: a directory, or s3://bucket/prefix (endpoint and credentials from
        /// REWIND_VAULT_* or --config).
        #[arg(long)]
        vault: String,
        /// The vault's key file [default: NEW/vault.key; or REWIND_VAULT_PASSPHRASE].
        #[arg(long, env = "REWIND_KEY_FILE")]
        key_file: Option<PathBuf>,
    },
}

/// `rewind restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The bucket whose history is restored.
    #[arg(long)]
    pub bucket: String,
    /// The instant to restore to.
    #[arg(long, allow_hyphen_values = true)]
    pub at: String,
    /// Only keys under this prefix.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Only this key.
    #[arg(long)]
    pub key: Option<String>,
    /// Write into this bucket instead (it must be protected by the gateway).
    #[arg(long, conflicts_with = "to_dir")]
    pub to_bucket: Option<String>,
    /// Write the objects as files under this directory instead.
    #[arg(long, value_name = "DIR")]
    pub to_dir: Option<PathBuf>,
    /// non-destructive: only write keys missing now. rewind: also overwrite changed keys and
    /// delete keys that did not exist at the instant.
    #[arg(long, value_enum, default_value_t = Mode::NonDestructive)]
    pub mode: Mode,
    /// Show the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Objects restored at once.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
}

/// `rewind snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Name an instant (default: now).
    Create {
        /// The name: a letter, then letters, digits, '.', '_' or '-'.
        name: String,
        /// The instant [default: now].
        #[arg(long, allow_hyphen_values = true)]
        at: Option<String>,
    },
    /// Every snapshot.
    List,
    /// Remove a snapshot's name (the history stays).
    Delete {
        /// The name.
        name: String,
    },
}

impl Command {
    /// Whether the command only reads history, so that offline it can open the data
    /// read-only. Restores to a bucket plan against the upstream, so they need a gateway.
    fn reads_only(&self) -> bool {
        match self {
            Self::Ls { .. } | Self::Log { .. } | Self::Diff { .. } | Self::Cat { .. } => true,
            Self::Verify { .. } | Self::Status => true,
            Self::Snapshot(SnapshotCommand::List) => true,
            Self::Restore(args) => args.to_dir.is_some(),
            Self::Snapshot(_) | Self::Reconcile { .. } | Self::Init | Self::Rebuild { .. } => false,
        }
    }
}

/// What serves an offline session.
enum Local {
    /// Reads only: the data opened read-only.
    Inspector(Inspector),
    /// Restores, reconciles, snapshot changes: a whole gateway.
    Gateway(Box<Gateway>),
}

/// Where commands are sent: a running gateway, or one served here on a data dir.
struct Session {
    client: Client,
    local: Option<Local>,
}

/// The admin token for a running gateway: `--admin-token`, `--admin-token-file`, or the
/// one a gateway in this directory generated.
fn admin_token(cli: &Cli) -> Result<String, CliError> {
    if let Some(token) = &cli.admin_token {
        if std::env::var("REWIND_ADMIN_TOKEN").ok().as_ref() != Some(token) {
            eprintln!(
                "rewind: warning: --admin-token on the command line is visible to other users (ps); use --admin-token-file or REWIND_ADMIN_TOKEN"
            );
        }
        return Ok(token.clone());
    }
    let (path, named) = match &cli.admin_token_file {
        Some(p) => (p.clone(), true),
        None => (Path::new("rewind-data").join("admin-token"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t.trim().to_owned()),
        Err(e) if named => Err(CliError::other(format!("cannot read the admin token file {}: {e}", path.display()))),
        Err(_) => Err(CliError::other(
            "no admin token: pass --admin-token-file FILE (the gateway generated one into <data-dir>/admin-token) or set REWIND_ADMIN_TOKEN, or use --data-dir DIR offline",
        )),
    }
}

/// Says what stopped an offline session from opening `dir`.
fn open_failed(dir: &Path, e: &rewind_gateway::StartError) -> CliError {
    use rewind_capture::open::OpenError;
    use rewind_gateway::StartError;
    match e {
        // The message names the journal and what to do (stop the gateway or use its API).
        StartError::Stores(e @ OpenError::InUse { .. }) => CliError::other(e.to_string()),
        _ => CliError::other(format!("cannot open {}: {e}", dir.display())),
    }
}

impl Session {
    async fn open(cli: &Cli, allow_new: bool) -> Result<Self, CliError> {
        let Some(dir) = &cli.data_dir else {
            return Ok(Self { client: Client::new(&cli.admin_url, admin_token(cli)?), local: None });
        };
        if !allow_new && !dir.join("journal").exists() {
            return Err(CliError::other(format!(
                "no Rewind data in {}: point --data-dir at a gateway's data directory, or create one with `rewind init --data-dir {}`",
                dir.display(),
                dir.display()
            )));
        }
        let (mut config, problems) = base_config(cli, dir)?;
        rewind_capture::rebuild::apply_stores_file(&mut config).map_err(CliError::other)?;
        config.server.listen = "127.0.0.1:0".into();
        config.server.admin_listen = "127.0.0.1:0".into();
        // A command's session journals nothing it was not asked to: no background pass
        // (against a rebuilt directory's still-empty embedded upstream it would record
        // every object as vanished). `rewind reconcile` runs its pass explicitly.
        config.protection.reconcile_interval = rewind_config::HumanDuration(std::time::Duration::ZERO);
        let token = rewind_gateway::credentials::random_key_pair().1;
        config.credentials.admin_token = Some(token.clone());
        let config = config.finish(problems).map_err(|e| CliError::other(e.to_string()))?;
        let local = if cli.command.reads_only() {
            let inspector = Inspector::start(config, token.clone()).await.map_err(|e| open_failed(dir, &e))?;
            Local::Inspector(inspector)
        } else {
            let gateway = Gateway::start(config, StartOptions::default()).await.map_err(|e| open_failed(dir, &e))?;
            Local::Gateway(Box::new(gateway))
        };
        let addr = match &local {
            Local::Inspector(i) => i.admin_addr,
            Local::Gateway(g) => g.admin_addr,
        };
        let client = Client::new(&format!("http://{addr}"), Secret::expose(&token).to_owned());
        Ok(Self { client, local: Some(local) })
    }

    async fn close(self) {
        match self.local {
            Some(Local::Inspector(i)) => i.shutdown().await,
            Some(Local::Gateway(g)) => g.shutdown().await,
            None => {}
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::other(e.to_string()))?;
    outln!("{text}");
    Ok(())
}

/// Runs one command; the exit code says whether it succeeded.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    if let Command::Rebuild { vault, key_file } = &cli.command {
        return rebuild(&cli, vault, key_file.as_deref()).await;
    }
    let session = Session::open(&cli, matches!(cli.command, Command::Init)).await?;
    let result = execute(&cli, &session.client).await;
    session.close().await;
    result
}

async fn execute(cli: &Cli, client: &Client) -> Result<ExitCode, CliError> {
    match &cli.command {
        Command::Ls { bucket: None, .. } => {
            let status: Status = client.json(Method::GET, "status", None).await?;
            if cli.json { print_json(&status.buckets)? } else { print::buckets(&status.buckets) }
        }
        Command::Ls { bucket: Some(bucket), prefix, at } => {
            let path = with_query("ls", &[("bucket", Some(bucket)), ("prefix", Some(prefix)), ("at", at.as_deref())]);
            let listing: Listing = client.json(Method::GET, &path, None).await?;
            if cli.json { print_json(&listing)? } else { print::listing(&listing) }
        }
        Command::Log { bucket, key } => {
            let lines: Vec<LogLine> = client
                .json(Method::GET, &with_query("log", &[("bucket", Some(bucket)), ("key", Some(key))]), None)
                .await?;
            if cli.json { print_json(&lines)? } else { print::log(&lines) }
        }
        Command::Diff { bucket, from, to, prefix } => {
            let path = with_query(
                "diff",
                &[("bucket", Some(bucket)), ("prefix", Some(prefix)), ("from", Some(from)), ("to", to.as_deref())],
            );
            let report: DiffReport = client.json(Method::GET, &path, None).await?;
            if cli.json { print_json(&report)? } else { print::diff(&report) }
        }
        Command::Cat { bucket, key, at } => {
            let path = with_query("object", &[("bucket", Some(bucket)), ("key", Some(key)), ("at", at.as_deref())]);
            let res = client.send(Method::GET, &path, None).await?;
            let mut stdout = std::io::stdout().lock();
            todir::copy_verified(res, &mut stdout).await?;
            stdout.flush()?;
        }
        Command::Restore(args) => return restore(cli, client, args).await,
        Command::Snapshot(cmd) => {
            let snapshots: Vec<Snapshot> = match cmd {
                SnapshotCommand::Create { name, at } => {
                    let path = with_query("snapshots", &[("name", Some(name)), ("at", at.as_deref())]);
                    let made: Vec<Snapshot> = client.json(Method::POST, &path, None).await?;
                    if !cli.json {
                        for s in &made {
                            outln!(
                                "Created snapshot {} at seq:{} ({}); use it as --at {}",
                                s.name,
                                s.seq,
                                s.time,
                                s.name
                            );
                        }
                        return Ok(ExitCode::SUCCESS);
                    }
                    made
                }
                SnapshotCommand::List => client.json(Method::GET, "snapshots", None).await?,
                SnapshotCommand::Delete { name } => {
                    client
                        .json::<Vec<Snapshot>>(Method::DELETE, &with_query("snapshots", &[("name", Some(name))]), None)
                        .await?;
                    if !cli.json {
                        outln!("Deleted snapshot {name} (the history it named is kept).");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            };
            if cli.json { print_json(&snapshots)? } else { print::snapshots(&snapshots) }
        }
        Command::Verify { read_data, read_data_subset } => {
            let fraction = match (read_data, read_data_subset) {
                (true, _) => Some("1".to_owned()),
                (false, Some(p)) => Some(parse_percent(p)?.to_string()),
                (false, None) => None,
            };
            let report: VerifyReport =
                client.json(Method::POST, &with_query("verify", &[("read_data", fraction.as_deref())]), None).await?;
            if cli.json {
                print_json(&report)?
            } else {
                print::verify(&report)
            }
            if !report.ok() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Reconcile { bucket, parallel, objects_per_second, bytes_per_second } => {
            let text = |n: &Option<u64>| n.map(|n| n.to_string());
            let (p, o, b) = (text(parallel), text(objects_per_second), text(bytes_per_second));
            let path = with_query(
                "reconcile",
                &[
                    ("bucket", Some(bucket)),
                    ("parallel", p.as_deref()),
                    ("objects_per_second", o.as_deref()),
                    ("bytes_per_second", b.as_deref()),
                ],
            );
            let mut lines = Lines::of(client.send(Method::POST, &path, None).await?);
            return reconcile(cli.json, bucket, &mut lines).await;
        }
        Command::Status => {
            let status: Status = client.json(Method::GET, "status", None).await?;
            if cli.json { print_json(&status)? } else { print::status(&status) }
        }
        Command::Rebuild { .. } => unreachable!("run() handles rebuild before any session"),
        Command::Init => {
            let status: Status = client.json(Method::GET, "status", None).await?;
            let dir = cli.data_dir.as_deref().unwrap_or(Path::new("rewind-data"));
            if cli.json {
                print_json(&status)?;
            } else {
                outln!(
                    "Rewind data is ready in {}: vault at {}, journal head seq:{}.\nKeep a copy of the vault key file (default {}) somewhere else: without it the vault cannot be read.\nThe client access key is in {} (mode 0600) unless the configuration names its own.",
                    dir.display(),
                    status.vault_location,
                    status.head_seq,
                    dir.join("vault.key").display(),
                    dir.join("credentials.toml").display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The gateway's configuration as `--config` and `REWIND_*` give it, on data directory
/// `dir`; the problems found so far go to `Config::finish`.
fn base_config(cli: &Cli, dir: &Path) -> Result<(Config, Vec<rewind_config::Problem>), CliError> {
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path).map_err(|e| CliError::other(e.to_string()))?,
        None => Config::default(),
    };
    let problems = config.apply_env(|name| std::env::var(name).ok());
    config.server.data_dir = dir.to_path_buf();
    Ok((config, problems))
}

async fn rebuild(cli: &Cli, vault: &str, key_file: Option<&Path>) -> Result<ExitCode, CliError> {
    let Some(dir) = &cli.data_dir else {
        return Err(CliError::other("rebuild needs --data-dir NEW: the (empty) directory to rebuild into"));
    };
    let (mut config, problems) = base_config(cli, dir)?;
    config.vault.location = Some(vault.to_owned());
    if let Some(k) = key_file {
        config.vault.key_file = Some(k.to_path_buf());
    }
    let config = config.finish(problems).map_err(|e| CliError::other(e.to_string()))?;
    let done = rewind_capture::rebuild::rebuild(&config).await.map_err(|e| CliError::other(e.to_string()))?;
    if cli.json {
        print_json(&done)?;
    } else {
        outln!(
            "Rebuilt {} from {vault}: {} records from {} segments, {} checkpoints verified, {} snapshot labels, {} chunks in {} packs indexed, in {:.1} s.\nStart the gateway with --data-dir {} (it finds the vault and key file), or run `rewind --data-dir {} verify`.",
            dir.display(),
            done.records,
            done.segments,
            done.checkpoints,
            done.labels,
            done.chunks,
            done.packs,
            done.seconds,
            dir.display(),
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_size(text: &str) -> Result<u64, String> {
    rewind_config::ByteSize::parse(text).map(|b| b.0)
}

async fn reconcile(json: bool, bucket: &str, lines: &mut Lines) -> Result<ExitCode, CliError> {
    let bar = print::spinner(json);
    while let Some(event) = lines.next::<ReconcileEvent>().await? {
        match event {
            ReconcileEvent::Progress(c) => bar.set_message(print::reconcile_counts(&c)),
            ReconcileEvent::Stopped { error } => {
                bar.finish_and_clear();
                return Err(CliError::other(error));
            }
            ReconcileEvent::Failed { key, error } => bar.suspend(|| eprintln!("failed: {}: {error}", print::key(&key))),
            ReconcileEvent::Done(c) => {
                bar.finish_and_clear();
                if json {
                    print_json(&c)?;
                } else {
                    outln!("Reconciled {bucket}: {}.", print::reconcile_counts(&c));
                    if c.failed > 0 {
                        outln!("Run it again to retry what failed; what is done is not redone.");
                    }
                }
                return Ok(if c.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
        }
    }
    bar.abandon();
    Err(CliError::other(
        "the reconcile stopped reporting before it finished (the gateway went away?); run it again to resume",
    ))
}

/// `10%` or `0.1` as a fraction.
fn parse_percent(text: &str) -> Result<f64, CliError> {
    let value = match text.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => text.trim().parse::<f64>(),
    };
    value.ok().filter(|f| *f > 0.0 && *f <= 1.0).ok_or_else(|| {
        CliError::other(format!("--read-data-subset {text:?} must be a share such as 10% (more than 0, at most 100%)"))
    })
}

fn confirm(question: &str) -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::other(
            "not restoring without confirmation: re-run with --yes (or --dry-run to only look)",
        ));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
}

async fn restore(cli: &Cli, client: &Client, args: &RestoreArgs) -> Result<ExitCode, CliError> {
    if let Some(dir) = &args.to_dir {
        return todir::restore(cli.json, client, args, dir).await;
    }
    let mut ask = RestoreRequest {
        bucket: args.bucket.clone(),
        at: args.at.clone(),
        prefix: args.prefix.clone(),
        key: args.key.clone(),
        to_bucket: args.to_bucket.clone(),
        mode: args.mode,
        dry_run: true,
        parallel: args.parallel,
    };
    let body = |ask: &RestoreRequest| serde_json::to_vec(ask).map_err(|e| CliError::other(e.to_string()));
    let mut lines = Lines::of(client.send(Method::POST, "restore", Some(body(&ask)?)).await?);
    let Some(RestoreEvent::Plan(plan)) = lines.next::<RestoreEvent>().await? else {
        return Err(CliError::other("the gateway sent no restore plan"));
    };
    if cli.json && args.dry_run {
        print_json(&plan)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !cli.json {
        print::plan(&plan, args.mode);
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    if plan.writes + plan.deletes == 0 {
        if !cli.json {
            print::nothing_to_restore(&plan, args);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm("Apply this restore?")? {
        outln!("Nothing changed.");
        return Ok(ExitCode::SUCCESS);
    }
    ask.dry_run = false;
    let mut lines = Lines::of(client.send(Method::POST, "restore", Some(body(&ask)?)).await?);
    apply(cli, args, &mut lines, plan).await
}

async fn apply(cli: &Cli, args: &RestoreArgs, lines: &mut Lines, plan: PlanSummary) -> Result<ExitCode, CliError> {
    let bar = print::progress_bar(plan.writes + plan.deletes, cli.json);
    let mut failures = Vec::new();
    let (mut before, mut done) = (plan.before_seq, 0);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            event = lines.next::<RestoreEvent>() => event?,
            _ = &mut interrupted => {
                bar.abandon();
                print::interrupted(args, done, plan.writes + plan.deletes, before, &plan.to_bucket);
                return Ok(ExitCode::from(130));
            }
        };
        let Some(event) = event else { break };
        match event {
            RestoreEvent::Plan(p) => {
                bar.set_length(p.writes + p.deletes);
                before = p.before_seq;
            }
            RestoreEvent::Progress { done: n, bytes, .. } => {
                done = n;
                bar.set_position(n);
                bar.set_message(print::bytes(bytes));
            }
            RestoreEvent::Failed { key, error } => {
                bar.suspend(|| eprintln!("failed: {}: {error}", print::key(&key)));
                failures.push((key, error));
            }
            RestoreEvent::Done { written, deleted, failed, bytes, before_seq } => {
                bar.finish_and_clear();
                if cli.json {
                    print_json(&RestoreEvent::Done { written, deleted, failed, bytes, before_seq })?;
                } else {
                    print::done(args, written, deleted, failed, bytes, before_seq, &plan.to_bucket);
                }
                return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
        }
    }
    bar.abandon();
    Err(CliError::other(
        "the restore stopped before it finished (the gateway went away?); run the same command again to finish it",
    ))
}
