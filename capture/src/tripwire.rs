//! The ransomware tripwire: every captured mutation is counted per client key and bucket,
//! and what ransomware holding stolen keys does opens an incident while it happens.
//!
//! Signals, over a sliding window (`[tripwire]`):
//! - deletes of existing objects, beyond the new keys the same client key created (log
//!   rotation deletes about as many as it creates);
//! - overwrites of existing objects;
//! - overwrites whose bytes do not compress where the version they replace did (the
//!   vault's compression of each chunk says so: encrypted bytes never compress);
//! - writes with customer-provided encryption (SSE-C) over existing objects;
//! - an expiring lifecycle rule (refused anyway), at once.
//!
//! Delete and overwrite counts must also be `sigma` standard deviations above the client
//! key's own baseline: an exponentially weighted mean and variance of its earlier windows.
//! An incident is kept in the journal (`incident/` + id), so every gateway sharing it and
//! the CLI see it; in `protect` mode it refuses every further write of that client key to
//! that bucket until acknowledged (the incidents themselves: `incidents.rs`). Counting costs
//! a lock and a few additions per mutation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rewind_config::{TripwireAction, TripwireConfig, TripwirePolicy};
use rewind_journal::{Journal, JournalError};
use rewind_model::{Effect, ObjectVersion, Seq};
use serde::{Deserialize, Serialize};

use crate::Metrics;
use crate::incidents::encode;
pub use crate::incidents::{Incident, IncidentState, acknowledge, incident, incidents};

/// Weight of the newest window in a client key's baseline.
const BASELINE_ALPHA: f64 = 0.2;
/// Empty windows folded into a baseline at most, after a quiet spell.
const MAX_QUIET_WINDOWS: u32 = 16;
/// An open incident's counts are written back to the journal at most this often.
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Actors that are the gateway's own work (restores, undo, reconcile): never watched.
const INTERNAL_PREFIX: &str = "rewind-";

/// What one committed mutation did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Wrote a key that did not exist.
    Created,
    /// Replaced an existing object.
    Overwrote {
        /// Its bytes do not compress where the replaced version's did.
        encrypted: bool,
        /// With customer-provided encryption (SSE-C).
        sse_c: bool,
    },
    /// Deleted an existing object.
    Deleted,
    /// Asked for a lifecycle rule that expires objects (refused).
    ExpiringLifecycle,
}

/// What a client key did in one bucket: counted per window, and in an incident since it
/// opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Objects created.
    pub created: u64,
    /// Objects overwritten.
    pub overwrites: u64,
    /// Objects deleted.
    pub deletes: u64,
    /// Overwrites with bytes that do not compress where the replaced ones did.
    pub encrypted_overwrites: u64,
    /// Overwrites with customer-provided encryption.
    pub sse_c_overwrites: u64,
    /// Expiring lifecycle rules asked for.
    pub expiring_lifecycle: u64,
}

impl Counts {
    fn add(&mut self, change: Change) {
        match change {
            Change::Created => self.created += 1,
            Change::Overwrote { encrypted, sse_c } => {
                self.overwrites += 1;
                self.encrypted_overwrites += u64::from(encrypted);
                self.sse_c_overwrites += u64::from(sse_c);
            }
            Change::Deleted => self.deletes += 1,
            Change::ExpiringLifecycle => self.expiring_lifecycle += 1,
        }
    }

    fn destructive(&self) -> f64 {
        (self.overwrites + self.deletes) as f64
    }
}

/// One client key in one bucket.
#[derive(Debug, Default)]
struct Watch {
    window_start_us: i64,
    cur: Counts,
    prev: Counts,
    /// The first destructive change of the current and of the previous window.
    first_cur: Option<Seq>,
    first_prev: Option<Seq>,
    mean: f64,
    var: f64,
    /// The open incident this watch feeds, and when it was last written back.
    incident: Option<(String, Instant)>,
}

impl Watch {
    /// Moves the window up to `now_us`, folding finished windows into the baseline.
    fn roll(&mut self, now_us: i64, window_us: i64) {
        if self.window_start_us == 0 {
            self.window_start_us = now_us;
            return;
        }
        let mut folded = 0;
        while now_us >= self.window_start_us + window_us {
            if folded < MAX_QUIET_WINDOWS {
                let x = self.cur.destructive();
                let d = x - self.mean;
                self.mean += BASELINE_ALPHA * d;
                self.var = (1.0 - BASELINE_ALPHA) * (self.var + BASELINE_ALPHA * d * d);
                folded += 1;
            }
            self.prev = std::mem::take(&mut self.cur);
            self.first_prev = self.first_cur.take();
            self.window_start_us += window_us;
            if folded >= MAX_QUIET_WINDOWS {
                // A long quiet spell: start afresh at now.
                self.prev = Counts::default();
                self.first_prev = None;
                self.window_start_us = now_us;
            }
        }
    }

    /// The signals that fire under `policy` at `now_us`.
    fn signals(&self, policy: &TripwirePolicy, now_us: i64) -> Vec<&'static str> {
        let window_us = micros(policy.window);
        let weight = 1.0 - ((now_us - self.window_start_us) as f64 / window_us as f64).clamp(0.0, 1.0);
        let sliding = |f: fn(&Counts) -> u64| f(&self.cur) as f64 + f(&self.prev) as f64 * weight;
        let bar = |min: u32| f64::from(min).max(self.mean + policy.sigma * self.var.sqrt());
        let mut fired = Vec::new();
        let over =
            |count: f64, min: u32, baseline: bool| min > 0 && count >= if baseline { bar(min) } else { f64::from(min) };
        if over(sliding(|c| c.deletes) - sliding(|c| c.created), policy.deletes, true) {
            fired.push("deletes");
        }
        if over(sliding(|c| c.overwrites), policy.overwrites, true) {
            fired.push("overwrites");
        }
        if over(sliding(|c| c.encrypted_overwrites), policy.encrypted_overwrites, false) {
            fired.push("encrypted_overwrites");
        }
        if over(sliding(|c| c.sse_c_overwrites), policy.sse_c_overwrites, false) {
            fired.push("sse_c_overwrites");
        }
        if self.cur.expiring_lifecycle + self.prev.expiring_lifecycle > 0 {
            fired.push("expiring_lifecycle");
        }
        fired
    }
}

impl Watch {
    /// The lowest position of a destructive change in the two windows counted.
    fn first_destructive(&self) -> Option<Seq> {
        match (self.first_prev, self.first_cur) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Opens an incident for what this watch counted, fired by `signals` at `seq`.
    fn open(
        &mut self,
        actor: &str,
        bucket: &str,
        policy: &TripwirePolicy,
        signals: &[&str],
        seq: Seq,
        now_us: i64,
    ) -> Incident {
        let mut counts = self.prev;
        for (total, now) in [
            (&mut counts.created, self.cur.created),
            (&mut counts.overwrites, self.cur.overwrites),
            (&mut counts.deletes, self.cur.deletes),
            (&mut counts.encrypted_overwrites, self.cur.encrypted_overwrites),
            (&mut counts.sse_c_overwrites, self.cur.sse_c_overwrites),
            (&mut counts.expiring_lifecycle, self.cur.expiring_lifecycle),
        ] {
            *total += now;
        }
        let first = self.first_destructive().unwrap_or(seq);
        let id = format!("inc-{}-{:04x}", seq.0, rand::random::<u16>());
        self.incident = Some((id.clone(), Instant::now()));
        Incident {
            id,
            actor: actor.to_owned(),
            bucket: bucket.to_owned(),
            opened_us: now_us,
            opened_at: crate::rfc3339(now_us),
            first_seq: first.0,
            last_seq: seq.0,
            signals: signals.iter().map(|s| (*s).to_owned()).collect(),
            counts,
            action: policy.action,
            state: IncidentState::Open,
            acknowledged_at: None,
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX).max(1)
}

/// What the tripwire decided about one change.
enum Decision {
    Nothing,
    Open(Incident),
    /// Counts `change` at `seq` into the open incident `id`; `persist` when its record is
    /// due to be written back.
    Update {
        id: String,
        change: Change,
        seq: Seq,
        persist: bool,
    },
}

/// The tripwire of one gateway.
pub struct Tripwire {
    config: TripwireConfig,
    journal: Arc<Journal>,
    metrics: Metrics,
    /// Bucket, then client key.
    watches: Mutex<HashMap<String, HashMap<String, Watch>>>,
    /// Open incidents (this gateway's and, once read back, the others'), by bucket then
    /// client key.
    open: RwLock<HashMap<String, HashMap<String, Incident>>>,
}

impl Tripwire {
    /// A tripwire over `journal` with `config`.
    pub fn new(config: TripwireConfig, journal: Arc<Journal>, metrics: Metrics) -> Self {
        let (watches, open) = (Mutex::default(), RwLock::default());
        Self { config, journal, metrics, watches, open }
    }

    /// Whether it watches anything.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The open incident that refuses `actor`'s writes to `bucket`, if any.
    pub fn refusing(&self, actor: &str, bucket: &str) -> Option<String> {
        let open = self.open.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.get(bucket)?.get(actor).filter(|i| i.refuses()).map(|i| i.id.clone())
    }

    /// Counts one committed change of `actor` in `bucket` at position `seq`, and opens or
    /// extends its incident when signals fire. Fails only when the journal refuses the
    /// incident.
    pub async fn observe(&self, actor: &str, bucket: &str, seq: Seq, change: Change) -> Result<(), JournalError> {
        if !self.config.enabled || actor.is_empty() || actor.starts_with(INTERNAL_PREFIX) {
            return Ok(());
        }
        let now_us = crate::now_us();
        let policy = self.config.policy(bucket);
        let decision = {
            let mut watches = self.watches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let watch = watches.entry(bucket.to_owned()).or_default().entry(actor.to_owned()).or_default();
            watch.roll(now_us, micros(policy.window));
            watch.cur.add(change);
            // Changes commit in parallel and may be observed out of order: keep the lowest.
            if change != Change::Created {
                watch.first_cur = Some(watch.first_cur.map_or(seq, |s| s.min(seq)));
            }
            match &mut watch.incident {
                Some((id, persisted)) => {
                    let due = persisted.elapsed() >= PERSIST_EVERY;
                    if due {
                        *persisted = Instant::now();
                    }
                    Decision::Update { id: id.clone(), change, seq, persist: due }
                }
                None => {
                    let signals = watch.signals(&policy, now_us);
                    if signals.is_empty() {
                        Decision::Nothing
                    } else {
                        Decision::Open(watch.open(actor, bucket, &policy, &signals, seq, now_us))
                    }
                }
            }
        };
        match decision {
            Decision::Nothing => Ok(()),
            Decision::Open(incident) => self.opened(incident).await,
            Decision::Update { id, change, seq, persist } => {
                let updated = {
                    let mut open = self.open.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let incident = open.get_mut(bucket).and_then(|m| m.get_mut(actor)).filter(|i| i.id == id);
                    incident.map(|i| {
                        i.counts.add(change);
                        // A change committed before the incident opened but observed after
                        // it: the incident starts there, or its undo would miss it.
                        let earlier = change != Change::Created && seq.0 < i.first_seq;
                        if earlier {
                            i.first_seq = seq.0;
                        }
                        if persist {
                            i.last_seq = i.last_seq.max(seq.0);
                        }
                        (persist || earlier).then(|| i.clone())
                    })
                };
                match updated {
                    Some(Some(incident)) => self.journal.incident_put(&id, encode(&incident)).await,
                    Some(None) => Ok(()),
                    // Acknowledged meanwhile (here or on another gateway): count afresh.
                    None => {
                        if incident(&self.journal, &id)?.is_some_and(|i| i.state == IncidentState::Acknowledged) {
                            self.forget_watch(actor, bucket);
                        }
                        Ok(())
                    }
                }
            }
        }
    }

    /// Before a batch delete of `deletes` existing objects of `bucket` by `actor` is sent
    /// upstream: in protect mode, if the batch would fire the tripwire, the incident opens
    /// now and its id comes back (the batch is refused whole; one request can delete 1,000
    /// objects). Nothing is counted otherwise: the deletes
    /// count as they commit.
    pub async fn before_batch(&self, actor: &str, bucket: &str, deletes: u64) -> Result<Option<String>, JournalError> {
        let policy = self.config.policy(bucket);
        if !self.config.enabled
            || policy.action != TripwireAction::Protect
            || actor.is_empty()
            || actor.starts_with(INTERNAL_PREFIX)
        {
            return Ok(None);
        }
        let head = self.journal.head()?.seq;
        let now_us = crate::now_us();
        let incident = {
            let mut watches = self.watches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let watch = watches.entry(bucket.to_owned()).or_default().entry(actor.to_owned()).or_default();
            watch.roll(now_us, micros(policy.window));
            if watch.incident.is_some() {
                return Ok(None);
            }
            watch.cur.deletes += deletes;
            let signals = watch.signals(&policy, now_us);
            let incident = (!signals.is_empty()).then(|| {
                let mut incident = watch.open(actor, bucket, &policy, &signals, head, now_us);
                incident.first_seq = watch.first_destructive().map_or(head.0 + 1, |s| s.0);
                incident.signals.push("batch_deletes".to_owned());
                incident.counts.deletes -= deletes;
                incident
            });
            // Refused or not counted yet: the batch's deletes count when they commit.
            watch.cur.deletes -= deletes;
            incident
        };
        match incident {
            Some(incident) => {
                let id = incident.id.clone();
                self.opened(incident).await?;
                Ok(Some(id))
            }
            None => Ok(None),
        }
    }

    /// Announces and keeps an incident just opened.
    async fn opened(&self, incident: Incident) -> Result<(), JournalError> {
        tracing::warn!(
            incident = %incident.id,
            actor = %incident.actor,
            bucket = %incident.bucket,
            signals = ?incident.signals,
            first_seq = incident.first_seq,
            action = ?incident.action,
            "tripwire: a client key is changing a bucket the way ransomware does; see `rewind incidents show {}`, undo with `rewind undo --incident {}`",
            incident.id,
            incident.id
        );
        self.metrics.tripwire_incidents.with_label_values(&[incident.signals[0].as_str()]).inc();
        // Known here first: the changes that follow at once extend it.
        self.remember(incident.clone());
        self.journal.incident_put(&incident.id, encode(&incident)).await
    }

    /// Acknowledges incident `id` ([`acknowledge`]); its client key's counts here start
    /// afresh.
    pub async fn acknowledge(&self, id: &str) -> Result<Option<Incident>, JournalError> {
        let incident = acknowledge(&self.journal, id).await?;
        self.refresh()?;
        if let Some(i) = &incident {
            self.forget_watch(&i.actor, &i.bucket);
        }
        Ok(incident)
    }

    /// Reads the open incidents back from the journal (those other gateways opened, and
    /// acknowledgements).
    pub fn refresh(&self) -> Result<(), JournalError> {
        let stored = incidents(&self.journal)?;
        let ids: std::collections::HashSet<&str> = stored.iter().map(|i| i.id.as_str()).collect();
        let mut open: HashMap<String, HashMap<String, Incident>> = HashMap::new();
        let mut current = self.open.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Opened here and not in the journal yet (its write is in flight): kept.
        for (bucket, by_actor) in current.iter() {
            for (actor, i) in by_actor.iter().filter(|(_, i)| !ids.contains(i.id.as_str())) {
                open.entry(bucket.clone()).or_default().insert(actor.clone(), i.clone());
            }
        }
        for incident in stored.iter().filter(|i| i.state == IncidentState::Open) {
            open.entry(incident.bucket.clone()).or_default().entry(incident.actor.clone()).or_insert(incident.clone());
        }
        let count = open.values().map(HashMap::len).sum::<usize>();
        *current = open;
        drop(current);
        self.metrics.tripwire_open_incidents.set(i64::try_from(count).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Refreshes every `every` until `stop`.
    pub async fn refresh_until(&self, every: Duration, stop: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.refresh() {
                tracing::warn!(error = %e, "tripwire: cannot read the incidents from the journal; will retry");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    fn remember(&self, incident: Incident) {
        let mut open = self.open.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.entry(incident.bucket.clone()).or_default().insert(incident.actor.clone(), incident);
        let count = open.values().map(HashMap::len).sum::<usize>();
        self.metrics.tripwire_open_incidents.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    fn forget_watch(&self, actor: &str, bucket: &str) {
        let mut watches = self.watches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(m) = watches.get_mut(bucket) {
            m.remove(actor);
        }
    }
}

impl crate::Capture {
    /// Watches mutations with the ransomware tripwire `config` describes.
    pub fn with_tripwire(mut self, config: rewind_config::TripwireConfig) -> Self {
        self.tripwire = Arc::new(Tripwire::new(config, self.journal.clone(), self.metrics.clone()));
        self
    }

    /// The ransomware tripwire.
    pub fn tripwire(&self) -> &Arc<Tripwire> {
        &self.tripwire
    }

    /// Tells the tripwire what a committed mutation of `actor` did: `replaced` is the
    /// version it replaced (`None`: the key did not exist), `effect` what it committed at
    /// `seq`. A failure to record an incident is logged; the mutation stands.
    pub async fn watch(
        &self,
        actor: &str,
        bucket: &str,
        seq: Seq,
        replaced: Option<&ObjectVersion>,
        effect: &Effect,
        sse_c: bool,
    ) {
        if !self.tripwire.enabled() {
            return;
        }
        let change = match (effect, replaced) {
            (Effect::Version(_), None) => Change::Created,
            (Effect::Version(new), Some(old)) => {
                let encrypted = self.compresses(new) == Some(false) && self.compresses(old) == Some(true);
                Change::Overwrote { encrypted, sse_c }
            }
            (Effect::Deleted { .. }, Some(_)) => Change::Deleted,
            _ => return,
        };
        if let Err(e) = self.tripwire.observe(actor, bucket, seq, change).await {
            tracing::error!(error = %e, bucket, "tripwire: could not record an incident in the journal");
        }
    }

    /// Whether the vault found `v`'s first chunk worth compressing (`None`: unknown).
    fn compresses(&self, v: &ObjectVersion) -> Option<bool> {
        self.vault.compresses(v.chunks.first()?)
    }
}

#[cfg(test)]
#[path = "tripwire_tests.rs"]
mod tests;
