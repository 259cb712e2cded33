//! The `rewind` operator CLI. Every command runs one of the operations on history
//! (`rewind_snapshotter::ops`): through a running gateway's admin API (`--admin-url`,
//! `--admin-token`), or, with `--data-dir`, in this process on a stopped gateway's data,
//! with no listener (`target.rs`). Both ways run the same operations.

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

mod args;
pub mod client;
mod mirror;
mod print;
mod restore;
pub mod target;
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
use std::path::Path;
use std::process::ExitCode;

use http::Method;
use rewind_config::Config;
use rewind_snapshotter::api::{ReconcileEvent, Snapshot};
use rewind_snapshotter::ops::ReconcileAsk;

pub use args::{
    Cli, Command, HoldCommand, HoldTarget, IncidentsCommand, JournalCommand, MirrorCommand, RestoreArgs,
    SnapshotCommand, UndoArgs, VaultCommand, ViewCommand,
};
pub use client::{CliError, Client, Lines, with_query};
pub use target::{Access, Events, Local, Target};

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

/// Opens where commands go: the data directory in this process, or a gateway's admin API.
async fn open_target(cli: &Cli, allow_new: bool) -> Result<Target, CliError> {
    let Some(dir) = &cli.data_dir else {
        return Ok(Target::Remote(Client::new(&cli.admin_url, admin_token(cli)?)));
    };
    let (mut config, problems) = base_config(cli, dir)?;
    let shared = config.journal.backend == rewind_config::JournalBackend::Postgres;
    if !allow_new && !shared && !dir.join("journal").exists() {
        return Err(CliError::other(format!(
            "no Rewind data in {}: point --data-dir at a gateway's data directory, or create one with `rewind init --data-dir {}`",
            dir.display(),
            dir.display()
        )));
    }
    if shared && cli.command.access() != Access::Read {
        // Gateways may be running on it: recovering their open intents or shipping from
        // here would race them. Changes go through a gateway.
        return Err(CliError::other(
            "this command changes history, and a shared journal is changed only by its gateways: run it through a running gateway's admin API (--admin-url) instead of --data-dir",
        ));
    }
    rewind_capture::rebuild::apply_stores_file(&mut config).map_err(CliError::other)?;
    let config = config.finish(problems).map_err(|e| CliError::other(e.to_string()))?;
    Ok(Target::Local(Local::open(&config, cli.command.access()).await?))
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
    if let Command::Journal(JournalCommand::Migrate { from, to }) = &cli.command {
        return migrate(&cli, from, to).await;
    }
    if let Command::Vault(VaultCommand::Mirror(command)) = &cli.command {
        return mirror::run(&cli, command).await;
    }
    let target = open_target(&cli, matches!(cli.command, Command::Init)).await?;
    let result = execute(&cli, &target).await;
    target.close().await;
    result
}

async fn execute(cli: &Cli, target: &Target) -> Result<ExitCode, CliError> {
    match &cli.command {
        Command::Ls { bucket: None, .. } => {
            let status = target.status().await?;
            if cli.json { print_json(&status.buckets)? } else { print::buckets(&status.buckets) }
        }
        Command::Ls { bucket: Some(bucket), prefix, at } => {
            let listing = target.ls(bucket, prefix, at.as_deref()).await?;
            if cli.json { print_json(&listing)? } else { print::listing(&listing) }
        }
        Command::Log { bucket, key } => {
            let lines = target.log(bucket, key).await?;
            if cli.json { print_json(&lines)? } else { print::log(&lines) }
        }
        Command::Diff { bucket, from, to, prefix } => {
            let report = target.diff(bucket, prefix, from, to.as_deref()).await?;
            if cli.json { print_json(&report)? } else { print::diff(&report) }
        }
        Command::Cat { bucket, key, at } => {
            let object = target.object(bucket, key, at.as_deref()).await?;
            let mut stdout = std::io::stdout().lock();
            todir::copy_verified(object, &mut stdout).await?;
            stdout.flush()?;
        }
        Command::Restore(args) => return restore::restore(cli, target, args).await,
        Command::Undo(args) => return restore::undo(cli, target, args).await,
        Command::Snapshot(cmd) => {
            let snapshots: Vec<Snapshot> = match cmd {
                SnapshotCommand::Create { name, at } => {
                    let made = target.create_snapshot(name, at.as_deref()).await?;
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
                SnapshotCommand::List => target.snapshots().await?,
                SnapshotCommand::Delete { name } => {
                    target.delete_snapshot(name).await?;
                    if !cli.json {
                        outln!("Deleted snapshot {name} (the history it named is kept).");
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            };
            if cli.json { print_json(&snapshots)? } else { print::snapshots(&snapshots) }
        }
        Command::Incidents(cmd) => match cmd {
            IncidentsCommand::Ls => {
                let incidents = target.incidents().await?;
                if cli.json { print_json(&incidents)? } else { print::incidents(&incidents) }
            }
            IncidentsCommand::Show { id } => {
                let incident = target.incident(id).await?;
                if cli.json { print_json(&incident)? } else { print::incident(&incident) }
            }
            IncidentsCommand::Ack { id } => {
                let incident = target.acknowledge_incident(id).await?;
                if cli.json {
                    print_json(&incident)?;
                } else {
                    outln!("Acknowledged incident {id}: {} may write to {} again.", incident.actor, incident.bucket);
                }
            }
        },
        Command::View(cmd) => match cmd {
            ViewCommand::Create { bucket, at, ttl } => {
                let view = target.create_view(bucket, at.as_deref(), ttl).await?;
                if cli.json { print_json(&view)? } else { print::view_made(&view) }
            }
            ViewCommand::Ls => {
                let views = target.views().await?;
                if cli.json { print_json(&views)? } else { print::views(&views) }
            }
            ViewCommand::Rm { access_key_id } => {
                target.remove_view(access_key_id).await?;
                if !cli.json {
                    outln!("Removed view {access_key_id}: its key no longer works.");
                }
            }
        },
        Command::Verify { read_data, read_data_subset } => {
            let fraction = match (read_data, read_data_subset) {
                (true, _) => Some(1.0),
                (false, Some(p)) => Some(parse_percent(p)?),
                (false, None) => None,
            };
            let report = target.verify(fraction).await?;
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
            let ask = ReconcileAsk {
                parallel: *parallel,
                objects_per_second: *objects_per_second,
                bytes_per_second: *bytes_per_second,
            };
            let mut events = target.reconcile(bucket, ask).await?;
            return reconcile(cli.json, bucket, &mut events).await;
        }
        Command::Forget { bucket, dry_run, yes } => {
            let plan = target.forget_plan(bucket.as_deref()).await?;
            let question = "Apply this policy? The expired history is removed from the journal and its vault copy for good; `rewind gc` then reclaims the bytes only it used.";
            if !plan_then_ask(cli, &plan, print::forget, (*dry_run, *yes), question, "forgetting history")? {
                return Ok(ExitCode::SUCCESS);
            }
            let bar = print::spinner(cli.json || !std::io::stderr().is_terminal());
            bar.set_message("forgetting expired history and compacting the vault's copy of the journal");
            let report = target.forget(bucket.as_deref()).await;
            bar.finish_and_clear();
            let report = report?;
            if cli.json { print_json(&report)? } else { print::forget_report(&report) }
        }
        Command::Gc { dry_run, yes } => {
            let plan = target.gc_plan().await?;
            let question =
                "Run garbage collection? Packs condemned at least retention.gc_grace ago are deleted from the vault.";
            if !plan_then_ask(cli, &plan, print::gc, (*dry_run, *yes), question, "collecting garbage")? {
                return Ok(ExitCode::SUCCESS);
            }
            let bar = print::spinner(cli.json || !std::io::stderr().is_terminal());
            bar.set_message("collecting garbage: marking");
            let pass = target.gc();
            tokio::pin!(pass);
            let report = loop {
                tokio::select! {
                    report = &mut pass => break report,
                    () = tokio::time::sleep(std::time::Duration::from_millis(300)) => {
                        if let Ok(p) = target.gc_progress().await && p.running {
                            bar.set_message(print::gc_progress(&p));
                        }
                    }
                }
            };
            bar.finish_and_clear();
            let report = report?;
            if cli.json { print_json(&report)? } else { print::gc_report(&report) }
        }
        Command::Hold(HoldCommand::Ls) => {
            let holds = target.holds().await?;
            if cli.json { print_json(&holds)? } else { print::holds(&holds) }
        }
        Command::Hold(HoldCommand::Add { target: t, reason }) => {
            target.hold(Method::POST, t, Some(reason)).await?;
            if !cli.json {
                outln!("Held {}: every version under it is kept until `rewind hold rm`.", print::hold_scope(t));
            }
        }
        Command::Hold(HoldCommand::Rm { target: t }) => {
            target.hold(Method::DELETE, t, None).await?;
            if !cli.json {
                outln!("Lifted the hold on {}.", print::hold_scope(t));
            }
        }
        Command::Status => {
            let status = target.status().await?;
            if cli.json { print_json(&status)? } else { print::status(&status) }
        }
        Command::Rebuild { .. } | Command::Journal(_) | Command::Vault(_) => {
            unreachable!("run() handles rebuild, the journal's and the vault's commands before any session")
        }
        Command::Init => {
            let status = target.status().await?;
            let dir = cli.data_dir.as_deref().unwrap_or(Path::new("rewind-data"));
            if cli.json {
                print_json(&status)?;
            } else {
                outln!(
                    "Rewind data is ready in {}: vault at {}, journal head seq:{}.\nKeep a copy of the vault key file (default {}) somewhere else: without it the vault cannot be read.\nThe gateway generates a client access key into {} (mode 0600) on its first start, unless the configuration names its own.",
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
    if let Some(url) = &cli.journal {
        config.journal.set_url(url.clone());
    }
    Ok((config, problems))
}

/// `rewind journal migrate`: the source is the data directory's own journal whatever the
/// environment names; the password for the target comes from it.
async fn migrate(cli: &Cli, from: &Path, to: &str) -> Result<ExitCode, CliError> {
    let (mut config, problems) = base_config(cli, from)?;
    let password = config.journal.password.take();
    config.journal = rewind_config::JournalConfig::default();
    rewind_capture::rebuild::apply_stores_file(&mut config).map_err(CliError::other)?;
    let config = config.finish(problems).map_err(|e| CliError::other(e.to_string()))?;
    rewind_journal::postgres::parse_url(to).map_err(|e| CliError::other(e.to_string()))?;
    let mut options = rewind_journal::PostgresOptions::new(to);
    options.password = password.map(|p| zeroize::Zeroizing::new(p.expose().to_owned()));
    let quiet = cli.json;
    let done = rewind_capture::migrate::migrate(&config, options, move |table, n| {
        if !quiet && (n % 100_000 == 0 || n < 2000) {
            eprintln!("  {table}: {n} entries");
        }
    })
    .await
    .map_err(|e| CliError::other(e.to_string()))?;
    if cli.json {
        print_json(&done)?;
    } else {
        outln!(
            "Migrated {} entries (head seq:{}) from {} into {to} in {:.1} s; verify walked {} records: clean.\nStart every gateway with --journal {to} (password in REWIND_JOURNAL_PASSWORD), the same vault and key file; see docs/SCALE.md.",
            done.entries,
            done.head_seq,
            from.display(),
            done.seconds,
            done.records_verified
        );
    }
    Ok(ExitCode::SUCCESS)
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
    let done = rewind_capture::rebuild::rebuild(&config).await?;
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

async fn reconcile(json: bool, bucket: &str, events: &mut Events<ReconcileEvent>) -> Result<ExitCode, CliError> {
    let bar = print::spinner(json);
    while let Some(event) = events.next().await? {
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

/// Shows the plan of a command that deletes: with `--dry-run` (`flags.0`) that is all;
/// otherwise asks `question` unless `--yes` (`flags.1`). Whether to go on.
fn plan_then_ask<P: serde::Serialize>(
    cli: &Cli,
    plan: &P,
    show: impl Fn(&P),
    (dry_run, yes): (bool, bool),
    question: &str,
    doing: &str,
) -> Result<bool, CliError> {
    if dry_run {
        if cli.json {
            print_json(plan)?
        } else {
            show(plan)
        }
        return Ok(false);
    }
    if !cli.json {
        show(plan);
    }
    if !yes && !confirm(question, doing)? {
        outln!("Nothing changed.");
        return Ok(false);
    }
    Ok(true)
}

fn confirm(question: &str, doing: &str) -> Result<bool, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::other(format!(
            "not {doing} without confirmation: re-run with --yes (or --dry-run to only look)"
        )));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
}
