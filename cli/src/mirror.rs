//! `rewind vault mirror ...`: the vault's mirrors, from the vaults alone (no journal, so
//! it runs beside gateways).

use std::process::ExitCode;
use std::sync::Arc;

use rewind_capture::mirror::{Mirror, MirrorMetrics, Mirrors};
use rewind_capture::mirror_check;
use rewind_config::Config;

use crate::{Cli, CliError, MirrorCommand, base_config, print_json};

fn vault_err(e: impl std::fmt::Display) -> CliError {
    CliError::other(e.to_string())
}

/// The primary vault and every configured mirror (or only the one at `add`).
async fn open(cli: &Cli, add: Option<&str>) -> Result<Arc<Mirrors>, CliError> {
    let dir = cli.data_dir.clone().unwrap_or_else(|| Config::default().server.data_dir);
    let (mut config, problems) = base_config(cli, &dir)?;
    if let Some(location) = add {
        config.vault.mirrors = vec![rewind_config::MirrorConfig::at(location)];
    }
    rewind_capture::rebuild::apply_stores_file(&mut config).map_err(CliError::other)?;
    let config = config.finish(problems).map_err(vault_err)?;
    if config.vault.mirrors.is_empty() {
        return Err(CliError::other(
            "no mirrors are configured: name them in [[vault.mirrors]] (--config) or REWIND_VAULT_MIRRORS, or seed one with `rewind vault mirror add LOCATION`",
        ));
    }
    let (primary, reclaim, _) = rewind_capture::open::backend_and_reclaim(&config).await.map_err(vault_err)?;
    let (_, _, mirrors) = rewind_capture::open::mirrors(&config, primary, reclaim).await.map_err(vault_err)?;
    Ok(mirrors.expect("invariant: mirrors are configured"))
}

fn chosen(mirrors: &Mirrors, only: Option<usize>) -> Result<Vec<&Mirror>, CliError> {
    let all: Vec<&Mirror> =
        mirrors.each().iter().map(Arc::as_ref).filter(|m| only.is_none_or(|n| m.number == n)).collect();
    if all.is_empty() {
        return Err(CliError::other(format!(
            "there is no mirror {}: `rewind vault mirror ls` lists them",
            only.unwrap_or_default()
        )));
    }
    Ok(all)
}

fn progress(quiet: bool, what: &'static str) -> impl Fn(usize, usize) + Sync {
    move |done, all| {
        if !quiet && (done % 1000 == 0 || done == all) {
            eprint!("\r  {what}: {done}/{all}");
            if done == all {
                eprintln!();
            }
        }
    }
}

/// Runs one `rewind vault mirror` command.
pub async fn run(cli: &Cli, command: &MirrorCommand) -> Result<ExitCode, CliError> {
    let add = match command {
        MirrorCommand::Add { location } => Some(location.as_str()),
        _ => None,
    };
    let mirrors = open(cli, add).await?;
    let primary = mirrors.primary().clone();
    let metrics = MirrorMetrics::register(&prometheus::Registry::new());
    match command {
        MirrorCommand::Ls => {
            let mut all = Vec::new();
            for m in mirrors.each() {
                all.push(mirror_check::status(m, primary.as_ref()).await.map_err(vault_err)?);
            }
            if cli.json {
                print_json(&all)?;
            } else {
                outln!(
                    "(how long ago the oldest missing object was written: rewind_mirror_lag_seconds on each gateway)"
                );
            }
            for s in all.iter().filter(|_| !cli.json) {
                match &s.error {
                    Some(e) => outln!("{}  {}  unreachable: {e}", s.mirror, s.location),
                    None => outln!(
                        "{}  {}  behind by {} objects, {} bytes ({} packs, {} segments); journal position {} of {}",
                        s.mirror,
                        s.location,
                        s.missing_objects,
                        s.missing_bytes,
                        s.missing_packs,
                        s.missing_segments,
                        s.mirror_position,
                        s.primary_position
                    ),
                }
            }
        }
        MirrorCommand::Sync { mirror, repair } => {
            let mut out = Vec::new();
            for m in chosen(&mirrors, *mirror)? {
                let copied = mirror_check::sync(m, primary.as_ref(), &metrics).await.map_err(vault_err)?;
                let mut repaired = 0;
                if *repair {
                    let check = mirror_check::verify(m, Some(primary.as_ref()), true, &progress(cli.json, "checked"))
                        .await
                        .map_err(vault_err)?;
                    let names: Vec<String> = check.damaged.into_iter().map(|(n, _)| n).collect();
                    repaired = mirror_check::repair(m, primary.as_ref(), &names).await.map_err(vault_err)?;
                }
                if !cli.json {
                    outln!("{}  {}  copied {copied} objects, repaired {repaired}", m.number, m.location);
                }
                out.push(serde_json::json!({"mirror": m.number, "location": m.location, "copied": copied, "repaired": repaired}));
            }
            if cli.json {
                print_json(&out)?;
            }
        }
        MirrorCommand::Verify { mirror, read_data } => {
            let mut all = Vec::new();
            for m in chosen(&mirrors, *mirror)? {
                let check = mirror_check::verify(m, Some(primary.as_ref()), *read_data, &progress(cli.json, "read"))
                    .await
                    .map_err(vault_err)?;
                if !cli.json {
                    outln!(
                        "{}  {}  {} objects read, {} missing, {} damaged",
                        m.number,
                        m.location,
                        check.checked,
                        check.missing.len(),
                        check.damaged.len()
                    );
                    for (name, why) in &check.damaged {
                        outln!(
                            "    damaged: {name}: {why} (repair: rewind vault mirror sync --mirror {} --repair)",
                            m.number
                        );
                    }
                }
                all.push(check);
            }
            let clean = all.iter().all(|c| c.damaged.is_empty());
            if cli.json {
                print_json(&all)?;
            }
            if !clean {
                return Ok(ExitCode::FAILURE);
            }
        }
        MirrorCommand::Add { location } => {
            let m = &mirrors.each()[0];
            let copied = mirror_check::sync(m, primary.as_ref(), &metrics).await.map_err(vault_err)?;
            if cli.json {
                print_json(&serde_json::json!({"location": location, "copied": copied}))?;
            } else {
                outln!(
                    "{location}: copied {copied} objects; it holds the whole vault now. Add it to vault.mirrors (or REWIND_VAULT_MIRRORS) so gateways keep it current; run this again to resume."
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
