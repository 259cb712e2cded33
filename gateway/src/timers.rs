//! Every background timer of a serving gateway, in one place: journal shipping, scheduled
//! verify, reconcile passes, retention (its plan, forget, then garbage collection), and
//! the journal's one-time upgrade of older index entries. Each is a task of the gateway's
//! one tracker and stops when the gateway does.
//!
//! On a shared journal (several gateways) every gateway renews its liveness lease, and the
//! work that must run once runs on the gateway that holds the `background` lease, with the
//! recovery of the intents of gateways that died; it moves to another when that one dies.

use std::sync::Arc;
use std::time::Duration;

use rewind_capture::open::Stores;
use rewind_capture::{Metrics, ship};
use rewind_config::Config;
use rewind_snapshotter::ops::{Compare, Operations};
use rewind_snapshotter::reconcile::Reconciler;
use rewind_snapshotter::verify::ReadData;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// When the first scheduled verify runs after start.
const FIRST_VERIFY_AFTER: Duration = Duration::from_secs(60);
/// When the first retention plan runs after start.
const FIRST_RETENTION_AFTER: Duration = Duration::from_secs(300);

/// How often the count of open views is refreshed.
const VIEWS_COUNTED_EVERY: Duration = Duration::from_secs(15);

/// What the background work needs.
#[derive(Clone)]
pub struct Parts {
    pub config: Arc<Config>,
    pub stores: Arc<Stores>,
    pub ops: Operations,
    pub reconciler: Arc<Reconciler>,
    pub capture: Arc<rewind_capture::Capture>,
    pub metrics: Metrics,
    pub views: rewind_views::ViewMetrics,
}

/// How often the tripwire reads the incidents back from the journal.
const TRIPWIRE_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Starts every timer on `tracker`.
pub fn start(parts: &Parts, stop: &CancellationToken, tracker: &TaskTracker) {
    tracker.spawn(count_views(parts.ops.clone(), parts.views.clone(), stop.child_token()));
    let (capture, token) = (parts.capture.clone(), stop.child_token());
    // Incidents other gateways opened, and acknowledgements, reach this one within this.
    tracker.spawn(async move { capture.tripwire().refresh_until(TRIPWIRE_REFRESH, token).await });
    if parts.stores.journal.engine().shared() {
        tracker.spawn(lead(parts.clone(), stop.clone(), tracker.clone()));
    } else {
        start_once_jobs(parts, stop, tracker);
    }
}

/// On a shared journal: renews this gateway's liveness; takes (or keeps) the background
/// lease and runs the work that must run once while it holds it.
async fn lead(parts: Parts, stop: CancellationToken, tracker: TaskTracker) {
    use rewind_journal::leases::{BACKGROUND, LEASE_TTL, RENEW_EVERY, liveness};
    let journal = parts.stores.journal.clone();
    let live = liveness(journal.owner());
    let mut jobs: Option<CancellationToken> = None;
    loop {
        if let Err(e) = journal.lease_renew(&live, LEASE_TTL).await {
            tracing::warn!(error = %e, "cannot renew this gateway's liveness lease in the shared journal");
        }
        let held = journal.lease_renew(BACKGROUND, LEASE_TTL).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot renew the background lease; background work stops here");
            false
        });
        match (&jobs, held) {
            (None, true) => {
                tracing::info!(gateway = journal.owner(), "this gateway now runs the shared journal's background work");
                let token = stop.child_token();
                start_once_jobs(&parts, &token, &tracker);
                tracker.spawn(recover_dead_gateways(parts.capture.clone(), token.clone()));
                jobs = Some(token);
            }
            (Some(token), false) => {
                tracing::warn!("another gateway took the background lease; background work stops here");
                token.cancel();
                jobs = None;
            }
            _ => {}
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
    }
    // A clean stop hands the work over at once instead of after the lease lapses. The
    // liveness lease stays until it lapses: requests finishing now may still write.
    if jobs.is_some() {
        let _ = journal.lease_release(BACKGROUND).await;
    }
}

/// How often the background gateway looks for intents of gateways that died.
const DEAD_GATEWAYS_EVERY: Duration = Duration::from_secs(10);

/// Resolves the open intents of gateways whose liveness lease lapsed.
async fn recover_dead_gateways(capture: Arc<rewind_capture::Capture>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(DEAD_GATEWAYS_EVERY) => {}
        }
        match capture.recover().await {
            Ok(r) if r.committed + r.aborted > 0 => {
                tracing::info!(
                    committed = r.committed,
                    aborted = r.aborted,
                    "resolved mutations a gateway that died left open"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot look for mutations dead gateways left open; will retry"),
        }
    }
}

/// Starts what must run on one gateway only: shipping, verify, reconcile, retention.
fn start_once_jobs(parts: &Parts, stop: &CancellationToken, tracker: &TaskTracker) {
    let Parts { config, stores, ops, reconciler, metrics, .. } = parts;
    tracker.spawn(ship::ship_on_schedule(
        stores.journal.clone(),
        stores.backend.clone(),
        config.vault.segment_interval.0,
        metrics.clone(),
        stop.child_token(),
    ));
    tracker.spawn(verify_on_schedule(
        ops.clone(),
        metrics.clone(),
        config.vault.verify_interval.0,
        config.vault.verify_read_cycle.0,
        stop.child_token(),
    ));
    let (reconcile, until) = (reconciler.clone().on_schedule(config.protection.reconcile_interval.0), stop.clone());
    tracker.spawn(async move {
        tokio::select! {
            () = until.cancelled() => {}
            () = reconcile => {}
        }
    });
    tracker.spawn(retention_on_schedule(ops.clone(), metrics.clone(), config.retention.schedule.0, stop.child_token()));
    tracker.spawn(name_retag_bases(stores.journal.clone(), stop.child_token()));
}

/// Once per journal: names the version each tag change indexed by an older Rewind applies
/// to, so reads of keys retagged many times jump there (`journal/src/upgrade.rs`).
async fn name_retag_bases(journal: Arc<rewind_journal::Journal>, stop: CancellationToken) {
    let started = std::time::Instant::now();
    match journal.name_retag_bases(rewind_journal::RETAG_STEP, || stop.is_cancelled()).await {
        Ok(done) if done.named > 0 => tracing::info!(
            named = done.named,
            entries_read = done.entries,
            seconds = started.elapsed().as_secs_f64(),
            "named the version each older tag change applies to; reads of keys retagged many times now jump there"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            error = %e,
            "cannot name the versions older tag changes apply to; their keys are read back record by record until the next start retries"
        ),
    }
}

/// Keeps the open views' gauge current (and removes expired views on the way).
async fn count_views(ops: Operations, metrics: rewind_views::ViewMetrics, stop: CancellationToken) {
    loop {
        match ops.views(false).await {
            Ok(open) => metrics.open.set(i64::try_from(open.len()).unwrap_or(i64::MAX)),
            Err(e) => tracing::warn!(error = %e, "cannot count the open views"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(VIEWS_COUNTED_EVERY) => {}
        }
    }
}

/// Every `every` (`0s`: never), until `stop`: plans retention, publishing how the vault's
/// bytes divide between live, expired and unreferenced chunks, then applies it (forget)
/// and runs a garbage collection pass (one at a time: a pass already running from the
/// CLI is left alone).
async fn retention_on_schedule(ops: Operations, metrics: Metrics, every: Duration, stop: CancellationToken) {
    if every.is_zero() {
        return;
    }
    let mut wait = every.min(FIRST_RETENTION_AFTER);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match ops.gc_plan().await {
            Ok(plan) => {
                let set = |state: &str, bytes: u64| {
                    metrics.vault_chunk_bytes.with_label_values(&[state]).set(i64::try_from(bytes).unwrap_or(i64::MAX));
                };
                set("live", plan.bytes_live);
                set("expired", plan.bytes_expired);
                set("unreferenced", plan.bytes_unreferenced);
                metrics.retention_last_plan.set(rewind_capture::now_seconds());
            }
            Err(e) => tracing::warn!(error = %e, "could not plan retention; retrying at the next interval"),
        }
        match ops.forget(None).await {
            Ok(r) if r.records_removed > 0 => tracing::info!(
                records_removed = r.records_removed,
                horizon = r.horizon,
                "forget applied the retention policy"
            ),
            // Counted and logged by the pass itself.
            Ok(_) | Err(_) => {}
        }
        match ops.gc().await {
            Ok(r) if r.packs_deleted + r.packs_condemned > 0 => tracing::info!(
                deleted = r.packs_deleted,
                reclaimed_bytes = r.bytes_reclaimed,
                condemned = r.packs_condemned,
                waiting = r.packs_waiting,
                "garbage collection pass done"
            ),
            // Counted and logged by the pass itself.
            Ok(_) | Err(_) => {}
        }
        wait = every;
    }
}

/// Verifies every `every`, until `stop`: the hash chain, every chunk present, the journal
/// against the vault's newest checkpoint, and a rotating share of the chunks read back,
/// so that damage in the vault's data is found within `read_cycle` (review F22).
async fn verify_on_schedule(
    ops: Operations,
    metrics: Metrics,
    every: Duration,
    read_cycle: Duration,
    stop: CancellationToken,
) {
    // The first run soon after start, so the metric is set on a fresh gateway.
    let mut wait = every.min(FIRST_VERIFY_AFTER);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let read = ReadData::rotating(rewind_capture::now_us(), every, read_cycle);
        if let Ok(report) = ops.verify(read, Compare::Head).await {
            metrics.verify_chunks_read.inc_by(report.chunks_read);
            if read.completes_cycle() && report.ok() {
                metrics.verify_read_cycle_complete.set(rewind_capture::now_seconds());
            }
        }
        wait = every;
    }
}
