//! The capture engine's metrics: journal, vault, capture refusals, recovery, shipping,
//! reconcile, verify and restore. Names and labels follow STYLE.md: `rewind_` prefix, base
//! units as suffix, label values from closed sets only — never a bucket, key, address or
//! error text. The gateway registers them beside its HTTP metrics in one registry.

use prometheus::{HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Metric names, in one place so dashboards, alerts and code agree.
pub mod names {
    pub const JOURNAL_RECORDS_TOTAL: &str = "rewind_journal_records_total";
    pub const JOURNAL_COMMIT_DURATION_SECONDS: &str = "rewind_journal_commit_duration_seconds";
    pub const JOURNAL_LAST_COMMIT_TIMESTAMP_SECONDS: &str = "rewind_journal_last_commit_timestamp_seconds";
    pub const VAULT_CHUNKS_TOTAL: &str = "rewind_vault_chunks_total";
    pub const VAULT_WRITTEN_BYTES_TOTAL: &str = "rewind_vault_written_bytes_total";
    pub const VAULT_BUFFERED_BYTES: &str = "rewind_vault_buffered_bytes";
    pub const CAPTURE_REFUSALS_TOTAL: &str = "rewind_capture_refusals_total";
    pub const UNRESOLVED_INTENTS: &str = "rewind_unresolved_intents";
    pub const DATA_DIR_AVAILABLE_BYTES: &str = "rewind_data_dir_available_bytes";
    pub const DATA_DIR_SIZE_BYTES: &str = "rewind_data_dir_size_bytes";
    pub const VERIFY_LAST_SUCCESS_TIMESTAMP_SECONDS: &str = "rewind_verify_last_success_timestamp_seconds";
    pub const VERIFY_RUNS_TOTAL: &str = "rewind_verify_runs_total";
    pub const RESTORED_OBJECTS_TOTAL: &str = "rewind_restored_objects_total";
    pub const SEGMENT_SHIP_LAG_SECONDS: &str = "rewind_segment_ship_lag_seconds";
    pub const SEGMENTS_SHIPPED_TOTAL: &str = "rewind_segments_shipped_total";
    pub const SEGMENT_SHIP_ERRORS_TOTAL: &str = "rewind_segment_ship_errors_total";
    pub const RECONCILE_OBJECTS_TOTAL: &str = "rewind_reconcile_objects_total";
    pub const UNPROTECTED_OBJECTS: &str = "rewind_unprotected_objects";
    pub const RECONCILE_LAST_SUCCESS_TIMESTAMP_SECONDS: &str = "rewind_reconcile_last_success_timestamp_seconds";
    pub const MEMORY_BUDGET_BYTES: &str = "rewind_memory_budget_bytes";
    pub const MEMORY_BUDGET_USED_BYTES: &str = "rewind_memory_budget_used_bytes";
    pub const VERIFY_CHUNKS_READ_TOTAL: &str = "rewind_verify_chunks_read_total";
    pub const VERIFY_READ_CYCLE_COMPLETE_TIMESTAMP_SECONDS: &str =
        "rewind_verify_read_cycle_complete_timestamp_seconds";
    pub const JOURNAL_DIVERGED: &str = "rewind_journal_diverged";
    pub const VAULT_CHUNK_BYTES: &str = "rewind_vault_chunk_bytes";
    pub const RETENTION_LAST_PLAN_TIMESTAMP_SECONDS: &str = "rewind_retention_last_plan_timestamp_seconds";
    pub const FORGET_RECORDS_REMOVED_TOTAL: &str = "rewind_forget_records_removed_total";
    pub const FORGET_VERSIONS_EXPIRED_TOTAL: &str = "rewind_forget_versions_expired_total";
    pub const FORGET_RUNS_TOTAL: &str = "rewind_forget_runs_total";
    pub const TRIPWIRE_INCIDENTS_TOTAL: &str = "rewind_tripwire_incidents_total";
    pub const TRIPWIRE_OPEN_INCIDENTS: &str = "rewind_tripwire_open_incidents";
    pub const TRIPWIRE_REFUSED_TOTAL: &str = "rewind_tripwire_refused_total";
    pub const FORGET_LAST_SUCCESS_TIMESTAMP_SECONDS: &str = "rewind_forget_last_success_timestamp_seconds";
    pub const GC_PACKS_TOTAL: &str = "rewind_gc_packs_total";
    pub const GC_BYTES_TOTAL: &str = "rewind_gc_bytes_total";
    pub const GC_CONDEMNED_PACKS: &str = "rewind_gc_condemned_packs";
    pub const GC_RUNS_TOTAL: &str = "rewind_gc_runs_total";
    pub const GC_LAST_SUCCESS_TIMESTAMP_SECONDS: &str = "rewind_gc_last_success_timestamp_seconds";
}

/// Journal record kinds, the `record` label of [`names::JOURNAL_RECORDS_TOTAL`].
pub mod record_kind {
    pub const INTENT: &str = "intent";
    pub const COMMIT: &str = "commit";
    pub const ABORT: &str = "abort";
    pub const OBSERVED: &str = "observed";
}

/// Why a mutation was refused to protect history, the `reason` label of
/// [`names::CAPTURE_REFUSALS_TOTAL`].
pub mod refusal {
    /// The journal could not record it.
    pub const JOURNAL: &str = "journal";
    /// The vault could not store its bytes.
    pub const VAULT: &str = "vault";
    /// The version it would destroy could not be captured first (G2).
    pub const CAPTURE_BEFORE_DESTROY: &str = "capture_before_destroy";
    /// The vault was too slow for the client's upload.
    pub const SLOW_VAULT: &str = "slow_vault";
    /// A bucket configuration that would delete data behind the journal's back.
    pub const DESTRUCTIVE_CONFIG: &str = "destructive_config";
    /// The client's body failed (cut short, a wrong checksum) while the upstream took it.
    pub const CLIENT_BODY: &str = "client_body";
    /// The upstream stopped reading the body before it ended.
    pub const UPSTREAM: &str = "upstream";
}

/// Latencies from sub-millisecond to minutes.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// The engine's metrics.
#[derive(Clone)]
pub struct Metrics {
    pub journal_records: IntCounterVec,
    pub journal_commit_duration: prometheus::Histogram,
    pub journal_last_commit: prometheus::Gauge,
    pub vault_chunks: IntCounterVec,
    pub vault_written_bytes: IntCounterVec,
    pub vault_buffered_bytes: IntGauge,
    pub capture_refusals: IntCounterVec,
    pub unresolved_intents: IntGauge,
    pub data_dir_available: IntGauge,
    pub data_dir_size: IntGauge,
    pub verify_last_success: prometheus::Gauge,
    pub verify_runs: IntCounterVec,
    pub restored_objects: IntCounterVec,
    pub segment_ship_lag: prometheus::Gauge,
    pub segments_shipped: IntCounter,
    pub segment_ship_errors: IntCounter,
    pub reconcile_objects: IntCounterVec,
    pub unprotected_objects: IntGauge,
    pub reconcile_last_success: prometheus::Gauge,
    pub memory_budget: IntGaugeVec,
    pub memory_budget_used: IntGaugeVec,
    pub verify_chunks_read: IntCounter,
    pub verify_read_cycle_complete: prometheus::Gauge,
    pub journal_diverged: IntGauge,
    pub vault_chunk_bytes: IntGaugeVec,
    pub retention_last_plan: prometheus::Gauge,
    pub forget_records_removed: IntCounter,
    pub forget_versions_expired: IntCounter,
    pub forget_runs: IntCounterVec,
    pub forget_last_success: prometheus::Gauge,
    pub gc_packs: IntCounterVec,
    pub gc_bytes: IntCounterVec,
    pub gc_condemned_packs: IntGauge,
    pub gc_runs: IntCounterVec,
    pub gc_last_success: prometheus::Gauge,
    pub tripwire_incidents: IntCounterVec,
    pub tripwire_open_incidents: IntGauge,
    pub tripwire_refused: IntCounter,
    /// The mirrors' copying (see `mirror.rs`).
    pub mirror: crate::mirror::MirrorMetrics,
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("invariant: static metric definition")
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("invariant: static metric definition")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("invariant: static metric definition")
}

fn float_gauge(name: &str, help: &str) -> prometheus::Gauge {
    prometheus::Gauge::new(name, help).expect("invariant: static metric definition")
}

impl Metrics {
    /// Creates every metric and registers it in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let m = Self {
            journal_records: counter_vec(
                names::JOURNAL_RECORDS_TOTAL,
                "Journal appends, by record kind and result (ok, error).",
                &["record", "result"],
            ),
            journal_commit_duration: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    names::JOURNAL_COMMIT_DURATION_SECONDS,
                    "Time to append a commit record durably (group commit included).",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("invariant: static metric definition"),
            journal_last_commit: float_gauge(
                names::JOURNAL_LAST_COMMIT_TIMESTAMP_SECONDS,
                "Unix time of the last durable commit record.",
            ),
            vault_chunks: counter_vec(
                names::VAULT_CHUNKS_TOTAL,
                "Chunks handed to the vault: new (stored) or deduplicated (already held).",
                &["result"],
            ),
            vault_written_bytes: counter_vec(
                names::VAULT_WRITTEN_BYTES_TOTAL,
                "Bytes captured: logical (object bytes) and stored (pack bytes written).",
                &["kind"],
            ),
            vault_buffered_bytes: gauge(
                names::VAULT_BUFFERED_BYTES,
                "Upload bytes waiting for the vault now (bounded by vault.memory_budget).",
            ),
            capture_refusals: counter_vec(
                names::CAPTURE_REFUSALS_TOTAL,
                "Mutations refused (503 or AccessDenied) rather than let history be lost, by reason.",
                &["reason"],
            ),
            unresolved_intents: gauge(
                names::UNRESOLVED_INTENTS,
                "Journal intents that start-up recovery could not resolve yet.",
            ),
            data_dir_available: gauge(
                names::DATA_DIR_AVAILABLE_BYTES,
                "Bytes available to the gateway on the data directory's filesystem (journal, local vault).",
            ),
            data_dir_size: gauge(names::DATA_DIR_SIZE_BYTES, "Size of the data directory's filesystem."),
            verify_last_success: float_gauge(
                names::VERIFY_LAST_SUCCESS_TIMESTAMP_SECONDS,
                "Unix time of the last verify (scheduled or asked for) that found nothing damaged.",
            ),
            verify_runs: counter_vec(
                names::VERIFY_RUNS_TOTAL,
                "Verify runs, by result: ok, damaged (something is wrong), error (could not run).",
                &["result"],
            ),
            restored_objects: counter_vec(
                names::RESTORED_OBJECTS_TOTAL,
                "Objects a restore wrote or deleted upstream, or failed to.",
                &["result"],
            ),
            segment_ship_lag: float_gauge(
                names::SEGMENT_SHIP_LAG_SECONDS,
                "Age of the oldest journal record not yet shipped to the vault: what losing this host would lose now (RPO).",
            ),
            segments_shipped: IntCounter::new(names::SEGMENTS_SHIPPED_TOTAL, "Journal segments written to the vault.")
                .expect("invariant: static metric definition"),
            segment_ship_errors: IntCounter::new(
                names::SEGMENT_SHIP_ERRORS_TOTAL,
                "Attempts to ship the journal to the vault that failed (retried at the next interval).",
            )
            .expect("invariant: static metric definition"),
            reconcile_objects: counter_vec(
                names::RECONCILE_OBJECTS_TOTAL,
                "Keys a reconcile looked at, by result: unchanged, captured (a version written before Rewind or behind its back), deleted (behind its back), failed.",
                &["result"],
            ),
            unprotected_objects: gauge(
                names::UNPROTECTED_OBJECTS,
                "Objects upstream whose current version the vault does not hold yet, as the running or last reconcile found.",
            ),
            reconcile_last_success: float_gauge(
                names::RECONCILE_LAST_SUCCESS_TIMESTAMP_SECONDS,
                "Unix time of the last reconcile pass that captured everything it found.",
            ),
            memory_budget: gauge_vec(
                names::MEMORY_BUDGET_BYTES,
                "Size of each share of vault.memory_budget (lookahead, capture, bodies, restores).",
                &["share"],
            ),
            memory_budget_used: gauge_vec(
                names::MEMORY_BUDGET_USED_BYTES,
                "Bytes of each share of the memory budget held now; a share at its size makes requests wait.",
                &["share"],
            ),
            verify_chunks_read: IntCounter::new(
                names::VERIFY_CHUNKS_READ_TOTAL,
                "Chunks scheduled verifies read back, decrypted and re-hashed.",
            )
            .expect("invariant: static metric definition"),
            verify_read_cycle_complete: float_gauge(
                names::VERIFY_READ_CYCLE_COMPLETE_TIMESTAMP_SECONDS,
                "Unix time when scheduled verifies last finished reading every chunk once (vault.verify_read_cycle) with nothing damaged.",
            ),
            vault_chunk_bytes: gauge_vec(
                names::VAULT_CHUNK_BYTES,
                "Vault chunk bytes by state, as the last retention plan found them: live (a kept version or an upload in progress uses them), expired (only versions the policy expires do), unreferenced (no version does).",
                &["state"],
            ),
            retention_last_plan: float_gauge(
                names::RETENTION_LAST_PLAN_TIMESTAMP_SECONDS,
                "Unix time of the last retention plan (the mark of garbage collection) that completed.",
            ),
            forget_records_removed: IntCounter::new(
                names::FORGET_RECORDS_REMOVED_TOTAL,
                "Journal records retention's forget removed (expired versions, deletes and tag changes, with their intents).",
            )
            .expect("invariant: static metric definition"),
            forget_versions_expired: IntCounter::new(
                names::FORGET_VERSIONS_EXPIRED_TOTAL,
                "Object versions retention's forget expired (as its plan counted them).",
            )
            .expect("invariant: static metric definition"),
            forget_runs: counter_vec(names::FORGET_RUNS_TOTAL, "Forget passes, by result (ok, error).", &["result"]),
            forget_last_success: float_gauge(
                names::FORGET_LAST_SUCCESS_TIMESTAMP_SECONDS,
                "Unix time of the last forget pass that completed.",
            ),
            gc_packs: counter_vec(
                names::GC_PACKS_TOTAL,
                "Vault packs garbage collection acted on, by outcome: condemned (found dead), repacked (live chunks copied out), rescued (needed again), deleted, locked (Object Lock kept it, retried later), failed (retried next pass).",
                &["outcome"],
            ),
            gc_bytes: counter_vec(
                names::GC_BYTES_TOTAL,
                "Chunk bytes garbage collection condemned and reclaimed, by what.",
                &["what"],
            ),
            gc_condemned_packs: gauge(
                names::GC_CONDEMNED_PACKS,
                "Packs condemned and waiting out gc_grace (or Object Lock) after the last pass.",
            ),
            gc_runs: counter_vec(
                names::GC_RUNS_TOTAL,
                "Garbage collection passes, by result (ok, error).",
                &["result"],
            ),
            gc_last_success: float_gauge(
                names::GC_LAST_SUCCESS_TIMESTAMP_SECONDS,
                "Unix time of the last garbage collection pass that completed with every due pack handled.",
            ),
            tripwire_incidents: counter_vec(
                names::TRIPWIRE_INCIDENTS_TOTAL,
                "Incidents the ransomware tripwire opened, by the first signal that fired (deletes, overwrites, encrypted_overwrites, sse_c_overwrites, expiring_lifecycle).",
                &["signal"],
            ),
            tripwire_open_incidents: gauge(
                names::TRIPWIRE_OPEN_INCIDENTS,
                "Tripwire incidents not acknowledged yet (`rewind incidents ls`).",
            ),
            tripwire_refused: IntCounter::new(
                names::TRIPWIRE_REFUSED_TOTAL,
                "Writes refused because their client key has an open incident in protect mode.",
            )
            .expect("invariant: static metric definition"),
            journal_diverged: gauge(
                names::JOURNAL_DIVERGED,
                "1 when the journal disagrees with what the vault holds of it (shipping stopped): rebuild from the vault.",
            ),
            mirror: crate::mirror::MirrorMetrics::register(registry),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 38] = [
            Box::new(m.journal_records.clone()),
            Box::new(m.journal_commit_duration.clone()),
            Box::new(m.journal_last_commit.clone()),
            Box::new(m.vault_chunks.clone()),
            Box::new(m.vault_written_bytes.clone()),
            Box::new(m.vault_buffered_bytes.clone()),
            Box::new(m.capture_refusals.clone()),
            Box::new(m.unresolved_intents.clone()),
            Box::new(m.data_dir_available.clone()),
            Box::new(m.data_dir_size.clone()),
            Box::new(m.verify_last_success.clone()),
            Box::new(m.verify_runs.clone()),
            Box::new(m.restored_objects.clone()),
            Box::new(m.segment_ship_lag.clone()),
            Box::new(m.segments_shipped.clone()),
            Box::new(m.segment_ship_errors.clone()),
            Box::new(m.reconcile_objects.clone()),
            Box::new(m.unprotected_objects.clone()),
            Box::new(m.reconcile_last_success.clone()),
            Box::new(m.memory_budget.clone()),
            Box::new(m.memory_budget_used.clone()),
            Box::new(m.verify_chunks_read.clone()),
            Box::new(m.verify_read_cycle_complete.clone()),
            Box::new(m.journal_diverged.clone()),
            Box::new(m.vault_chunk_bytes.clone()),
            Box::new(m.retention_last_plan.clone()),
            Box::new(m.forget_records_removed.clone()),
            Box::new(m.forget_versions_expired.clone()),
            Box::new(m.forget_runs.clone()),
            Box::new(m.forget_last_success.clone()),
            Box::new(m.gc_packs.clone()),
            Box::new(m.gc_bytes.clone()),
            Box::new(m.gc_condemned_packs.clone()),
            Box::new(m.gc_runs.clone()),
            Box::new(m.gc_last_success.clone()),
            Box::new(m.tripwire_incidents.clone()),
            Box::new(m.tripwire_open_incidents.clone()),
            Box::new(m.tripwire_refused.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("invariant: metric names are unique");
        }
        m
    }

    /// Metrics registered nowhere (offline tools, tests).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new())
    }

    /// Brings the vault counters up to `stats` (the vault counts; this mirrors them).
    pub fn mirror_vault(&self, stats: rewind_vault::VaultStats) {
        let raise = |c: prometheus::IntCounter, to: u64| c.inc_by(to.saturating_sub(c.get()));
        raise(self.vault_chunks.with_label_values(&["new"]), stats.new_chunks);
        raise(self.vault_chunks.with_label_values(&["deduplicated"]), stats.deduplicated_chunks);
        raise(self.vault_written_bytes.with_label_values(&["logical"]), stats.logical_bytes);
        raise(self.vault_written_bytes.with_label_values(&["stored"]), stats.stored_bytes);
    }

    /// Counts what a garbage collection pass did.
    pub fn count_gc(&self, packs: [(&str, u64); 6], condemned_bytes: u64, reclaimed_bytes: u64, waiting: u64) {
        for (outcome, n) in packs {
            self.gc_packs.with_label_values(&[outcome]).inc_by(n);
        }
        self.gc_bytes.with_label_values(&["condemned"]).inc_by(condemned_bytes);
        self.gc_bytes.with_label_values(&["reclaimed"]).inc_by(reclaimed_bytes);
        self.gc_condemned_packs.set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// Mirrors the memory budget's shares.
    pub fn mirror_budget(&self, budget: &rewind_vault::MemoryBudget) {
        for share in budget.shares() {
            let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.memory_budget.with_label_values(&[share.name()]).set(as_i64(share.size()));
            self.memory_budget_used.with_label_values(&[share.name()]).set(as_i64(share.used()));
        }
    }

    /// Samples the free space of the filesystem holding `dir`; unset on error.
    pub fn sample_disk(&self, dir: &std::path::Path) {
        if let Ok(st) = rustix::fs::statvfs(dir) {
            let to_i64 = |blocks: u64| i64::try_from(blocks.saturating_mul(st.f_frsize)).unwrap_or(i64::MAX);
            self.data_dir_available.set(to_i64(st.f_bavail));
            self.data_dir_size.set(to_i64(st.f_blocks));
        }
    }
}
