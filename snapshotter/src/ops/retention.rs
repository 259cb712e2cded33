//! Retention's operations: the plans, forget, garbage collection and legal holds.

use super::{HoldScope, OpError, Operations, blocking, known_bucket};
use crate::HistoryError;
use crate::api::{ForgetPlan, ForgetReport, GcPlan, GcProgress, GcReport, HoldInfo};

/// The stored size of a chunk, by the vault's index (0 when it is not there).
fn stored_size(vault: &rewind_vault::Vault, id: &rewind_model::ChunkId) -> Result<u64, HistoryError> {
    match vault.locate(id) {
        Ok(location) => Ok(location.map_or(0, |l| u64::from(l.entry.stored_len))),
        Err(source) => Err(HistoryError::Vault { what: "cannot look a chunk up in the vault's index", source }),
    }
}

impl Operations {
    /// What applying the retention policy now would expire, in `bucket` or in every
    /// bucket with history (nothing is changed).
    pub async fn forget_plan(&self, bucket: Option<String>) -> Result<ForgetPlan, OpError> {
        let (stores, retention) = (self.stores.clone(), self.retention.clone());
        blocking(move || {
            if let Some(b) = &bucket {
                known_bucket(&stores.journal, b)?;
            }
            let stored = |id: &rewind_model::ChunkId| stored_size(&stores.vault, id);
            let now = rewind_capture::now_us();
            Ok(crate::retention::plan(&stores.journal, stored, &retention, bucket.as_deref(), now)?)
        })
        .await
    }

    /// What garbage collection would reclaim in the vault under the retention policy
    /// (nothing is changed).
    pub async fn gc_plan(&self) -> Result<GcPlan, OpError> {
        let packs = self
            .stores
            .vault
            .pack_names()
            .await
            .map_err(|source| HistoryError::Vault { what: "cannot list the vault's packs", source })?;
        let (journal, retention) = (self.journal(), self.retention.clone());
        blocking(move || Ok(crate::gc::plan(&journal, &retention, rewind_capture::now_us(), &packs)?)).await
    }

    /// Applies the retention policy now to `bucket` or every bucket with history: removes
    /// the journal records of expired entries under a sealed horizon and compacts the
    /// vault's copy of the journal (see [`crate::forget`]). One retention pass (forget or
    /// GC) runs at a time. The outcome is counted in the metrics.
    pub async fn forget(&self, bucket: Option<String>) -> Result<ForgetReport, OpError> {
        let _turn = self.gc_turn.try_lock().map_err(|_| {
            OpError::Busy(
                "a retention pass (forget or gc) is running (the schedule's or another CLI's); wait for it to finish",
            )
        })?;
        let stores = &self.stores;
        if let Some(b) = &bucket {
            known_bucket(&stores.journal, b)?;
        }
        let (journal, backend, reclaim) = (&stores.journal, stores.backend.as_ref(), stores.reclaim.as_ref());
        let stored = |id: &rewind_model::ChunkId| stored_size(&stores.vault, id);
        let (retention, now) = (&self.retention, rewind_capture::now_us());
        let result = crate::forget::forget(journal, backend, reclaim, retention, bucket.as_deref(), now, stored)
            .await
            .map_err(|e| match e {
                crate::forget::ForgetError::History(e) => OpError::History(e),
                crate::forget::ForgetError::Vault(e) => OpError::Vault(e),
                e @ crate::forget::ForgetError::NotShipped(_) => OpError::Invalid(e.to_string()),
            });
        let m = &self.metrics;
        match &result {
            Ok(r) => {
                m.forget_records_removed.inc_by(r.records_removed);
                if r.records_removed > 0 {
                    m.forget_versions_expired.inc_by(r.plan.buckets.iter().map(|b| b.versions_expired).sum());
                }
                m.forget_runs.with_label_values(&["ok"]).inc();
                m.forget_last_success.set(rewind_capture::now_seconds());
            }
            Err(e) => {
                m.forget_runs.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "forget could not run; the next pass tries again");
            }
        }
        result
    }

    /// One garbage collection pass now: condemns dead packs and deletes those condemned at
    /// least `retention.gc_grace` ago (see [`crate::gc`]). One pass runs at a time; client
    /// writes go on meanwhile. The outcome is counted in the metrics.
    pub async fn gc(&self) -> Result<GcReport, OpError> {
        let _turn = self.gc_turn.try_lock().map_err(|_| {
            OpError::Busy(
                "a garbage collection pass is running (the schedule's or another `rewind gc`); wait for it to finish",
            )
        })?;
        let stores = &self.stores;
        let grace = self.retention.gc_grace.0;
        let now = rewind_capture::now_us();
        let (vault, reclaim, watch) = (&stores.vault, stores.reclaim.as_ref(), self.gc_watch.as_ref());
        let result = crate::sweep::collect_watched(&stores.journal, vault, reclaim, grace, now, watch).await;
        let m = &self.metrics;
        match &result {
            Ok(r) => {
                m.count_gc(
                    [
                        ("condemned", r.packs_condemned),
                        ("repacked", r.packs_repacked),
                        ("rescued", r.packs_rescued),
                        ("deleted", r.packs_deleted),
                        ("locked", r.packs_locked),
                        ("failed", r.packs_failed),
                    ],
                    r.bytes_condemned,
                    r.bytes_reclaimed,
                    r.packs_waiting + r.packs_locked + r.packs_failed,
                );
                m.gc_runs.with_label_values(&["ok"]).inc();
                if r.packs_failed == 0 {
                    m.gc_last_success.set(rewind_capture::now_seconds());
                }
            }
            Err(e) => {
                m.gc_runs.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "garbage collection could not run; the next pass tries again");
            }
        }
        Ok(result?)
    }

    /// How far the garbage collection pass running has got.
    pub fn gc_progress(&self) -> GcProgress {
        self.gc_watch.get()
    }

    /// Every legal hold.
    pub async fn holds(&self) -> Result<Vec<HoldInfo>, OpError> {
        let journal = self.journal();
        blocking(move || Ok(journal.holds().map_err(HistoryError::from)?.iter().map(HoldInfo::from).collect())).await
    }

    /// Places a legal hold on `bucket`: on one key, or on every key under a prefix ("":
    /// the whole bucket). The bucket must have history.
    pub async fn hold_add(&self, bucket: &str, scope: &HoldScope, reason: &str) -> Result<(), OpError> {
        known_bucket(&self.stores.journal, bucket)?;
        let (text, exact) = scope.parts();
        if !self.stores.journal.hold_put(bucket, text, exact, reason).await.map_err(HistoryError::from)? {
            return Err(OpError::Invalid(format!("{} is already held", scope.describe(bucket))));
        }
        Ok(())
    }

    /// Lifts a legal hold.
    pub async fn hold_rm(&self, bucket: &str, scope: &HoldScope) -> Result<(), OpError> {
        let (text, exact) = scope.parts();
        if !self.stores.journal.hold_delete(bucket, text, exact).await.map_err(HistoryError::from)? {
            return Err(OpError::NoSuchVersion(format!(
                "there is no hold on {}: `rewind hold ls` lists them",
                scope.describe(bucket)
            )));
        }
        Ok(())
    }
}
