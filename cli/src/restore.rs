//! `rewind restore` and `rewind undo`: a plan from the gateway (or offline), shown, confirmed,
//! then applied with progress; both stream a restore's events.

use std::process::ExitCode;

use rewind_snapshotter::api::{Mode, PlanSummary, RestoreEvent, RestoreRequest, UndoRequest};

use crate::{Cli, CliError, Events, RestoreArgs, Target, UndoArgs, confirm, print, print_json, todir};

pub(crate) async fn restore(cli: &Cli, target: &Target, args: &RestoreArgs) -> Result<ExitCode, CliError> {
    if let Some(dir) = &args.to_dir {
        return todir::restore(cli.json, target, args, dir).await;
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
    let Some(RestoreEvent::Plan(plan)) = target.restore(&ask).await?.next().await? else {
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
    if !args.yes && !confirm("Apply this restore?", "restoring")? {
        outln!("Nothing changed.");
        return Ok(ExitCode::SUCCESS);
    }
    ask.dry_run = false;
    let mut events = target.restore(&ask).await?;
    apply(cli, args, &mut events, plan).await
}

/// `rewind undo`: one bucket (named, or the incident's), or without `--bucket` every
/// bucket with history in which the client key changed something in the window.
pub(crate) async fn undo(cli: &Cli, target: &Target, args: &UndoArgs) -> Result<ExitCode, CliError> {
    if args.bucket.is_some() || args.incident.is_some() {
        return undo_in(cli, target, args, args.bucket.clone().unwrap_or_default(), false).await;
    }
    let buckets = target.status().await?.buckets;
    let mut plans = Vec::new();
    for bucket in buckets {
        let ask = undo_request(args, bucket.name.clone());
        let Some(RestoreEvent::Plan(plan)) = target.undo(&ask).await?.next().await? else {
            return Err(CliError::other("the gateway sent no undo plan"));
        };
        if plan.writes + plan.deletes > 0 || !plan.conflicts.is_empty() {
            plans.push(plan);
        }
    }
    if cli.json && args.dry_run {
        print_json(&plans)?;
        return Ok(ExitCode::SUCCESS);
    }
    if plans.is_empty() {
        if !cli.json {
            outln!("Nothing to undo: {} changed no bucket in that window.", args.actor.as_deref().unwrap_or_default());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut code = ExitCode::SUCCESS;
    for plan in plans {
        let done = undo_in(cli, target, args, plan.to_bucket.clone(), true).await?;
        if done != ExitCode::SUCCESS {
            code = done;
        }
    }
    Ok(code)
}

fn undo_request(args: &UndoArgs, bucket: String) -> UndoRequest {
    UndoRequest {
        incident: args.incident.clone(),
        actor: args.actor.clone().unwrap_or_default(),
        bucket,
        prefix: args.prefix.clone(),
        since: args.since.clone().unwrap_or_default(),
        until: args.until.clone(),
        force: args.force,
        dry_run: true,
        parallel: args.parallel,
    }
}

/// The undo in one bucket; `of_many` when it is one of several (`--bucket` left out).
async fn undo_in(
    cli: &Cli,
    target: &Target,
    args: &UndoArgs,
    bucket: String,
    of_many: bool,
) -> Result<ExitCode, CliError> {
    let mut ask = undo_request(args, bucket);
    let Some(RestoreEvent::Plan(plan)) = target.undo(&ask).await?.next().await? else {
        return Err(CliError::other("the gateway sent no undo plan"));
    };
    if cli.json && args.dry_run && !of_many {
        print_json(&plan)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !cli.json {
        let who =
            args.actor.clone().or_else(|| args.incident.as_ref().map(|i| format!("the client key of incident {i}")));
        print::undo_plan(&plan, who.as_deref().unwrap_or_default());
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    if plan.writes + plan.deletes == 0 {
        if !cli.json {
            outln!("Nothing to undo.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm("Apply this undo?", "undoing")? {
        outln!("Nothing changed.");
        return Ok(ExitCode::SUCCESS);
    }
    ask.dry_run = false;
    let mut events = target.undo(&ask).await?;
    // Its progress, outcome and how to revert it are a restore's of the same scope.
    let as_restore = RestoreArgs {
        bucket: plan.to_bucket.clone(),
        at: args.since.clone().unwrap_or_else(|| format!("seq:{}", plan.seq)),
        prefix: args.prefix.clone(),
        key: None,
        to_bucket: None,
        to_dir: None,
        mode: Mode::Rewind,
        dry_run: false,
        yes: true,
        parallel: args.parallel,
    };
    apply(cli, &as_restore, &mut events, plan).await
}

async fn apply(
    cli: &Cli,
    args: &RestoreArgs,
    events: &mut Events<RestoreEvent>,
    plan: PlanSummary,
) -> Result<ExitCode, CliError> {
    let bar = print::progress_bar(plan.writes + plan.deletes, cli.json);
    let mut failures = Vec::new();
    let (mut before, mut done) = (plan.before_seq, 0);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let event = tokio::select! {
            event = events.next() => event?,
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
